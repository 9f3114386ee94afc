# SPDX-License-Identifier: MIT
"""Who is running: ``Started``/``Ended`` events of every guard, for whoever wants to keep a record
(the pipeline's run record, ``pipeline/leftovers.py``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from airlock import pids
from airlock.proc.teardown_steps import Teardown


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    """A guard started: ``init`` is its namespace's init (``None`` for a teardown guard)."""

    guard: pids.ProcessId
    init: pids.ProcessId | None
    teardown: tuple[Teardown, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Ended:
    """A guard and everything under it are gone, or a teardown guard was disarmed."""

    guard: pids.ProcessId


Observer = Callable[[Started | Ended], None]
_observers: list[Observer] = []
_observers_lock = threading.Lock()


@contextlib.contextmanager
def observe(callback: Observer) -> Iterator[None]:
    """Call ``callback`` for every guard started or ended inside the ``with`` block."""
    with _observers_lock:
        _observers.append(callback)
    try:
        yield
    finally:
        with _observers_lock:
            _observers.remove(callback)


def notify(event: Started | Ended) -> None:
    with _observers_lock:
        callbacks = list(_observers)
    for callback in callbacks:
        callback(event)
