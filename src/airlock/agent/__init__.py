# SPDX-License-Identifier: MIT
"""airlock.agent."""
