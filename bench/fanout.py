"""What delivering one message to many sockets costs Muster, next to two bare Socket.IO servers.

Two cases, each with the same Node load generator (`bench/node/loadgen.js`, the official
`socket.io-client`, which offers permessage-deflate as browsers do unless `--no-deflate`):

- big-room: one room of 1,000 members (one sender, 999 receivers);
- many-rooms: 100 rooms of 20 (each room's first member sends; message i goes to room i % 100).

For each case it drives, one after the other in the same run:

- Muster (`python -m server run`, embedded SQLite: every message authorised, validated, stored,
  sequenced, acked, then fanned out by `server/gateway/fastpath.py`),
- a bare python-socketio server on aiohttp (`bench/baselines/bare_python_socketio.py`: emit to a room, ack),
- Node's socket.io server (`bench/baselines/node_socketio_server.js`, the same two events),

in two phases on the same connections: "steady", a rate every server keeps up with (latency), then
"overload", a higher rate (throughput). For each it prints delivered messages per second
(deliveries = messages x receivers; senders' own copies are not counted), send->receive latency
p50/p99, whether every message reached every receiver of its room exactly once, and the server's CPU
time, then the ratios Muster/Node and Muster/bare-python, and a summary of Muster/Node in deliveries
per server CPU-second per case. Where `taskset` exists the server runs on one core and the load
generator on another. Loopback only; every process it starts stops by itself, also when the bench is
killed. Exits 1 if any message was lost, duplicated or delivered outside its room.

    .venv/bin/python bench/fanout.py [--cases big-room,many-rooms] [--rooms R] [--members N] [--messages M]
                                     [--rate R] [--max-rate R2] [--no-deflate] [--servers muster,bare-python,node]
                                     [--py-spy DIR] [--quick] [--nodes 1]

`--nodes 2` (the same rooms split across two servers joined by Redis) is a hook, not built yet.
Needs Node and npm: `npm ci` installs socket.io into bench/node/ when node_modules is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
NODE_DIR = BENCH / "node"
SERVERS = ("muster", "bare-python", "node")
PASSWORD = "fanout-bench-password"
USER_PREFIX = "fan"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """Run in the child before exec: the kernel sends it SIGTERM when the bench dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Pinning:
    server: list[str] = field(default_factory=list)
    loadgen: list[str] = field(default_factory=list)
    note: str = "not pinned"


def pinning() -> Pinning:
    cpus = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if taskset is None:
        return Pinning(note="not pinned (no taskset): server and load generator share the cores")
    if len(cpus) < 2:
        return Pinning(note=f"not pinned (only CPU {cpus} available): server and load generator share it")
    return Pinning(server=[taskset, "-c", str(cpus[0])], loadgen=[taskset, "-c", str(cpus[1])],
                   note=f"server pinned to CPU {cpus[0]}, load generator to CPU {cpus[1]} (taskset)")


def ensure_node_modules() -> str:
    """The node binary; installs bench/node/node_modules from the lock file when missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit("bench/fanout.py needs Node.js and npm (the load generator and the socket.io baseline "
                         "are Node programs): install them, e.g. `apt-get install nodejs npm`")
    wanted = [NODE_DIR / "node_modules" / name / "package.json" for name in ("socket.io", "socket.io-client")]
    if not all(p.exists() for p in wanted):
        print("installing bench/node dependencies (npm ci) ...", flush=True)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True)
    return node


async def seed_muster_users(data_dir: Path, count: int) -> None:
    """Create the room's members in Muster's database before it starts.

    Through Muster's own OrgService, but with cheap Argon2 parameters (as the tests do): 500
    default-strength hashes, and as many verifications at sign-in, would take about a minute and
    measure nothing this bench is about. Sign-in still goes through POST /api/auth/login.
    """
    sys.path.insert(0, str(ROOT))  # this file runs as a script from bench/
    from argon2 import PasswordHasher

    from server.app import make_storage
    from server.audit.service import AuditLog
    from server.auth.passwords import Passwords
    from server.auth.service import AuthService
    from server.auth.tokens import TokenService
    from server.counters import MemoryCounters
    from server.logging import configure_logging
    from server.org.service import OrgService
    from server.settings import load_settings

    configure_logging(level="error")  # not one audit line per user
    settings = load_settings(environ={}, overrides={"server": {"data_dir": str(data_dir)}})
    storage = make_storage(settings)
    await storage.open()
    try:
        audit = AuditLog(storage)
        passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        auth = AuthService(storage=storage, audit=audit, tokens=TokenService(settings.auth, settings.sso),
                           passwords=passwords, counters=MemoryCounters(), settings=settings.auth)
        org = OrgService(storage=storage, audit=audit, auth=auth)
        for i in range(count):
            await org.create_user(None, username=f"{USER_PREFIX}{i:04d}", display_name=f"队员{i:04d}",
                                  password=PASSWORD, roles=["responder"])
    finally:
        await storage.close()


@dataclass
class Target:
    """One server under test: how to start it and which load-generator adapter drives it."""

    name: str
    adapter: str
    command: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    python: bool = False  # py-spy can sample it


@dataclass
class Case:
    """One shape of load: `rooms` rooms of `members` (a sender and members - 1 receivers each); message i
    goes to room i % rooms; `messages` per phase at `rate` (steady) then `max_rate` (overload) in all."""

    name: str
    rooms: int
    members: int
    messages: int
    rate: float
    max_rate: float

    @property
    def title(self) -> str:
        return f"{self.rooms} room{'s' if self.rooms > 1 else ''} x {self.members} members"


CASES = {
    # (a) one node, one big room: the county-wide alert.
    "big-room": Case("big-room", rooms=1, members=1000, messages=200, rate=20.0, max_rate=200.0),
    # (b) many small rooms: teams at work. Muster's per-message storage shows here.
    "many-rooms": Case("many-rooms", rooms=100, members=20, messages=1000, rate=100.0, max_rate=2000.0),
}


async def wait_ready(url: str, proc: asyncio.subprocess.Process, seconds: float = 60) -> None:
    async with aiohttp.ClientSession() as http:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if proc.returncode is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
            try:
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server at {url} was not ready within {seconds:.0f}s")


async def stop(proc: asyncio.subprocess.Process, grace: float) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("--py-spy needs py-spy (profiling only, not a project dependency): "
                         ".venv/bin/pip install py-spy")
    return found


async def start_py_spy(pid: int, output: Path, pin: Pinning) -> asyncio.subprocess.Process:
    """Sample a Python server through the measured phases (from the load generator's core, not the server's)."""
    return await asyncio.create_subprocess_exec(
        *pin.loadgen, py_spy_binary(), "record", "--pid", str(pid), "--rate", "250", "--nonblocking",
        "--format", "raw", "--output", str(output), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)


async def stop_py_spy(profiler: asyncio.subprocess.Process, output: Path) -> None:
    profiler.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
    try:
        await asyncio.wait_for(profiler.wait(), 30)
    except TimeoutError:
        profiler.kill()
        await profiler.wait()
    print(f"   py-spy: collapsed stacks of the measured phases in {output} (py-spy exit {profiler.returncode})",
          flush=True)


async def run_one(target: Target, case: Case, args: argparse.Namespace, node: str, pin: Pinning,
                  logs: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **target.env}
    log_file = logs / f"{case.name}-{target.name}.log"
    with log_file.open("wb") as log:
        server = await asyncio.create_subprocess_exec(
            *pin.server, *target.command(port), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    loadgen: asyncio.subprocess.Process | None = None
    profiler: asyncio.subprocess.Process | None = None
    result: dict[str, Any] | None = None
    try:
        await wait_ready(url, server)
        phases = [{"name": "steady", "messages": case.messages, "rate": case.rate}]
        if case.max_rate > 0:
            phases.append({"name": "overload", "messages": case.messages, "rate": case.max_rate})
        config = {"server": target.adapter, "url": url, "members": case.members, "rooms": case.rooms,
                  "phases": phases,
                  "warmup": args.warmup, "drainSeconds": args.drain_seconds, "deflate": args.deflate,
                  "deadline": args.timeout, "userPrefix": USER_PREFIX, "password": PASSWORD,
                  "connectConcurrency": 50}
        loadgen = await asyncio.create_subprocess_exec(
            *pin.loadgen, node, str(NODE_DIR / "loadgen.js"), json.dumps(config), cwd=NODE_DIR,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, preexec_fn=die_with_parent)
        assert loadgen.stdout is not None
        marks: dict[tuple[str, str], tuple[float, float]] = {}  # (phase, start|done) -> (server CPU s, wall s)
        while result is None:
            line = await asyncio.wait_for(loadgen.stdout.readline(), args.timeout)
            if not line:
                raise RuntimeError(f"the load generator stopped without a result (exit {await loadgen.wait()})")
            message = json.loads(line)
            kind = message.get("phase")
            if kind in ("start", "done"):
                marks[(message["name"], kind)] = (cpu_seconds(server.pid), time.monotonic())
                if target.python and args.py_spy:
                    if kind == "start" and profiler is None:
                        profiler = await start_py_spy(server.pid, args.py_spy / f"{case.name}-{target.name}.collapsed",
                                                      pin)
                    elif kind == "done" and message["name"] == phases[-1]["name"] and profiler is not None:
                        await stop_py_spy(profiler, args.py_spy / f"{case.name}-{target.name}.collapsed")
                        profiler = None
            elif kind == "error":
                raise RuntimeError(f"load generator: {message.get('error')}")
            elif kind == "result":
                result = message
        await loadgen.wait()
        for name, phase in result["phases"].items():
            (cpu0, wall0), (cpu1, wall1) = marks[(name, "start")], marks[(name, "done")]
            phase["server_cpu_s"] = cpu1 - cpu0
            phase["server_cpu_share"] = (cpu1 - cpu0) / max(wall1 - wall0, 1e-9)
            phase["deliveries_per_server_cpu_s"] = phase["delivered"] / (cpu1 - cpu0) if cpu1 > cpu0 else None
        result["name"] = target.name
        return result
    except BaseException:
        tail = log_file.read_text(errors="replace")[-3000:].strip()
        if tail:
            print(f"--- {target.name} server output (last lines) ---\n{tail}\n---", file=sys.stderr)
        raise
    finally:
        if profiler is not None:
            await stop(profiler, 5)
        if loadgen is not None:
            await stop(loadgen, 5)
        stopping = time.monotonic()
        await stop(server, 30)
        if result is not None:
            result["server_stop_s"] = time.monotonic() - stopping


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(title: str, results: dict[str, dict[str, Any]], phase: str) -> None:
    rows = [(name, r["phases"][phase]) for name, r in results.items() if phase in r["phases"]]
    if not rows:
        return
    first = rows[0][1]
    print(f"{title}: {first['messages']} messages at {first['rate']:g}/s, "
          f"{first['offered_per_s']:,.0f} deliveries/s offered")
    head = (f"{'server':12} {'deliveries/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'ack p50/p99 ms':>15} "
            f"{'exactly once':>12} {'server CPU':>10} {'deliv/CPU-s':>11} {'loadgen CPU':>11}  bound by")
    print(head)
    print("-" * len(head))
    for name, p in rows:
        once = "yes" if p["exactly_once"] else f"NO: {p['missing']} lost, {p['duplicates']} dup"
        acks = f"{fmt(p['ack_p50_ms'], '.1f')}/{fmt(p['ack_p99_ms'], '.1f')}"
        print(f"{name:12} {p['deliveries_per_s']:12,.0f} {fmt(p['p50_ms'], '8.1f')} {fmt(p['p99_ms'], '8.1f')} "
              f"{acks:>15} {once:>12} {p['server_cpu_share']:10.0%} {fmt(p['deliveries_per_server_cpu_s'], '11,.0f')} "
              f"{p['loadgen_cpu']:11.0%}  {bound(p)}")
    print()


def bound(p: dict[str, Any]) -> str:
    """What most likely held the phase back (a reading of the figures, not a measurement)."""
    if p["deliveries_per_s"] >= 0.95 * p["offered_per_s"]:
        return "nothing: kept up"
    if p["loadgen_cpu"] >= 0.9:
        return "load generator CPU"
    if p["server_cpu_share"] >= 0.8:
        return "server CPU"
    return "neither CPU full: unclear"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


def print_ratios(results: dict[str, dict[str, Any]]) -> None:
    muster = results.get("muster")
    if muster is None:
        return
    for other in ("node", "bare-python"):
        base = results.get(other)
        if base is None:
            continue
        m, b = muster["phases"], base["phases"]
        parts = [f"steady p50 {ratio(m['steady']['p50_ms'], b['steady']['p50_ms'])}x",
                 f"p99 {ratio(m['steady']['p99_ms'], b['steady']['p99_ms'])}x",
                 "deliveries per server CPU-s "
                 f"{ratio(m['steady']['deliveries_per_server_cpu_s'], b['steady']['deliveries_per_server_cpu_s'])}"]
        if "overload" in m and "overload" in b:
            parts.append("overload deliveries/s "
                         f"{ratio(m['overload']['deliveries_per_s'], b['overload']['deliveries_per_s'])}")
        print(f"Muster / {other:11}  " + "   ".join(parts))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {tuple(CASES)}: " + "; ".join(
                            f"{c.name}: {c.title}, {c.messages} messages at {c.rate:g}/s then {c.max_rate:g}/s"
                            for c in CASES.values()))
    parser.add_argument("--rooms", type=int, help="override every case's number of rooms")
    parser.add_argument("--members", type=int, help="override every case's members per room, sender included")
    parser.add_argument("--messages", type=int, help="override every case's messages per measured phase")
    parser.add_argument("--rate", type=float,
                        help="override the steady phase's messages per second (latency: every server keeps up)")
    parser.add_argument("--max-rate", type=float,
                        help="override the overload phase's messages per second (throughput; 0 skips it)")
    parser.add_argument("--warmup", type=int, default=10, help="messages sent (and delivered) before measuring")
    parser.add_argument("--drain-seconds", type=float, default=40.0,
                        help="how long to wait for deliveries after the last message is due")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated subset of {SERVERS}")
    parser.add_argument("--deflate", action=argparse.BooleanOptionalAction, default=True,
                        help="clients offer permessage-deflate, as browsers and socket.io-client's defaults do "
                             "(default on; Muster and Node's socket.io decline it, stock python-socketio accepts "
                             "and compresses every frame for every recipient)")
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 2),
                        help="2: the same room split across two server processes joined by Redis (not built yet)")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample the Python servers with py-spy during the measured phases; collapsed stacks "
                             "(flamegraph input) to DIR/<case>-<server>.collapsed")
    parser.add_argument("--timeout", type=float, default=240.0, help="hard limit per server and case, seconds")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 room of 50 and 10 rooms of 5, 50 messages (nothing is overloaded)")
    args = parser.parse_args()
    if args.nodes == 2:
        raise SystemExit("--nodes 2 (two servers joined by Redis, against socket.io's Redis adapter) is a hook "
                         "for the cluster work and is not built yet")
    chosen_cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if set(chosen_cases) - set(CASES):
        raise SystemExit(f"unknown cases {sorted(set(chosen_cases) - set(CASES))}; choose from {tuple(CASES)}")
    cases = [CASES[c] for c in chosen_cases]
    if args.quick:
        args.warmup = 5
        cases = [Case(c.name, rooms=min(c.rooms, 10), members=50 if c.rooms == 1 else 5, messages=50,
                      rate=20.0, max_rate=100.0) for c in cases]
    cases = [Case(c.name, rooms=args.rooms or c.rooms, members=args.members or c.members,
                  messages=args.messages or c.messages, rate=args.rate or c.rate,
                  max_rate=c.max_rate if args.max_rate is None else args.max_rate) for c in cases]
    if any(c.members < 2 for c in cases):
        raise SystemExit("--members must be at least 2 (a sender and a receiver)")
    chosen = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(chosen) - set(SERVERS)
    if unknown:
        raise SystemExit(f"unknown servers {sorted(unknown)}; choose from {SERVERS}")

    node = ensure_node_modules()
    if args.py_spy:
        py_spy_binary()
        args.py_spy.mkdir(parents=True, exist_ok=True)
    pin = pinning()
    data = Path(tempfile.mkdtemp(prefix="muster-fanout-"))  # Muster's data folder and the servers' logs
    try:
        targets = {
            "muster": Target(
                name="muster", adapter="muster",
                command=lambda port: [sys.executable, "-m", "server", "run", "--port", str(port)],
                env={"MUSTER_SERVER_DATA_DIR": str(data), "MUSTER_LOG_LEVEL": "error",
                     # One sender per room sends every message: lift the per-device flood limit.
                     "MUSTER_GATEWAY_EVENTS_PER_SECOND": "1000000", "MUSTER_GATEWAY_EVENT_BURST": "1000000"},
                python=True),
            "bare-python": Target(
                name="bare-python", adapter="bare",
                command=lambda port: [sys.executable, str(BENCH / "baselines" / "bare_python_socketio.py"),
                                      "--port", str(port), "--max-seconds", str(args.timeout + 60)],
                python=True),
            "node": Target(
                name="node", adapter="bare",
                command=lambda port: [node, str(BENCH / "baselines" / "node_socketio_server.js"),
                                      "--port", str(port), "--max-seconds", str(args.timeout + 60)]),
        }
        print(f"fan-out, one node; clients {'offer' if args.deflate else 'do not offer'} permessage-deflate; "
              f"{args.warmup} warm-up messages per run", flush=True)
        print(pin.note, flush=True)
        if "muster" in chosen:
            users = max(c.rooms * c.members for c in cases)
            started = time.monotonic()
            await seed_muster_users(data, users)
            print(f"seeded {users} Muster users in {time.monotonic() - started:.1f}s", flush=True)
        all_results: dict[str, dict[str, dict[str, Any]]] = {}
        for case in cases:
            print(f"\n== {case.name}: {case.title} ({case.members - 1} receivers a message); {case.messages} messages "
                  f"at {case.rate:g}/s (steady)"
                  + (f", then at {case.max_rate:g}/s (overload)" if case.max_rate > 0 else ""), flush=True)
            results = all_results[case.name] = {}
            for name in chosen:
                started = time.monotonic()
                r = results[name] = await run_one(targets[name], case, args, node, pin, data)
                setup = r["setup_s"]
                notes = [f"{name}: {time.monotonic() - started:.0f}s; set-up: sign-in {setup['sign_in']:.1f}s, "
                         f"connect {setup['connect']:.1f}s, room join {setup['join']:.1f}s",
                         f"event {r['event_bytes']} bytes on the wire",
                         f"permessage-deflate {'on' if r['deflate'] else 'off'}"]
                for phase_name, p in r["phases"].items():
                    notes.append(f"{phase_name}: sender at most {p['send_lag_max_ms']:.0f} ms behind schedule")
                    if p["ack_errors"]:
                        notes.append(f"{phase_name}: {p['ack_errors']} error acks, e.g. {p['first_ack_errors'][:1]}")
                notes.append(f"server stopped {r['server_stop_s']:.1f}s after SIGTERM")
                if r["out_of_order"]:
                    notes.append(f"{r['out_of_order']} deliveries with a sequence number not above the previous one")
                if r["strays"]:
                    notes.append(f"{r['strays']} deliveries to a socket outside the message's room")
                print("   " + "; ".join(notes), flush=True)
            print()
            print_table(f"{case.name}, steady", results, "steady")
            print_table(f"{case.name}, overload", results, "overload")
            print_ratios(results)
        print("\nSummary: Muster / Node's socket.io, deliveries per server CPU-second (target >= 0.5)")
        for case_name, results in all_results.items():
            print("  " + case_name + ": " + ", ".join(
                f"{phase} {cpu_ratio(results, 'node', phase)} (bare python-socketio / Node "
                f"{cpu_ratio(results, 'node', phase, subject='bare-python')})"
                for phase in ("steady", "overload") if phase in results.get("muster", {}).get("phases", {})))
        broken = [f"{case_name}: {name} ({phase_name})" for case_name, results in all_results.items()
                  for name, r in results.items() for phase_name, p in r["phases"].items()
                  if not p["exactly_once"] or r["strays"]]
        if broken:
            raise SystemExit(f"NOT delivered exactly once: {', '.join(broken)}")
    finally:
        shutil.rmtree(data, ignore_errors=True)


def cpu_ratio(results: dict[str, dict[str, Any]], base: str, phase: str, subject: str = "muster") -> str:
    a, b = results.get(subject), results.get(base)
    if a is None or b is None or phase not in a["phases"] or phase not in b["phases"]:
        return "-"
    return ratio(a["phases"][phase]["deliveries_per_server_cpu_s"], b["phases"][phase]["deliveries_per_server_cpu_s"])


def exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: servers stopped, temp folder removed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    asyncio.run(main())
