// Incidents: the list, reporting one, and an incident's detail (actions, tasks, timeline, chat, files).
import { get, post, query } from "../lib/api.js";
import { Attachment, ChatRoom } from "../lib/chatview.js";
import { userName } from "../lib/directory.js";
import { bytes, clientId, dateTime, time } from "../lib/format.js";
import { html, useState } from "../lib/h.js";
import { label, t } from "../lib/i18n.js";
import { notice } from "../lib/notify.js";
import { accessToken, hasRole } from "../lib/session.js";
import { ErrorText, Field } from "../lib/ui.js";
import { FormDialog, Loading, go, safeName, saveBlob, text, useLoad } from "./common.js";
import { AssignDialog, TaskBoard } from "./tasks.js";

export const INCIDENT_TYPES = ["flood", "fire", "chemical", "collapse", "traffic", "geological", "other"];
const LEVELS = [1, 2, 3, 4];
const LIVE = ["incident.reported", "incident.changed", "task.assigned", "task.changed", "task.urged", "task.supervised"];

export function LevelBadge({ level }) {
  return html`<span class=${`badge level-${level}`}>${label("level", level)}</span>`;
}

function ReportDialog({ onClose }) {
  return html`<${FormDialog} title=${t("inc.report")} submitLabel=${t("inc.report")} onClose=${onClose}
    onSubmit=${async (form) => {
      const made = await post("/api/incidents", {
        title: text(form, "title"), type: text(form, "type"), level: Number(text(form, "level")),
        address: text(form, "address"), description: text(form, "description"), client_id: clientId("inc"),
      });
      notice(t("inc.reported_ok"));
      go(`incidents/${made.id}`);
    }}>
    <${Field} label=${t("inc.f_title")}><input autofocus name="title" required maxlength="200" autocomplete="off" /></${Field}>
    <div class="two">
      <${Field} label=${t("inc.f_type")}><select name="type">
        ${INCIDENT_TYPES.map((c) => html`<option value=${c}>${label("incident_type", c)}</option>`)}</select></${Field}>
      <${Field} label=${t("inc.f_level")}><select name="level">
        ${LEVELS.map((n) => html`<option value=${n} selected=${n === 4}>${label("level", n)}</option>`)}</select></${Field}>
    </div>
    <${Field} label=${t("inc.f_address")}><input name="address" maxlength="500" autocomplete="off" /></${Field}>
    <${Field} label=${t("inc.f_description")}><textarea name="description" maxlength="10000"></textarea></${Field}>
  </${FormDialog}>`;
}

export function IncidentList() {
  const [reporting, setReporting] = useState(false);
  const [older, setOlder] = useState([]);
  const { data, error } = useLoad(() => get("/api/incidents?limit=50"), [], { on: [...LIVE, "dashboard"] });
  const list = data ? [...data.incidents, ...older.filter((o) => !data.incidents.some((i) => i.id === o.id))] : [];
  const more = older.length ? older.hasMore : data && data.has_more;
  async function loadMore() {
    const last = list[list.length - 1];
    const page = await get(`/api/incidents${query({ before_id: last.id, limit: 50 })}`);
    const next = [...older, ...page.incidents];
    next.hasMore = page.has_more;
    setOlder(next);
  }
  return html`<section class="stack">
    <div class="row spread">
      <h1 id="screen-title">${t("inc.title")}</h1>
      <button type="button" class="primary" onClick=${() => setReporting(true)}>${t("inc.report")}</button>
    </div>
    ${!data ? html`<${Loading} error=${error} />` : !list.length ? html`<p class="muted">${t("inc.none")}</p>` : html`
    <table class="panel list">
      <caption class="sr-only">${t("inc.title")}</caption>
      <thead><tr><th scope="col">${t("inc.col_level")}</th><th scope="col">${t("inc.col_title")}</th>
        <th scope="col">${t("inc.col_type")}</th><th scope="col">${t("inc.col_state")}</th>
        <th scope="col">${t("inc.col_reported")}</th></tr></thead>
      <tbody>${list.map((i) => html`<tr key=${i.id}>
        <td><${LevelBadge} level=${i.level} /></td>
        <td><a href=${`#/incidents/${i.id}`}>${i.title}</a></td>
        <td>${label("incident_type", i.type)}</td>
        <td><span class=${`state state-${i.state}`}>${label("incident_state", i.state)}</span></td>
        <td><time datetime=${new Date(i.created_at).toISOString()} data-ms=${i.created_at}>${dateTime(i.created_at)}</time></td>
      </tr>`)}</tbody>
    </table>`}
    ${more && html`<button type="button" onClick=${loadMore}>${t("inc.more")}</button>`}
    ${reporting && html`<${ReportDialog} onClose=${() => setReporting(false)} />`}
  </section>`;
}

// -- detail ---------------------------------------------------------------------------------------

function IncidentActionDialog({ incident, action, onClose, onDone }) {
  const name = label("incident_action", action);
  return html`<${FormDialog} title=${`${name}：${incident.title}`} submitLabel=${name} onClose=${onClose}
    onSubmit=${async (form) => {
      const body = { version: incident.version };
      if (form.get("level")) body.level = Number(form.get("level"));
      if (text(form, "summary")) body.summary = text(form, "summary");
      if (text(form, "reason")) body.reason = text(form, "reason");
      await post(`/api/incidents/${encodeURIComponent(incident.id)}/${action}`, body);
      notice(t("inc.done", { action: name }));
      onDone();
    }}>
    ${action === "verify" && html`<${Field} label=${t("inc.f_level")}><select name="level">
      ${LEVELS.map((n) => html`<option value=${n} selected=${n === incident.level}>${label("level", n)}</option>`)}</select></${Field}>`}
    ${action === "resolve" && html`<${Field} label=${t("inc.f_summary")}><textarea name="summary" maxlength="4000"></textarea></${Field}>`}
    ${action === "reopen" && html`<${Field} label=${t("inc.f_reason")}><textarea name="reason" required maxlength="4000"></textarea></${Field}>`}
    ${["respond", "close"].includes(action) && html`<p>${incident.title}</p>`}
  </${FormDialog}>`;
}

export function Timeline({ entries }) {
  if (!entries.length) return html`<p class="muted">${t("common.empty")}</p>`;
  return html`<ol class="case-timeline" tabindex="0" aria-label=${t("inc.timeline")}>${entries.map((e, n) => html`<li key=${n} class=${`kind-${e.kind}`}>
    <time datetime=${new Date(e.at).toISOString()} data-ms=${e.at}>${dateTime(e.at)}</time>
    <span class="summary">${e.summary}</span>
  </li>`)}</ol>`;
}

function RoomFiles({ roomId }) {
  const { data, error } = useLoad(() => get(`/api/rooms/${encodeURIComponent(roomId)}/files`), [roomId],
    { on: ["room.event"], when: (n, d) => d && d.room_id === roomId });
  if (!data) return html`<${Loading} error=${error} />`;
  if (!data.files.length) return html`<p class="muted">${t("inc.no_files")}</p>`;
  return html`<ul class="files">${data.files.map((f) => html`<li key=${f.id}>
    <${Attachment} fileId=${f.id} name=${f.name} /> <span class="muted">${bytes(f.size)} · ${userName(f.owner_id)} · ${time(f.created_at)}</span>
  </li>`)}</ul>`;
}

async function exportRecord(incident, format) {
  const res = await fetch(`/api/incidents/${encodeURIComponent(incident.id)}/record?format=${format}`,
    { headers: { Authorization: `Bearer ${await accessToken()}` } });
  if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
  const blob = await res.blob();
  saveBlob(blob, `${t("inc.record")}-${safeName(incident.title)}.${format}`);
}

export function IncidentDetail({ id }) {
  const [acting, setActing] = useState(null);
  const [assigning, setAssigning] = useState(false);
  const [exportError, setExportError] = useState(null);
  const base = `/api/incidents/${encodeURIComponent(id)}`;
  // incident.changed only reaches the reporter: the room's system messages tell everyone else of each step.
  const inc = useLoad(() => get(base), [id], { on: ["incident.changed", "incident.reported", "room.event"],
    when: (n, d) => d && (d.id === id || (!!roomId && d.room_id === roomId && d.kind !== "message")) });
  const incident = inc.data;
  const roomId = incident && incident.room_id;
  const mine = (n, d) => !d || d.case_id === id || d.id === id || (roomId && d.room_id === roomId);
  const tasks = useLoad(() => get(`${base}/tasks`), [id], { on: LIVE, when: mine });
  const timeline = useLoad(() => get(`${base}/timeline`), [id], { on: [...LIVE, "room.event"], when: mine });
  function refresh() { inc.reload(); tasks.reload(); timeline.reload(); }
  if (!incident) return html`<section><h1 id="screen-title">${t("inc.title")}</h1><${Loading} error=${inc.error} /></section>`;
  const actions = (incident.actions || []).filter((a) => a !== "update");
  const mayAssign = hasRole("commander") && ["verified", "responding"].includes(incident.state);
  return html`<div class="incident stack">
    <p><a href="#/incidents">← ${t("inc.back")}</a></p>
    <div class="row spread">
      <h1 id="screen-title"><${LevelBadge} level=${incident.level} /> ${incident.title}</h1>
      <span class=${`state big state-${incident.state}`}>${label("incident_state", incident.state)}</span>
    </div>
    <div class="detail-grid">
      <div class="stack">
        <section class="panel" aria-labelledby="facts-h">
          <h2 id="facts-h">${t("inc.facts")}</h2>
          <dl class="facts">
            <dt>${t("inc.f_type")}</dt><dd>${label("incident_type", incident.type)}</dd>
            <dt>${t("inc.location")}</dt><dd>${incident.address || "—"}</dd>
            <dt>${t("inc.reporter")}</dt><dd>${userName(incident.reporter_id)} · <time data-ms=${incident.created_at}>${dateTime(incident.created_at)}</time></dd>
            ${incident.verified_at && html`<dt>${t("inc.verified")}</dt><dd>${userName(incident.verified_by)} · ${dateTime(incident.verified_at)}</dd>`}
            <dt>${t("inc.f_description")}</dt><dd class="pre">${incident.description || "—"}</dd>
          </dl>
          <div class="row" role="group" aria-label=${t("inc.actions")}>
            ${actions.map((a) => html`<button type="button" class="primary" onClick=${() => setActing(a)}>${label("incident_action", a)}</button>`)}
            ${roomId && html`<a class="button" href=${`/call?room=${encodeURIComponent(roomId)}`} target="_blank" rel="noopener">${t("inc.call")}</a>`}
            <button type="button" onClick=${() => exportRecord(incident, "html").catch(setExportError)}>${t("inc.export_html")}</button>
            <button type="button" onClick=${() => exportRecord(incident, "json").catch(setExportError)}>${t("inc.export_json")}</button>
          </div>
          <${ErrorText} error=${exportError} />
        </section>
        <section class="panel" aria-labelledby="board-h">
          <div class="row spread"><h2 id="board-h">${t("task.board")}</h2>
            ${mayAssign && html`<button type="button" class="primary" onClick=${() => setAssigning(true)}>${t("task.assign")}</button>`}</div>
          ${tasks.data ? html`<${TaskBoard} tasks=${tasks.data.tasks} onChanged=${refresh} />` : html`<${Loading} error=${tasks.error} />`}
        </section>
        <section class="panel" aria-labelledby="timeline-h">
          <h2 id="timeline-h">${t("inc.timeline")}</h2>
          ${timeline.data ? html`<${Timeline} entries=${timeline.data.entries} />` : html`<${Loading} error=${timeline.error} />`}
        </section>
      </div>
      <div class="stack side">
        <section class="panel chat-panel" aria-labelledby="chat-h">
          <h2 id="chat-h">${t("inc.chat")}</h2>
          ${roomId ? html`<${ChatRoom} roomId=${roomId} />` : html`<p class="muted">${t("inc.no_room")}</p>`}
        </section>
        ${roomId && html`<section class="panel" aria-labelledby="files-h">
          <h2 id="files-h">${t("inc.files")}</h2><${RoomFiles} roomId=${roomId} /></section>`}
      </div>
    </div>
    ${acting && html`<${IncidentActionDialog} incident=${incident} action=${acting} onClose=${() => setActing(null)} onDone=${refresh} />`}
    ${assigning && html`<${AssignDialog} path=${`${base}/tasks`} onClose=${() => setAssigning(false)} onDone=${refresh} />`}
  </div>`;
}
