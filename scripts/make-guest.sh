#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build the QEMU update-VM guest (issue #7). Placeholder until that issue lands: nothing to build.
exit 0
