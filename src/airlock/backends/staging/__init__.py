# SPDX-License-Identifier: MIT
"""airlock.backends.staging."""
