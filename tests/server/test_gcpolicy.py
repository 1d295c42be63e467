"""server/gcpolicy.py with CPython's real collector: survivors frozen, cycles among them freed by a deep
collection, the deep collection's triggers, and everything undone at stop."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from server.gcpolicy import GcPolicy, resident_bytes


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
async def policy() -> AsyncIterator[GcPolicy]:
    # Long intervals: the test drives the collections itself.
    p = GcPolicy(collect_interval=3600, check_interval=3600, deep_interval=3600)
    p.start()
    try:
        yield p
    finally:
        await p.stop()
    assert gc.get_freeze_count() == 0


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(b)


async def test_a_full_collection_freezes_its_survivors(policy: GcPolicy) -> None:
    before = gc.get_freeze_count()
    kept = [cycle() for _ in range(1000)]
    gc.collect()
    assert gc.get_freeze_count() >= before + 2000  # the callback froze what survived
    assert all(alive() is not None for _, alive in kept)


async def test_a_cycle_among_frozen_objects_waits_for_the_deep_collection(policy: GcPolicy) -> None:
    head, alive = cycle()
    gc.collect()  # survives, and is frozen
    del head  # now garbage, but a cycle: reference counting cannot free it
    gc.collect()
    assert alive() is not None  # frozen objects are not walked by a full collection
    freed = policy.deep_collect()
    assert alive() is None
    assert freed >= 2
    assert policy.deep_collections == 1
    assert gc.get_freeze_count() > 0  # frozen again after the deep collection


async def test_garbage_that_is_not_a_cycle_is_freed_at_once_even_frozen(policy: GcPolicy) -> None:
    lone = Node()
    alive = weakref.ref(lone)
    gc.collect()
    del lone
    assert alive() is None


async def test_the_periodic_collection_is_skipped_when_nothing_was_promoted(policy: GcPolicy) -> None:
    gc.collect()
    assert gc.get_count()[2] == 0  # no generation-1 collection since that full one
    assert policy.collect() == 0


async def test_a_deep_collection_is_due_on_memory_growth_or_on_the_timer(policy: GcPolicy) -> None:
    assert resident_bytes() > 0  # Linux: /proc/self/statm
    assert not policy.due()
    policy.baseline = resident_bytes() // 2  # as if memory had doubled since the last deep one
    policy.deep_min_bytes = 0
    assert policy.due()
    policy.deep_min_bytes = resident_bytes()  # ... but by less than the floor
    assert not policy.due()
    policy.baseline = resident_bytes() * 10
    policy.last_deep_at -= policy.deep_interval
    assert policy.due()


async def test_the_watch_runs_collections_and_deep_ones_on_its_own() -> None:
    p = GcPolicy(collect_interval=0.01, check_interval=0.05, deep_interval=0.05)
    p.start()
    try:
        head, alive = cycle()
        await asyncio.sleep(0.05)  # collected (and frozen) by the watch
        del head
        for _ in range(200):
            if alive() is None:
                break
            await asyncio.sleep(0.01)
        assert alive() is None  # freed by a deep collection the timer ran
        assert p.deep_collections >= 1
    finally:
        await p.stop()
    assert gc.get_freeze_count() == 0
    assert p._after_collection not in gc.callbacks
