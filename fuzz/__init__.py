# SPDX-License-Identifier: MIT
"""Coverage-guided fuzz targets (atheris) for airlock's parsers and the judge's walk.

One target per module; each exports ``test_one(data: bytes) -> None`` and ``seeds()``.  A target
fails (a crash, for the fuzzer) when anything escapes but the documented error type of the code
under test, when that error's message is not one printable line, or when an invariant the
module documents is broken.  ``python -m fuzz.run TARGET --runs N`` runs one (docs/fuzzing.md).
"""

from __future__ import annotations

#: The targets ``make fuzz`` runs, in order: module name under ``fuzz``.
TARGETS = ("manifest", "pattern", "version", "definitions", "url", "tree", "signature")
