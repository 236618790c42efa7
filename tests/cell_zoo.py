"""Every cell and option, in one list: the conformance suite runs them all."""

import jax.numpy as jnp

import lstmjax as lj


def relu(v):
    """A user's activation: one module-level function, so two builds of the cell are equal."""
    return jnp.maximum(v, 0.0)


TAUS = (0.3, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # the RK4 CT-RNN's time constants, one per unit

# (id, factory) pairs; factories take a dtype so tests can ask for float64, and a
# hidden size (each cell's default below) so tests can build a different cell.
ALL_CELLS = [
    ("rnn", lambda dtype=jnp.float32, hidden=5: lj.rnn(hidden, dtype=dtype)),
    ("rnn_relu", lambda dtype=jnp.float32, hidden=5: lj.rnn(hidden, activation=relu, dtype=dtype)),
    ("lstm", lambda dtype=jnp.float32, hidden=5: lj.lstm(hidden, dtype=dtype)),
    (
        "lstm_peephole",
        lambda dtype=jnp.float32, hidden=5: lj.lstm(hidden, peephole=True, dtype=dtype),
    ),
    ("gru", lambda dtype=jnp.float32, hidden=5: lj.gru(hidden, dtype=dtype)),
    (
        "gru_reset_before",
        lambda dtype=jnp.float32, hidden=5: lj.gru(hidden, reset_after=False, dtype=dtype),
    ),
    ("jordan", lambda dtype=jnp.float32, hidden=6: lj.jordan(hidden, 4, dtype=dtype)),
    ("lstm_proj", lambda dtype=jnp.float32, hidden=5: lj.lstm(hidden, proj_size=3, dtype=dtype)),
    # The layer-normalised LSTM is not here: LN amplifies round-off by 1/std of
    # what it normalises, and its float32 error (1.1e-6 after 7 steps) and
    # bfloat16 gradients exceed these suites' tolerances. test_layer_norm.py
    # runs the same checks on it at its own stated tolerances.
    ("gru_ln", lambda dtype=jnp.float32, hidden=5: lj.gru(hidden, layer_norm=True, dtype=dtype)),
    ("ctrnn", lambda dtype=jnp.float32, hidden=5: lj.ctrnn(hidden, tau=0.5, dt=0.2, dtype=dtype)),
    (
        "ctrnn_rk4",
        lambda dtype=jnp.float32, hidden=5: lj.ctrnn(
            hidden, tau=list(TAUS[:hidden]), dt=0.2, integrator="rk4", dtype=dtype
        ),
    ),
    ("min_gru", lambda dtype=jnp.float32, hidden=5: lj.min_gru(hidden, dtype=dtype)),
    ("min_lstm", lambda dtype=jnp.float32, hidden=5: lj.min_lstm(hidden, dtype=dtype)),
]
CELL_IDS = [name for name, _ in ALL_CELLS]
CELL_FACTORIES = [factory for _, factory in ALL_CELLS]

# The xLSTM cells run the core suites only (test_conformance.py, test_cell_values.py):
# in every suite above they took two to five times an existing cell's time (measured:
# 36 tests, 21 min on the loaded 2-core machine, against 7.5 min for min_lstm and gru_ln
# together), and what those suites add is mechanism shared by every cell. tests/test_xlstm.py
# checks them against the paper's equations and covers lengths, masks, resets, reverse,
# the solvers, forward mode, remat, stacked layers and the instruments. Two heads each,
# so that the block-diagonal recurrence (sLSTM) and the per-head memories (mLSTM) are
# what the suites see.
XLSTM_CELLS = [
    ("slstm", lambda dtype=jnp.float32, hidden=4: lj.slstm(hidden, num_heads=2, dtype=dtype)),
    ("mlstm", lambda dtype=jnp.float32, hidden=4: lj.mlstm(hidden, num_heads=2, dtype=dtype)),
]
CORE_IDS = CELL_IDS + [name for name, _ in XLSTM_CELLS]
CORE_FACTORIES = CELL_FACTORIES + [factory for _, factory in XLSTM_CELLS]
INPUT_SIZE = 3
