// What the device still has to send, kept in IndexedDB so it survives a lost network, a closed tab
// and a reload. Every item carries a client id chosen once, so sending it again (when an answer was
// lost) gives the server's first result instead of a second copy. Items are sent in the order they
// were made; a refusal (4xx) is kept and shown, a transient failure waits for the network.
import { createStore } from "./store.js";
import { clientId } from "./format.js";
import { me } from "./session.js";

const DB = "muster-outbox";
const STORE = "items";
const senders = new Map(); // kind → async (payload, clientId) => result

/** Every item of the signed-in user, oldest first: {id, kind, payload, created_at, state, error, attempts}. */
export const outbox = createStore([]);
export const delivered = createStore([]); // {id, kind, result} delivered in this page's life

let dbPromise = null;
function db() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => {
        const store = req.result.createObjectStore(STORE, { keyPath: "id" });
        store.createIndex("user", "user_id");
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  return dbPromise;
}

async function tx(mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(STORE, mode);
    const result = fn(t.objectStore(STORE));
    t.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error);
  });
}

async function reload() {
  const user = me();
  if (!user) { outbox.set([]); return []; }
  const items = await tx("readonly", (s) => s.index("user").getAll(user.id));
  items.sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
  outbox.set(items);
  return items;
}

/** Register how items of `kind` are sent: `fn(payload, clientId)` returns the server's answer. */
export function registerSender(kind, fn) {
  senders.set(kind, fn);
}

/** Queue something to send; returns the item (its id is the client id). Sending starts at once. */
export async function enqueue(kind, payload) {
  const user = me();
  if (!user) throw new Error("not signed in");
  const item = { id: clientId(kind.slice(0, 3)), kind, payload, user_id: user.id, created_at: Date.now(),
    state: "pending", error: null, attempts: 0 };
  await tx("readwrite", (s) => s.put(item));
  await reload();
  flush();
  return item;
}

export async function discard(id) {
  await tx("readwrite", (s) => s.delete(id));
  await reload();
}

export async function retryItem(id) {
  const item = outbox.get().find((i) => i.id === id);
  if (!item) return;
  await tx("readwrite", (s) => s.put({ ...item, state: "pending", error: null }));
  await reload();
  flush();
}

let running = null;
let again = false;
let backoff = 1000;
let timer = null;

/** Send what is pending, in order. Safe to call often: one run at a time. */
export function flush() {
  if (running) { again = true; return running; }
  running = (async () => {
    do {
      again = false;
      await run();
    } while (again);
  })().finally(() => { running = null; });
  return running;
}

async function run() {
  const items = await reload();
  for (const item of items) {
    if (item.state !== "pending") continue;
    const sender = senders.get(item.kind);
    if (!sender) continue;
    if (navigator.onLine === false) return;
    try {
      const result = await sender(item.payload, item.id);
      await tx("readwrite", (s) => s.delete(item.id));
      delivered.set((list) => [...list.slice(-49), { id: item.id, kind: item.kind, payload: item.payload, result }]);
      backoff = 1000;
    } catch (err) {
      const transient = err && (err.transient || err.status === 0 || err.status === undefined);
      const updated = { ...item, attempts: item.attempts + 1, error: err && err.message ? err.message : String(err) };
      if (!transient) updated.state = "failed";
      await tx("readwrite", (s) => s.put(updated));
      if (transient) {
        // The network is gone or the server is busy: stop, keep the order, try again later.
        clearTimeout(timer);
        timer = setTimeout(flush, backoff);
        backoff = Math.min(backoff * 2, 30_000);
        await reload();
        return;
      }
    }
  }
  await reload();
}

/** Start watching for the network: call once after sign-in. */
let started = false;
export function startOutbox() {
  if (started) return reload().then(() => flush());
  started = true;
  window.addEventListener("online", () => { backoff = 1000; flush(); });
  setInterval(() => { if (outbox.get().some((i) => i.state === "pending")) flush(); }, 15_000);
  return reload().then(() => flush());
}
