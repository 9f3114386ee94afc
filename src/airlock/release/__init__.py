# SPDX-License-Identifier: MIT
"""airlock.release."""
