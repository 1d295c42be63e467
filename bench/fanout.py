"""What delivering one message to many sockets costs Muster, next to two bare Socket.IO servers.

Three cases, each with the same Node load generator (`bench/node/loadgen.js`, the official
`socket.io-client`, which offers permessage-deflate as browsers do unless `--no-deflate`):

- big-room: one node, one room of 1,000 members (one sender, 999 receivers);
- two-nodes: the same room split across two server processes joined by Redis (members alternate
  between the nodes, the sender on the first: 499 receivers on its node, 500 on the other);
- many-rooms: one node, 100 rooms of 20 (each room's first member sends; message i goes to room i % 100).

For each case it drives, one after the other in the same run:

- Muster (`python -m server run`, embedded SQLite: every message authorised, validated, stored,
  sequenced, acked, then fanned out by `server/gateway/fastpath.py`; on two nodes both share one
  SQLite file, as tests/cluster does, and `MUSTER_REDIS_URL` makes them use Muster's own manager,
  `server/gateway/manager.py`),
- a bare python-socketio server on aiohttp (`bench/baselines/bare_python_socketio.py`: emit to a room, ack;
  on two nodes with python-socketio's stock `AsyncRedisManager`),
- Node's socket.io server (`bench/baselines/node_socketio_server.js`, the same two events; on two nodes
  with socket.io's Redis adapter, `@socket.io/redis-adapter` on the `redis` package),

in two phases on the same connections: "steady", a rate every server keeps up with (latency), then
"overload", a higher rate (throughput). For each it prints delivered messages per second
(deliveries = messages x receivers; senders' own copies are not counted), send->receive latency
p50/p99, whether every message reached every receiver of its room exactly once, and the server's CPU
time, then the ratios Muster/Node and Muster/bare-python, and a summary of Muster/Node in deliveries
per server CPU-second per case. On two nodes the server CPU is the sum of both server processes';
the bench starts its own redis-server (loopback, free port, no persistence) and prints its CPU time
in a column of its own, counted as server CPU for neither side. Where `taskset` exists the server
processes run on one core and the load generator (and redis-server) on another. Loopback only;
every process it starts stops by itself, also when the bench is killed. Exits 1 if any message was
lost, duplicated or delivered outside its room.

    .venv/bin/python bench/fanout.py [--cases big-room,two-nodes,many-rooms] [--rooms R] [--members N]
                                     [--messages M] [--rate R] [--max-rate R2] [--nodes 1|2] [--no-deflate]
                                     [--servers muster,bare-python,node] [--rounds N] [--py-spy DIR] [--quick]

`--nodes` runs every chosen case on that many server processes (2: joined by Redis). `--rounds N`
runs each case N times, the servers taking turns (the order reversed every other round, so a drift
of the machine's speed during a case weighs on both sides), and the summary gives each ratio's
median with every round's value.
Needs Node and npm: `npm ci` installs socket.io, its Redis adapter and the load generator's client into
bench/node/ when node_modules lacks one of them or holds another version than package.json pins;
two nodes need `redis-server` on PATH.
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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


def node_modules_current() -> bool:
    """Whether bench/node/node_modules holds every dependency of bench/node/package.json at its pinned version."""
    pinned: dict[str, str] = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    for name, version in pinned.items():
        try:
            installed = json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            return False
        if installed != version:
            return False
    return True


def ensure_node_modules() -> str:
    """The node binary; installs bench/node/node_modules from the lock file when a dependency is missing or
    not at the version package.json pins."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit("bench/fanout.py needs Node.js and npm (the load generator and the socket.io baseline "
                         "are Node programs): install them, e.g. `apt-get install nodejs npm`")
    if not node_modules_current():
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


def no_redis(_url: str, _prefix: str) -> tuple[list[str], dict[str, str]]:
    return [], {}


@dataclass
class Target:
    """One server under test: how to start it and which load-generator adapter drives it."""

    name: str
    adapter: str
    command: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    python: bool = False  # py-spy can sample it
    # Extra arguments and environment that make a process one node of several joined by the Redis at
    # this URL (with this key prefix, where the server takes one).
    redis: Callable[[str, str], tuple[list[str], dict[str, str]]] = no_redis


@dataclass
class Case:
    """One shape of load: `rooms` rooms of `members` (a sender and members - 1 receivers each); message i
    goes to room i % rooms; `messages` per phase at `rate` (steady) then `max_rate` (overload) in all.
    On `nodes` server processes (2: joined by Redis), member j of each room on node j % nodes."""

    name: str
    rooms: int
    members: int
    messages: int
    rate: float
    max_rate: float
    nodes: int = 1

    @property
    def title(self) -> str:
        where = "one node" if self.nodes == 1 else f"{self.nodes} nodes joined by Redis"
        return f"{self.rooms} room{'s' if self.rooms > 1 else ''} x {self.members} members on {where}"


CASES = {
    # (a) one node, one big room: the county-wide alert.
    "big-room": Case("big-room", rooms=1, members=1000, messages=200, rate=20.0, max_rate=200.0),
    # (b) the same room split across two nodes: a cluster behind a load balancer.
    "two-nodes": Case("two-nodes", rooms=1, members=1000, messages=200, rate=20.0, max_rate=200.0, nodes=2),
    # (c) many small rooms: teams at work. Muster's per-message storage shows here.
    "many-rooms": Case("many-rooms", rooms=100, members=20, messages=3000, rate=100.0, max_rate=2000.0),
}


@dataclass
class RedisServer:
    """The bench's own redis-server for the two-node cases."""

    proc: asyncio.subprocess.Process
    url: str


async def start_redis(folder: Path, pin: Pinning) -> RedisServer:
    """A redis-server on a free loopback port, without persistence, working in `folder`, on the load
    generator's core (the servers' core is theirs alone); it dies with the bench."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("the two-node case needs redis-server on PATH (e.g. `apt-get install redis-server`)")
    port = free_port()
    with (folder / "redis.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *pin.loadgen, binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(folder), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
    until = time.monotonic() + 10
    while time.monotonic() < until:
        if proc.returncode is not None:
            break
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"PING\r\n")
                if (await asyncio.wait_for(reader.readline(), 1)).startswith(b"+PONG"):
                    return RedisServer(proc=proc, url=f"redis://127.0.0.1:{port}/0")
            finally:
                writer.close()
        await asyncio.sleep(0.05)
    await stop(proc, 5)
    raise RuntimeError(f"redis-server did not start: {(folder / 'redis.log').read_text(errors='replace')[-2000:]}")


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
                  logs: Path, redis: RedisServer | None = None) -> dict[str, Any]:
    """One server kind through one case: start its `case.nodes` processes, run the load generator, stop them.

    Server CPU of a phase is the sum over the server processes; Redis's (two nodes) is kept apart."""
    if case.nodes > 1 and redis is None:
        raise ValueError(f"{case.name} runs on {case.nodes} nodes and needs a Redis")
    ports: list[int] = []
    while len(ports) < case.nodes:
        port = free_port()
        if port not in ports:
            ports.append(port)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    extra_args: list[str] = []
    env = {**os.environ, **target.env}
    if case.nodes > 1:
        assert redis is not None
        extra_args, redis_env = target.redis(redis.url, f"fanout-{case.name}-{target.name}")
        env.update(redis_env)
    suffixes = [""] if case.nodes == 1 else [f"-node{k + 1}" for k in range(case.nodes)]
    log_files = [logs / f"{case.name}-{target.name}{suffix}.log" for suffix in suffixes]
    servers: list[asyncio.subprocess.Process] = []
    for port, log_file in zip(ports, log_files, strict=True):
        with log_file.open("wb") as log:
            servers.append(await asyncio.create_subprocess_exec(
                *pin.server, *target.command(port), *extra_args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent))
    loadgen: asyncio.subprocess.Process | None = None
    profilers: list[tuple[asyncio.subprocess.Process, Path]] = []
    result: dict[str, Any] | None = None

    def server_cpu() -> list[float]:
        return [cpu_seconds(server.pid) for server in servers]

    try:
        for url, server in zip(urls, servers, strict=True):
            await wait_ready(url, server)
        phases = [{"name": "steady", "messages": case.messages, "rate": case.rate}]
        if case.max_rate > 0:
            phases.append({"name": "overload", "messages": case.messages, "rate": case.max_rate})
        config = {"server": target.adapter, "urls": urls, "members": case.members, "rooms": case.rooms,
                  "phases": phases,
                  "warmup": args.warmup, "drainSeconds": args.drain_seconds, "deflate": args.deflate,
                  "deadline": args.timeout, "userPrefix": USER_PREFIX, "password": PASSWORD,
                  "connectConcurrency": 50}
        loadgen = await asyncio.create_subprocess_exec(
            *pin.loadgen, node, str(NODE_DIR / "loadgen.js"), json.dumps(config), cwd=NODE_DIR,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, preexec_fn=die_with_parent)
        assert loadgen.stdout is not None
        # (phase, start|done) -> (CPU s of each server process, Redis CPU s, wall s)
        marks: dict[tuple[str, str], tuple[list[float], float, float]] = {}
        while result is None:
            line = await asyncio.wait_for(loadgen.stdout.readline(), args.timeout)
            if not line:
                raise RuntimeError(f"the load generator stopped without a result (exit {await loadgen.wait()})")
            message = json.loads(line)
            kind = message.get("phase")
            if kind in ("start", "done"):
                redis_cpu = cpu_seconds(redis.proc.pid) if redis is not None and case.nodes > 1 else float("nan")
                marks[(message["name"], kind)] = (server_cpu(), redis_cpu, time.monotonic())
                if target.python and args.py_spy:
                    if kind == "start" and not profilers:
                        for server, suffix in zip(servers, suffixes, strict=True):
                            output = args.py_spy / f"{case.name}-{target.name}{suffix}.collapsed"
                            profilers.append((await start_py_spy(server.pid, output, pin), output))
                    elif kind == "done" and message["name"] == phases[-1]["name"]:
                        for profiler, output in profilers:
                            await stop_py_spy(profiler, output)
                        profilers = []
            elif kind == "error":
                raise RuntimeError(f"load generator: {message.get('error')}")
            elif kind == "result":
                result = message
        await loadgen.wait()
        for name, phase in result["phases"].items():
            (cpus0, redis0, wall0), (cpus1, redis1, wall1) = marks[(name, "start")], marks[(name, "done")]
            wall = max(wall1 - wall0, 1e-9)
            per_node = [b - a for a, b in zip(cpus0, cpus1, strict=True)]
            cpu = sum(per_node)
            phase["server_cpu_s"] = cpu
            phase["server_cpu_share"] = cpu / wall
            phase["node_cpu_shares"] = [c / wall for c in per_node]
            phase["deliveries_per_server_cpu_s"] = phase["delivered"] / cpu if cpu > 0 else None
            if case.nodes > 1:
                phase["redis_cpu_s"] = redis1 - redis0
                phase["redis_cpu_share"] = (redis1 - redis0) / wall
        result["name"] = target.name
        return result
    except BaseException:
        for suffix, log_file in zip(suffixes, log_files, strict=True):
            tail = log_file.read_text(errors="replace")[-3000:].strip()
            if tail:
                print(f"--- {target.name}{suffix} server output (last lines) ---\n{tail}\n---", file=sys.stderr)
        raise
    finally:
        for profiler, _ in profilers:
            await stop(profiler, 5)
        if loadgen is not None:
            await stop(loadgen, 5)
        stopping = time.monotonic()
        await asyncio.gather(*(stop(server, 30) for server in servers))
        if result is not None:
            result["server_stop_s"] = time.monotonic() - stopping
            # Whatever the servers wrote beyond Muster's start line is worth a look: Muster logs errors only
            # here, the baselines nothing.
            lines = [line for f in log_files for line in f.read_text(errors="replace").splitlines()
                     if line.strip() and not line.startswith("Muster listening on ")]
            result["log_lines"], result["log_first"] = len(lines), lines[0] if lines else None


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(title: str, results: dict[str, dict[str, Any]], phase: str) -> None:
    rows = [(name, r["phases"][phase]) for name, r in results.items() if phase in r["phases"]]
    if not rows:
        return
    first = rows[0][1]
    print(f"{title}: {first['messages']} messages at {first['rate']:g}/s, "
          f"{first['offered_per_s']:,.0f} deliveries/s offered")
    redis = any("redis_cpu_share" in p for _, p in rows)  # two nodes: Redis's CPU, apart from the servers'
    head = (f"{'server':12} {'deliveries/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'ack p50/p99 ms':>15} "
            f"{'exactly once':>12} {'server CPU':>10} {'deliv/CPU-s':>11} {'loadgen CPU':>11}"
            + (f" {'redis CPU':>9}" if redis else "") + "  bound by")
    print(head)
    print("-" * len(head))
    for name, p in rows:
        once = "yes" if p["exactly_once"] else f"NO: {p['missing']} lost, {p['duplicates']} dup"
        acks = f"{fmt(p['ack_p50_ms'], '.1f')}/{fmt(p['ack_p99_ms'], '.1f')}"
        print(f"{name:12} {p['deliveries_per_s']:12,.0f} {fmt(p['p50_ms'], '8.1f')} {fmt(p['p99_ms'], '8.1f')} "
              f"{acks:>15} {once:>12} {p['server_cpu_share']:10.0%} {fmt(p['deliveries_per_server_cpu_s'], '11,.0f')} "
              f"{p['loadgen_cpu']:11.0%}" + (f" {fmt(p.get('redis_cpu_share'), '9.0%')}" if redis else "")
              + f"  {bound(p)}")
    if redis:
        print("(two nodes: server CPU and deliv/CPU-s count both server processes; Redis's CPU is counted for "
              "neither side)")
    print()


def bound(p: dict[str, Any]) -> str:
    """What most likely held the phase back (a reading of the figures, not a measurement)."""
    if p["deliveries_per_s"] >= 0.95 * p["offered_per_s"]:
        return "nothing: kept up"
    if p["loadgen_cpu"] >= 0.9:
        return "load generator CPU"
    if p["loadgen_cpu"] + p.get("redis_cpu_share", 0.0) >= 0.9:
        return "load generator + Redis core"
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
    parser.add_argument("--nodes", type=int, choices=(1, 2),
                        help="override every case's server processes per server (2: each room split across two "
                             "processes joined by a Redis the bench starts)")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample the Python servers with py-spy during the measured phases; collapsed stacks "
                             "(flamegraph input) to DIR/<case>-<server>.collapsed")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every case this many times, the servers in turn (reversed order every other "
                             "round), and summarise each ratio by its median over the rounds: on a noisy machine "
                             "one round's low-load figures can move by a quarter")
    parser.add_argument("--timeout", type=float, default=240.0, help="hard limit per server and case, seconds")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 room of 50 (one node and two) and 10 rooms of 5, 50 messages "
                             "(nothing is overloaded)")
    args = parser.parse_args()
    chosen_cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if set(chosen_cases) - set(CASES):
        raise SystemExit(f"unknown cases {sorted(set(chosen_cases) - set(CASES))}; choose from {tuple(CASES)}")
    cases = [CASES[c] for c in chosen_cases]
    if args.quick:
        args.warmup = 5
        cases = [replace(c, rooms=min(c.rooms, 10), members=50 if c.rooms == 1 else 5, messages=50,
                         rate=20.0, max_rate=100.0) for c in cases]
    cases = [replace(c, rooms=args.rooms or c.rooms, members=args.members or c.members,
                     messages=args.messages or c.messages, rate=args.rate or c.rate,
                     max_rate=c.max_rate if args.max_rate is None else args.max_rate, nodes=args.nodes or c.nodes)
             for c in cases]
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
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
    data = Path(tempfile.mkdtemp(prefix="muster-fanout-"))  # Muster's data folder, the servers' logs, Redis's folder
    redis: RedisServer | None = None
    try:
        targets = {
            "muster": Target(
                name="muster", adapter="muster",
                command=lambda port: [sys.executable, "-m", "server", "run", "--port", str(port)],
                # Two nodes share the data folder, so one SQLite file, as a cluster shares its database.
                env={"MUSTER_SERVER_DATA_DIR": str(data), "MUSTER_LOG_LEVEL": "error",
                     # One sender per room sends every message: lift the per-device flood limit.
                     "MUSTER_GATEWAY_EVENTS_PER_SECOND": "1000000", "MUSTER_GATEWAY_EVENT_BURST": "1000000"},
                python=True,
                redis=lambda url, prefix: ([], {"MUSTER_REDIS_URL": url, "MUSTER_REDIS_PREFIX": prefix})),
            "bare-python": Target(
                name="bare-python", adapter="bare",
                command=lambda port: [sys.executable, str(BENCH / "baselines" / "bare_python_socketio.py"),
                                      "--port", str(port), "--max-seconds", str(args.timeout + 60)],
                python=True, redis=lambda url, _prefix: (["--redis", url], {})),
            "node": Target(
                name="node", adapter="bare",
                command=lambda port: [node, str(BENCH / "baselines" / "node_socketio_server.js"),
                                      "--port", str(port), "--max-seconds", str(args.timeout + 60)],
                redis=lambda url, _prefix: (["--redis", url], {})),
        }
        print(f"fan-out; clients {'offer' if args.deflate else 'do not offer'} permessage-deflate; "
              f"{args.warmup} warm-up messages per run", flush=True)
        print(pin.note, flush=True)
        if any(c.nodes > 1 for c in cases):
            redis = await start_redis(Path(tempfile.mkdtemp(prefix="redis-", dir=data)), pin)
            where = ("both server processes of a node pair on the server's CPU, redis-server on the load generator's"
                     if pin.server else "not pinned either")
            print(f"redis-server at {redis.url} (no persistence) joins the two-node runs ({where}); its CPU is "
                  "counted as server CPU for neither side", flush=True)
        if "muster" in chosen:
            users = max(c.rooms * c.members for c in cases)
            started = time.monotonic()
            await seed_muster_users(data, users)
            print(f"seeded {users} Muster users in {time.monotonic() - started:.1f}s", flush=True)
        all_results: dict[str, list[dict[str, dict[str, Any]]]] = {}
        for case in cases:
            print(f"\n== {case.name}: {case.title} ({case.members - 1} receivers a message); {case.messages} messages "
                  f"at {case.rate:g}/s (steady)"
                  + (f", then at {case.max_rate:g}/s (overload)" if case.max_rate > 0 else ""), flush=True)
            rounds = all_results[case.name] = []
            for turn in range(args.rounds):
                results: dict[str, dict[str, Any]] = {}
                rounds.append(results)
                label = f" (round {turn + 1} of {args.rounds})" if args.rounds > 1 else ""
                if label:
                    print(f"\n-- {case.name}{label}", flush=True)
                for name in (chosen if turn % 2 == 0 else chosen[::-1]):
                    started = time.monotonic()
                    r = results[name] = await run_one(targets[name], case, args, node, pin, data, redis)
                    print("   " + "; ".join(run_notes(name, r, time.monotonic() - started)), flush=True)
                results = {name: results[name] for name in chosen}  # tables in the order asked for
                print()
                print_table(f"{case.name}, steady{label}", results, "steady")
                print_table(f"{case.name}, overload{label}", results, "overload")
                print_ratios(results)
        rounds_note = f", median of {args.rounds} rounds (each round's in brackets)" if args.rounds > 1 else ""
        print("\nSummary: Muster / Node's socket.io, deliveries per server CPU-second (target >= 0.5"
              + ("; two nodes: both server processes' CPU, Redis's not counted" if any(c.nodes > 1 for c in cases)
                 else "") + rounds_note + ")")
        for case_name, rounds in all_results.items():
            print("  " + case_name + ": " + ", ".join(
                f"{phase} {cpu_ratios(rounds, 'node', phase)} (bare python-socketio / Node "
                f"{cpu_ratios(rounds, 'node', phase, subject='bare-python')})"
                for phase in ("steady", "overload") if phase in rounds[0].get("muster", {}).get("phases", {})))
        broken = [f"{case_name}: {name} ({phase_name})" for case_name, rounds in all_results.items()
                  for results in rounds for name, r in results.items() for phase_name, p in r["phases"].items()
                  if not p["exactly_once"] or r["strays"]]
        if broken:
            raise SystemExit(f"NOT delivered exactly once: {', '.join(broken)}")
    finally:
        if redis is not None:
            await stop(redis.proc, 10)
        shutil.rmtree(data, ignore_errors=True)


def run_notes(name: str, r: dict[str, Any], seconds: float) -> list[str]:
    """What one server's run says beside its figures: set-up, wire size, lag, errors, stop."""
    setup = r["setup_s"]
    notes = [f"{name}: {seconds:.0f}s; set-up: sign-in {setup['sign_in']:.1f}s, "
             f"connect {setup['connect']:.1f}s, room join {setup['join']:.1f}s",
             f"event {r['event_bytes']} bytes on the wire",
             f"permessage-deflate {'on' if r['deflate'] else 'off'}"]
    for phase_name, p in r["phases"].items():
        notes.append(f"{phase_name}: sender at most {p['send_lag_max_ms']:.0f} ms behind schedule")
        if len(p["node_cpu_shares"]) > 1:
            notes.append(f"{phase_name}: CPU per node " + " / ".join(f"{share:.0%}" for share in p["node_cpu_shares"]))
        if p["ack_errors"]:
            notes.append(f"{phase_name}: {p['ack_errors']} error acks, e.g. {p['first_ack_errors'][:1]}")
    notes.append(f"server stopped {r['server_stop_s']:.1f}s after SIGTERM")
    if r["out_of_order"]:
        notes.append(f"{r['out_of_order']} deliveries with a sequence number not above the previous one")
    if r["strays"]:
        notes.append(f"{r['strays']} deliveries to a socket outside the message's room")
    if r["log_lines"]:
        notes.append(f"server log: {r['log_lines']} lines, the first: {r['log_first'][:300]}")
    return notes


def cpu_ratio_value(results: dict[str, dict[str, Any]], base: str, phase: str,
                    subject: str = "muster") -> float | None:
    a, b = results.get(subject), results.get(base)
    if a is None or b is None or phase not in a["phases"] or phase not in b["phases"]:
        return None
    x, y = a["phases"][phase]["deliveries_per_server_cpu_s"], b["phases"][phase]["deliveries_per_server_cpu_s"]
    return x / y if x and y else None


def cpu_ratios(rounds: list[dict[str, dict[str, Any]]], base: str, phase: str, subject: str = "muster") -> str:
    """One round's ratio, or the median of several with each round's beside it."""
    values = [cpu_ratio_value(results, base, phase, subject) for results in rounds]
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    if len(rounds) == 1:
        return f"{known[0]:.2f}"
    return f"{statistics.median(known):.2f} [" + " ".join("-" if v is None else f"{v:.2f}" for v in values) + "]"


def exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: servers stopped, temp folder removed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    asyncio.run(main())
