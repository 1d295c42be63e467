"""Smoke test of bench/fanout.py: a tiny run of the two-node case (1 room of 50 split across two server
processes joined by a redis-server the bench starts) and of the many-rooms case (10 rooms of 5), for
Muster, the bare python-socketio server and Node's socket.io, with the real Node load generator over
real sockets.

It checks that the script exits 0 and prints the two-node tables with a row per server, each with
every message delivered exactly once (counted by the load generator); and that `--rounds 2` runs
each server twice, in the reverse order the second time, and summarises by the median. No timing is asserted: figures
are the benchmark's business. Needs Node 18+, npm and redis-server on PATH (so does CI): without them
the test fails, it does not skip.
"""

from __future__ import annotations

import re

from tests.bench.scripts import require_tools, run_bench

SERVERS = ("muster", "bare-python", "node")


def table_rows(text: str, title: str) -> dict[str, list[str]]:
    """The rows of one printed table (the lines after the one starting with `title`, up to a blank
    line), split into columns, by server name."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 3:]:  # title, column heads, rule
        if not line.strip() or line.startswith("("):
            break
        columns = line.split()
        rows[columns[0]] = columns
    return rows


async def test_fanout_bench_runs_two_nodes_and_many_rooms_and_delivers_every_message_once() -> None:
    require_tools("fanout.py", ("node", "npm", "redis-server"),
                  "drives the servers with a Node load generator, runs Node's socket.io and starts a "
                  "redis-server for the two-node case: it needs Node.js 18+, npm and redis-server "
                  "(e.g. `apt-get install nodejs npm redis-server`)")
    text = await run_bench("fanout.py", "--quick", "--cases", "two-nodes,many-rooms", "--servers", ",".join(SERVERS),
                           within=85)

    assert "== two-nodes: 1 room x 50 members on 2 nodes joined by Redis" in text, text
    assert "== many-rooms: 10 rooms x 5 members on one node" in text, text
    for table in ("two-nodes, steady:", "two-nodes, overload:", "many-rooms, steady:", "many-rooms, overload:"):
        rows = table_rows(text, table)
        assert set(rows) == set(SERVERS), (table, text)
        for name, columns in rows.items():
            # server, deliveries/s, p50, p99, ack p50/p99, exactly once, ...
            assert columns[5] == "yes", (table, name, text)
    assert "redis CPU" in text and "Redis's CPU is counted for neither side" in text, text
    assert "NOT delivered exactly once" not in text, text
    summary = text[text.index("Summary: Muster / Node's socket.io"):]
    assert "two-nodes: steady" in summary and "many-rooms: steady" in summary, text


async def test_fanout_bench_rounds_alternate_the_servers_and_summarise_by_median() -> None:
    require_tools("fanout.py", ("node", "npm"), "needs Node.js 18+ and npm")
    text = await run_bench("fanout.py", "--quick", "--cases", "many-rooms", "--servers", "muster,node", "--rounds", "2",
                           "--max-rate", "0", within=85)
    first, second = text.index("-- many-rooms (round 1 of 2)"), text.index("-- many-rooms (round 2 of 2)")
    # Each round runs both servers, the second in the reverse order.
    round_one, round_two = text[first:second], text[second:]
    assert round_one.index("   muster:") < round_one.index("   node:"), text
    assert round_two.index("   node:") < round_two.index("   muster:"), text
    for title in ("many-rooms, steady (round 1 of 2):", "many-rooms, steady (round 2 of 2):"):
        rows = table_rows(text, title)
        assert set(rows) == {"muster", "node"}, (title, text)
        assert all(columns[5] == "yes" for columns in rows.values()), (title, text)
    summary = text[text.index("Summary: Muster / Node's socket.io"):]
    assert "median of 2 rounds" in summary, text
    line = next(line for line in summary.splitlines() if line.strip().startswith("many-rooms:"))
    found = re.search(r"steady (\d+\.\d\d) \[(\d+\.\d\d) (\d+\.\d\d)\]", line)
    assert found is not None, line
    median, *values = (float(v) for v in found.groups())
    assert abs(median - sum(values) / 2) <= 0.006, line  # the median of two is their mean (each rounded)
