# SPDX-License-Identifier: MIT
"""airlock serve on loopback: ranges, validators, logging, fault switches, refusals."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airlock.release import serve

DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    (r / "a.img").write_bytes(DATA)
    (r / "sub").mkdir()
    (r / "sub" / "b.txt").write_bytes(b"hello world\n")
    (tmp_path / "secret").write_bytes(b"outside")
    os.symlink(tmp_path / "secret", r / "link-out")
    os.symlink("a.img", r / "link-in")
    os.symlink(tmp_path, r / "dirlink")
    return r


@pytest.fixture
def server(root: Path, tmp_path: Path) -> Iterator[serve.Server]:
    cfg = serve.ServeConfig(root=root, log_path=tmp_path / "log.jsonl")
    with serve.serving(cfg) as s:
        yield s


def get(
    s: serve.Server, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def test_default_bind_is_loopback(root: Path) -> None:
    assert serve.ServeConfig(root=root).bind == "127.0.0.1"


def test_full_get_and_validators(server: serve.Server) -> None:
    status, headers, body = get(server, "/a.img")
    assert status == 200
    assert body == DATA
    assert headers["content-length"] == str(len(DATA))
    assert headers["etag"].startswith('"')
    assert headers["last-modified"].endswith("GMT")
    assert headers["accept-ranges"] == "bytes"


def test_head_has_no_body(server: serve.Server) -> None:
    status, headers, body = get(server, "/a.img", method="HEAD")
    assert status == 200
    assert body == b""
    assert headers["content-length"] == str(len(DATA))


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=100-", 100, len(DATA) - 1),
        ("bytes=-16", len(DATA) - 16, len(DATA) - 1),
        ("bytes=10000-99999", 10000, len(DATA) - 1),
    ],
)
def test_range(server: serve.Server, spec: str, first: int, last: int) -> None:
    status, headers, body = get(server, "/a.img", {"Range": spec})
    assert status == 206
    assert body == DATA[first : last + 1]
    assert headers["content-range"] == f"bytes {first}-{last}/{len(DATA)}"


def test_unsatisfiable_range(server: serve.Server) -> None:
    status, headers, _ = get(server, "/a.img", {"Range": "bytes=999999-"})
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(DATA)}"


def test_multi_range_gets_whole_file(server: serve.Server) -> None:
    status, _, body = get(server, "/a.img", {"Range": "bytes=0-1,5-6"})
    assert status == 200
    assert body == DATA


def test_if_range(server: serve.Server) -> None:
    _, headers, _ = get(server, "/a.img", method="HEAD")
    status, _, body = get(server, "/a.img", {"Range": "bytes=5-", "If-Range": headers["etag"]})
    assert status == 206
    assert body == DATA[5:]
    status, _, body = get(
        server, "/a.img", {"Range": "bytes=5-", "If-Range": headers["last-modified"]}
    )
    assert status == 206
    # A changed validator (the file was replaced) means the whole new file.
    status, _, body = get(server, "/a.img", {"Range": "bytes=5-", "If-Range": '"other"'})
    assert status == 200
    assert body == DATA


def test_if_none_match(server: serve.Server) -> None:
    _, headers, _ = get(server, "/a.img", method="HEAD")
    status, _, body = get(server, "/a.img", {"If-None-Match": headers["etag"]})
    assert status == 304
    assert body == b""


def test_subdirectory_file(server: serve.Server) -> None:
    assert get(server, "/sub/b.txt")[2] == b"hello world\n"
    assert get(server, "/sub%2fb.txt")[2] == b"hello world\n"  # an encoded / is still inside


@pytest.mark.parametrize(
    "path",
    [
        "/../secret",
        "/sub/../../secret",
        "/%2e%2e/secret",
        "/link-out",
        "/link-in",
        "/dirlink/secret",
        "/sub",
        "/",
        "/missing",
        "/a.img%00",
        "/%ff",
        "/..%2fsecret",
        "/sub%2f..%2f..%2fsecret",
        "/sub/%2e%2e/%2e%2e/secret",
    ],
)
def test_refuses_outside_root_symlinks_and_directories(server: serve.Server, path: str) -> None:
    status, _, body = get(server, path)
    assert status == 404
    assert b"outside" not in body


def test_negative_control_symlink_target_is_readable(root: Path) -> None:
    # The detector above is meaningful: the symlink really points at a readable file.
    assert (root / "link-out").read_bytes() == b"outside"
    assert (root / "link-in").read_bytes() == DATA


def test_method_not_allowed(server: serve.Server) -> None:
    assert get(server, "/a.img", method="POST")[0] == 501


def test_log_counts_bytes(server: serve.Server, tmp_path: Path) -> None:
    get(server, "/a.img")
    get(server, "/a.img", {"Range": "bytes=0-99"})
    get(server, "/missing")
    server.wait_requests(3)
    assert server.bytes_served()["a.img"] == len(DATA) + 100
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(e["path"], e["status"], e["bytes"]) for e in lines] == [
        ("a.img", 200, len(DATA)),
        ("a.img", 206, 100),
        ("missing", 404, 0),
    ]


def test_log_escapes_hostile_names(server: serve.Server, tmp_path: Path) -> None:
    get(server, "/%1b%5b31mevil")
    server.wait_requests(1)
    entry = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert "\x1b" not in entry["path"]
    assert "\\x1b" in entry["path"]


def test_fault_cut_after(root: Path) -> None:
    cfg = serve.ServeConfig(root=root, faults=serve.Faults(cut_after_bytes={"a.img": 1000}))
    with serve.serving(cfg) as s:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        conn.request("GET", "/a.img")
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        conn.close()
        assert info.value.partial == DATA[:1000]
        s.wait_requests(1)
        assert s.bytes_served()["a.img"] == 1000
        # Other files are unaffected.
        assert get(s, "/sub/b.txt")[0] == 200


def test_fault_status_and_delay(root: Path) -> None:
    faults = serve.Faults(status={"a.img": 500, "b.txt": 404}, delay_s={"*": 0.2})
    with serve.serving(serve.ServeConfig(root=root, faults=faults)) as s:
        import time

        t0 = time.monotonic()
        assert get(s, "/a.img")[0] == 500
        assert time.monotonic() - t0 >= 0.2
        assert get(s, "/sub/b.txt")[0] == 404


def test_keep_alive_two_requests_one_connection(server: serve.Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/sub/b.txt")
    assert conn.getresponse().read() == b"hello world\n"
    conn.request("GET", "/a.img", headers={"Range": "bytes=0-3"})
    assert conn.getresponse().read() == DATA[:4]
    conn.close()


def test_connection_limit(root: Path) -> None:
    cfg = serve.ServeConfig(root=root, max_connections=1, idle_timeout_s=5)
    with serve.serving(cfg) as s:
        hog = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        try:
            hog.sendall(b"GET /a.img HTTP/1.1\r\nHost: x\r\n")  # incomplete: holds the slot
            import time

            time.sleep(0.2)
            extra = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            extra.sendall(b"GET /sub/b.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            assert extra.recv(100) == b""  # closed unanswered
            extra.close()
        finally:
            hog.close()


def test_missing_root_is_one_line_error(tmp_path: Path) -> None:
    from airlock.errors import UsageError

    with pytest.raises(UsageError):
        serve.Server(serve.ServeConfig(root=tmp_path / "nope"))


def test_parse_range_edges() -> None:
    assert serve.parse_range("bytes=0-0", 0) is False
    assert serve.parse_range("bytes=-0", 10) is False
    assert serve.parse_range("items=0-1", 10) is None
    assert serve.parse_range("bytes=5-2", 10) is None
    assert serve.parse_range("bytes=a-b", 10) is None


@given(st.text(max_size=40), st.integers(min_value=0, max_value=10**6))
def test_parse_range_total(header: str, size: int) -> None:
    got = serve.parse_range(header, size)
    if isinstance(got, tuple):
        first, last = got
        assert 0 <= first <= last < size
    else:
        assert got in (None, False)


def test_kept_alive_answers_do_not_wait_for_delayed_acks(server: serve.Server) -> None:
    # Without TCP_NODELAY each answer's body waited for the client's delayed ACK of its headers
    # (about 40 ms): 100 small range requests took 4 s or more.  A delta download makes hundreds.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    started = time.monotonic()
    for i in range(100):
        conn.request("GET", "/a.img", headers={"Range": f"bytes={i}-{i + 99}"})
        resp = conn.getresponse()
        assert resp.status == 206
        assert resp.read() == DATA[i : i + 100]
    conn.close()
    assert time.monotonic() - started < 2.0


SOCKETSERVER_REPORT = "Exception occurred during processing of request"


def _reset_connection(port: int) -> None:
    """Connect, then close with RST (SO_LINGER 0) while the server waits for the request line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    time.sleep(0.2)
    sock.close()


def _until(seen: Callable[[], bool], timeout_s: float = 20) -> bool:
    """Whether ``seen`` holds within ``timeout_s`` (the server's thread reports the reset)."""
    deadline = time.monotonic() + timeout_s
    while not seen():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_client_that_resets_its_connection_is_one_log_line_not_a_traceback(
    server: serve.Server, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="airlock.release.serve")
    _reset_connection(server.port)
    assert _until(lambda: any("ConnectionResetError" in r.getMessage() for r in caplog.records))
    # socketserver's own report (a traceback under this header) is not printed.  (Not "no
    # Traceback at all": a handler an earlier in-process CLI test left on a closed stream makes
    # logging print its own "Logging error" traceback in a long session.)
    assert SOCKETSERVER_REPORT not in capfd.readouterr().err
    assert get(server, "/a.img")[0] == 200  # and the server still serves


def test_negative_control_the_same_reset_is_a_traceback_in_a_plain_server(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import http.server
    import threading

    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=plain.serve_forever, daemon=True)
    thread.start()
    err: list[str] = []
    try:
        _reset_connection(plain.server_address[1])

        def reported() -> bool:
            err.append(capfd.readouterr().err)
            return "ConnectionResetError" in "".join(err)

        assert _until(reported)
    finally:
        plain.shutdown()
        plain.server_close()
    assert SOCKETSERVER_REPORT in "".join(err)
    assert "ConnectionResetError" in "".join(err)
