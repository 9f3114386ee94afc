# SPDX-License-Identifier: MIT
"""``airlock status``: the next action from the facts (pure), and facts that degrade, not fail."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airlock import config, state, status
from airlock.cli.host import result_text, status_text
from airlock.pipeline.context import Outcome
from airlock.text import display
from tests.support import schemas

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _facts(**overrides: object) -> status.Facts:
    base = status.Facts(
        now=NOW,
        booted="2",
        installed=("2", "1"),
        newest_installed="2",
        saved=state.State(last_check=NOW - timedelta(hours=2), floor="2"),
        state_file=Path("/var/lib/airlock/state.json"),
        runtime=status.RuntimeInfo(root=Path("/"), version=257),
        stale_after_s=86400.0,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]  # test overrides


def _saved(**fields: object) -> state.State:
    return dataclasses.replace(state.State(last_check=NOW - timedelta(hours=2)), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "action", "says"),
    [
        (_facts(), status.Action.NONE, "up to date as of the last check, 2 h ago"),
        (
            _facts(
                problems=(status.Problem(code="config.state", message="State file is corrupt"),)
            ),
            status.Action.FIX,
            "State file is corrupt",
        ),
        (_facts(booted="1"), status.Action.REBOOT, "2 is installed but 1 is running"),
        (_facts(saved=_saved(available="3")), status.Action.UPDATE, "verified 3, newer than 2"),
        (_facts(saved=_saved(available="2")), status.Action.NONE, "up to date"),
        (_facts(saved=state.State()), status.Action.CHECK, "no successful check yet"),
        (
            _facts(saved=_saved(last_check=NOW - timedelta(days=3, hours=4))),
            status.Action.CHECK,
            "is 3 d 4 h old (stale after 1 d)",
        ),
        (
            _facts(installed=(), newest_installed=None, saved=_saved(available="1")),
            status.Action.UPDATE,
            "newer than nothing installed",
        ),
    ],
)
def test_advice_names_the_one_next_action(
    facts: status.Facts, action: status.Action, says: str
) -> None:
    advice = status.advise(facts)
    assert advice.action is action
    assert says in advice.reason


def test_a_problem_outranks_a_pending_reboot() -> None:
    problem = status.Problem(code="apply.list", message="x")
    assert status.advise(_facts(booted="1", problems=(problem,))).action is status.Action.FIX


def test_pending_lists_only_versions_newer_than_the_booted_one() -> None:
    assert _facts(booted="1", installed=("3", "0.9", "1", "2")).pending == ("3", "2")
    assert _facts(booted=None).pending == ()


def test_a_version_outside_the_grammar_is_shown_escaped() -> None:
    facts = _facts(installed=("2", "\x1b[31mred"), newest_installed="2")
    body = status.as_json(facts, status.advise(facts))
    assert body["installed"] == ["2", "'\\x1b[31mred'"]
    assert "\x1b" not in status_text(facts, status.advise(facts))


def test_human_status_shows_every_fact_at_a_glance() -> None:
    facts = _facts(booted="1", saved=_saved(available="3", floor="2"))
    text = status_text(facts, status.advise(facts))
    assert text.splitlines() == [
        "booted:      1",
        "installed:   2, 1",
        "pending:     2 (after a reboot)",
        "available:   3 (verified by the last check)",
        "last check:  2026-11-26 10:00:00 UTC, 2 h ago"
        " (a newer signed manifest; freshness unknown: no BEST-BEFORE date)",
        "floor:       2 (older releases are refused)",
        "runtime:     systemd-sysupdate 257 (the host's own)",
        "next:        reboot: reboot (2 is installed but 1 is running; a reboot starts 2)",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5 s"), (59, "59 s"), (61, "1 min"), (7260, "2 h 1 min"),
                          (86400, "1 d"), (90000, "1 d 1 h")],
)  # fmt: skip
def test_age_reads_at_a_glance(seconds: float, text: str) -> None:
    assert status.age(seconds) == text


def test_gather_reports_what_it_cannot_read_and_still_reads_the_rest(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text('ID=spectrum\nIMAGE_VERSION="7"\n')
    (tmp_path / "state.json").write_bytes(b"{not json")
    cfg = config.load(None, flags={}).config
    cfg = dataclasses.replace(
        cfg,
        host=dataclasses.replace(
            cfg.host, os_release=tmp_path / "os-release", definitions_dir=tmp_path / "none"
        ),
        state=dataclasses.replace(cfg.state, path=tmp_path / "state.json"),
    )
    facts = status.gather(cfg, now=NOW)
    assert facts.booted == "7"
    codes = [p.code for p in facts.problems]
    assert codes[0] == "config.state"
    assert len(codes) == 2  # and either no runtime here or no definitions: both are problems
    assert codes[1] in ("config.definition", "host.sysupdate")
    assert status.advise(facts).action is status.Action.FIX


def test_state_remembers_a_verified_newer_release_until_it_is_installed() -> None:
    def run(old: state.State, *, version: str | None, applied: bool) -> state.State:
        event = state.Verified(
            installed="1", version=version, applied=applied, signed=(), manifest_sha256="0" * 64
        )
        return state.advance(old, event, NOW)

    checked = run(state.State(), version="2", applied=False)
    assert checked.available == "2"
    assert run(checked, version="2", applied=True).available is None
    assert run(checked, version=None, applied=False).available is None
    assert run(state.State(), version="1", applied=False).available is None  # not newer


def test_without_a_state_file_the_last_check_is_unknown_not_never() -> None:
    # [state] path unset and no STAGING_DIR: the state (in the staging dir) was not read.
    facts = _facts(state_file=None, saved=state.State())
    advice = status.advise(facts)
    assert (advice.action, advice.command) == (status.Action.CHECK, "airlock check STAGING_DIR")
    assert "the last check is unknown" in advice.reason
    text = status_text(facts, advice)
    assert "last check:  unknown (give STAGING_DIR: the state is kept there)" in text
    assert "floor:       unknown" in text
    body = status.as_json(facts, advice)
    assert (body["state_file"], body["last_check"], body["floor"]) == (None, None, None)
    schemas.check({"v": 1, "event": "status", **body}, "status")
    # control: with a state file that was never written, it is "never", and the floor "none"
    known = status_text(_facts(saved=state.State()), status.advise(_facts(saved=state.State())))
    assert "last check:  never" in known
    assert "floor:       none" in known


def test_the_next_command_names_the_staging_dir_given() -> None:
    facts = _facts(staging_dir=Path("/ext/my staging"), saved=_saved(available="3"))
    assert status.advise(facts).command == "airlock update '/ext/my staging'"
    stale = _facts(saved=state.State(), staging_dir=Path("/ext/staging"))
    assert status.advise(stale).command == "airlock check /ext/staging"


def _host_config(tmp_path: Path, state_path: Path | None) -> config.HostConfig:
    cfg = config.load(None, flags={}).config
    return dataclasses.replace(
        cfg,
        host=dataclasses.replace(
            cfg.host, os_release=tmp_path / "os-release", definitions_dir=tmp_path / "none"
        ),
        state=dataclasses.replace(cfg.state, path=state_path),
    )


def test_gather_reads_the_state_in_the_staging_dir_unless_a_path_is_set(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    state.save(staging / state.IN_STAGING, state.State(floor="5"))
    facts = status.gather(_host_config(tmp_path, None), now=NOW, staging_dir=staging)
    assert (facts.state_file, facts.saved.floor) == (staging / "state.json", "5")
    assert "config.state" not in [p.code for p in facts.problems]
    elsewhere = tmp_path / "elsewhere.json"
    state.save(elsewhere, state.State(floor="4"))
    facts = status.gather(_host_config(tmp_path, elsewhere), now=NOW, staging_dir=staging)
    assert (facts.state_file, facts.saved.floor) == (elsewhere, "4")  # [state] path wins
    facts = status.gather(_host_config(tmp_path, None), now=NOW)
    assert (facts.state_file, facts.saved) == (None, state.State())
    assert "config.state" not in [p.code for p in facts.problems]


def test_gather_names_a_staging_dir_that_does_not_exist(tmp_path: Path) -> None:
    typo = tmp_path / "stagign"
    facts = status.gather(_host_config(tmp_path, None), now=NOW, staging_dir=typo)
    assert facts.problems[0] == status.Problem(
        code="host.staging", message=f"Staging directory {display(str(typo))} does not exist"
    )
    assert status.advise(facts).action is status.Action.FIX


def test_the_runtime_line_names_the_runtime_and_the_rules_the_judge_uses() -> None:
    rt = status.RuntimeInfo(
        root=Path("/srv/cache/testing"), version=263, name="262", rules=262,
        rules_verified=False, signature_names=("SHA256SUMS.sha256.asc", "SHA256SUMS.gpg"),
    )  # fmt: skip
    facts = _facts(runtime=rt)
    text = status_text(facts, status.advise(facts))
    assert (
        "runtime:     systemd-sysupdate 263 (runtime 262 at /srv/cache/testing; "
        "rules of 262, not verified for this version)"
    ) in text.splitlines()
    body = status.as_json(facts, status.advise(facts))
    assert body["runtime"] == {
        "root": "/srv/cache/testing", "version": 263, "source": "runtime", "name": "262",
        "rules": 262, "rules_verified": False,
        "signature_names": ["SHA256SUMS.sha256.asc", "SHA256SUMS.gpg"],
    }  # fmt: skip
    schemas.check({"v": 1, "event": "status", **body}, "status")


# --- honest freshness (issue #15 item 2, docs/adr/0155) -------------------------------------------

CHECKED = NOW - timedelta(hours=2)


@pytest.mark.parametrize(
    ("fields", "kind", "line"),
    [
        ({"last_check": None}, "never", "last check:  never (no fresh, valid manifest seen yet)"),
        ({"last_seen": NOW - timedelta(minutes=5)}, "no-newer",
         "last check:  no newer manifest since 2026-11-26 10:00:00 UTC: freshness unknown, maybe"
         " a replay (2 h ago)"),
        ({"last_seen": CHECKED}, "unknown",
         "last check:  2026-11-26 10:00:00 UTC, 2 h ago (a newer signed manifest; freshness"
         " unknown: no BEST-BEFORE date)"),
        ({"best_before": NOW.date() + timedelta(days=3)}, "fresh-until",
         "last check:  2026-11-26 10:00:00 UTC, 2 h ago (fresh until 2026-11-29: its signed"
         " BEST-BEFORE date)"),
        ({"best_before": NOW.date()}, "expired",
         "last check:  2026-11-26 10:00:00 UTC, 2 h ago (stale: its BEST-BEFORE date 2026-11-26"
         " has passed)"),
    ],
)  # fmt: skip
def test_status_claims_fresh_only_with_an_unexpired_best_before(
    fields: dict[str, object], kind: str, line: str
) -> None:
    facts = _facts(saved=_saved(**fields))
    text = status_text(facts, status.advise(facts))
    assert line in text.splitlines()
    assert ("fresh until" in text) == (kind == "fresh-until")
    body = status.as_json(facts, status.advise(facts))
    assert body["freshness"] == kind
    schemas.check({"v": 1, "event": "status", **body}, "status")


def test_an_expired_best_before_makes_the_check_stale_however_recent() -> None:
    facts = _facts(saved=_saved(best_before=NOW.date()))
    assert facts.stale
    assert status.advise(facts).action is status.Action.CHECK


def test_the_update_result_says_what_the_run_could_know() -> None:
    replay = _saved(last_seen=NOW)
    assert result_text(Outcome.UP_TO_DATE, replay, NOW) == (
        "Already up to date as far as known (no newer manifest since 2026-11-26 10:00:00 UTC:"
        " freshness unknown, maybe a replay)."
    )
    news = _saved(last_check=NOW, last_seen=NOW, best_before=NOW.date() + timedelta(days=7))
    assert result_text(Outcome.UP_TO_DATE, news, NOW) == (
        "Already up to date (fresh until 2026-12-03: its signed BEST-BEFORE date)."
    )
    assert "fresh" not in result_text(Outcome.UP_TO_DATE, _saved(last_check=NOW), NOW).replace(
        "freshness", ""
    )
