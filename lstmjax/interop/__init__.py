"""Interoperability with PyTorch and Flax (each imported only when its functions are used).

PyTorch:
  `from_torch(module) -> (net, params)`, `to_torch_state_dict(net, params)`,
  `carry_from_torch(state)`.
Flax:
  `flax_cell(cell)`: an lstmjax cell as a `flax.linen` recurrent cell;
  `from_flax(module, variables) -> (cell, params)`: Flax cell weights in lstmjax;
  `carry_from_flax`, `carry_to_flax`: the LSTM carry's (c, h) <-> (h, c).
"""

from typing import TYPE_CHECKING

from lstmjax._lazy import lazy_attributes

if TYPE_CHECKING:
    from lstmjax.interop._flax import FlaxCell as FlaxCell
    from lstmjax.interop._flax import carry_from_flax as carry_from_flax
    from lstmjax.interop._flax import carry_to_flax as carry_to_flax
    from lstmjax.interop._flax import flax_cell as flax_cell
    from lstmjax.interop._flax import from_flax as from_flax
    from lstmjax.interop._torch import carry_from_torch as carry_from_torch
    from lstmjax.interop._torch import from_torch as from_torch
    from lstmjax.interop._torch import to_torch_state_dict as to_torch_state_dict

__all__ = [
    "FlaxCell",
    "carry_from_flax",
    "carry_from_torch",
    "carry_to_flax",
    "flax_cell",
    "from_flax",
    "from_torch",
    "to_torch_state_dict",
]

_FLAX = "lstmjax.interop._flax"
_TORCH = "lstmjax.interop._torch"
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "FlaxCell": _FLAX,
        "carry_from_flax": _FLAX,
        "carry_to_flax": _FLAX,
        "flax_cell": _FLAX,
        "from_flax": _FLAX,
        "carry_from_torch": _TORCH,
        "from_torch": _TORCH,
        "to_torch_state_dict": _TORCH,
    },
    [],
)
