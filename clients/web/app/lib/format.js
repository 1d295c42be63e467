// Times in the user's own time zone (the browser's), in the chosen language.
import { lang, t } from "./i18n.js";

const cache = new Map();
function fmt(options) {
  const key = lang.get() + JSON.stringify(options);
  if (!cache.has(key)) cache.set(key, new Intl.DateTimeFormat(lang.get(), options));
  return cache.get(key);
}

export function dateTime(ms) {
  if (ms == null) return "";
  return fmt({ year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }).format(ms);
}

export function time(ms) {
  if (ms == null) return "";
  const sameDay = new Date(ms).toDateString() === new Date().toDateString();
  return sameDay ? fmt({ hour: "2-digit", minute: "2-digit" }).format(ms) : dateTime(ms);
}

export function isoForInput(ms) {
  // <input type="datetime-local"> wants local time without a zone.
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromInput(value) {
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? ms : null;
}

/** "in 2 h 5 min" / "overdue 3 h" for a deadline. */
export function untilDeadline(deadline, now = Date.now()) {
  if (deadline == null) return "";
  const diff = deadline - now;
  const span = duration(Math.abs(diff));
  return diff >= 0 ? t("time.due_in", { span }) : t("time.overdue_by", { span });
}

export function duration(ms) {
  const minutes = Math.round(ms / 60000);
  if (minutes < 60) return t("time.minutes", { n: Math.max(minutes, 0) });
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return t("time.hours", { n: hours, m: minutes % 60 });
  return t("time.days", { n: Math.floor(hours / 24) });
}

export function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** A client id for idempotent sends: unique per device, allowed by the server's pattern. */
export function clientId(prefix = "c") {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
