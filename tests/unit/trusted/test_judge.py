# SPDX-License-Identifier: MIT
"""trusted/judge.py: one judge, built once, with its verifier bound to the configured limits.

The pipeline (``pipeline.wiring.make_judge``), ``airlock inspect`` and the benchmark all build it
with ``Judge.build``.  The pipeline used to build its verifier without the limits, so
``[limits] max_keyring_bytes`` and ``signature_timeout_s`` did nothing for ``airlock update``.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from airlock import fsutil
from airlock.backends import openpgp
from airlock.backends.openpgp import BaseVerifier, VerifierName
from airlock.config import HostConfig, HostFiles
from airlock.errors import ConfigError, SignatureError
from airlock.limits import Limits
from airlock.pipeline.wiring import make_judge
from airlock.trusted.judge import Judge, weaknesses
from airlock.trusted.policy import Baseline, PolicyConfig
from tests.support.corpus import Staging
from tests.support.keys import KeySet


@pytest.fixture
def signed(tmp_path: Path, keys: KeySet) -> Staging:
    s = Staging(tmp_path, keys)
    s.release()
    s.close()
    return s


def _host(defdir: Path, keys: KeySet, tmp_path: Path, **limits: object) -> HostConfig:
    os_release = tmp_path / "os-release"
    os_release.write_text("ID=spectrum\nIMAGE_VERSION=1\n")
    return HostConfig(
        host=HostFiles(definitions_dir=defdir, keyring=keys.keyring, os_release=os_release),
        limits=Limits(**limits),  # type: ignore[arg-type]  # test values of the right types
    )


def _judge(judge: Judge, directory: Path) -> str | None:
    fd = os.open(directory, fsutil.DIR_FLAGS)
    try:
        # The reference time of the call, as a run takes it (a module-level time goes stale: a
        # signature made minutes after collection would be "from the future").
        now = datetime.datetime.now(datetime.UTC)
        return judge.judge(fd, baseline=Baseline(installed="1"), now=now).version
    finally:
        os.close(fd)


def test_the_pipeline_judge_accepts_a_good_release(
    signed: Staging, defdir: Path, keys: KeySet, tmp_path: Path
) -> None:
    judge = make_judge(_host(defdir, keys, tmp_path))
    assert _judge(judge, signed.dir) == "2"


def test_the_pipeline_judge_honours_max_keyring_bytes(
    signed: Staging, defdir: Path, keys: KeySet, tmp_path: Path
) -> None:
    size = keys.keyring.stat().st_size
    judge = make_judge(_host(defdir, keys, tmp_path, max_keyring_bytes=size - 1))
    with pytest.raises(SignatureError, match=f"Keyring is larger than {size - 1} bytes"):
        _judge(judge, signed.dir)


def test_the_pipeline_judge_honours_signature_timeout_s(
    signed: Staging, defdir: Path, keys: KeySet, tmp_path: Path
) -> None:
    judge = make_judge(_host(defdir, keys, tmp_path, signature_timeout_s=0.001))
    assert isinstance(judge.verifier, BaseVerifier)
    assert judge.verifier.limits.signature_timeout_s == 0.001
    with pytest.raises(SignatureError):
        _judge(judge, signed.dir)


def test_build_refuses_a_missing_keyring_and_definitions_without_transfers(
    defdir: Path, tmp_path: Path
) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text("IMAGE_VERSION=1\n")
    common = {"policy": PolicyConfig(), "limits": Limits(), "os_release": os_release}
    with pytest.raises(ConfigError) as info:
        Judge.build(definitions_dir=defdir, keyring=tmp_path / "nope.gpg", **common)  # type: ignore[arg-type]
    assert info.value.code == "config.keyring"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as info:
        Judge.build(definitions_dir=tmp_path / "empty", keyring=tmp_path, **common)  # type: ignore[arg-type]
    assert info.value.code == "config.definition"
    with pytest.raises(ConfigError) as info:
        Judge.build(
            definitions_dir=defdir,
            keyring=tmp_path,
            policy=PolicyConfig(),
            limits=Limits(),
            os_release=tmp_path / "missing",
        )
    assert info.value.code == "config.os-release"


@pytest.mark.parametrize(
    ("fingerprints", "chosen", "verifier_cls", "expected"),
    [
        ((), "sqv", "SqvVerifier", ["every key in the keyring counts"]),
        (("A" * 40,), "auto", "GpgvVerifier", ["checked with gpgv"]),
        ((), "auto", "GpgvVerifier", ["every key in the keyring counts", "checked with gpgv"]),
        (("A" * 40,), "auto", "SqvVerifier", []),
        (("A" * 40,), "gpgv", "GpgvVerifier", []),  # chosen, not fallen back to
    ],
)
def test_weak_settings_are_reported_not_silent(
    fingerprints: tuple[str, ...], chosen: str, verifier_cls: str, expected: list[str]
) -> None:
    from airlock.backends.openpgp import gpgv, sqv

    cls = {"SqvVerifier": sqv.SqvVerifier, "GpgvVerifier": gpgv.GpgvVerifier}[verifier_cls]
    policy = PolicyConfig(trusted_fingerprints=fingerprints, verifier=VerifierName(chosen))
    found = weaknesses(policy, cls())
    assert len(found) == len(expected)
    for text, part in zip(found, expected, strict=True):
        assert part in text


def test_a_sysupdate_newer_than_the_modelled_ones_is_told() -> None:
    from airlock.backends.openpgp import sqv
    from airlock.formats import dialect

    policy = PolicyConfig(trusted_fingerprints=("A" * 40,), verifier=VerifierName.SQV)
    newer = dialect.for_version(dialect.NEWEST + 1)
    (found,) = weaknesses(policy, sqv.SqvVerifier(), (newer,))
    assert f"systemd-sysupdate {dialect.NEWEST + 1} is newer" in found
    assert weaknesses(policy, sqv.SqvVerifier(), (dialect.for_version(dialect.NEWEST),)) == ()


def _build(host: HostConfig, prepared: openpgp.Preparation | None) -> Judge:
    return Judge.build(
        definitions_dir=host.host.definitions_dir,
        os_release=host.host.os_release,
        keyring=host.host.keyring,
        policy=host.policy,
        limits=host.limits,
        prepared=prepared,
    )


def test_a_prepared_judge_judges_as_one_built_alone(
    signed: Staging, defdir: Path, keys: KeySet, tmp_path: Path
) -> None:
    # airlock inspect: the verifier chosen and the keyring listed in threads (ADR 0175).
    host = _host(defdir, keys, tmp_path)
    prepared = openpgp.Preparation(host.policy.verifier, keys.keyring, limits=host.limits)
    judge = _build(host, prepared)
    assert type(judge.verifier) is type(_build(host, None).verifier)
    assert _judge(judge, signed.dir) == "2"


def test_a_preparation_raises_what_choosing_the_verifier_raises(
    defdir: Path, keys: KeySet, tmp_path: Path
) -> None:
    host = _host(defdir, keys, tmp_path)
    policy = PolicyConfig(verifier="nonesuch")  # type: ignore[arg-type]  # an unknown name
    prepared = openpgp.Preparation("nonesuch", keys.keyring, limits=host.limits)
    with pytest.raises(ConfigError, match="Unknown signature verifier") as exc:
        Judge.build(
            definitions_dir=defdir,
            os_release=host.host.os_release,
            keyring=keys.keyring,
            policy=policy,
            limits=host.limits,
            prepared=prepared,
        )
    assert exc.value.code == "config.verifier"


def test_a_prepared_build_reports_bad_definitions_first(keys: KeySet, tmp_path: Path) -> None:
    empty = tmp_path / "defs"
    empty.mkdir()
    host = _host(empty, keys, tmp_path)
    prepared = openpgp.Preparation(host.policy.verifier, keys.keyring, limits=host.limits)
    with pytest.raises(ConfigError) as exc:
        _build(host, prepared)
    assert exc.value.code == "config.definition"


def test_a_preparation_for_another_keyring_is_refused(
    defdir: Path, keys: KeySet, tmp_path: Path
) -> None:
    host = _host(defdir, keys, tmp_path)
    prepared = openpgp.Preparation(host.policy.verifier, keys.keyring_armored, limits=host.limits)
    prepared.wait()
    with pytest.raises(RuntimeError, match="prepared for another keyring"):
        _build(host, prepared)
