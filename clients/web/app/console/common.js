// Pieces the console's screens share: the hash route, loading with live refresh, presence, forms.
import { html, useEffect, useRef, useState } from "../lib/h.js";
import { t } from "../lib/i18n.js";
import { events, request } from "../lib/socket.js";
import { createStore } from "../lib/store.js";
import { Dialog, ErrorText } from "../lib/ui.js";

// -- route ---------------------------------------------------------------------------------------

function parseHash() {
  const hash = location.hash || "";
  if (!hash.startsWith("#/")) return null;
  const parts = hash.slice(2).split("/").filter(Boolean).map(decodeURIComponent);
  return { screen: parts[0] || "overview", id: parts[1] || null };
}

export const route = createStore(parseHash() || { screen: "overview", id: null });
window.addEventListener("hashchange", () => {
  const next = parseHash();
  if (next) route.set(next); // "#main" (the skip link) is not a route
});

export function go(path) {
  location.hash = `#/${path}`;
}

// -- loading ---------------------------------------------------------------------------------------

/**
 * Load with `fn` when `deps` change and again when one of the socket events `on` arrives (filtered by
 * `when(name, data)`), coalescing bursts. Returns {data, error, reload}.
 */
export function useLoad(fn, deps, { on = [], when } = {}) {
  const [state, setState] = useState({ data: null, error: null });
  const seq = useRef(0);
  const timer = useRef(null);
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const whenRef = useRef(when);
  whenRef.current = when;
  async function reload() {
    seq.current += 1;
    const mine = seq.current;
    try {
      const data = await fnRef.current();
      if (mine === seq.current) setState({ data, error: null });
    } catch (error) {
      if (mine === seq.current) setState((s) => ({ data: s.data, error }));
    }
  }
  useEffect(() => {
    setState({ data: null, error: null });
    reload();
  }, deps);
  useEffect(() => {
    const offs = [...on, "connect"].map((name) => events.on(name, (data) => {
      if (name !== "connect" && whenRef.current && !whenRef.current(name, data)) return;
      clearTimeout(timer.current);
      timer.current = setTimeout(reload, 150);
    }));
    return () => { offs.forEach((off) => off()); clearTimeout(timer.current); };
  }, [on.join(",")]);
  return { data: state.data, error: state.error, reload };
}

export function Loading({ error }) {
  if (error) return html`<${ErrorText} error=${error} />`;
  return html`<p class="muted" role="status">${t("c.loading")}</p>`;
}

// -- presence --------------------------------------------------------------------------------------

/** userId → {state, devices: [{device_id, kind, state}], last_seen_at} */
export const presence = createStore(new Map());

function adopt(list) {
  presence.set((map) => {
    const next = new Map(map);
    for (const p of list) next.set(p.user_id, p);
    return next;
  });
}

events.on("presence", (p) => adopt([p]));

/** Ask for the presence of these people (again on every reconnect while mounted). */
export function usePresence(userIds) {
  const key = [...userIds].sort().join(",");
  useEffect(() => {
    if (!key) return undefined;
    const ask = () => request("presence.get", { user_ids: key.split(",").slice(0, 500) })
      .then((data) => adopt(data.users || []), (err) => console.warn("presence", err));
    ask();
    return events.on("connect", ask);
  }, [key]);
}

// -- forms -----------------------------------------------------------------------------------------

/**
 * A dialog holding one form: `onSubmit(formData)` runs the call; the dialog closes when it resolves and
 * shows the error when it throws.
 */
export function FormDialog({ title, submitLabel, onSubmit, onClose, children, wide = false, danger = false }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(ev) {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onSubmit(new FormData(ev.currentTarget));
      onClose(true);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }
  return html`<${Dialog} title=${title} onClose=${() => onClose(false)} wide=${wide}>
    <form class="dialog-form" onSubmit=${submit}>
      ${children}
      <${ErrorText} error=${error} />
      <div class="row end">
        <button type="button" onClick=${() => onClose(false)}>${t("common.cancel")}</button>
        <button type="submit" class=${danger ? "danger" : "primary"} disabled=${busy}>${submitLabel || t("common.submit")}</button>
      </div>
    </form>
  </${Dialog}>`;
}

/** A form value as a trimmed string. */
export function text(form, name) {
  return String(form.get(name) ?? "").trim();
}

/** Save `blob` as a file named `name` (through a temporary object URL). */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** "file name safe" version of a title. */
export function safeName(s) {
  return String(s).replace(/[\\/:*?"<>|\s]+/g, "_").slice(0, 80);
}
