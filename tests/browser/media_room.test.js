// Our own room page (/room/{id}) in the call's media, against the real cpu-server and a
// test-mode gpu-orb (run by tests/webrtc_media.rs in its loopback-only namespace): with a
// fake microphone playing a tone, the page joins as the coach, its connection to the AI
// reaches `connected`, and its meter shows the level of the AI's echo. Figures are
// printed as `MEDIA <json>` lines.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { until, uniqueRoom, baseUrl } = require('./lib.js');
const { writeTone, launchWithMicrophone } = require('./media_kit.js');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'media-room-'));
let browser;
after(async () => {
  await browser?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the room page connects to the AI, plays its audio and meters its level', async () => {
  const started = Date.now();
  writeTone(path.join(dir, 'tone.wav'), 0.5, 440);
  browser = await launchWithMicrophone(path.join(dir, 'tone.wav'));
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push('console: ' + msg.text()); });
  page.on('securitypolicyviolation', (v) => errors.push('csp: ' + v));
  page.setDefaultTimeout(15000);
  const room = uniqueRoom('media-room');
  const res = await page.goto(`${baseUrl()}/room/${room}`);
  assert.equal(res.headers()['content-security-policy'], "default-src 'self'; connect-src 'self'");
  await page.fill('#name', 'Coach Carla');
  await page.selectOption('#role', 'coach');
  await page.click('#join');
  await page.waitForFunction(() => document.getElementById('mic').textContent === 'microphone on');
  await page.waitForFunction(() => document.getElementById('ai-media').textContent === 'connected', null, { timeout: 20000 });
  const connectedMs = Date.now() - started;
  const level = await until('a level on the AI meter', 10000, async () => {
    const l = Number(await page.getAttribute('#ai-meter', 'data-level'));
    return l > 0 ? l : null;
  });
  const playing = await page.evaluate(() => document.getElementById('ai-meter').value);
  console.log('MEDIA ' + JSON.stringify({ roomPage: { connectedMs, level, meter: playing } }));
  assert.ok(level > 0.05, `the AI's echo level on the meter: ${level}`);
  const log = await page.evaluate(() => [...document.querySelectorAll('#log li')].map((li) => li.textContent));
  assert.ok(!log.some((l) => l.includes('media:')), 'media errors in the activity log: ' + log.join(' | '));
  assert.deepEqual(errors, []);
});
