// The media scenario of the bench suite (tests/src/bench_media.rs runs it inside a
// network namespace with only `lo`, against the release cpu-server and gpu-orb in test
// mode, which echoes each human's audio back): the orb's RSS and CPU with 0, 1 and 4
// audio peers, the orb's own forwarding delay from its heartbeat, and the echo round
// trip as a page hears it. Prints `MEDIA <json>` figure lines; exits non-zero when a
// phase cannot be reached (the suite reports that as a note).
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { until, uniqueRoom } = require('./lib.js');
const { writeTone, cpuTicks, procStatus, launchWithMicrophone, openPeerPage, probe, aiId, orbRecord } = require('./media_kit.js');

/** CPU and memory are averaged over this window once a phase has settled. */
const WINDOW_MS = Number(process.env.BENCH_MEDIA_WINDOW_MS || 5000);
const SETTLE_MS = 3000;
const PULSES = Number(process.env.BENCH_MEDIA_PULSES || 15);
const CLK_TCK = 100;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const figure = (obj) => console.log('MEDIA ' + JSON.stringify(obj));

const status = procStatus;

/** Anonymous (heap, stacks) and file-backed (mapped binary and libraries) resident memory, MiB. */
function rssParts(pid) {
  return { anonMiB: status(pid, 'RssAnon') / 1024, fileMiB: status(pid, 'RssFile') / 1024, threads: status(pid, 'Threads') };
}

/** The orb's RSS at the end of, and its CPU (percent of one core) over, a window. */
async function measure(pid, peers) {
  await sleep(SETTLE_MS);
  const t0 = Date.now();
  const c0 = cpuTicks(pid);
  await sleep(WINDOW_MS);
  const cpu = ((cpuTicks(pid) - c0) / CLK_TCK) / ((Date.now() - t0) / 1000) * 100;
  const out = { phase: 'orb', peers, rssMiB: status(pid, 'VmRSS') / 1024, cpuPercent: cpu, ...rssParts(pid) };
  figure(out);
  return out;
}

async function waitConnected(page, peerId, what) {
  return until(`${what} connected with audio`, 20000, async () => {
    const p = await probe(page, peerId);
    return p && p.connection === 'connected' && p.packets > 20 && p.level > 0 ? p : null;
  });
}

/**
 * Echo round trip as the page hears it: the page's send track to the AI is replaced by a
 * WebAudio oscillator gated on and off; each pulse's onset is timed from the moment the
 * gate opens to the moment the AI's track (played, and tapped by an analyser) carries it.
 * Includes the browser's capture, Opus packetisation (20 ms), the network, the orb, the
 * jitter buffer and playout; polling adds up to a few ms.
 */
async function echoRoundTrips(page, ai, pulses) {
  return page.evaluate(async ({ id, pulses }) => {
    const entry = window.mediaPeer.state.pcs.get(id);
    const ctx = new AudioContext();
    await ctx.resume();
    const osc = ctx.createOscillator();
    osc.frequency.value = 800;
    const gate = ctx.createGain();
    gate.gain.value = 0;
    const dest = ctx.createMediaStreamDestination();
    osc.connect(gate).connect(dest);
    osc.start();
    const sender = entry.pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
    await sender.replaceTrack(dest.stream.getAudioTracks()[0]);
    const receiver = entry.pc.getReceivers().find((r) => r.track.kind === 'audio');
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 256;
    ctx.createMediaStreamSource(new MediaStream([receiver.track])).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    const rms = () => {
      analyser.getFloatTimeDomainData(buf);
      let s = 0;
      for (const v of buf) s += v * v;
      return Math.sqrt(s / buf.length);
    };
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const samples = [];
    const missed = [];
    await sleep(1500); // the tone of the fake microphone drains out of the jitter buffer
    for (let i = 0; i < pulses; i++) {
      const quiet = Date.now() + 2000;
      while (rms() > 0.02 && Date.now() < quiet) await sleep(5);
      gate.gain.setValueAtTime(0.5, ctx.currentTime);
      const t0 = performance.now();
      let heard = null;
      while (performance.now() - t0 < 1500) {
        if (rms() > 0.05) { heard = performance.now() - t0; break; }
        await new Promise((r) => setTimeout(r, 1));
      }
      gate.gain.setValueAtTime(0, ctx.currentTime + 0.3);
      if (heard === null) missed.push(i); else samples.push(heard);
      await sleep(900);
    }
    osc.stop();
    await ctx.close();
    return { samples, missed };
  }, { id: ai, pulses });
}

/** The orb's own forwarding delay per peer, from its last heartbeat (cumulative since each peer began). */
async function forwardDelay(room, peers) {
  const media = (await orbRecord(room))?.media ?? [];
  figure({ phase: 'forward', peers, each: media.map((m) => ({
    peer: m.peer, p99us: m.forward_delay_p99_us, maxUs: m.forward_delay_max_us, framesOut: m.frames_out })) });
}

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-media-'));
  const wav = path.join(dir, 'tone.wav');
  writeTone(wav, 0.3, 440);
  const browser = await launchWithMicrophone(wav);
  try {
    const room = uniqueRoom('benchmedia');
    const pages = [];
    const open = async (id, role) => {
      const p = await openPeerPage(browser, id);
      await p.page.evaluate(([r, u, ro]) => window.mediaPeer.start(r, u, ro, false, { holdAi: true, video: false }), [room, id, role]);
      pages.push({ id, page: p.page });
      return p.page;
    };
    const coach = await open('coach-1', 'coach');
    const ai = await until('the AI in the room', 20000, () => aiId(coach));
    const record = await until('the orb record with its pid', 20000, async () => (await orbRecord(room))?.pid ?? null);
    const pid = record;
    await measure(pid, 0);

    await coach.evaluate(() => window.mediaPeer.connectAi());
    await waitConnected(coach, ai, 'coach -> AI');
    await measure(pid, 1);
    await forwardDelay(room, 1);

    const echo = await echoRoundTrips(coach, ai, PULSES);
    const sorted = [...echo.samples].sort((a, b) => a - b);
    figure({ phase: 'echo', pulses: PULSES, heard: sorted.length, missed: echo.missed.length,
      medianMs: quantile(sorted, 0.5), p90Ms: quantile(sorted, 0.9), samplesMs: sorted.map((v) => Math.round(v * 10) / 10) });

    for (let i = 2; i <= 4; i++) {
      const page = await open(`client-${i}`, 'client');
      await until(`the AI in client-${i}'s page`, 20000, () => aiId(page));
      await page.evaluate(() => window.mediaPeer.connectAi());
      await waitConnected(page, ai, `client-${i} -> AI`);
    }
    const ids = pages.map((p) => p.id);
    await until('the orb reporting 4 connected peers with packets', 15000, async () => {
      const media = (await orbRecord(room))?.media ?? [];
      const live = media.filter((m) => ids.includes(m.peer) && (m.ice === 'connected' || m.ice === 'completed') && m.packets_in > 20);
      return live.length === ids.length ? live : null;
    }).catch(async (err) => {
      console.error('orb media: ' + JSON.stringify((await orbRecord(room))?.media));
      throw err;
    });
    await measure(pid, 4);

    await forwardDelay(room, 4);
  } finally {
    await browser.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err) => {
  console.error('bench_media failed: ' + (err && err.stack || err));
  process.exit(1);
});
