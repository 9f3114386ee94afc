# SPDX-License-Identifier: MIT
"""airlock.untrusted."""
