# SPDX-License-Identifier: MIT
"""What the judge refuses about a release before it hashes a byte of it: what cannot install.

Both checks use only sizes and names (the walk's ``fstatat`` and the host's definitions), never the
content, so they run before step 6 of ``trusted.verify`` and a refused payload costs the host
nothing to read:

* ``check_room``: a payload larger than its target can take (``Policy.room``: the largest
  partition of its type on the target disk, the space in ``$BOOT``) — sysupdate could never
  install it, and hashing it would spend the host's time for the VM (docs/adr/0160,
  ``reject.room``);
* ``check_labels``: a partition label longer than GPT's 36 UTF-16 code units — sysupdate formats
  the label from the target's first ``MatchPattern=`` and refuses a longer one only after it has
  vacuumed, leaving the slot emptied (docs/adr/0161, ``reject.label``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from airlock.errors import InspectionError
from airlock.formats import gpt, pattern
from airlock.formats.definitions import ResourceType, Transfer
from airlock.text import display
from airlock.trusted.policy import Policy
from airlock.untrusted.candidate import CandidateRelease

# systemd's defaults when the first target pattern carries @l/@d and the transfer sets neither.
DEFAULT_TRIES_LEFT, DEFAULT_TRIES_DONE = 3, 0


def check_room(release: CandidateRelease, policy: Policy) -> None:
    """Refuse a payload larger than the room of its target.

    Raises:
        InspectionError: ``reject.room``.
    """
    room = {r.transfer: r for r in policy.room}
    for f in release.files:
        r = room.get(f.transfer)
        if r is not None and f.file.size > r.bytes:
            raise InspectionError(
                f"Refusing {display(f.file.name)}: {f.file.size} bytes is more than its target"
                f" can take, {r.bytes} bytes ({r.where})",
                code="reject.room",
                subject=f.file.name,
                hint="no byte of it was hashed: systemd-sysupdate could not install it",
            )


def partition_label(transfer: Transfer, name: str) -> str | None:
    """The GPT label sysupdate would give the partition it writes ``name`` to.

    The source name's fields, with the transfer's tries (or systemd's defaults when the target
    pattern counts tries), formatted with the target's first pattern.  ``None`` when ``transfer``
    does not write a partition or the label cannot be formatted (other checks cover that).
    """
    if transfer.target.type is not ResourceType.PARTITION or not transfer.target.match_patterns:
        return None
    fields = pattern.match_agreed(transfer.source.match_patterns, name)
    if fields is None:
        return None
    first = transfer.target.match_patterns[0]
    tries_left, tries_done = transfer.tries_left, transfer.tries_done
    if "l" in first.markers or "d" in first.markers:
        tries_left = DEFAULT_TRIES_LEFT if tries_left is None else tries_left
        tries_done = DEFAULT_TRIES_DONE if tries_done is None else tries_done
    fields = dataclasses.replace(
        fields,
        tries_left=tries_left if tries_left is not None else fields.tries_left,
        tries_done=tries_done if tries_done is not None else fields.tries_done,
    )
    try:
        return first.format(fields)
    except pattern.PatternError:
        return None


def check_labels(release: CandidateRelease, transfers: Sequence[Transfer]) -> None:
    """Refuse a release whose partition label would not fit in a GPT entry.

    Raises:
        InspectionError: ``reject.label``.
    """
    by_name = {t.name: t for t in transfers}
    for f in release.files:
        transfer = by_name.get(f.transfer)
        label = partition_label(transfer, f.file.name) if transfer is not None else None
        if label is not None and gpt.label_units(label) > gpt.MAX_LABEL_UNITS:
            raise InspectionError(
                f"Refusing release {display(release.version)}: the partition label"
                f" {display(label)} of transfer {display(f.transfer)} is"
                f" {gpt.label_units(label)} UTF-16 units, GPT holds {gpt.MAX_LABEL_UNITS}",
                code="reject.label",
                subject=f.file.name,
                hint="systemd-sysupdate would refuse it only after removing an old version",
            )
