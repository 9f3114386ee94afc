# SPDX-License-Identifier: MIT
"""airlock: a secure OS updater for compartmentalised systems (a Python Spectrum OS updater)."""

__version__ = "0.1.0"
