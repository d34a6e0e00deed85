// The room page's call media (docs/protocol.md §1.4, §1.10): the microphone (asked for on
// join; without it the page still receives), one RTCPeerConnection per other participant
// built by the protocol's offer rule (the AI is always offered to and never offers), the
// other side's audio played, and a live level of what the AI sends (#ai-meter). Used by
// room.js through window.RoomMedia; WebRTC is not governed by the page's connect-src.
'use strict';

(() => {
  const METER_MS = 200;
  const isAi = (p) => !!p && (p.participantType === 'ai' || p.userRole === 'ai');

  /** docs/protocol.md §1.4: whether `existing` offers to `joiner`. */
  function existingOffers(existing, joiner) {
    if (isAi(joiner)) return true;
    if (isAi(existing)) return false;
    if (existing.userRole === 'coach' && joiner.userRole === 'client') return true;
    if (existing.userRole === 'client' && joiner.userRole === 'coach') return false;
    return existing.userId < joiner.userId;
  }

  /** The media of one membership: `send` a signalling frame, `log` a line, `me` the joiner. */
  function create({ send, log, me }) {
    const pcs = new Map(); // peer id -> { pc, pending: [], audio }
    let config = { iceServers: [] };
    let stream = null;
    let aiId = null;
    let meterTimer = null;
    const $ = (id) => document.getElementById(id);

    function setMic(text, kind) {
      const el = $('mic');
      el.textContent = text;
      el.className = 'badge' + (kind ? ' ' + kind : '');
    }

    /** Asks for the microphone and keeps the ICE servers; a refusal leaves a listen-only call. */
    async function start(iceServers) {
      if (iceServers && Array.isArray(iceServers.iceServers)) config = { iceServers: iceServers.iceServers };
      if (!navigator.mediaDevices || !window.RTCPeerConnection) {
        setMic('no WebRTC here', 'bad');
        return;
      }
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
        setMic('microphone on', 'ok');
      } catch (e) {
        stream = null;
        setMic('microphone off: ' + (e && e.name ? e.name : 'unavailable'), 'warn');
      }
    }

    function connection(peerId) {
      let entry = pcs.get(peerId);
      if (entry) return entry;
      const pc = new RTCPeerConnection(config);
      entry = { pc, pending: [], audio: null };
      pcs.set(peerId, entry);
      if (stream) for (const track of stream.getTracks()) pc.addTrack(track, stream);
      else pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.onicecandidate = (e) => { if (e.candidate) send({ type: 'ice-candidate', toId: peerId, candidate: e.candidate.toJSON() }); };
      pc.ontrack = (e) => {
        if (e.track.kind !== 'audio' || entry.audio) return;
        const audio = new Audio();
        audio.srcObject = new MediaStream([e.track]);
        audio.play().catch(() => log('press anywhere to hear the call (autoplay blocked)'));
        entry.audio = audio;
      };
      pc.onconnectionstatechange = () => { if (peerId === aiId) $('ai-media').textContent = pc.connectionState; };
      return entry;
    }

    async function offerTo(peerId) {
      const { pc } = connection(peerId);
      await pc.setLocalDescription(await pc.createOffer());
      send({ type: 'offer', toId: peerId, offer: { type: 'offer', sdp: pc.localDescription.sdp } });
    }

    async function flush(entry) {
      for (const c of entry.pending.splice(0)) await entry.pc.addIceCandidate(c).catch(() => {});
    }

    function close(peerId) {
      const entry = pcs.get(peerId);
      if (!entry) return;
      entry.pc.close();
      if (entry.audio) entry.audio.srcObject = null;
      pcs.delete(peerId);
      if (peerId === aiId) { aiId = null; $('ai-media').textContent = 'no call'; }
    }

    /** Offers as §1.4 directs for a participant we met (`joinerIsThem`: they joined after us). */
    async function meet(p, shouldCreateOffer) {
      if (isAi(p)) aiId = p.userId;
      if (shouldCreateOffer) await offerTo(p.userId);
    }

    /** One signalling frame (in order; room.js chains them). */
    async function handle(msg) {
      switch (msg.type) {
        case 'peer-discovery':
          for (const p of msg.peers || []) await meet(p, !existingOffers(p, { ...me, participantType: 'human' }));
          break;
        case 'user-joined':
          await meet(msg, msg.shouldCreateOffer === true);
          break;
        case 'user-left':
          close(msg.userId);
          break;
        case 'offer': {
          const entry = connection(msg.fromId);
          await entry.pc.setRemoteDescription(msg.offer);
          await entry.pc.setLocalDescription(await entry.pc.createAnswer());
          send({ type: 'answer', toId: msg.fromId, answer: { type: 'answer', sdp: entry.pc.localDescription.sdp } });
          await flush(entry);
          break;
        }
        case 'answer': {
          const entry = pcs.get(msg.fromId);
          if (!entry || entry.pc.signalingState !== 'have-local-offer') break;
          await entry.pc.setRemoteDescription(msg.answer);
          await flush(entry);
          break;
        }
        case 'ice-candidate': {
          const entry = pcs.get(msg.fromId);
          if (!entry || !msg.candidate) break;
          if (entry.pc.remoteDescription) await entry.pc.addIceCandidate(msg.candidate).catch(() => {});
          else entry.pending.push(msg.candidate);
          break;
        }
        default:
          break;
      }
    }

    /** The AI's inbound audio level (0–1) into #ai-meter, a few times a second. */
    async function meter() {
      const entry = aiId && pcs.get(aiId);
      let level = 0;
      if (entry) {
        (await entry.pc.getStats()).forEach((r) => {
          if (r.type === 'inbound-rtp' && r.kind === 'audio') level = r.audioLevel ?? 0;
        });
      }
      const el = $('ai-meter');
      el.value = level;
      el.dataset.level = level.toFixed(3);
    }

    meterTimer = setInterval(() => { meter().catch(() => {}); }, METER_MS);

    /** Ends every connection and the microphone (leave, or the socket dropped). */
    function stop() {
      for (const id of [...pcs.keys()]) close(id);
      clearInterval(meterTimer);
      if (stream) for (const t of stream.getTracks()) t.stop();
      stream = null;
      setMic('microphone off', '');
      $('ai-meter').value = 0;
    }

    return { start, handle, stop, peers: () => pcs };
  }

  window.RoomMedia = { create };
})();
