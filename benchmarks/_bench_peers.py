"""The implementations the benchmark times: lstmjax, a hand-written floor, and the peers.

Every JAX implementation is reduced to the same two functions,

    init(key) -> params
    forward(params, xs [B, T, I]) -> (ys [B, T, H], h_last [B, H])

from which `_bench_step.py` builds the same jitted inference and training
steps (many-to-one MSE on h_last, Adam), so that the implementations differ
only in their recurrence. PyTorch gets the equivalent eager step, and the
same step with its forward and loss under `torch.compile`. A peer whose
package is not installed (or that cannot run here) raises `Missing`, and is
reported as such, with the reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import lstmjax as lj

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


class Shape(NamedTuple):
    batch: int
    time: int
    inputs: int
    hidden: int


class JaxModel(NamedTuple):
    init: Callable[[jax.Array], Any]
    forward: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
    # entered while tracing (lstmjax variants patch a trace-time default)
    trace_context: Callable[[], Any] = contextlib.nullcontext


class Missing(Exception):  # noqa: N818 (a status, not a failure)
    """The implementation cannot run here (package absent, or no such cell)."""


TORCH_CPU = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"


def require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        how = TORCH_CPU if module == "torch" else 'pip install -e ".[bench]"'
        raise Missing(f"package '{module}' is not installed ({how})")


def _swap(a: jax.Array) -> jax.Array:
    return jnp.swapaxes(a, 0, 1)


# ----------------------------------------------------------------- lstmjax


def lstmjax_cell(cell: str, hidden: int) -> lj.Cell:
    return {"rnn": lj.rnn, "gru": lj.gru, "lstm": lj.lstm}[cell](hidden)


def _plain_lstm(params, carry, px):
    """The LSTM step (no peephole) in plain code: `i, f, g, o` gates on `px + h W_h`."""
    zi, zf, zg, zo = jnp.split(px + carry.h @ params.w_h, 4, axis=-1)
    c = jax.nn.sigmoid(zf) * carry.c + jax.nn.sigmoid(zi) * jnp.tanh(zg)
    h = jax.nn.sigmoid(zo) * jnp.tanh(c)
    return lj.LSTMCarry(h, c), h


def _plain_gru(params, h, px):
    """The GRU step (reset after the matmul, as PyTorch) in plain code: `r, z, n` gates."""
    xr, xz, xn = jnp.split(px, 3, axis=-1)
    hr, hz, hn = jnp.split(h @ params.w_h, 3, axis=-1)
    r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * (hn + params.b_hn[None, :]))
    h = z * h + (1.0 - z) * n
    return h, h


def autodiff_forward(cell: str, params, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """lstmjax's forward with JAX's autodiff in place of the hand-derived backward pass.

    The cell's own `project` and parameters, and its step's equations written
    out plainly in a `lax.scan` (a benchmark reference, as the tests keep
    theirs: the library holds one copy of each cell's equations, with its
    derivative rule, and exposes no switch to drop the rule). A plain scan:
    where `lj.unroll` cuts W_h into column blocks (the LSTM at the small
    shape), the ratio includes that technique too. `tests/test_benchmark.py`
    checks that it computes what `lj.unroll` does.
    """
    if cell not in ("lstm", "gru"):
        raise Missing(f"{cell} has no hand-derived backward pass to replace")
    c = lstmjax_cell(cell, params.w_h.shape[0])
    recur = _plain_lstm if cell == "lstm" else _plain_gru

    def step(carry, x):
        return recur(params, carry, c.project(params, x))

    carry, ys = jax.lax.scan(step, c.initial_carry(xs.shape[:1]), _swap(xs))
    return _swap(ys), carry


def lstmjax_model(
    cell: str,
    s: Shape,
    *,
    hoist: bool | None = None,
    split: bool | None = None,
    unroll: int = 1,
    remat: bool = False,
    autodiff: bool = False,
    fused: bool = False,
    scan: bool = False,
    reset_before: bool = False,
) -> JaxModel:
    c = lj.gru(s.hidden, reset_after=False) if reset_before else lstmjax_cell(cell, s.hidden)
    if autodiff:
        if cell not in ("lstm", "gru"):
            raise Missing(f"{cell} has no hand-derived backward pass to replace")

        def plain(params, xs):
            ys, carry = autodiff_forward(cell, params, xs)
            return ys, c.output(carry)

        return JaxModel(lambda key: c.init(key, s.inputs), plain, contextlib.nullcontext)

    projection = "auto" if hoist is None else ("hoisted" if hoist else "per_step")
    blocks = "auto" if split is None else split

    method = lj.Scan(unroll=unroll, remat=remat, projection=projection, column_blocks=blocks)
    if scan is False and method == lj.Scan():
        method = "auto"  # lstmjax at its defaults: lj.Fused() for the LSTM and GRU on a CPU
    if fused:
        if cell not in ("lstm", "gru"):
            raise Missing(f"lj.Fused covers the LSTM and the GRU, not the {cell}")
        why = lj.Fused.unavailable()
        if why:
            raise Missing(f"lj.Fused cannot run here: {why}")
        method = lj.Fused()

    def forward(params, xs):
        ys, carry = lj.unroll(c, params, xs, method=method)
        return ys, c.output(carry)

    return JaxModel(lambda key: c.init(key, s.inputs), forward, contextlib.nullcontext)


# ------------------------------------------------------------------- floor


def floor_model(cell: str, s: Shape) -> JaxModel:
    """The least code that computes the cell: one fused [x, h] matmul per step.

    The GRU (reset-after, as PyTorch) needs `h @ W_hn` apart from `x @ W_xn`,
    so its floor does one matmul for x and one for h.
    """
    G, H = GATES[cell], s.hidden

    def init(key):
        w = jax.random.normal(key, (s.inputs + H, G * H), jnp.float32) / jnp.sqrt(s.inputs + H)
        return {"w": w, "b": jnp.zeros((1, G * H), jnp.float32)}

    def step(p, carry, x):
        if cell == "gru":
            gx = x @ p["w"][: s.inputs] + p["b"]
            gh = carry @ p["w"][s.inputs :]
            r = jax.nn.sigmoid(gx[:, :H] + gh[:, :H])
            u = jax.nn.sigmoid(gx[:, H : 2 * H] + gh[:, H : 2 * H])
            n = jnp.tanh(gx[:, 2 * H :] + r * gh[:, 2 * H :])
            h = u * carry + (1.0 - u) * n
            return h, h
        h = carry[0] if cell == "lstm" else carry
        z = jnp.concatenate([x, h], axis=-1) @ p["w"] + p["b"]
        if cell == "rnn":
            h = jnp.tanh(z)
            return h, h
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry[1] + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def forward(p, xs):
        zeros = jnp.zeros((xs.shape[0], H), xs.dtype)
        carry0 = (zeros, zeros) if cell == "lstm" else zeros
        _, ys = jax.lax.scan(lambda c, x: step(p, c, x), carry0, _swap(xs))
        return _swap(ys), ys[-1]

    return JaxModel(init, forward)


# -------------------------------------------------------------------- flax


def flax_model(cell_class: str, s: Shape) -> JaxModel:
    require("flax")
    import flax.linen as nn

    model = nn.RNN(getattr(nn, cell_class)(s.hidden), return_carry=True)

    def forward(params, xs):
        carry, ys = model.apply(params, xs)
        h = carry[1] if "LSTM" in cell_class else carry  # LSTM carry is (c, h)
        return ys, h

    return JaxModel(
        lambda key: model.init(key, jnp.zeros((s.batch, s.time, s.inputs), jnp.float32)), forward
    )


# ---------------------------------------------------------------- equinox


def equinox_model(cell: str, s: Shape) -> JaxModel:
    require("equinox")
    import equinox as eqx

    if cell == "rnn":
        raise Missing("equinox has no simple RNN cell (the floor row stands in for it)")
    cls = {"lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}[cell]
    _, static = eqx.partition(cls(s.inputs, s.hidden, key=jax.random.PRNGKey(0)), eqx.is_array)

    def init(key):
        return eqx.partition(cls(s.inputs, s.hidden, key=key), eqx.is_array)[0]

    def forward(params, xs):
        step = jax.vmap(eqx.combine(params, static))  # the cells take one example
        zeros = jnp.zeros((xs.shape[0], s.hidden), xs.dtype)
        carry0 = (zeros, zeros) if cell == "lstm" else zeros

        def body(carry, x):
            carry = step(x, carry)
            h = carry[0] if cell == "lstm" else carry
            return carry, h

        _, ys = jax.lax.scan(body, carry0, _swap(xs))
        return _swap(ys), ys[-1]

    return JaxModel(init, forward)


# ------------------------------------------------------------------ haiku


def haiku_model(cell: str, s: Shape) -> JaxModel:
    require("haiku")
    import haiku as hk

    core_class = {"lstm": hk.LSTM, "gru": hk.GRU, "rnn": hk.VanillaRNN}[cell]

    def run(xs):
        core = core_class(s.hidden)
        state0 = core.initial_state(xs.shape[0])
        ys, _ = hk.dynamic_unroll(core, _swap(xs), state0)
        return _swap(ys), ys[-1]

    net = hk.without_apply_rng(hk.transform(run))
    return JaxModel(
        lambda key: net.init(key, jnp.zeros((s.batch, s.time, s.inputs), jnp.float32)), net.apply
    )


# ------------------------------------------------------------------ torch


class TorchStep(NamedTuple):
    infer: Callable[[], None]
    train: Callable[[], None]


def torch_model(cell: str, s: Shape, seed: int = 0):
    """`torch.nn.LSTM/GRU/RNN`, batch first, at PyTorch's own initialisation."""
    require("torch")
    import torch

    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    return cls(s.inputs, s.hidden, batch_first=True)


def torch_steps(cell: str, s: Shape, *, compiled: bool = False, seed: int = 0) -> TorchStep:
    """PyTorch at its defaults: forward under no_grad, and forward + backward + Adam.

    With `compiled`, the forward (and, in training, the loss) goes through
    `torch.compile` at its defaults; the backward and Adam stay eager, as in
    a user's loop. Threads are whatever PyTorch picks for the process (the
    environment profile decides, for every implementation alike).
    """
    import torch

    model = torch_model(cell, s, seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(s.batch, s.time, s.inputs)
    y = torch.randn(s.batch, s.hidden)

    def forward(x):
        return model(x)[0]

    def loss(x, y):
        _, h_n = model(x)
        h = h_n[0] if cell == "lstm" else h_n  # LSTM returns (h_n, c_n)
        return torch.mean((h[-1] - y) ** 2)

    if compiled:
        forward, loss = compile_or_missing(forward, (x,)), compile_or_missing(loss, (x, y))

    def infer():
        with torch.no_grad():
            forward(x)

    def train():
        opt.zero_grad(set_to_none=True)
        loss(x, y).backward()
        opt.step()

    return TorchStep(infer, train)


def compile_or_missing(fn: Callable, args: tuple) -> Callable:
    """`torch.compile(fn)`, or `Missing` naming why when Dynamo captures no graph of it.

    Dynamo does not raise when it cannot trace a function: it runs it eagerly.
    A "compiled" peer that is eager PyTorch would be a second copy of the
    eager row under a misleading name, so it is reported as missing instead.
    """
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(fn)
    try:
        compiled(*args)  # compiles (on CPU: inductor's C++ code)
    except Exception as e:  # a compiler failure on this machine: report it
        raise Missing(f"torch.compile failed: {type(e).__name__}: {str(e)[:200]}") from e
    if counters["stats"]["unique_graphs"] == 0:
        reasons = "; ".join(r.splitlines()[0] for r in counters["graph_break"]) or "unknown"
        raise Missing(
            f"torch.compile {torch.__version__} runs it eagerly (no graph captured: {reasons}; "
            f"torch._dynamo.config.allow_rnn is {torch._dynamo.config.allow_rnn})"
        )
    return compiled


# --------------------------------------------------------------- registry

JAX_PEERS: dict[str, dict[str, Callable[[Shape], JaxModel]]] = {
    "lstm": {
        "flax.LSTMCell": lambda s: flax_model("LSTMCell", s),
        "flax.OptimizedLSTMCell": lambda s: flax_model("OptimizedLSTMCell", s),
        "equinox.LSTMCell": lambda s: equinox_model("lstm", s),
        "haiku.LSTM": lambda s: haiku_model("lstm", s),
    },
    "gru": {
        "flax.GRUCell": lambda s: flax_model("GRUCell", s),
        "equinox.GRUCell": lambda s: equinox_model("gru", s),
        "haiku.GRU": lambda s: haiku_model("gru", s),
    },
    "rnn": {
        "flax.SimpleCell": lambda s: flax_model("SimpleCell", s),
        "equinox (no RNN cell)": lambda s: equinox_model("rnn", s),
        "haiku.VanillaRNN": lambda s: haiku_model("rnn", s),
    },
}
TORCH_NAME = {"lstm": "torch.nn.LSTM", "gru": "torch.nn.GRU", "rnn": "torch.nn.RNN"}


VARIANTS = (
    "hoisted",
    "in-loop",
    "split-accumulation",
    "fused-accumulation",
    "unroll=2",
    "unroll=4",
    "unroll=8",
    "remat",
    "autodiff",
    "fused",
    "scan",
    "reset-before",
)


def lstmjax_variant(cell: str, s: Shape, variant: str) -> JaxModel:
    """One technique of the study, applied to lstmjax alone."""
    if variant in ("hoisted", "in-loop"):
        return lstmjax_model(cell, s, hoist=variant == "hoisted")
    if variant in ("split-accumulation", "fused-accumulation"):
        return lstmjax_model(cell, s, split=variant == "split-accumulation")
    if variant.startswith("unroll="):
        return lstmjax_model(cell, s, unroll=int(variant.split("=")[1]))
    if variant == "remat":
        return lstmjax_model(cell, s, remat=True)
    if variant == "autodiff":
        return lstmjax_model(cell, s, autodiff=True)
    if variant == "fused":  # the compiled CPU kernel (lj.Fused), at its defaults
        return lstmjax_model(cell, s, fused=True)
    if variant == "scan":  # lj.Scan() at its defaults, where "auto" chooses lj.Fused()
        return lstmjax_model(cell, s, scan=True)
    if variant == "reset-before":  # the GRU of Cho et al. (haiku.GRU's form), at defaults
        if cell != "gru":
            raise Missing(f"reset-before is a form of the GRU, not of the {cell}")
        return lstmjax_model(cell, s, reset_before=True)
    raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")


def jax_models(cell: str, s: Shape, variants=()) -> dict[str, Callable[[], JaxModel]]:
    """Name -> model builder, lstmjax first, then its `variants` (technique study)."""
    models: dict[str, Callable[[], JaxModel]] = {
        "lstmjax": lambda: lstmjax_model(cell, s),
    }
    for v in variants:
        if v == "autodiff" and cell == "rnn":
            continue  # the RNN step is differentiated by autodiff already
        if v == "reset-before" and cell != "gru":
            continue  # a form of the GRU only
        models[f"lstmjax[{v}]"] = lambda v=v: lstmjax_variant(cell, s, v)
    models["floor (hand-written scan)"] = lambda: floor_model(cell, s)
    for name, build in JAX_PEERS[cell].items():
        models[name] = lambda build=build: build(s)
    return models
