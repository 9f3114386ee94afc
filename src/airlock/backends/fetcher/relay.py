# SPDX-License-Identifier: MIT
"""The host end of the QEMU guest's only way out: one process, many connections (ADR 0172).

Run by ``QemuFetcher`` as ``python3 -I -S relay.py --fd N --upstream ADDR:PORT ...`` (standard
library only, no airlock import: it runs as QEMU's unprivileged uid and reaches this file through
a bind).  File descriptor ``N`` is one end of a socketpair whose other end is the chardev of the
guest's virtio-serial port ``airlock.net``; the guest's relay (``airlock/agent/relay.py``)
multiplexes every TCP connection the guest opens to ``10.0.2.100`` over it.  For each ``OPEN``
this process connects to the one configured upstream (the update server on host loopback) and
relays bytes both ways until either side closes.

Everything read from ``N`` is hostile.  The wire format, both directions: a 7-byte header —
type (1 byte), connection id (2 bytes), payload length (4 bytes), big-endian — then the
payload.  ``OPEN`` and ``CLOSE`` carry none, ``DATA`` 1 to ``MAX_PAYLOAD`` bytes; the guest
sends all three, the host only ``DATA`` and ``CLOSE``.  Each side sends exactly one ``CLOSE`` per
connection, the host its last frame for that id; the guest reuses an id only after both.

What this process refuses, and how:

* a frame it cannot parse — an unknown type, a length over ``MAX_PAYLOAD``, a payload on
  ``OPEN``/``CLOSE`` or none on ``DATA``, a frame cut off by EOF — or an ``OPEN`` for an id that
  is open: the whole relay ends (every upstream connection closed), with one line on stderr and
  exit status 1.  The guest's relay never sends any of these; a guest that does is hostile, and
  its fetch fails ("could not check");
* ``DATA`` or ``CLOSE`` for an id that is not open: ignored (the host may just have closed it:
  the two ``CLOSE`` frames cross);
* an ``OPEN`` while ``max_connections`` upstream connections exist: an immediate ``CLOSE``, no
  upstream connection;
* an upstream that refuses, does not answer within ``connect_timeout_s``, sends nothing for
  ``idle_timeout_s`` or does not take a frame within it: that connection gets a ``CLOSE``.

Memory is bounded without queues: one thread per connection reads at most ``MAX_PAYLOAD`` bytes
from upstream and blocks until the guest takes the frame; the demultiplexer holds one frame and
blocks until upstream takes it (so a slow upstream stalls the guest's other connections for at
most ``idle_timeout_s``).  At most ``max_connections`` + 1 threads, ``MAX_PAYLOAD`` bytes each.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import threading
from collections.abc import Sequence

HEADER = struct.Struct("!BHI")  # type, connection id, payload length
OPEN, DATA, CLOSE = 1, 2, 3
MAX_PAYLOAD = 1 << 16
CONNECT_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 120.0
CLOSING_WAIT_S = 1.0
_THREAD_STACK = 256 << 10


class ProtocolError(Exception):
    """The guest broke the framing: the relay ends."""


class _Connection:
    """One upstream connection; ``lock`` serialises writes to ``sock`` with its close."""

    __slots__ = ("lock", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()


class Forwarder:
    """Demultiplexes the guest's frames from ``guest`` onto TCP connections to ``upstream``."""

    def __init__(
        self,
        guest: socket.socket,
        upstream: tuple[str, int],
        *,
        max_connections: int,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        """Relay for the guest behind ``guest`` (a connected stream socket; we own it)."""
        self._guest = guest
        self._upstream = upstream
        self._max = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._send_lock = threading.Lock()  # one frame at a time towards the guest
        self._lock = threading.Condition()  # guards _open and _active
        self._open: dict[int, _Connection] = {}
        self._active = 0  # upstream sockets not yet closed (open, or closing in their thread)
        self._buffer = bytearray(HEADER.size + MAX_PAYLOAD)

    def run(self) -> None:
        """Relay until the guest's end closes.

        Raises:
            ProtocolError: the guest broke the framing (the caller ends the relay).
            OSError: the guest's socket failed.
        """
        try:
            while True:
                header = self._read(HEADER.size, at_boundary=True)
                if not header:
                    return
                kind, cid, length = HEADER.unpack(header)
                if kind not in (OPEN, DATA, CLOSE):
                    raise ProtocolError(f"unknown frame type {kind}")
                if length > MAX_PAYLOAD:
                    raise ProtocolError(f"frame length {length} over {MAX_PAYLOAD}")
                if (kind == DATA) != (length > 0):
                    raise ProtocolError(f"frame type {kind} with payload length {length}")
                if kind == OPEN:
                    self._on_open(cid)
                elif kind == DATA:
                    self._on_data(cid, self._read(length))
                else:
                    self._on_close(cid)
        finally:
            self.close()

    def close(self) -> None:
        """End every upstream connection and the guest's end (their threads then finish)."""
        with self._lock:
            conns, self._open = list(self._open.values()), {}
        for conn in conns:
            _shutdown(conn.sock)
        _shutdown(self._guest)

    def active(self) -> int:
        """Upstream connections not yet closed."""
        with self._lock:
            return self._active

    # -- guest to host --------------------------------------------------------------------

    def _read(self, size: int, *, at_boundary: bool = False) -> bytes:
        """Exactly ``size`` bytes; ``b""`` at a clean EOF ``at_boundary``."""
        view = memoryview(self._buffer)[:size]
        got = 0
        while got < size:
            n = self._guest.recv_into(view[got:])
            if n == 0:
                if at_boundary and got == 0:
                    return b""
                raise ProtocolError(f"frame cut off after {got} of {size} bytes")
            got += n
        return bytes(view)

    def _on_open(self, cid: int) -> None:
        with self._lock:
            if cid in self._open:
                raise ProtocolError(f"OPEN for connection {cid}, which is open")
            # A connection closed a moment ago counts until its thread has closed the socket:
            # wait for that briefly, so that a guest closing and reopening is not refused.
            self._lock.wait_for(
                lambda: self._active < self._max or self._active == len(self._open),
                timeout=CLOSING_WAIT_S,
            )
            full = self._active >= self._max
            if not full:
                self._active += 1
        if full:
            self._send(CLOSE, cid)  # over max_connections: no upstream connection at all
            return
        try:
            sock = socket.create_connection(self._upstream, timeout=self._connect_timeout_s)
        except OSError:
            self._release()
            self._send(CLOSE, cid)
            return
        sock.settimeout(self._idle_timeout_s)
        conn = _Connection(sock)
        with self._lock:
            self._open[cid] = conn
        threading.Thread(target=self._pump, args=(cid, conn), daemon=True).start()

    def _on_data(self, cid: int, payload: bytes) -> None:
        with self._lock:
            conn = self._open.get(cid)
        if conn is None:
            return  # closed by us a moment ago (the CLOSE frames cross), or never opened
        with conn.lock:
            try:
                conn.sock.sendall(payload)  # blocks: backpressure, bounded by idle_timeout_s
                return
            except OSError:
                pass
        self._forget(cid, conn)

    def _on_close(self, cid: int) -> None:
        with self._lock:
            conn = self._open.get(cid)
        if conn is not None:
            self._forget(cid, conn)  # its thread sends our CLOSE, after its last DATA

    def _forget(self, cid: int, conn: _Connection) -> None:
        with self._lock:
            if self._open.get(cid) is conn:
                del self._open[cid]
        _shutdown(conn.sock)  # wakes the thread's recv

    def _release(self) -> None:
        with self._lock:
            self._active -= 1
            self._lock.notify_all()

    # -- host to guest --------------------------------------------------------------------

    def _pump(self, cid: int, conn: _Connection) -> None:
        """Upstream to guest for one connection; ends with its one CLOSE."""
        try:
            while True:
                data = conn.sock.recv(MAX_PAYLOAD)
                if not data or not self._send(DATA, cid, data):
                    break
        except OSError:
            pass  # reset, shut down by _forget, or idle for idle_timeout_s
        self._forget(cid, conn)  # before our CLOSE: the guest may reuse the id after it
        with conn.lock:
            conn.sock.close()
        self._release()
        self._send(CLOSE, cid)

    def _send(self, kind: int, cid: int, payload: bytes = b"") -> bool:
        frame = HEADER.pack(kind, cid, len(payload)) + payload
        with self._send_lock:
            try:
                self._guest.sendall(frame)  # blocks while the guest does not read: backpressure
                return True
            except OSError:
                _shutdown(self._guest)  # the guest's end is gone: run() sees EOF and ends
                return False


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected, or closed already


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("must be ADDRESS:PORT")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Relay on the inherited descriptor; 0 when the guest's end closed, 1 on a refusal."""
    parser = argparse.ArgumentParser(prog="airlock-relay")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--upstream", type=_address, required=True)
    parser.add_argument("--max-connections", type=int, required=True)
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S)
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S)
    args = parser.parse_args(argv)
    try:
        with socket.socket(fileno=args.fd) as guest:
            Forwarder(
                guest,
                args.upstream,
                max_connections=args.max_connections,
                connect_timeout_s=args.connect_timeout,
                idle_timeout_s=args.idle_timeout,
            ).run()
    except ProtocolError as exc:
        _say(f"refusing the guest's frames: {exc}; relay ended")
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback (hostile input)
        _say(f"relay failed: {type(exc).__name__}: {exc}")
        return 1
    return 0


def _say(line: str) -> None:
    # Only our own words and numbers: nothing the guest sent is echoed.
    sys.stderr.write(f"airlock-relay: {line}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    threading.stack_size(_THREAD_STACK)  # one thread per connection; they hold little
    code = main()
    os._exit(code)  # daemon threads may still block on a socket: do not wait for them
