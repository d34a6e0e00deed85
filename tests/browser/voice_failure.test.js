// How the AI's voice fails (run by tests/voice_call.rs, one scenario per run, in a private
// loopback namespace): a coach page whose microphone loops a spoken sentence talks to a
// real orb whose providers (the stub) fail, time out or hang, or whose media task is
// frozen. EXPECT_CODE is the `ai_status` error code the room must get; with
// EXPECT_RESTART=1 the orb must be replaced (a stall), otherwise it must keep listening:
// a second utterance gets the same error and the orb is never restarted.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { until, uniqueRoom } = require('./lib.js');
const { writeSpeech, launchWithMicrophone, openPeerPage, probe, aiId, orbRecord } = require('./media_kit.js');

const CODE = process.env.EXPECT_CODE;
const RESTART = process.env.EXPECT_RESTART === '1';

const events = (page) => page.evaluate(() => window.mediaPeer.state.aiEvents);
const errors = async (page) => (await events(page)).filter((e) => e.type === 'ai_status' && e.status === 'error');

let dir;
let browser;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'voice-failure-'));
  const wav = path.join(dir, 'speech.wav');
  writeSpeech(wav, 'Hey assistant, are you there?', 500, 2000);
  browser = await launchWithMicrophone(wav);
});
after(async () => {
  await browser?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test(`the room gets ${CODE}${RESTART ? ' and a new orb' : ' and the AI keeps listening'}`, async () => {
  assert.ok(CODE, 'EXPECT_CODE is set');
  const room = uniqueRoom('voicefail');
  const coach = await openPeerPage(browser, 'coach');
  await coach.page.evaluate((r) => window.mediaPeer.start(r, 'coach-1', 'coach', false, { video: false }), room);
  await until('the AI in the room', 20000, () => aiId(coach.page));
  const first = await until('the orb record', 10000, async () => (await orbRecord(room))?.pid ?? null);
  const error = await until(`ai_status error ${CODE}`, 40000, async () => (await errors(coach.page)).find((e) => e.code === CODE));
  console.log('MEDIA ' + JSON.stringify({ code: CODE, error }));
  if (RESTART) {
    const replaced = await until('a new orb', 20000, async () => {
      const r = await orbRecord(room);
      return r && r.pid && r.pid !== first && r.restarts >= 1 ? r : null;
    });
    assert.equal(replaced.last_exit?.cause, CODE, JSON.stringify(replaced.last_exit));
  } else {
    // The AI listens on: the next utterance is heard and fails the same way; no restart.
    await until(`a second ${CODE}`, 30000, async () => ((await errors(coach.page)).filter((e) => e.code === CODE).length >= 2 ? true : null));
    // The heartbeat (every 500 ms here) catches up with what the room was told.
    const record = await until('the heartbeat counting both errors', 5000, async () => {
      const r = await orbRecord(room);
      return r?.voice?.errors >= 2 ? r : null;
    });
    assert.equal(record.pid, first, 'the orb was not replaced');
    assert.equal(record.restarts, 0);
    assert.ok(record.voice.errors >= 2 && record.voice.last_error === CODE, JSON.stringify(record.voice));
    const statuses = (await events(coach.page)).filter((e) => e.type === 'ai_status').map((e) => e.status);
    assert.equal(statuses[statuses.length - 1], 'listening', JSON.stringify(statuses));
    const p = await probe(coach.page, (await aiId(coach.page)));
    assert.equal(p.connection, 'connected');
  }
});
