"use strict";
// The one load generator of bench/fanout.py, the same for every server under test.
//
// Opens ROOMS x N socket.io-client connections, puts each N of them in a room (the first of each room
// sends, the others receive), then for each phase sends M messages at a fixed total rate (message i
// goes to room i % ROOMS) and reports deliveries per second,
// send->receive latency (p50/p99, one clock: every client lives in this process) and whether every
// message reached every receiver exactly once. Only connecting, signing in and joining the room
// differ per server (the adapters below); sending and receiving are timed the same way for all.
//
// With several server URLs (several nodes of one cluster) member j of every room connects to
// urls[j % urls.length]: each room is split evenly across the nodes, its sender (member 0) on the first.
// Every delivery is counted wherever it arrives, so exactly-once holds across the nodes too.
//
//   node loadgen.js '<json config>'      (bench/fanout.py builds the config)
//
// Writes JSON lines to stdout: {"phase":"ready"}; per phase {"phase":"start","name"} just before its
// first message and {"phase":"done","name"} after its last delivery (or its drain timeout); then
// {"phase":"result",...}. Errors go to stderr. Exits by itself: on completion, on its deadline, or
// when stdin closes (the bench that started it has gone).

const { performance } = require("node:perf_hooks");
const { io } = require("socket.io-client");

const cfg = JSON.parse(process.argv[2] || "{}");
const N = cfg.members; // per room
const ROOMS = cfg.rooms || 1;
const R = N - 1; // receivers per room: every member but the sender
const TOTAL = N * ROOMS; // connections; room k is sockets k*N .. k*N+N-1, its sender k*N
const URLS = cfg.urls || [cfg.url]; // one per node
const urlOf = (c) => URLS[(c % N) % URLS.length]; // socket c is member c % N of its room

function log(...parts) {
  process.stderr.write(`[loadgen ${cfg.server}] ${parts.join(" ")}\n`);
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
process.stdin.on("end", () => process.exit(4));
process.stdin.on("error", () => process.exit(4));
process.stdin.resume();

async function pool(count, concurrency, work) {
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      await work(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

async function waitFor(check, seconds, what) {
  const until = performance.now() + seconds * 1000;
  while (!check()) {
    if (performance.now() > until) throw new Error(`timed out after ${seconds}s waiting for ${what}`);
    await sleep(20);
  }
}

function connect(url, extra) {
  return new Promise((resolve, reject) => {
    const socket = io(url, {
      transports: ["websocket"],
      reconnection: false,
      forceNew: true, // one connection per client: never multiplex clients over one websocket
      timeout: 30000,
      // socket.io-client in Node offers permessage-deflate (as browsers do) unless told not to.
      ...(cfg.deflate ? {} : { perMessageDeflate: false }),
      ...extra,
    });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) =>
      reject(new Error(`connect_error: ${err.message} ${JSON.stringify(err.data ?? null)}`)));
  });
}

// A message text about as long as a short dispatch order.
function text(id) {
  return `fan-out ${id}: 请各单位立即到东沟水库集合，带齐抢险物资。`.padEnd(60, ".");
}

// -- adapters: connect, sign in, join the room; how a message is sent and recognised ---------------

function musterAdapter() {
  const roomIds = new Array(ROOMS);
  return {
    async prepare() {
      const creds = new Array(TOTAL);
      await pool(TOTAL, 8, async (i) => {
        const username = `${cfg.userPrefix}${String(i).padStart(4, "0")}`;
        const resp = await fetch(`${urlOf(i)}/api/auth/login`, { // signed in where its socket will be
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ username, password: cfg.password, device_name: `fanout-${i}`, device_kind: "console" }),
        });
        const body = await resp.json();
        if (!resp.ok) throw new Error(`login ${username}: ${resp.status} ${JSON.stringify(body)}`);
        creds[i] = { token: body.access_token, userId: body.user.id };
      });
      return creds;
    },
    connectOptions(i, creds) {
      return { auth: { token: creds[i].token } };
    },
    async join(sockets, creds) {
      const joined = sockets.map(() => new Set());
      sockets.forEach((s, i) => s.on("room.joined", (d) => joined[i].add(d.room_id)));
      // One room at a time: concurrent room.create calls have failed with an internal error (get_room
      // right after create_room returned nothing; see the issue note).
      await pool(ROOMS, 1, async (k) => {
        const owner = sockets[k * N];
        const others = creds.slice(k * N + 1, k * N + N).map((c) => c.userId);
        const first = others.slice(0, 500); // room.create takes at most 500 member_ids
        const created = await owner.timeout(120000).emitWithAck("room.create", {
          kind: "group", name: `fan-out bench ${k}`, member_ids: first,
        });
        if (!created.data) throw new Error(`room.create: ${JSON.stringify(created)}`);
        roomIds[k] = created.data.room.id;
        for (let j = 500; j < others.length; j += 100) {
          const ack = await owner.timeout(120000).emitWithAck("room.invite", {
            room_id: roomIds[k], user_ids: others.slice(j, j + 100),
          });
          if (!ack.data) throw new Error(`room.invite: ${JSON.stringify(ack)}`);
        }
      });
      await waitFor(() => joined.every((set, i) => set.has(roomIds[Math.floor(i / N)])), 120,
        "every member's room.joined");
    },
    send(socket, id, onAck, k) {
      socket.emit("message.send", { room_id: roomIds[k], client_id: id, text: text(id) }, onAck);
    },
    listen(socket, onMessage, k) {
      socket.on("room.event", (ev) => {
        if (ev.kind === "message" && ev.room_id === roomIds[k]) onMessage(ev, ev.client_id, ev.seq);
      });
    },
  };
}

// The bare servers (python-socketio, Node socket.io): `join` {room} and `msg` {..., room_id} -> emit
// `msg` to that room. The message has the shape and size of a Muster room event, so the same bytes
// cross the wire for every server.
function bareAdapter() {
  const roomOf = (k) => `fanout-bench-room-${String(k).padStart(8, "0")}`; // as long as a Muster room id
  const stamp = Date.now();
  return {
    async prepare() {
      return null;
    },
    connectOptions() {
      return {};
    },
    async join(sockets) {
      await pool(sockets.length, 50, async (i) => {
        const ack = await sockets[i].timeout(60000).emitWithAck("join", { room: roomOf(Math.floor(i / N)) });
        if (!ack.data) throw new Error(`join: ${JSON.stringify(ack)}`);
      });
    },
    send(socket, id, onAck, k) {
      const seq = Number(id.slice(1)) + 1;
      socket.emit("msg", {
        id: `01JBENCH${String(seq).padStart(18, "0")}`, room_id: roomOf(k), seq, kind: "message",
        sender_id: "01JBENCHSENDER000000000000", device_id: "01JBENCHDEVICE000000000000", client_id: id,
        created_at: stamp, body: { text: text(id), mentions: [], mention_all: false, reply_to: null, attachments: [] },
        target_id: null, edited_at: null, recalled_at: null, pinned: false,
      }, onAck);
    },
    listen(socket, onMessage) {
      socket.on("msg", (ev) => onMessage(ev, ev.client_id, undefined));
    },
  };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

// One phase: `count` messages at `rate` per second, client ids `${tag}${i}`.
class Phase {
  constructor(name, tag, count, rate) {
    Object.assign(this, { name, tag, count, rate });
    this.sentAt = new Float64Array(count);
    this.scheduledAt = new Float64Array(count);
    // Receiver r (1..N-1) of message i is slot i*R + (r-1).
    this.latency = new Float64Array(count * R);
    this.counts = new Uint16Array(count * R);
    this.expected = count * R; // each message reaches the R receivers of its room
    this.delivered = 0;
    this.duplicates = 0;
    this.lastReceive = 0;
    this.ackLatency = [];
    this.ackErrors = []; // the first few refused acks, for the report
    this.ackErrorCount = 0;
    this.acked = 0;
  }

  receive(r, i, now) {
    const k = i * R + (r - 1);
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
  const adapter = cfg.server === "muster" ? musterAdapter() : bareAdapter();
  const t0 = performance.now();
  const creds = await adapter.prepare();
  const tSignedIn = performance.now();
  const sockets = new Array(TOTAL);
  await pool(TOTAL, cfg.connectConcurrency || 50, async (i) => {
    sockets[i] = await connect(urlOf(i), adapter.connectOptions(i, creds));
  });
  const tConnected = performance.now();
  await adapter.join(sockets, creds);
  const tJoined = performance.now();
  // Whether the server accepted the permessage-deflate offer (ws keeps the negotiated extensions).
  const deflate = sockets[0].io.engine.transport.ws?._extensions?.["permessage-deflate"] !== undefined;
  out({ phase: "ready" });

  const phases = new Map(); // tag char code -> Phase
  const lastSeq = new Float64Array(TOTAL).fill(-1);
  let outOfOrder = 0;
  // Bytes of one delivered event as the server wrote it (the socket.io packet text in the websocket
  // frame): python-socketio escapes every non-ASCII character (json.dumps' ensure_ascii), Node does not.
  let eventBytes = 0;
  sockets[1].io.engine.on("packet", (packet) => {
    if (eventBytes === 0 && packet.type === "message" && typeof packet.data === "string" &&
        packet.data.includes('"client_id":') && packet.data.includes("fan-out")) {
      eventBytes = Buffer.byteLength(packet.data);
    }
  });
  let strays = 0;
  for (let c = 0; c < TOTAL; c++) {
    const k = Math.floor(c / N);
    const r = c % N; // 0: the room's sender
    if (r === 0) continue;
    adapter.listen(sockets[c], (ev, clientId, seq) => {
      const now = performance.now();
      const phase = phases.get(clientId.charCodeAt(0));
      const i = Number(clientId.slice(1));
      if (phase === undefined || i % ROOMS !== k) strays++;
      else phase.receive(r, i, now);
      if (seq !== undefined) {
        if (seq <= lastSeq[c]) outOfOrder++;
        lastSeq[c] = seq;
      }
    }, k);
  }

  // Sends on schedule (catching up when the event loop was busy); resolves when every ack is in.
  function sendAll(phase) {
    return new Promise((resolve) => {
      const interval = 1000 / phase.rate;
      const start = performance.now();
      let next = 0;
      function tick() {
        const now = performance.now();
        while (next < phase.count && start + next * interval <= now) {
          const i = next++;
          const sent = performance.now();
          phase.sentAt[i] = sent;
          phase.scheduledAt[i] = start + i * interval;
          adapter.send(sockets[(i % ROOMS) * N], `${phase.tag}${i}`, (ack) => {
            phase.ackLatency.push(performance.now() - sent);
            if (!ack || ack.error || ack.data === undefined || ack.data.duplicate === true) {
              phase.ackErrorCount++;
              if (phase.ackErrors.length < 5) phase.ackErrors.push(ack ?? null);
            }
            if (++phase.acked === phase.count) resolve();
          }, i % ROOMS);
        }
        if (next < phase.count) setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
      }
      tick();
    });
  }

  async function run(name, tag, count, rate, measured) {
    const phase = new Phase(name, tag, count, rate);
    phases.set(tag.charCodeAt(0), phase);
    const cpuStart = process.cpuUsage();
    if (measured) out({ phase: "start", name });
    const firstSend = performance.now();
    const acksDone = sendAll(phase);
    let drained = true;
    try {
      await waitFor(() => phase.delivered >= phase.expected, count / rate + cfg.drainSeconds, `${name}: every delivery`);
    } catch (err) {
      drained = false;
      log(err.message);
    }
    const end = drained ? phase.lastReceive : performance.now();
    if (measured) out({ phase: "done", name });
    const cpu = process.cpuUsage(cpuStart);
    await Promise.race([acksDone, sleep(2000)]);
    if (!measured) return null;

    let missing = 0;
    const lat = new Float64Array(phase.delivered);
    let n = 0;
    for (let k = 0; k < phase.expected; k++) {
      if (phase.counts[k] === 0) missing++;
      else lat[n++] = phase.latency[k];
    }
    lat.sort();
    const acks = Float64Array.from(phase.ackLatency).sort();
    let sendLagMax = 0;
    for (let i = 0; i < count; i++) sendLagMax = Math.max(sendLagMax, phase.sentAt[i] - phase.scheduledAt[i]);
    const seconds = (end - firstSend) / 1000;
    return {
      messages: count,
      rate,
      offered_per_s: rate * R,
      delivered: phase.delivered,
      expected: phase.expected,
      missing,
      duplicates: phase.duplicates,
      exactly_once: missing === 0 && phase.duplicates === 0,
      acks: acks.length,
      ack_errors: phase.ackErrorCount,
      first_ack_errors: phase.ackErrors,
      seconds,
      deliveries_per_s: phase.delivered / seconds,
      p50_ms: percentile(lat, 0.5),
      p99_ms: percentile(lat, 0.99),
      max_ms: lat.length ? lat[lat.length - 1] : null,
      ack_p50_ms: percentile(acks, 0.5),
      ack_p99_ms: percentile(acks, 0.99),
      send_lag_max_ms: sendLagMax,
      loadgen_cpu: (cpu.user + cpu.system) / 1e6 / seconds,
    };
  }

  // Warm up (not measured): the first messages pay for lazy set-ups on every side.
  if (cfg.warmup > 0) await run("warm-up", "w", cfg.warmup, cfg.phases[0].rate, false);
  const results = {};
  for (const [k, p] of cfg.phases.entries()) {
    results[p.name] = await run(p.name, "abcdefghij"[k], p.messages, p.rate, true);
  }
  out({
    phase: "result",
    server: cfg.server,
    nodes: URLS.length,
    members: N,
    rooms: ROOMS,
    receivers: R,
    phases: results,
    out_of_order: outOfOrder,
    strays,
    event_bytes: eventBytes,
    deflate,
    setup_s: { sign_in: (tSignedIn - t0) / 1000, connect: (tConnected - tSignedIn) / 1000, join: (tJoined - tConnected) / 1000 },
  });
  process.exit(0);
}

main().catch((err) => fail(err.stack || String(err)));
