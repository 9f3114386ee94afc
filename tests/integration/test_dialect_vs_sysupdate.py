# SPDX-License-Identifier: MIT
"""Every version-dependent rule of ``formats.dialect`` against the real 257 and 262 binaries.

One signed ``file://`` url-file release per case, installed by each runtime exactly as the host
applies (``SysupdateApplier``: the host keyring bound over every keyring path the version reads,
``--verify=yes``), into a target that already holds two older instances (``InstancesMax=2``), so
a vacuum would show.  For each case the test records what the binary really does, checks that
the table predicts it, and checks the judge against it: whatever the judge accepts for that
applier, the applier installs ("never less"), and what it would fail on, the judge refuses.

* signature names: only ``.gpg``, only ``.sha256.asc``, both, both with one bad, none;
* compressions and short payloads: which the version decompresses or fails on;
* keyrings: 262 trusts the vendor keyring *in addition* to ``/etc``'s (257 does not): the host's
  binds and ``SYSTEMD_OPENPGP_KEYRING`` each keep a key that only the vendor keyring holds out;
* ``BEST-BEFORE``: 262 refuses a marker dated today or earlier (00:00 UTC), as the judge does;
  257 reads the line as a file name no pattern matches.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airlock import fsutil
from airlock.backends import openpgp
from airlock.backends.apply.runtime import Bind, Runtime
from airlock.backends.apply.sysupdate import DEFINITIONS, Invocation, SysupdateApplier
from airlock.backends.openpgp import gpg
from airlock.errors import ApplyError, RejectedError
from airlock.formats import definitions, dialect, manifest
from airlock.limits import Limits
from airlock.trusted import verify
from airlock.trusted.policy import Policy
from tests.support.keys import kill_agent, make_key
from tests.support.releases import payload

pytestmark = [pytest.mark.sysupdate, pytest.mark.timeout(300)]

GPG, ASC = dialect.SIG_GPG, dialect.SIG_SHA256_ASC
SIZE = 65536
TRANSFER = """\
[Transfer]
Verify=yes

[Source]
Type=url-file
Path=file:///srv/dialect/src
MatchPattern=foo_@v.img

[Target]
Type=regular-file
Path=/srv/dialect/dst
MatchPattern=foo_@v.img
InstancesMax=2
"""
OLD = ("foo_0a.img", "foo_0b.img")  # installed before each case; a vacuum removes foo_0a


@dataclass
class Site:
    """One release directory, a target holding two old instances, definitions and a key."""

    work: Path
    home: Path
    keyring: Path

    @property
    def src(self) -> Path:
        return self.work / "src"

    @property
    def dst(self) -> Path:
        return self.work / "dst"

    def publish(
        self, data: bytes, *, signatures: dict[str, bool], best_before: datetime.date | None = None
    ) -> bytes:
        """Write ``foo_1.img`` and SHA256SUMS; each named signature is good (True) or bad."""
        self.src.mkdir()
        (self.src / "foo_1.img").write_bytes(data)
        raw = manifest.format(
            [manifest.Entry(name="foo_1.img", sha256=hashlib.sha256(data).hexdigest())],
            best_before=best_before,
        )
        (self.src / "SHA256SUMS").write_bytes(raw)
        for name, good in signatures.items():
            signed = raw if good else raw + b"tampered\n"
            sig = gpg.sign(signed, gnupghome=self.home, signer=None, armor=name.endswith(".asc"))
            (self.src / name).write_bytes(sig)
        return raw

    def invocation(self, keyring: Path | None) -> Invocation:
        return Invocation(
            definitions=self.work / "defs",
            keyring=keyring,
            binds=(Bind(source=self.work, target="/srv/dialect", read_only=False),),
        )

    def transfers(self) -> tuple[definitions.Transfer, ...]:
        spec = definitions.Specifiers.from_os_release("ID=test\n")
        return definitions.load_dir(self.work / "defs", specifiers=spec)

    def installed(self) -> list[str]:
        return sorted(os.listdir(self.dst))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    home, _, ring = make_key(tmp_path / "key")
    work = tmp_path / "w"
    (work / "defs").mkdir(parents=True)
    (work / "defs" / "50-foo.transfer").write_text(TRANSFER)
    (work / "dst").mkdir()
    for name in OLD:
        (work / "dst" / name).write_bytes(b"old\n" * 4)
    yield Site(work=work, home=home, keyring=ring)
    kill_agent(home)


def install(rt: Runtime, site: Site) -> str | None:
    """Run the product's ``update``; ``None`` on success, else the tail of the error."""
    try:
        SysupdateApplier(rt, timeout_s=240).update(site.invocation(site.keyring))
    except ApplyError as exc:
        return exc.message
    return None


def judged(site: Site, applier: dialect.Dialect, now: datetime.datetime | None = None) -> str:
    """The judge's verdict on the release directory: ``accepted`` or the refusal code."""
    fd = os.open(site.src, fsutil.DIR_FLAGS)
    try:
        verify.judge(
            fd,
            transfers=site.transfers(),
            keyring=site.keyring,
            policy=Policy(appliers=(applier,)),
            limits=Limits(),
            verifier=openpgp.verifier(),
            now=now or datetime.datetime.now(datetime.UTC),
        )
    except RejectedError as exc:
        return exc.code
    finally:
        os.close(fd)
    return "accepted"


# --- signature file names --------------------------------------------------------------------

SIGNATURE_CASES: dict[str, dict[str, bool]] = {
    "gpg-only": {GPG: True},
    "asc-only": {ASC: True},
    "both": {GPG: True, ASC: True},
    "both-gpg-bad": {GPG: False, ASC: True},
    "both-asc-bad": {GPG: True, ASC: False},
    "none": {},
}
# What the binaries really do (observed), per version: installed?
INSTALLS = {
    257: {"gpg-only", "both", "both-asc-bad"},  # reads only .gpg
    262: {"gpg-only", "asc-only", "both", "both-gpg-bad"},  # .sha256.asc first, then .gpg
}
# airlock's judge: every signature present must verify, and one the applier reads must exist.
JUDGE_ACCEPTS = {257: {"gpg-only", "both"}, 262: {"gpg-only", "asc-only", "both"}}


@pytest.mark.parametrize("case", sorted(SIGNATURE_CASES))
def test_signature_names_each_version_reads(
    systemd_runtime: Runtime, site: Site, case: str
) -> None:
    signatures = SIGNATURE_CASES[case]
    site.publish(payload(SIZE, seed=case), signatures=signatures)
    rules = dialect.for_version(systemd_runtime.version)
    error = install(systemd_runtime, site)
    # the binary's real outcome
    assert (error is None) is (case in INSTALLS[systemd_runtime.version]), error
    if error is None:
        assert site.installed() == ["foo_0b.img", "foo_1.img"]
    else:  # it failed while loading the manifest: nothing was vacuumed
        assert site.installed() == sorted(OLD)
        assert "Failed to retrieve signature file" in error or "verification failed" in error
    # the table predicts it: the name it reads is present and that signature is good
    read = rules.reads_signature(set(signatures))
    assert (error is None) is (read is not None and signatures[read])
    # the judge: exactly the expected verdicts, and never an acceptance the applier fails on
    verdict = judged(site, rules)
    assert (verdict == "accepted") is (case in JUDGE_ACCEPTS[systemd_runtime.version]), verdict
    assert verdict == "accepted" or verdict == "reject.signature"
    assert verdict != "accepted" or error is None


# --- compressions and short payloads ---------------------------------------------------------

COMPRESSORS = {"xz": ["xz", "-c"], "gzip": ["gzip", "-c"], "bzip2": ["bzip2", "-c"],
               "zstd": ["zstd", "-q", "-c"], "lz4": ["lz4", "-q", "-c"]}  # fmt: skip


def _payload(kind: str) -> bytes:
    if kind == "short":
        return b"abc"
    return subprocess.run(
        COMPRESSORS[kind], input=payload(SIZE, seed=kind), capture_output=True, check=True,
        timeout=60,
    ).stdout  # fmt: skip


@pytest.mark.parametrize("kind", [*COMPRESSORS, "short"])
def test_compressions_each_version_undoes(systemd_runtime: Runtime, site: Site, kind: str) -> None:
    data = _payload(kind)
    site.publish(data, signatures={GPG: True, ASC: True})
    rules = dialect.for_version(systemd_runtime.version)
    error = install(systemd_runtime, site)
    if kind == "short":
        assert (error is None) is (len(data) >= rules.min_url_file_bytes), error
    else:
        assert error is None, error
        got = (site.dst / "foo_1.img").read_bytes()
        undone = rules.decompresses(data)
        assert undone in (kind, None)
        assert got == (payload(SIZE, seed=kind) if undone else data)
        assert (got != data) is (kind in {k for _, k in rules.compressions})
    if error is not None:  # 257 fails on a short payload in the acquire step: after its vacuum
        assert site.installed() == ["foo_0b.img"]
    # The judge refuses every magic any supported version undoes, and any payload under 6
    # bytes, whatever the applier: the installed bytes would not be the bytes it hashed.
    assert judged(site, rules) == "reject.payload"


def test_negative_control_the_plain_payload_is_accepted_and_installed_verbatim(
    systemd_runtime: Runtime, site: Site
) -> None:
    data = payload(SIZE, seed="plain")
    site.publish(data, signatures={GPG: True, ASC: True})
    assert judged(site, dialect.for_version(systemd_runtime.version)) == "accepted"
    assert install(systemd_runtime, site) is None
    assert (site.dst / "foo_1.img").read_bytes() == data


def test_the_table_knows_every_compression_the_262_binary_links() -> None:
    # Each dlopen()ed decompressor 262 declares (ELF .note.dlopen) has a row in the table.
    assert {k for _, k in dialect.V262.compressions} == {"xz", "gzip", "bzip2", "zstd", "lz4"}
    assert {k for _, k in dialect.ALL_COMPRESSIONS} == {k for _, k in dialect.V262.compressions}


# --- keyrings ----------------------------------------------------------------------------------

# name: (bind the host keyring over every path the version reads?, set SYSTEMD_OPENPGP_KEYRING?)
MASKS = {"product": (True, True), "binds-only": (True, False), "env-only": (False, True),
         "etc-only": (False, False)}  # fmt: skip


@pytest.mark.parametrize("mask", sorted(MASKS))
def test_a_key_only_the_vendor_keyring_holds_is_never_trusted(
    systemd_runtime: Runtime, site: Site, tmp_path: Path, mask: str
) -> None:
    """262 merges /usr/lib/systemd/import-pubring.pgp with /etc's; the host masks it twice."""
    rules = dialect.for_version(systemd_runtime.version)
    vendor_home, _, vendor_ring = make_key(tmp_path / "vendor", uid="Vendor <v@example.invalid>")
    try:
        site.home, signer_home = vendor_home, site.home
        site.publish(payload(SIZE, seed="vendor"), signatures={GPG: True, ASC: True})
        site.home = signer_home
    finally:
        kill_agent(vendor_home)
    binds_all, env = MASKS[mask]
    inv = site.invocation(site.keyring)
    product_binds = list(inv.all_binds(systemd_runtime))
    if not binds_all:  # the host keyring over the /etc paths only
        vendor_paths = {dialect.VENDOR_GPG, dialect.VENDOR_PGP}
        product_binds = [b for b in product_binds if b.target not in vendor_paths]
    environment = inv.all_env(systemd_runtime)
    if not env:
        environment.pop(dialect.KEYRING_ENV, None)
    # The stand-in vendor keyring is mounted first, the host's binds over it.
    vendor = Bind(source=vendor_ring, target=rules.keyrings[-1], read_only=True)
    done = systemd_runtime.run(
        [f"--definitions={DEFINITIONS}", "--verify=yes", "update"],
        binds=[vendor, *product_binds],
        env=environment,
        timeout=240,
    )
    trusted = done.returncode == 0
    stderr = done.stderr.decode(errors="replace")
    # Only a 262 run with neither mask trusts the vendor-only key (negative control: it proves
    # the merge is real); 257 reads the vendor keyring only when /etc has none.
    assert trusted is (mask == "etc-only" and rules.vendor_merged), stderr
    if systemd_runtime.version < 262:
        assert not rules.vendor_merged
    if not trusted:
        assert "Signature verification failed" in stderr or "No public key" in stderr, stderr
        assert site.installed() == sorted(OLD)


# --- BEST-BEFORE ---------------------------------------------------------------------------------


def _utc_now_away_from_midnight() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    midnight = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0)
    if (midnight - now).total_seconds() < 120:  # the day must not change during the test
        time.sleep((midnight - now).total_seconds() + 1)
        now = datetime.datetime.now(datetime.UTC)
    return now


@pytest.mark.parametrize("days", [-1, 0, 1])
def test_best_before_the_judge_and_262_agree(
    systemd_runtime: Runtime, site: Site, days: int
) -> None:
    now = _utc_now_away_from_midnight()
    marker = now.date() + datetime.timedelta(days=days)
    site.publish(payload(SIZE, seed="bb"), signatures={GPG: True, ASC: True}, best_before=marker)
    rules = dialect.for_version(systemd_runtime.version)
    error = install(systemd_runtime, site)
    stale = days <= 0  # the marker's day started at 00:00 UTC: today is already too late
    if rules.best_before:
        assert (error is not None) is stale, error
        if stale:
            assert error is not None and "Best before marker" in error, error
            assert site.installed() == sorted(OLD)  # refused while loading the manifest
    else:
        assert error is None, error  # 257: a file name that no pattern matches
    verdict = judged(site, rules, now)
    assert verdict == ("reject.expired" if stale else "accepted")
    if rules.best_before:  # the judge and the applier agree exactly
        assert (verdict == "accepted") is (error is None)
