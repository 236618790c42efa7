"""Several seeds of one model trained at once, and the cells the xLSTM experiments compare.

`train_seeds` builds one population state (`jax.vmap` of `train.init_state`
over the seeds' keys), steps it with `train.ensemble` of the one training
step (`train.make_train_step`; on a CPU the members run one after another
inside one compiled step) and runs `train.fit` over keyed batches
(`train.keyed_batches`). Every member reads the same batches, so the seeds
differ in their initial weights.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import numpy as np
import optax

import lstmjax as lj
from lstmjax import train

# The cells of the xLSTM experiments (state_tracking, associative_recall): the two
# xLSTM cells with four heads, as in the paper's blocks, and the classic ones.
CELLS: dict[str, Callable[[int], lj.Cell]] = {
    "slstm": partial(lj.slstm, num_heads=4),
    "mlstm": partial(lj.mlstm, num_heads=4),
    "lstm": lj.lstm,
    "gru": lj.gru,
    "min_gru": lj.min_gru,
    "rnn": lj.rnn,
}
NAMES = {  # in legends and sentences
    "slstm": "sLSTM",
    "mlstm": "mLSTM",
    "lstm": "LSTM",
    "gru": "GRU",
    "min_gru": "minGRU",
    "rnn": "tanh RNN",
}
COLORS = {  # the colours of vanishing_gradients.STYLE and long_range_memory.STYLE
    "slstm": "#6a3d9a",
    "mlstm": "C9",
    "lstm": "C0",
    "gru": "C2",
    "min_gru": "C5",
    "rnn": "C3",
}
LINES = {  # line style and width: the wide sLSTM shows under lines that coincide with it
    "slstm": ("-", 3.6),
    "mlstm": ("-", 1.8),
    "lstm": ("--", 1.8),
    "gru": ("-.", 1.6),
    "min_gru": ("-", 1.3),
    "rnn": (":", 2.0),
}
# Every unroll of these experiments runs on the sequential scan. For these short
# sequences it is the fast path of the mLSTM's gradient on a CPU: at T = 20, H = 32, four
# heads and batch 64, 6.5 ms against 11.5 ms for the parallel pass that "auto" picks (the
# two compute the same values; the parallel pass wins at T in the thousands).
METHOD = lj.Scan()


def train_seeds(
    key,
    init_params: Callable[[jax.Array], Any],
    apply_fn: Callable,
    loss_fn: Callable,
    make_batch: Callable[[jax.Array], tuple],
    config: dict,
    bar,
) -> tuple[Any, dict]:
    """Train `config["seeds"]` models at once with Adam and global-norm clipping.

    Args:
      key: the run's key; member m's weights come from `split(key, seeds)[m]`.
      init_params: `key -> params` of one model.
      apply_fn, loss_fn: as for `train.make_train_step`.
      make_batch: `key -> (xs, ys)`, batch n from `fold_in(data key, n)`.
      config: `seeds`, `steps`, `learning_rate`, `clip_norm`, `log_every`.
      bar: a progress bar, advanced by one per update.

    Returns:
      `(params, history)`: every leaf of `params` with a leading seed axis
      `[S, ...]`; `history["step"]` and `history["loss_seeds"]` `[S, chunks]`,
      each member's mean training loss over each `log_every` updates.
    """
    S, steps, every = config["seeds"], config["steps"], config["log_every"]
    if steps % every:
        raise ValueError(f"steps must be a multiple of log_every; got {steps} and {every}.")
    optimizer = optax.chain(
        optax.clip_by_global_norm(config["clip_norm"]), optax.adam(config["learning_rate"])
    )
    step = train.ensemble(train.make_train_step(apply_fn, loss_fn, optimizer))
    k_params, k_data = jax.random.split(key)
    state = jax.vmap(lambda k: train.init_state(init_params(k), optimizer))(
        jax.random.split(k_params, S)
    )
    batches = train.keyed_batches(k_data, make_batch)

    def counted(n):
        bar.update(1)
        return batches(n)

    state, history = train.fit(
        step, state, counted, steps, logging=train.Logging(quiet=True), metrics_lag=4
    )
    loss = np.asarray([record["loss"] for record in history.train])  # [steps, S]
    chunks = loss.reshape(steps // every, every, S).mean(axis=1)
    return state.params, {
        "step": list(range(every, steps + 1, every)),
        "loss_seeds": chunks.T,
    }
