// HTTP API calls: JSON in, JSON out, errors as ApiError {status, code, message}.
import { accessToken, refresh } from "./session.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** Worth trying again later (network gone, server busy) rather than a refusal. */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

async function send(method, path, body, token, signal) {
  const headers = { Authorization: `Bearer ${token}` };
  const init = { method, headers, signal, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    return await fetch(path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", navigator.onLine === false ? "offline" : String(err && err.message));
  }
}

export async function api(method, path, body, { signal } = {}) {
  let token;
  try {
    token = await accessToken();
  } catch (err) {
    throw new ApiError(err.status ?? 0, err.code ?? "network", err.message);
  }
  let res = await send(method, path, body, token, signal);
  if (res.status === 401) {
    // The access token expired in flight: one refresh, one retry.
    try { token = await refresh(); } catch (err) { throw new ApiError(err.status ?? 401, err.code, err.message); }
    res = await send(method, path, body, token, signal);
  }
  if (res.status === 204) return null;
  const type = res.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(res.status, e.code || `http.${res.status}`, e.message || res.statusText);
  }
  return data;
}

export const get = (path, opts) => api("GET", path, undefined, opts);
export const post = (path, body = {}, opts) => api("POST", path, body, opts);
export const patch = (path, body, opts) => api("PATCH", path, body, opts);
export const del = (path, opts) => api("DELETE", path, undefined, opts);

/** `?a=1&b=2` from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}
