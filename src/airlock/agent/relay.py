# SPDX-License-Identifier: MIT
"""The guest end of the update VM's one way out (ADR 0172): TCP in, frames over a serial port.

The QEMU guest has no NIC.  Its init puts ``10.0.2.100`` on ``lo`` and starts this relay, which
listens on ``10.0.2.100:PORT``, so the agent and the VM's own systemd-sysupdate connect to the
update server as before; every accepted connection gets an id and is carried over the
virtio-serial port ``airlock.net`` to the host's forwarder (``airlock.backends.fetcher.relay``,
whose docstring defines the frames; ``HEADER`` and the types here must stay equal to its —
``tests/unit/agent/test_relay.py`` checks).  The host decides which connection reaches the
server and closes the rest.

Runs inside the VM, standard library only, untrusted by the host: it needs no hardening beyond
working.  A connection is full duplex until either side ends it; there is no half-close (a client
that shuts down its sending side ends the connection).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

HEADER = struct.Struct("!BHI")  # type, connection id, payload length
OPEN, DATA, CLOSE = 1, 2, 3
MAX_PAYLOAD = 1 << 16
_IDS = 65535


class _Client:
    __slots__ = ("got_close", "lock", "sent_close", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.sent_close = False
        self.got_close = False


class GuestRelay:
    """Carries the connections accepted on ``listener`` over the port ``fd`` (a stream)."""

    def __init__(self, fd: int, listener: socket.socket) -> None:
        """Relay between ``listener`` and the host's forwarder behind ``fd``."""
        self._fd = fd
        self._listener = listener
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._clients: dict[int, _Client] = {}
        self._next = 0

    def serve(self) -> None:
        """Accept and relay until the host's end closes (then stop accepting)."""
        threading.Thread(target=self._accept, daemon=True).start()
        try:
            self._demux()
        finally:
            _shutdown(self._listener)  # wakes the accept() above (closing alone would not)
            self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            client = _Client(sock)
            cid = self._allocate(client)
            if cid is None or not self._send(OPEN, cid):
                sock.close()
                continue
            threading.Thread(target=self._pump, args=(cid, client), daemon=True).start()

    def _allocate(self, client: _Client) -> int | None:
        with self._lock:
            for _ in range(_IDS):
                self._next = self._next % _IDS + 1
                if self._next not in self._clients:
                    self._clients[self._next] = client
                    return self._next
        return None

    def _pump(self, cid: int, client: _Client) -> None:
        """Client to host; ends with this side's one CLOSE."""
        try:
            while True:
                data = client.sock.recv(MAX_PAYLOAD)
                if not data or not self._send(DATA, cid, data):
                    break
        except OSError:
            pass
        self._send(CLOSE, cid)
        with self._lock:
            client.sent_close = True
            if client.got_close:
                del self._clients[cid]
        with client.lock:
            client.sock.close()

    def _demux(self) -> None:
        while True:
            header = self._read(HEADER.size)
            if len(header) != HEADER.size:
                return  # the host's end closed
            kind, cid, length = HEADER.unpack(header)
            payload = self._read(length) if length else b""
            if len(payload) != length:
                return
            with self._lock:
                client = self._clients.get(cid)
                if client is not None and kind == CLOSE:
                    client.got_close = True
                    if client.sent_close:
                        del self._clients[cid]
            if client is None:
                continue
            if kind == DATA:
                with client.lock:
                    try:
                        client.sock.sendall(payload)
                        continue
                    except OSError:
                        pass
            _shutdown(client.sock)  # CLOSE, or the client is gone: its pump sends our CLOSE

    def _read(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            try:
                chunk = os.read(self._fd, size - len(data))
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def _send(self, kind: int, cid: int, payload: bytes = b"") -> bool:
        frame = memoryview(HEADER.pack(kind, cid, len(payload)) + payload)
        with self._send_lock:
            try:
                while frame:
                    frame = frame[os.write(self._fd, frame) :]
                return True
            except OSError:
                return False


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def find_port(name: str, sysfs: Path = Path("/sys/class/virtio-ports")) -> Path | None:
    """The device of the virtio-serial port called ``name`` (the guest has no udev)."""
    for entry in sorted(sysfs.glob("vport*")):
        try:
            if (entry / "name").read_text().strip() == name:
                return Path("/dev") / entry.name
        except OSError:
            continue
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Listen, say so in ``--ready``, relay until the host's end closes."""
    parser = argparse.ArgumentParser(prog="airlock-guest-relay")
    parser.add_argument("--port-name", default="airlock.net")
    parser.add_argument("--address", required=True)
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args(argv)
    device = find_port(args.port_name)
    if device is None:
        sys.stderr.write(f"airlock-guest-relay: no virtio-serial port {args.port_name}\n")
        return 1
    listener = socket.create_server((args.address, args.listen_port), backlog=128)
    fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    args.ready.write_text("ready\n")
    GuestRelay(fd, listener).serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
