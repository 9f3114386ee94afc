# SPDX-License-Identifier: MIT
"""The maintainer side: ``publish`` (signed release directories), ``render`` (build-time files),
``keygen`` (development keys) and ``serve`` (a loopback HTTP server for the lab and tests).

Never imported by host code (import-linter contract).
"""
