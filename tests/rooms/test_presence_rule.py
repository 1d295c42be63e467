"""The presence rule (pure, table-driven) and the one-node store."""

from __future__ import annotations

import pytest

from rooms.presence import MemoryPresence, PresenceStore, combine_device_states


@pytest.mark.parametrize(
    ("devices", "user"),
    [
        ([], "offline"),
        (["online"], "online"),
        (["away"], "away"),
        (["busy"], "busy"),
        (["online", "away"], "online"),
        (["away", "online"], "online"),
        (["online", "busy"], "busy"),
        (["away", "busy"], "busy"),
        (["away", "away"], "away"),
        (["bogus"], "offline"),
    ],
)
def test_combine_device_states(devices: list[str], user: str) -> None:
    assert combine_device_states(devices) == user


async def presence_follows_sockets_and_states(p: PresenceStore) -> None:
    """The behaviour every presence store shares (the Redis one runs it too)."""
    changed = await p.connect(user_id="u", device_id="console", kind="console", sid="s1")
    assert changed is not None and changed.state == "online"
    # a second socket of the same device changes nothing
    assert await p.connect(user_id="u", device_id="console", kind="console", sid="s2") is None
    assert await p.connect(user_id="u", device_id="phone", kind="mobile", sid="s3") is None
    changed = await p.set_state(user_id="u", device_id="console", state="busy")
    assert changed is not None and changed.state == "busy"
    assert await p.disconnect(user_id="u", device_id="console", sid="s1") is None  # s2 still open
    changed = await p.disconnect(user_id="u", device_id="console", sid="s2")
    assert changed is not None and changed.state == "online"
    got = (await p.get(["u"]))["u"]
    assert [(d.device_id, d.kind, d.state) for d in got.devices] == [("phone", "mobile", "online")]
    changed = await p.disconnect(user_id="u", device_id="phone", sid="s3")
    assert changed is not None and changed.state == "offline" and changed.last_seen_at
    nobody = (await p.get(["nobody"]))["nobody"]
    assert nobody.state == "offline" and nobody.last_seen_at is None


async def test_memory_presence_follows_sockets_and_states() -> None:
    await presence_follows_sockets_and_states(MemoryPresence())
