# SPDX-License-Identifier: MIT
"""The lab: a whole Spectrum-like system on one machine, driven through airlock's real CLI.

``Lab`` builds, under one work directory, a signing key, real bootable releases (EROFS root +
dm-verity + UKI per version, see ``airlock.lab.images``), a GPT disk image with Spectrum's layout
(an EFI system partition with systemd-boot and the first version's UKI, then the A/B slots, slot A
= the first version), the ESP's tree as ``$BOOT`` (``airlock.lab.esp``), a loop-backed btrfs
staging filesystem, Spectrum's build-time files rendered by ``airlock render``, an update server
(``airlock serve``) reachable only inside a network namespace made for the lab (no default route),
and a host config that points ``airlock update`` at all of it, with the real agent running in the
bubblewrap sandbox inside that namespace.  ``reboot()`` boots the disk in QEMU
(``airlock.lab.booting``).

Leaving no trace: the lab process first moves into a private mount namespace, and mounts a tmpfs
on ``/run/netns`` there, so every mount it or its children make (btrfs, snapshots, sysupdate's
namespace, the netns handle) disappears with it, and every process it starts (the server, the
updates, their VMs and gpg agents) dies with it (``airlock.proc``), even if it is SIGKILLed.  On a
normal exit it also unmounts, deletes the namespace, stops the server and removes the work
directory (unless asked to keep it); after a kill the work directory is all that is left, and the
next lab removes it (``workdir``).  ``airlock demo`` and ``tests/e2e`` both use this class.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airlock import fsutil, proc, text
from airlock.backends.apply import runtime as sysupdate_runtime
from airlock.backends.openpgp import gpg
from airlock.config import render as render_config
from airlock.errors import HostError
from airlock.formats import manifest
from airlock.lab import booting, disk, esp, images, initramfs, machine, workdir

CLONE_NEWNS = 0x00020000
NETNS = "airlock-lab"
PORT = 8080
VERSIONS = ("1.0", "2.0", "3.0")
REQUIRED_TOOLS = {
    "mkfs.btrfs": "btrfs-progs",
    "btrfs": "btrfs-progs",
    "bwrap": "bubblewrap",
    "veritysetup": "cryptsetup-bin",
    "mkfs.erofs": "erofs-utils",
    "sfdisk": "fdisk",
    "ip": "iproute2",
    "losetup": "util-linux",
    "gpg": "gpg",
    "sqv": "sqv",
    "mkfs.fat": "dosfstools",
    "mcopy": "mtools",
    "cpio": "cpio",
    "modprobe": "kmod",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One ``airlock update`` run as the lab saw it."""

    label: str
    exit_status: int
    outcome: str
    code: str
    message: str
    steps: tuple[tuple[str, float], ...]
    bytes_downloaded: int
    payload_bytes: int
    duration_s: float
    events: tuple[dict[str, object], ...] = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskState:
    """Slots (label, PARTUUID, which image they hold) and the UKIs in ``$BOOT``."""

    slots: tuple[tuple[int, str, str, str], ...]
    boot: tuple[tuple[str, str], ...]

    def as_json(self) -> dict[str, object]:
        """A JSON-friendly form."""
        return {
            "slots": [
                {"number": n, "label": label, "partuuid": uuid, "content": content}
                for n, label, uuid, content in self.slots
            ],
            "boot": [{"name": name, "content": content} for name, content in self.boot],
        }


def check_prerequisites(runtime: str = "auto") -> None:
    """Refuse early, in one line, when the machine lacks what the lab needs.

    ``runtime`` is the systemd-sysupdate the lab's host applies with (``[apply] runtime``).

    Raises:
        HostError: not root, a tool missing, no loop/btrfs support, no sysupdate runtime.
    """
    hint = "run `make demo` as root: it installs everything (scripts/install-deps.sh, make runtime)"
    if os.geteuid() != 0:
        raise HostError(
            "The lab needs root (loop devices, btrfs, namespaces)", code="host.root", hint=hint
        )
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise HostError(
            f"Missing tools from Debian packages: {', '.join(missing)}",
            code="host.tools",
            hint=hint,
        )
    if not Path("/dev/loop-control").exists():
        raise HostError(
            "No loop device support (/dev/loop-control missing)",
            code="host.loop",
            hint="load the loop module (modprobe loop)",
        )
    if "btrfs" not in Path("/proc/filesystems").read_text() and not _can_modprobe("btrfs"):
        raise HostError(
            "The kernel has no btrfs support",
            code="host.btrfs",
            hint="load the btrfs module (modprobe btrfs)",
        )
    sysupdate_runtime.locate(choice=runtime)


def _can_modprobe(module: str) -> bool:
    try:
        proc.run(["modprobe", module], timeout=30)
    except HostError:
        return False
    return True


def enter_private_mount_namespace() -> None:
    """Move this (single-threaded) process into a private mount namespace.

    Raises:
        HostError: unshare(2) failed.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise HostError(
            f"Failed to unshare the mount namespace: {os.strerror(err)}", code="host.namespace"
        )
    proc.run(["mount", "--make-rprivate", "/"], timeout=30, share_mounts=True)


class Lab:
    """A lab world under ``workdir``; use as a context manager (see the module docstring)."""

    def __init__(
        self,
        workdir: Path,
        *,
        keep: bool = False,
        vm_timeout_s: float = 300.0,
        fetcher: str = "sandbox",
        runtime: str = "auto",
        log: Callable[[str], None] | None = None,
        boot_tries: int | None = None,
    ) -> None:
        if fetcher not in ("sandbox", "qemu"):
            raise HostError(
                f"The lab runs the sandbox or qemu fetcher, not {fetcher!r}", code="host.lab"
            )
        self.fetcher = fetcher
        self.runtime = runtime  # [apply] runtime: which systemd-sysupdate applies
        self.boot_tries = boot_tries
        self.w = workdir
        self.keep = keep
        self.vm_timeout_s = vm_timeout_s
        self.log = log or (lambda _msg: None)
        self._stack = contextlib.ExitStack()
        self.images: dict[str, images.Images] = {}
        self.booted = VERSIONS[0]
        self.served_bytes = 0
        self._last_publish_s = 0
        self.fingerprint = ""
        self.initrd: Path | None = None
        self.boots: list[tuple[str, machine.Boot]] = []

    # -- paths -------------------------------------------------------------------------------
    @property
    def disk(self) -> Path:
        return self.w / "disk.img"

    @property
    def esp(self) -> Path:
        return self.w / "boot"

    @property
    def etc(self) -> Path:
        return self.w / "rootfs/etc"

    @property
    def server_dir(self) -> Path:
        return self.w / "server"

    @property
    def staging(self) -> Path:
        return (self.w / workdir.SHARE).parent

    @property
    def config(self) -> Path:
        return self.w / "host.toml"

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _setup(self) -> None:
        check_prerequisites(self.runtime)
        rt = sysupdate_runtime.locate(choice=self.runtime)
        where = "the host's own" if rt.name == "host" else f"runtime {rt.name}, {rt.root}"
        self.log(f"systemd-sysupdate {rt.version} applies ({where})")
        enter_private_mount_namespace()
        created = self._stack.enter_context(workdir.claim(self.w))
        if self.keep:
            self._stack.callback(workdir.keep, self.w)
        elif created:
            self._stack.callback(shutil.rmtree, self.w, ignore_errors=True)
        self.w.chmod(0o755)
        self._keygen()
        self._build_images()
        self._make_disk()
        self._render()
        self._mount_staging()
        self._start_server()
        self.write_config()

    def _airlock(
        self, *args: str | os.PathLike[str], timeout: float = 300, check: bool = True
    ) -> proc.Completed:
        return proc.run(
            [sys.executable, "-m", "airlock", *args], timeout=timeout, check=check, inherit_env=True
        )

    def _keygen(self) -> None:
        self.log("making a signing key (airlock keygen)")
        out = json.loads(self._airlock("keygen", self.w / "key", "--json").stdout)
        self.fingerprint = str(out["fingerprint"])
        self.gnupghome = Path(str(out["gnupghome"]))
        self.pubring = Path(str(out["pubring"]))
        self._stack.callback(gpg.kill_agent, self.gnupghome)

    def _build_images(self) -> None:
        kernel = initramfs.GuestKernel.find()
        if kernel is not None:
            self.log("building the initramfs: busybox, veritysetup, findfs, boot modules")
            self.initrd = initramfs.build(self.w / "images", kernel)
        for v in VERSIONS:
            self.add_release(v)

    def add_release(self, version: str, *, broken: bool = False) -> images.Images:
        """Build release ``version`` (``broken``: its root is no file system, it cannot boot)."""
        what = "a root that is no file system" if broken else "EROFS root"
        self.log(f"building release {version}: {what}, dm-verity tree, UKI")
        img = images.build(
            self.w / "images",
            version,
            runtime=sysupdate_runtime.locate().root,
            initrd=self.initrd,
            broken=broken,
        )
        self.images[version] = img
        return img

    def _make_disk(self) -> None:
        first = self.images[VERSIONS[0]]
        self.log(
            f"creating a GPT disk image with Spectrum's layout: ESP (systemd-boot, "
            f"Spectrum_{first.version}.efi), A/B slots (slot A = {first.version})"
        )
        esp.populate(
            self.esp,
            runtime=sysupdate_runtime.locate().root,
            ukis={f"Spectrum_{first.version}.efi": first.kernel},
        )
        esp_image = esp.image(self.w / "esp.img", self.esp)
        disk.create(
            self.disk,
            roothash=first.roothash,
            version=first.version,
            root_image=first.root,
            verity_image=first.verity,
            esp_image=esp_image,
        )
        esp_image.unlink()

    def _render(self) -> None:
        self.log("rendering Spectrum's build-time files (airlock render)")
        out = self.w / "rootfs"
        self._airlock(
            "render",
            "--version",
            VERSIONS[0],
            "--update-url",
            f"http://127.0.0.1:{PORT}",
            "--signing-key",
            self.pubring,
            "--out",
            out,
            *(["--boot-tries", str(self.boot_tries)] if self.boot_tries else []),
        )
        for transfer in sorted((self.etc / "sysupdate.d").glob("*.transfer")):
            text = transfer.read_text().replace("Path=auto", f"Path={self.disk}")
            transfer.write_text(text)

    def _mount_staging(self) -> None:
        self.log("creating a loop-backed btrfs staging filesystem")
        img, mnt = self.w / "staging.img", self.w / "staging-fs"
        mnt.mkdir(exist_ok=True)
        with open(img, "wb") as fh:
            fh.truncate(512 << 20)
        proc.run(["mkfs.btrfs", "-q", "-f", img], timeout=120)
        proc.run(
            ["mount", "-t", "btrfs", "-o", "loop,nosuid,nodev", img, mnt],
            timeout=60,
            share_mounts=True,
        )
        self._stack.callback(self._umount, mnt)

    @staticmethod
    def _umount(path: Path) -> None:
        for target in fsutil.mounts_below(path):
            with contextlib.suppress(HostError):
                proc.run(["umount", target], timeout=60, share_mounts=True)

    def _start_server(self) -> None:
        if self.fetcher == "qemu":
            # The guest's one network path is the host forwarder's, to a server on host loopback.
            self.log(f"starting the update server on 127.0.0.1:{PORT} (the guest's only route)")
            self._spawn_server([])
            return
        self.log(f"starting the update server in network namespace {NETNS} (no default route)")
        run_netns = Path("/run/netns")
        run_netns.mkdir(parents=True, exist_ok=True)
        proc.run(
            ["mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", run_netns],
            timeout=30,
            share_mounts=True,
        )
        self._stack.callback(self._umount, run_netns)
        proc.run(["ip", "netns", "add", NETNS], timeout=30, share_mounts=True)
        self._stack.callback(
            proc.run, ["ip", "netns", "del", NETNS], timeout=30, check=False, share_mounts=True
        )
        proc.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], timeout=30)
        self._spawn_server(["ip", "netns", "exec", NETNS])

    def _spawn_server(self, prefix: list[str]) -> None:
        self.server_dir.mkdir(exist_ok=True)
        self.serve_log = self.w / "serve.log"
        logfile = self._stack.enter_context(open(self.w / "serve.out", "wb"))
        server = self._stack.enter_context(proc.spawn(
            [*prefix, sys.executable, "-m", "airlock", "serve",
             self.server_dir, "--bind", "127.0.0.1", "--port", str(PORT), "--log", self.serve_log],
            inherit_env=True, stdout=logfile, stderr=logfile,
        ))  # fmt: skip
        deadline = time.monotonic() + 30
        while b"serving" not in (self.w / "serve.out").read_bytes():
            if server.poll() is not None or time.monotonic() > deadline:
                raise HostError("airlock serve did not start", code="host.lab")
            time.sleep(0.1)

    def write_config(
        self,
        command: Sequence[str] | None = None,
        *,
        ro_binds: Sequence[Path] = (),
        vm_timeout_s: float | None = None,
    ) -> None:
        """(Re)write the host config; ``command`` replaces the agent as the fetch command.

        A replaced command (the hostile VMs) always runs in the sandbox, without network.
        """
        src = Path(sys.modules["airlock"].__file__ or "").resolve().parents[1]
        binds = [Path(sys.prefix), Path(sys.base_prefix), src, *ro_binds]
        fetcher = "sandbox" if command else self.fetcher
        if fetcher == "qemu":
            # The QEMU fetcher runs the guest's own python3 with this airlock shared read-only.
            fetch = ["airlock", "agent", "--share", "/host"]
        else:
            agent = [sys.executable, "-m", "airlock", "agent", "--share", "/host"]
            # The sandbox starts with an empty environment: say where this airlock lives.
            fetch = ["/usr/bin/env", f"PYTHONPATH={src}", *(command or agent)]
        values: dict[str, object] = {
            "host.definitions_dir": self.etc / "sysupdate.d",
            "host.keyring": self.etc / "systemd/import-pubring.gpg",
            "host.os_release": self.etc / "os-release",
            "lock.path": self.w / "update-lock",
            "fetcher.backend": fetcher,
            "fetcher.timeout_s": vm_timeout_s or self.vm_timeout_s,
            "fetcher.command": fetch,
            "fetcher.vm_definitions_dir": self.etc / "vm-sysupdate.d",
            "fetcher.update_url_file": self.etc / "update-url",
            **({"fetcher.sandbox.netns": NETNS} if self.fetcher == "sandbox" else {}),
            "fetcher.sandbox.ro_binds": sorted({os.fspath(b) for b in binds}),
            "apply.esp_path": self.esp,
            "apply.binds": [self.disk],
            "apply.runtime": self.runtime,
            "state.path": self.w / "state/state.json",
        }
        self.config.write_text(render_config(values))

    # -- actions -----------------------------------------------------------------------------
    def publish(self, version: str) -> None:
        """Publish ``version`` to the server (``airlock publish --spectrum``), keeping two.

        OpenPGP signature times have a resolution of one second: each publish starts in a second
        after the one the previous publish ENDED in (its signature is made before it ends), so a
        later release is always signed strictly later (the replay guard compares them).
        """
        img = self.images[version]
        while int(time.time()) <= self._last_publish_s:
            time.sleep(0.05)
        self._airlock(
            "publish",
            self.server_dir,
            "--spectrum",
            "--version",
            version,
            "--roothash",
            img.roothash,
            "--root",
            img.root,
            "--verity",
            img.verity,
            "--uki",
            img.kernel,
            "--gnupghome",
            self.gnupghome,
            "--keep",
            "2",
        )
        self._last_publish_s = int(time.time())
        archive = self.w / "archive" / version
        shutil.rmtree(archive, ignore_errors=True)
        shutil.copytree(self.server_dir, archive)

    def status(self) -> dict[str, object]:
        """``airlock status --json``: booted, blessed, pending, failed, floor (the host's view)."""
        out = self._airlock("status", "--config", self.config, "--json").stdout
        data: dict[str, object] = json.loads(out.decode().splitlines()[-1])
        return data

    def status_text(self) -> str:
        """``airlock status`` as a user reads it."""
        return self._airlock("status", "--config", self.config).stdout.decode()

    def reboot(
        self, label: str, *, attempts: int = 1, listener: machine.Listener | None = None
    ) -> machine.Boot:
        """Boot the disk in QEMU (see ``airlock.lab.booting.reboot``)."""
        return booting.reboot(self, label, attempts=attempts, listener=listener)

    def boot_copy(
        self, label: str, mutate: booting.Mutation, *, listener: machine.Listener | None = None
    ) -> tuple[str, machine.Boot]:
        """Boot a changed copy of the disk (see ``airlock.lab.booting.boot_copy``)."""
        return booting.boot_copy(self, label, mutate, listener=listener)

    def boot(self, version: str) -> None:
        """The host now runs ``version``: its os-release says so (``%A``).

        After a real boot (``reboot``) this records what booted; without one it stands in for a
        reboot, as the fast demo does.
        """
        os_release = self.etc / "os-release"
        lines = [
            f"IMAGE_VERSION={version}" if line.startswith("IMAGE_VERSION=") else line
            for line in os_release.read_text().splitlines()
        ]
        os_release.write_text("\n".join(lines) + "\n")
        self.booted = version

    def update(self, label: str) -> Run:
        """Run ``airlock update STAGING --json`` and collect what it reported."""
        start = time.monotonic()
        before, payload_before = self._served(), self._served(payload_only=True)
        result = self._airlock(
            "update",
            self.staging,
            "--config",
            self.config,
            "--json",
            timeout=self.vm_timeout_s + 900,
            check=False,
        )
        events = tuple(
            json.loads(line)
            for line in result.stdout.decode("utf-8", "replace").splitlines()
            if line.startswith("{")
        )
        steps = tuple(
            (str(e.get("step")), float(str(e.get("duration_s", 0.0))))
            for e in events
            if e.get("event") == "step-finished"
        )
        final: dict[str, object] = next(
            (e for e in reversed(events) if e.get("event") in ("result", "error")), {}
        )
        return Run(
            label=label,
            exit_status=result.returncode,
            outcome=str(final.get("outcome", "")),
            code=str(final.get("code", "")),
            message=str(final.get("message", "")) or text.tail(result.stderr, lines=8, limit=400),
            steps=steps,
            bytes_downloaded=self._served() - before,
            payload_bytes=self._served(payload_only=True) - payload_before,
            duration_s=time.monotonic() - start,
            events=events,
        )

    def _served(self, *, payload_only: bool = False) -> int:
        """Bytes the server wrote so far (``payload_only``: not the manifest or signatures)."""
        if not self.serve_log.exists():
            return 0
        total = 0
        for line in self.serve_log.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = json.loads(line)
                if payload_only and str(entry["path"]).lstrip("/").startswith("SHA256SUMS"):
                    continue
                total += int(entry["bytes"])
        return total

    def attack(self, name: str) -> Run:
        """Replay hostile VM behaviour ``name`` (see airlock.lab.hostile) in one update run."""
        evidence = self.w / "evidence"
        shutil.rmtree(evidence, ignore_errors=True)
        shutil.copytree(self.server_dir, evidence / "next")
        shutil.copytree(self.w / "archive" / VERSIONS[0], evidence / "old")
        self._expired_release(evidence / "next", evidence / "expired")
        self.write_config(
            [
                sys.executable,
                "-m",
                "airlock.lab.hostile",
                name,
                "--share",
                "/host",
                "--evidence",
                os.fspath(evidence),
            ],
            ro_binds=[evidence],
            vm_timeout_s=8.0 if name == "never-exits" else None,
        )
        try:
            return self.update(f"attack: {name}")
        finally:
            self.write_config()

    def _expired_release(self, src: Path, out: Path) -> None:
        """A validly signed copy of ``src`` whose manifest expired yesterday."""
        shutil.copytree(src, out)
        current = manifest.parse((src / "SHA256SUMS").read_bytes())
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        raw = manifest.format(current.entries, best_before=yesterday)
        (out / "SHA256SUMS").write_bytes(raw)
        for sig, armor in (("SHA256SUMS.gpg", False), ("SHA256SUMS.sha256.asc", True)):
            (out / sig).write_bytes(
                gpg.sign(raw, gnupghome=self.gnupghome, signer=None, armor=armor)
            )

    def state(self) -> DiskState:
        """What is on the disk now: labels, PARTUUIDs and which image each slot holds."""
        return describe(self.disk, self.esp, self.images)


def describe(disk_image: Path, esp: Path, built: Mapping[str, images.Images]) -> DiskState:
    """Slots of ``disk_image`` and UKIs in ``esp``, each named by the built image it holds."""
    known = {}
    for v, img in built.items():
        known[hashlib.sha256(img.root.read_bytes()).hexdigest()] = f"root {v}"
        known[hashlib.sha256(img.verity.read_bytes()).hexdigest()] = f"verity {v}"
        known[hashlib.sha256(img.kernel.read_bytes()).hexdigest()] = f"kernel {v}"
    sizes = sorted(
        {img.root.stat().st_size for img in built.values()}
        | {img.verity.stat().st_size for img in built.values()}
    )
    slots = []
    with open(disk_image, "rb") as fh:
        for slot in disk.state(disk_image, measure=dict.fromkeys(range(1, 129), 0)):
            if slot.type.upper() == disk.ESP_TYPE:
                continue
            fh.seek(slot.start * disk.SECTOR)
            data = fh.read(min(slot.size, sizes[-1]))
            content = next(
                (known[h] for size in sizes
                 if (h := hashlib.sha256(data[:size]).hexdigest()) in known),
                "empty",
            )  # fmt: skip
            slots.append((slot.number, slot.label, slot.partuuid, content))
    boot = tuple(
        (p.name, known.get(hashlib.sha256(p.read_bytes()).hexdigest(), "unknown"))
        for p in sorted((esp / "EFI/Linux").iterdir())
    )
    return DiskState(slots=tuple(slots), boot=boot)


@contextlib.contextmanager
def lab(workdir: Path, **kwargs: object) -> Iterator[Lab]:
    """``with lab(dir) as world:`` — the functional form."""
    with Lab(workdir, **kwargs) as world:  # type: ignore[arg-type]  # forwarded keywords
        yield world
