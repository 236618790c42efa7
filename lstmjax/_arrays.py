"""Small array and pytree helpers on the ground floor (imports nothing from lstmjax).

- `row`: a vector shaped to broadcast against a batch, written out because
  the tests run with `jax_numpy_rank_promotion="raise"`;
- `is_tracer` / `is_concrete`: whether values can be inspected now;
- `ravel` / `unraveler`: a carry's leaves `[..., n_i]` as one vector and back;
- `path_parts`, `path_name`, `group_norms`: the one naming of pytree leaves
  (`params.w_h` in messages, `w_h` or `0/forward/w_x` as metric names).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.core
import jax.numpy as jnp

from lstmjax._typing import Array


def row(v, like):
    """Reshape a vector `[n]` to `[1, ..., 1, n]` to broadcast against `like`."""
    return jnp.reshape(v, (1,) * (jnp.ndim(like) - 1) + jnp.shape(v))


def is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def is_concrete(x) -> bool:
    """True when `x` holds values now (not a tracer inside jit/grad/vmap)."""
    return not is_tracer(x)


def path_parts(path) -> list[str]:
    """The parts of a pytree key path: field names, sequence indices, dict keys."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    return parts


def path_name(root: str, path) -> str:
    """A leaf as the user would write it: `params.w_h`, `carry.c`, `params[1].forward.b`."""
    return root + jax.tree_util.keystr(path, simple=False) if path else root


def group_norms(tree: Any, depth: Optional[int] = 1, bare: str = "all") -> dict[str, Array]:
    """Euclidean norm per group of leaves, groups named by their first `depth` path parts
    joined by "/" (None: one group per leaf); `bare` names the group of a bare array."""
    squares: dict[str, Any] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = "/".join(path_parts(path if depth is None else path[:depth])) or bare
        squares[name] = squares.get(name, 0.0) + jnp.sum(jnp.square(leaf))
    return {name: jnp.sqrt(s) for name, s in squares.items()}


def ravel(carry: Any) -> Array:
    """A carry's leaves `[..., n_i]` as one vector `[..., N]`, N = sum n_i (LSTM: `[h, c]`)."""
    return jnp.concatenate(jax.tree_util.tree_leaves(carry), axis=-1)


def unraveler(template: Any):
    """The inverse of `ravel` for carries shaped like `template` (leaves `[..., n_i]`)."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    sizes = [leaf.shape[-1] for leaf in leaves]
    cuts = [sum(sizes[: k + 1]) for k in range(len(sizes) - 1)]

    def unravel(v: Array) -> Any:
        return treedef.unflatten(jnp.split(v, cuts, axis=-1))

    return unravel
