"""Built-in tasks and data: pure, seeded generators that need no network.

Each task documents its source and its trivial baseline, the loss a model
reaches without learning the long-range structure:

* `adding_problem` (regression; baseline MSE `ADDING_BASELINE_MSE` = 1/6);
* `copy_task` (token ids; baseline `copy_baseline_cross_entropy(delay)`);
* `temporal_order` (4 classes; baseline accuracy 1/4, cross-entropy ln 4);
* `char_corpus` (the Python standard library's source, character-level;
  baseline `unigram_entropy_bits(data.train, data.vocab.size)` bits/char),
  with `random_windows` and `stream_chunks` (truncated BPTT) for batching;
* `pendulum_trajectories`, `lorenz_trajectories` (integrated with `rk4`;
  baseline `persistence_mse`, the next-state-equals-this-state forecast);
* `flip_flop` (the 3-bit flip-flop of Sussillo & Barak 2013; baseline MSE
  1, predicting 0);
* `modular_addition` (state tracking: the running sum modulo m, parity for
  m = 2; baseline accuracy 1/m);
* `associative_recall` (multi-query associative recall, Arora et al. 2023;
  baseline accuracy 1/num_values, about 1/num_pairs guessing among the
  values seen).
"""

from lstmjax._integrators import rk4_step as rk4_step
from lstmjax.tasks._adding import ADDING_BASELINE_MSE as ADDING_BASELINE_MSE
from lstmjax.tasks._adding import adding_problem as adding_problem
from lstmjax.tasks._associative_recall import RECALL_NO_TARGET as RECALL_NO_TARGET
from lstmjax.tasks._associative_recall import associative_recall as associative_recall
from lstmjax.tasks._copy import COPY_BLANK as COPY_BLANK
from lstmjax.tasks._copy import COPY_DELIMITER as COPY_DELIMITER
from lstmjax.tasks._copy import COPY_LENGTH as COPY_LENGTH
from lstmjax.tasks._copy import COPY_NUM_SYMBOLS as COPY_NUM_SYMBOLS
from lstmjax.tasks._copy import COPY_VOCAB_SIZE as COPY_VOCAB_SIZE
from lstmjax.tasks._copy import copy_baseline_cross_entropy as copy_baseline_cross_entropy
from lstmjax.tasks._copy import copy_output_mask as copy_output_mask
from lstmjax.tasks._copy import copy_task as copy_task
from lstmjax.tasks._dynamics import LORENZ_BETA as LORENZ_BETA
from lstmjax.tasks._dynamics import LORENZ_RHO as LORENZ_RHO
from lstmjax.tasks._dynamics import LORENZ_SIGMA as LORENZ_SIGMA
from lstmjax.tasks._dynamics import lorenz as lorenz
from lstmjax.tasks._dynamics import lorenz_trajectories as lorenz_trajectories
from lstmjax.tasks._dynamics import pendulum as pendulum
from lstmjax.tasks._dynamics import pendulum_trajectories as pendulum_trajectories
from lstmjax.tasks._dynamics import persistence_mse as persistence_mse
from lstmjax.tasks._dynamics import rk4 as rk4
from lstmjax.tasks._flipflop import FLIPFLOP_BITS as FLIPFLOP_BITS
from lstmjax.tasks._flipflop import flip_flop as flip_flop
from lstmjax.tasks._state_tracking import modular_addition as modular_addition
from lstmjax.tasks._temporal_order import ORDER_BASELINE_ACCURACY as ORDER_BASELINE_ACCURACY
from lstmjax.tasks._temporal_order import (
    ORDER_BASELINE_CROSS_ENTROPY as ORDER_BASELINE_CROSS_ENTROPY,
)
from lstmjax.tasks._temporal_order import ORDER_CLASSES as ORDER_CLASSES
from lstmjax.tasks._temporal_order import ORDER_NUM_CLASSES as ORDER_NUM_CLASSES
from lstmjax.tasks._temporal_order import ORDER_SYMBOLS as ORDER_SYMBOLS
from lstmjax.tasks._temporal_order import ORDER_VOCAB_SIZE as ORDER_VOCAB_SIZE
from lstmjax.tasks._temporal_order import order_positions as order_positions
from lstmjax.tasks._temporal_order import temporal_order as temporal_order
from lstmjax.tasks._text import TextData as TextData
from lstmjax.tasks._text import Vocab as Vocab
from lstmjax.tasks._text import build_vocab as build_vocab
from lstmjax.tasks._text import char_corpus as char_corpus
from lstmjax.tasks._text import random_windows as random_windows
from lstmjax.tasks._text import stdlib_files as stdlib_files
from lstmjax.tasks._text import stdlib_text as stdlib_text
from lstmjax.tasks._text import stream_chunks as stream_chunks
from lstmjax.tasks._text import stream_rows as stream_rows
from lstmjax.tasks._text import unigram_entropy_bits as unigram_entropy_bits

__all__ = [
    "ADDING_BASELINE_MSE",
    "COPY_BLANK",
    "COPY_DELIMITER",
    "COPY_LENGTH",
    "COPY_NUM_SYMBOLS",
    "COPY_VOCAB_SIZE",
    "FLIPFLOP_BITS",
    "LORENZ_BETA",
    "LORENZ_RHO",
    "LORENZ_SIGMA",
    "ORDER_BASELINE_ACCURACY",
    "ORDER_BASELINE_CROSS_ENTROPY",
    "ORDER_CLASSES",
    "ORDER_NUM_CLASSES",
    "ORDER_SYMBOLS",
    "ORDER_VOCAB_SIZE",
    "RECALL_NO_TARGET",
    "TextData",
    "Vocab",
    "adding_problem",
    "associative_recall",
    "build_vocab",
    "char_corpus",
    "copy_baseline_cross_entropy",
    "copy_output_mask",
    "copy_task",
    "flip_flop",
    "lorenz",
    "lorenz_trajectories",
    "modular_addition",
    "order_positions",
    "pendulum",
    "pendulum_trajectories",
    "persistence_mse",
    "random_windows",
    "rk4",
    "rk4_step",
    "stdlib_files",
    "stdlib_text",
    "stream_chunks",
    "stream_rows",
    "temporal_order",
    "unigram_entropy_bits",
]
