// In-page notices (a live region screen readers announce) and, when the user allowed it, the
// browser's own notifications for urges, supervisions, new tasks and mentions.
import { createStore } from "./store.js";

export const notices = createStore([]); // {id, kind, text, at}
let seq = 0;

export function notice(text, { kind = "info", ttl = 8000, system = false, tag } = {}) {
  seq += 1;
  const id = seq;
  notices.set((list) => [...list.slice(-4), { id, kind, text, at: Date.now() }]);
  if (ttl) setTimeout(() => dismiss(id), ttl);
  if (system) systemNotification(text, tag);
  return id;
}

export function dismiss(id) {
  notices.set((list) => list.filter((n) => n.id !== id));
}

export const permission = createStore(typeof Notification === "undefined" ? "unsupported" : Notification.permission);

export async function askPermission() {
  if (typeof Notification === "undefined") return "unsupported";
  const result = await Notification.requestPermission();
  permission.set(result);
  return result;
}

function systemNotification(text, tag) {
  if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
  if (document.visibilityState === "visible" && document.hasFocus()) return;
  try {
    // `body` is plain text: notifications never render HTML.
    const n = new Notification("Muster", { body: text, tag, lang: document.documentElement.lang });
    n.onclick = () => { window.focus(); n.close(); };
  } catch { /* some mobile browsers only allow notifications from a service worker */ }
}
