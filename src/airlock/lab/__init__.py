# SPDX-License-Identifier: MIT
"""airlock.lab."""
