// The field responder's view (phones, 360 px and up): tasks, chat, incident reports, the offline outbox.
import { html, render, useEffect, useState } from "../lib/h.js";
import { t } from "../lib/i18n.js";
import { loadDirectory, userName } from "../lib/directory.js";
import { rooms } from "../lib/chat.js";
import { notice } from "../lib/notify.js";
import { flush, outbox, startOutbox } from "../lib/outbox.js";
import { logout } from "../lib/session.js";
import { events } from "../lib/socket.js";
import { useStore } from "../lib/store.js";
import { ConnectionBadge, LangSwitch, Notices, NotifyButton, SessionGate } from "../lib/ui.js";
import "./strings.js";
import { RoomList, RoomScreen } from "./chat.js";
import { PendingBadge, PendingScreen } from "./pending.js";
import { ReportScreen } from "./report.js";
import { TaskDetail, TaskList, refreshTasks } from "./tasks.js";

/** The screen named by the location hash: #/tasks, #/task/<id>, #/chat, #/room/<id>, #/report, #/pending. */
function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const [name = "tasks", id] = parts;
  return { name, id };
}

function useRoute() {
  const [route, setRoute] = useState(parseRoute());
  useEffect(() => {
    const on = () => {
      setRoute(parseRoute());
      window.scrollTo(0, 0);
    };
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

const TABS = [
  { name: "tasks", href: "#/tasks", key: "m.tab.tasks", also: ["task"] },
  { name: "chat", href: "#/chat", key: "m.tab.chat", also: ["room"] },
  { name: "report", href: "#/report", key: "m.tab.report", also: [] },
  { name: "pending", href: "#/pending", key: "m.tab.pending", also: [] },
];

function TabBar({ route }) {
  const pending = useStore(outbox, (items) => items.length);
  const unread = useStore(rooms, (m) => [...m.values()].reduce((n, e) => n + (e.unread || 0), 0));
  return html`<nav class="tabbar" aria-label=${t("m.nav")}>
    <ul>${TABS.map((tab) => {
      const active = tab.name === route.name || tab.also.includes(route.name);
      const count = tab.name === "pending" ? pending : tab.name === "chat" ? unread : 0;
      return html`<li key=${tab.name}><a href=${tab.href} class=${active ? "tab active" : "tab"}
        aria-current=${active ? "page" : undefined}>
        <span class="tab-label">${t(tab.key)}</span>${count > 0 && html`<span class="count">${count}</span>`}</a></li>`;
    })}</ul>
  </nav>`;
}

function Screen({ route }) {
  switch (route.name) {
    case "task": return html`<${TaskDetail} key=${route.id} taskId=${route.id} />`;
    case "chat": return html`<${RoomList} />`;
    case "room": return html`<${RoomScreen} key=${route.id} roomId=${route.id} />`;
    case "report": return html`<${ReportScreen} />`;
    case "pending": return html`<${PendingScreen} />`;
    default: return html`<${TaskList} />`;
  }
}

/** Urges, supervisions, new tasks, mentions and acknowledgement requests: a notice and a fresh task list. */
function useAlerts() {
  useEffect(() => {
    const taskAlert = (key) => (task) => {
      notice(t(key, { title: (task && task.title) || "" }), { kind: "urge", system: true, tag: task && task.id });
      refreshTasks();
    };
    const messageText = (data) => {
      const entry = rooms.get().get(data.room_id);
      const event = entry && entry.events.find((e) => e.id === data.event_id);
      return (event && event.body && event.body.text) || (entry && entry.room.name) || "";
    };
    const offs = [
      events.on("task.urged", taskAlert("notify.urge")),
      events.on("task.supervised", taskAlert("notify.supervised")),
      events.on("task.assigned", taskAlert("notify.assigned")),
      events.on("task.changed", () => refreshTasks()),
      events.on("mention", (data) => notice(t("notify.mention", { name: userName(data.sender_id) }),
        { kind: "urge", system: true, tag: data.event_id })),
      events.on("ack.requested", (data) => notice(t("notify.ack", { text: messageText(data) }),
        { kind: "urge", system: true, tag: data.event_id })),
      // Back after a drop: whatever changed meanwhile is fetched again, and the outbox is sent.
      events.on("connect", () => { refreshTasks(); flush(); }),
    ];
    return () => offs.forEach((off) => off());
  }, []);
}

function Shell({ me }) {
  const route = useRoute();
  useAlerts();
  return html`<div class="shell mobile">
    <header class="top">
      <div class="top-line">
        <strong class="app-name">${t("app.mobile")}</strong>
        <${ConnectionBadge} />
        <${PendingBadge} />
      </div>
      <div class="top-line secondary">
        <span class="me" title=${t("m.user", { name: me.user.display_name })}>${me.user.display_name}</span>
        <${NotifyButton} /><${LangSwitch} />
        <button type="button" onClick=${logout}>${t("logout")}</button>
      </div>
    </header>
    <main id="main" class="content"><${Screen} route=${route} /></main>
    <${TabBar} route=${route} />
    <${Notices} />
  </div>`;
}

function onSignedIn() {
  loadDirectory().catch((err) => console.warn("directory", err));
  startOutbox();
  refreshTasks();
}

// The app shell works without a network once loaded (sw.js); only this page is in the worker's scope.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/m" }).catch((err) => console.warn("service worker", err));
}

render(html`<${SessionGate} kind="mobile" title=${t("app.mobile")} onSignedIn=${onSignedIn}>
  ${(me) => html`<${Shell} me=${me} />`}
</${SessionGate}>`, document.getElementById("root"));
