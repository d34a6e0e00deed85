// The AI in the call's media, against the real cpu-server and a real gpu-orb in test mode
// (run by tests/webrtc_media.rs inside a network namespace with only `lo`): a coach page
// and a client page, each in its own Chromium with its own fake microphone (a steady tone
// of a different amplitude), connect to the AI and hear their own audio echoed back;
// hostile signals get refusals while the other peer keeps its audio; a renegotiation
// keeps the connection; 100 connect/close cycles leave nothing behind in the orb.
// Figures are printed as `MEDIA <json>` lines.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { until, uniqueRoom } = require('./lib.js');
const { writeTone, launchWithMicrophone, openPeerPage, probe, aiId, mediaOf } = require('./media_kit.js');

const COACH_AMPLITUDE = 0.5;
const CLIENT_AMPLITUDE = 0.15;
/** How far the echoed level may be from the page's own source (0.51 against 0.50 measured). */
const LEVEL_TOLERANCE = 0.06;

const aiErrors = (page) => page.evaluate(() => window.mediaPeer.state.aiErrors);
const send = (page, msg) => page.evaluate((m) => window.mediaPeer.send(m), msg);

/** Waits until the page's connection to `peerId` is connected and hears audio. */
async function waitConnected(page, peerId, what) {
  return until(`${what} connected with audio`, 15000, async () => {
    const p = await probe(page, peerId);
    return p && p.connection === 'connected' && p.packets > 20 && p.level > 0 ? p : null;
  });
}

/** The median of `n` samples of what the page hears from `peerId`, 100 ms apart. */
async function steadyLevel(page, peerId, n = 8) {
  const levels = [];
  let last;
  for (let i = 0; i < n; i++) {
    last = await probe(page, peerId);
    levels.push(last.level);
    await new Promise((r) => setTimeout(r, 100));
  }
  levels.sort((a, b) => a - b);
  return { level: levels[Math.floor(n / 2)], source: last.source, packets: last.packets };
}

/** Packets from `peerId` keep arriving, at a level still matching `source`. */
async function stillHearsItself(page, peerId, what) {
  const before = await probe(page, peerId);
  await new Promise((r) => setTimeout(r, 600));
  const now = await steadyLevel(page, peerId, 4);
  assert.ok(now.packets > before.packets + 10, `${what}: audio from the AI stopped (${before.packets} -> ${now.packets})`);
  assert.ok(Math.abs(now.level - now.source) < LEVEL_TOLERANCE, `${what}: echo ${now.level} vs own source ${now.source}`);
  return now;
}

let dir;
let coachBrowser;
let clientBrowser;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'media-test-'));
  writeTone(path.join(dir, 'coach.wav'), COACH_AMPLITUDE, 440);
  writeTone(path.join(dir, 'client.wav'), CLIENT_AMPLITUDE, 660);
  [coachBrowser, clientBrowser] = await Promise.all([
    launchWithMicrophone(path.join(dir, 'coach.wav')),
    launchWithMicrophone(path.join(dir, 'client.wav')),
  ]);
});
after(async () => {
  await Promise.all([coachBrowser?.close(), clientBrowser?.close()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('coach and client each hear their own echo from the AI; bad signals are refused; renegotiation holds', async () => {
  const started = Date.now();
  const room = uniqueRoom('media');
  const coach = await openPeerPage(coachBrowser, 'coach');
  const client = await openPeerPage(clientBrowser, 'client');

  await coach.page.evaluate((r) => window.mediaPeer.start(r, 'coach-1', 'coach'), room);
  const ai = await until('the AI in the coach page', 15000, () => aiId(coach.page));
  assert.match(ai, /^ai-orb-/);
  const coachAi = await waitConnected(coach.page, ai, 'coach -> AI');
  const coachConnectedMs = Date.now() - started;

  await client.page.evaluate((r) => window.mediaPeer.start(r, 'client-1', 'client'), room);
  await waitConnected(client.page, ai, 'client -> AI');
  // The humans' own connection, built by the same rules, is unaffected by the AI's.
  await waitConnected(coach.page, 'client-1', 'coach -> client');
  await waitConnected(client.page, 'coach-1', 'client -> coach');

  // The orb's own view through the admin API: both peers connected, packets in and out,
  // every datagram from loopback (the pages' host candidates).
  const coachMedia = await mediaOf(room, 'coach-1');
  const clientMedia = await mediaOf(room, 'client-1');
  for (const m of [coachMedia, clientMedia]) {
    assert.ok(m.packets_out > 0 && m.bytes_in > 0 && m.last_packet_age_ms < 2000, JSON.stringify(m));
    assert.ok(m.sources.length > 0 && m.sources.every((s) => s.address.startsWith('127.0.0.1:')), JSON.stringify(m.sources));
  }
  console.log('MEDIA ' + JSON.stringify({ orbSaysCoach: coachMedia }));

  const coachEcho = await steadyLevel(coach.page, ai);
  const clientEcho = await steadyLevel(client.page, ai);
  const coachHearsClient = await steadyLevel(coach.page, 'client-1', 4);
  console.log('MEDIA ' + JSON.stringify({
    coachConnectedMs, coachSource: coachEcho.source, coachEcho: coachEcho.level,
    clientSource: clientEcho.source, clientEcho: clientEcho.level, coachHearsClient: coachHearsClient.level,
  }));
  // Each page hears its own source back, not the other's.
  assert.ok(Math.abs(coachEcho.level - coachEcho.source) < LEVEL_TOLERANCE, `coach echo ${coachEcho.level} vs source ${coachEcho.source}`);
  assert.ok(Math.abs(clientEcho.level - clientEcho.source) < LEVEL_TOLERANCE, `client echo ${clientEcho.level} vs source ${clientEcho.source}`);
  assert.ok(Math.abs(coachEcho.level - clientEcho.source) > 0.2, 'the coach hears the client from the AI');
  assert.ok(Math.abs(clientEcho.level - coachEcho.source) > 0.2, 'the client hears the coach from the AI');
  assert.ok(Math.abs(coachHearsClient.level - clientEcho.source) < LEVEL_TOLERANCE, 'coach <- client direct audio');
  // The answer carried the orb's candidate (candidates trickled later would be dropped by the old client).
  const answer = await coach.page.evaluate((id) => window.mediaPeer.state.pcs.get(id).lastAnswer, ai);
  assert.match(answer, /a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host/);
  assert.match(answer, /m=video 0 /, 'video is rejected');
  assert.equal(coachAi.connection, 'connected');

  // Malformed SDP, an offer without audio, a candidate of an earlier connection, an answer:
  // each refused to the client alone (toId, inReplyTo), while the coach's audio from the AI carries on.
  const good = await client.page.evaluate((id) => window.mediaPeer.localSdp(id), ai);
  const fingerprint = good.match(/a=fingerprint:[^\r\n]+/)[0];
  await send(client.page, { type: 'offer', toId: ai, offer: { type: 'offer', sdp: `v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n${fingerprint}\r\nthis is not sdp\r\n` } });
  await send(client.page, { type: 'offer', toId: ai, offer: { type: 'offer', sdp: good.replace(/m=audio \d+ /g, 'm=audio 0 ') } });
  await send(client.page, { type: 'ice-candidate', toId: ai, candidate: { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 9 typ host', sdpMid: '0', usernameFragment: 'stale' } });
  await send(client.page, { type: 'answer', toId: ai, answer: { type: 'answer', sdp: 'v=0' } });
  const refusalsTo = async (who) => (await aiErrors(client.page)).filter((e) => e.inReplyTo === who);
  await until('four refusals to the client', 5000, async () => (await refusalsTo('client-1')).length >= 4).catch(() => {});
  const refusals = await refusalsTo('client-1');
  assert.equal(refusals.length, 4, 'refusals: ' + JSON.stringify(await aiErrors(client.page)));
  const codes = refusals.map((e) => `${e.signal}:${e.code}`);
  assert.deepEqual(codes, ['offer:invalid_field', 'offer:invalid_field', 'ice-candidate:peer_not_found', 'answer:invalid_field']);
  assert.match(refusals[0].message, /malformed SDP/);
  assert.match(refusals[1].message, /no audio/);
  assert.ok(refusals.every((e) => e.fromId === ai && e.toId === 'client-1'));
  assert.deepEqual(await aiErrors(coach.page), [], 'the coach saw refusals meant for the client');
  await stillHearsItself(coach.page, ai, 'coach after the client\'s bad signals');
  await stillHearsItself(client.page, ai, 'client after its own bad signals');

  // Renegotiation on the same connection: a second answer, still connected, still its own echo.
  await coach.page.evaluate((id) => window.mediaPeer.renegotiate(id), ai);
  await until('the second answer', 5000, async () => (await probe(coach.page, ai)).answers >= 2);
  const after = await stillHearsItself(coach.page, ai, 'coach after renegotiation');
  const renegotiated = await probe(coach.page, ai);
  assert.equal(renegotiated.connection, 'connected');
  assert.equal(renegotiated.signaling, 'stable');

  console.log('MEDIA ' + JSON.stringify({ afterRenegotiation: after.level, refusals: codes, testMs: Date.now() - started }));
  assert.deepEqual([...coach.errors, ...client.errors], []);
  const logs = await Promise.all([coach.page, client.page].map((p) => p.evaluate(() => window.mediaPeer.state.log)));
  assert.deepEqual(logs.flat(), [], 'signalling errors in the pages');
});

/** The gpu-orb process of `room` (found by its `--room=` argument), or null. */
function orbPid(room) {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv[0].endsWith('gpu-orb') && argv.includes(`--room=${room}`)) return Number(entry);
    } catch (_) { /* gone */ }
  }
  return null;
}

/** Open descriptors and resident KiB of `pid`. */
function usage(pid) {
  const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
  const rss = Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
  const threads = Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/Threads:\s+(\d+)/)[1]);
  return { fds, rssKiB: rss, threads };
}

test('100 connect/close cycles of one page leave no socket, thread or memory behind in the orb', async () => {
  const CYCLES = 100;
  const started = Date.now();
  const room = uniqueRoom('media-cycles');
  const coach = await openPeerPage(coachBrowser, 'cycles');
  await coach.page.evaluate((r) => window.mediaPeer.start(r, 'coach-2', 'coach'), room);
  const ai = await until('the AI', 15000, () => aiId(coach.page));
  await waitConnected(coach.page, ai, 'coach -> AI');
  const pid = await until('the orb process', 5000, () => orbPid(room));
  const idle = usage(pid);
  // Warm-up: allocator pools and str0m's lazily built tables reach their working size.
  for (let i = 0; i < 10; i++) await coach.page.evaluate((id) => window.mediaPeer.reconnect(id), ai);
  const warm = usage(pid);
  const times = [];
  for (let i = 0; i < CYCLES; i++) times.push(await coach.page.evaluate((id) => window.mediaPeer.reconnect(id), ai));
  const afterCycles = usage(pid);
  await stillHearsItself(coach.page, ai, 'coach after the cycles');
  // The last connection closed without a new one: the orb frees it once ICE reports it gone.
  await coach.page.evaluate((id) => window.mediaPeer.hangUp(id), ai);
  const hungUp = Date.now();
  const freed = await until('the last media socket closed', 20000, () => {
    const u = usage(pid);
    return u.fds < afterCycles.fds ? u : null;
  }).catch(() => usage(pid));
  times.sort((a, b) => a - b);
  console.log('MEDIA ' + JSON.stringify({
    cycles: CYCLES, connectMedianMs: times[CYCLES >> 1], connectMaxMs: times[CYCLES - 1], idle, warm, afterCycles, freed,
    freedAfterHangUpMs: Date.now() - hungUp,
    testMs: Date.now() - started,
  }));
  assert.equal(afterCycles.fds, warm.fds, 'descriptors grew over the cycles');
  assert.equal(afterCycles.threads, warm.threads, 'threads grew over the cycles');
  assert.ok(afterCycles.rssKiB - warm.rssKiB < 2048, `RSS grew ${afterCycles.rssKiB - warm.rssKiB} KiB over ${CYCLES} cycles`);
  assert.equal(freed.fds, afterCycles.fds - 1, 'the closed connection\'s socket is freed');
  assert.deepEqual(coach.errors, []);
});
