"""A first look: an LSTM learns the adding problem, and the loss falls.

    python experiments/demo.py [--steps 300] [--length 20]

Inputs are pairs (value ~ U[0, 1], marker in {0, 1}); exactly one marker in
each half of the sequence; the target is the sum of the two marked values.
Predicting the mean (1.0) scores MSE 1/6, the line to beat.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import lstmjax as lj


def adding_batch(key, batch: int, length: int):
    """xs: [batch, length, 2], ys: [batch, 1]."""
    kv, k1, k2 = jax.random.split(key, 3)
    values = jax.random.uniform(kv, (batch, length))
    half = length // 2
    first = jax.random.randint(k1, (batch,), 0, half)
    second = jax.random.randint(k2, (batch,), half, length)
    t = jnp.arange(length)[None, :]
    markers = ((t == first[:, None]) | (t == second[:, None])).astype(jnp.float32)
    xs = jnp.stack([values, markers], axis=-1)
    return xs, jnp.sum(values * markers, axis=1, keepdims=True)


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=32)
    args = parser.parse_args(argv)

    cell, head = lj.lstm(args.hidden), lj.dense(1)
    key_cell, key_head, key_data = jax.random.split(jax.random.key(0), 3)
    params = (cell.init(key_cell, 2), head.init(key_head, args.hidden))
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(params)

    def loss_fn(params, xs, ys):
        hs, _ = lj.unroll(cell, params[0], xs)
        return jnp.mean((head.apply(params[1], hs[:, -1]) - ys) ** 2)

    @jax.jit
    def train_step(params, opt_state, key):
        xs, ys = adding_batch(key, 64, args.length)
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, ys)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    print(f"LSTM({args.hidden}) on the adding problem, T={args.length}; baseline MSE 0.1667")
    for step, key in enumerate(jax.random.split(key_data, args.steps), start=1):
        params, opt_state, loss = train_step(params, opt_state, key)
        if step == 1 or step % 50 == 0:
            print(f"step {step:5d}   mse {float(loss):.4f}")
    return float(loss)


if __name__ == "__main__":
    main()
