"use strict";
// The load generator of bench/capacity.py: many connected devices, some of them active in rooms.
//
// Opens `connections` socket.io-client connections (websocket transport, permessage-deflate offered
// unless told not to): first the idle ones (in no room; they only answer the server's heartbeats),
// then the active ones, which sit in rooms. Then, for each step of a rising message rate, the active
// members send messages to their rooms (message i goes to room i % rooms, sent by the room's members
// in turn) and every member of the room, the sender included, must receive it exactly once. It
// measures send->receive latency on one clock (every client lives in this process).
//
//   node capacity.js <config.json>      (bench/capacity.py writes the config)
//
// Talks to the bench over stdio, JSON lines out:
//   {"phase":"connected","group":"idle"|"active",...}  then waits for a line "go" on stdin
//   {"phase":"start","name"} / {"phase":"end","name"} around each measured step (the server's CPU
//   window), then {"phase":"done","name","result"}
//   {"phase":"result",...} at the end; {"phase":"error","error"} on failure.
// Exits by itself on completion, on its deadline, or when stdin closes (the bench has gone).

const fs = require("node:fs");
const readline = require("node:readline");
const { performance } = require("node:perf_hooks");
const { io } = require("socket.io-client");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const N = cfg.connections;
const ROOMS = cfg.rooms; // [[connection index, ...], ...]
const R = ROOMS.length;
const MAX_SIZE = Math.max(1, ...ROOMS.map((r) => r.length));

function log(...parts) {
  process.stderr.write(`[capacity ${cfg.adapter}] ${parts.join(" ")}\n`);
}
function out(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}
function fail(message) {
  out({ phase: "error", error: message });
  process.exit(2);
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const deadline = setTimeout(() => fail(`deadline of ${cfg.deadline}s passed`), cfg.deadline * 1000);
deadline.unref();

// Commands from the bench: one "go" per pause.
const waiting = [];
const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (line.trim() === "go" && waiting.length) waiting.shift()();
});
lines.on("close", () => process.exit(4));
const go = () => new Promise((resolve) => waiting.push(resolve));

// This process's own event-loop stalls (its GC, a busy core): a late timer here delays every
// receive time it records, so each step reports the worst stall it saw.
let loopLagMax = 0;
let loopTick = performance.now();
setInterval(() => {
  const now = performance.now();
  loopLagMax = Math.max(loopLagMax, now - loopTick - 10);
  loopTick = now;
}, 10).unref();

async function pool(items, concurrency, work) {
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const item = items[next++];
      await work(item);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

async function waitFor(check, seconds, what) {
  const until = performance.now() + seconds * 1000;
  while (!check()) {
    if (performance.now() > until) throw new Error(`timed out after ${seconds}s waiting for ${what}`);
    await sleep(20);
  }
}

// A message text about as long as a short dispatch order.
function text(id) {
  return `capacity ${id}: 请各单位立即到东沟水库集合，带齐抢险物资。`.padEnd(60, ".");
}

// -- adapters: how a device connects, joins its room, sends and recognises a message -----------------

function musterAdapter() {
  // Muster puts a socket in its user's rooms at connect (the bench made the rooms beforehand).
  const roomIds = cfg.roomIds;
  return {
    roomKey: (r) => roomIds[r],
    connectOptions: (i) => ({ auth: { token: cfg.tokens[i] } }),
    async join() {},
    send(socket, r, clientId, onAck) {
      socket.emit("message.send", { room_id: roomIds[r], client_id: clientId, text: text(clientId) }, onAck);
    },
    listen(socket, onMessage) {
      socket.on("room.event", (ev) => {
        if (ev.kind === "message") onMessage(ev.room_id, ev.client_id, ev.seq);
      });
    },
  };
}

// The bare servers of bench/baselines (python-socketio, Node socket.io): `join` {room}, and `msg`
// {..., room_id} emitted to that room, sender included. The payload has the shape and size of a
// Muster room event, so about the same bytes cross the wire.
function bareAdapter() {
  const name = (r) => `capacity-room-${String(r).padStart(12, "0")}`; // as long as a Muster room id
  const stamp = Date.now();
  let seq = 0;
  return {
    roomKey: name,
    connectOptions: () => ({}),
    async join(socket, r) {
      const ack = await socket.timeout(60000).emitWithAck("join", { room: name(r) });
      if (!ack.data) throw new Error(`join: ${JSON.stringify(ack)}`);
    },
    send(socket, r, clientId, onAck) {
      seq++;
      socket.emit("msg", {
        id: `01JBENCH${String(seq).padStart(18, "0")}`, room_id: name(r), seq, kind: "message",
        sender_id: "01JBENCHSENDER000000000000", device_id: "01JBENCHDEVICE000000000000", client_id: clientId,
        created_at: stamp, body: { text: text(clientId), mentions: [], mention_all: false, reply_to: null, attachments: [] },
        target_id: null, edited_at: null, recalled_at: null, pinned: false,
      }, onAck);
    },
    listen(socket, onMessage) {
      socket.on("msg", (ev) => onMessage(ev.room_id, ev.client_id, undefined));
    },
  };
}

function connect(extra) {
  return new Promise((resolve, reject) => {
    const socket = io(cfg.url, {
      transports: ["websocket"],
      reconnection: false, // a dropped device must show up as dropped, not come back quietly
      forceNew: true, // one websocket per device
      timeout: 60000,
      // socket.io-client in Node offers permessage-deflate (as browsers do) unless told not to.
      ...(cfg.deflate ? {} : { perMessageDeflate: false }),
      ...extra,
    });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) =>
      reject(new Error(`connect_error: ${err.message} ${JSON.stringify(err.data ?? null)}`)));
  });
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

// One step: `count` messages at `rate` per second; client ids `${tag}-${i}`.
class Step {
  constructor(name, tag, count, rate) {
    Object.assign(this, { name, tag, count, rate });
    this.sentAt = new Float64Array(count);
    this.scheduledAt = new Float64Array(count);
    this.latency = new Float64Array(count * MAX_SIZE); // message i, member position p: slot i*MAX_SIZE + p
    this.counts = new Uint8Array(count * MAX_SIZE);
    this.expected = 0;
    for (let i = 0; i < count; i++) this.expected += ROOMS[i % R].length;
    this.delivered = 0;
    this.duplicates = 0;
    this.strays = 0; // deliveries to a socket outside the message's room
    this.lastReceive = 0;
    this.ackLatency = [];
    this.ackErrors = [];
    this.ackErrorCount = 0;
    this.acked = 0;
  }

  receive(room, pos, i, now) {
    if (i >= this.count || i % R !== room) {
      this.strays++;
      return;
    }
    const k = i * MAX_SIZE + pos;
    if (this.counts[k]++ === 0) {
      this.latency[k] = now - this.sentAt[i];
      this.delivered++;
      this.lastReceive = now;
    } else {
      this.duplicates++;
    }
  }
}

async function main() {
  const adapter = cfg.adapter === "muster" ? musterAdapter() : bareAdapter();
  const roomOf = new Int32Array(N).fill(-1);
  const posOf = new Int32Array(N).fill(-1);
  ROOMS.forEach((members, r) => members.forEach((i, p) => { roomOf[i] = r; posOf[i] = p; }));
  const roomIndex = new Map(ROOMS.map((_, r) => [adapter.roomKey(r), r]));
  const idle = [];
  const active = [];
  for (let i = 0; i < N; i++) (roomOf[i] < 0 ? idle : active).push(i);

  const sockets = new Array(N);
  let disconnects = 0;
  const disconnectReasons = {};
  const concurrency = cfg.connectConcurrency || 50;
  async function open(i) {
    const s = await connect(adapter.connectOptions(i));
    s.on("disconnect", (reason) => {
      disconnects++;
      disconnectReasons[reason] = (disconnectReasons[reason] || 0) + 1;
    });
    sockets[i] = s;
  }

  // Idle devices first, so the bench can weigh an idle connection on its own.
  let t = performance.now();
  await pool(idle, concurrency, open);
  out({ phase: "connected", group: "idle", count: idle.length, seconds: (performance.now() - t) / 1000 });
  await go();

  const steps = new Map(); // tag -> Step
  const lastSeq = new Float64Array(N).fill(-1);
  let outOfOrder = 0;
  let unknown = 0; // messages of no step (warm-up included is known)
  t = performance.now();
  await pool(active, concurrency, async (i) => {
    await open(i);
    await adapter.join(sockets[i], roomOf[i]);
    adapter.listen(sockets[i], (roomKey, clientId, seq) => {
      const now = performance.now();
      const room = roomIndex.get(roomKey);
      const dash = typeof clientId === "string" ? clientId.indexOf("-") : -1;
      const step = dash > 0 ? steps.get(clientId.slice(0, dash)) : undefined;
      if (step === undefined || room === undefined) unknown++;
      else if (room !== roomOf[i]) step.strays++;
      else step.receive(room, posOf[i], Number(clientId.slice(dash + 1)), now);
      if (seq !== undefined) {
        if (seq <= lastSeq[i]) outOfOrder++;
        lastSeq[i] = seq;
      }
    });
  });
  const deflate = sockets[(active[0] ?? idle[0])].io.engine.transport.ws?._extensions?.["permessage-deflate"] !== undefined;
  out({ phase: "connected", group: "active", count: active.length, seconds: (performance.now() - t) / 1000, deflate });
  await go();

  // Sends on schedule (catching up when the event loop was busy); resolves when every ack is in.
  function sendAll(step) {
    return new Promise((resolve) => {
      const interval = 1000 / step.rate;
      const start = performance.now();
      let next = 0;
      function tick() {
        const now = performance.now();
        while (next < step.count && start + next * interval <= now) {
          const i = next++;
          const room = i % R;
          const members = ROOMS[room];
          const sender = members[Math.floor(i / R) % members.length];
          const sent = performance.now();
          step.sentAt[i] = sent;
          step.scheduledAt[i] = start + i * interval;
          adapter.send(sockets[sender], room, `${step.tag}-${i}`, (ack) => {
            step.ackLatency.push(performance.now() - sent);
            if (!ack || ack.error || ack.data === undefined || ack.data.duplicate === true) {
              step.ackErrorCount++;
              if (step.ackErrors.length < 5) step.ackErrors.push(ack ?? null);
            }
            if (++step.acked === step.count) resolve();
          });
        }
        if (next < step.count) setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
      }
      tick();
    });
  }

  async function run(name, tag, count, rate, measured) {
    const step = new Step(name, tag, count, rate);
    steps.set(tag, step);
    const cpuStart = process.cpuUsage();
    loopLagMax = 0;
    if (measured) out({ phase: "start", name });
    const firstSend = performance.now();
    const acksDone = sendAll(step);
    let drained = true;
    try {
      await waitFor(() => step.delivered >= step.expected, count / rate + cfg.drainSeconds, `${name}: every delivery`);
    } catch (err) {
      drained = false;
      log(err.message);
    }
    const end = drained ? step.lastReceive : performance.now();
    if (measured) out({ phase: "end", name }); // the bench's CPU window is start..end
    const cpu = process.cpuUsage(cpuStart);
    await Promise.race([acksDone, sleep(5000)]);
    steps.delete(tag); // late stragglers of this step now count as unknown
    if (!measured) return null;

    let missing = 0;
    const lat = new Float64Array(step.delivered);
    let n = 0;
    for (let i = 0; i < count; i++) {
      const size = ROOMS[i % R].length;
      for (let p = 0; p < size; p++) {
        const k = i * MAX_SIZE + p;
        if (step.counts[k] === 0) missing++;
        else lat[n++] = step.latency[k];
      }
    }
    lat.sort();
    const acks = Float64Array.from(step.ackLatency).sort();
    let sendLagMax = 0;
    for (let i = 0; i < count; i++) sendLagMax = Math.max(sendLagMax, step.sentAt[i] - step.scheduledAt[i]);
    const seconds = (end - firstSend) / 1000;
    const result = {
      messages: count,
      rate,
      offered_per_s: step.expected / (count / rate),
      delivered: step.delivered,
      expected: step.expected,
      missing,
      duplicates: step.duplicates,
      strays: step.strays,
      exactly_once: missing === 0 && step.duplicates === 0 && step.strays === 0,
      acks: acks.length,
      ack_errors: step.ackErrorCount,
      first_ack_errors: step.ackErrors,
      seconds,
      deliveries_per_s: step.delivered / seconds,
      p50_ms: percentile(lat, 0.5),
      p99_ms: percentile(lat, 0.99),
      p999_ms: percentile(lat, 0.999),
      max_ms: lat.length ? lat[lat.length - 1] : null,
      ack_p50_ms: percentile(acks, 0.5),
      ack_p99_ms: percentile(acks, 0.99),
      send_lag_max_ms: sendLagMax,
      loadgen_cpu: (cpu.user + cpu.system) / 1e6 / seconds,
      loadgen_lag_max_ms: loopLagMax,
      connected: sockets.filter((s) => s && s.connected).length,
    };
    result.met = result.exactly_once && result.ack_errors === 0 && result.p99_ms !== null &&
      result.p99_ms <= cfg.p99TargetMs;
    out({ phase: "done", name, result });
    return result;
  }

  // Warm up (not measured): one message per room pays for lazy set-ups on every side.
  if (R > 0) await run("warm-up", "w", R, Math.max(1, Math.min(cfg.steps[0].rate, 50)), false);
  const results = [];
  for (const [k, s] of cfg.steps.entries()) {
    const count = Math.max(1, Math.round(s.rate * s.seconds));
    const result = await run(`${s.rate}/s`, `s${k}`, count, s.rate, true);
    results.push(result);
    if (!result.met && cfg.stopAfterMiss) break;
    await sleep(cfg.pauseSeconds * 1000);
  }
  out({
    phase: "result",
    adapter: cfg.adapter,
    connections: N,
    active: active.length,
    idle: idle.length,
    held: sockets.filter((s) => s && s.connected).length,
    disconnects,
    disconnect_reasons: disconnectReasons,
    steps: results,
    out_of_order: outOfOrder,
    unknown,
    deflate,
  });
  process.exit(0);
}

main().catch((err) => fail(err.stack || String(err)));
