// The browser side of Muster's calls (视频会商, field video): one Socket.IO connection (socket.js), one
// RTCPeerConnection to Muster's SFU, and the server as the offerer (docs/MEDIA.md). Every offer (the answer
// to call.publish / call.subscribe / call.mode / call.reconnect, or a pushed call.offer) is applied in one
// promise chain, so two negotiations never overlap. Any face can use it:
//
//   const call = new Call({ callId, invitation });
//   call.events.on("joined", ({ participant }) => …);        // also left, muted, host_muted, recording, removed, ended
//   await call.join({ camera, microphone });                  // tracks from getUserMedia (either may be null)
//   useStore(call.state)                                      // participants, publications, remote streams, …
//   await call.setMicrophone(false); await call.leave();
import { ApiError } from "./api.js";
import { events as socketEvents, request } from "./socket.js";
import { createEmitter, createStore } from "./store.js";

const ICE_TIMEOUT_MS = 15_000;
const SPEAKING_LEVEL = 0.04; // RTP audio level (0..1) above which a participant counts as speaking

/** The claims of an invitation token (not verified here: the server does that), or null if unreadable. */
export function readInvitation(token) {
  try {
    const part = String(token).split(".")[1];
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof claims.cid !== "string" || typeof claims.sub !== "string") return null;
    return { callId: claims.cid, roomId: claims.rid, userId: claims.sub, invitedBy: claims.by,
      expiresAt: Number(claims.exp) * 1000 };
  } catch {
    return null;
  }
}

/** The link a host hands to an invited person. */
export function invitationLink(token) {
  return `${location.origin}/call?invite=${encodeURIComponent(token)}`;
}

/** Start the room's call, or find the live one (a room has at most one). Resolves to the call. */
export async function startCall(roomId, kind = "consultation") {
  const { call } = await request("call.start", { room_id: roomId, kind });
  return call;
}

/** Camera and microphone, each optional; resolves to {camera, microphone, error}. */
export async function openDevices({ video = true, audio = true } = {}) {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) return { camera: null, microphone: null, error: new Error("no media devices") };
  const videoConstraints = { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" };
  try {
    const stream = await md.getUserMedia({ video: video && videoConstraints, audio });
    return { camera: stream.getVideoTracks()[0] || null, microphone: stream.getAudioTracks()[0] || null, error: null };
  } catch (error) {
    // Try each device alone: a phone without a camera, or a camera another app holds, still gets audio.
    const one = async (c) => { try { return (await md.getUserMedia(c)).getTracks()[0]; } catch { return null; } };
    const camera = video ? await one({ video: videoConstraints }) : null;
    const microphone = audio ? await one({ audio: true }) : null;
    return { camera, microphone, error: camera || microphone ? null : error };
  }
}

function iceGatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", check);
      reject(new ApiError(0, "call.ice_timeout", "ICE gathering did not complete"));
    }, ICE_TIMEOUT_MS);
    function check() {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

const INITIAL = {
  status: "idle", // idle | joining | joined | reconnecting | left | ended | removed
  callId: null, roomId: null, participantId: null, startedBy: null, hosts: [],
  participants: [], // {id, user_id, device_id, joined_at}, me included
  publications: [], // every publication, mine included: {id, participant_id, user_id, kind, source, muted, host_muted}
  remote: {}, // participant id -> {camera?: MediaStream, screen?: MediaStream, audio?: MediaStream}
  speaking: {}, // participant id -> true
  recording: false, mode: "normal",
  microphone: true, camera: true, screen: false, // my own devices are on (sending)
  connection: "new",
};

export class Call {
  constructor({ callId, invitation = null } = {}) {
    this.callId = callId;
    this.invitation = invitation;
    this.events = createEmitter();
    this.state = createStore({ ...INITIAL, callId });
    this.pc = null;
    this.iceServers = [];
    this.chain = Promise.resolve();
    this.mids = {};
    this.local = { camera: null, microphone: null, screen: null };
    this.own = new Map(); // source -> publication id
    this.subscribed = new Set();
    this.streams = new Map(); // `${participant}:${source}` -> {track, stream}
    this.offs = [];
    this.reconnecting = null;
    this.cameraBeforeAudioOnly = true;
    this.levelTimer = null;
  }

  get participantId() { return this.state.get().participantId; }

  patch(changes) { this.state.set((s) => ({ ...s, ...changes })); }

  active() { return ["joining", "joined", "reconnecting"].includes(this.state.get().status); }

  /** Join with the given tracks (either may be null: then nothing is published for it). */
  async join({ camera = null, microphone = null, cameraOn = true, microphoneOn = true } = {}) {
    this.local.camera = camera;
    this.local.microphone = microphone;
    if (camera) camera.enabled = cameraOn;
    if (microphone) microphone.enabled = microphoneOn;
    this.patch({ status: "joining", camera: !!camera && cameraOn, microphone: !!microphone && microphoneOn });
    this.listen();
    try {
      await this.enter();
    } catch (err) {
      this.teardown("idle");
      throw err;
    }
    if (camera && !cameraOn) await this.announceMute("camera", true);
    if (microphone && !microphoneOn) await this.announceMute("microphone", true);
    this.levelTimer = setInterval(() => { this.measureLevels().catch(() => {}); }, 700);
    if (navigator.connection && navigator.connection.addEventListener) {
      const onChange = () => { if (this.state.get().status === "joined") this.reconnect().catch(() => {}); };
      navigator.connection.addEventListener("change", onChange);
      this.offs.push(() => navigator.connection.removeEventListener("change", onChange));
    }
  }

  // call.join, a fresh connection, my publications, and subscriptions to everyone else's.
  async enter() {
    const body = { call_id: this.callId };
    if (this.invitation) body.invitation = this.invitation;
    const joined = await request("call.join", body);
    // The invitation made me a member of the room: a rejoin needs it no more.
    this.invitation = null;
    this.iceServers = joined.ice_servers || [];
    this.own.clear();
    this.subscribed.clear();
    this.streams.clear();
    this.chain = Promise.resolve();
    const call = joined.call;
    this.patch({
      callId: call.id, roomId: call.room_id, participantId: joined.participant_id, startedBy: call.started_by,
      hosts: call.hosts, participants: call.participants, publications: call.publications,
      recording: !!call.recording, remote: {}, speaking: {}, mode: "normal",
    });
    this.newConnection();
    const publishing = [["video", "camera"], ["audio", "microphone"], ["video", "screen"]];
    for (const [kind, source] of publishing) {
      if (this.local[source]) await this.publish(kind, source);
    }
    await Promise.all(call.publications.map((p) => this.subscribe(p).catch(() => {})));
    this.patch({ status: "joined" });
  }

  newConnection() {
    if (this.pc) this.pc.close();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.pc) return;
      this.patch({ connection: pc.connectionState });
      if (pc.connectionState === "failed" && this.state.get().status === "joined") this.reconnect().catch(() => {});
    });
    pc.addEventListener("track", () => this.collectRemote());
  }

  listen() {
    const on = (name, fn) => this.offs.push(socketEvents.on(name, (data) => {
      if (data && data.call_id === this.callId && this.active()) fn(data);
    }));
    on("call.offer", (data) => { this.enqueue("call.offer", () => this.applyOffer(data)).catch(() => {}); });
    on("call.joined", ({ participant }) => {
      if (participant.id === this.participantId) return;
      this.patch({ participants: [...this.state.get().participants.filter((p) => p.id !== participant.id),
        participant] });
      this.events.emit("joined", { participant });
    });
    on("call.left", ({ participant_id: id, user_id: userId }) => {
      const s = this.state.get();
      const remote = { ...s.remote };
      delete remote[id];
      this.patch({ participants: s.participants.filter((p) => p.id !== id),
        publications: s.publications.filter((p) => p.participant_id !== id), remote });
      this.events.emit("left", { participant_id: id, user_id: userId });
    });
    on("call.published", ({ publication }) => {
      this.upsert(publication);
      this.subscribe(publication).catch(() => {});
    });
    on("call.unpublished", ({ publication_id: id }) => {
      this.subscribed.delete(id);
      this.patch({ publications: this.state.get().publications.filter((p) => p.id !== id) });
    });
    on("call.muted", ({ publication, by }) => {
      const before = this.state.get().publications.find((p) => p.id === publication.id);
      this.upsert(publication);
      const mine = publication.participant_id === this.participantId;
      if (mine && !!(before && before.host_muted) !== publication.host_muted) {
        const source = publication.source;
        if (publication.host_muted && this.local[source]) {
          // Muted by a host: stop sending too, and show it as off until I turn it on again.
          this.local[source].enabled = false;
          this.patch({ [source]: false });
        }
        this.events.emit("host_muted", { publication, muted: publication.host_muted, by });
      }
      this.events.emit("muted", { publication, by, mine });
    });
    on("call.recording", ({ recording, by }) => {
      this.patch({ recording });
      this.events.emit("recording", { recording, by });
    });
    on("call.removed", ({ by }) => {
      this.teardown("removed");
      this.events.emit("removed", { by });
    });
    on("call.ended", ({ by }) => {
      this.teardown("ended");
      this.events.emit("ended", { by });
    });
    // The socket dropped: the server has dropped me from the call; join again once it is back.
    this.offs.push(socketEvents.on("disconnect", () => {
      if (this.state.get().status === "joined") this.patch({ status: "reconnecting" });
    }));
    this.offs.push(socketEvents.on("connect", () => {
      if (this.state.get().status !== "reconnecting") return;
      this.enter().then(() => this.events.emit("rejoined", {}), (err) => {
        if (err.code === "call.not_found") {
          this.teardown("ended");
          this.events.emit("ended", { by: null });
        } else {
          this.events.emit("error", err);
        }
      });
    }));
  }

  upsert(publication) {
    const list = this.state.get().publications.filter((p) => p.id !== publication.id);
    this.patch({ publications: [...list, publication] });
  }

  // Run `step` after every negotiation queued before it; a failure rejects `step`'s promise only.
  enqueue(label, step) {
    const run = this.chain.then(step);
    this.chain = run.catch((err) => {
      console.warn(`call: ${label} failed`, err);
      this.events.emit("error", err);
    });
    return run;
  }

  publish(kind, source) {
    return this.enqueue(`publish ${source}`, async () => {
      const { publication, offer } = await request("call.publish", { call_id: this.callId, kind, source });
      this.own.set(source, publication.id);
      this.upsert(publication);
      await this.applyOffer(offer);
      return publication;
    });
  }

  subscribe(publication) {
    const s = this.state.get();
    if (publication.participant_id === s.participantId || this.subscribed.has(publication.id)) {
      return Promise.resolve();
    }
    if (s.mode === "audio_only" && publication.kind === "video") return Promise.resolve();
    this.subscribed.add(publication.id);
    return this.enqueue(`subscribe ${publication.id}`, async () => {
      if (!this.active()) return;
      try {
        const { offer } = await request("call.subscribe", { call_id: this.callId, publication_id: publication.id });
        await this.applyOffer(offer);
      } catch (err) {
        this.subscribed.delete(publication.id);
        throw err;
      }
    });
  }

  // Apply one server offer: my tracks on "publish" m-lines, receive on "subscribe" ones, the rest
  // inactive; answer once ICE gathering is complete (Muster does not trickle).
  async applyOffer(offer) {
    // Every offer is answered, even one whose text equals the last (aiortc may offer the same SDP twice, and
    // skipping it would leave the server waiting for an answer); an offer answered already is refused below.
    if (!offer || !this.pc || !this.active()) return;
    const pc = this.pc;
    this.mids = offer.mids || {};
    await pc.setRemoteDescription({ type: offer.type, sdp: offer.sdp });
    for (const transceiver of pc.getTransceivers()) {
      if (transceiver.mid === null || transceiver.currentDirection === "stopped") continue;
      const slot = this.mids[transceiver.mid];
      if (!slot || slot.role === "unused") {
        transceiver.direction = "inactive";
      } else if (slot.role === "publish") {
        const source = slot.source || (slot.kind === "audio" ? "microphone" : "camera");
        const track = this.local[source] || null;
        if (transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
        transceiver.direction = "sendonly";
      } else {
        transceiver.direction = "recvonly";
      }
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await iceGatheringComplete(pc);
    if (pc !== this.pc) return; // replaced meanwhile (reconnect)
    try {
      await request("call.answer", { call_id: this.callId, sdp: pc.localDescription.sdp });
    } catch (err) {
      if (err.code !== "media.no_offer_pending") throw err; // that offer was answered already: nothing to do
    }
    this.collectRemote();
  }

  // Which remote track shows whom: rebuilt from the m-lines the server said carry each publication.
  collectRemote() {
    if (!this.pc) return;
    const remote = {};
    const seen = new Set();
    for (const transceiver of this.pc.getTransceivers()) {
      const slot = transceiver.mid !== null ? this.mids[transceiver.mid] : null;
      if (!slot || slot.role !== "subscribe" || !slot.participant_id) continue;
      if (transceiver.currentDirection === "inactive" || transceiver.currentDirection === "stopped") continue;
      const track = transceiver.receiver.track;
      if (!track) continue;
      const source = slot.kind === "audio" ? "audio" : slot.source === "screen" ? "screen" : "camera";
      const key = `${slot.participant_id}:${source}`;
      let entry = this.streams.get(key);
      if (!entry || entry.track !== track) {
        entry = { track, stream: new MediaStream([track]), publicationId: slot.publication_id };
        this.streams.set(key, entry);
      }
      seen.add(key);
      remote[slot.participant_id] = { ...(remote[slot.participant_id] || {}), [source]: entry.stream };
    }
    for (const key of [...this.streams.keys()]) if (!seen.has(key)) this.streams.delete(key);
    const before = this.state.get().remote;
    const same = Object.keys(remote).length === Object.keys(before).length
      && Object.entries(remote).every(([id, r]) => before[id] && ["camera", "screen", "audio"]
        .every((k) => r[k] === before[id][k]));
    if (!same) this.patch({ remote });
  }

  // Who is speaking: the RTP audio level of each received microphone.
  async measureLevels() {
    if (!this.pc || this.state.get().status !== "joined") return;
    const speaking = {};
    for (const transceiver of this.pc.getTransceivers()) {
      const slot = transceiver.mid !== null ? this.mids[transceiver.mid] : null;
      if (!slot || slot.role !== "subscribe" || slot.kind !== "audio") continue;
      const sources = transceiver.receiver.getSynchronizationSources ? transceiver.receiver.getSynchronizationSources() : [];
      if (sources.some((s) => (s.audioLevel || 0) > SPEAKING_LEVEL && performance.now() - s.timestamp < 1500)) {
        speaking[slot.participant_id] = true;
      }
    }
    const before = this.state.get().speaking;
    if (JSON.stringify(Object.keys(speaking).sort()) !== JSON.stringify(Object.keys(before).sort())) {
      this.patch({ speaking });
    }
  }

  async announceMute(source, muted) {
    const id = this.own.get(source);
    if (!id) return;
    const { publication } = await request("call.mute", { call_id: this.callId, publication_id: id, muted });
    this.upsert(publication);
  }

  async setDevice(source, on) {
    const track = this.local[source];
    if (!track) return;
    track.enabled = on;
    this.patch({ [source]: on });
    try {
      await this.announceMute(source, !on);
    } catch (err) {
      track.enabled = !on;
      this.patch({ [source]: !on });
      throw err;
    }
  }

  /** Microphone on (true) or muted (false), for everyone. */
  setMicrophone(on) { return this.setDevice("microphone", on); }

  /** Camera on or off (the publication stays; others see it as off). */
  setCamera(on) { return this.setDevice("camera", on); }

  /** My publication of `source` (microphone, camera, screen), or undefined. */
  ownPublication(source) {
    const id = this.own.get(source);
    return id ? this.state.get().publications.find((p) => p.id === id) : undefined;
  }

  /** Low-bandwidth mode: no video in (the server drops it) and none out (my camera off). */
  async setAudioOnly(on) {
    const mode = on ? "audio_only" : "normal";
    const { offer } = await request("call.mode", { call_id: this.callId, mode });
    this.patch({ mode });
    const s = this.state.get();
    if (on) {
      for (const p of s.publications) if (p.kind === "video") this.subscribed.delete(p.id);
      this.cameraBeforeAudioOnly = s.camera;
      if (s.camera) await this.setCamera(false).catch(() => {});
    }
    if (offer) await this.enqueue("call.mode", () => this.applyOffer(offer));
    if (!on) {
      await Promise.all(s.publications.filter((p) => p.kind === "video").map((p) => this.subscribe(p).catch(() => {})));
      if (this.cameraBeforeAudioOnly && !s.camera) await this.setCamera(true).catch(() => {});
    }
  }

  /**
   * Share the screen as an extra video publication (source "screen"). Muster has no call.unpublish,
   * so stopping detaches the track and marks the publication muted; sharing again re-attaches it.
   */
  async startScreen() {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = stream.getVideoTracks()[0];
    this.local.screen = track;
    track.addEventListener("ended", () => { if (this.local.screen === track) this.stopScreen().catch(() => {}); });
    if (this.own.get("screen")) {
      await this.replaceOwn("screen", track);
      await this.announceMute("screen", false);
    } else {
      await this.publish("video", "screen");
    }
    this.patch({ screen: true });
  }

  async stopScreen() {
    const track = this.local.screen;
    this.local.screen = null;
    this.patch({ screen: false });
    if (track) track.stop();
    await this.replaceOwn("screen", null);
    await this.announceMute("screen", true).catch(() => {});
  }

  async replaceOwn(source, track) {
    const id = this.own.get(source);
    if (!id || !this.pc) return;
    for (const transceiver of this.pc.getTransceivers()) {
      const slot = transceiver.mid !== null ? this.mids[transceiver.mid] : null;
      if (slot && slot.role === "publish" && slot.publication_id === id) await transceiver.sender.replaceTrack(track);
    }
  }

  /** A fresh connection without leaving the call (the network changed); publications and subscriptions stay. */
  reconnect() {
    if (this.reconnecting) return this.reconnecting;
    this.reconnecting = this.enqueue("call.reconnect", async () => {
      const { offer } = await request("call.reconnect", { call_id: this.callId });
      this.newConnection();
      await this.applyOffer(offer);
    }).finally(() => { this.reconnecting = null; });
    return this.reconnecting;
  }

  // -- host controls (the server refuses others with call.not_host) --

  hostMute(publicationId, muted) {
    return request("call.host_mute", { call_id: this.callId, publication_id: publicationId, muted });
  }

  remove(participantId) {
    return request("call.remove", { call_id: this.callId, participant_id: participantId });
  }

  end() { return request("call.end", { call_id: this.callId }); }

  /** A signed invitation token for one user (they are also told by call.invited). */
  async invite(userId) {
    const { invitation } = await request("call.invite", { call_id: this.callId, user_id: userId });
    return invitation;
  }

  record(on) { return request("call.record", { call_id: this.callId, on }); }

  /** Leave the call (the others stay). */
  async leave() {
    if (!this.active()) return;
    const wasJoined = this.state.get().status !== "reconnecting";
    this.teardown("left");
    if (wasJoined) await request("call.leave", { call_id: this.callId }).catch(() => {});
  }

  teardown(status) {
    for (const off of this.offs.splice(0)) off();
    clearInterval(this.levelTimer);
    if (this.pc) this.pc.close();
    this.pc = null;
    for (const track of Object.values(this.local)) if (track) track.stop();
    this.streams.clear();
    this.patch({ status, remote: {}, speaking: {}, recording: status === "idle" ? false : this.state.get().recording });
  }
}
