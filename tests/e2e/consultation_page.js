// In-page half of tests/e2e/test_consultation_browser.py, loaded after socket.io-client's
// dist/socket.io.min.js into a page served from Muster's origin. It takes part in a consultation the way
// the web console would: one Socket.IO connection, one RTCPeerConnection to Muster's SFU, and the server
// as the offerer. Every offer (the answer to call.publish / call.subscribe, or a server-pushed
// call.offer) is applied in one promise chain, so two negotiations never overlap.
(() => {
  "use strict";

  const ACK_TIMEOUT_MS = 15000;
  const ICE_TIMEOUT_MS = 15000;

  const $ = (id) => document.getElementById(id);

  const state = {
    socket: null,
    pc: null,
    callId: null,
    participantId: null,
    camera: null,
    microphone: null,
    // Every negotiation, in order: a request and the offer it returns, or a pushed offer.
    chain: Promise.resolve(),
    lastOfferSdp: null,
    mids: {},
    own: new Set(),
    subscribed: new Set(),
    offersApplied: 0,
    pushedOffers: 0,
    events: [],
    errors: [],
    left: false,
  };

  function note(text) {
    const line = `${new Date().toISOString().slice(11, 23)} ${text}`;
    console.log(line);
    const log = $("log");
    if (log) log.textContent += `${line}\n`;
  }

  function fail(where, error) {
    const text = `${where}: ${error && error.stack ? error.stack : error}`;
    state.errors.push(text);
    note(`ERROR ${text}`);
  }

  function show(status) {
    if ($("status")) $("status").textContent = status;
  }

  // One Socket.IO request with an acknowledgement {data} or {error}; rejects on an error or no answer.
  function request(event, data) {
    return new Promise((resolve, reject) => {
      state.socket.timeout(ACK_TIMEOUT_MS).emit(event, data, (timeout, ack) => {
        if (timeout) reject(new Error(`${event}: no acknowledgement within ${ACK_TIMEOUT_MS} ms`));
        else if (ack && "data" in ack) resolve(ack.data);
        else reject(new Error(`${event} refused: ${JSON.stringify(ack && ack.error)}`));
      });
    });
  }

  // Run `step` after every negotiation queued before it; a failure is recorded, and the chain goes on.
  function enqueue(label, step) {
    const run = state.chain.then(step);
    state.chain = run.catch((error) => fail(label, error));
    return run;
  }

  function iceGatheringComplete(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pc.removeEventListener("icegatheringstatechange", check);
        reject(new Error(`ICE gathering not complete after ${ICE_TIMEOUT_MS} ms`));
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

  // Apply one server offer: camera/microphone on "publish" m-lines, receive on "subscribe" ones, the rest
  // inactive; answer once ICE gathering is complete (Muster does not trickle).
  async function applyOffer(offer, origin) {
    if (!offer || state.left) return;
    if (offer.sdp === state.lastOfferSdp) {
      note(`${origin}: offer already answered, skipped`);
      return;
    }
    const pc = state.pc;
    await pc.setRemoteDescription({ type: offer.type, sdp: offer.sdp });
    state.mids = offer.mids;
    const roles = [];
    for (const transceiver of pc.getTransceivers()) {
      if (transceiver.mid === null || transceiver.currentDirection === "stopped") continue;
      const slot = offer.mids[transceiver.mid];
      if (!slot || slot.role === "unused") {
        transceiver.direction = "inactive";
      } else if (slot.role === "publish") {
        const track = slot.kind === "video" ? state.camera : state.microphone;
        if (transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
        transceiver.direction = "sendonly";
      } else {
        transceiver.direction = "recvonly";
      }
      roles.push(`${transceiver.mid}:${slot ? slot.role : "?"}/${transceiver.direction}`);
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await iceGatheringComplete(pc);
    await request("call.answer", { call_id: state.callId, sdp: pc.localDescription.sdp });
    state.lastOfferSdp = offer.sdp;
    state.offersApplied += 1;
    note(`${origin}: answered (${roles.join(", ")})`);
  }

  function subscribe(publication) {
    if (state.own.has(publication.id) || state.subscribed.has(publication.id)) return Promise.resolve();
    state.subscribed.add(publication.id);
    return enqueue(`subscribe ${publication.id}`, async () => {
      if (state.left) return;
      const { offer } = await request("call.subscribe", { call_id: state.callId, publication_id: publication.id });
      await applyOffer(offer, `subscribe ${publication.kind} of ${publication.user_id}`);
    });
  }

  function showRemote(event) {
    const track = event.track;
    note(`remote ${track.kind} track ${track.id} (streams: ${event.streams.map((s) => s.id).join(",")})`);
    if (track.kind !== "video") return;
    const video = $("remote");
    video.srcObject = new MediaStream([track]);
    video.play().catch((error) => note(`remote video play(): ${error}`));
  }

  async function connect({ origin, token }) {
    show("connecting");
    const socket = io(origin, { auth: { token }, transports: ["websocket"], reconnection: false });
    state.socket = socket;
    for (const name of ["call.joined", "call.left", "call.published", "call.unpublished", "call.recording",
      "call.ended", "call.removed"]) {
      socket.on(name, (data) => {
        state.events.push({ name, data });
        note(`event ${name}`);
      });
    }
    socket.on("call.published", (data) => {
      // A failed subscription is already in state.errors (enqueue records it).
      if (data.call_id === state.callId && !state.left) subscribe(data.publication).catch(() => {});
    });
    socket.on("call.offer", (data) => {
      state.pushedOffers += 1;
      if (data.call_id === state.callId) enqueue("pushed call.offer", () => applyOffer(data, "call.offer"));
    });
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", (error) => reject(new Error(`socket refused: ${error.message}`)));
    });
    note(`socket connected (${socket.id})`);
  }

  async function openMedia() {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    state.camera = stream.getVideoTracks()[0];
    state.microphone = stream.getAudioTracks()[0];
    const local = $("local");
    local.srcObject = new MediaStream([state.camera]);
    await local.play().catch((error) => note(`local video play(): ${error}`));
    const settings = state.camera.getSettings();
    note(`camera ${settings.width}x${settings.height}, microphone ${state.microphone.label}`);
    return { width: settings.width, height: settings.height };
  }

  async function start(roomId) {
    const { call } = await request("call.start", { room_id: roomId, kind: "consultation" });
    return call;
  }

  // Join, publish the camera then the microphone, and subscribe to what others already publish.
  async function join(callId) {
    const joined = await request("call.join", { call_id: callId });
    state.callId = callId;
    state.participantId = joined.participant_id;
    const pc = new RTCPeerConnection({ iceServers: joined.ice_servers, bundlePolicy: "max-bundle" });
    state.pc = pc;
    pc.addEventListener("track", showRemote);
    pc.addEventListener("connectionstatechange", () => {
      note(`connection ${pc.connectionState}`);
      show(`connection ${pc.connectionState}`);
    });
    const published = {};
    for (const [kind, source] of [["video", "camera"], ["audio", "microphone"]]) {
      await enqueue(`publish ${kind}`, async () => {
        const { publication, offer } = await request("call.publish", { call_id: callId, kind, source });
        state.own.add(publication.id);
        published[kind] = publication.id;
        await applyOffer(offer, `publish ${kind}`);
      });
    }
    await Promise.all(joined.call.publications.map(subscribe));
    return { participantId: joined.participant_id, publications: published, iceServers: joined.ice_servers };
  }

  // What the Python test checks: inbound RTP per m-line with what the server said the m-line carries,
  // the selected ICE pair, and the negotiation counters.
  async function stats() {
    const result = {
      inbound: [], pair: null, connection: state.pc ? state.pc.connectionState : null,
      offersApplied: state.offersApplied, pushedOffers: state.pushedOffers, errors: state.errors.slice(),
      events: state.events.map((e) => e.name),
    };
    if (!state.pc) return result;
    const report = await state.pc.getStats();
    let pairId = null;
    report.forEach((entry) => {
      if (entry.type === "transport" && entry.selectedCandidatePairId) pairId = entry.selectedCandidatePairId;
    });
    report.forEach((entry) => {
      if (entry.type === "inbound-rtp") {
        const codec = entry.codecId ? report.get(entry.codecId) : null;
        result.inbound.push({
          kind: entry.kind, mid: entry.mid, slot: state.mids[entry.mid] || null,
          packetsReceived: entry.packetsReceived || 0, framesDecoded: entry.framesDecoded || 0,
          frameWidth: entry.frameWidth || 0, frameHeight: entry.frameHeight || 0,
          codec: codec ? codec.mimeType : null,
        });
      }
    });
    if (pairId) {
      const pair = report.get(pairId);
      const local = pair && report.get(pair.localCandidateId);
      const remote = pair && report.get(pair.remoteCandidateId);
      result.pair = {
        state: pair && pair.state,
        local: local ? `${local.address}:${local.port} ${local.candidateType}` : null,
        remote: remote ? `${remote.address}:${remote.port} ${remote.candidateType}` : null,
      };
    }
    return result;
  }

  // Whether the remote <video> shows frames (for a meaningful screenshot).
  function remoteVideo() {
    const video = $("remote");
    return { width: video.videoWidth, height: video.videoHeight, time: video.currentTime, paused: video.paused };
  }

  async function record(on) {
    return request("call.record", { call_id: state.callId, on });
  }

  // Wait for every queued negotiation (e.g. a pushed offer) to be answered.
  async function settled() {
    let chain;
    do {
      chain = state.chain;
      await chain;
    } while (chain !== state.chain);
    return state.offersApplied;
  }

  async function leave() {
    await settled();
    if (state.callId && !state.left) {
      state.left = true;
      await request("call.leave", { call_id: state.callId });
    }
    if (state.pc) state.pc.close();
    for (const track of [state.camera, state.microphone]) if (track) track.stop();
    if (state.socket) state.socket.disconnect();
    show("left");
    note("left the call");
  }

  window.consultation = { connect, openMedia, start, join, stats, remoteVideo, record, settled, leave };
})();
