"""Data parallelism: a sharded run over 4 host devices matches the single-device run.

The 4 devices are CPU devices forced by `XLA_FLAGS`, which must be set before
JAX starts, so that run happens in a subprocess (`_train_worker.py shard`).
Tolerance: the sharded step reduces the loss and gradient over devices in a
different order than one device does, so the float32 results agree to
rounding, not bit for bit; we ask for relative 1e-5 on the losses over 8
Adam steps and 1e-5 absolute on the final parameters (entries of order 0.1-1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_worker import adding_batches, mse, tiny_lstm_regressor

from lstmjax import distributed, train

WORKER = Path(__file__).with_name("_train_worker.py")
STEPS = 8


@pytest.mark.integration  # a fresh interpreter killed or started mid-run
def test_sharded_losses_equal_single_device_losses_on_4_devices(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(WORKER), "shard", "--steps", str(STEPS), "--batch", "32",
         "--ckpt", str(tmp_path / "ck")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert result["device_count"] == 4 and result["mesh_size"] == 4
    # The batch really is split: 4 shards of 8 rows, one per device.
    for placement in result["placements"]:
        assert placement["spec"] == ["batch"]
        assert placement["devices"] == 4
        assert placement["shards"] == [[8, 10, 2]] * 4
    assert result["param_specs"] == ["[]"]  # the whole state is replicated
    single, sharded = np.array(result["single_losses"]), np.array(result["sharded_losses"])
    assert single.shape == (STEPS,) and single[-1] < single[0]  # it trained
    np.testing.assert_allclose(sharded, single, rtol=1e-5)
    assert result["max_param_diff"] < 1e-5
    # A replicated state survives a checkpoint round trip exactly, replicated again.
    assert result["checkpoint"] == {"exact": True, "devices": [4]}
    message = result["indivisible_error"]
    assert "batch size 6" in message and "4 devices cannot split evenly" in message


def test_same_code_runs_on_one_device():
    # In this process JAX sees one device: the mesh has one entry and the
    # sharded step matches the plain jitted step.
    init, apply = tiny_lstm_regressor()
    optimizer = optax.adam(1e-2)
    mesh = distributed.make_mesh()
    assert mesh.size == jax.device_count() == 1
    state = train.init_state(init(jax.random.key(0)), optimizer, key=jax.random.key(2))
    batches = adding_batches()
    plain = train.make_train_step(apply, mse, optimizer)
    sharded = distributed.shard(plain, mesh)
    a, b = state, distributed.place_state(state, mesh)
    for i in range(3):
        a, ma = plain(a, batches(i))
        b, mb = sharded(b, distributed.shard_batch(batches(i), mesh))
        np.testing.assert_allclose(mb["loss"], ma["loss"], rtol=1e-6)
        np.testing.assert_allclose(mb["grad_norm"], ma["grad_norm"], rtol=1e-6)
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-7)
    assert jnp.issubdtype(b.rng.dtype, jax.dtypes.prng_key)
