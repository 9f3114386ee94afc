# SPDX-License-Identifier: MIT
"""The one builder of airlock's ``--json`` output (``cli.report`` re-exports it).

Kept apart from the reporters so that a verb printing one object (``inspect --json``) does not
import the progress events, sockets and terminal code it never uses.
"""

from __future__ import annotations

import json

SCHEMA_VERSION = 1


def envelope(event: str | None, /, **body: object) -> str:
    """The one builder of airlock's JSON output: ``{"v": 1, "event": …, …}`` on one line.

    ``event`` is left out when ``None`` (single-object outputs such as ``inspect --json``).  ASCII
    only: every string that came from untrusted input is already escaped by its producer.
    """
    head: dict[str, object] = {"v": SCHEMA_VERSION}
    if event is not None:
        head["event"] = event
    return json.dumps({**head, **body}, ensure_ascii=True, default=str)


def print_json(event: str | None, /, **body: object) -> None:
    """Print ``envelope(event, **body)`` on stdout and flush (one object per line)."""
    print(envelope(event, **body), flush=True)
