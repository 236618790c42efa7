"""The meeting before JAX's handshake: every process of a job checks in with process 0.

`jax.distributed.initialize` ends the whole process (a fatal error in its
C++ client, SIGABRT) when process 0 never starts or a peer never joins
within its timeout, so nothing can be caught. `distributed.initialize`
therefore first runs this small handshake in Python, on the coordinator's
own port, bounded by the same `initialization_timeout`:

1. process 0 listens on the port; every other process connects (retrying
   until the deadline) and sends `lstmjax-rendezvous/1 <process_id>
   <num_processes>`;
2. when all `num_processes - 1` have checked in with distinct ids and the
   same count, process 0 answers each "go" and closes the port, and JAX's
   own coordination service takes it over; otherwise it answers "error
   <why>" to every process that checked in and raises the same error.

So a process 0 that never starts, a peer that never comes, two processes
with one id or with different counts raise `TimeoutError` or `ValueError`
in every process that is running. What remains of JAX's own failure mode is
a process dying in the second or so between this meeting and JAX's.
"""

from __future__ import annotations

import socket
import time
from typing import Optional

PROTOCOL = "lstmjax-rendezvous/1"
POLL_S = 0.2  # between connection attempts, and the accept loop's tick


def parse_address(address: str) -> tuple[str, int]:
    """`"host:port"` (IPv6 as `"[::1]:port"`) -> `(host, port)`; raises ValueError."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f'coordinator_address must be "host:port" with a port in 1..65535 (e.g. '
            f'"127.0.0.1:12345"); got {address!r}.'
        )
    return host, int(port)


def meet(address: str, num_processes: int, process_id: int, *, timeout: float) -> None:
    """Run the meeting of the module docstring; returns once every process has checked in."""
    host, port = parse_address(address)
    if process_id == 0:
        _host(port, num_processes, timeout, address)
    else:
        _join(host, port, num_processes, process_id, timeout, address)


def _read_line(conn: socket.socket, limit: int = 4096) -> Optional[str]:
    """One line from `conn`, without its newline; "" at a closed connection, None on timeout."""
    data = b""
    try:
        while not data.endswith(b"\n") and len(data) < limit:
            chunk = conn.recv(limit - len(data))
            if not chunk:
                return ""
            data += chunk
    except TimeoutError:
        return None
    except OSError:
        return ""
    return data.decode(errors="replace").strip()


def _listen(port: int, address: str) -> socket.socket:
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(
                ("", port), family=socket.AF_INET6, dualstack_ipv6=True, reuse_port=False
            )
        return socket.create_server(("", port))
    except OSError as error:
        raise OSError(
            error.errno,
            f"initialize: process 0 cannot listen on port {port} of coordinator_address "
            f"{address!r} ({error.strerror}); another job, or an earlier run still exiting, "
            "may hold it: choose another port",
        ) from None


def _answer(conns, message: str) -> None:
    for conn in conns:
        try:
            conn.sendall((message + "\n").encode())
        except OSError:
            pass  # that process is gone; it cannot be told


def _host(port: int, count: int, timeout: float, address: str) -> None:
    deadline = time.monotonic() + timeout
    server = _listen(port, address)
    joined: dict[int, socket.socket] = {}
    try:
        server.settimeout(POLL_S)
        while len(joined) < count - 1:
            if time.monotonic() > deadline:
                missing = sorted(set(range(1, count)) - set(joined))
                message = (
                    f"initialize: process{'es' if len(missing) > 1 else ''} {missing} of "
                    f"{count} did not join {address} within initialization_timeout={timeout} s "
                    f"(joined: {[0, *sorted(joined)]}). Start every process with the same "
                    "coordinator_address and num_processes and its own process_id, or raise "
                    "initialization_timeout."
                )
                _answer(joined.values(), "error " + message)
                raise TimeoutError(message)
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(max(min(deadline - time.monotonic(), 5.0), POLL_S))
            problem = _admit(conn, _read_line(conn), joined, count)
            if problem is not None:
                _answer([conn, *joined.values()], "error " + problem)
                conn.close()
                raise ValueError(problem)
        _answer(joined.values(), "go")
        for conn in joined.values():  # let the peers close first (no TIME_WAIT on the port)
            conn.settimeout(5.0)
            _read_line(conn)
    finally:
        for conn in joined.values():
            conn.close()
        server.close()


def _admit(conn, hello: Optional[str], joined: dict, count: int) -> Optional[str]:
    """Record a checked-in peer; a problem that stops the job, or None (a stray is ignored)."""
    parts = (hello or "").split()
    if len(parts) != 3 or parts[0] != PROTOCOL or not all(p.isdigit() for p in parts[1:]):
        conn.close()  # not one of ours (a port scanner, a health check): ignored
        return None
    rank, theirs = int(parts[1]), int(parts[2])
    if theirs != count:
        return (
            f"initialize: process {rank} was started with num_processes={theirs}, process 0 "
            f"with num_processes={count}; every process must pass the same number."
        )
    if rank in joined:
        return (
            f"initialize: two processes were started with process_id={rank}; every process "
            f"needs its own id in 0..{count - 1}."
        )
    joined[rank] = conn
    return None


def _join(host: str, port: int, count: int, rank: int, timeout: float, address: str) -> None:
    deadline = time.monotonic() + timeout
    last_error: Optional[OSError] = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            why = f" (last attempt: {last_error.strerror or last_error})" if last_error else ""
            raise TimeoutError(
                f"initialize: process {rank} could not reach process 0 at {address} within "
                f"initialization_timeout={timeout} s{why}. Is process 0 running, with the "
                "same coordinator_address? Start it, or raise initialization_timeout."
            )
        try:
            conn = socket.create_connection((host, port), timeout=min(remaining, 2.0))
            break
        except OSError as error:
            last_error = error
            time.sleep(min(POLL_S, max(remaining, 0.0)))
    with conn:
        conn.sendall(f"{PROTOCOL} {rank} {count}\n".encode())
        # Process 0 answers when every process has checked in, or by its own
        # deadline (which may start later than ours): wait for both, with room.
        conn.settimeout(2 * timeout + 10)
        reply = _read_line(conn)
    if reply == "go":
        return
    if reply is not None and reply.startswith("error "):
        raise ValueError(reply[len("error ") :])
    if reply is None:
        raise TimeoutError(
            f"initialize: process {rank} checked in at {address}, but process 0 never said "
            f"whether the job starts (waited {2 * timeout + 10:.0f} s)."
        )
    raise ConnectionError(
        f"initialize: process {rank} reached {address}, but what answers there is not process "
        "0 of this job (it closed the connection or replied otherwise); check "
        "coordinator_address and that no other job uses that port."
    )
