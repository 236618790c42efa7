"""Hostile inputs to `unroll`: clear errors from lstmjax, never a raw one or a wrong result."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj

B, T, I, H = 2, 5, 3, 4
CELL = lj.lstm(H)
PARAMS = CELL.init(jax.random.key(0), I)


def xs(shape=(B, T, I), dtype=jnp.float32):
    return jnp.ones(shape, dtype)


def run(*args, **kw):
    return lambda: lj.unroll(CELL, PARAMS, *args, **kw)


CASES = {
    "rank 2": (
        ValueError,
        run(xs((T, I))),
        r"xs must have rank 3, \[batch, time, features\]; got shape \(5, 3\)\. For a single sequence, add a batch axis with xs\[None\]",
    ),
    "rank 4": (
        ValueError,
        run(xs((2, B, T, I))),
        r"got shape \(2, 2, 5, 3\)\. Merge the extra leading axes",
    ),
    "rank 2 time-major": (
        ValueError,
        run(xs((T, I)), time_major=True),
        r"\[time, batch, features\]",
    ),
    "python list": (ValueError, run([[1.0, 2.0, 3.0]]), r"xs must have rank 3.*got shape \(1, 3\)"),
    "ragged list": (
        TypeError,
        run([[[1.0, 2.0, 3.0]], [[1.0]]]),
        r"xs must be an array; got a list that is not a regular nested list",
    ),
    "a string": (TypeError, run("abc"), r"xs must be an array; got str"),
    "int inputs": (
        TypeError,
        run(xs(dtype=jnp.int32)),
        r"xs must be a floating-point array.*got dtype int32.*embedding",
    ),
    "bool inputs": (TypeError, run(xs(dtype=jnp.bool_)), r"floating-point.*got dtype bool"),
    "feature size reported in the user's layout": (
        ValueError,
        run(xs((32, 100, 8))),
        r"inputs have 8 features",
    ),
    "carry of wrong shape": (
        ValueError,
        run(xs(), lj.LSTMCarry(jnp.zeros((B, H + 1)), jnp.zeros((B, H + 1)))),
        r"unroll: carry\.h has shape \(2, 5\), expected \(2, 4\)",
    ),
    "array where (h, c) is needed": (
        ValueError,
        run(xs(), jnp.zeros((B, H))),
        r"carry has structure .*expected",
    ),
    "carry of wrong batch": (
        ValueError,
        run(xs(), lj.LSTMCarry(jnp.zeros((3, H)), jnp.zeros((3, H)))),
        r"carry\.h has shape \(3, 4\), expected \(2, 4\)",
    ),
    "lengths of wrong shape": (
        ValueError,
        run(xs(), lengths=jnp.array([1, 2, 3])),
        r"lengths must have shape \[batch\] = \(2,\); got shape \(3,\)",
    ),
    "float lengths": (
        TypeError,
        run(xs(), lengths=jnp.array([1.0, 2.0])),
        r"lengths must be an integer array; got dtype float",
    ),
    "lengths too long": (
        ValueError,
        run(xs(), lengths=jnp.array([5, 6])),
        r"lengths must lie in \[0, T\] = \[0, 5\]; got 6 at 1 \(1 of 2 out of range\)",
    ),
    "negative lengths": (ValueError, run(xs(), lengths=np.array([-1, 2])), r"got -1 at 0"),
    "lengths as a list": (ValueError, run(xs(), lengths=[9, 2]), r"got 9 at 0"),
    "resets of wrong shape": (
        ValueError,
        run(xs(), resets=jnp.zeros((B, T + 1), bool)),
        r"resets must have shape \[batch, time\] = \(2, 5\); got shape \(2, 6\)",
    ),
    "int resets": (
        TypeError,
        run(xs(), resets=jnp.zeros((B, T), jnp.int32)),
        r"resets must be a bool array; got dtype int32",
    ),
    "unknown method": (
        ValueError,
        run(xs(), method="fast"),
        r"unroll: method must be 'auto', one of \['affine', 'elk', 'fused', 'newton', 'quasi_newton', 'scan'\], or an option object .*got 'fast'",
    ),
    "method class not object": (
        TypeError,
        run(xs(), method=lj.Scan),
        r"method must be an option object, e.g. lj.Scan\(\); got the class lj.Scan itself",
    ),
    "unknown projection": (
        ValueError,
        lambda: lj.Scan(projection="gpu"),
        r"Scan: projection must be one of \['auto', 'hoisted', 'per_step'\]; got 'gpu'",
    ),
    "bad column_blocks": (
        ValueError,
        lambda: lj.Scan(column_blocks="yes"),
        r"Scan: column_blocks must be 'auto', True or False; got 'yes'",
    ),
    "unroll 0": (ValueError, lambda: lj.Scan(unroll=0), r"Scan: unroll must be an int >= 1; got 0"),
    "remat 0": (
        ValueError,
        lambda: lj.Scan(remat=0),
        r"Scan: remat must be False, True or a positive int",
    ),
    "affine chunk 0": (
        ValueError,
        lambda: lj.Affine(chunk=0),
        r"Affine: chunk must be an int >= 1",
    ),
    "affine algorithm": (
        ValueError,
        lambda: lj.Affine(algorithm="fast"),
        r"Affine: algorithm must be one of \['auto', 'sequential'.*got 'fast'",
    ),
    "elk damping": (ValueError, lambda: lj.ELK(damping=-1.0), r"ELK: damping must be >= 0"),
    "newton jacobian_limit": (
        TypeError,
        lambda: lj.Newton(jacobian_limit=None),
        r"Newton: jacobian_limit must be an int >= 1; got None",
    ),
    "mask shape": (
        ValueError,
        run(xs(), mask=jnp.ones((T, B), bool)),
        r"unroll: mask must have shape \[batch, time\] = \(2, 5\); got shape \(5, 2\) \(the transpose: it follows the layout of xs, set by time_major\)",
    ),
    "mask int": (
        TypeError,
        run(xs(), mask=jnp.ones((B, T), jnp.int32)),
        r"mask must be a bool array; got dtype int32",
    ),
    "reverse as str": (
        TypeError,
        run(xs(), reverse="yes"),
        r"reverse must be True or False; got 'yes'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_clear_errors(case):
    error, call, pattern = CASES[case]
    assert_clear(error, call, pattern)


def test_many_bad_lengths_name_the_first_few():
    lengths = np.full(32, 9)
    message = assert_clear(
        ValueError, run(xs((32, T, I)), lengths=lengths), r"and 27 more \(32 of 32"
    )
    assert message.count(" at ") == 5


def test_lengths_under_jit_are_clipped_as_documented():
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    clipped = jax.jit(lambda lengths: lj.unroll(CELL, PARAMS, x, lengths=lengths))(
        jnp.array([9, -2])
    )
    expected = lj.unroll(CELL, PARAMS, x, lengths=jnp.array([5, 0]))
    np.testing.assert_allclose(clipped[0], expected[0], rtol=1e-6, atol=1e-7)
