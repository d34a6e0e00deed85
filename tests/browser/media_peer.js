// In-page client of the media tests: joins /ws-simple/<room> and builds the mesh the
// way the old browser client does (one RTCPeerConnection per other participant, the
// offer rule of docs/protocol.md §1.4, the AI offered to and never offering), with the
// fake microphone captured unprocessed so the AI's echo keeps the source's level.
// Injected by media.test.js into a page of the server's origin; state on window.mediaPeer.
'use strict';

(() => {
  const state = {
    ws: null, me: null, role: null, stream: null, rtcConfig: { iceServers: [] },
    pcs: new Map(), // peer id -> { pc, polite, pendingCandidates, answers }
    peers: new Map(), // peer id -> participant
    aiErrors: [], // ai_status error frames (any inReplyTo)
    aiEvents: [], // every ai_status and ai_response, with its arrival time
    holdAi: false, // start(…, { holdAi: true }): joined, but no offer to the AI until connectAi()
    log: [],
  };

  const isAi = (p) => p && (p.participantType === 'ai' || p.userRole === 'ai');

  /** docs/protocol.md §1.4: whether `existing` offers to `joiner`. */
  function existingOffers(existing, joiner) {
    if (isAi(joiner)) return true;
    if (isAi(existing)) return false;
    if (existing.userRole === 'coach' && joiner.userRole === 'client') return true;
    if (existing.userRole === 'client' && joiner.userRole === 'coach') return false;
    return existing.userId < joiner.userId;
  }

  function send(msg) { state.ws.send(JSON.stringify(msg)); }

  function connection(peerId) {
    let entry = state.pcs.get(peerId);
    if (entry) return entry;
    const pc = new RTCPeerConnection(state.rtcConfig);
    entry = { pc, pendingCandidates: [], answers: 0, audio: null };
    state.pcs.set(peerId, entry);
    for (const track of state.stream.getTracks()) pc.addTrack(track, state.stream);
    pc.onicecandidate = (e) => { if (e.candidate) send({ type: 'ice-candidate', toId: peerId, candidate: e.candidate.toJSON() }); };
    pc.ontrack = (e) => {
      if (e.track.kind !== 'audio') return;
      // A received track that does not play reports audioLevel 0.
      const audio = new Audio();
      audio.srcObject = new MediaStream([e.track]);
      audio.play().catch((err) => state.log.push('play: ' + err));
      entry.audio = audio;
    };
    return entry;
  }

  async function offerTo(peerId) {
    const { pc } = connection(peerId);
    await pc.setLocalDescription(await pc.createOffer());
    send({ type: 'offer', toId: peerId, offer: { type: 'offer', sdp: pc.localDescription.sdp } });
  }

  async function flushCandidates(entry) {
    for (const c of entry.pendingCandidates.splice(0)) await entry.pc.addIceCandidate(c).catch(() => {});
  }

  async function onMessage(msg) {
    switch (msg.type) {
      case 'peer-discovery':
        for (const p of msg.peers) {
          state.peers.set(p.userId, p);
          if (isAi(p) && state.holdAi) continue;
          if (!existingOffers(p, { userId: state.me, userRole: state.role, participantType: 'human' })) await offerTo(p.userId);
        }
        break;
      case 'user-joined':
        state.peers.set(msg.userId, msg);
        if (msg.shouldCreateOffer && !(isAi(msg) && state.holdAi)) await offerTo(msg.userId);
        break;
      case 'user-left': {
        state.peers.delete(msg.userId);
        const entry = state.pcs.get(msg.userId);
        if (entry) { entry.pc.close(); state.pcs.delete(msg.userId); }
        break;
      }
      case 'offer': {
        const entry = connection(msg.fromId);
        await entry.pc.setRemoteDescription(msg.offer);
        await entry.pc.setLocalDescription(await entry.pc.createAnswer());
        send({ type: 'answer', toId: msg.fromId, answer: { type: 'answer', sdp: entry.pc.localDescription.sdp } });
        await flushCandidates(entry);
        break;
      }
      case 'answer': {
        const entry = state.pcs.get(msg.fromId);
        if (!entry) break;
        await entry.pc.setRemoteDescription(msg.answer);
        entry.answers += 1;
        entry.lastAnswer = msg.answer.sdp;
        await flushCandidates(entry);
        break;
      }
      case 'ice-candidate': {
        const entry = state.pcs.get(msg.fromId);
        if (!entry || !msg.candidate) break;
        if (entry.pc.remoteDescription) await entry.pc.addIceCandidate(msg.candidate).catch(() => {});
        else entry.pendingCandidates.push(msg.candidate);
        break;
      }
      case 'ai_status':
        if (msg.status === 'error') state.aiErrors.push(msg);
        state.aiEvents.push({ type: 'ai_status', status: msg.status, code: msg.code ?? null, at: Date.now() });
        break;
      case 'ai_response':
        state.aiEvents.push({ type: 'ai_response', text: msg.text, inReplyTo: msg.inReplyTo ?? null, at: Date.now() });
        break;
      default:
        break;
    }
  }

  /**
   * Captures the fake devices and joins `room` as `userId` / `role`; with `turn`, every
   * connection takes the ICE servers of /api/turn-credentials and relays only through them.
   * `options.video: false` captures audio only; `options.holdAi: true` joins without
   * offering to the AI until `connectAi()` (the bench measures an orb with no peer first).
   */
  async function start(room, userId, role, turn = false, options = {}) {
    state.holdAi = options.holdAi === true;
    if (turn) {
      const res = await fetch('/api/turn-credentials');
      const { iceServers } = await res.json();
      state.rtcConfig = { iceServers, iceTransportPolicy: 'relay' };
    }
    state.me = userId;
    state.role = role;
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      video: options.video === false ? false : { width: 160, height: 120, frameRate: 5 },
    });
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws-simple/' + encodeURIComponent(room);
    state.ws = new WebSocket(url);
    // One message at a time, in order, as the signalling requires.
    let chain = Promise.resolve();
    state.ws.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      chain = chain.then(() => onMessage(msg)).catch((err) => state.log.push(msg.type + ': ' + err));
    };
    await new Promise((resolve, reject) => { state.ws.onopen = resolve; state.ws.onerror = reject; });
    send({ type: 'join', userId, userName: userId, userRole: role, participantType: 'human' });
  }

  const aiId = () => [...state.peers.values()].find(isAi)?.userId ?? null;

  /** The connection to `peerId` now: state, what its audio receiver hears, what the microphone gives. */
  async function probe(peerId) {
    const entry = state.pcs.get(peerId);
    if (!entry) return null;
    const out = {
      connection: entry.pc.connectionState, signaling: entry.pc.signalingState, answers: entry.answers,
      level: 0, packets: 0, energy: 0, source: 0,
    };
    (await entry.pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') {
        out.level = r.audioLevel ?? 0;
        out.packets = r.packetsReceived ?? 0;
        out.energy = r.totalAudioEnergy ?? 0;
      }
      if (r.type === 'media-source' && r.kind === 'audio') out.source = r.audioLevel ?? 0;
    });
    const stats = await entry.pc.getStats();
    stats.forEach((r) => {
      if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') {
        const local = stats.get(r.localCandidateId);
        const remote = stats.get(r.remoteCandidateId);
        out.pair = { local: local?.candidateType, localAddress: local?.address, remote: remote?.address, remotePort: remote?.port };
      }
    });
    return out;
  }

  /** A repeat offer on the same connection (a video transceiver added: a real change to negotiate). */
  async function renegotiate(peerId) {
    const entry = state.pcs.get(peerId);
    entry.pc.addTransceiver('video', { direction: 'sendrecv' });
    await offerTo(peerId);
  }

  /**
   * Closes the connection to `peerId` and opens a new one (a new RTCPeerConnection: a new
   * DTLS fingerprint), waiting until it is connected; the milliseconds it took.
   */
  async function reconnect(peerId, timeoutMs = 5000) {
    const started = Date.now();
    const old = state.pcs.get(peerId);
    if (old) { old.pc.close(); state.pcs.delete(peerId); }
    await offerTo(peerId);
    const { pc } = state.pcs.get(peerId);
    while (pc.connectionState !== 'connected') {
      if (Date.now() - started > timeoutMs) throw new Error('reconnect: ' + pc.connectionState);
      await new Promise((r) => setTimeout(r, 20));
    }
    return Date.now() - started;
  }

  /** Closes the connection to `peerId` without a new one. */
  function hangUp(peerId) {
    const entry = state.pcs.get(peerId);
    if (entry) { entry.pc.close(); state.pcs.delete(peerId); }
  }

  /** The fingerprint line of a connection's local offer (to build hostile offers). */
  function localSdp(peerId) { return state.pcs.get(peerId)?.pc.localDescription?.sdp ?? null; }

  /** Offers to the AI held back by `start(…, { holdAi: true })`. */
  async function connectAi() {
    state.holdAi = false;
    const id = aiId();
    if (id && !state.pcs.has(id)) await offerTo(id);
    return id;
  }

  window.mediaPeer = { start, send, probe, renegotiate, reconnect, hangUp, localSdp, aiId, connectAi, state };
})();
