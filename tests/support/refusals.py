# SPDX-License-Identifier: MIT
"""The hostile corpus through ``airlock update``: which cases, under which host policy and state.

A corpus case (``tests.support.corpus``) names its policy as ``airlock inspect`` options.  Through
the pipeline the same policy comes from where the host keeps it: trusted fingerprints, threshold,
freshness and limits from the host config; the rollback floor and the newest accepted signature
time from the state file; the installed version from the disk (slot A holds version 1).

``EXCLUDED`` lists the refusal cases that cannot go through the pipeline, each with the reason;
``UNREACHABLE`` the ``reject.*`` codes no input can produce, each with the reason (a unit test
checks the reasons that can be checked).  Every other ``reject.*`` code of ``docs/error-codes.md``
must be the verdict of at least one pipeline case (``tests/unit/test_refusal_coverage.py``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from airlock.errors import ExitStatus
from airlock.state import State
from tests.support.corpus import Case, all_cases
from tests.support.keys import KeySet

#: The state a host has after earlier good runs: version 1 installed, floor 1, and an accepted
#: signature from 2025-06-01 (every corpus signature is newer, except the replay case's).
BASE_STATE = State(
    installed="1",
    floor="1",
    newest_signature=datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC),
    last_check=datetime.datetime(2025, 6, 2, tzinfo=datetime.UTC),
)

EXCLUDED: Mapping[str, str] = {
    "hard_link_to_outside_file": "cannot exist in a share: btrfs refuses hard links across"
    " subvolumes (EXDEV), and the share is a subvolume of its own; hard_link_pair_inside covers"
    " reject.links",
    "ten_thousand_files": "time: 10,000 files per run; too_many_entries_small_cap covers"
    " reject.count",
    "version_older_than_installed": "needs a disk holding version 2.1; the rollback through the"
    " pipeline is version_below_floor and tests/integration/host/test_update_rollback.py",
}

#: Cases whose snapshot lacks what any check needs: through the pipeline the VM "sent nothing
#: usable" (exit 20, Spectrum's "didn't send a signature file … check its logs"), not a refusal;
#: ``airlock inspect`` on the same tree still refuses them (21).
COULD_NOT_CHECK: Mapping[str, str] = {
    "empty_snapshot": "fetch.nothing",
    "only_a_signature_file": "fetch.nothing",
    "manifest_missing": "fetch.nothing",
    "signature_missing": "fetch.unsigned",
}

UNREACHABLE: Mapping[str, str] = {
    "reject.invalid": "RejectedError's default; every RejectedError is raised with its own code",
    "reject.inspection": "InspectionError's default; every InspectionError names its code",
    "reject.freshness": "FreshnessError's default; every FreshnessError names its code",
    "reject.cancelled": "raised only in a hashing thread after another thread failed, when"
    " hash_files has already raised that first failure",
}

#: The exception class whose ``default_code`` each default-only code is.
DEFAULT_OF: Mapping[str, str] = {
    "reject.invalid": "RejectedError",
    "reject.inspection": "InspectionError",
    "reject.freshness": "FreshnessError",
}


def pipeline_cases() -> tuple[Case, ...]:
    """Every refusal case of the corpus except ``EXCLUDED``."""
    return tuple(c for c in all_cases() if c.expect is not None and c.name not in EXCLUDED)


def pipeline_verdict(case: Case) -> tuple[str, ExitStatus]:
    """The code and exit status ``airlock update`` ends with for ``case``."""
    if case.name in COULD_NOT_CHECK:
        return COULD_NOT_CHECK[case.name], ExitStatus.FETCH
    assert case.expect is not None
    return case.expect, ExitStatus.REJECTED


def host_policy(case: Case, keys: KeySet) -> dict[str, object]:
    """The host config's policy keys for ``case`` (``World.write_config(policy=...)``)."""
    out: dict[str, object] = {}
    trusted = [getattr(keys, role) for role in case.policy.get("trusted", ())]
    if trusted:
        out["trusted_fingerprints"] = trusted
    if "threshold" in case.policy:
        out["threshold"] = case.policy["threshold"]
    if case.policy.get("require_fresh"):
        out["require_fresh"] = True
    return out


def host_state(case: Case) -> State:
    """The state file ``case`` runs with: ``BASE_STATE`` with the case's floor and not-before."""
    if case.policy.get("installed", BASE_STATE.installed) != BASE_STATE.installed:
        raise ValueError(f"{case.name}: the disk holds version {BASE_STATE.installed}")
    floor = case.policy.get("floor", BASE_STATE.floor)
    raw = case.policy.get("not_before")
    newest = datetime.datetime.fromisoformat(raw) if raw else BASE_STATE.newest_signature
    return State(
        installed=BASE_STATE.installed,
        floor=floor,
        newest_signature=newest,
        last_check=BASE_STATE.last_check,
    )
