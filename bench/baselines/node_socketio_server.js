"use strict";
// The Node socket.io baseline of bench/fanout.py: the reference Socket.IO server with nothing behind it.
//
//   `join` {room}: join the room; ack {data: {}}
//   `msg` {..., room_id}: emit the payload as `msg` to that room (the sender too); ack {data: {ok: true}}
//
// socket.io's defaults are kept (no permessage-deflate, as shipped).
//
//   node bench/baselines/node_socketio_server.js --port 8091 [--host 127.0.0.1] [--max-seconds 600]
//
// socket.io is installed in bench/node/ (npm ci there). Stops by itself when the process that
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

server.listen(port, host);

const parent = process.ppid;
const started = Date.now();
setInterval(() => {
  if (process.ppid !== parent || Date.now() - started > maxSeconds * 1000) process.exit(0);
}, 500).unref();
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
// Keep running: the listening server holds the event loop open.
