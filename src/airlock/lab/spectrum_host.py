# SPDX-License-Identifier: MIT
"""A Spectrum-shaped host in the lab, where ``spectrum-update`` runs as Spectrum runs it (#13).

The host's root is built like an OS image and mounted READ-ONLY as ``/`` in its own mount
namespace (``spectrum_boot``): Debian trixie (the sysupdate runtime tree, with systemd 257's
``/usr/lib/systemd/systemd-sysupdate``, python3, httpx, rich, gpgv and sqv), the package layer of
``scripts/make-spectrum-host.sh`` (btrfs-progs, s6, execline, curl, bubblewrap), airlock installed
from the wheel the project builds (``lab.wheel``: no venv, no pip), the lab's stand-ins for
Spectrum's VM tools (``lab/spectrum/``: vm-start, vm-stop, the VMM and the VM), and ``/etc`` as
``airlock render`` writes it plus ``/etc/airlock/host.toml``.  ``/run`` and ``/tmp`` are fresh
tmpfs at each boot, there is no writable ``/var``, user data is a btrfs (loop) at ``/ext`` holding
the staging directory ``/ext/staging``, the ESP is at ``/efi``.  At boot the update VM is
imported as Spectrum does (a 6-character id, ``/run/vm``, ``/run/fs``, a persistent VM mount
namespace) and s6 supervises its VMM service.  The VM runs the Spectrum-style ``download-update``
(stock systemd-sysupdate + curl) in bubblewrap, whose one network is a namespace with the update
server (``airlock serve``, run by the lab outside the host) on loopback.

Everything is driven from outside: ``run`` enters the host's namespace (``nsenter``) with an empty
environment, so ``spectrum-update /ext/staging`` runs with one argument and nothing else.  A
"reboot" (``boot``) tears the namespace down and mounts the root again with a new
``IMAGE_VERSION``; ``/ext``, the disk image and the ESP persist.  ``close`` stops everything and
unmounts the two anchors; the namespace's own mounts (and the btrfs loop device) go with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import string
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from airlock import config, proc
from airlock.errors import HostError
from airlock.lab import disk, images, wheel
from airlock.lab.world import DiskState, describe
from airlock.layout import Layout

VM_NAME = "sys.appvm-systemd-sysupdate"
PORT = 8080
STAGING = "/ext/staging"
DISK = "/run/lab/disk.img"
LAB_TOOLS = ("vm-import", "vm-guest", "download-update")
SPECTRUM_TOOLS = ("vm-start", "vm-stop")
_PATH = "/usr/sbin:/usr/bin"
_STEP = re.compile(r"^‣ ([a-z]+)")
_T = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One ``spectrum-update`` run: its status, its terminal output and what the server sent."""

    exit_status: int
    stdout: str
    stderr: str
    payload_bytes: int
    bytes_sent: int
    duration_s: float

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps it started, in order (from the ``‣ step`` lines on stderr)."""
        return tuple(m.group(1) for m in map(_STEP.match, self.stderr.splitlines()) if m)


class SpectrumHost:
    """The lab host under ``work`` (see the module docstring); a context manager."""

    def __init__(
        self,
        work: Path,
        *,
        wheel_file: Path,
        versions: Sequence[str] = ("1", "2", "3"),
        host_config: Mapping[str, object] | None = None,
        cache: Path | None = None,
    ) -> None:
        self.w = work
        self.wheel_file = wheel_file
        self.versions = tuple(versions)
        self.host_config = dict(host_config or {})
        self.layout = Layout.load(cache)
        self.images: dict[str, images.Images] = {}
        self.booted = self.versions[0]
        self.vm_id = ""
        self._vm_ns = ""  # "mnt:[INODE]" of the VM's namespace, pinned by _vm_ns_fd
        self._vm_ns_fd = -1
        self._stack = contextlib.ExitStack()
        self._running = contextlib.ExitStack()  # what one boot started (s6-svscan)
        self._supervisors: list[int] = []  # the guards of what one boot started
        self._server = contextlib.ExitStack()
        self._last_publish_s = 0
        self.published: list[str] = []  # the versions publish() put on the server, in order

    # -- paths ------------------------------------------------------------------------------
    @property
    def anchor(self) -> Path:
        """The file that keeps the host's mount namespace alive."""
        return self.w / "ns" / "host"

    @property
    def etc_layer(self) -> Path:
        """The layer holding ``/etc`` (render's output and host.toml)."""
        return self.w / "layers" / "etc"

    @property
    def disk(self) -> Path:
        """The GPT disk image with the A/B slots (``/run/lab/disk.img`` inside)."""
        return self.w / "disk.img"

    @property
    def esp(self) -> Path:
        """The ESP (``/efi`` inside)."""
        return self.w / "esp"

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> SpectrumHost:
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _setup(self) -> None:
        layer = self.layout.spectrum_host_layer()
        if layer is None or not self.layout.runtime().stamp.exists():
            raise HostError(
                "The Spectrum host's layers are not built", code="host.lab", hint="make setup"
            )
        self.w.mkdir(parents=True)
        (self.w / "ns").mkdir()
        self._host(["mount", "--bind", self.w / "ns", self.w / "ns"])
        self._stack.callback(self._host, ["umount", "--lazy", self.w / "ns"], check=False)
        self._host(["mount", "--make-private", self.w / "ns"])
        self._keygen()
        for v in self.versions:
            self.images[v] = images.build(self.w / "images", v, runtime=self.layout.runtime().root)
        first = self.images[self.versions[0]]
        disk.create(
            self.disk,
            roothash=first.roothash,
            version=first.version,
            root_image=first.root,
            verity_image=first.verity,
        )
        (self.esp / "EFI/Linux").mkdir(parents=True)
        shutil.copyfile(first.kernel, self.esp / f"EFI/Linux/Spectrum_{first.version}.efi")
        with open(self.w / "userdata.img", "wb") as f:
            f.truncate(512 << 20)
        self._host(["mkfs.btrfs", "-q", "-f", self.w / "userdata.img"])
        self._layers()
        self._network()
        self._layers_below = [
            self.etc_layer,
            self.w / "layers" / "lab",
            self.w / "layers" / "airlock",
            layer,
            self.layout.runtime().root,
        ]
        self._stack.callback(self.shutdown)
        self.boot(self.versions[0])

    def _host(
        self, argv: Sequence[str | os.PathLike[str]], *, check: bool = True, timeout: float = _T
    ) -> proc.Completed:
        # These commands mount, unmount or bind namespaces for the lab: in our mount namespace.
        return proc.run(argv, timeout=timeout, check=check, share_pids=True)

    def _airlock(self, *args: str | os.PathLike[str]) -> proc.Completed:
        """The maintainer's airlock (this one, outside the host)."""
        return proc.run([sys.executable, "-m", "airlock", *args], timeout=_T, inherit_env=True)

    def _keygen(self) -> None:
        out = json.loads(self._airlock("keygen", self.w / "key", "--json").stdout)
        self.gnupghome = Path(str(out["gnupghome"]))
        self.pubring = Path(str(out["pubring"]))
        self.fingerprint = str(out["fingerprint"])
        self._stack.callback(proc.run, ["gpgconf", "--homedir", self.gnupghome, "--kill", "all"],
                             timeout=30, check=False)  # fmt: skip

    def _layers(self) -> None:
        top = self.w / "layers"
        wheel.install(self.wheel_file, top / "airlock")
        lab = top / "lab"
        tools = resources.files("airlock.lab").joinpath("spectrum")
        for names, where in ((SPECTRUM_TOOLS, "usr/bin"), (LAB_TOOLS, "usr/lib/airlock-lab")):
            (lab / where).mkdir(parents=True, exist_ok=True)
            for name in names:
                (lab / where / name).write_bytes(tools.joinpath(name).read_bytes())
                (lab / where / name).chmod(0o755)
        (lab / "ext").mkdir()  # the user data's mount point
        # The ESP's: /efi, not Spectrum's /boot, because a mount point at /boot makes sysupdate
        # probe the block device below it for XBOOTLDR, which this lab's host may not open.
        (lab / "efi").mkdir()
        self._airlock(
            "render", "--version", self.versions[0], "--update-url", f"http://127.0.0.1:{PORT}",
            "--signing-key", self.pubring, "--out", self.etc_layer,
        )  # fmt: skip
        # The lab's root is not on the disk, so Path=auto has nothing to find: name the image.
        for transfer in (self.etc_layer / "etc/sysupdate.d").glob("*.transfer"):
            transfer.write_text(transfer.read_text().replace("Path=auto", f"Path={DISK}"))
        values = {"apply.esp_path": Path("/efi"), **self.host_config}
        (self.etc_layer / "etc/airlock").mkdir()
        (self.etc_layer / "etc/airlock/host.toml").write_text(config.render(values))

    def _network(self) -> None:
        net = self.w / "ns" / "net"
        net.touch()
        self._host(["unshare", f"--net={net}", "true"])
        self._stack.callback(self._host, ["umount", net], check=False)
        self._host(["nsenter", f"--net={net}", "ip", "link", "set", "lo", "up"])
        (self.w / "server").mkdir()
        self.serve_log = self.w / "serve.log"
        self._stack.callback(self._server.close)
        self._serve()

    def _serve(self) -> None:
        """Start ``airlock serve`` in the update network (the lab's update server)."""
        out = self._server.enter_context(open(self.w / "serve.out", "wb"))
        server = self._server.enter_context(proc.spawn(
            ["nsenter", f"--net={self.w / 'ns/net'}", sys.executable, "-m", "airlock", "serve",
             self.w / "server", "--bind", "127.0.0.1", "--port", str(PORT),
             "--log", self.serve_log],
            inherit_env=True, stdout=out, stderr=out,
        ))  # fmt: skip
        deadline = time.monotonic() + 30
        while b"serving" not in (self.w / "serve.out").read_bytes():
            if server.poll() is not None or time.monotonic() > deadline:
                raise HostError("airlock serve did not start", code="host.lab")
            time.sleep(0.1)

    @contextlib.contextmanager
    def server_down(self) -> Iterator[None]:
        """The update server is stopped for the ``with`` block (the VM can fetch nothing)."""
        self._server.close()
        try:
            yield
        finally:
            self._serve()

    # -- boot and shutdown ------------------------------------------------------------------
    def boot(self, version: str) -> None:
        """Mount the root with ``IMAGE_VERSION=version``, import the VM, start s6 (a boot)."""
        os_release = self.etc_layer / "etc/os-release"
        lines = [
            f"IMAGE_VERSION={version}" if line.startswith("IMAGE_VERSION=") else line
            for line in os_release.read_text().splitlines()
        ]
        os_release.write_text("\n".join(lines) + "\n")
        self.booted = version
        root = self.w / "root"
        root.mkdir(exist_ok=True)
        self.anchor.touch()
        spec = {
            "root": os.fspath(root),
            "layers": [os.fspath(p) for p in self._layers_below],
            "userdata": os.fspath(self.w / "userdata.img"),
            "esp": os.fspath(self.esp),
            "plumbing": {"disk.img": os.fspath(self.disk), "netns": os.fspath(self.w / "ns/net")},
        }
        proc.run(
            ["unshare", f"--mount={self.anchor}", "--propagation", "private", sys.executable,
             "-m", "airlock.lab.spectrum_boot", json.dumps(spec)],
            timeout=_T, inherit_env=True, share_pids=True,  # binds the namespace on the anchor
        )  # fmt: skip
        self.vm_id = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in "123456")
        # The VM's mount namespace: a copy of the host's (slave), kept by a holder process.
        holder = self._running.enter_context(
            proc.spawn(
                self.enter(["unshare", "--mount", "--propagation", "slave", "sleep", "inf"]),
                share_pids=True,
            )
        )
        pid = self._holder_pid(holder.pid)
        self.run(
            ["/usr/lib/airlock-lab/vm-import", self.vm_id, VM_NAME, f"/proc/{pid}/ns/mnt"],
            check=True,
        )
        svscan = self._running.enter_context(
            proc.spawn(self.enter(["s6-svscan", "/run/service/vmm/instance"]), share_pids=True)
        )
        self._supervisors = [holder.pid, svscan.pid]
        deadline = time.monotonic() + 30
        while self.vmm() is None:
            if time.monotonic() > deadline:
                raise HostError("the VMM service did not come up", code="host.lab")
            time.sleep(0.1)

    def _holder_pid(self, spawned: int) -> int:
        """The descendant of ``spawned`` that is in a mount namespace of its own (the VM's)."""
        known = {os.readlink("/proc/self/ns/mnt"), f"mnt:[{os.stat(self.anchor).st_ino}]"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            todo, seen = [spawned], []
            while todo:
                pid = todo.pop()
                seen.append(pid)
                with contextlib.suppress(OSError):
                    for task in os.listdir(f"/proc/{pid}/task"):
                        children = Path(f"/proc/{pid}/task/{task}/children").read_text()
                        todo += [int(c) for c in children.split()]
            for pid in seen:
                with contextlib.suppress(OSError):
                    ns = os.readlink(f"/proc/{pid}/ns/mnt")
                    if ns not in known and self._pin_vm_ns(pid, ns):
                        return pid
            time.sleep(0.02)
        raise HostError("the VM's namespace holder did not start", code="host.lab")

    def supervisors(self) -> tuple[int, ...]:
        """The guards of the processes this boot started (s6-svscan, the VM's namespace holder):
        everything below them is the host's own — s6 restarts the idle VMM after each update."""
        return tuple(self._supervisors)

    def _pin_vm_ns(self, pid: int, ns: str) -> bool:
        """Hold the VM's mount namespace open while the lab may look for its processes.

        ``processes()`` tells the host's processes by their namespace's inode number; a freed
        namespace's number is soon given to a new one (any process on the machine that makes a
        mount namespace, e.g. another test session's guard), which would be killed as ours."""
        try:
            fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        if os.readlink(f"/proc/self/fd/{fd}") != ns:  # pid ended and was reused meanwhile
            os.close(fd)
            return False
        self._unpin_vm_ns()
        self._vm_ns, self._vm_ns_fd = ns, fd
        return True

    def _unpin_vm_ns(self) -> None:
        if self._vm_ns_fd >= 0:
            os.close(self._vm_ns_fd)
        self._vm_ns, self._vm_ns_fd = "", -1

    def vmm(self) -> int | None:
        """The pid of the VM's idle VMM (its s6 service), or ``None`` while it is down."""
        out = self.run(
            ["s6-svstat", "-o", "up,pid", f"/run/service/vmm/instance/{self.vm_id}"]
        ).stdout.split()
        return int(out[1]) if len(out) == 2 and out[0] == b"true" else None

    def shutdown(self) -> None:
        """Stop s6 and every process left in the host's namespace, then let the namespace go."""
        if not self.anchor.exists():
            return
        self.run(["s6-svscanctl", "-t", "/run/service/vmm/instance"])
        deadline = time.monotonic() + 20
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._running.close()
        self._supervisors = []
        for pid in self.processes():  # both namespaces are still pinned: only ours match
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        self._unpin_vm_ns()
        self._host(["umount", self.anchor], check=False)
        self.anchor.unlink(missing_ok=True)

    def processes(self) -> list[int]:
        """Pids whose mount namespace is the host's or its VM's (both made by the lab)."""
        try:
            ns = {f"mnt:[{os.stat(self.anchor).st_ino}]"} | ({self._vm_ns} - {""})
        except OSError:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/mnt") in ns:
                        found.append(int(entry))
        return found

    # -- running things inside --------------------------------------------------------------
    def enter(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run on the host: in its namespace, environment emptied but PATH, LANG."""
        return ["nsenter", f"--mount={self.anchor}", "--", "/usr/bin/env", "-i", f"PATH={_PATH}",
                "LANG=C.UTF-8", *argv]  # fmt: skip

    def run(
        self, argv: Sequence[str], *, check: bool = False, timeout: float = _T
    ) -> proc.Completed:
        """Run ``argv`` on the host, as root, with an empty environment (but PATH and LANG)."""
        # In the host's PID namespace, which its /proc shows (mounted at boot), as on a real host.
        return proc.run(self.enter(argv), timeout=timeout, check=check, share_pids=True)

    def spectrum_update(self, *, timeout: float = 600.0) -> Run:
        """``spectrum-update /ext/staging``: one argument, nothing else."""
        start = time.monotonic()
        before, payload_before = self.served(), self.served(payload_only=True)
        done = self.run(["spectrum-update", STAGING], timeout=timeout)
        return Run(
            exit_status=done.returncode,
            stdout=done.stdout.decode("utf-8", "replace"),
            stderr=done.stderr.decode("utf-8", "replace"),
            payload_bytes=self.served(payload_only=True) - payload_before,
            bytes_sent=self.served() - before,
            duration_s=time.monotonic() - start,
        )

    def read(self, path: str) -> bytes:
        """A file of the host, read from inside."""
        return self.run(["cat", "--", path], check=True).stdout

    # -- releases and what the disk holds ---------------------------------------------------
    def publish(self, version: str) -> None:
        """Sign and publish ``version``, in a later second than the previous publish ended in
        (signature times have a one-second resolution and the replay guard compares them).

        Spectrum-compatible (``--no-best-before``): no BEST-BEFORE marker, as Spectrum's own
        releases, so the host can only say "freshness unknown" (docs/adr/0155)."""
        img = self.images[version]
        while int(time.time()) <= self._last_publish_s:
            time.sleep(0.05)
        self._airlock(
            "publish", self.w / "server", "--spectrum", "--version", version,
            "--roothash", img.roothash, "--root", img.root, "--verity", img.verity,
            "--uki", img.kernel, "--gnupghome", self.gnupghome, "--keep", "2", "--no-best-before",
        )  # fmt: skip
        self._last_publish_s = int(time.time())
        self.published.append(version)

    def served(self, *, payload_only: bool = False) -> int:
        """Bytes the update server sent so far (``payload_only``: not manifests or signatures)."""
        total = 0
        if self.serve_log.exists():
            for line in self.serve_log.read_text().splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    entry = json.loads(line)
                    if payload_only and str(entry["path"]).lstrip("/").startswith("SHA256SUMS"):
                        continue
                    total += int(entry["bytes"])
        return total

    def state(self) -> DiskState:
        """Slots and UKIs, each named by the built image it holds."""
        return describe(self.disk, self.esp, self.images)
