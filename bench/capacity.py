"""How many devices one Muster node holds: connections, memory per connection, latency under load.

Starts one server (pinned to one core where `taskset` exists) and one Node load generator
(`bench/node/capacity.js`, the official socket.io-client, websocket transport, permessage-deflate
offered as browsers do; pinned to the other core) that opens `--connections` devices (default
10,000): first the idle ones (in no room: they only answer the server's heartbeats), then
`--active` devices (default 5,000) that sit in rooms of `--room-size` (default 50, so 100 rooms).
It weighs the server's resident memory (RSS) before, after the idle devices, after the active ones
and after one heartbeat round, then steps the message rate up (`--rates`, messages per second over
all rooms; message i goes to room i % rooms and the room's members send in turn) for
`--step-seconds` each and reports the highest rate whose p99 meets the target (`--p99-ms`, 200).
Every member of the room, the sender included, must receive every message exactly once.

It reports, per server: connections held, RSS and memory per idle and per active connection,
then per step deliveries/s, p50/p99/max send->receive latency, server CPU and deliveries per
server CPU-second, and the highest rate that met the target. The same generator drives, in the
same run, a bare python-socketio server (`bench/baselines/bare_python_socketio.py`: the same
AsyncServer on aiohttp, nothing behind it) as the baseline, and prints Muster / baseline ratios.

Muster runs as `python -m server run` on a temporary data folder (embedded SQLite). Its users,
devices and rooms are written into that database before it starts, through the storage interface,
and each device gets an access token from Muster's own TokenService: signing 10,000 devices in
through POST /api/auth/login would spend minutes on password hashing and measure nothing this
bench is about (bench/api.py and bench/fanout.py cover sign-in). Connecting still runs Muster's
full socket path: the token is checked, user and device are read from storage, the socket joins
its rooms and presence is pushed to the room's members.

    .venv/bin/python bench/capacity.py [--connections 10000] [--active 5000] [--room-size 50]
        [--rates 25,50,100,200] [--step-seconds 20] [--p99-ms 200] [--hold 30] [--stop-at-miss]
        [--servers muster,bare-python] [--no-deflate] [--py-spy DIR] [--json FILE] [--quick]

Exits 1 if a connection was dropped or a message was lost, duplicated or misdelivered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this file runs as a script from bench/

from bench.fanout import (  # noqa: E402  (the helpers of the fan-out bench, shared)
    Pinning,
    cpu_seconds,
    die_with_parent,
    ensure_node_modules,
    free_port,
    pinning,
    py_spy_binary,
    start_py_spy,
    stop,
    stop_py_spy,
    wait_ready,
)

BENCH = ROOT / "bench"
NODE_DIR = BENCH / "node"
SERVERS = ("muster", "bare-python", "node")
ACCESS_TTL = 4 * 3600  # the tokens must outlive the run (the default is 15 minutes)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (from /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def raise_open_files(wanted: int) -> int:
    """Lift this process's open-files limit (children inherit it): one descriptor per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def room_layout(active: int, room_size: int) -> list[list[int]]:
    """Connection indices per room: the first `active` connections, `room_size` to a room."""
    return [list(range(start, min(start + room_size, active))) for start in range(0, active, room_size)]


async def seed_muster(data_dir: Path, connections: int, rooms: list[list[int]]) -> tuple[list[str], list[str]]:
    """Write users, one device each, and the rooms into Muster's database; return (tokens, room ids).

    Through the storage interface and Muster's TokenService (see the module docstring for why not
    through sign-in). Every user shares one password hash, made once with cheap Argon2 parameters.
    """
    from argon2 import PasswordHasher

    from server.app import make_storage
    from server.auth.tokens import TokenService
    from server.ids import new_id, now_ms
    from server.logging import configure_logging
    from server.settings import load_settings
    from server.storage.records import Device, Membership, Room, User

    configure_logging(level="error")
    settings = load_settings(environ={}, overrides={"server": {"data_dir": str(data_dir)},
                                                    "auth": {"access_ttl": ACCESS_TTL}})
    storage = make_storage(settings)
    tokens_service = TokenService(settings.auth, settings.sso)
    password_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("capacity-bench-password")
    await storage.open()
    try:
        now = now_ms()
        user_ids: list[str] = []
        tokens: list[str] = []
        for i in range(connections):
            user = User(id=new_id(), username=f"cap{i:05d}", display_name=f"队员{i:05d}", department_id=None,
                        title="", roles=("responder",), disabled=False, password_hash=password_hash,
                        created_at=now, updated_at=now)
            await storage.create_user(user)
            device = Device(id=new_id(), user_id=user.id, name=f"capacity-{i}",
                            kind="mobile" if i % 2 else "console", created_at=now, last_seen_at=now)
            await storage.create_device(device)
            user_ids.append(user.id)
            tokens.append(tokens_service.issue_access(user_id=user.id, device_id=device.id, now_s=now // 1000)[0])
        room_ids: list[str] = []
        for r, members in enumerate(rooms):
            room = Room(id=new_id(), kind="group", name=f"capacity room {r}", topic="", archived=False,
                        created_by=user_ids[members[0]], created_at=now, updated_at=now)
            await storage.create_room(room, [
                Membership(room_id=room.id, user_id=user_ids[i], role="owner" if p == 0 else "member", joined_at=now)
                for p, i in enumerate(members)])
            room_ids.append(room.id)
        return tokens, room_ids
    finally:
        await storage.close()


@dataclass
class Target:
    name: str
    adapter: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    python: bool = False


async def settle(pid: int, *, quiet_share: float = 0.05, at_most: float = 30.0) -> None:
    """Wait until the server's CPU falls quiet (presence pushes and the like are done)."""
    until = time.monotonic() + at_most
    quiet = 0
    while time.monotonic() < until and quiet < 2:
        before = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        quiet = quiet + 1 if cpu_seconds(pid) - before < quiet_share * 0.5 else 0


async def sample_rss(pid: int, peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], rss_bytes(pid))
        await asyncio.sleep(0.25)


async def run_one(target: Target, args: argparse.Namespace, node: str, pin: Pinning, work: Path,
                  rooms: list[list[int]], extra: dict[str, Any]) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = work / f"{target.name}.log"
    with log_file.open("wb") as log:
        server = await asyncio.create_subprocess_exec(
            *pin.server, *target.command, "--port", str(port), cwd=ROOT, env={**os.environ, **target.env},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    loadgen: asyncio.subprocess.Process | None = None
    profiler: asyncio.subprocess.Process | None = None
    sampler: asyncio.Task[None] | None = None
    result: dict[str, Any] | None = None
    r: dict[str, Any] = {"name": target.name, "steps": {}}
    try:
        await wait_ready(url, server)
        await settle(server.pid)
        r["rss_start"] = rss_bytes(server.pid)
        config = {"adapter": target.adapter, "url": url, "connections": args.connections, "rooms": rooms,
                  "deflate": args.deflate, "connectConcurrency": args.connect_concurrency,
                  "steps": [{"rate": rate, "seconds": args.step_seconds} for rate in args.rates],
                  "p99TargetMs": args.p99_ms, "stopAfterMiss": args.stop_at_miss, "drainSeconds": args.drain_seconds,
                  "pauseSeconds": 2, "deadline": args.timeout, **extra}
        config_file = work / f"{target.name}-loadgen.json"
        config_file.write_text(json.dumps(config))
        loadgen = await asyncio.create_subprocess_exec(
            *pin.loadgen, node, str(NODE_DIR / "capacity.js"), str(config_file), cwd=NODE_DIR,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, preexec_fn=die_with_parent,
            limit=2**24)
        assert loadgen.stdout is not None and loadgen.stdin is not None
        marks: dict[str, tuple[float, float]] = {}
        peak = [0]
        started = time.monotonic()
        while result is None:
            line = await asyncio.wait_for(loadgen.stdout.readline(), args.timeout)
            if not line:
                raise RuntimeError(f"the load generator stopped without a result (exit {await loadgen.wait()})")
            message = json.loads(line)
            kind = message.get("phase")
            if kind == "connected":
                group = message["group"]
                r[f"connect_{group}_s"] = message["seconds"]
                r[f"{group}_count"] = message["count"]
                await settle(server.pid)
                r[f"rss_{group}"] = rss_bytes(server.pid)
                print(f"   {target.name}: {message['count']:,} {group} connections in {message['seconds']:.1f}s; "
                      f"server RSS {r[f'rss_{group}'] / 2**20:,.0f} MiB", flush=True)
                if group == "active":
                    r["deflate"] = message.get("deflate")
                    if args.hold > 0:
                        # Hold long enough for one heartbeat round (python-engineio and socket.io ping
                        # every 25 s): the first frame a socket sends can allocate per-connection state.
                        await asyncio.sleep(args.hold)
                        await settle(server.pid)
                    r["rss_held"] = rss_bytes(server.pid)
                    r["cpu_idle_share"] = await cpu_share(server.pid, 5.0 if args.hold > 0 else 1.0)
                    print(f"   {target.name}: held {args.hold:.0f}s; server RSS {r['rss_held'] / 2**20:,.0f} MiB, "
                          f"CPU while idle {r['cpu_idle_share']:.1%}", flush=True)
                loadgen.stdin.write(b"go\n")
                await loadgen.stdin.drain()
            elif kind == "start":
                marks[message["name"]] = (cpu_seconds(server.pid), time.monotonic())
                peak = [rss_bytes(server.pid)]
                sampler = asyncio.create_task(sample_rss(server.pid, peak))
                if target.python and args.py_spy and profiler is None:
                    profiler = await start_py_spy(server.pid, args.py_spy / f"capacity-{target.name}.collapsed", pin)
            elif kind == "end":
                cpu0, wall0 = marks[message["name"]]
                marks[message["name"]] = (cpu_seconds(server.pid) - cpu0, time.monotonic() - wall0)
                if sampler is not None:
                    sampler.cancel()
                    sampler = None
            elif kind == "done":
                step = message["result"]
                cpu, wall = marks[message["name"]]
                step["server_cpu_s"] = cpu
                step["server_cpu_share"] = cpu / max(wall, 1e-9)
                step["deliveries_per_server_cpu_s"] = step["delivered"] / cpu if cpu > 0 else None
                step["rss_peak"] = peak[0]
                r["steps"][message["name"]] = step
                print(f"   {target.name} {message['name']:>7}: {step['deliveries_per_s']:9,.0f} deliveries/s, "
                      f"p50/p99/max {fmt(step['p50_ms'], '.0f')}/{fmt(step['p99_ms'], '.0f')}/"
                      f"{fmt(step['max_ms'], '.0f')} ms, server CPU {step['server_cpu_share']:.0%}, "
                      f"{'exactly once' if step['exactly_once'] else 'NOT exactly once'}"
                      f"{'' if step['met'] else ' (target missed)'}", flush=True)
            elif kind == "error":
                raise RuntimeError(f"load generator: {message.get('error')}")
            elif kind == "result":
                result = message
        if profiler is not None:
            await stop_py_spy(profiler, args.py_spy / f"capacity-{target.name}.collapsed")
            profiler = None
        r["seconds"] = time.monotonic() - started
        r.update({k: result[k] for k in ("connections", "active", "idle", "held", "disconnects",
                                         "disconnect_reasons", "out_of_order", "unknown")})
        return r
    except BaseException:
        tail = log_file.read_text(errors="replace")[-3000:].strip()
        if tail:
            print(f"--- {target.name} server output (last lines) ---\n{tail}\n---", file=sys.stderr)
        raise
    finally:
        if sampler is not None:
            sampler.cancel()
        if profiler is not None:
            await stop(profiler, 5)
        stopping = time.monotonic()
        await stop(server, 30)  # first, so the server closes its sockets the way it does on shutdown
        r["server_stop_s"] = time.monotonic() - stopping
        if loadgen is not None:
            await stop(loadgen, 5)


async def cpu_share(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def memory(r: dict[str, Any]) -> dict[str, float | None]:
    """Bytes of server RSS per connection: idle ones, active ones, and all after the hold."""
    idle, active = r.get("idle_count", 0), r.get("active_count", 0)
    return {
        "idle": (r["rss_idle"] - r["rss_start"]) / idle if idle else None,
        "active": (r["rss_active"] - r["rss_idle"]) / active if active else None,
        "held": (r["rss_held"] - r["rss_start"]) / (idle + active) if idle + active else None,
    }


def best_step(r: dict[str, Any]) -> dict[str, Any] | None:
    met = [s for s in r["steps"].values() if s["met"]]
    return max(met, key=lambda s: s["rate"]) if met else None


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    for name, r in results.items():
        m = memory(r)
        print(f"{name}: held {r['held']:,} of {r['connections']:,} connections ({r['active']:,} active in "
              f"{args.layout} rooms of {args.room_size}); "
              f"{r['disconnects']} dropped; connect {r['connect_idle_s']:.0f}s idle + {r['connect_active_s']:.0f}s "
              f"active; permessage-deflate {'on' if r.get('deflate') else 'off'}")
        print(f"  server RSS: {r['rss_start'] / 2**20:,.0f} MiB at start, {r['rss_idle'] / 2**20:,.0f} with the idle "
              f"devices, {r['rss_active'] / 2**20:,.0f} with all, {r['rss_held'] / 2**20:,.0f} after {args.hold:.0f}s "
              f"(a heartbeat round), peak under load "
              f"{max((s['rss_peak'] for s in r['steps'].values()), default=0) / 2**20:,.0f}")
        print(f"  memory per connection: idle {fmt_kib(m['idle'])}, active (in a room) {fmt_kib(m['active'])}, "
              f"all after the heartbeat round {fmt_kib(m['held'])}; server CPU while nobody sends "
              f"{r['cpu_idle_share']:.1%}")
        head = (f"  {'rate msg/s':>10} {'deliveries/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'p99.9':>7} {'max ms':>7} "
                f"{'ack p99':>7} {'server CPU':>10} {'deliv/CPU-s':>11} {'loadgen CPU':>11} {'RSS peak':>9}  result")
        print(head)
        for s in r["steps"].values():
            verdict = "exactly once" if s["exactly_once"] else (
                f"NOT exactly once: {s['missing']} lost, {s['duplicates']} dup, {s['strays']} stray")
            if s["ack_errors"]:
                verdict += f"; {s['ack_errors']} error acks, e.g. {s['first_ack_errors'][:1]}"
            verdict += "" if s["met"] else f"; misses p99 <= {args.p99_ms:g} ms"
            print(f"  {s['rate']:>10g} {s['deliveries_per_s']:12,.0f} {fmt(s['p50_ms'], '7.1f')} "
                  f"{fmt(s['p99_ms'], '7.1f')} {fmt(s['p999_ms'], '7.0f')} {fmt(s['max_ms'], '7.0f')} "
                  f"{fmt(s['ack_p99_ms'], '7.1f')} "
                  f"{s['server_cpu_share']:10.0%} {fmt(s['deliveries_per_server_cpu_s'], '11,.0f')} "
                  f"{s['loadgen_cpu']:11.0%} {s['rss_peak'] / 2**20:8,.0f}M  {verdict}")
        best = best_step(r)
        if best is None:
            print(f"  no step met p99 <= {args.p99_ms:g} ms with every message delivered exactly once")
        else:
            print(f"  highest rate meeting the target: {best['rate']:g} messages/s = {best['deliveries_per_s']:,.0f} "
                  f"deliveries/s, p99 {best['p99_ms']:.0f} ms, server CPU {best['server_cpu_share']:.0%}")
        lags = [s["loadgen_lag_max_ms"] for s in r["steps"].values()]
        print(f"  the load generator's own longest event-loop stall per step: "
              f"{', '.join(f'{lag:.0f}' for lag in lags)} ms (a stall there delays the receive times it records)")
        if r["out_of_order"] or r["unknown"]:
            print(f"  {r['out_of_order']} deliveries out of sequence order, {r['unknown']} of no measured step")
        print(f"  server stopped {r['server_stop_s']:.1f}s after SIGTERM")
        print()
    muster = results.get("muster")
    for other in ("bare-python", "node"):
        base = results.get(other)
        if muster is None or base is None:
            continue
        mm, bm = memory(muster), memory(base)
        common = [rate for rate in args.rates if f"{rate:g}/s" in muster["steps"] and f"{rate:g}/s" in base["steps"]]
        parts = [f"memory per idle connection {ratio(mm['idle'], bm['idle'])}x",
                 f"after the heartbeat round {ratio(mm['held'], bm['held'])}x"]
        if common:
            top = f"{common[-1]:g}/s"
            ms, bs = muster["steps"][top], base["steps"][top]
            per_cpu = ratio(ms["deliveries_per_server_cpu_s"], bs["deliveries_per_server_cpu_s"])
            parts.append(f"at {top}: deliveries per server CPU-s {per_cpu}, p99 {ratio(ms['p99_ms'], bs['p99_ms'])}x")
        mb, bb = best_step(muster), best_step(base)
        if mb and bb:
            parts.append(f"highest rate meeting the target {ratio(mb['rate'], bb['rate'])}")
        print(f"Muster / {other}: " + "; ".join(parts))


def fmt_kib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:,.1f} KiB"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000, help="devices connected at once")
    parser.add_argument("--active", type=int, default=5_000, help="of them, devices in rooms (the rest stay idle)")
    parser.add_argument("--room-size", type=int, default=50, help="members per room")
    parser.add_argument("--rates", default="25,50,100,200",
                        help="messages per second over all rooms, one measured step each, stepping up")
    parser.add_argument("--step-seconds", type=float, default=20.0,
                        help="length of each step (long enough to take in the server's pauses, e.g. garbage "
                             "collection)")
    parser.add_argument("--p99-ms", type=float, default=200.0, help="latency target: p99 of send->receive")
    parser.add_argument("--stop-at-miss", action="store_true",
                        help="stop after the first step that misses the target (default: run every step, since "
                             "a pause can make a lower rate miss and a higher one pass)")
    parser.add_argument("--hold", type=float, default=30.0,
                        help="seconds to hold every connection idle before the steps (one heartbeat round)")
    parser.add_argument("--drain-seconds", type=float, default=20.0, help="wait for deliveries after a step")
    parser.add_argument("--connect-concurrency", type=int, default=50, help="connections opened at once")
    parser.add_argument("--servers", default="muster,bare-python", help=f"comma-separated subset of {SERVERS}")
    parser.add_argument("--no-deflate", dest="deflate", action="store_false",
                        help="clients do not offer permessage-deflate (browsers do)")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample the Python servers with py-spy during the steps (DIR/capacity-<server>.collapsed)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure to FILE as JSON")
    parser.add_argument("--timeout", type=float, default=1800.0, help="hard limit per server, seconds")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 devices, 100 in rooms of 10, 10 then 20 messages/s for 3 s, no hold")
    args = parser.parse_args()
    if args.quick:
        args.connections, args.active, args.room_size = 200, 100, 10
        args.rates, args.step_seconds, args.hold, args.drain_seconds = "10,20", 3.0, 0.0, 10.0
    args.rates = [float(x) for x in str(args.rates).split(",") if x.strip()]
    if not 0 < args.active <= args.connections or args.room_size < 2 or not args.rates:
        raise SystemExit("need 0 < --active <= --connections, --room-size >= 2 and at least one rate")
    chosen = [s.strip() for s in args.servers.split(",") if s.strip()]
    if set(chosen) - set(SERVERS):
        raise SystemExit(f"unknown servers {sorted(set(chosen) - set(SERVERS))}; choose from {SERVERS}")

    open_files = raise_open_files(args.connections + 4096)
    if open_files < args.connections + 256:
        raise SystemExit(f"the open-files limit is {open_files}: too low for {args.connections} connections "
                         "(raise the hard limit: ulimit -Hn, or run as root)")
    node = ensure_node_modules()
    if args.py_spy:
        py_spy_binary()
        args.py_spy.mkdir(parents=True, exist_ok=True)
    pin = pinning()
    rooms = room_layout(args.active, args.room_size)
    args.layout = len(rooms)
    print(f"capacity: {args.connections:,} devices, {args.active:,} of them in {len(rooms)} rooms of "
          f"{args.room_size} (the others idle); steps of {args.step_seconds:g}s at "
          f"{', '.join(f'{r:g}' for r in args.rates)} messages/s over all rooms (target p99 <= {args.p99_ms:g} ms); "
          f"clients {'offer' if args.deflate else 'do not offer'} permessage-deflate; open files {open_files}",
          flush=True)
    print(pin.note, flush=True)
    work = Path(tempfile.mkdtemp(prefix="muster-capacity-"))
    try:
        results: dict[str, dict[str, Any]] = {}
        for name in chosen:
            extra: dict[str, Any] = {}
            if name == "muster":
                data = work / "muster-data"
                started = time.monotonic()
                tokens, room_ids = await seed_muster(data, args.connections, rooms)
                print(f"seeded {args.connections:,} Muster users and devices and {len(rooms)} rooms in "
                      f"{time.monotonic() - started:.1f}s", flush=True)
                extra = {"tokens": tokens, "roomIds": room_ids}
                target = Target("muster", "muster", [sys.executable, "-m", "server", "run"],
                                env={"MUSTER_SERVER_DATA_DIR": str(data), "MUSTER_LOG_LEVEL": "error",
                                     "MUSTER_AUTH_ACCESS_TTL": str(ACCESS_TTL)}, python=True)
            elif name == "bare-python":
                target = Target(name, "bare", [sys.executable, str(BENCH / "baselines" / "bare_python_socketio.py"),
                                               "--max-seconds", str(args.timeout + 120)], python=True)
            else:
                target = Target(name, "bare", [node, str(BENCH / "baselines" / "node_socketio_server.js"),
                                               "--max-seconds", str(args.timeout + 120)])
            results[name] = await run_one(target, args, node, pin, work, rooms, extra)
        report(results, args)
        if args.json:
            for r in results.values():
                r["memory_per_connection"] = memory(r)
            args.json.write_text(json.dumps(results, indent=1))
        broken = [f"{name}: {r['connections'] - r['held']} connections dropped" for name, r in results.items()
                  if r["held"] != r["connections"]]
        broken += [f"{name} at {step}" for name, r in results.items() for step, s in r["steps"].items()
                   if not s["exactly_once"]]
        if broken:
            raise SystemExit(f"NOT every connection held and every message delivered exactly once: {'; '.join(broken)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: servers stopped, temp folder removed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    asyncio.run(main())
