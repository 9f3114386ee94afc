# SPDX-License-Identifier: MIT
"""airlock.trusted."""
