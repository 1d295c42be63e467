// The real-time connection: reconnects by itself, renews its token, and tells everyone its state.
// Every server event is re-emitted on `events`; screens listen there (useEvent(events, "task.urged", …)).
import { io } from "/vendor/socket.io.esm.min.js";
import { ApiError } from "./api.js";
import { accessToken, refresh, sessionEvents, signedOutElsewhere } from "./session.js";
import { createEmitter, createStore } from "./store.js";

/** "online" | "connecting" | "offline" (the browser has no network) */
export const conn = createStore(navigator.onLine === false ? "offline" : "connecting");
export const events = createEmitter();

let socket = null;
let retry = null;
let attempts = 0;

function state() {
  if (socket && socket.connected) return "online";
  return navigator.onLine === false ? "offline" : "connecting";
}

function update() {
  const next = state();
  if (conn.get() !== next) conn.set(next);
}

function scheduleRetry() {
  clearTimeout(retry);
  // A refused connection (expired token, server restarting) is not retried by socket.io itself.
  const delay = Math.min(30_000, 500 * 2 ** Math.min(attempts, 6)) * (0.75 + Math.random() / 2);
  attempts += 1;
  retry = setTimeout(() => { if (socket && !socket.connected && !socket.active) socket.connect(); }, delay);
}

export function startSocket() {
  if (socket) return socket;
  socket = io({
    path: "/socket.io",
    transports: ["websocket", "polling"],
    reconnectionDelay: 500,
    reconnectionDelayMax: 10_000,
    auth: (cb) => { accessToken().then((token) => cb({ token }), () => cb({})); },
  });
  socket.on("connect", () => {
    attempts = 0;
    update();
    events.emit("connect");
  });
  socket.on("disconnect", (reason) => {
    update();
    events.emit("disconnect", reason);
    if (reason === "io server disconnect") scheduleRetry();
  });
  socket.on("connect_error", (err) => {
    update();
    const code = err && err.data && err.data.error && err.data.error.code;
    if (code && code.startsWith("auth.")) {
      refresh().then(scheduleRetry, () => {});
    } else if (!socket.active) {
      scheduleRetry();
    }
  });
  socket.onAny((name, data) => {
    if (name === "session.ended") signedOutElsewhere();
    events.emit(name, data);
  });
  window.addEventListener("online", () => { update(); if (socket && !socket.connected) socket.connect(); });
  window.addEventListener("offline", update);
  return socket;
}

sessionEvents.on("token", (token) => {
  if (socket && socket.connected) socket.emit("auth.renew", { token });
});
sessionEvents.on("ended", () => stopSocket());

export function stopSocket() {
  clearTimeout(retry);
  if (socket) {
    socket.removeAllListeners();
    socket.disconnect();
    socket = null;
  }
  update();
}

export function connected() {
  return !!(socket && socket.connected);
}

/** Emit an event and wait for its acknowledgement: resolves to `data`, rejects with ApiError. */
export function request(name, payload = {}, { timeout = 15_000 } = {}) {
  return new Promise((resolve, reject) => {
    if (!socket || !socket.connected) {
      reject(new ApiError(0, "network", "not connected"));
      return;
    }
    socket.timeout(timeout).emit(name, payload, (err, ack) => {
      if (err) { reject(new ApiError(0, "timeout", "no answer")); return; }
      if (ack && ack.error) { reject(new ApiError(400, ack.error.code, ack.error.message)); return; }
      resolve(ack ? ack.data : null);
    });
  });
}

/** Fire and forget (typing, read positions). */
export function send(name, payload = {}) {
  if (socket && socket.connected) socket.emit(name, payload);
}
