// The overview (驾驶舱): dashboard figures, overdue and supervised tasks, department leads' presence.
import { get } from "../lib/api.js";
import { departmentName, directory } from "../lib/directory.js";
import { time, untilDeadline } from "../lib/format.js";
import { html, useEffect, useState } from "../lib/h.js";
import { label, t } from "../lib/i18n.js";
import { events } from "../lib/socket.js";
import { useStore } from "../lib/store.js";
import { Loading, presence, usePresence, useLoad } from "./common.js";
import { isOverdue } from "./tasks.js";

const TASK_EVENTS = ["task.assigned", "task.changed", "task.urged", "task.supervised", "dashboard"];

function Figure({ value, name, tone = "" }) {
  return html`<div class=${`figure ${tone}`}><span class="value">${value}</span><span class="name">${name}</span></div>`;
}

function Figures({ figures }) {
  const { incidents, tasks, on_time: onTime, projects } = figures;
  const pct = (r) => (r == null ? "—" : `${Math.round(r * 100)}%`);
  return html`<div class="figures-grid">
    <section class="panel" aria-labelledby="ov-inc">
      <h2 id="ov-inc">${t("ov.incidents")}</h2>
      <p class="big-number">${incidents.open}</p>
      <h3>${t("ov.by_level")}</h3>
      <ul class="inline">${[1, 2, 3, 4].map((n) => html`<li key=${n}><span class=${`badge level-${n}`}>${label("level", n)}</span>
        ${incidents.by_level[String(n)] || 0}</li>`)}</ul>
      <h3>${t("ov.by_state")}</h3>
      <ul class="inline">${Object.entries(incidents.by_state).map(([s, n]) => html`<li key=${s}>${label("incident_state", s)} ${n}</li>`)}</ul>
    </section>
    <section class="panel" aria-labelledby="ov-tasks">
      <h2 id="ov-tasks">${t("ov.tasks")}</h2>
      <div class="figures">
        <${Figure} value=${tasks.open} name=${t("ov.tasks_open")} />
        <${Figure} value=${tasks.overdue} name=${t("ov.tasks_overdue")} tone=${tasks.overdue ? "bad" : ""} />
        <${Figure} value=${tasks.supervised_open} name=${t("ov.tasks_supervised")} tone=${tasks.supervised_open ? "bad" : ""} />
        <${Figure} value=${tasks.awaiting_inspection} name=${t("ov.tasks_awaiting")} />
      </div>
      <ul class="inline">${Object.entries(tasks.by_state).map(([s, n]) => html`<li key=${s}>${label("task_state", s)} ${n}</li>`)}</ul>
    </section>
    <section class="panel" aria-labelledby="ov-ontime">
      <h2 id="ov-ontime">${t("ov.on_time")}</h2>
      <p>${t("ov.rate_total", { rate: pct(onTime.rate) })}</p>
      ${onTime.departments.length ? html`<table class="list">
        <thead><tr><th scope="col">${t("ov.department")}</th><th scope="col">${t("ov.passed")}</th>
          <th scope="col">${t("ov.in_time")}</th><th scope="col">${t("ov.rate")}</th></tr></thead>
        <tbody>${onTime.departments.map((d) => html`<tr key=${d.department_id}><td>${d.department_name}</td>
          <td>${d.passed}</td><td>${d.on_time}</td><td>${pct(d.rate)}</td></tr>`)}</tbody></table>`
        : html`<p class="muted">${t("common.empty")}</p>`}
    </section>
    <section class="panel" aria-labelledby="ov-proj">
      <h2 id="ov-proj">${t("ov.projects")}</h2>
      <ul class="inline">${Object.entries(projects.by_phase).map(([p, n]) => html`<li key=${p}>${label("phase", p)} ${n}</li>`)}</ul>
      <p>${t("ov.open_problems", { n: projects.open_problems })}</p>
      <ul>${(projects.items || []).map((p) => html`<li key=${p.project_id}>
        <a href=${`#/projects/${p.project_id}`}>${p.name}</a> · ${label("phase", p.phase)} ·
        ${t("ov.progress", { n: p.progress })}${p.open_problems ? ` · ${t("ov.open_problems", { n: p.open_problems })}` : ""}</li>`)}</ul>
    </section>
  </div>`;
}

function Attention() {
  const { data, error } = useLoad(() => get("/api/tasks"), [], { on: TASK_EVENTS });
  if (!data) return html`<${Loading} error=${error} />`;
  const list = data.tasks.filter((tk) => (tk.supervised && !["passed", "cancelled"].includes(tk.state)) || isOverdue(tk));
  if (!list.length) return html`<p class="muted">${t("ov.no_attention")}</p>`;
  return html`<ul class="attention">${list.map((tk) => html`<li key=${tk.id}>
    <a href=${`#/${tk.case_type === "project" ? "projects" : "incidents"}/${tk.case_id}`}>${tk.title}</a>
    ${tk.supervised && html` <span class="badge supervised">${t("task.supervised")}</span>`}
    ${isOverdue(tk) && html` <span class="badge overdue">${t("task.overdue")}</span>`}
    <span class="muted"> · ${departmentName(tk.department_id)} · ${label("task_state", tk.state)} ·
      ${untilDeadline(tk.supervised && tk.supervise_deadline ? tk.supervise_deadline : tk.deadline)}</span>
  </li>`)}</ul>`;
}

function Leads() {
  const { data, error } = useLoad(() => get("/api/users?role=dept_lead&limit=500"), []);
  const leads = data ? data.users : [];
  usePresence(leads.map((u) => u.id));
  const states = useStore(presence);
  useStore(directory);
  if (!data) return html`<${Loading} error=${error} />`;
  if (!leads.length) return html`<p class="muted">${t("ov.no_leads")}</p>`;
  const byDep = new Map();
  for (const u of leads) {
    const key = u.department_id || "";
    if (!byDep.has(key)) byDep.set(key, []);
    byDep.get(key).push(u);
  }
  return html`<dl class="leads">${[...byDep.entries()].map(([dep, users]) => html`
    <dt key=${`d${dep}`}>${dep ? departmentName(dep) : t("ppl.no_department")}</dt>
    ${users.map((u) => {
      const state = (states.get(u.id) || {}).state || "offline";
      return html`<dd key=${u.id}><span class=${`presence presence-${state}`}>${label("presence", state)}</span> ${u.display_name}</dd>`;
    })}`)}</dl>`;
}

export function Overview() {
  const { data, error } = useLoad(() => get("/api/dashboard"), []);
  const [live, setLive] = useState(null);
  useEffect(() => events.on("dashboard", (d) => setLive(d.figures)), []);
  const figures = live && data && live.generated_at >= data.figures.generated_at ? live : data && data.figures;
  return html`<section class="stack">
    <div class="row spread"><h1 id="screen-title">${t("ov.title")}</h1>
      ${figures && html`<span class="muted">${t("ov.updated", { time: time(figures.generated_at) })}</span>`}</div>
    ${figures ? html`<${Figures} figures=${figures} />` : html`<${Loading} error=${error} />`}
    <div class="figures-grid two-col">
      <section class="panel" aria-labelledby="ov-att"><h2 id="ov-att">${t("ov.attention")}</h2><${Attention} /></section>
      <section class="panel" aria-labelledby="ov-leads"><h2 id="ov-leads">${t("ov.leads")}</h2><${Leads} /></section>
    </div>
  </section>`;
}
