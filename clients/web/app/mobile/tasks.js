// My tasks (mine and my department's) and one task: accept, start, report progress, submit the result.
import { get, post } from "../lib/api.js";
import { Attachment } from "../lib/chatview.js";
import { userName } from "../lib/directory.js";
import { dateTime, time, untilDeadline } from "../lib/format.js";
import { html, useEffect, useState } from "../lib/h.js";
import { label, t } from "../lib/i18n.js";
import { delivered, enqueue } from "../lib/outbox.js";
import { notice } from "../lib/notify.js";
import { conn } from "../lib/socket.js";
import { createStore, useStore } from "../lib/store.js";
import { Dialog, ErrorText, Field } from "../lib/ui.js";
import { PhotoPicker, photoIds, uploading } from "./photos.js";

/** {list: [task], loaded, error} — kept in memory, so a task opens while offline. */
export const tasks = createStore({ list: [], loaded: false, error: null });
const OPEN = ["assigned", "accepted", "in_progress", "sent_back"];
const MOBILE_ACTIONS = ["accept", "start", "progress", "submit"];

let loading = null;
/** Reload my tasks (after sign-in, a reconnect, an urge or any change). */
export function refreshTasks() {
  if (!loading) {
    loading = get("/api/tasks?mine=true")
      .then((data) => tasks.set({ list: data.tasks, loaded: true, error: null }))
      .catch((error) => tasks.set((s) => ({ ...s, loaded: true, error })))
      .finally(() => { loading = null; });
  }
  return loading;
}

function putTask(task) {
  tasks.set((s) => {
    const list = s.list.some((x) => x.id === task.id) ? s.list.map((x) => (x.id === task.id ? task : x))
      : [...s.list, task];
    return { ...s, list };
  });
}

function sortTasks(list) {
  return [...list].sort((a, b) => {
    const ao = OPEN.includes(a.state) ? 0 : 1;
    const bo = OPEN.includes(b.state) ? 0 : 1;
    return ao - bo || (b.supervised ? 1 : 0) - (a.supervised ? 1 : 0) || a.deadline - b.deadline;
  });
}

function Deadline({ task }) {
  const overdue = OPEN.includes(task.state) && task.deadline < Date.now();
  return html`<span class=${overdue ? "deadline overdue" : "deadline"}>
    <time datetime=${new Date(task.deadline).toISOString()} title=${dateTime(task.deadline)}>${
      OPEN.includes(task.state) ? untilDeadline(task.deadline) : dateTime(task.deadline)}</time></span>`;
}

function Flags({ task }) {
  return html`<span class="flags">
    <span class=${`badge state-${task.state}`}>${label("task_state", task.state)}</span>
    ${task.supervised && html`<span class="badge supervised">${t("m.task.supervised")}</span>`}
    ${task.urge_count > 0 && html`<span class="badge urged">${t("m.task.urges", { n: task.urge_count })}</span>`}
  </span>`;
}

export function TaskList() {
  const state = useStore(tasks);
  useEffect(() => { refreshTasks(); }, []);
  const sorted = sortTasks(state.list);
  const open = sorted.filter((x) => OPEN.includes(x.state));
  const done = sorted.filter((x) => !OPEN.includes(x.state));
  const item = (task) => html`<li key=${task.id} class="card task-card">
    <a class="card-link" href=${`#/task/${task.id}`}>
      <strong class="title">${task.title}</strong>
      <span class="card-line"><${Deadline} task=${task} /></span>
      <${Flags} task=${task} />
    </a>
  </li>`;
  return html`<section class="screen" aria-labelledby="tasks-title">
    <div class="screen-head"><h1 id="tasks-title">${t("m.tasks.title")}</h1>
      <button type="button" onClick=${() => refreshTasks()}>${t("common.refresh")}</button></div>
    ${state.error && html`<${ErrorText} error=${state.error} />`}
    ${!state.loaded ? html`<p class="muted">${t("common.loading")}</p>`
      : open.length === 0 && done.length === 0 ? html`<p class="muted">${t("m.tasks.empty")}</p>` : null}
    ${open.length > 0 && html`<ul class="cards" aria-labelledby="tasks-title">${open.map(item)}</ul>`}
    ${done.length > 0 && html`<h2 id="tasks-done">${t("m.tasks.done")}</h2>
      <ul class="cards" aria-labelledby="tasks-done">${done.map(item)}</ul>`}
  </section>`;
}

function ProgressForm({ task, onClose }) {
  const [text, setText] = useState("");
  const [percent, setPercent] = useState("");
  const [photos, setPhotos] = useState([]);
  const [error, setError] = useState("");
  async function submit(ev) {
    ev.preventDefault();
    if (uploading(photos)) { setError(t("m.photos.wait")); return; }
    const payload = { task_id: task.id, title: task.title, text: text.trim(), attachments: photoIds(photos) };
    if (percent !== "") payload.percent = Math.max(0, Math.min(100, Number(percent)));
    await enqueue("task_progress", payload);
    if (conn.get() !== "online") notice(t("m.progress.queued"));
    onClose();
  }
  return html`<${Dialog} title=${t("m.progress.title")} onClose=${onClose}>
    <form class="stack" onSubmit=${submit}>
      <${Field} label=${t("m.progress.text")}>
        <textarea required maxlength="10000" value=${text} onInput=${(e) => setText(e.currentTarget.value)}></textarea>
      </${Field}>
      <${Field} label=${`${t("m.progress.percent")} ${t("common.optional")}`}>
        <input type="number" inputmode="numeric" min="0" max="100" step="1" value=${percent}
          onInput=${(e) => setPercent(e.currentTarget.value)} />
      </${Field}>
      <${PhotoPicker} id="progress-photos" photos=${photos} setPhotos=${setPhotos} />
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" class="primary wide">${t("common.submit")}</button>
    </form>
  </${Dialog}>`;
}

function SubmitForm({ task, onClose, onDone }) {
  const [text, setText] = useState("");
  const [photos, setPhotos] = useState([]);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(ev) {
    ev.preventDefault();
    if (uploading(photos)) { setError(new Error(t("m.photos.wait"))); return; }
    setBusy(true);
    setError(null);
    try {
      const updated = await post(`/api/tasks/${encodeURIComponent(task.id)}/submit`,
        { result: text.trim(), attachments: photoIds(photos), version: task.version });
      onDone(updated);
      onClose();
    } catch (err) {
      setError(err.status === 0 ? new Error(t("m.submit.offline")) : err);
    } finally {
      setBusy(false);
    }
  }
  return html`<${Dialog} title=${t("m.submit.title")} onClose=${onClose}>
    <form class="stack" onSubmit=${submit}>
      <${Field} label=${t("m.submit.text")}>
        <textarea required maxlength="10000" value=${text} onInput=${(e) => setText(e.currentTarget.value)}></textarea>
      </${Field}>
      <${PhotoPicker} id="submit-photos" photos=${photos} setPhotos=${setPhotos} />
      <${ErrorText} error=${error} />
      <button type="submit" class="primary wide" disabled=${busy}>${t("task_action.submit")}</button>
    </form>
  </${Dialog}>`;
}

export function TaskDetail({ taskId }) {
  const cached = useStore(tasks, (s) => s.list.find((x) => x.id === taskId));
  const online = useStore(conn) === "online";
  const sent = useStore(delivered, (d) => d.filter((x) => x.kind === "task_progress").length);
  const [detail, setDetail] = useState(null); // {acks, progress}
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [form, setForm] = useState(null); // "progress" | "submit"

  async function load() {
    try {
      const data = await get(`/api/tasks/${encodeURIComponent(taskId)}`);
      putTask(data.task);
      setDetail({ acks: data.acks, progress: data.progress || [] });
      setError(null);
    } catch (err) {
      setError(err);
    }
  }
  useEffect(() => { load(); }, [taskId, online, sent]);

  async function act(action) {
    setBusy(true);
    try {
      const updated = await post(`/api/tasks/${encodeURIComponent(taskId)}/${action}`, { version: cached.version });
      putTask(updated);
      notice(t("m.task.done", { action: label("task_action", action) }));
      load();
    } catch (err) {
      setError(err);
      load();
    } finally {
      setBusy(false);
    }
  }

  if (!cached) {
    return html`<section class="screen"><a class="back" href="#/tasks">${t("m.task.back")}</a>
      ${error ? html`<p class="error" role="alert">${error.status === 404 ? t("m.task.not_found") : error.message}</p>`
        : html`<p class="muted">${t("common.loading")}</p>`}</section>`;
  }
  const task = cached;
  const actions = (task.actions || []).filter((a) => MOBILE_ACTIONS.includes(a));
  return html`<section class="screen task-detail" aria-labelledby="task-title">
    <a class="back" href="#/tasks">${t("m.task.back")}</a>
    <h1 id="task-title">${task.title}</h1>
    <${Flags} task=${task} />
    ${error && error.status === 0 && html`<p class="muted" role="status">${t("m.task.cached")}</p>`}
    ${error && error.status !== 0 && html`<${ErrorText} error=${error} />`}
    <dl class="facts">
      <dt>${t("m.task.deadline")}</dt><dd><${Deadline} task=${task} /> · ${dateTime(task.deadline)}</dd>
      <dt>${t("m.task.instructions")}</dt><dd class="prewrap">${task.instructions || t("m.task.no_instructions")}</dd>
      ${task.result_text && html`<dt>${t("m.task.result")}</dt><dd class="prewrap">${task.result_text}
        ${task.result_attachments.map((id) => html`<${Attachment} key=${id} fileId=${id} />`)}</dd>`}
      ${task.review_comment && html`<dt>${t("m.task.review")}</dt><dd class="prewrap">${task.review_comment}</dd>`}
    </dl>
    ${actions.length > 0 && html`<div class="actions">
      ${actions.map((a) => html`<button key=${a} type="button" class=${a === "accept" || a === "submit" ? "primary" : ""}
        disabled=${busy} onClick=${() => (a === "progress" || a === "submit" ? setForm(a) : act(a))}>
        ${label("task_action", a)}</button>`)}
    </div>`}
    ${detail && detail.progress.length > 0 && html`<h2>${t("m.task.progress_list")}</h2>
      <ol class="cards progress-list">${detail.progress.map((p) => html`<li key=${p.id} class="card">
        <div class="card-line"><strong>${userName(p.reporter_id)}</strong><time class="muted">${time(p.created_at)}</time>
          ${p.percent !== null && p.percent !== undefined && html`<span class="badge">${p.percent}%</span>`}</div>
        <p class="prewrap">${p.text}</p>
        ${p.attachments.map((id) => html`<${Attachment} key=${id} fileId=${id} />`)}
      </li>`)}</ol>`}
    ${form === "progress" && html`<${ProgressForm} task=${task} onClose=${() => { setForm(null); load(); }} />`}
    ${form === "submit" && html`<${SubmitForm} task=${task} onClose=${() => setForm(null)}
      onDone=${(updated) => { putTask(updated); notice(t("m.task.done", { action: label("task_action", "submit") })); load(); }} />`}
  </section>`;
}
