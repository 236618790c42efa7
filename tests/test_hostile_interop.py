"""Hostile inputs to the torch and Flax interop: clear errors, no silent casts."""

import warnings

import jax.numpy as jnp
import pytest
from conftest import TORCH_MISSING
from hostile import assert_clear

import lstmjax as lj

torch = pytest.importorskip("torch", reason=TORCH_MISSING)


def test_complex_torch_module_is_refused():
    with warnings.catch_warnings():  # torch warns that complex modules are experimental
        warnings.simplefilter("ignore", UserWarning)
        module = torch.nn.GRU(3, 4, batch_first=True).to(torch.complex64)
    assert_clear(
        TypeError,
        lambda: lj.interop.from_torch(module),
        r"from_torch: the module's parameters are complex \(torch\.complex64\).*Expected a float",
    )


def test_complex_torch_state_is_refused():
    state = torch.zeros(1, 2, 4, dtype=torch.complex64)
    assert_clear(
        TypeError,
        lambda: lj.interop.carry_from_torch(state),
        r"state must be real; got complex dtype complex64",
    )


def test_not_a_recurrent_module():
    assert_clear(
        TypeError,
        lambda: lj.interop.from_torch(torch.nn.Linear(3, 4)),
        r"expects a torch\.nn\.RNN, torch\.nn\.LSTM or torch\.nn\.GRU; got Linear",
    )


def test_flax_cell_of_an_uncalled_factory():
    assert_clear(
        TypeError, lambda: lj.interop.flax_cell(lj.lstm), r"got the factory lstmjax\.lstm itself"
    )


def test_torch_params_into_a_net_of_other_size():
    _, params = lj.interop.from_torch(torch.nn.LSTM(3, 4, batch_first=True))
    other, _ = lj.interop.from_torch(torch.nn.LSTM(3, 5, batch_first=True))
    assert_clear(
        ValueError,
        lambda: other.apply(params, jnp.ones((2, 5, 3))),
        r"params\[0\]\.forward\.w_x has shape \(3, 16\).*hidden_size=5.*expects \(3, 20\)",
    )
