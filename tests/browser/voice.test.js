// The AI's voice in a real call (run by tests/voice_call.rs inside a private loopback
// namespace, against the real cpu-server and gpu-orb with its voice on, the speech
// providers and the brain being the stub of tests/src/voice_stub.rs): a coach page whose
// fake microphone loops a spoken sentence (espeak-ng) between silences. The first
// utterance addresses the AI ("Hey assistant, …" as the stub transcribes it); the AI
// answers aloud, and the next utterance, which starts while it still speaks, interrupts
// it (barge-in) and, not addressing the AI, gets no answer. Figures: `MEDIA <json>`.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { until, uniqueRoom, baseUrl, adminToken } = require('./lib.js');
const { writeSpeech, launchWithMicrophone, openPeerPage, probe, aiId, orbRecord } = require('./media_kit.js');

/** The stub's answer lasts this long (VOICE_ANSWER_MS, set by voice_call.rs). */
const ANSWER_MS = Number(process.env.VOICE_ANSWER_MS || 5000);
const LEAD_MS = 1000;
const TAIL_MS = 3500;

const events = (page) => page.evaluate(() => window.mediaPeer.state.aiEvents);
const figure = (obj) => console.log('MEDIA ' + JSON.stringify(obj));

let dir;
let browser;
let speechMs;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'voice-test-'));
  const wav = path.join(dir, 'speech.wav');
  speechMs = writeSpeech(wav, 'Hey assistant, how is the session going?', LEAD_MS, TAIL_MS);
  browser = await launchWithMicrophone(wav);
});
after(async () => {
  await browser?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('the AI hears an addressed utterance, answers aloud, is interrupted, and ignores what is not for it', async () => {
  const room = uniqueRoom('voice');
  figure({ room, speechMs, periodMs: LEAD_MS + speechMs + TAIL_MS });
  const coach = await openPeerPage(browser, 'coach');
  await coach.page.evaluate((r) => window.mediaPeer.start(r, 'coach-1', 'coach', false, { video: false }), room);
  const ai = await until('the AI in the room', 20000, () => aiId(coach.page));
  await until('the coach connected to the AI', 20000, async () => {
    const p = await probe(coach.page, ai);
    return p && p.connection === 'connected' ? p : null;
  });

  // The AI answers the first utterance: its text to the room, its voice on the AI's track.
  const response = await until('the AI answer (ai_response)', 30000, async () =>
    (await events(coach.page)).find((e) => e.type === 'ai_response'));
  assert.equal(response.inReplyTo, 'coach-1');
  const heard = await until('the answer heard on the AI track', 10000, async () => {
    const p = await probe(coach.page, ai);
    return p && p.packets > 20 && p.energy > 0 ? p : null;
  });

  // The room followed the pipeline: listening → thinking → speaking → listening.
  const statuses = await until('the AI listening again', 15000, async () => {
    const s = (await events(coach.page)).filter((e) => e.type === 'ai_status');
    const speaking = s.findIndex((e) => e.status === 'speaking');
    return speaking >= 0 && s.slice(speaking + 1).some((e) => e.status === 'listening') ? s : null;
  });
  const words = statuses.map((e) => e.status);
  const order = ['listening', 'thinking', 'speaking', 'listening'];
  let at = -1;
  for (const w of order) {
    at = words.indexOf(w, at + 1);
    assert.ok(at >= 0, `statuses ${JSON.stringify(words)} lack ${w} in the order ${order}`);
  }
  const speaking = statuses.find((e) => e.status === 'speaking');
  const listeningAgain = statuses.find((e) => e.status === 'listening' && e.at > speaking.at);
  const spokeMs = listeningAgain.at - speaking.at;
  figure({ statuses: words, spokeMs, answerMs: ANSWER_MS, answerLatencyFromResponseMs: speaking.at - response.at, aiTrack: heard });
  // Barge-in: the next utterance began while the AI spoke, and it stopped well before its answer's end.
  assert.ok(spokeMs < ANSWER_MS - 500, `the AI spoke ${spokeMs} ms of a ${ANSWER_MS} ms answer: no barge-in`);

  // The utterances after the first do not address the AI: no second answer. Two more periods.
  await new Promise((r) => setTimeout(r, 2 * (LEAD_MS + speechMs + TAIL_MS)));
  const all = await events(coach.page);
  const answers = all.filter((e) => e.type === 'ai_response');
  assert.equal(answers.length, 1, `answers: ${JSON.stringify(answers)}`);
  assert.deepEqual(all.filter((e) => e.status === 'error'), [], 'no voice error');

  const record = await orbRecord(room);
  figure({ voice: record?.voice ?? null });
  assert.ok(record?.voice?.answers >= 1 && record.voice.utterances >= 3, JSON.stringify(record?.voice));
  assert.equal(record.voice.pending_ms, null);

  // The operator's dashboard shows the voice of the orb's row.
  const dash = await browser.newPage();
  try {
    await dash.goto(baseUrl() + '/dashboard');
    await dash.fill('#token', adminToken());
    await dash.click('#token-save');
    const voiceCell = `#orbs tr[data-room="${room}"] td.voice`;
    await dash.waitForSelector(voiceCell, { timeout: 10000 });
    const shown = await until('the voice on the dashboard', 10000, async () => {
      const t = await dash.$eval(voiceCell, (td) => td.textContent);
      return /answered/.test(t) ? t : null;
    });
    assert.match(shown, /^(listening|thinking|speaking)/, shown);
    assert.match(shown, /[1-9]\d*\/\d+ answered/, shown);
  } finally {
    await dash.close();
  }
});
