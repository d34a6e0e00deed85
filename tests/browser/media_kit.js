// Helpers of the media tests (media*.test.js): a fake microphone playing a tone, Chromium
// launched with it, a page of the server's origin running media_peer.js, and the orb's own
// view of its media through the admin API (the heartbeat's `media`).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { until, baseUrl, adminToken } = require('./lib.js');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const PEER_JS = fs.readFileSync(path.join(__dirname, 'media_peer.js'), 'utf8');

/** A mono 16-bit 48 kHz WAV of a sine at `amplitude` (0–1), looped by Chromium. */
function writeTone(file, amplitude, frequency) {
  const rate = 48000;
  const samples = rate * 2;
  const buf = Buffer.alloc(44 + samples * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + samples * 2, 4); buf.write('WAVE', 8);
  buf.write('fmt ', 12); buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24); buf.writeUInt32LE(rate * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34);
  buf.write('data', 36); buf.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) {
    buf.writeInt16LE(Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * frequency * i) / rate)), 44 + i * 2);
  }
  fs.writeFileSync(file, buf);
}

/**
 * A fake-microphone WAV of real speech: `text` spoken by espeak-ng between `leadMs` and
 * `tailMs` of silence (Chromium loops the file). Returns the speech's length in ms.
 */
function writeSpeech(file, text, leadMs, tailMs) {
  const { execFileSync } = require('node:child_process');
  const spoken = file + '.espeak.wav';
  try {
    execFileSync('espeak-ng', ['-w', spoken, text]);
  } catch (err) {
    throw new Error(`espeak-ng is required (apt-get install espeak-ng; tests/install.sh does): ${err.message}`);
  }
  const raw = fs.readFileSync(spoken);
  fs.rmSync(spoken);
  let rate = 0;
  let data = null;
  for (let at = 12; at + 8 <= raw.length;) {
    const id = raw.toString('ascii', at, at + 4);
    const size = raw.readUInt32LE(at + 4);
    if (id === 'fmt ') rate = raw.readUInt32LE(at + 12);
    if (id === 'data') { data = raw.subarray(at + 8, Math.min(raw.length, at + 8 + size)); break; }
    at += 8 + size + (size % 2);
  }
  if (!rate || !data) throw new Error('espeak-ng wrote no PCM');
  const silence = (ms) => Buffer.alloc(Math.round((rate * ms) / 1000) * 2);
  const pcm = Buffer.concat([silence(leadMs), data, silence(tailMs)]);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0); header.writeUInt32LE(36 + pcm.length, 4); header.write('WAVE', 8);
  header.write('fmt ', 12); header.writeUInt32LE(16, 16); header.writeUInt16LE(1, 20); header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24); header.writeUInt32LE(rate * 2, 28); header.writeUInt16LE(2, 32); header.writeUInt16LE(16, 34);
  header.write('data', 36); header.writeUInt32LE(pcm.length, 40);
  fs.writeFileSync(file, Buffer.concat([header, pcm]));
  return Math.round((data.length / 2 / rate) * 1000);
}

/** utime + stime of `pid`, in clock ticks (100 a second). */
function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** A number field of `/proc/<pid>/status` (kB for the memory ones). */
function procStatus(pid, field) {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(field + ':'));
  return Number(line.split(/\s+/)[1]);
}

async function launchWithMicrophone(wav) {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: run \`bash tests/browser/setup.sh\``);
  const { chromium } = require('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${wav}`,
      '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });
}

/**
 * A document of the server's own origin (a secure context on loopback, really loaded
 * from it: Chromium's local-network checks refuse sockets from a page Playwright
 * fulfilled itself) running media_peer.js. `/healthz` has no CSP to stop the script.
 */
async function openPeerPage(browser, label) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(`[${label}] ${err.message}`));
  page.setDefaultTimeout(15000);
  await page.goto(baseUrl() + '/healthz');
  await page.addScriptTag({ content: PEER_JS });
  return { page, errors };
}

const probe = (page, peerId) => page.evaluate((id) => window.mediaPeer.probe(id), peerId);
const aiId = (page) => page.evaluate(() => window.mediaPeer.aiId());

/** The orb record of `room` from the admin API (its `media`: the last heartbeat's per-peer snapshot). */
async function orbRecord(room) {
  const res = await fetch(`${baseUrl()}/api/orbs/${room}`, { headers: { authorization: `Bearer ${adminToken()}` } });
  return res.ok ? res.json() : null;
}

/** Waits until the orb's heartbeat reports a live, connected media peer `userId`. */
async function mediaOf(room, userId) {
  return until(`the orb's heartbeat media for ${userId}`, 10000, async () => {
    const peer = ((await orbRecord(room))?.media ?? []).find((p) => p.peer === userId);
    // ICE `completed` is connected too (the orb's agent may end there, as the stall rule knows).
    const iceUp = peer && (peer.ice === 'connected' || peer.ice === 'completed');
    return iceUp && peer.dtls === 'connected' && peer.packets_in > 20 ? peer : null;
  });
}

module.exports = { writeTone, writeSpeech, cpuTicks, procStatus, launchWithMicrophone, openPeerPage, probe, aiId, orbRecord, mediaOf };
