# SPDX-License-Identifier: MIT
"""airlock.pipeline."""
