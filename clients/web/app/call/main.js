// The consultation page (视频会商): /call?room=<room id> starts or joins the room's call, /call?invite=<token>
// joins by an invitation link. A pre-join screen (camera preview, microphone/camera switches), then a grid
// of participants with the call's controls; hosts also get mute/remove/invite/record/end.
import { html, render, useEffect, useMemo, useRef, useState } from "../lib/h.js";
import { t } from "../lib/i18n.js";
import { get } from "../lib/api.js";
import { Call, invitationLink, openDevices, readInvitation, startCall } from "../lib/call.js";
import { directory, loadDirectory, departmentName, userName } from "../lib/directory.js";
import { notice } from "../lib/notify.js";
import { startOutbox } from "../lib/outbox.js";
import { hasRole, logout } from "../lib/session.js";
import { conn } from "../lib/socket.js";
import { useStore } from "../lib/store.js";
import { ConnectionBadge, Dialog, LangSwitch, Notices, NotifyButton, SessionGate } from "../lib/ui.js";
import "./strings.js";

/** A refusal or failure in the user's words (known codes have their own text). */
function errorText(err) {
  if (!err) return "";
  const key = `call.err.${err.code}`;
  const text = t(key);
  return text === key ? t("common.error", { message: err.message || String(err) }) : text;
}

function homeLink() {
  return hasRole("commander", "admin", "dept_lead", "inspector")
    ? html`<a href="/console">${t("call.back_console")}</a>`
    : html`<a href="/m">${t("call.back_mobile")}</a>`;
}

/** What the URL asks for: {roomId} or {invitation, callId, roomId}, or {} (nothing). */
function targetFromUrl() {
  const params = new URLSearchParams(location.search);
  const invite = params.get("invite");
  if (invite) {
    const claims = readInvitation(invite);
    return { invitation: invite, callId: claims && claims.callId, roomId: claims && claims.roomId,
      unreadable: !claims };
  }
  const room = params.get("room");
  return room ? { roomId: room } : {};
}

function Video({ stream, label, mirror = false, muted = true }) {
  const ref = useRef(null);
  useEffect(() => {
    const video = ref.current;
    if (!video || video.srcObject === stream) return;
    video.srcObject = stream || null;
    if (stream) video.play().catch(() => { /* autoplay is retried when the element becomes visible */ });
  }, [stream]);
  return html`<video ref=${ref} autoplay playsinline muted=${muted} class=${mirror ? "mirror" : ""}
    aria-label=${label}></video>`;
}

function RemoteAudio({ stream }) {
  const ref = useRef(null);
  useEffect(() => {
    const audio = ref.current;
    if (!audio || audio.srcObject === stream) return;
    audio.srcObject = stream || null;
    if (stream) audio.play().catch(() => { /* needs a user gesture: the Join click usually was one */ });
  }, [stream]);
  return html`<audio ref=${ref} autoplay></audio>`;
}

// -- pre-join -------------------------------------------------------------------------------------------------

function PreJoin({ target, info, busy, error, onJoin }) {
  const [devices, setDevices] = useState(null);
  const [micOn, setMicOn] = useState(true);
  const [camOn, setCamOn] = useState(true);
  const handed = useRef(false);
  const online = useStore(conn) === "online";
  useEffect(() => {
    let gone = false;
    let opened = null;
    openDevices().then((d) => {
      opened = d;
      if (gone) { for (const track of [d.camera, d.microphone]) if (track) track.stop(); return; }
      setDevices(d);
    });
    return () => {
      gone = true;
      if (opened && !handed.current) for (const track of [opened.camera, opened.microphone]) if (track) track.stop();
    };
  }, []);
  const preview = useMemo(() => (devices && devices.camera ? new MediaStream([devices.camera]) : null), [devices]);
  useEffect(() => { if (devices && devices.camera) devices.camera.enabled = camOn; }, [devices, camOn]);
  useEffect(() => { if (devices && devices.microphone) devices.microphone.enabled = micOn; }, [devices, micOn]);

  function join() {
    handed.current = true;
    onJoin({ camera: devices && devices.camera, microphone: devices && devices.microphone,
      cameraOn: camOn, microphoneOn: micOn });
  }
  const starting = !target.callId && !(info.call);
  return html`<section class="prejoin panel" aria-labelledby="prejoin-title">
    <h2 id="prejoin-title">${t("call.prejoin")}</h2>
    <p class="muted">${info.call ? t("call.live", { n: info.call.participants.length })
      : target.invitation ? "" : t("call.not_started")}</p>
    <figure class="preview" aria-label=${t("call.preview")}>
      ${preview && camOn ? html`<${Video} stream=${preview} label=${t("call.preview")} mirror />`
        : html`<div class="placeholder">${devices && !devices.camera ? t("call.no_camera") : t("call.camera_off_mark")}</div>`}
    </figure>
    ${devices && devices.error && html`<p class="muted">${t("call.no_devices", { message: devices.error.message })}</p>`}
    <div class="row">
      <button type="button" aria-pressed=${!micOn} aria-label=${t("call.mic")} disabled=${!devices || !devices.microphone}
        onClick=${() => setMicOn(!micOn)}>${micOn ? t("call.mic_on") : t("call.mic_off")}</button>
      <button type="button" aria-pressed=${!camOn} aria-label=${t("call.camera")} disabled=${!devices || !devices.camera}
        onClick=${() => setCamOn(!camOn)}>${camOn ? t("call.camera_on") : t("call.camera_off")}</button>
    </div>
    ${error && html`<p class="error" role="alert">${errorText(error)}</p>`}
    <button type="button" class="primary join" disabled=${busy || !online || !devices} onClick=${join}>
      ${busy ? t("call.joining") : starting ? t("call.start_join") : t("call.join")}</button>
  </section>`;
}

// -- in the call ----------------------------------------------------------------------------------------------

function marks({ audio, video, speaking }) {
  return html`${audio && audio.host_muted ? html`<span class="mark warn">${t("call.host_muted_mark")}</span>`
    : audio && audio.muted ? html`<span class="mark">${t("call.muted_mark")}</span>` : null}
    ${video && video.muted ? html`<span class="mark">${t("call.camera_off_mark")}</span>` : null}
    ${speaking ? html`<span class="mark speaking">${t("call.speaking")}</span>` : null}`;
}

function Tile({ name, stream, mirror, audio, video, speaking, host, own, children }) {
  const showVideo = stream && !(video && video.muted);
  return html`<li class=${`tile${own ? " own" : ""}${speaking ? " is-speaking" : ""}`}>
    <figure aria-label=${name}>
      ${showVideo ? html`<${Video} stream=${stream} label=${t("call.video_of", { name })} mirror=${mirror} />`
        : html`<div class="placeholder" aria-hidden="true">${name.slice(0, 1)}</div>`}
      <figcaption><strong>${name}</strong>
        ${host ? html`<span class="mark host">${t("call.host_badge")}</span>` : null}
        ${marks({ audio, video, speaking })}</figcaption>
    </figure>
    ${children}
  </li>`;
}

function InviteDialog({ call, me, onClose }) {
  const dir = useStore(directory);
  const s = useStore(call.state);
  const [userId, setUserId] = useState("");
  const [link, setLink] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const inCall = new Set(s.participants.map((p) => p.user_id));
  const people = [...dir.users.values()]
    .filter((u) => u.id !== me.user.id && !inCall.has(u.id) && !u.disabled)
    .sort((a, b) => a.display_name.localeCompare(b.display_name, "zh-CN"));
  async function submit(ev) {
    ev.preventDefault();
    if (!userId) return;
    setBusy(true);
    setError(null);
    try {
      setLink(invitationLink(await call.invite(userId)));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  async function copy() {
    try {
      await navigator.clipboard.writeText(link);
      notice(t("call.copied"));
    } catch {
      const input = document.getElementById("invite-link");
      if (input) input.select();
      notice(t("call.copy_failed"), { kind: "warn" });
    }
  }
  return html`<${Dialog} title=${t("call.invite")} onClose=${onClose}>
    <form onSubmit=${submit} class="stack">
      <label class="field"><span>${t("call.invite_who")}</span>
        <select value=${userId} onChange=${(e) => { setUserId(e.currentTarget.value); setLink(""); }} required>
          <option value="">${t("call.invite_pick")}</option>
          ${people.map((u) => html`<option value=${u.id} key=${u.id}>
            ${u.display_name}${u.department_id ? ` · ${departmentName(u.department_id)}` : ""}</option>`)}
        </select></label>
      ${error && html`<p class="error" role="alert">${errorText(error)}</p>`}
      <button type="submit" class="primary" disabled=${busy || !userId}>${t("call.invite_make")}</button>
      ${link && html`<div class="stack">
        <label class="field"><span>${t("call.invite_link")}</span>
          <input id="invite-link" readonly value=${link} onFocus=${(e) => e.currentTarget.select()} /></label>
        <p class="muted">${t("call.invite_hint")}</p>
        <button type="button" onClick=${copy}>${t("call.copy")}</button>
      </div>`}
    </form>
  </${Dialog}>`;
}

function EndDialog({ onConfirm, onClose }) {
  return html`<${Dialog} title=${t("call.end")} onClose=${onClose}>
    <p>${t("call.end_confirm")}</p>
    <div class="row">
      <button type="button" class="danger" onClick=${onConfirm}>${t("call.end_do")}</button>
      <button type="button" onClick=${onClose}>${t("common.cancel")}</button>
    </div>
  </${Dialog}>`;
}

function InCall({ call, me, membership }) {
  const s = useStore(call.state);
  useStore(directory); // names appear once the directory is loaded
  const [dialog, setDialog] = useState(null);
  const [error, setError] = useState(null);
  const ownCamera = useMemo(() => (call.local.camera ? new MediaStream([call.local.camera]) : null), [call]);
  const ownScreen = useMemo(() => (call.local.screen ? new MediaStream([call.local.screen]) : null), [s.screen]);

  useEffect(() => {
    const offs = [
      call.events.on("joined", ({ participant }) => notice(t("call.joined_note", { name: userName(participant.user_id) }))),
      call.events.on("left", ({ user_id: id }) => notice(t("call.left_note", { name: userName(id) }))),
      call.events.on("host_muted", ({ muted }) => notice(t(muted ? "call.you_host_muted" : "call.you_host_unmuted"),
        { kind: muted ? "warn" : "info", system: true })),
      call.events.on("recording", ({ recording }) => notice(t(recording ? "call.recording_started"
        : "call.recording_stopped"))),
      call.events.on("removed", () => notice(t("call.removed_note"), { kind: "warn", system: true })),
      call.events.on("ended", () => notice(t("call.ended_note"), { system: true })),
    ];
    const onUnload = () => { call.leave(); };
    window.addEventListener("pagehide", onUnload);
    return () => { offs.forEach((off) => off()); window.removeEventListener("pagehide", onUnload); };
  }, [call]);

  const isHost = s.hosts.includes(me.user.id) || hasRole("commander", "admin")
    || (membership && ["owner", "admin"].includes(membership.role));

  async function act(fn) {
    setError(null);
    try { await fn(); } catch (err) { setError(err); }
  }
  const pubsOf = (participantId) => s.publications.filter((p) => p.participant_id === participantId);
  const find = (list, kind, source) => list.find((p) => p.kind === kind && (!source || p.source === source));
  const others = s.participants.filter((p) => p.id !== s.participantId);
  const mine = pubsOf(s.participantId);
  const myAudio = find(mine, "audio");
  const hostMuted = !!(myAudio && myAudio.host_muted);

  const tiles = [];
  tiles.push(html`<${Tile} key="me" own name=${t("call.me", { name: me.user.display_name })}
    stream=${s.camera ? ownCamera : null} mirror audio=${myAudio || (s.microphone ? null : { muted: true })}
    video=${s.camera ? null : { muted: true }} host=${s.hosts.includes(me.user.id)} />`);
  if (s.screen && ownScreen) {
    tiles.push(html`<${Tile} key="me-screen" own name=${t("call.screen_of", { name: me.user.display_name })}
      stream=${ownScreen} />`);
  }
  for (const p of others) {
    const name = userName(p.user_id);
    const pubs = pubsOf(p.id);
    const audio = find(pubs, "audio");
    const video = find(pubs, "video", "camera");
    const screen = find(pubs, "video", "screen");
    const remote = s.remote[p.id] || {};
    tiles.push(html`<${Tile} key=${p.id} name=${name} stream=${remote.camera} audio=${audio} video=${video}
        speaking=${!!s.speaking[p.id]} host=${s.hosts.includes(p.user_id)}>
      ${isHost && html`<div class="tile-actions">
        ${audio && html`<button type="button" class="small" aria-pressed=${!!audio.host_muted}
          aria-label=${t(audio.host_muted ? "call.unmute_person" : "call.mute_person", { name })}
          onClick=${() => act(() => call.hostMute(audio.id, !audio.host_muted))}>
          ${t(audio.host_muted ? "call.unmute_short" : "call.mute_short")}</button>`}
        <button type="button" class="small danger" aria-label=${t("call.remove_person", { name })}
          onClick=${() => act(() => call.remove(p.id))}>${t("call.remove_short")}</button>
      </div>`}
    </${Tile}>`);
    if (screen && !screen.muted && remote.screen) {
      tiles.push(html`<${Tile} key=${`${p.id}-screen`} name=${t("call.screen_of", { name })} stream=${remote.screen} />`);
    }
  }
  const canShare = !!(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  const audioOnly = s.mode === "audio_only";
  return html`<div class="incall">
    ${s.recording && html`<p class="rec" role="status"><span class="dot" aria-hidden="true"></span>${t("call.recording")}</p>`}
    ${hostMuted && html`<p class="banner warn" role="status">${t("call.host_muted_banner")}</p>`}
    ${s.status === "reconnecting" && html`<p class="banner" role="status">${t("call.reconnecting")}</p>`}
    ${["disconnected", "failed"].includes(s.connection) && s.status === "joined"
      && html`<p class="banner" role="status">${t("call.connection", { state: s.connection })}</p>`}
    ${error && html`<p class="error" role="alert">${errorText(error)}</p>`}
    <section aria-labelledby="grid-title">
      <h2 id="grid-title" class="sr-only">${t("call.participants")}</h2>
      <ul class=${`grid n${Math.min(tiles.length, 6)}`}>${tiles}</ul>
      ${others.map((p) => (s.remote[p.id] && s.remote[p.id].audio
        ? html`<${RemoteAudio} key=${`a-${p.id}`} stream=${s.remote[p.id].audio} />` : null))}
    </section>
    <section class="controls" aria-label=${t("call.controls")}>
      <button type="button" aria-label=${t("call.mic")} aria-pressed=${!s.microphone}
        disabled=${!call.local.microphone} onClick=${() => act(() => call.setMicrophone(!s.microphone))}>
        ${s.microphone ? t("call.mic_on") : t("call.mic_off")}</button>
      <button type="button" aria-label=${t("call.camera")} aria-pressed=${!s.camera}
        disabled=${!call.local.camera || audioOnly} onClick=${() => act(() => call.setCamera(!s.camera))}>
        ${s.camera ? t("call.camera_on") : t("call.camera_off")}</button>
      <button type="button" aria-pressed=${audioOnly} onClick=${() => act(() => call.setAudioOnly(!audioOnly))}>
        ${t("call.audio_only")}</button>
      ${canShare && html`<button type="button" aria-pressed=${s.screen}
        onClick=${() => act(() => (s.screen ? call.stopScreen() : call.startScreen()))}>
        ${s.screen ? t("call.screen_on") : t("call.screen")}</button>`}
      <button type="button" class="danger" onClick=${() => act(() => call.leave())}>${t("call.leave")}</button>
    </section>
    ${isHost && html`<section class="controls host" aria-label=${t("call.host_controls")}>
      <button type="button" onClick=${() => setDialog("invite")}>${t("call.invite")}</button>
      <button type="button" aria-label=${t("call.record")} aria-pressed=${s.recording}
        onClick=${() => act(() => call.record(!s.recording))}>
        ${s.recording ? t("call.record_stop") : t("call.record_start")}</button>
      <button type="button" class="danger" onClick=${() => setDialog("end")}>${t("call.end")}</button>
    </section>`}
    ${dialog === "invite" && html`<${InviteDialog} call=${call} me=${me} onClose=${() => setDialog(null)} />`}
    ${dialog === "end" && html`<${EndDialog} onClose=${() => setDialog(null)}
      onConfirm=${() => { setDialog(null); act(() => call.end()); }} />`}
  </div>`;
}

function Done({ status }) {
  const ref = useRef(null);
  useEffect(() => { if (ref.current) ref.current.focus(); }, []);
  const title = { ended: "call.ended_title", removed: "call.removed_title" }[status] || "call.left_title";
  return html`<section class="done panel" aria-labelledby="done-title">
    <h2 id="done-title" tabindex="-1" ref=${ref}>${t(title)}</h2>
    <div class="row">
      ${status !== "removed" && html`<button type="button" onClick=${() => location.reload()}>${t("call.rejoin")}</button>`}
      ${homeLink()}
    </div>
  </section>`;
}

// -- the page -------------------------------------------------------------------------------------------------

function CallPage({ me }) {
  const target = useMemo(targetFromUrl, []);
  const [info, setInfo] = useState({ loading: true, call: null, room: null, membership: null, refusal: null });
  const [call, setCall] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [attempt, setAttempt] = useState(0);
  const status = useStore(call ? call.state : conn, (v) => (call ? v.status : null));

  useEffect(() => {
    if (target.unreadable) {
      setInfo({ loading: false, refusal: { code: "call.bad_invitation" } });
      return;
    }
    if (!target.roomId) { setInfo({ loading: false }); return; }
    let gone = false;
    (async () => {
      const next = { loading: false, call: null, room: null, membership: null, refusal: null };
      if (target.invitation) {
        // Not a member yet, perhaps: the room is readable only after joining.
        try { Object.assign(next, await get(`/api/rooms/${encodeURIComponent(target.roomId)}`)); } catch { /* fine */ }
      } else {
        try {
          const [summary, live] = await Promise.all([get(`/api/rooms/${encodeURIComponent(target.roomId)}`),
            get(`/api/rooms/${encodeURIComponent(target.roomId)}/call`)]);
          Object.assign(next, summary, { call: live.call });
        } catch (err) {
          next.refusal = err;
        }
      }
      if (!gone) setInfo(next);
    })();
    return () => { gone = true; };
  }, [target]);

  async function join(devices) {
    setBusy(true);
    setError(null);
    let joining = null;
    try {
      let callId = target.callId || (info.call && info.call.id);
      if (!callId) callId = (await startCall(target.roomId)).id;
      joining = new Call({ callId, invitation: target.invitation || null });
      await joining.join(devices);
      setCall(joining);
    } catch (err) {
      if (["room.not_member", "call.bad_invitation", "call.invitation_expired"].includes(err.code)) {
        setInfo((i) => ({ ...i, refusal: err }));
      } else {
        setError(err);
        setAttempt((n) => n + 1); // the failed join stopped the devices: open them again
      }
    } finally {
      setBusy(false);
    }
  }

  const title = info.room ? t("call.room_title", { room: info.room.name })
    : target.invitation ? t("call.invited_title") : t("call.title");
  useEffect(() => { document.title = `Muster · ${title}`; }, [title]);
  let body;
  if (!target.roomId && !target.unreadable) {
    body = html`<p>${t("call.no_target")}</p><p>${homeLink()}</p>`;
  } else if (info.loading) {
    body = html`<p class="loading" role="status">${t("common.loading")}</p>`;
  } else if (info.refusal) {
    body = html`<section class="panel refusal" aria-labelledby="refused-title">
      <h2 id="refused-title">${t("call.refused")}</h2>
      <p class="error" role="alert">${errorText(info.refusal)}</p>
      <p>${homeLink()}</p></section>`;
  } else if (!call || status === "idle") {
    body = html`<${PreJoin} key=${attempt} target=${target} info=${info} busy=${busy} error=${error} onJoin=${join} />`;
  } else if (["left", "ended", "removed"].includes(status)) {
    body = html`<${Done} status=${status} />`;
  } else {
    body = html`<${InCall} call=${call} me=${me} membership=${info.membership} />`;
  }
  return html`<h1 class="call-title">${title}</h1>${body}`;
}

function Shell({ me }) {
  return html`<div class="shell call-shell">
    <header class="top">
      <strong>${t("app.call")}</strong>
      <span>${me.user.display_name}</span>
      <${ConnectionBadge} /><${NotifyButton} /><${LangSwitch} />
      <button type="button" onClick=${logout}>${t("logout")}</button>
    </header>
    <main id="main"><${CallPage} me=${me} /></main>
    <${Notices} />
  </div>`;
}

function onSignedIn() {
  loadDirectory().catch((err) => console.warn("directory", err));
  startOutbox();
}

// A phone joins as a mobile device (its camera is the field camera); a desktop as a console.
const DEVICE_KIND = window.matchMedia && window.matchMedia("(pointer: coarse)").matches ? "mobile" : "console";

render(html`<${SessionGate} kind=${DEVICE_KIND} title=${t("app.call")} onSignedIn=${onSignedIn}>
  ${(me) => html`<${Shell} me=${me} />`}
</${SessionGate}>`, document.getElementById("root"));
