// The room page: joins /ws-simple/{roomId} as a coach or a client (docs/protocol.md §1),
// shows the participants and the AI, and reconnects with backoff after a drop.
// The call's media (microphone, peer connections, the AI's audio and its level) is
// room_media.js (window.RoomMedia), fed every frame in order.
'use strict';

(() => {
  const USER_ID_KEY = 'room.userId';
  const NAME_KEY = 'room.userName';
  const ROLE_KEY = 'room.userRole';
  const PING_MS = 25000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const MAX_LINES = 200;

  const $ = (id) => document.getElementById(id);
  const roomId = decodeURIComponent(location.pathname.replace(/\/+$/, '').split('/').pop() || '');

  const state = {
    me: null, // {userId, userName, userRole}
    socket: null,
    joined: false,
    wanted: false, // the user wants to be in the room (reconnect when dropped)
    attempt: 0,
    retryTimer: null,
    pingTimer: null,
    peers: new Map(), // userId -> participant
    hands: new Set(),
    handRaised: false,
    ai: null, // the AI participant when present
    media: null, // window.RoomMedia of this socket
    mediaChain: Promise.resolve(), // signalling handled one frame at a time, in order
  };

  /** Hands `msg` to the call's media, after every frame before it. */
  function toMedia(msg) {
    const media = state.media;
    if (!media) return;
    state.mediaChain = state.mediaChain
      .then(() => media.handle(msg))
      .catch((e) => log('media: ' + msg.type + ': ' + (e && e.message ? e.message : e)));
  }

  function stopMedia() {
    if (state.media) state.media.stop();
    state.media = null;
  }

  function userId() {
    let id = sessionStorage.getItem(USER_ID_KEY);
    if (!id) {
      const bytes = new Uint8Array(8);
      crypto.getRandomValues(bytes);
      id = 'u-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
      sessionStorage.setItem(USER_ID_KEY, id);
    }
    return id;
  }

  function setConn(text, kind) {
    const el = $('conn');
    el.textContent = text;
    el.className = 'badge' + (kind ? ' ' + kind : '');
  }

  function showError(text) {
    const el = $('error');
    el.textContent = text;
    el.classList.toggle('hidden', !text);
  }

  function addLine(listId, text, cls) {
    const list = $(listId);
    const li = document.createElement('li');
    li.textContent = text;
    if (cls) li.className = cls;
    list.appendChild(li);
    while (list.children.length > MAX_LINES) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
    return li;
  }

  const log = (text) => addLine('log', new Date().toLocaleTimeString() + '  ' + text);

  function nameOf(id) {
    if (state.me && id === state.me.userId) return state.me.userName;
    const p = state.peers.get(id);
    return p ? p.userName : id || 'server';
  }

  // ---- rendering -------------------------------------------------------

  function renderPeople() {
    const list = $('participants');
    list.textContent = '';
    const everyone = [];
    if (state.me && state.joined) everyone.push({ ...state.me, participantType: 'human', self: true });
    for (const p of state.peers.values()) everyone.push(p);
    for (const p of everyone) {
      const li = document.createElement('li');
      li.dataset.userId = p.userId;
      li.dataset.role = p.userRole;
      let text = p.userName + ' · ' + p.userRole;
      if (p.self) text += ' (you)';
      if (state.hands.has(p.userId)) text += ' · hand raised';
      li.textContent = text;
      list.appendChild(li);
    }
  }

  function setAiPresence(present) {
    const el = $('ai-presence');
    el.textContent = present ? 'in room' : 'not in room';
    el.className = 'badge' + (present ? ' ok' : '');
    // The server's own statuses (`queued`, `error`, `ended`) say why the AI is away: keep them.
    const current = $('ai-status').dataset.status;
    const why = current === 'queued' || current === 'error' || current === 'ended';
    if (!present && !why) setAiStatus('—', '');
    if (present && why) setAiStatus('joining', '');
  }

  function setAiStatus(status, detail, kind) {
    const el = $('ai-status');
    el.textContent = status;
    el.dataset.status = status;
    $('ai-detail').textContent = detail || '';
    $('ai-detail').className = kind === 'bad' ? 'error' : 'muted';
  }

  function renderControls() {
    const coach = state.me && state.me.userRole === 'coach';
    $('coach-controls').classList.toggle('hidden', !coach);
    $('client-controls').classList.toggle('hidden', coach);
    $('hand').textContent = state.handRaised ? 'Lower hand' : 'Raise hand';
    const live = state.joined;
    for (const id of ['pause', 'resume', 'end', 'hand', 'say']) $(id).disabled = !live;
  }

  // ---- protocol --------------------------------------------------------

  function send(message) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(JSON.stringify(message));
      return true;
    }
    showError('Not connected: the message was not sent.');
    return false;
  }

  function onPeerJoined(p) {
    state.peers.set(p.userId, p);
    if (p.participantType === 'ai') {
      state.ai = p;
      setAiPresence(true);
      log(p.userName + ' (AI) joined');
    } else {
      log(p.userName + ' joined as ' + p.userRole);
    }
  }

  function handle(msg) {
    switch (msg.type) {
      case 'peer-discovery': {
        state.joined = true;
        state.attempt = 0;
        state.peers.clear();
        state.hands.clear();
        state.ai = null;
        setAiStatus('—', '');
        setAiPresence(false);
        for (const p of msg.peers || []) onPeerJoined(p);
        setConn('connected', 'ok');
        showError('');
        log('joined room ' + roomId + ' as ' + state.me.userRole);
        renderControls();
        break;
      }
      case 'user-joined':
        onPeerJoined(msg);
        break;
      case 'user-left': {
        state.peers.delete(msg.userId);
        state.hands.delete(msg.userId);
        if (msg.participantType === 'ai' || (state.ai && state.ai.userId === msg.userId)) {
          state.ai = null;
          setAiPresence(false);
          log((msg.userName || 'AI') + ' (AI) left');
        } else {
          log((msg.userName || msg.userId) + ' left');
        }
        break;
      }
      case 'ai_status': {
        const status = String(msg.status || 'unknown');
        if (status === 'queued') {
          const pos = msg.position != null ? ' (position ' + msg.position + ')' : '';
          setAiStatus('queued', 'Waiting for a free AI slot' + pos + '.', '');
        } else if (status === 'ended') {
          setAiStatus('ended', String(msg.message || 'The AI left the room.') + (msg.code ? ' (' + msg.code + ')' : ''), '');
        } else if (status === 'error') {
          setAiStatus('error', String(msg.error || msg.message || 'the AI reported an error'), 'bad');
        } else {
          setAiStatus(status, '', '');
        }
        break;
      }
      case 'ai_response': {
        const li = addLine('responses', String(msg.text ?? ''), 'response');
        if (msg.inReplyTo) li.title = 'in reply to ' + msg.inReplyTo;
        break;
      }
      case 'client_signal': {
        if (msg.action === 'hand_raised') {
          const up = msg.value !== false;
          if (up) state.hands.add(msg.fromId); else state.hands.delete(msg.fromId);
          log(nameOf(msg.fromId) + (up ? ' raised a hand' : ' lowered a hand'));
        } else {
          log(nameOf(msg.fromId) + ': ' + msg.action);
        }
        break;
      }
      case 'ai_control':
        if (msg.action === 'say') log(nameOf(msg.fromId) + ' said to the AI: ' + msg.text);
        else log(nameOf(msg.fromId) + ' asked the AI to ' + String(msg.action).replace('_', ' '));
        break;
      case 'error':
        showError('Server error' + (msg.code ? ' (' + msg.code + ')' : '') + ': ' + (msg.message || ''));
        log('error: ' + (msg.message || msg.code));
        break;
      default:
        break;
    }
    toMedia(msg);
    renderPeople();
  }

  // ---- connection ------------------------------------------------------

  async function turnCredentials() {
    // As the old client: fetched before joining; without them the call tries direct paths.
    try {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 3000);
      const res = await fetch('/api/turn-credentials', { signal: controller.signal, cache: 'no-store' });
      clearTimeout(timer);
      if (res.ok) return await res.json();
    } catch (_) { /* ignored */ }
    return null;
  }

  async function connect() {
    clearTimeout(state.retryTimer);
    if (!state.wanted) return;
    setConn(state.attempt ? 'reconnecting…' : 'connecting…', 'warn');
    const iceServers = await turnCredentials();
    if (!state.wanted) return;
    stopMedia();
    const media = window.RoomMedia.create({ send, log, me: state.me });
    state.media = media;
    state.mediaChain = media.start(iceServers);
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = scheme + '//' + location.host + '/ws-simple/' + encodeURIComponent(roomId);
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({
        type: 'join',
        roomId,
        userId: state.me.userId,
        userName: state.me.userName,
        userRole: state.me.userRole,
        participantType: 'human',
      }));
      clearInterval(state.pingTimer);
      state.pingTimer = setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) socket.send('{"type":"ping"}');
      }, PING_MS);
    };
    socket.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch (_) { return; }
      if (msg && typeof msg.type === 'string') handle(msg);
    };
    socket.onclose = (event) => {
      if (state.socket !== socket) return;
      clearInterval(state.pingTimer);
      state.socket = null;
      const wasJoined = state.joined;
      state.joined = false;
      state.peers.clear();
      state.ai = null;
      stopMedia();
      setAiStatus('—', '');
      setAiPresence(false);
      renderPeople();
      renderControls();
      if (wasJoined) log('connection lost' + (event.reason ? ': ' + event.reason : ''));
      if (event.code === 1008 || event.code >= 4000) {
        showError('The server closed the connection' + (event.reason ? ': ' + event.reason : '') + '.');
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (!state.wanted) {
      setConn('offline', '');
      return;
    }
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    state.attempt += 1;
    setConn('reconnecting in ' + (delay / 1000).toFixed(1) + ' s', 'bad');
    $('conn').dataset.attempt = String(state.attempt);
    $('conn').dataset.delayMs = String(delay);
    state.retryTimer = setTimeout(connect, delay);
  }

  function leave() {
    state.wanted = false;
    clearTimeout(state.retryTimer);
    if (state.socket) {
      try { state.socket.send('{"type":"leave"}'); } catch (_) { /* closing anyway */ }
      const socket = state.socket;
      state.socket = null;
      socket.close(1000, 'left');
    }
    state.joined = false;
    state.peers.clear();
    stopMedia();
    setAiStatus('—', '');
    setAiPresence(false);
    renderPeople();
    setConn('offline', '');
    $('room').classList.add('hidden');
    $('join-panel').classList.remove('hidden');
    $('me').classList.add('hidden');
  }

  // ---- wiring ----------------------------------------------------------

  function start() {
    document.title = 'Room ' + roomId;
    $('title').textContent = 'Room ' + roomId;
    $('name').value = sessionStorage.getItem(NAME_KEY) || '';
    $('role').value = sessionStorage.getItem(ROLE_KEY) || 'coach';

    $('join-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const userName = $('name').value.trim();
      if (!userName) return;
      const userRole = $('role').value === 'client' ? 'client' : 'coach';
      sessionStorage.setItem(NAME_KEY, userName);
      sessionStorage.setItem(ROLE_KEY, userRole);
      state.me = { userId: userId(), userName, userRole };
      state.wanted = true;
      state.attempt = 0;
      state.handRaised = false;
      $('me').textContent = userName + ' · ' + userRole;
      $('me').classList.remove('hidden');
      $('join-panel').classList.add('hidden');
      $('room').classList.remove('hidden');
      renderControls();
      connect();
    });

    const control = (action) => {
      if (send({ type: 'ai_control', action })) log('you asked the AI to ' + action.replace('_', ' '));
    };
    $('pause').addEventListener('click', () => control('pause'));
    $('resume').addEventListener('click', () => control('resume'));
    $('end').addEventListener('click', () => control('end_session'));
    $('hand').addEventListener('click', () => {
      const next = !state.handRaised;
      if (send({ type: 'client_signal', action: 'hand_raised', value: next })) {
        state.handRaised = next;
        if (next) state.hands.add(state.me.userId); else state.hands.delete(state.me.userId);
        renderControls();
        renderPeople();
      }
    });
    $('say-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const text = $('say-text').value.trim();
      if (!text) return;
      if (send({ type: 'ai_control', action: 'say', text })) {
        log('you said to the AI: ' + text);
        $('say-text').value = '';
      }
    });
    $('leave').addEventListener('click', leave);
    window.addEventListener('pagehide', () => {
      if (state.socket) state.socket.close(1000, 'page closed');
    });
    renderControls();
  }

  start();
})();
