// The operator dashboard: a live view of orbs, rooms and capacity from the
// server-sent events of GET /api/events, and the admin API's kill/reset buttons.
// The admin token is asked for once and kept in this tab (sessionStorage); it is
// sent as a bearer header (the feed is read with fetch, not EventSource, so the
// token never appears in a URL). Per room it shows why its last orb ended or is
// not running (GET /api/orbs/{room}/events, fetched again when the room's orb
// changes); a click on a room opens that timeline.
'use strict';

(() => {
  const TOKEN_KEY = 'dashboard.adminToken';
  const HISTORY_MS = 5 * 60 * 1000;
  const STALE_MS = 5000;
  const BACKOFF_MAX_MS = 15000;

  const $ = (id) => document.getElementById(id);
  const history = new Map(); // room -> [{t, rss, cpu}]
  let feedAbort = null;
  let attempt = 0;
  let retryTimer = null;
  let lastSnapshotAt = 0;
  let lastSnapshot = null;
  const whys = new Map(); // room -> {sig, why, events}
  let openRoom = null; // the room whose timeline is shown

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  function showError(text) {
    $('error').textContent = text || '';
    $('error').classList.toggle('hidden', !text);
  }

  function setFeed(text, kind) {
    $('feed').textContent = text;
    $('feed').className = 'badge' + (kind ? ' ' + kind : '');
  }

  function askToken(message) {
    stopFeed();
    sessionStorage.removeItem(TOKEN_KEY);
    $('token-panel').classList.remove('hidden');
    $('data').classList.add('hidden');
    $('sign-out').classList.add('hidden');
    setFeed('no token', 'warn');
    showError(message || '');
    $('token').focus();
  }

  // ---- formatting ------------------------------------------------------

  function duration(ms) {
    if (ms == null) return '–';
    const s = Math.floor(ms / 1000);
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + (s % 60) + ' s';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }
  const mb = (bytes) => (bytes == null ? '–' : (bytes / 1048576).toFixed(1) + ' MB');
  // The GPU of its slot (ORB_GPUS) and its GPU memory (NVML), either or both.
  const gpuText = (orb) =>
    [orb.gpu, orb.gpu_memory_bytes == null ? null : mb(orb.gpu_memory_bytes)].filter((p) => p != null).join(' · ') || '–';
  // A Slurm job (ORB_LAUNCHER=slurm): its id and node, or why it waits.
  const jobText = (p) => {
    if (p == null) return '–';
    const where = p.node ? ' @ ' + p.node + (p.gpu ? ' GPU ' + p.gpu : '') : p.reason ? ' (' + p.reason + ')' : '';
    return (p.job || 'submitting') + where;
  };
  const pct = (v) => (v == null ? '–' : v.toFixed(1) + ' %');
  const STATE_KIND = { ready: 'ok', spawning: 'warn', queued: 'warn', restarting: 'warn', stopping: 'warn', unresponsive: 'bad', parked: 'bad' };

  // `label` names the column for the narrow layout, where rows become cards.
  function cell(row, text, cls, label) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    if (label) td.dataset.label = label;
    row.appendChild(td);
    return td;
  }

  function button(label, cls, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.className = cls;
    b.addEventListener('click', onClick);
    return b;
  }

  // ---- charts ----------------------------------------------------------

  function record(snapshot) {
    const now = snapshot.at_ms || Date.now();
    const live = new Set();
    for (const orb of snapshot.orbs) {
      live.add(orb.room);
      const points = history.get(orb.room) || [];
      points.push({ t: now, rss: orb.rss_bytes, cpu: orb.cpu_percent });
      while (points.length && now - points[0].t > HISTORY_MS) points.shift();
      history.set(orb.room, points);
    }
    for (const room of history.keys()) if (!live.has(room)) history.delete(room);
  }

  function drawChart(canvas, points) {
    const ratio = window.devicePixelRatio || 1;
    const w = 180, h = 44;
    canvas.width = w * ratio;
    canvas.height = h * ratio;
    canvas.dataset.samples = String(points.length);
    const ctx = canvas.getContext('2d');
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, w, h);
    if (!points.length) return;
    const t1 = points[points.length - 1].t;
    // The x axis spans the history kept, at least 20 s, at most 5 minutes.
    const span = Math.min(HISTORY_MS, Math.max(20000, t1 - points[0].t));
    const x = (t) => w - 2 - ((t1 - t) / span) * (w - 4);
    const series = (key, max, color) => {
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let started = false;
      for (const p of points) {
        if (p[key] == null) continue;
        const y = h - 3 - (p[key] / max) * (h - 6);
        if (started) ctx.lineTo(x(p.t), y); else ctx.moveTo(x(p.t), y);
        started = true;
      }
      if (started) ctx.stroke();
    };
    const rssMax = Math.max(1, ...points.map((p) => p.rss || 0)) * 1.1;
    const cpuMax = Math.max(5, ...points.map((p) => p.cpu || 0)) * 1.1;
    series('rss', rssMax, '#2457c5');
    series('cpu', cpuMax, '#b26a00');
  }

  // ---- actions ---------------------------------------------------------

  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + token() };
    if (body) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined, cache: 'no-store' });
    if (res.status === 401) {
      askToken('The admin token was refused.');
      throw new Error('unauthorized');
    }
    let data = null;
    try { data = await res.json(); } catch (_) { /* empty body */ }
    if (!res.ok) throw new Error((data && (data.error || data.message)) || res.status + ' ' + res.statusText);
    return data;
  }

  async function act(label, method, path, body) {
    try {
      showError('');
      await api(method, path, body);
    } catch (e) {
      if (e.message !== 'unauthorized') showError(label + ' failed: ' + e.message);
    }
  }

  const room = (r) => encodeURIComponent(r);
  const killOrb = (r) => act('Kill ' + r, 'DELETE', '/api/orbs/' + room(r) + '?wait=false');
  const resetOrb = (r) => act('Reset ' + r, 'POST', '/api/orbs/' + room(r) + '/reset');
  const startOrb = (r) => act('Start orb in ' + r, 'POST', '/api/orbs', { room: r });

  // ---- why and timeline ------------------------------------------------

  // What identifies the room's orb now: its why is fetched again when this changes.
  const orbSig = (orb) => (orb ? orb.state + ':' + orb.pid + ':' + orb.restarts : 'none');

  async function refreshWhy(r, sig, force) {
    const known = whys.get(r);
    if (!force && known && known.sig === sig) return;
    whys.set(r, { sig, why: known ? known.why : '…', events: known ? known.events : [] });
    try {
      const data = await api('GET', '/api/orbs/' + room(r) + '/events');
      whys.set(r, { sig, why: data.why || '–', events: data.events || [] });
    } catch (e) {
      whys.set(r, { sig, why: e.message === '404 Not Found' || /not.found|unknown/i.test(e.message) ? 'no orb yet' : '–', events: [] });
    }
    if (lastSnapshot) render(lastSnapshot);
  }

  function eventText(e) {
    const fields = Object.entries(e)
      .filter(([k, v]) => k !== 'at_ms' && k !== 'event' && v !== null && typeof v !== 'object')
      .map(([k, v]) => k + '=' + v);
    return new Date(e.at_ms).toLocaleTimeString() + ' ' + e.event + (fields.length ? ' ' + fields.join(' ') : '');
  }

  function timelineRow(r, columns) {
    const tr = document.createElement('tr');
    tr.className = 'timeline';
    tr.dataset.room = r;
    const td = document.createElement('td');
    td.colSpan = columns;
    const list = document.createElement('ol');
    list.className = 'events';
    for (const e of (whys.get(r) || { events: [] }).events) {
      const li = document.createElement('li');
      li.dataset.event = e.event;
      li.textContent = eventText(e);
      list.appendChild(li);
    }
    if (!list.children.length) td.textContent = 'No events.';
    else td.appendChild(list);
    tr.appendChild(td);
    return tr;
  }

  // One line per peer of the orb's media (`media` is absent before the orb has media).
  function mediaText(media) {
    if (!Array.isArray(media) || !media.length) return '–';
    return media
      .map((peer) =>
        Object.entries(peer || {})
          .filter(([, v]) => v !== null && typeof v !== 'object')
          .map(([k, v]) => k + ' ' + v)
          .join(', '))
      .join('; ');
  }

  // The orb's voice (`voice` is absent when its voice is off): stage, answers, errors, latency.
  function voiceText(voice) {
    if (!voice || typeof voice !== 'object') return '–';
    const parts = [voice.stage + (voice.pending_ms != null ? ' (' + duration(voice.pending_ms) + ' pending)' : '')];
    parts.push(voice.answers + '/' + voice.utterances + ' answered');
    if (voice.errors) parts.push(voice.errors + ' errors, last ' + voice.last_error);
    if (voice.last_latency_ms != null) parts.push('first audio ' + voice.last_latency_ms + ' ms');
    return parts.join(', ');
  }

  // ---- rendering -------------------------------------------------------

  function render(snapshot) {
    const { orbs, rooms, capacity } = snapshot;
    $('capacity').textContent = capacity.active + ' / ' + capacity.max + ' orbs running';
    $('capacity').dataset.active = String(capacity.active);
    $('capacity').dataset.max = String(capacity.max);
    $('queue').textContent = 'queue ' + capacity.queued;
    $('queue').className = 'badge' + (capacity.queued ? ' warn' : '');
    const warm = capacity.warm;
    $('warm').classList.toggle('hidden', !warm || warm.size === 0);
    if (warm && warm.size > 0) {
      $('warm').textContent = 'warm ' + warm.ready + ' / ' + warm.size + (warm.disabled ? ' disabled' : warm.parked ? ' parked' : '');
      $('warm').className = 'badge' + (warm.disabled ? ' bad' : warm.parked || warm.ready === 0 ? ' warn' : ' ok');
    }
    $('capacity-bar').style.width = Math.min(100, capacity.max ? (100 * capacity.active) / capacity.max : 0) + '%';

    const tbody = $('orbs');
    tbody.textContent = '';
    for (const orb of orbs) {
      const tr = document.createElement('tr');
      tr.dataset.room = orb.room;
      tr.dataset.pid = orb.pid == null ? '' : String(orb.pid);
      tr.dataset.state = orb.state;
      cell(tr, orb.room, 'room', 'Room');
      cell(tr, orb.pid == null ? '–' : String(orb.pid), 'num pid', 'PID');
      const st = cell(tr, '', '', 'State');
      const badge = document.createElement('span');
      badge.className = 'badge ' + (STATE_KIND[orb.state] || '');
      badge.textContent = orb.state + (orb.queue_position ? ' #' + orb.queue_position : '');
      if (orb.stop_reason) badge.title = 'stopping: ' + orb.stop_reason;
      st.appendChild(badge);
      cell(tr, duration(orb.uptime_ms), 'num', 'Uptime');
      cell(tr, String(orb.restarts), 'num restarts', 'Restarts');
      cell(tr, mb(orb.rss_bytes), 'num', 'RSS');
      cell(tr, pct(orb.cpu_percent), 'num', 'CPU');
      cell(tr, orb.last_heartbeat_ms == null ? '–' : duration(orb.last_heartbeat_ms) + ' ago', 'num', 'Heartbeat');
      cell(tr, mediaText(orb.media), 'media', 'Media');
      cell(tr, voiceText(orb.voice), 'voice', 'Voice');
      cell(tr, gpuText(orb), 'gpu', 'GPU');
      cell(tr, jobText(orb.placement), 'job', 'Job');
      const chartCell = cell(tr, '', '', 'RSS / CPU');
      const canvas = document.createElement('canvas');
      canvas.className = 'chart';
      canvas.setAttribute('aria-label', 'RSS and CPU of ' + orb.room);
      chartCell.appendChild(canvas);
      drawChart(canvas, history.get(orb.room) || []);
      const actions = cell(tr, '');
      actions.appendChild(button('Kill', 'danger kill', () => killOrb(orb.room)));
      if (orb.state === 'parked') actions.appendChild(button('Reset', 'secondary reset', () => resetOrb(orb.room)));
      tbody.appendChild(tr);
    }
    $('no-orbs').classList.toggle('hidden', orbs.length > 0);

    const withOrb = new Map(orbs.map((o) => [o.room, o]));
    const rbody = $('rooms');
    rbody.textContent = '';
    for (const r of rooms) {
      const tr = document.createElement('tr');
      tr.dataset.room = r.room;
      cell(tr, r.room, 'room', 'Room');
      const people = r.participants.map((p) => p.userName + ' (' + p.userRole + ')').join(', ');
      cell(tr, people || '–', 'people', 'Participants').dataset.count = String(r.participants.length);
      const orb = withOrb.get(r.room);
      cell(tr, orb ? orb.state : 'none', '', 'Orb');
      cell(tr, (whys.get(r.room) || { why: '…' }).why, 'why', 'Why');
      refreshWhy(r.room, orbSig(orb), false);
      const actions = cell(tr, '');
      if (!orb) actions.appendChild(button('Start orb', 'secondary start', () => startOrb(r.room)));
      tr.classList.add('clickable');
      tr.title = 'Show the timeline of ' + r.room;
      tr.addEventListener('click', (ev) => {
        if (ev.target.closest('button')) return;
        openRoom = openRoom === r.room ? null : r.room;
        if (openRoom) refreshWhy(r.room, orbSig(orb), true);
        else render(lastSnapshot);
      });
      rbody.appendChild(tr);
      if (openRoom === r.room) rbody.appendChild(timelineRow(r.room, 5));
    }
    $('no-rooms').classList.toggle('hidden', rooms.length > 0);
  }

  // ---- the feed --------------------------------------------------------

  function stopFeed() {
    clearTimeout(retryTimer);
    if (feedAbort) feedAbort.abort();
    feedAbort = null;
  }

  function retry() {
    const base = Math.min(BACKOFF_MAX_MS, 500 * 2 ** attempt);
    attempt += 1;
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    setFeed('reconnecting in ' + (delay / 1000).toFixed(1) + ' s', 'bad');
    retryTimer = setTimeout(startFeed, delay);
  }

  function onEvent(name, data) {
    if (name !== 'snapshot') return;
    let snapshot;
    try { snapshot = JSON.parse(data); } catch (_) { return; }
    attempt = 0;
    lastSnapshotAt = Date.now();
    lastSnapshot = snapshot;
    record(snapshot);
    render(snapshot);
    setFeed('live', 'ok');
    $('updated').textContent = 'updated ' + new Date(lastSnapshotAt).toLocaleTimeString();
  }

  async function startFeed() {
    stopFeed();
    if (!token()) return askToken();
    const controller = new AbortController();
    feedAbort = controller;
    setFeed('connecting…', 'warn');
    let res;
    try {
      res = await fetch('/api/events', {
        headers: { Authorization: 'Bearer ' + token(), Accept: 'text/event-stream' },
        signal: controller.signal,
        cache: 'no-store',
      });
    } catch (_) {
      if (!controller.signal.aborted) retry();
      return;
    }
    if (res.status === 401) return askToken('The admin token was refused.');
    if (!res.ok || !res.body) {
      showError('Live feed unavailable: ' + res.status + ' ' + res.statusText);
      return retry();
    }
    $('token-panel').classList.add('hidden');
    $('data').classList.remove('hidden');
    $('sign-out').classList.remove('hidden');
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length) onEvent(name, data.join('\n'));
        }
      }
    } catch (_) {
      if (controller.signal.aborted) return;
    }
    if (!controller.signal.aborted) retry();
  }

  // Heartbeat ages and the "live" badge go stale if the feed silently stops.
  setInterval(() => {
    if (lastSnapshot && Date.now() - lastSnapshotAt > STALE_MS && feedAbort) setFeed('stale', 'warn');
  }, 1000);

  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('token').value = '';
    showError('');
    attempt = 0;
    startFeed();
  });
  $('sign-out').addEventListener('click', () => askToken(''));
  $('kill-all').addEventListener('click', () => {
    if (window.confirm('Kill every orb? Every room loses its AI.')) act('Kill all', 'DELETE', '/api/orbs?wait=false');
  });

  startFeed();
})();
