"""Test set-up shared by every test module.

Rank promotion raises, so an accidental broadcast between arrays of
different ranks fails loudly instead of giving a silently wrong shape.
float64 is enabled: the exactness claims (BPTT, finite differences) are
checked in double precision; tests that need float32 ask for it.
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_x64", True)
