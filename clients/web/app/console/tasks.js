// Tasks of a case: the board (grouped by state), assigning, and every action the server allows.
import { get, post } from "../lib/api.js";
import { Attachment } from "../lib/chatview.js";
import { departmentName, directory, userName } from "../lib/directory.js";
import { dateTime, fromInput, isoForInput, untilDeadline } from "../lib/format.js";
import { html, useState } from "../lib/h.js";
import { label, t } from "../lib/i18n.js";
import { notice } from "../lib/notify.js";
import { useStore } from "../lib/store.js";
import { Dialog, ErrorText, Field } from "../lib/ui.js";
import { FormDialog, Loading, text, useLoad } from "./common.js";

const STATES = ["assigned", "accepted", "in_progress", "sent_back", "submitted", "passed", "cancelled"];
const PRIORITIES = ["low", "normal", "high", "urgent"];
const OPEN = new Set(["assigned", "accepted", "in_progress", "sent_back"]);
// Actions a commander or inspector takes from the console (the others are the assignee's, on the phone).
export const CONSOLE_ACTIONS = ["urge", "supervise", "pass", "send_back", "spot_check", "reopen", "extend",
  "reassign", "cancel", "restart_chain"];
const HOUR = 3600 * 1000;

export function isOverdue(task, now = Date.now()) {
  const deadline = task.supervised && task.supervise_deadline ? task.supervise_deadline : task.deadline;
  return OPEN.has(task.state) && deadline < now;
}

function whoText(task) {
  const dep = departmentName(task.department_id);
  const person = task.assignee_id ? userName(task.assignee_id) : "";
  return [dep, person].filter(Boolean).join(" · ");
}

function DepartmentSelect({ name = "department_id", value }) {
  const dir = useStore(directory);
  return html`<select name=${name} value=${value}>
    <option value="">${t("task.anyone")}</option>
    ${[...dir.departments.values()].map((d) => html`<option value=${d.id}>${d.name}</option>`)}
  </select>`;
}

function PersonSelect({ name = "assignee_id", departmentId = "" }) {
  const dir = useStore(directory);
  const people = [...dir.users.values()].filter((u) => !u.disabled && (!departmentId || u.department_id === departmentId));
  return html`<select name=${name}>
    <option value="">${t("task.anyone")}</option>
    ${people.map((u) => html`<option value=${u.id}>${u.display_name}（${departmentName(u.department_id)}）</option>`)}
  </select>`;
}

/** 交办: a new task of the case at `path` (`/api/incidents/<id>/tasks`, `/api/projects/<id>/tasks`,
 * or `/api/problems/<id>/task`). */
export function AssignDialog({ path, title: dialogTitle, defaultTitle = "", onClose, onDone }) {
  const [dep, setDep] = useState("");
  return html`<${FormDialog} title=${dialogTitle || t("task.assign")} submitLabel=${t("task.assign")} onClose=${onClose}
    onSubmit=${async (form) => {
      const department = text(form, "department_id");
      const person = text(form, "assignee_id");
      const deadline = fromInput(text(form, "deadline"));
      if (!department && !person) throw new Error(t("task.need_assignee"));
      if (!deadline) throw new Error(t("task.need_deadline"));
      const body = { title: text(form, "title"), instructions: text(form, "instructions"),
        priority: text(form, "priority"), deadline, department_id: department || null, assignee_id: person || null };
      const made = await post(path, body);
      const task = made.task || made;
      notice(t("task.assigned_ok", { title: task.title || body.title }));
      if (onDone) onDone(task);
    }}>
    <${Field} label=${t("task.f_title")}><input autofocus name="title" required maxlength="200" defaultValue=${defaultTitle} /></${Field}>
    <${Field} label=${t("task.f_instructions")}><textarea name="instructions" maxlength="4000"></textarea></${Field}>
    <div class="two" onChange=${(e) => { if (e.target.name === "department_id") setDep(e.target.value); }}>
      <label class="field"><span>${t("task.f_department")}</span>
        <${DepartmentSelect} value=${dep} /></label>
      <label class="field"><span>${t("task.f_person")}</span><${PersonSelect} departmentId=${dep} /></label>
    </div>
    <div class="two">
      <${Field} label=${t("task.f_deadline")}>
        <input type="datetime-local" name="deadline" required defaultValue=${isoForInput(Date.now() + 4 * HOUR)} /></${Field}>
      <${Field} label=${t("task.f_priority")}>
        <select name="priority">${PRIORITIES.map((p) => html`<option value=${p} selected=${p === "normal"}>${label("priority", p)}</option>`)}</select>
      </${Field}>
    </div>
  </${FormDialog}>`;
}

/** The form of one task action: each asks for what the server needs. */
function ActionFields({ action, task }) {
  switch (action) {
    case "urge":
      return html`<${Field} label=${t("task.f_message")}><textarea name="message" maxlength="2000"></textarea></${Field}>`;
    case "supervise":
      return html`<${Field} label=${t("task.f_reason")}><textarea name="reason" required maxlength="2000"></textarea></${Field}>
        <${Field} label=${t("task.f_new_deadline")}>
          <input type="datetime-local" name="deadline" defaultValue=${isoForInput(Math.max(task.deadline, Date.now()) + 24 * HOUR)} /></${Field}>`;
    case "pass": case "spot_check":
      return html`<${Field} label=${t("task.f_comment")}><textarea name="comment" maxlength="2000"></textarea></${Field}>`;
    case "send_back": case "reopen":
      return html`<${Field} label=${t("task.f_comment")}><textarea name="comment" required maxlength="2000"></textarea></${Field}>`;
    case "extend":
      return html`<${Field} label=${t("task.f_new_deadline")}>
          <input type="datetime-local" name="deadline" required defaultValue=${isoForInput(task.deadline + 24 * HOUR)} /></${Field}>
        <${Field} label=${t("task.f_reason")}><textarea name="reason" required maxlength="2000"></textarea></${Field}>`;
    case "reassign":
      return html`<div class="two"><label class="field"><span>${t("task.f_department")}</span><${DepartmentSelect} /></label>
        <label class="field"><span>${t("task.f_person")}</span><${PersonSelect} /></label></div>`;
    case "cancel":
      return html`<${Field} label=${t("task.f_reason")}><textarea name="reason" maxlength="2000"></textarea></${Field}>`;
    case "restart_chain":
      return html`<${Field} label=${t("task.f_step")}><select name="step">
        <option value="urge">${label("task_action", "urge")}</option>
        <option value="supervise">${label("task_action", "supervise")}</option></select></${Field}>`;
    default:
      return null;
  }
}

// An urge adds a reminder whatever happened meanwhile (the automatic chain urges too), so it is not
// refused for a task changed since the board loaded; decisions (pass, send back, extend…) are.
const UNGUARDED = new Set(["urge"]);

function actionBody(action, form, task) {
  const body = UNGUARDED.has(action) ? {} : { version: task.version };
  for (const name of ["message", "reason", "comment", "step"]) {
    const v = form.get(name);
    if (v !== null && String(v).trim()) body[name] = String(v).trim();
  }
  const deadline = form.get("deadline");
  if (deadline) body.deadline = fromInput(String(deadline));
  if (action === "reassign") {
    const dep = text(form, "department_id");
    const person = text(form, "assignee_id");
    if (!dep && !person) throw new Error(t("task.need_assignee"));
    if (dep) body.department_id = dep;
    if (person) body.assignee_id = person;
  }
  return body;
}

export function TaskActionDialog({ task, action, onClose, onDone }) {
  const name = label("task_action", action);
  return html`<${FormDialog} title=${`${name}：${task.title}`} submitLabel=${name} onClose=${onClose}
    danger=${action === "cancel" || action === "send_back" || action === "reopen"}
    onSubmit=${async (form) => {
      await post(`/api/tasks/${encodeURIComponent(task.id)}/${action}`, actionBody(action, form, task));
      notice(t("task.done", { action: name, title: task.title }));
      if (onDone) onDone();
    }}>
    <${ActionFields} action=${action} task=${task} />
  </${FormDialog}>`;
}

function ActionButtons({ task, onAction, skip = [] }) {
  const actions = (task.actions || []).filter((a) => CONSOLE_ACTIONS.includes(a) && !skip.includes(a));
  if (!actions.length) return null;
  return html`<div class="row actions">${actions.map((a) => html`<button type="button" class="small"
    onClick=${() => onAction(task, a)}>${label("task_action", a)}</button>`)}</div>`;
}

function TaskMeta({ task }) {
  const overdue = isOverdue(task);
  const deadline = task.supervised && task.supervise_deadline ? task.supervise_deadline : task.deadline;
  return html`<p class="meta">
    <span>${whoText(task)}</span>
    <span class="badge">${label("priority", task.priority)}</span>
    ${OPEN.has(task.state) || task.state === "submitted"
      ? html`<time datetime=${new Date(deadline).toISOString()} title=${dateTime(deadline)}>${untilDeadline(deadline)}</time>`
      : html`<time datetime=${new Date(deadline).toISOString()}>${t("task.deadline_at", { time: dateTime(deadline) })}</time>`}
    ${overdue && html`<span class="badge overdue">${t("task.overdue")}</span>`}
    ${task.supervised && html`<span class="badge supervised">${t("task.supervised")}</span>`}
    <span class="urges">${t("task.urges", { n: task.urge_count })}</span>
  </p>`;
}

/** The detail of one task: its facts, result, attachments, acknowledgements, progress and actions. */
export function TaskDetail({ taskId, onClose, onChanged }) {
  const [acting, setActing] = useState(null);
  const { data, error, reload } = useLoad(() => get(`/api/tasks/${encodeURIComponent(taskId)}`), [taskId],
    { on: ["task.changed", "task.urged", "task.supervised"], when: (n, d) => d && d.id === taskId });
  const task = data && data.task;
  return html`<${Dialog} title=${task ? task.title : t("task.details")} onClose=${onClose} wide>
    ${!task ? html`<${Loading} error=${error} />` : html`<div class="task-detail stack">
      <p><span class="badge">${label("task_state", task.state)}</span></p>
      <${TaskMeta} task=${task} />
      <dl class="facts">
        <dt>${t("task.assigner")}</dt><dd>${userName(task.assigned_by)}</dd>
        <dt>${t("task.f_deadline")}</dt><dd>${dateTime(task.deadline)}</dd>
        <dt>${t("task.f_instructions")}</dt><dd class="pre">${task.instructions || t("common.empty")}</dd>
      </dl>
      <section><h3>${t("task.result")}</h3>
        ${task.submitted_at ? html`<p class="pre">${task.result_text}</p>
          <p class="muted">${userName(task.submitted_by)} · ${dateTime(task.submitted_at)}</p>
          <div>${(task.result_attachments || []).map((a) => html`<${Attachment} key=${a.file_id || a}
            fileId=${a.file_id || a} name=${a.name} />`)}</div>` : html`<p class="muted">${t("task.no_result")}</p>`}
        ${task.review_comment && html`<p><strong>${t("task.review")}：</strong>${task.review_comment}</p>`}
      </section>
      <section><h3>${t("task.acks")}</h3>
        ${data.acks && data.acks.length ? html`<ul>${data.acks.map((a) => html`<li key=${a.device_id + a.at}>
          ${userName(a.user_id)} · <time>${dateTime(a.at)}</time></li>`)}</ul>` : html`<p class="muted">${t("task.no_acks")}</p>`}
      </section>
      <section><h3>${t("task.progress")}</h3>
        ${data.progress && data.progress.length ? html`<ul class="progress-list">${data.progress.map((p) => html`<li key=${p.id}>
          <span class="pre">${p.text}</span> ${p.percent != null ? `(${p.percent}%)` : ""}
          <span class="muted"> · ${userName(p.reporter_id || p.user_id)} · ${dateTime(p.created_at)}</span>
          <div>${(p.attachments || []).map((a) => html`<${Attachment} key=${a.file_id || a} fileId=${a.file_id || a} name=${a.name} />`)}</div>
        </li>`)}</ul>` : html`<p class="muted">${t("common.empty")}</p>`}
      </section>
      <${ActionButtons} task=${task} onAction=${(tk, a) => setActing(a)} />
    </div>`}
    ${acting && task && html`<${TaskActionDialog} task=${task} action=${acting}
      onClose=${() => setActing(null)} onDone=${() => { reload(); if (onChanged) onChanged(); }} />`}
  </${Dialog}>`;
}

/** The tasks of a case, grouped by state, with their actions. */
export function TaskBoard({ tasks, onChanged, headingLevel = 2 }) {
  const [acting, setActing] = useState(null); // {task, action}
  const [detail, setDetail] = useState(null);
  const groups = STATES.map((s) => [s, tasks.filter((tk) => tk.state === s)]).filter(([, list]) => list.length);
  const H = `h${headingLevel + 1}`;
  return html`<div class="board">
    ${!tasks.length && html`<p class="muted">${t("task.none")}</p>`}
    ${groups.map(([state, list]) => html`<section class=${`column state-${state}`} key=${state}
        aria-label=${label("task_state", state)}>
      <${H}>${label("task_state", state)} <span class="count">${list.length}</span></${H}>
      <ul class="cards">
        ${list.map((task) => html`<li class="task-card" key=${task.id} data-task-id=${task.id}>
          <button type="button" class="link title" aria-label=${t("task.open_details", { title: task.title })}
            onClick=${() => setDetail(task.id)}>${task.title}</button>
          <${TaskMeta} task=${task} />
          <${ActionButtons} task=${task} skip=${["restart_chain"]} onAction=${(tk, a) => setActing({ task: tk, action: a })} />
        </li>`)}
      </ul>
    </section>`)}
    ${acting && html`<${TaskActionDialog} task=${acting.task} action=${acting.action}
      onClose=${() => setActing(null)} onDone=${onChanged} />`}
    ${detail && html`<${TaskDetail} taskId=${detail} onClose=${() => setDetail(null)} onChanged=${onChanged} />`}
  </div>`;
}

export { ErrorText, OPEN };
