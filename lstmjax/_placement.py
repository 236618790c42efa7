"""Where `unroll` computes the input projection, decided from the arrays' device.

Two layout choices of the sequential scan measure differently per device:

- `projection`: "hoisted" computes `x_t W_x + b` for every step at once (one
  `[T*B, I] @ [I, G*H]` matmul before the loop, a `[T, B, G*H]` buffer);
  "per_step" computes it inside each step. On XLA:CPU the per-step form
  measured faster (the big buffer costs more than the matmuls save); on
  accelerators, where each step is latency-bound, hoisting wins.
- `column_blocks`: close over mid-sized weight matrices in column blocks, so
  that XLA:CPU keeps each step's gradient accumulation on one thread
  (see `_scan.column_blocks`). Only useful on CPU.

"auto" resolves both from the platform of the device the arrays live on (the
first concrete array among the inputs and parameters). Inside `jit` every
array is a tracer with no device; then the default backend decides, which is
where `jit` places the computation unless told otherwise.
"""

from __future__ import annotations

import jax

from lstmjax._checks import check_choice, is_concrete

PROJECTIONS = ("auto", "hoisted", "per_step")
COLUMN_BLOCKS = ("auto", True, False)


def platform_of(*trees) -> str:
    """The platform ("cpu", "gpu", "tpu") of the first concrete array in `trees`."""
    for leaf in jax.tree_util.tree_leaves(trees):
        if isinstance(leaf, jax.Array) and is_concrete(leaf):
            return next(iter(leaf.devices())).platform
    return jax.default_backend()


def resolve_placement(projection, column_blocks, *trees) -> tuple[bool, bool]:
    """`(hoisted, column_blocks)` as booleans, "auto" resolved from the device."""
    check_choice("projection", projection, PROJECTIONS)
    if column_blocks not in COLUMN_BLOCKS or not isinstance(column_blocks, (bool, str)):
        raise ValueError(f"column_blocks must be 'auto', True or False; got {column_blocks!r}.")
    platform = None
    if projection == "auto" or column_blocks == "auto":
        platform = platform_of(*trees)
    hoisted = platform != "cpu" if projection == "auto" else projection == "hoisted"
    blocks = platform == "cpu" if column_blocks == "auto" else column_blocks
    return hoisted, blocks
