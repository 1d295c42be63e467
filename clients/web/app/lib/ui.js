// Pieces every face uses: sign-in form, connection badge, notices, language switch, dialogs.
import { html, useEffect, useRef, useState } from "./h.js";
import { lang, setLang, t } from "./i18n.js";
import { notices, dismiss, permission, askPermission } from "./notify.js";
import { conn, startSocket } from "./socket.js";
import { syncing } from "./chat.js";
import { login, offlineSession, restore, session } from "./session.js";
import { useStore } from "./store.js";
import "./strings.js";

export function LangSwitch() {
  const current = useStore(lang);
  const other = current === "zh-CN" ? "en" : "zh-CN";
  return html`<button type="button" class="lang" lang=${other} aria-label=${t("lang.label")}
    onClick=${() => setLang(other)}>${t("lang.switch")}</button>`;
}

export function ConnectionBadge() {
  const state = useStore(conn);
  const busy = useStore(syncing);
  const text = state === "online" && busy ? t("conn.syncing") : t(`conn.${state}`);
  return html`<span class=${`conn conn-${state}`} role="status" aria-label=${t("conn.label")}
    data-state=${state}>${text}</span>`;
}

export function Notices() {
  const list = useStore(notices);
  return html`<div class="notices" role="log" aria-live="polite" aria-label=${t("notify.label")}>
    ${list.map((n) => html`<div class=${`notice notice-${n.kind}`} key=${n.id}>
      <span>${n.text}</span>
      <button type="button" class="link" aria-label=${t("common.close")} onClick=${() => dismiss(n.id)}>×</button>
    </div>`)}
  </div>`;
}

export function NotifyButton() {
  const state = useStore(permission);
  if (state !== "default") return null;
  return html`<button type="button" onClick=${askPermission}>${t("notify.enable")}</button>`;
}

/** Sign-in screen; `kind` is the device kind ("console" | "mobile"). */
export function LoginForm({ kind, title }) {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const userRef = useRef(null);
  useEffect(() => { if (userRef.current) userRef.current.focus(); }, []);
  async function submit(ev) {
    ev.preventDefault();
    const form = new FormData(ev.currentTarget);
    setBusy(true);
    setError("");
    try {
      await login(String(form.get("username")), String(form.get("password")), kind);
    } catch (err) {
      setError(t("login.failed", { message: err.message }));
    } finally {
      setBusy(false);
    }
  }
  return html`<main class="login">
    <form onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title">${title}</h1>
      <label>${t("login.username")}<input ref=${userRef} name="username" autocomplete="username" required /></label>
      <label>${t("login.password")}<input name="password" type="password" autocomplete="current-password" required /></label>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" class="primary" disabled=${busy}>${t("login.submit")}</button>
      <${LangSwitch} />
    </form>
  </main>`;
}

/**
 * The page's root: restores the session from the cookie, shows the sign-in form until signed in,
 * then starts the socket and renders `children` (a function of the session).
 */
export function SessionGate({ kind, title, onSignedIn, children }) {
  const s = useStore(session);
  useStore(lang); // re-render everything when the language changes
  const [ready, setReady] = useState(false);
  useEffect(() => {
    let stop = false;
    async function attempt(delay) {
      try {
        await restore(kind);
        if (!stop) setReady(true);
      } catch {
        // No network at start: open the last user's view from what the device remembers (their
        // unsent items stay usable) and keep trying; the sign-in form only shows with a network.
        if (stop) return;
        if (!session.get()) {
          const cached = offlineSession(kind);
          if (cached) session.set(cached);
        }
        setReady(true);
        setTimeout(() => attempt(Math.min(delay * 2, 15_000)), delay);
      }
    }
    attempt(1000);
    return () => { stop = true; };
  }, []);
  useEffect(() => {
    if (s) {
      startSocket();
      if (onSignedIn) onSignedIn(s);
    }
  }, [s && s.user.id, !!(s && s.offline)]); // again once an offline start gets its real session
  if (!ready) return html`<p class="loading" role="status">${t("common.loading")}</p>`;
  if (!s) return html`<${LoginForm} kind=${kind} title=${title} />`;
  return children(s);
}

/** A modal dialog on <dialog>: focus moves in, Escape closes, focus returns to the opener. */
export function Dialog({ title, onClose, children, wide = false }) {
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    const opener = document.activeElement;
    if (el && !el.open) el.showModal();
    return () => { if (opener && opener.focus) opener.focus(); };
  }, []);
  return html`<dialog ref=${ref} class=${wide ? "wide" : ""} aria-labelledby="dialog-title"
      onCancel=${(e) => { e.preventDefault(); onClose(); }}>
    <header><h2 id="dialog-title">${title}</h2>
      <button type="button" class="link" aria-label=${t("common.close")} onClick=${onClose}>×</button></header>
    ${children}
  </dialog>`;
}

/** A labelled form field. */
export function Field({ label: text, children, hint }) {
  return html`<label class="field"><span>${text}</span>${children}${hint && html`<small>${hint}</small>`}</label>`;
}

/** Error text of a failed call. */
export function ErrorText({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${t("common.error", { message: error.message || String(error) })}</p>`;
}
