// The official Socket.IO JavaScript client (socket.io-client 4.8) against a running Muster.
//
//   node tests/js/official_client.mjs '{"url": "http://127.0.0.1:PORT",
//       "sender": {"username": ..., "password": ...}, "receiver": {"username": ..., "password": ...}}'
//
// Signs both users in over HTTP (fetch), checks that refused connections carry Muster's error in
// `err.data`, connects both, has the sender create a room with the receiver and send a message,
// checks the receiver gets the `room.event`, that an invalid payload gets an error ack, and that
// `sync` returns the message. Prints one JSON object on stdout; exits 0 when every check passed,
// 1 when one failed (the object then says which, under "error").

import { io } from "socket.io-client";

const cfg = JSON.parse(process.argv[2] ?? "{}");
const report = { ok: false, checks: [] };
const sockets = [];

function check(name, condition, detail) {
  report.checks.push(name);
  if (!condition) throw new Error(`${name}: ${JSON.stringify(detail)}`);
}

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Resolves with the first `event` payload that satisfies `match` (listening starts now).
function next(socket, event, match = () => true) {
  return new Promise((resolve) => {
    const listener = (data) => {
      if (match(data)) {
        socket.off(event, listener);
        resolve(data);
      }
    };
    socket.on(event, listener);
  });
}

async function login({ username, password }) {
  const resp = await fetch(`${cfg.url}/api/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password, device_name: "socket.io-client test", device_kind: "console" }),
  });
  const body = await resp.json();
  check(`login ${username}`, resp.status === 200 && typeof body.access_token === "string", { status: resp.status, body });
  return { token: body.access_token, userId: body.user.id };
}

function open(auth) {
  const socket = io(cfg.url, { auth, transports: ["websocket"], reconnection: false, forceNew: true, timeout: 10000 });
  sockets.push(socket);
  return socket;
}

// Connects, or resolves with the connect_error it got instead.
function connect(auth) {
  const socket = open(auth);
  return within(new Promise((resolve) => {
    socket.once("connect", () => resolve({ socket }));
    socket.once("connect_error", (err) => resolve({ socket, err }));
  }), 10000, "connect or connect_error");
}

async function call(socket, event, payload) {
  return await socket.timeout(10000).emitWithAck(event, payload);
}

async function main() {
  const sender = await login(cfg.sender);
  const receiver = await login(cfg.receiver);

  // Refused connections: the reason is in err.data, as Muster's error body.
  const bad = await connect({ token: "not-a-token" });
  check("bad token is refused with connect_error", bad.err !== undefined, { connected: bad.socket.connected });
  report.refused_code = bad.err.data?.error?.code;
  check("connect_error data carries auth.invalid_token", report.refused_code === "auth.invalid_token", bad.err.data);
  const none = await connect({});
  report.no_token_code = none.err?.data?.error?.code;
  check("a connection without a token is refused", report.no_token_code === "auth.unauthenticated",
    none.err?.data ?? "connected");

  const a = await connect({ token: sender.token });
  check("sender connects", a.err === undefined, a.err?.data ?? a.err?.message);
  const b = await connect({ token: receiver.token });
  check("receiver connects", b.err === undefined, b.err?.data ?? b.err?.message);
  const whoami = await call(b.socket, "whoami", {});
  check("whoami answers with the receiver", whoami.data?.user_id === receiver.userId, whoami);

  const joined = [];
  b.socket.on("room.joined", (data) => joined.push(data.room_id));
  const created = await call(a.socket, "room.create", { kind: "group", name: "JS 客户端测试", member_ids: [receiver.userId] });
  check("room.create acks the room", typeof created.data?.room?.id === "string", created);
  const roomId = created.data.room.id;
  report.room_id = roomId;
  const inRoom = () => joined.includes(roomId);
  await within((async () => { while (!inRoom()) await new Promise((r) => setTimeout(r, 10)); })(), 5000, "room.joined");
  check("receiver is told it joined", inRoom(), joined);

  const clientId = `js-${Date.now()}`;
  const text = "请立即到东沟水库集合 (socket.io-client)";
  const arrival = next(b.socket, "room.event", (ev) => ev.room_id === roomId && ev.client_id === clientId);
  const sent = await call(a.socket, "message.send", { room_id: roomId, client_id: clientId, text });
  check("message.send acks the stored event", sent.data?.duplicate === false && Number.isInteger(sent.data?.event?.seq), sent);
  const delivered = await within(arrival, 5000, "the room.event on the receiver");
  check("receiver gets the room.event", delivered.body?.text === text && delivered.seq === sent.data.event.seq &&
    delivered.sender_id === sender.userId, delivered);
  report.message = { seq: delivered.seq, id: delivered.id, client_id: delivered.client_id, text: delivered.body.text };

  const again = await call(a.socket, "message.send", { room_id: roomId, client_id: clientId, text });
  check("a resend is acked as a duplicate", again.data?.duplicate === true && again.data.event.id === delivered.id, again);

  const invalid = await call(a.socket, "message.send", { room_id: roomId, text: 42 });
  report.invalid_code = invalid.error?.code;
  check("an invalid payload gets an error ack", invalid.error?.code === "request.invalid" &&
    typeof invalid.error?.message === "string" && invalid.data === undefined, invalid);
  const unknown = await call(a.socket, "no.such.event", {});
  report.unknown_code = unknown.error?.code;
  check("an unknown event gets an error ack", unknown.error?.code === "event.unknown", unknown);

  const synced = await call(b.socket, "sync", { rooms: { [roomId]: 0 } });
  const entry = synced.data?.rooms?.find((r) => r.room.id === roomId);
  check("sync returns the room", entry !== undefined, synced);
  const messages = entry.events.filter((e) => e.kind === "message");
  check("sync returns the message once", messages.length === 1 && messages[0].id === delivered.id, entry.events);
  report.sync = { events: entry.events.length, has_more: entry.has_more, unread: entry.unread };

  report.ok = true;
}

let code = 0;
try {
  await main();
} catch (err) {
  report.error = err.message;
  code = 1;
} finally {
  for (const socket of sockets) socket.disconnect();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(code);
