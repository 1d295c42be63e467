"""Smoke test of bench/capacity.py: a tiny run (200 devices, 100 of them in rooms of 10, two short
steps) against a real Muster process and the real Node load generator, over real sockets.

It checks that the script exits 0, prints its figures and that every device stayed connected and
every message reached every member of its room exactly once. No timing is asserted: figures are
the benchmark's business. Needs Node 18+ and npm on PATH (so does CI): without them the test
fails, it does not skip.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench.scripts import require_tools, run_bench


async def test_capacity_bench_holds_every_device_and_delivers_every_message_once(tmp_path: Path) -> None:
    require_tools("capacity.py", ("node", "npm"), "drives Muster with a Node load generator and needs Node.js 18+ "
                  "and npm (e.g. `apt-get install nodejs npm`)")
    figures = tmp_path / "capacity.json"
    text = await run_bench("capacity.py", "--quick", "--servers", "muster", "--json", str(figures), within=150)

    assert "held 200 of 200 connections" in text, text
    assert "memory per connection: idle" in text, text
    assert "deliveries/s" in text and "p99 ms" in text, text
    assert "NOT exactly once" not in text, text

    muster = json.loads(figures.read_text())["muster"]
    assert (muster["connections"], muster["active"], muster["idle"]) == (200, 100, 100)
    assert muster["held"] == 200 and muster["disconnects"] == 0
    assert muster["unknown"] == 0 and muster["out_of_order"] == 0
    assert [step["rate"] for step in muster["steps"].values()] == [10, 20]
    for step in muster["steps"].values():
        assert step["exactly_once"], step
        assert step["delivered"] == step["expected"] == step["messages"] * 10  # every member, the sender too
        assert step["missing"] == step["duplicates"] == step["strays"] == step["ack_errors"] == 0
        assert step["p50_ms"] is not None and step["p99_ms"] is not None
    memory = muster["memory_per_connection"]
    assert memory["idle"] is not None and memory["held"] is not None
    assert muster["rss_held"] > muster["rss_start"] > 0
