// Who is signed in. The refresh token lives in an HttpOnly, SameSite=Strict cookie scoped to
// /api/auth (page scripts never see it); the short-lived access token lives in this module's memory
// only, so nothing a script of another origin could read is kept anywhere. A reload gets a new
// access token from the cookie (restore()).
import { createEmitter, createStore } from "./store.js";

export const session = createStore(null); // {user, device, permissions} once signed in
export const sessionEvents = createEmitter(); // "token" (new access token), "ended" (signed out)

let access = null;
let accessExpiresAt = 0;
let refreshing = null;
let timer = null;
let deviceKind = "console";

const deviceKey = () => `muster.device.${deviceKind}`;

function savedDeviceId() {
  try { return localStorage.getItem(deviceKey()) || undefined; } catch { return undefined; }
}

function deviceName() {
  const ua = navigator.userAgentData;
  const platform = (ua && ua.platform) || navigator.platform || "browser";
  const brand = ua && ua.brands ? (ua.brands.find((b) => !/Not/.test(b.brand)) || {}).brand : "";
  return `${brand || "Browser"} · ${platform} · ${deviceKind}`.slice(0, 64);
}

export class AuthError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function post(path, body) {
  let res;
  try {
    res = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (err) {
    throw new AuthError(0, "network", String(err && err.message ? err.message : err));
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = data.error || {};
    throw new AuthError(res.status, e.code || `http.${res.status}`, e.message || res.statusText);
  }
  return data;
}

function adopt(data) {
  access = data.access_token;
  accessExpiresAt = data.access_expires_at;
  try { localStorage.setItem(deviceKey(), data.device.id); } catch { /* ignore */ }
  clearTimeout(timer);
  // Renew a minute before expiry (or halfway for very short tokens).
  const lead = Math.min(60_000, (accessExpiresAt - Date.now()) / 2);
  timer = setTimeout(() => { refresh().catch(() => {}); }, Math.max(accessExpiresAt - Date.now() - lead, 1000));
  sessionEvents.emit("token", access);
}

async function loadMe() {
  const res = await fetch("/api/me", { headers: { Authorization: `Bearer ${access}` } });
  if (!res.ok) throw new AuthError(res.status, "auth.me", res.statusText);
  const me = await res.json();
  // Remembered (it holds no secret) so that a reload without network still opens this user's view,
  // with their queue of unsent items; removed when they sign out.
  try { localStorage.setItem(meKey(), JSON.stringify({ user: me.user, device: me.device })); } catch { /* ignore */ }
  session.set(me);
  return me;
}

const meKey = () => `muster.me.${deviceKind}`;

/** The last signed-in user of this device kind, for opening offline; null if none. */
export function offlineSession(kind = deviceKind) {
  deviceKind = kind;
  try {
    const saved = JSON.parse(localStorage.getItem(meKey()) || "null");
    return saved && saved.user ? { ...saved, permissions: [], offline: true } : null;
  } catch {
    return null;
  }
}

/** Sign in with a password; `kind` is "console" or "mobile". */
export async function login(username, password, kind = deviceKind) {
  deviceKind = kind;
  const data = await post("/api/auth/login", {
    username, password, device_kind: kind, device_name: deviceName(), device_id: savedDeviceId(),
    session: "cookie",
  });
  adopt(data);
  return loadMe();
}

function withLock(fn) {
  // Refresh tokens rotate: two tabs refreshing with one cookie at once would look like a stolen token.
  if (navigator.locks && navigator.locks.request) return navigator.locks.request("muster.refresh", fn);
  return fn();
}

/** Trade the cookie for a new access token (one at a time, across tabs). */
export function refresh() {
  if (!refreshing) {
    refreshing = withLock(() => post("/api/auth/refresh", {}))
      .then((data) => { adopt(data); return access; })
      .catch((err) => {
        if (err.status === 401) end();
        throw err;
      })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** On page load: resume the session the cookie holds. Resolves to the user or null. */
export async function restore(kind = deviceKind) {
  deviceKind = kind;
  try {
    await refresh();
    return await loadMe();
  } catch (err) {
    if (err.status === 0) throw err; // offline: the caller retries
    return null;
  }
}

/** A valid access token (refreshed when it has less than 30 s left). */
export async function accessToken() {
  if (access && accessExpiresAt - Date.now() > 30_000) return access;
  return refresh();
}

export function currentToken() {
  return access;
}

function end() {
  try { localStorage.removeItem(meKey()); } catch { /* ignore */ }
  access = null;
  accessExpiresAt = 0;
  clearTimeout(timer);
  if (session.get() !== null) session.set(null);
  sessionEvents.emit("ended");
}

/** Sign this device out (the server also clears the cookie). */
export async function logout() {
  try {
    if (access) {
      await fetch("/api/auth/logout", { method: "POST", credentials: "same-origin",
        headers: { Authorization: `Bearer ${access}` } });
    }
  } finally {
    end();
  }
}

/** The server said this device was signed out (session.ended on the socket). */
export function signedOutElsewhere() {
  end();
}

export function hasRole(...roles) {
  const me = session.get();
  return !!me && me.user.roles.some((r) => roles.includes(r));
}

export function me() {
  const s = session.get();
  return s ? s.user : null;
}
