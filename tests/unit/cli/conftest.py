# SPDX-License-Identifier: MIT
"""The oracles pinned to the product's systemd runtime (``tests.support.oracles``)."""

from __future__ import annotations

from tests.support.oracles import systemd_runtime, version_oracle

__all__ = ["systemd_runtime", "version_oracle"]
