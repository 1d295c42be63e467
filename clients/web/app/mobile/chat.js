// My rooms (incident and project rooms first) and one room's chat, with the way into its consultation.
import { get } from "../lib/api.js";
import { rooms } from "../lib/chat.js";
import { ChatRoom } from "../lib/chatview.js";
import { time } from "../lib/format.js";
import { html, useEffect, useState } from "../lib/h.js";
import { t } from "../lib/i18n.js";
import { conn, events } from "../lib/socket.js";
import { useEvent, useStore } from "../lib/store.js";

const CASE_KINDS = ["incident", "project"];

function lastActivity(entry) {
  const last = entry.events.length ? entry.events[entry.events.length - 1].created_at : 0;
  return Math.max(last, entry.room.updated_at || 0);
}

/** The live call of a room (null when none), checked on open, on reconnect and on room events. */
function useLiveCall(roomId) {
  const [call, setCall] = useState(null);
  const online = useStore(conn) === "online";
  const check = () => {
    get(`/api/rooms/${encodeURIComponent(roomId)}/call`).then((data) => setCall(data.call), () => {});
  };
  useEffect(() => { if (online) check(); }, [roomId, online]);
  // The server tells only a call's participants when it starts or ends, so a system message in the room
  // (calls are recorded there) is the hint to look again.
  useEvent(events, "room.event", (e) => { if (e.room_id === roomId && e.kind !== "message") check(); }, [roomId]);
  useEvent(events, "call.ended", () => check(), [roomId]);
  return call;
}

function CallLink({ roomId, live }) {
  return html`<a class=${`button call-link${live ? " live" : ""}`} href=${`/call?room=${encodeURIComponent(roomId)}`}>
    ${live ? `${t("m.call.live")} · ${t("m.call.join")}` : t("m.call.join")}</a>`;
}

function LiveCallHint({ roomId }) {
  const call = useLiveCall(roomId);
  return call ? html`<${CallLink} roomId=${roomId} live=${true} />` : null;
}

export function RoomList() {
  const map = useStore(rooms);
  const list = [...map.values()].sort((a, b) => {
    const ac = CASE_KINDS.includes(a.room.kind) ? 0 : 1;
    const bc = CASE_KINDS.includes(b.room.kind) ? 0 : 1;
    return ac - bc || lastActivity(b) - lastActivity(a);
  });
  return html`<section class="screen" aria-labelledby="chat-title">
    <div class="screen-head"><h1 id="chat-title">${t("m.chat.title")}</h1></div>
    ${list.length === 0 && html`<p class="muted">${t("m.chat.empty")}</p>`}
    <ul class="cards" aria-labelledby="chat-title">
      ${list.map((entry) => {
        const last = entry.events.filter((e) => e.kind === "message" || e.kind === "system").pop();
        const isCase = CASE_KINDS.includes(entry.room.kind);
        return html`<li key=${entry.room.id} class=${`card room-card${isCase ? " case" : ""}`}>
          <a class="card-link" href=${`#/room/${entry.room.id}`}>
            <span class="card-line"><strong class="title">${entry.room.name}</strong>
              ${entry.unread > 0 && html`<span class="badge unread">${t("m.chat.unread", { n: entry.unread })}</span>`}</span>
            ${last && html`<span class="card-line muted"><span class="preview">${(last.body && last.body.text) || ""}</span>
              <time>${time(last.created_at)}</time></span>`}
          </a>
          ${isCase && html`<${LiveCallHint} roomId=${entry.room.id} />`}
        </li>`;
      })}
    </ul>
  </section>`;
}

export function RoomScreen({ roomId }) {
  const entry = useStore(rooms, (m) => m.get(roomId));
  const call = useLiveCall(roomId);
  return html`<section class="screen room-screen" aria-labelledby="room-title">
    <div class="room-head">
      <a class="back" href="#/chat">${t("m.chat.back")}</a>
      <h1 id="room-title">${entry ? entry.room.name : t("common.loading")}</h1>
      <${CallLink} roomId=${roomId} live=${!!call} />
    </div>
    <${ChatRoom} roomId=${roomId} compact=${true} />
  </section>`;
}
