# SPDX-License-Identifier: MIT
"""The update VM's downloader (``airlock agent``): runs INSIDE the VM, untrusted by the host.

``main.run()`` is the entry point; ``share`` reads the host's ``etc/``, ``signed`` fetches and
checks the manifest, ``selection`` picks the version, ``fetch`` and ``transport`` move the bytes,
``sysupdate`` is Spectrum's systemd-sysupdate mode.  May import only ``airlock.formats``,
``text``, ``proc``, ``events``, ``config``, ``errors`` and ``backends.openpgp`` of airlock.
"""
