// Rooms and their timelines, kept in step with the server: a full sync on every (re)connect asks
// for everything after the last sequence number held per room, so nothing missed while away is lost.
import { get } from "./api.js";
import { connected, events, request, send } from "./socket.js";
import { createStore } from "./store.js";

/** roomId → {room, membership, unread, events: [...] (ascending seq), hasMore, lastSeq} */
export const rooms = createStore(new Map());
export const syncing = createStore(false);
export const typing = createStore(new Map()); // roomId → Map(userId → expiry ms)

const MAX_KEPT = 500;

function applyEvent(list, event) {
  if (list.some((e) => e.seq === event.seq)) return list;
  const next = [...list];
  if (["edit", "recall", "pin", "unpin"].includes(event.kind) && event.target_id) {
    const i = next.findIndex((e) => e.id === event.target_id);
    if (i >= 0) {
      const target = { ...next[i] };
      if (event.kind === "edit") { target.body = { ...target.body, text: event.body.text }; target.edited_at = event.created_at; }
      if (event.kind === "recall") { target.body = {}; target.recalled_at = event.created_at; }
      if (event.kind === "pin") target.pinned = true;
      if (event.kind === "unpin") target.pinned = false;
      next[i] = target;
    }
  }
  // Keep ascending order even if events arrive out of order (sync racing a live event).
  let at = next.length;
  while (at > 0 && next[at - 1].seq > event.seq) at -= 1;
  next.splice(at, 0, event);
  return next.length > MAX_KEPT ? next.slice(next.length - MAX_KEPT) : next;
}

function merge(entry, incoming) {
  let list = entry.events;
  for (const e of incoming) list = applyEvent(list, e);
  const lastSeq = list.length ? Math.max(entry.lastSeq || 0, list[list.length - 1].seq) : entry.lastSeq || 0;
  return { ...entry, events: list, lastSeq };
}

export function addEvent(event, { mine = false } = {}) {
  rooms.set((map) => {
    const entry = map.get(event.room_id);
    if (!entry) return map;
    const next = new Map(map);
    const merged = merge(entry, [event]);
    if (!mine && event.kind === "message" && !entry.open) merged.unread = (entry.unread || 0) + 1;
    next.set(event.room_id, merged);
    return next;
  });
}

/** Sync every room (has_more is followed until each room is complete). */
export async function sync() {
  if (!connected()) return;
  syncing.set(true);
  try {
    let pending = null;
    for (let round = 0; round < 50; round += 1) {
      const held = {};
      // A room with a hole asks from before the hole (gapFrom), not from its newest event.
      for (const [id, entry] of rooms.get()) {
        if (!pending || pending.has(id)) held[id] = entry.gapFrom ?? (entry.lastSeq || 0);
      }
      const data = await request("sync", { rooms: held, limit: 100 });
      const more = new Set();
      rooms.set((map) => {
        const next = pending ? new Map(map) : new Map();
        for (const r of data.rooms) {
          const old = map.get(r.room.id) || { events: [], lastSeq: 0 };
          const merged = merge(old, r.events);
          next.set(r.room.id, { ...merged, room: r.room, membership: r.membership, unread: r.unread,
            open: old.open, hasOlder: old.hasOlder ?? r.has_more,
            // The hole is filled once a page without more came back from before it; with more to
            // come, the next round continues after this page.
            gapFrom: r.has_more && merged.gapFrom !== undefined && r.events.length
              ? r.events[r.events.length - 1].seq : undefined });
          if (r.has_more && held[r.room.id] !== undefined) more.add(r.room.id);
        }
        if (pending) for (const id of data.left || []) next.delete(id);
        return next;
      });
      if (!more.size) break;
      pending = more;
    }
  } finally {
    syncing.set(false);
  }
}

// One sync at a time: a request while one runs asks for one more round after it.
let syncRunning = null;
let syncAgain = false;

/** Sync soon (coalesced): on a `sync.hint` from the server, or when a live event skips a sequence number. */
export function requestSync() {
  if (syncRunning) { syncAgain = true; return syncRunning; }
  syncRunning = (async () => {
    try {
      do { syncAgain = false; await sync(); } while (syncAgain);
    } catch (err) {
      console.warn("sync failed", err);
    } finally {
      syncRunning = null;
    }
  })();
  return syncRunning;
}

/** Older history of a room, for "load more". */
export async function loadOlder(roomId) {
  const entry = rooms.get().get(roomId);
  if (!entry) return;
  const before = entry.events.length ? entry.events[0].seq : (entry.lastSeq || 0) + 1;
  const data = await get(`/api/rooms/${encodeURIComponent(roomId)}/events?before_seq=${before}&limit=50`);
  rooms.set((map) => {
    const next = new Map(map);
    const cur = next.get(roomId);
    if (cur) next.set(roomId, { ...merge(cur, data.events), hasOlder: !!data.has_more });
    return next;
  });
}

/** Mark a room as open on screen (its new messages are read at once). */
export function setOpen(roomId, open) {
  rooms.set((map) => {
    const entry = map.get(roomId);
    if (!entry) return map;
    const next = new Map(map);
    next.set(roomId, { ...entry, open, unread: open ? 0 : entry.unread });
    return next;
  });
  if (open) markRead(roomId);
}

export function markRead(roomId) {
  const entry = rooms.get().get(roomId);
  if (entry && entry.lastSeq) send("room.read", { room_id: roomId, seq: entry.lastSeq });
}

export function setTyping(roomId, on) {
  send("typing", { room_id: roomId, typing: on });
}

events.on("connect", () => { sync().catch((err) => console.warn("sync failed", err)); });
events.on("room.event", (event) => {
  // A gap (seq beyond lastSeq + 1 in a room we hold) means live events were lost on the way
  // (for instance while the server's Redis was away): fetch what is missing.
  const held = rooms.get().get(event.room_id);
  const gap = !!held && event.seq > (held.lastSeq || 0) + 1;
  if (gap) {
    const from = Math.min(held.gapFrom ?? Infinity, held.lastSeq || 0);
    rooms.set((map) => new Map(map).set(event.room_id, { ...map.get(event.room_id), gapFrom: from }));
  }
  addEvent(event);
  if (gap) requestSync();
  const entry = rooms.get().get(event.room_id);
  if (entry && entry.open) markRead(event.room_id);
});
events.on("room.joined", () => { sync().catch(() => {}); });
// The server lost live events for these rooms (its Redis connection dropped): resync.
events.on("sync.hint", () => { requestSync(); });
events.on("room.left", ({ room_id: roomId }) => {
  rooms.set((map) => { const next = new Map(map); next.delete(roomId); return next; });
});
events.on("room.read", ({ room_id: roomId }) => {
  rooms.set((map) => {
    const entry = map.get(roomId);
    if (!entry) return map;
    const next = new Map(map);
    next.set(roomId, { ...entry, unread: 0 });
    return next;
  });
});
events.on("typing", ({ room_id: roomId, user_id: userId, typing: on }) => {
  typing.set((map) => {
    const next = new Map(map);
    const users = new Map(next.get(roomId) || []);
    if (on) users.set(userId, Date.now() + 6000); else users.delete(userId);
    next.set(roomId, users);
    return next;
  });
});
