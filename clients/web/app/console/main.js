// The commander's console (desktop): a left nav and one screen at a time, chosen by the URL's hash.
import { html, render, useEffect, useRef } from "../lib/h.js";
import { t } from "../lib/i18n.js";
import { loadDirectory, userName } from "../lib/directory.js";
import { rooms } from "../lib/chat.js";
import { notice } from "../lib/notify.js";
import { startOutbox } from "../lib/outbox.js";
import { hasRole, logout } from "../lib/session.js";
import { events } from "../lib/socket.js";
import { useStore } from "../lib/store.js";
import { ConnectionBadge, LangSwitch, Notices, NotifyButton, SessionGate } from "../lib/ui.js";
import "./strings.js";
import { route } from "./common.js";
import { Admin } from "./admin.js";
import { IncidentDetail, IncidentList } from "./incidents.js";
import { Overview } from "./overview.js";
import { People } from "./people.js";
import { ProjectDetail, ProjectList } from "./projects.js";

const NAV = [
  { screen: "overview", key: "nav.overview" },
  { screen: "incidents", key: "nav.incidents" },
  { screen: "projects", key: "nav.projects" },
  { screen: "people", key: "nav.people" },
  { screen: "admin", key: "nav.admin", admin: true },
];

function Screen({ r }) {
  switch (r.screen) {
    case "overview": return html`<${Overview} />`;
    case "incidents": return r.id ? html`<${IncidentDetail} id=${r.id} key=${r.id} />` : html`<${IncidentList} />`;
    case "projects": return r.id ? html`<${ProjectDetail} id=${r.id} key=${r.id} />` : html`<${ProjectList} />`;
    case "people": return html`<${People} />`;
    case "admin": return html`<${Admin} />`;
    default: return html`<h1 id="screen-title">${t("c.not_found")}</h1>`;
  }
}

function Shell({ me }) {
  const r = useStore(route);
  const mainRef = useRef(null);
  const isAdmin = hasRole("admin");
  useEffect(() => {
    const heading = mainRef.current && mainRef.current.querySelector("h1");
    document.title = `${heading ? heading.textContent.trim() : ""} · Muster ${t("app.console")}`;
  });
  const first = useRef(true);
  useEffect(() => {
    // A new screen: move focus to it (its heading labels <main>), as a page load would.
    if (first.current) { first.current = false; return; }
    if (mainRef.current) mainRef.current.focus({ preventScroll: false });
    window.scrollTo(0, 0);
  }, [r.screen, r.id]);
  function skip(ev) {
    ev.preventDefault();
    if (mainRef.current) mainRef.current.focus();
  }
  return html`<div class="shell">
    <a class="skip" href="#main" onClick=${skip}>${t("c.skip")}</a>
    <header class="top">
      <strong class="brand">${t("app.console")}</strong>
      <span class="spacer"></span>
      <span class="who">${me.user.display_name}</span>
      <${ConnectionBadge} /><${NotifyButton} /><${LangSwitch} />
      <button type="button" onClick=${logout}>${t("logout")}</button>
    </header>
    <nav class="side-nav" aria-label=${t("c.nav")}>
      <ul>${NAV.filter((n) => !n.admin || isAdmin).map((n) => html`<li key=${n.screen}>
        <a href=${`#/${n.screen}`} aria-current=${r.screen === n.screen ? "page" : undefined}>${t(n.key)}</a></li>`)}</ul>
    </nav>
    <main id="main" tabindex="-1" ref=${mainRef} aria-labelledby="screen-title"><${Screen} r=${r} /></main>
    <${Notices} />
  </div>`;
}

function roomText(roomId, eventId) {
  const entry = rooms.get().get(roomId);
  const ev = entry && entry.events.find((e) => e.id === eventId);
  return (ev && ev.body && ev.body.text) || (entry && entry.room.name) || "";
}

let live = false;
function startLive() {
  if (live) return;
  live = true;
  events.on("task.urged", (task) => notice(t("notify.urge", { title: task.title }), { kind: "urge", system: true, tag: `urge-${task.id}` }));
  events.on("task.supervised", (task) => notice(t("notify.supervised", { title: task.title }), { kind: "urge", system: true, tag: `sup-${task.id}` }));
  events.on("task.assigned", (task) => notice(t("notify.assigned", { title: task.title }), { system: true, tag: `task-${task.id}` }));
  events.on("incident.reported", (inc) => notice(t("live.incident", { title: inc.title }), { kind: "warn", system: true, tag: `inc-${inc.id}` }));
  events.on("mention", (m) => notice(t("notify.mention", { name: userName(m.sender_id) }), { system: true, tag: `m-${m.event_id}` }));
  events.on("ack.requested", (m) => notice(t("notify.ack", { text: roomText(m.room_id, m.event_id) }), { kind: "warn", system: true, tag: `ack-${m.event_id}` }));
}

function onSignedIn() {
  loadDirectory().catch((err) => console.warn("directory", err));
  startOutbox();
  startLive();
}

render(html`<${SessionGate} kind="console" title=${t("app.console")} onSignedIn=${onSignedIn}>
  ${(me) => html`<${Shell} me=${me} />`}
</${SessionGate}>`, document.getElementById("root"));
