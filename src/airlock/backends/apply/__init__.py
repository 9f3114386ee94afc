# SPDX-License-Identifier: MIT
"""airlock.backends.apply."""
