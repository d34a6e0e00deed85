// The AI's media through a real coturn (run by tests/webrtc_media.rs in a network namespace
// of its own): the page takes /api/turn-credentials and relays only (`iceTransportPolicy:
// 'relay'`), the orb listens on its own internal address (ORB_MEDIA_IP, a veth address the
// test made), and coturn may relay to that address and nothing else. The page hears its own
// echo, and the orb (admin API, heartbeat `media`) saw datagrams from the relay address only.
// Figures are printed as `MEDIA <json>` lines.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { until, uniqueRoom } = require('./lib.js');
const { writeTone, launchWithMicrophone, openPeerPage, probe, aiId, mediaOf } = require('./media_kit.js');

const ORB_IP = process.env.ORB_IP;
const RELAY_IP = process.env.RELAY_IP;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'media-turn-'));
let browser;
after(async () => {
  await browser?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('through coturn only: the page hears its echo and the orb hears only the relay', async () => {
  assert.ok(ORB_IP && RELAY_IP, 'ORB_IP and RELAY_IP are set by tests/webrtc_media.rs');
  const started = Date.now();
  writeTone(path.join(dir, 'coach.wav'), 0.5, 440);
  browser = await launchWithMicrophone(path.join(dir, 'coach.wav'));
  const room = uniqueRoom('media-turn');
  const coach = await openPeerPage(browser, 'coach');
  await coach.page.evaluate((r) => window.mediaPeer.start(r, 'coach-1', 'coach', true), room);
  const config = await coach.page.evaluate(() => window.mediaPeer.state.rtcConfig);
  assert.equal(config.iceTransportPolicy, 'relay');
  assert.ok(config.iceServers.some((s) => s.username && s.credential), JSON.stringify(config));
  const ai = await until('the AI in the page', 15000, () => aiId(coach.page));
  const heard = await until('coach -> AI connected through TURN with audio', 20000, async () => {
    const p = await probe(coach.page, ai);
    return p && p.connection === 'connected' && p.packets > 20 && p.level > 0 ? p : null;
  });
  const connectedMs = Date.now() - started;
  // The browser's side of the pair is its relay candidate; the orb's is its own address.
  assert.equal(heard.pair?.local, 'relay', JSON.stringify(heard.pair));
  assert.equal(heard.pair.localAddress, RELAY_IP, JSON.stringify(heard.pair));
  assert.equal(heard.pair.remote, ORB_IP, JSON.stringify(heard.pair));
  const answer = await coach.page.evaluate((id) => window.mediaPeer.state.pcs.get(id).lastAnswer, ai);
  assert.match(answer, new RegExp(`a=candidate:\\S+ 1 udp \\d+ ${ORB_IP.replace(/\./g, '\\.')} \\d+ typ host`));
  // The echo's level settles within a few seconds (longer on a loaded machine: a full
  // test run once read 0.57 against 0.50 one second after connecting).
  let echo = null;
  try {
    echo = await until('the echo at the source level', 8000, async () => {
      const p = await probe(coach.page, ai);
      return p && Math.abs(p.level - p.source) < 0.06 ? p : null;
    });
  } catch (e) {
    const last = await probe(coach.page, ai);
    assert.fail(`echo ${last?.level} vs source ${last?.source}: ${e.message}`);
  }

  const media = await mediaOf(room, 'coach-1');
  const fromRelay = media.sources.every((s) => s.address.startsWith(RELAY_IP + ':'));
  console.log('MEDIA ' + JSON.stringify({ turn: { connectedMs, level: echo.level, source: echo.source, pair: heard.pair, orbSources: media.sources, otherSources: media.other_sources, packetsIn: media.packets_in } }));
  assert.ok(media.sources.length > 0 && fromRelay && media.other_sources === 0, 'orb heard another source than the relay: ' + JSON.stringify(media.sources));
  assert.deepEqual(coach.errors, []);
  assert.deepEqual(await coach.page.evaluate(() => window.mediaPeer.state.log), []);
});
