"use strict";
// The Node socket.io baseline of bench/fanout.py: the reference Socket.IO server with nothing behind it.
//
//   `join` {room}: join the room; ack {data: {}}
//   `msg` {..., room_id}: emit the payload as `msg` to that room (the sender too); ack {data: {ok: true}}
//
// socket.io's defaults are kept (no permessage-deflate, as shipped).
//
// With --redis URL it is one node of several: socket.io's Redis adapter (@socket.io/redis-adapter, with a
// publishing and a subscribing client of the `redis` package) carries every room emit to the other nodes,
// as socket.io documents for running more than one server. It listens once both clients are connected.
//
//   node bench/baselines/node_socketio_server.js --port 8091 [--host 127.0.0.1] [--redis redis://127.0.0.1:6379/0]
//                                                [--max-seconds 600]
//
// socket.io, the adapter and redis are installed in bench/node/ (npm ci there). Stops by itself when the process that
// started it goes away, or after --max-seconds.

const http = require("node:http");
const path = require("node:path");
const { createRequire } = require("node:module");

const requireFromBench = createRequire(path.join(__dirname, "..", "node", "package.json"));
const { Server } = requireFromBench("socket.io");

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const host = option("host", "127.0.0.1");
const port = Number(option("port", "0"));
const maxSeconds = Number(option("max-seconds", "600"));
const redisUrl = option("redis", "");

const server = http.createServer((req, res) => {
  if (req.url === "/readyz") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"ready":true}');
  } else {
    res.writeHead(404);
    res.end();
  }
});
const io = new Server(server, { serveClient: false, maxHttpBufferSize: 1e6 });

io.on("connection", (socket) => {
  socket.on("join", (data, ack) => {
    socket.join(String(data.room));
    if (typeof ack === "function") ack({ data: {} });
  });
  socket.on("msg", (data, ack) => {
    io.to(String(data.room_id)).emit("msg", data);
    if (typeof ack === "function") ack({ data: { ok: true } });
  });
});

async function start() {
  if (redisUrl) {
    const { createClient } = requireFromBench("redis");
    const { createAdapter } = requireFromBench("@socket.io/redis-adapter");
    const pubClient = createClient({ url: redisUrl });
    const subClient = pubClient.duplicate();
    for (const client of [pubClient, subClient]) {
      client.on("error", (err) => process.stderr.write(`redis: ${err.message}\n`));
    }
    await Promise.all([pubClient.connect(), subClient.connect()]);
    io.adapter(createAdapter(pubClient, subClient));
  }
  server.listen(port, host);
}

start().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});

const parent = process.ppid;
const started = Date.now();
setInterval(() => {
  if (process.ppid !== parent || Date.now() - started > maxSeconds * 1000) process.exit(0);
}, 500).unref();
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
// Keep running: the listening server holds the event loop open.
