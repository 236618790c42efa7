"""Every cell and option, in one list: the conformance suite runs them all."""

import jax.numpy as jnp

import lstmjax as lj

# (id, factory) pairs; factories take a dtype so tests can ask for float64.
ALL_CELLS = [
    ("rnn", lambda dtype=jnp.float32: lj.rnn(5, dtype=dtype)),
    (
        "rnn_relu",
        lambda dtype=jnp.float32: lj.rnn(5, activation=lambda v: jnp.maximum(v, 0.0), dtype=dtype),
    ),
    ("lstm", lambda dtype=jnp.float32: lj.lstm(5, dtype=dtype)),
    ("lstm_peephole", lambda dtype=jnp.float32: lj.lstm(5, peephole=True, dtype=dtype)),
    ("gru", lambda dtype=jnp.float32: lj.gru(5, dtype=dtype)),
    ("gru_reset_before", lambda dtype=jnp.float32: lj.gru(5, reset_after=False, dtype=dtype)),
    ("jordan", lambda dtype=jnp.float32: lj.jordan(6, 4, dtype=dtype)),
    ("min_gru", lambda dtype=jnp.float32: lj.min_gru(5, dtype=dtype)),
    ("min_lstm", lambda dtype=jnp.float32: lj.min_lstm(5, dtype=dtype)),
]
CELL_IDS = [name for name, _ in ALL_CELLS]
CELL_FACTORIES = [factory for _, factory in ALL_CELLS]
INPUT_SIZE = 3
