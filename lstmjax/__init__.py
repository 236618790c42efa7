"""lstmjax: recurrent sequence models as pure JAX functions."""

__version__ = "0.2.0"

from typing import TYPE_CHECKING

from lstmjax._affine import Affine as Affine
from lstmjax._cell import Cell as Cell
from lstmjax._convergence import ParallelInfo as ParallelInfo
from lstmjax._ctrnn import CTRNNParams as CTRNNParams
from lstmjax._ctrnn import ctrnn as ctrnn
from lstmjax._elk import ELK as ELK
from lstmjax._feedforward import DenseParams as DenseParams
from lstmjax._feedforward import EmbeddingParams as EmbeddingParams
from lstmjax._feedforward import Layer as Layer
from lstmjax._feedforward import MLPParams as MLPParams
from lstmjax._feedforward import dense as dense
from lstmjax._feedforward import embedding as embedding
from lstmjax._feedforward import last_valid as last_valid
from lstmjax._feedforward import mlp as mlp
from lstmjax._feedforward import softmax_readout as softmax_readout
from lstmjax._fused import Fused as Fused
from lstmjax._fused import FusedFallbackWarning as FusedFallbackWarning
from lstmjax._gru import GRUParams as GRUParams
from lstmjax._gru import gru as gru
from lstmjax._jordan import JordanParams as JordanParams
from lstmjax._jordan import jordan as jordan
from lstmjax._layers import LayerParams as LayerParams
from lstmjax._layers import Recurrent as Recurrent
from lstmjax._layers import recurrent as recurrent
from lstmjax._lstm import LSTMCarry as LSTMCarry
from lstmjax._lstm import LSTMParams as LSTMParams
from lstmjax._lstm import lstm as lstm
from lstmjax._min_gru import MinGRUParams as MinGRUParams
from lstmjax._min_gru import min_gru as min_gru
from lstmjax._min_lstm import MinLSTMParams as MinLSTMParams
from lstmjax._min_lstm import min_lstm as min_lstm
from lstmjax._mlstm import MLSTMCarry as MLSTMCarry
from lstmjax._mlstm import MLSTMParams as MLSTMParams
from lstmjax._mlstm import mlstm as mlstm
from lstmjax._newton import Newton as Newton
from lstmjax._newton import QuasiNewton as QuasiNewton
from lstmjax._recurrent_dropout import MaskedParams as MaskedParams
from lstmjax._recurrent_dropout import recurrent_dropout as recurrent_dropout
from lstmjax._rnn import RNNParams as RNNParams
from lstmjax._rnn import rnn as rnn
from lstmjax._scan import Scan as Scan
from lstmjax._slstm import SLSTMCarry as SLSTMCarry
from lstmjax._slstm import SLSTMParams as SLSTMParams
from lstmjax._slstm import slstm as slstm
from lstmjax._unroll import unroll as unroll
from lstmjax._unroll import unroll_parallel as unroll_parallel

# Public modules, imported on first use (`lj.train`, `lj.checkpoint`, ...), so that
# `import lstmjax` imports neither flax, torch nor orbax.
_MODULES = (
    "checkpoint",
    "diagnostics",
    "distributed",
    "dynamics",
    "generate",
    "interop",
    "lm",
    "losses",
    "tasks",
    "tbptt",
    "train",
)
if TYPE_CHECKING:
    from lstmjax import (
        checkpoint,
        diagnostics,
        distributed,
        dynamics,
        generate,
        interop,
        lm,
        losses,
        tasks,
        tbptt,
        train,
    )

# The public surface: every name here has a page in the API reference
# (tests/test_docs_api.py checks both directions).
__all__ = [
    "ELK",
    "Affine",
    "CTRNNParams",
    "Cell",
    "DenseParams",
    "EmbeddingParams",
    "Fused",
    "FusedFallbackWarning",
    "GRUParams",
    "JordanParams",
    "LSTMCarry",
    "LSTMParams",
    "Layer",
    "LayerParams",
    "MLPParams",
    "MLSTMCarry",
    "MLSTMParams",
    "MaskedParams",
    "MinGRUParams",
    "MinLSTMParams",
    "Newton",
    "ParallelInfo",
    "QuasiNewton",
    "RNNParams",
    "Recurrent",
    "SLSTMCarry",
    "SLSTMParams",
    "Scan",
    "checkpoint",
    "ctrnn",
    "dense",
    "diagnostics",
    "distributed",
    "dynamics",
    "embedding",
    "generate",
    "gru",
    "interop",
    "jordan",
    "last_valid",
    "lm",
    "losses",
    "lstm",
    "min_gru",
    "min_lstm",
    "mlp",
    "mlstm",
    "recurrent",
    "recurrent_dropout",
    "rnn",
    "slstm",
    "softmax_readout",
    "tasks",
    "tbptt",
    "train",
    "unroll",
    "unroll_parallel",
]

from lstmjax._lazy import lazy_attributes  # noqa: E402

__getattr__, __dir__ = lazy_attributes(
    __name__, {name: f"lstmjax.{name}" for name in _MODULES}, list(__all__)
)
