// What the phone still has to send (lib/outbox.js keeps it in IndexedDB): the senders of the responder's
// offline reports, the header badge and the "waiting to send" screen.
import { post } from "../lib/api.js";
import { time } from "../lib/format.js";
import { html } from "../lib/h.js";
import { t } from "../lib/i18n.js";
import { delivered, discard, flush, outbox, registerSender, retryItem } from "../lib/outbox.js";
import { useStore } from "../lib/store.js";
import { refreshTasks } from "./tasks.js";

// The item id is the client id: a resend after a lost answer gets the first result back, not a copy.
registerSender("task_progress", async (payload, clientId) => {
  const body = { text: payload.text, attachments: payload.attachments || [], client_id: clientId };
  if (payload.percent !== undefined && payload.percent !== null) body.percent = payload.percent;
  const data = await post(`/api/tasks/${encodeURIComponent(payload.task_id)}/progress`, body);
  refreshTasks();
  return data;
});

registerSender("incident", async (payload, clientId) => post("/api/incidents", { ...payload, client_id: clientId }));

/** Header badge: how many items wait, a link to the list. */
export function PendingBadge() {
  const n = useStore(outbox, (items) => items.length);
  if (!n) return null;
  return html`<a class="pending-badge" href="#/pending">${t("outbox.pending", { n })}</a>`;
}

function summary(item) {
  const p = item.payload || {};
  return p.text || p.title || "";
}

export function PendingScreen() {
  const items = useStore(outbox);
  const done = useStore(delivered);
  return html`<section class="screen" aria-labelledby="pending-title">
    <div class="screen-head">
      <h1 id="pending-title">${t("m.pending.title")}</h1>
      ${items.length > 0 && html`<span class="badge" role="status">${t("outbox.pending", { n: items.length })}</span>`}
    </div>
    ${items.length === 0
      ? html`<p class="muted">${t("m.pending.empty")}</p>`
      : html`<ul class="cards pending-list" aria-label=${t("outbox.title")}>
        ${items.map((item) => html`<li key=${item.id} class=${`card pending-item ${item.state}`} data-client-id=${item.id}>
          <div class="card-line"><strong>${t(`outbox.kind.${item.kind}`)}</strong>
            <time class="muted">${t("m.pending.created", { time: time(item.created_at) })}</time></div>
          <p class="summary">${summary(item)}</p>
          <p class=${item.state === "failed" ? "error" : "muted"}>${item.state === "failed"
            ? t("m.pending.state.failed", { error: item.error || "" })
            : t("m.pending.state.pending")}${item.attempts ? ` · ${t("m.pending.attempts", { n: item.attempts })}` : ""}</p>
          ${item.state === "failed" && html`<div class="row">
            <button type="button" onClick=${() => retryItem(item.id)}>${t("common.retry")}</button>
            <button type="button" class="danger" onClick=${() => discard(item.id)}>${t("m.pending.discard")}</button>
          </div>`}
        </li>`)}
      </ul>
      <button type="button" class="primary wide" onClick=${() => flush()}>${t("m.pending.flush")}</button>`}
    ${done.length > 0 && html`<h2>${t("m.pending.delivered")}</h2>
      <ul class="cards delivered-list" aria-label=${t("m.pending.delivered")}>
        ${[...done].reverse().map((d) => html`<li key=${d.id} class="card delivered">
          <div class="card-line"><strong>${t(`outbox.kind.${d.kind}`)}</strong>
            <span class="badge ok">${t("outbox.sent")}</span></div>
          <p class="summary">${summary(d)}</p>
        </li>`)}
      </ul>`}
  </section>`;
}
