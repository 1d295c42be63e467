"""When the server process runs CPython's full garbage collections, so they do not stop the event loop.

A connected device costs about 170 objects tracked by the cycle collector (python-engineio's
socket, its queue and tasks, aiohttp's request, transport, reader and writer...). With 10,000
devices that is 1.7 million objects, and CPython's full collection walks every one of them: the
event loop stops for one to two seconds each time. By CPython's own rule (a full collection once
the objects promoted to the oldest generation since the last one reach a quarter of it) that
happens every 15 to 30 seconds while messages flow, because every heartbeat round replaces some
50 objects per device (timer tasks, futures, packets) that live long enough to reach the oldest
generation; and those full collections find nothing to free: the devices' objects are alive, and
are freed by reference counting when a device leaves.

`GcPolicy` keeps what survived a full collection out of the next ones, and collects often:

- every `collect_interval` seconds (1 s) it runs a full collection from the event loop and then
  moves the survivors to CPython's permanent generation (`gc.freeze()`); CPython's own full
  collections are followed by the same freeze. A full collection so walks only what appeared
  since the last one: at 10,000 devices tens of milliseconds, not seconds.
- Frozen objects are still freed by reference counting; only garbage *cycles* among them wait.
  A deep collection (`gc.unfreeze()`, `gc.collect()`, freeze again) frees those: when the
  process's resident memory has grown by `deep_growth` (half) and by at least `deep_min_bytes`
  (128 MiB) since the last deep one, checked every `check_interval` seconds, and at least every
  `deep_interval` seconds (an hour). The floor spares small nodes: their possible leak is small,
  and a deep collection is a pause of its own (about 0.3 s per 400,000 objects). It stops
  the loop as long as a plain full collection did (1.5 s at 10,000 devices). On a node whose
  number of devices is steady it runs only on the hourly timer; while devices pour in it runs a
  few times (at 1.5, 2.25... times the memory of the last one), as CPython's own rule would have.
  (Resident memory, read from /proc, is the measure because counting the frozen objects walks
  all of them: tens of milliseconds at 10,000 devices.)

Process-wide: `python -m server run` starts it (`[server] gc_freeze`, on by default); tests and
embedders that build apps in their own process leave the collector as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from typing import Any

from server.logging import get_logger
from server.tasks import cancel_and_wait

log = get_logger("muster.gc")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class GcPolicy:
    def __init__(self, *, collect_interval: float = 1.0, deep_growth: float = 0.5,
                 deep_min_bytes: int = 128 * 1024 * 1024, check_interval: float = 5.0,
                 deep_interval: float = 3600.0) -> None:
        self.collect_interval = collect_interval
        self.deep_growth = deep_growth
        self.deep_min_bytes = deep_min_bytes
        self.check_interval = check_interval
        self.deep_interval = deep_interval
        self.baseline = 0  # resident bytes right after the last deep collection
        self.deep_collections = 0
        self.last_deep_seconds = 0.0
        self.last_deep_at = 0.0
        self._in_deep = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Freeze what exists now (modules, classes, settings: never garbage) and follow collections."""
        gc.collect()
        _freeze()
        self.baseline = resident_bytes()
        self.last_deep_at = time.monotonic()
        gc.callbacks.append(self._after_collection)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._after_collection)
        gc.unfreeze()

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        # Called by CPython around every collection, on whichever thread triggered it.
        if phase == "stop" and info["generation"] == 2 and not self._in_deep:
            gc.freeze()

    def due(self) -> bool:
        """Whether a deep collection is due: memory grew enough, or the timer ran out."""
        grown = resident_bytes() > max(self.baseline * (1 + self.deep_growth), self.baseline + self.deep_min_bytes)
        return grown or time.monotonic() - self.last_deep_at >= self.deep_interval

    def deep_collect(self) -> int:
        """Collect everything, frozen objects included; returns the number of objects freed."""
        self._in_deep = True
        started = time.perf_counter()
        try:
            before = resident_bytes()
            gc.unfreeze()
            freed = gc.collect()
            _freeze()
        finally:
            self._in_deep = False
        self.last_deep_seconds = time.perf_counter() - started
        self.last_deep_at = time.monotonic()
        self.baseline = resident_bytes()
        self.deep_collections += 1
        log.info("deep garbage collection", seconds=round(self.last_deep_seconds, 3), freed=freed,
                 resident_before=before, resident_after=self.baseline)
        return freed

    def collect(self) -> int:
        """A full collection of what is not frozen, then freeze the survivors (the automatic one's
        callback does the freezing); returns the number of objects freed. Skipped when no object
        was promoted to the oldest generation since the last full collection (no generation-1
        collection ran): the young ones are CPython's own business."""
        if gc.get_count()[2] == 0:
            return 0
        return gc.collect()

    async def _watch(self) -> None:
        last_check = time.monotonic()
        while True:
            await asyncio.sleep(self.collect_interval)
            if time.monotonic() - last_check >= self.check_interval:
                last_check = time.monotonic()
                if self.due():
                    self.deep_collect()
                    continue
            self.collect()


def resident_bytes() -> int:
    """The process's resident memory (Linux /proc; elsewhere 0, and only the hourly timer runs deep)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _freeze() -> None:
    """Freeze everything, then let CPython count its next full collection from an empty old generation.

    CPython runs a full collection once the objects promoted since the last one exceed a quarter of
    what that one left in the old generation. After a deep collection that is everything (over a
    million objects at 10,000 devices), so the next automatic full collection would wait for
    hundreds of thousands of promotions and then walk them all at once. A second, full collection
    right after the freeze walks an empty old generation (instant) and sets that count to zero:
    from then on full collections come often and each walks only what was promoted since the last.
    """
    gc.freeze()
    gc.collect()
