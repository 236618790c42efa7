"""Interoperability with PyTorch and Flax.

PyTorch (torch is imported only when these functions run):
  `from_torch(module) -> (net, params)`, `to_torch_state_dict(net, params)`,
  `carry_from_torch(state)`.
Flax:
  `flax_cell(cell)`: an lstmjax cell as a `flax.linen` recurrent cell;
  `from_flax(module, variables) -> (cell, params)`: Flax cell weights in lstmjax;
  `carry_from_flax`, `carry_to_flax`: the LSTM carry's (c, h) <-> (h, c).
"""

from lstmjax.interop._flax import FlaxCell as FlaxCell
from lstmjax.interop._flax import carry_from_flax as carry_from_flax
from lstmjax.interop._flax import carry_to_flax as carry_to_flax
from lstmjax.interop._flax import flax_cell as flax_cell
from lstmjax.interop._flax import from_flax as from_flax
from lstmjax.interop._torch import carry_from_torch as carry_from_torch
from lstmjax.interop._torch import from_torch as from_torch
from lstmjax.interop._torch import to_torch_state_dict as to_torch_state_dict
