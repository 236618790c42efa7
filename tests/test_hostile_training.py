"""Hostile inputs to training, ensembles, devices and processes.

Each case must raise a clear error from inside lstmjax (`hostile.assert_clear`).
The multi-process cases (unequal local batches, different replicas, a
coordinator that never starts) run whole jobs and live in
`test_hostile_multiprocess.py` (integration tier); the meeting that
`distributed.initialize` holds before JAX's handshake is pure Python and is
checked here, with threads standing in for processes.
"""

from __future__ import annotations

import socket
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hostile import assert_clear

from lstmjax import distributed, train
from lstmjax._training import rendezvous

KEY = jax.random.key(0)
OPT = optax.sgd(0.1)
STATE = train.init_state({"w": jnp.ones(3)}, OPT)
POPULATION = jax.vmap(lambda k: train.init_state({"w": jnp.ones(3)}, OPT))(jax.random.split(KEY, 4))
MESH = distributed.make_mesh(jax.devices()[:1])


def step_fn(state, batch):
    return state, {"loss": jnp.zeros(())}


def shard_of(key):
    return jnp.ones((2, 1))


CASES = {
    # --- ensembles -------------------------------------------------------------------
    "member_state past the population": (
        ValueError,
        lambda: train.member_state(POPULATION, 4),
        r"m must be an int in \[0, 4\) \(4 members\); got 4",
    ),
    "member_state negative": (
        ValueError,
        lambda: train.member_state(POPULATION, -1),
        r"m must be an int in \[0, 4\).*got -1",
    ),
    "member_state float": (
        TypeError,
        lambda: train.member_state(POPULATION, 1.0),
        r"m must be an int in \[0, 4\).*got 1\.0 \(float\)",
    ),
    "member_state of one run": (
        ValueError,
        lambda: train.member_state(STATE, 0),
        r"member_state: state is not a population: its step has shape \(\)",
    ),
    "member_state of params": (
        TypeError,
        lambda: train.member_state({"w": jnp.ones((4, 3))}, 0),
        r"member_state: state must be a train\.TrainState.*got dict",
    ),
    "ensemble of a non-callable": (
        TypeError,
        lambda: train.ensemble(STATE),
        r"ensemble: step must be callable; got TrainState",
    ),
    # --- the training step and loop --------------------------------------------------
    "init_state int key": (
        TypeError,
        lambda: train.init_state({"w": jnp.ones(3)}, OPT, key=3),
        r"init_state: key must be a jax\.random key.*got int",
    ),
    "init_state optimizer factory": (
        TypeError,
        lambda: train.init_state({"w": jnp.ones(3)}, optax.adam),
        r"init_state: optimizer must be an optax\.GradientTransformation.*got function",
    ),
    "keyed_batches int seed": (
        TypeError,
        lambda: train.keyed_batches(0, shard_of),
        r"keyed_batches: key must be a jax\.random key.*got int",
    ),
    "keyed_batches not callable": (
        TypeError,
        lambda: train.keyed_batches(KEY, None),
        r"keyed_batches: make_batch must be callable; got None",
    ),
    "fit batches as a list": (
        TypeError,
        lambda: train.fit(step_fn, STATE, [(jnp.ones(3), jnp.ones(3))], 1),
        r"fit: batch_fn must be callable; got \[",
    ),
    "fit state of params": (
        TypeError,
        lambda: train.fit(step_fn, {"w": jnp.ones(3)}, lambda s: None, 1),
        r"fit: state must be a train\.TrainState.*got dict",
    ),
    "fit step not callable": (
        TypeError,
        lambda: train.fit(None, STATE, lambda s: None, 1),
        r"fit: step_fn must be callable; got None",
    ),
    # --- shards of a global batch ----------------------------------------------------
    "shard_range index past the processes": (
        ValueError,
        lambda: distributed.shard_range(4, 2, 2),
        r"process_index must be an int in \[0, 2\) \(2 processes\); got 2",
    ),
    "shard_range negative index": (
        ValueError,
        lambda: distributed.shard_range(4, -1, 2),
        r"process_index must be an int in \[0, 2\).*got -1",
    ),
    "shard_range zero processes": (
        ValueError,
        lambda: distributed.shard_range(4, 0, 0),
        r"process_count must be an int >= 1; got 0",
    ),
    "shard_range float count": (
        TypeError,
        lambda: distributed.shard_range(4, 0, 1.5),
        r"process_count must be an int >= 1; got 1\.5",
    ),
    "shard_range uneven": (
        ValueError,
        lambda: distributed.shard_range(3, 0, 2),
        r"num_shards=3 cannot be split evenly over 2 processes",
    ),
    "keyed_shards int seed": (
        TypeError,
        lambda: distributed.keyed_shards(0, shard_of, 4, process_index=0, process_count=1),
        r"keyed_shards: key must be a jax\.random key.*got int",
    ),
    "keyed_shards index past the processes": (
        ValueError,
        lambda: distributed.keyed_shards(KEY, shard_of, 4, process_index=3, process_count=2),
        r"process_index must be an int in \[0, 2\).*got 3",
    ),
    "keyed_shards not callable": (
        TypeError,
        lambda: distributed.keyed_shards(KEY, "shard", 4),
        r"keyed_shards: make_shard must be callable; got 'shard'",
    ),
    # --- meshes and placement --------------------------------------------------------
    "make_mesh of ints": (
        TypeError,
        lambda: distributed.make_mesh([0, 1]),
        r"make_mesh: devices\[0\] must be a jax device.*got 0 \(int\)",
    ),
    "make_mesh of one device": (
        TypeError,
        lambda: distributed.make_mesh(jax.devices()[0]),
        r"make_mesh: devices must be a sequence of jax devices.*got",
    ),
    "make_mesh twice the device": (
        ValueError,
        lambda: distributed.make_mesh(jax.devices()[:1] * 2),
        r"make_mesh: devices lists a device twice",
    ),
    "shard with a mesh of another axis": (
        ValueError,
        lambda: distributed.shard(
            step_fn, jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
        ),
        r"shard: mesh must have an axis named 'batch'.*got axes \('data',\)",
    ),
    "shard_batch with devices for a mesh": (
        TypeError,
        lambda: distributed.shard_batch(jnp.ones((2, 3)), jax.devices()),
        r"shard_batch: mesh must be a jax\.sharding\.Mesh.*got list",
    ),
    "shard_local_batch leaves of other rows": (
        ValueError,
        lambda: distributed.shard_local_batch((jnp.ones((4, 3)), jnp.ones((2, 1))), MESH),
        r"\[1\] has 2 local rows \(shape \(2, 1\)\), but \[0\] has 4; every leaf.*same B_local",
    ),
    "shard_local_batch check_processes str": (
        TypeError,
        lambda: distributed.shard_local_batch(jnp.ones((2, 3)), MESH, check_processes="yes"),
        r"check_processes must be True or False; got 'yes'",
    ),
    "place_state carry axis past the rank": (
        ValueError,
        lambda: distributed.place_state(
            train.init_state({"w": jnp.ones(3)}, OPT, carry=jnp.zeros((2, 4))),
            MESH,
            carry_batch_axis=2,
        ),
        r"place_state: carry_batch_axis=2, but state\.carry has shape \(2, 4\)",
    ),
    "place_state of params": (
        TypeError,
        lambda: distributed.place_state({"w": jnp.ones(3)}, MESH),
        r"place_state: state must be a train\.TrainState.*got dict",
    ),
    # --- initialize: every argument checked before anything changes ------------------
    "initialize address without port": (
        ValueError,
        lambda: distributed.initialize("127.0.0.1", 2, 0),
        r'coordinator_address must be "host:port".*got \'127\.0\.0\.1\'',
    ),
    "initialize port out of range": (
        ValueError,
        lambda: distributed.initialize("127.0.0.1:70000", 2, 0),
        r"port in 1\.\.65535.*got '127\.0\.0\.1:70000'",
    ),
    "initialize address int": (
        TypeError,
        lambda: distributed.initialize(12345, 2, 0),
        r"coordinator_address must be a str \"host:port\" or None; got 12345",
    ),
    "initialize process_id past the processes": (
        ValueError,
        lambda: distributed.initialize("127.0.0.1:1234", 2, 2),
        r"process_id must be an int in \[0, 2\) \(2 processes\); got 2",
    ),
    "initialize zero processes": (
        ValueError,
        lambda: distributed.initialize("127.0.0.1:1234", 0, 0),
        r"num_processes must be an int >= 1; got 0",
    ),
    "initialize float timeout": (
        TypeError,
        lambda: distributed.initialize("127.0.0.1:1234", 2, 0, initialization_timeout=0.5),
        r"initialization_timeout must be an int >= 1; got 0\.5",
    ),
    "initialize device ids str": (
        TypeError,
        lambda: distributed.initialize("127.0.0.1:1234", 2, 0, local_device_ids="01"),
        r"local_device_ids must be a sequence of ints >= 0 or None; got '01'",
    ),
    "initialize unknown collectives": (
        ValueError,
        lambda: distributed.initialize("127.0.0.1:1234", 2, 1, cpu_collectives="nccl"),
        r"cpu_collectives must be one of \['gloo', 'mpi'\] or None; got 'nccl'",
    ),
    "initialize after JAX started": (
        RuntimeError,
        lambda: distributed.initialize("127.0.0.1:1234", 2, 1),
        r"initialize must come before any other JAX call",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_clear_error(case):
    error, call, pattern = CASES[case]
    assert_clear(error, call, pattern)


def test_initialize_changes_no_setting_before_its_checks_pass():
    before = jax.config.jax_cpu_collectives_implementation
    other = "mpi" if before != "mpi" else "gloo"
    for bad in (dict(process_id=5), dict(heartbeat_timeout_seconds=0)):
        args = dict(process_id=1, cpu_collectives=other) | bad
        with pytest.raises((TypeError, ValueError)):
            distributed.initialize("127.0.0.1:1234", 2, **args)
        assert jax.config.jax_cpu_collectives_implementation == before
    # Valid arguments, but JAX's backends already run in this process: refused, unchanged.
    with pytest.raises(RuntimeError):
        distributed.initialize("127.0.0.1:1234", 2, 1, cpu_collectives=other)
    assert jax.config.jax_cpu_collectives_implementation == before


def test_member_state_picks_the_member_asked_for():
    population = POPULATION._replace(params={"w": jnp.arange(12.0).reshape(4, 3)})
    np.testing.assert_array_equal(train.member_state(population, 3).params["w"], [9, 10, 11])


# --- the meeting before JAX's handshake (threads stand in for processes) --------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def meet_all(address: str, ids_and_counts: list[tuple[int, int]], timeout: float) -> dict:
    """Run `rendezvous.meet` once per (process_id, num_processes) in threads; their outcomes."""
    outcomes = {}

    def one(i, process_id, count):
        try:
            rendezvous.meet(address, count, process_id, timeout=timeout)
            outcomes[i] = "go"
        except Exception as error:  # what each process would raise
            outcomes[i] = error

    threads = [
        threading.Thread(target=one, args=(i, pid, n)) for i, (pid, n) in enumerate(ids_and_counts)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=4 * timeout + 15)
        assert not thread.is_alive(), "a process of the meeting never returned"
    return outcomes


def test_meeting_of_a_whole_job_lets_every_process_go():
    address = f"127.0.0.1:{free_port()}"
    outcomes = meet_all(address, [(1, 3), (2, 3), (0, 3)], timeout=10)
    assert outcomes == {0: "go", 1: "go", 2: "go"}


def test_process_without_its_coordinator_raises_a_timeout():
    address = f"127.0.0.1:{free_port()}"  # nobody listens there
    outcomes = meet_all(address, [(1, 2)], timeout=1)
    assert isinstance(outcomes[0], TimeoutError)
    message = str(outcomes[0])
    assert f"process 1 could not reach process 0 at {address} within" in message
    assert "initialization_timeout=1 s" in message and "Is process 0 running" in message


def test_coordinator_whose_peer_never_comes_raises_a_timeout():
    address = f"127.0.0.1:{free_port()}"
    outcomes = meet_all(address, [(0, 3), (2, 3)], timeout=1)
    for outcome in outcomes.values():  # both running processes hear it
        assert isinstance(outcome, (TimeoutError, ValueError)), outcome
        assert "process [1] of 3 did not join" in str(outcome)
        assert "joined: [0, 2]" in str(outcome)


def test_two_processes_with_one_id_stop_the_job():
    address = f"127.0.0.1:{free_port()}"
    outcomes = meet_all(address, [(0, 3), (1, 3), (1, 3)], timeout=10)
    for outcome in outcomes.values():
        assert isinstance(outcome, ValueError), outcome
        assert "two processes were started with process_id=1" in str(outcome)


def test_processes_disagreeing_on_the_count_stop_the_job():
    address = f"127.0.0.1:{free_port()}"
    outcomes = meet_all(address, [(0, 2), (1, 3)], timeout=10)
    for outcome in outcomes.values():
        assert isinstance(outcome, ValueError), outcome
        assert "process 1 was started with num_processes=3, process 0 with num_processes=2" in (
            str(outcome)
        )


def test_coordinator_port_taken_is_named():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        outcomes = meet_all(address, [(0, 2)], timeout=1)
    assert isinstance(outcomes[0], OSError), outcomes[0]
    assert "process 0 cannot listen on port" in str(outcomes[0])
    assert "choose another port" in str(outcomes[0])
