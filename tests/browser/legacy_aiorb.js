// A stand-in for the old Node orb (aiorb.js): supervised over Node's IPC channel
// (process.send / process.on('message') only), joined to its room over WebSocket.
// Run by cpu-server as ORB_COMMAND="node --experimental-websocket legacy_aiorb.js"
// with GPU_SERVER_PATH pointing here. It answers `say` with `echo: <text>`.
// With ORB_TEST_DIR set it appends what it receives over IPC to
// $ORB_TEST_DIR/legacy-<room>.log, one JSON object a line, for the tests.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const args = {};
for (const arg of process.argv.slice(2)) {
  const m = /^--([^=]+)(?:=(.*))?$/.exec(arg);
  if (m) args[m[1]] = m[2] === undefined ? true : m[2];
}
const room = args.room || process.env.ROOM_ID;
const session = args.session || process.env.SESSION_ID || String(Date.now());
const host = args['cpu-host'] || process.env.CPU_SERVER_HOST || 'localhost:3000';
const token = process.env.ORB_AUTH_TOKEN || '';
const heartbeatMs = Number(process.env.ORB_HEARTBEAT_INTERVAL) || 1000;
const userId = 'ai-orb-' + session;
const testDir = process.env.ORB_TEST_DIR;

if (typeof process.send !== 'function') {
  console.error('legacy_aiorb.js: no IPC channel (run it under cpu-server, which sets NODE_CHANNEL_FD)');
  process.exit(2);
}
if (typeof WebSocket !== 'function') {
  console.error('legacy_aiorb.js: no global WebSocket (run with node --experimental-websocket, Node >= 20.10)');
  process.exit(2);
}

function record(kind, value) {
  if (!testDir) return;
  fs.appendFileSync(path.join(testDir, `legacy-${room}.log`), JSON.stringify({ kind, ...value }) + '\n');
}

let ws = null;
let ready = false;
let stopping = false;
let status = 'ready';

function sendRoom(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function setStatus(next) {
  status = next;
  sendRoom({ type: 'ai_status', status, sessionId: session });
}

function connect() {
  const url = `ws://${host}/ws-simple/${encodeURIComponent(room)}` + (token ? `?token=${encodeURIComponent(token)}` : '');
  ws = new WebSocket(url);
  ws.addEventListener('open', () => {
    const join = { type: 'join', userId, userName: 'AI Assistant', userRole: 'ai', participantType: 'ai', roomId: room };
    if (token) join.token = token;
    ws.send(JSON.stringify(join));
  });
  ws.addEventListener('message', (event) => {
    let msg;
    try { msg = JSON.parse(event.data); } catch (_) { return; }
    record('room', { type: msg.type, action: msg.action });
    if (msg.type === 'peer-discovery') {
      setStatus(status);
      if (!ready) {
        ready = true;
        process.send({ type: 'orb_ready', roomId: room, participants: (msg.peers || []).length });
      }
    } else if (msg.type === 'ai_control') {
      if (msg.action === 'say' && typeof msg.text === 'string') {
        setStatus('thinking');
        sendRoom({ type: 'ai_response', text: 'echo: ' + msg.text, inReplyTo: msg.fromId });
        setStatus('listening');
      } else if (msg.action === 'pause') {
        setStatus('paused');
      } else if (msg.action === 'resume') {
        setStatus('listening');
      } else if (msg.action === 'end_session') {
        shutdown('session_complete');
      }
    } else if (msg.type === 'error') {
      console.error('room error:', msg.code, msg.message);
    }
  });
  ws.addEventListener('close', () => {
    if (!stopping) setTimeout(connect, 1000);
  });
  ws.addEventListener('error', () => { /* a close follows */ });
}

const beat = setInterval(() => {
  process.send({
    type: 'orb_heartbeat',
    roomId: room,
    timestamp: Date.now(),
    metrics: { cpu: 0, memory: process.memoryUsage().rss / 1048576, latency: 0 },
  });
}, heartbeatMs);
const ping = setInterval(() => sendRoom({ type: 'ping' }), 30000);

function shutdown(reason) {
  if (stopping) return;
  stopping = true;
  clearInterval(beat);
  clearInterval(ping);
  sendRoom({ type: 'ai-orb-shutdown', sessionId: session, reason });
  process.send({ type: 'orb_shutdown', reason }, () => {
    record('exit', { reason });
    if (ws) ws.close(1000, reason);
    setTimeout(() => process.exit(0), 100);
  });
}

process.on('message', (message) => {
  record('ipc', message);
  if (message && message.type === 'shutdown_graceful') shutdown(message.reason || 'shutdown');
});
process.on('disconnect', () => process.exit(0));

connect();
