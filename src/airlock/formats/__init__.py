# SPDX-License-Identifier: MIT
"""airlock.formats."""
