// A room's chat, shared by the console and the responder view. Messages are sent through the
// outbox (so they survive a dropped network) and shown as "pending" until the server stored them.
// Every text is rendered as text: html`` never parses interpolated strings as markup.
import { get, post } from "./api.js";
import { addEvent, loadOlder, rooms, setOpen, setTyping, typing } from "./chat.js";
import { userName } from "./directory.js";
import { time } from "./format.js";
import { html, useEffect, useRef, useState } from "./h.js";
import { t } from "./i18n.js";
import { enqueue, outbox, registerSender, retryItem, discard } from "./outbox.js";
import { me } from "./session.js";
import { request } from "./socket.js";
import { useStore } from "./store.js";
import { uploadFile } from "./upload.js";

registerSender("message", async (payload, clientId) => {
  const body = { client_id: clientId, text: payload.text, attachments: payload.attachments || [] };
  if (payload.ack) body.ack = payload.ack;
  const data = await post(`/api/rooms/${encodeURIComponent(payload.room_id)}/messages`, body);
  addEvent(data.event, { mine: true });
  return data;
});

const fileCache = new Map();

/** An attached file: a picture shows its preview (signed link), anything else a download link. */
export function Attachment({ fileId, name }) {
  const [file, setFile] = useState(fileCache.get(fileId) || null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    if (file) return;
    get(`/api/files/${encodeURIComponent(fileId)}`).then((f) => { fileCache.set(fileId, f); setFile(f); },
      () => setFailed(true));
  }, [fileId]);
  if (failed) return html`<span class="attachment">${name || fileId}</span>`;
  if (!file) return html`<span class="attachment">${name || "…"}</span>`;
  if (file.thumbnail_url) {
    return html`<a class="attachment image" href=${file.download_url} target="_blank" rel="noopener">
      <img src=${file.thumbnail_url} alt=${file.name} loading="lazy" /></a>`;
  }
  return html`<a class="attachment" href=${file.download_url} download=${file.name}>${file.name}</a>`;
}

function EventLine({ event, self }) {
  if (event.kind === "edit" || event.kind === "recall" || event.kind === "pin" || event.kind === "unpin") return null;
  const mine = event.sender_id && event.sender_id === self;
  if (event.kind !== "message") {
    return html`<li class="event system" data-seq=${event.seq}>
      <span class="text">${(event.body && event.body.text) || event.kind}</span>
      <time>${time(event.created_at)}</time></li>`;
  }
  const body = event.body || {};
  const ackWanted = body.ack && !mine && (body.ack.all || (body.ack.user_ids || []).includes(self));
  return html`<li class=${`event message${mine ? " mine" : ""}`} data-seq=${event.seq}>
    <div class="meta"><strong>${userName(event.sender_id)}</strong> <time>${time(event.created_at)}</time>
      ${event.edited_at && html` <em>${t("chat.edited")}</em>`}</div>
    ${event.recalled_at
      ? html`<p class="text recalled">${t("chat.recalled")}</p>`
      : html`<p class="text">${body.text}</p>`}
    ${(body.attachments || []).map((a) => html`<${Attachment} key=${a.file_id} fileId=${a.file_id} name=${a.name} />`)}
    ${ackWanted && html`<button type="button" class="small"
      onClick=${() => request("message.ack", { room_id: event.room_id, message_id: event.id })}>${t("chat.ack")}</button>`}
  </li>`;
}

/** The chat of one room: history, pending messages, composer with attachments. */
export function ChatRoom({ roomId, compact = false }) {
  const entry = useStore(rooms, (m) => m.get(roomId));
  const pending = useStore(outbox, (items) => items.filter((i) => i.kind === "message" && i.payload.room_id === roomId));
  const typers = useStore(typing, (m) => [...(m.get(roomId) || new Map()).entries()]
    .filter(([, until]) => until > Date.now()).map(([id]) => id));
  const [text, setText] = useState("");
  const [files, setFiles] = useState([]); // {name, percent, file_id?, error?}
  const listRef = useRef(null);
  const typingRef = useRef(0);
  const self = me() && me().id;

  useEffect(() => { setOpen(roomId, true); return () => setOpen(roomId, false); }, [roomId]);
  useEffect(() => {
    const el = listRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [entry && entry.events.length, pending.length]);

  async function attach(ev) {
    const chosen = [...ev.currentTarget.files];
    ev.currentTarget.value = "";
    for (const file of chosen) {
      const slot = { key: `${file.name}-${Date.now()}-${Math.random()}`, name: file.name, percent: 0 };
      setFiles((list) => [...list, slot]);
      const patchSlot = (p) => setFiles((list) => list.map((f) => (f.key === slot.key ? { ...f, ...p } : f)));
      uploadFile(file, { onProgress: (s, total) => patchSlot({ percent: Math.round((100 * s) / total) }) })
        .then((done) => patchSlot({ file_id: done.file_id, percent: 100 }),
          (err) => patchSlot({ error: err.message || String(err) }));
    }
  }

  async function submit(ev) {
    ev.preventDefault();
    const ready = files.filter((f) => f.file_id);
    const body = text.trim();
    if (!body && !ready.length) return;
    if (files.some((f) => !f.file_id && !f.error)) return; // wait for uploads
    setText("");
    setFiles([]);
    setTyping(roomId, false);
    await enqueue("message", { room_id: roomId, text: body || ready.map((f) => f.name).join("、"),
      attachments: ready.map((f) => ({ file_id: f.file_id, name: f.name })) });
  }

  function onInput(ev) {
    setText(ev.currentTarget.value);
    const now = Date.now();
    if (now - typingRef.current > 3000) { typingRef.current = now; setTyping(roomId, true); }
  }

  if (!entry) return html`<p class="muted">${t("common.loading")}</p>`;
  const inputId = `chat-input-${roomId}`;
  return html`<section class=${`chat${compact ? " compact" : ""}`} aria-label=${`${t("chat.label")}: ${entry.room.name}`}>
    ${entry.hasOlder && html`<button type="button" class="link" onClick=${() => loadOlder(roomId)}>${t("chat.load_more")}</button>`}
    <ol class="timeline" ref=${listRef} tabindex="0" aria-label=${t("chat.label")}>
      ${entry.events.map((e) => html`<${EventLine} key=${e.seq} event=${e} self=${self} />`)}
      ${pending.map((p) => html`<li key=${p.id} class=${`event message mine pending ${p.state}`} data-client-id=${p.id}>
        <p class="text">${p.payload.text}</p>
        <small>${p.state === "failed" ? `${t("chat.failed")}: ${p.error}` : t("chat.pending")}</small>
        ${p.state === "failed" && html`<button type="button" class="small" onClick=${() => retryItem(p.id)}>${t("common.retry")}</button>
          <button type="button" class="small" onClick=${() => discard(p.id)}>${t("common.cancel")}</button>`}
      </li>`)}
    </ol>
    ${typers.length > 0 && html`<p class="typing muted">${t("chat.typing", { name: typers.map(userName).join("、") })}</p>`}
    ${entry.room.archived ? null : html`<form class="composer" onSubmit=${submit}>
      <label for=${inputId} class="sr-only">${t("chat.input_label")}</label>
      <input id=${inputId} value=${text} onInput=${onInput} placeholder=${t("chat.placeholder")} maxlength="4000" autocomplete="off" />
      <label class="button">${t("chat.attach")}<input type="file" class="sr-only" multiple onChange=${attach} /></label>
      <button type="submit" class="primary">${t("chat.send")}</button>
      ${files.length > 0 && html`<ul class="uploads">${files.map((f) => html`<li key=${f.key}>${f.name}:
        ${f.error ? t("upload.failed", { message: f.error }) : f.file_id ? t("upload.done") : t("upload.progress", { percent: f.percent })}</li>`)}</ul>`}
    </form>`}
  </section>`;
}
