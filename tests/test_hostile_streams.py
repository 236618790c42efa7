"""Hostile inputs to truncated BPTT on streams (`tbptt.stream`, `reset_carry`).

Each case must raise a clear error from inside lstmjax (`hostile.assert_clear`);
the checks run when the stream step is traced, before the model runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hostile import assert_clear

from lstmjax import tbptt, train

B, K, F, H, LAYERS = 3, 4, 2, 5, 2
OPT = optax.sgd(0.1)
PARAMS = {"w": jnp.ones(F)}


def apply(params, xs, carry):
    """A stand-in model: predictions from xs, the carry moved by the inputs' mean."""
    return xs * params["w"], jax.tree_util.tree_map(lambda c: c + jnp.mean(xs), carry)


def mse(predictions, ys):
    return jnp.mean((predictions - ys) ** 2)


STEP = train.make_train_step(apply, mse, OPT)
STREAM = jnp.ones((B, 2 * K, F))
BATCHES = tbptt.stream_batches(STREAM, STREAM, K)
CELL_CARRY = jnp.zeros((B, H))  # a cell's carry [B, H]
STACKED = jnp.zeros((LAYERS, B, H))  # a stacked net's carry [layers, B, H]


def run(initial, carry, axis=0, chunk=None):
    state = train.init_state(PARAMS, OPT, carry=carry)
    return tbptt.stream(STEP, initial, carry_batch_axis=axis)(
        state, BATCHES(0) if chunk is None else chunk
    )


CASES = {
    "initial carry of another batch": (
        ValueError,
        lambda: run(jnp.zeros((B + 1, H)), CELL_CARRY),
        r"tbptt\.stream: initial_carry has shape \(4, 5\), but the state's carry has shape "
        r"\(3, 5\); build both for the same batch size",
    ),
    "stacked carry with the default axis": (
        ValueError,
        lambda: run(STACKED, STACKED),
        r"the chunk has 3 rows \(reset has shape \(3,\)\), but carry of shape \(2, 3, 5\) has "
        r"2 along carry_batch_axis=0\. A stacked lj\.recurrent net's carry is \[layers, batch, "
        r"hidden\]: pass carry_batch_axis=1",
    ),
    "carry axis past the rank": (
        ValueError,
        lambda: run(CELL_CARRY, CELL_CARRY, axis=2),
        r"carry_batch_axis=2, but carry has shape \(3, 5\), rank 2",
    ),
    "carry axis negative": (
        ValueError,
        lambda: tbptt.stream(STEP, CELL_CARRY, carry_batch_axis=-1),
        r"carry_batch_axis must be an int >= 0; got -1",
    ),
    "carry of another structure": (
        ValueError,
        lambda: run((CELL_CARRY, CELL_CARRY), CELL_CARRY),
        r"the state's carry has structure .*, but initial_carry has",
    ),
    "a batch that is not a chunk": (
        TypeError,
        lambda: run(CELL_CARRY, CELL_CARRY, chunk=(STREAM, STREAM)),
        r"each batch must be a StreamChunk\(xs, ys, reset\).*got tuple of length 2",
    ),
    "reset of ints": (
        ValueError,
        lambda: run(
            CELL_CARRY,
            CELL_CARRY,
            chunk=tbptt.StreamChunk(STREAM[:, :K], STREAM[:, :K], jnp.ones(B, jnp.int32)),
        ),
        r"reset must be a bool array \[batch\]; got shape \(3,\) and dtype int32",
    ),
    "reset_carry axis past the rank": (
        ValueError,
        lambda: tbptt.reset_carry(CELL_CARRY, CELL_CARRY, jnp.ones(B, bool), 3),
        r"tbptt\.reset_carry: carry_batch_axis=3, but carry has shape \(3, 5\)",
    ),
    "reset_carry rows": (
        ValueError,
        lambda: tbptt.reset_carry(CELL_CARRY, CELL_CARRY, jnp.ones(B + 1, bool)),
        r"the chunk has 4 rows .* carry of shape \(3, 5\) has 3 along carry_batch_axis=0",
    ),
    "stream without a carry": (
        ValueError,
        lambda: tbptt.stream(STEP, CELL_CARRY)(train.init_state(PARAMS, OPT), BATCHES(0)),
        r"tbptt\.stream needs the carry in the state",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_clear_error(case):
    error, call, pattern = CASES[case]
    assert_clear(error, call, pattern)


def test_stacked_carry_resets_the_rows_along_axis_1():
    """The check passes the right axis: rows marked reset return to the initial carry."""
    carry = jnp.arange(LAYERS * B * H, dtype=jnp.float32).reshape(LAYERS, B, H)
    initial = -jnp.ones_like(carry)
    reset = jnp.array([True, False, True])
    out = np.asarray(tbptt.reset_carry(carry, initial, reset, 1))
    expected = np.where(np.asarray(reset)[None, :, None], -1.0, np.asarray(carry))
    np.testing.assert_array_equal(out, expected)
