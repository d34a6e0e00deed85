// The voice scenario of the bench suite (tests/src/bench_voice.rs runs it in a private
// loopback namespace against the release binaries, the orb's providers and brain being
// the stub): a coach page whose microphone loops a short spoken phrase between silences,
// with ORB_VOICE_REPLY=always, so every turn is answered (a short answer). It waits for
// BENCH_VOICE_TURNS answers and samples the orb's CPU and RSS meanwhile; the latencies
// are in the orb's log (read by the Rust side). Prints `MEDIA <json>` figure lines.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { until, uniqueRoom } = require('./lib.js');
const { writeSpeech, cpuTicks, procStatus, launchWithMicrophone, openPeerPage, aiId, orbRecord } = require('./media_kit.js');

const TURNS = Number(process.env.BENCH_VOICE_TURNS || 50);
const figure = (obj) => console.log('MEDIA ' + JSON.stringify(obj));

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-voice-'));
  const wav = path.join(dir, 'speech.wav');
  const speechMs = writeSpeech(wav, 'Hey assistant', 100, 1300);
  const browser = await launchWithMicrophone(wav);
  try {
    const room = uniqueRoom('benchvoice');
    const coach = await openPeerPage(browser, 'coach');
    await coach.page.evaluate((r) => window.mediaPeer.start(r, 'coach-1', 'coach', false, { video: false }), room);
    await until('the AI in the room', 20000, () => aiId(coach.page));
    const pid = await until('the orb record with its pid', 20000, async () => (await orbRecord(room))?.pid ?? null);
    const answers = async () => (await coach.page.evaluate(() => window.mediaPeer.state.aiEvents)).filter((e) => e.type === 'ai_response').length;
    await until('the first answer', 30000, async () => ((await answers()) >= 1 ? true : null));
    const t0 = Date.now();
    const c0 = cpuTicks(pid);
    let rssMax = 0;
    const periodMs = 100 + speechMs + 1300;
    await until(`${TURNS} answers`, TURNS * periodMs * 2 + 20000, async () => {
      rssMax = Math.max(rssMax, procStatus(pid, 'VmRSS') / 1024);
      return (await answers()) >= TURNS ? true : null;
    }, 200);
    const cpu = ((cpuTicks(pid) - c0) / 100) / ((Date.now() - t0) / 1000) * 100;
    const record = await orbRecord(room);
    figure({ room, pid, speechMs, periodMs, turns: await answers(), cpuPercent: cpu, rssMaxMiB: rssMax, voice: record?.voice ?? null });
  } finally {
    await browser.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err) => {
  console.error('bench_voice failed: ' + (err && err.stack || err));
  process.exit(1);
});
