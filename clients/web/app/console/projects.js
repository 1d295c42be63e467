// Major projects: the list by phase, and a project's detail (phases, progress, problems, room, tasks).
import { get, post } from "../lib/api.js";
import { Attachment, ChatRoom } from "../lib/chatview.js";
import { departmentName, userName } from "../lib/directory.js";
import { clientId, dateTime } from "../lib/format.js";
import { html, useState } from "../lib/h.js";
import { label, t } from "../lib/i18n.js";
import { notice } from "../lib/notify.js";
import { Field } from "../lib/ui.js";
import { uploadFile } from "../lib/upload.js";
import { FormDialog, Loading, text, useLoad } from "./common.js";
import { Timeline } from "./incidents.js";
import { AssignDialog, TaskBoard } from "./tasks.js";

export const PHASES = ["planning", "start", "construction", "completion", "operation"];
const ADVANCE = { start: "start", build: "construction", complete: "completion", operate: "operation" };
const LIVE = ["task.assigned", "task.changed", "task.urged", "task.supervised", "dashboard"];

function date(ms) {
  return ms ? dateTime(ms) : "—";
}

export function ProjectList() {
  const { data, error } = useLoad(() => get("/api/projects"), [], { on: ["dashboard"] });
  return html`<section class="stack">
    <h1 id="screen-title">${t("proj.title")}</h1>
    ${!data ? html`<${Loading} error=${error} />` : !data.projects.length ? html`<p class="muted">${t("proj.none")}</p>`
      : PHASES.map((phase) => {
        const list = data.projects.filter((p) => p.phase === phase);
        if (!list.length) return null;
        return html`<section class="panel" key=${phase} aria-labelledby=${`phase-${phase}`}>
          <h2 id=${`phase-${phase}`}>${label("phase", phase)} <span class="count">${list.length}</span></h2>
          <table class="list">
            <thead><tr><th scope="col">${t("proj.code")}</th><th scope="col">${t("proj.name")}</th>
              <th scope="col">${t("proj.owner")}</th><th scope="col">${t("proj.investment")}</th>
              <th scope="col">${t("proj.progress")}</th></tr></thead>
            <tbody>${list.map((p) => html`<tr key=${p.id}>
              <td>${p.code}</td><td><a href=${`#/projects/${p.id}`}>${p.name}</a></td>
              <td>${departmentName(p.owner_department_id)}</td>
              <td>${t("proj.investment_v", { n: p.investment })}</td>
              <td><progress max="100" value=${p.progress || 0} aria-label=${`${p.name} ${t("proj.progress")}`}></progress> ${p.progress || 0}%</td>
            </tr>`)}</tbody>
          </table>
        </section>`;
      })}
  </section>`;
}

function ProgressDialog({ project, onClose, onDone }) {
  const [files, setFiles] = useState([]); // {name, file_id?, percent, error?}
  function choose(ev) {
    for (const file of [...ev.currentTarget.files]) {
      const key = `${file.name}-${Math.random()}`;
      setFiles((l) => [...l, { key, name: file.name, percent: 0 }]);
      const patch = (p) => setFiles((l) => l.map((f) => (f.key === key ? { ...f, ...p } : f)));
      uploadFile(file, { roomId: project.room_id, onProgress: (s, total) => patch({ percent: Math.round((100 * s) / total) }) })
        .then((done) => patch({ file_id: done.file_id, percent: 100 }), (err) => patch({ error: err.message }));
    }
    ev.currentTarget.value = "";
  }
  return html`<${FormDialog} title=${t("proj.report")} submitLabel=${t("proj.report")} onClose=${onClose}
    onSubmit=${async (form) => {
      await post(`/api/projects/${encodeURIComponent(project.id)}/progress`, {
        percent: Number(text(form, "percent")), text: text(form, "text"), client_id: clientId("prog"),
        attachments: files.filter((f) => f.file_id).map((f) => f.file_id),
      });
      notice(t("proj.report"));
      onDone();
    }}>
    <${Field} label=${t("proj.f_percent")}><input type="number" name="percent" min="0" max="100" required defaultValue=${project.progress || 0} /></${Field}>
    <${Field} label=${t("proj.f_text")}><textarea name="text" maxlength="4000"></textarea></${Field}>
    <${Field} label=${t("proj.f_photos")}><input type="file" accept="image/*" multiple onChange=${choose} /></${Field}>
    ${files.length > 0 && html`<ul>${files.map((f) => html`<li key=${f.key}>${f.name}:
      ${f.error ? t("upload.failed", { message: f.error }) : f.file_id ? t("upload.done") : t("upload.progress", { percent: f.percent })}</li>`)}</ul>`}
  </${FormDialog}>`;
}

function ProblemDialog({ project, onClose, onDone }) {
  return html`<${FormDialog} title=${t("proj.raise")} submitLabel=${t("proj.raise")} onClose=${onClose}
    onSubmit=${async (form) => {
      await post(`/api/projects/${encodeURIComponent(project.id)}/problems`,
        { title: text(form, "title"), description: text(form, "description") });
      onDone();
    }}>
    <${Field} label=${t("proj.f_ptitle")}><input autofocus name="title" required maxlength="200" /></${Field}>
    <${Field} label=${t("proj.f_pdesc")}><textarea name="description" maxlength="4000"></textarea></${Field}>
  </${FormDialog}>`;
}

function AdvanceDialog({ project, action, onClose, onDone }) {
  const name = t("proj.advance", { phase: label("phase", ADVANCE[action]) });
  return html`<${FormDialog} title=${name} submitLabel=${name} onClose=${onClose}
    onSubmit=${async () => {
      await post(`/api/projects/${encodeURIComponent(project.id)}/${action}`, {});
      notice(name);
      onDone();
    }}><p>${project.name}</p></${FormDialog}>`;
}

export function ProjectDetail({ id }) {
  const [dialog, setDialog] = useState(null); // {kind, ...}
  const base = `/api/projects/${encodeURIComponent(id)}`;
  const load = useLoad(() => get(base), [id], { on: LIVE });
  const timeline = useLoad(() => get(`${base}/timeline`), [id], { on: [...LIVE, "room.event"] });
  function refresh() { load.reload(); timeline.reload(); }
  const close = () => setDialog(null);
  if (!load.data) return html`<section><h1 id="screen-title">${t("proj.title")}</h1><${Loading} error=${load.error} /></section>`;
  const { project, progress, problems, tasks } = load.data;
  const actions = project.actions || [];
  return html`<div class="project stack">
    <p><a href="#/projects">← ${t("proj.back")}</a></p>
    <div class="row spread">
      <h1 id="screen-title">${project.name} <small class="muted">${project.code}</small></h1>
      <span class="state big">${label("phase", project.phase)}</span>
    </div>
    <div class="detail-grid">
      <div class="stack">
        <section class="panel" aria-labelledby="pfacts-h">
          <h2 id="pfacts-h">${t("proj.facts")}</h2>
          <dl class="facts">
            <dt>${t("proj.owner")}</dt><dd>${departmentName(project.owner_department_id)}</dd>
            <dt>${t("proj.responsible")}</dt><dd>${(project.responsible_department_ids || []).map(departmentName).join("、") || "—"}</dd>
            <dt>${t("proj.investment")}</dt><dd>${t("proj.investment_v", { n: project.investment })}</dd>
            <dt>${t("inc.location")}</dt><dd>${project.address || "—"}</dd>
            <dt>${t("proj.progress")}</dt><dd><progress max="100" value=${project.progress || 0} aria-label=${t("proj.progress")}></progress> ${project.progress || 0}%</dd>
            <dt>${t("inc.f_description")}</dt><dd class="pre">${project.description || "—"}</dd>
          </dl>
        </section>
        <section class="panel" aria-labelledby="phases-h">
          <h2 id="phases-h">${t("proj.phases")}</h2>
          <table class="list">
            <thead><tr><th scope="col">${t("proj.phase")}</th><th scope="col">${t("proj.planned")}</th><th scope="col">${t("proj.actual")}</th></tr></thead>
            <tbody>${PHASES.filter((p) => p !== "planning").map((p) => html`<tr key=${p} class=${p === project.phase ? "current" : ""}>
              <th scope="row">${label("phase", p)}</th>
              <td>${date(project.planned && project.planned[p])}</td><td>${date(project.actual && project.actual[p])}</td></tr>`)}</tbody>
          </table>
          <div class="row">${Object.keys(ADVANCE).filter((a) => actions.includes(a)).map((a) => html`<button type="button" class="primary"
            onClick=${() => setDialog({ kind: "advance", action: a })}>${t("proj.advance", { phase: label("phase", ADVANCE[a]) })}</button>`)}</div>
        </section>
        <section class="panel" aria-labelledby="reports-h">
          <div class="row spread"><h2 id="reports-h">${t("proj.reports")}</h2>
            ${actions.includes("report_progress") && html`<button type="button" onClick=${() => setDialog({ kind: "progress" })}>${t("proj.report")}</button>`}</div>
          ${progress.length ? html`<ul class="reports">${progress.map((r) => html`<li key=${r.id}>
            <strong>${r.percent}%</strong> <span class="pre">${r.text}</span>
            <span class="muted"> · ${userName(r.reporter_id)} · ${dateTime(r.created_at)}</span>
            <div>${(r.attachments || []).map((a) => html`<${Attachment} key=${a.file_id || a} fileId=${a.file_id || a} name=${a.name} />`)}</div>
          </li>`)}</ul>` : html`<p class="muted">${t("proj.no_reports")}</p>`}
        </section>
        <section class="panel" aria-labelledby="problems-h">
          <div class="row spread"><h2 id="problems-h">${t("proj.problems")}</h2>
            ${actions.includes("raise_problem") && html`<button type="button" onClick=${() => setDialog({ kind: "problem" })}>${t("proj.raise")}</button>`}</div>
          ${problems.length ? html`<ul class="problems">${problems.map((p) => html`<li key=${p.id}>
            <strong>${p.title}</strong> <span class="badge">${label("problem_state", p.state)}</span>
            <p class="pre">${p.description}</p>
            ${p.state === "open" && html`<div class="row">
              <button type="button" class="small" onClick=${() => setDialog({ kind: "task", problem: p })}>${t("proj.to_task")}</button>
              <button type="button" class="small" onClick=${() => post(`/api/problems/${encodeURIComponent(p.id)}/resolve`, {}).then(refresh,
                (err) => notice(err.message, { kind: "warn" }))}>${t("proj.resolve")}</button></div>`}
          </li>`)}</ul>` : html`<p class="muted">${t("proj.no_problems")}</p>`}
        </section>
        <section class="panel" aria-labelledby="ptasks-h">
          <div class="row spread"><h2 id="ptasks-h">${t("proj.tasks")}</h2>
            <button type="button" onClick=${() => setDialog({ kind: "assign" })}>${t("task.assign")}</button></div>
          <${TaskBoard} tasks=${tasks} onChanged=${refresh} />
        </section>
        <section class="panel" aria-labelledby="ptl-h">
          <h2 id="ptl-h">${t("inc.timeline")}</h2>
          ${timeline.data ? html`<${Timeline} entries=${timeline.data.entries} />` : html`<${Loading} error=${timeline.error} />`}
        </section>
      </div>
      <div class="stack side">
        <section class="panel chat-panel" aria-labelledby="pchat-h">
          <h2 id="pchat-h">${t("proj.chat")}</h2>
          ${project.room_id ? html`<${ChatRoom} roomId=${project.room_id} />` : null}
          ${project.room_id && html`<p><a class="button" href=${`/call?room=${encodeURIComponent(project.room_id)}`} target="_blank" rel="noopener">${t("inc.call")}</a></p>`}
        </section>
      </div>
    </div>
    ${dialog && dialog.kind === "advance" && html`<${AdvanceDialog} project=${project} action=${dialog.action} onClose=${close} onDone=${refresh} />`}
    ${dialog && dialog.kind === "progress" && html`<${ProgressDialog} project=${project} onClose=${close} onDone=${refresh} />`}
    ${dialog && dialog.kind === "problem" && html`<${ProblemDialog} project=${project} onClose=${close} onDone=${refresh} />`}
    ${dialog && dialog.kind === "assign" && html`<${AssignDialog} path=${`${base}/tasks`} onClose=${close} onDone=${refresh} />`}
    ${dialog && dialog.kind === "task" && html`<${AssignDialog} path=${`/api/problems/${encodeURIComponent(dialog.problem.id)}/task`}
      title=${`${t("proj.to_task")}：${dialog.problem.title}`} defaultTitle=${dialog.problem.title} onClose=${close} onDone=${refresh} />`}
  </div>`;
}
