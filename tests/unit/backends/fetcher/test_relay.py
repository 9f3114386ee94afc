# SPDX-License-Identifier: MIT
"""airlock/backends/fetcher/relay.py: the host forwarder against a hostile guest (ADR 0172).

The guest's end of the socketpair is driven by hand, frame by frame; the upstream is a real
loopback listener that counts what reaches it.  Each refusal has its control: the same shape,
well-formed, does reach upstream.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airlock.backends.fetcher import relay
from airlock.backends.fetcher.relay import CLOSE, DATA, HEADER, MAX_PAYLOAD, OPEN

WAIT_S = 5.0


def frame(kind: int, cid: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, cid, len(payload)) + payload


def read_frame(sock: socket.socket) -> tuple[int, int, bytes] | None:
    """The next frame the host sent, or None at EOF."""
    header = _exact(sock, HEADER.size)
    if header is None:
        return None
    kind, cid, length = HEADER.unpack(header)
    payload = _exact(sock, length) if length else b""
    assert payload is not None
    return kind, cid, payload


def _exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@dataclass
class Upstream:
    """A loopback server: counts connections, keeps what each sent, optionally streams bytes."""

    port: int = 0
    accepted: int = 0
    received: dict[int, bytearray] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)
    sent: int = 0  # bytes the streaming server managed to hand to the kernel
    stream: int = 0  # bytes to send on each connection

    def open_now(self) -> int:
        return self.accepted - len(self.closed)


@contextlib.contextmanager
def upstream(stream: int = 0) -> Iterator[Upstream]:
    state = Upstream(stream=stream)
    srv = socket.create_server(("127.0.0.1", 0), backlog=128)
    srv.settimeout(0.1)
    state.port = srv.getsockname()[1]
    stop = threading.Event()
    threads: list[threading.Thread] = []
    conns: list[socket.socket] = []

    def handle(index: int, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        buf = state.received.setdefault(index, bytearray())
        chunk = b"\xa5" * 65536
        while not stop.is_set():
            if state.stream and state.sent < state.stream:
                with contextlib.suppress(TimeoutError, OSError):
                    state.sent += conn.send(chunk[: state.stream - state.sent])
                continue
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                break
            buf += data
        state.closed.add(index)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            thread = threading.Thread(target=handle, args=(state.accepted, conn), daemon=True)
            state.accepted += 1
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield state
    finally:
        stop.set()
        acceptor.join(WAIT_S)
        for thread in threads:
            thread.join(WAIT_S)
        for conn in conns:
            conn.close()
        srv.close()


@dataclass
class Running:
    guest: socket.socket
    forwarder: relay.Forwarder
    thread: threading.Thread
    error: list[BaseException]

    def ended(self) -> BaseException | None:
        """Wait for run() to end; what it raised (None: a clean end)."""
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the relay did not end"
        return self.error[0] if self.error else None


@contextlib.contextmanager
def forwarder(
    port: int, *, max_connections: int = 16, idle_timeout_s: float = 30
) -> Iterator[Running]:
    guest, host = socket.socketpair()
    fwd = relay.Forwarder(
        host,
        ("127.0.0.1", port),
        max_connections=max_connections,
        connect_timeout_s=2,
        idle_timeout_s=idle_timeout_s,
    )
    error: list[BaseException] = []

    def run() -> None:
        try:
            fwd.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            error.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    guest.settimeout(WAIT_S)
    try:
        yield Running(guest, fwd, thread, error)
    finally:
        fwd.close()
        thread.join(WAIT_S)
        guest.close()
        host.close()


def test_a_well_formed_connection_reaches_upstream_and_back() -> None:
    with upstream(stream=5) as up, forwarder(up.port) as run:
        run.guest.sendall(frame(OPEN, 1) + frame(DATA, 1, b"hello"))
        assert until(lambda: bytes(up.received.get(0, b"")) == b"hello")
        assert read_frame(run.guest) == (DATA, 1, b"\xa5" * 5)
        run.guest.sendall(frame(CLOSE, 1))
        assert read_frame(run.guest) == (CLOSE, 1, b"")  # the host's one CLOSE
        assert until(lambda: up.closed == {0})
        run.guest.shutdown(socket.SHUT_WR)
        assert run.ended() is None  # EOF at a frame boundary is a clean end
        assert run.forwarder.active() == 0


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (HEADER.pack(0, 1, 0), "unknown frame type 0"),
        (HEADER.pack(4, 1, 0), "unknown frame type 4"),
        (HEADER.pack(255, 1, 0), "unknown frame type 255"),
        (HEADER.pack(DATA, 1, MAX_PAYLOAD + 1), "over 65536"),
        (HEADER.pack(DATA, 1, 2**32 - 1), "over 65536"),
        (HEADER.pack(DATA, 1, 0), "with payload length 0"),
        (frame(OPEN, 2, b"x"), "with payload length 1"),
        (frame(CLOSE, 1, b"x"), "with payload length 1"),
        (frame(OPEN, 1), "OPEN for connection 1, which is open"),
        (HEADER.pack(DATA, 1, 10) + b"short", "cut off after 5 of 10"),
        (HEADER.pack(DATA, 1, 10)[:3], "cut off after 3 of 7"),
    ],
)
def test_a_broken_frame_ends_the_relay_and_every_upstream_connection(raw: bytes, why: str) -> None:
    with upstream() as up, forwarder(up.port) as run:
        run.guest.sendall(frame(OPEN, 1) + frame(DATA, 1, b"before"))
        assert until(lambda: bytes(up.received.get(0, b"")) == b"before")  # control: it works
        run.guest.sendall(raw)
        run.guest.shutdown(socket.SHUT_WR)  # a cut-off frame ends at EOF
        error = run.ended()
        assert isinstance(error, relay.ProtocolError)
        assert why in str(error)
        assert until(lambda: up.closed == {0})  # the open connection was ended too
        assert bytes(up.received[0]) == b"before"  # nothing of the broken frame went up


def test_a_frame_of_the_largest_length_is_relayed_whole() -> None:
    payload = bytes(range(256)) * (MAX_PAYLOAD // 256)
    with upstream() as up, forwarder(up.port) as run:
        run.guest.sendall(frame(OPEN, 1) + frame(DATA, 1, payload))
        assert until(lambda: bytes(up.received.get(0, b"")) == payload)
        assert run.thread.is_alive()


def test_data_and_close_for_an_unknown_id_reach_nobody_and_the_relay_goes_on() -> None:
    with upstream() as up, forwarder(up.port) as run:
        run.guest.sendall(frame(DATA, 7, b"stray") + frame(CLOSE, 9))
        time.sleep(0.3)
        assert up.accepted == 0
        # Control: the same bytes on an opened id do arrive, on the one connection it opened.
        run.guest.sendall(frame(OPEN, 7) + frame(DATA, 7, b"stray"))
        assert until(lambda: bytes(up.received.get(0, b"")) == b"stray")
        assert up.accepted == 1
        assert run.thread.is_alive()


def test_an_open_flood_beyond_max_connections_gets_closes_and_no_upstream_connection() -> None:
    limit, flood = 4, 40
    with upstream() as up, forwarder(up.port, max_connections=limit) as run:
        run.guest.sendall(b"".join(frame(OPEN, cid) for cid in range(1, flood + 1)))
        closes = [read_frame(run.guest) for _ in range(flood - limit)]
        assert closes == [(CLOSE, cid, b"") for cid in range(limit + 1, flood + 1)]
        time.sleep(0.3)
        assert up.accepted == limit
        assert run.forwarder.active() == limit
        # The bound is on connections at once: closing one lets exactly one more through.
        run.guest.sendall(frame(CLOSE, 1))
        assert read_frame(run.guest) == (CLOSE, 1, b"")
        assert until(lambda: run.forwarder.active() == limit - 1)
        run.guest.sendall(frame(OPEN, 1) + frame(OPEN, 99))
        assert read_frame(run.guest) == (CLOSE, 99, b"")
        assert until(lambda: up.accepted == limit + 1)
        assert until(lambda: up.open_now() == limit)


def _kernel_buffers() -> int:
    """The most the kernel queues on the way: TCP's send and receive maxima, the socketpair's."""
    rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return rmem + wmem + (1 << 20)


def test_a_guest_that_never_reads_holds_a_bounded_amount() -> None:
    bound = _kernel_buffers() + MAX_PAYLOAD  # + the one frame the forwarder holds
    total = bound + (32 << 20)
    with upstream(stream=total) as up, forwarder(up.port) as run:
        run.guest.sendall(frame(OPEN, 1))
        assert until(lambda: up.sent > 0)
        time.sleep(1.5)
        held = up.sent  # everything upstream sent is in a buffer or in the forwarder
        assert held < bound
        # Control: a guest that reads gets every byte, so the bound above was backpressure.
        got = 0
        while got < total:
            item = read_frame(run.guest)
            assert item is not None
            assert item[0] == DATA
            assert len(item[2]) <= MAX_PAYLOAD
            got += len(item[2])
        assert got == total
        assert until(lambda: up.sent == total)


def test_an_upstream_that_refuses_gets_a_close() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with forwarder(port) as run:
        run.guest.sendall(frame(OPEN, 3) + frame(DATA, 3, b"lost"))
        assert read_frame(run.guest) == (CLOSE, 3, b"")
        assert run.forwarder.active() == 0
        assert run.thread.is_alive()


def test_an_idle_upstream_is_closed_after_the_idle_timeout() -> None:
    with upstream() as up, forwarder(up.port, idle_timeout_s=0.5) as run:
        run.guest.sendall(frame(OPEN, 1))
        start = time.monotonic()
        assert read_frame(run.guest) == (CLOSE, 1, b"")
        assert 0.4 < time.monotonic() - start < 3
        assert until(lambda: up.closed == {0})


def test_main_says_one_line_and_exits_1_on_a_broken_frame(
    capsys: pytest.CaptureFixture[str],
) -> None:
    guest, host = socket.socketpair()
    with guest:
        guest.sendall(HEADER.pack(77, 1, 0) + b"\x1b[2J")
        guest.shutdown(socket.SHUT_WR)
        args = ["--fd", str(host.detach()), "--upstream", "127.0.0.1:9", "--max-connections", "2"]
        assert relay.main(args) == 1
    err = capsys.readouterr().err
    assert err == "airlock-relay: refusing the guest's frames: unknown frame type 77; relay ended\n"
