// Room page behaviour that needs a server of its own (CPU_SERVER_BIN, GPU_SERVER_PATH
// from tests/browser_pages.rs): reconnecting with backoff and the same userId across a
// server restart, the AI's `queued` status when MAX_CONCURRENT_ORBS is reached, and the
// dashboard's warm pool badge with ORB_WARM_POOL.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { VIEWPORTS, launch, openPage, until, api, orb, alive, joinRoom, text, assertNoErrors, uniqueRoom, adminToken } = require('./lib.js');

let browser;
before(async () => { browser = await launch(); });
after(async () => { if (browser) await browser.close(); });

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through \`cargo test -p system-tests --test browser_pages\``);
  return value;
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Starts cpu-server on `port` with `extra` settings; resolves once /healthz answers. */
async function startServer(port, dir, extra = {}) {
  const child = spawn(env('CPU_SERVER_BIN'), [], {
    cwd: dir,
    detached: true, // its own process group, killed whole in stopServer
    stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'stderr.log'), 'a')],
    env: {
      PATH: process.env.PATH,
      CPU_HOST: `127.0.0.1:${port}`,
      ORB_SPAWN_ON: 'coach',
      GPU_SERVER_PATH: env('GPU_SERVER_PATH'),
      ADMIN_TOKEN: adminToken(),
      STATE_DIR: path.join(dir, 'state'),
      ORB_LOG_DIR: path.join(dir, 'logs'),
      ROOM_EMPTY_GRACE: '0',
      ORB_STOP_GRACE: '2000',
      ORB_KILL_GRACE: '1000',
      RUST_LOG: 'info',
      ...extra,
    },
  });
  const base = `http://127.0.0.1:${port}`;
  await until('cpu-server to answer /healthz', 15000, async () => {
    if (child.exitCode !== null) throw new Error('cpu-server exited: ' + fs.readFileSync(path.join(dir, 'stderr.log'), 'utf8'));
    try { return (await fetch(base + '/healthz')).ok; } catch (_) { return false; }
  });
  return { child, base };
}

/** SIGTERM (graceful), then SIGKILL to the group if it does not exit in 10 s. */
async function stopServer(server) {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGTERM');
  const timer = setTimeout(() => { try { process.kill(-server.child.pid, 'SIGKILL'); } catch (_) { /* gone */ } }, 10000);
  await exited;
  clearTimeout(timer);
}

test('the room page reconnects with backoff after the server goes away, keeping its userId', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'browser-reconnect-'));
  const port = await freePort();
  let server = await startServer(port, dir);
  const tab = await openPage(browser, VIEWPORTS[0], 'reconnect');
  try {
    const room = uniqueRoom('reconnect');
    await joinRoom(tab.page, room, 'Client Rex', 'client', server.base);
    const userId = await tab.page.evaluate(() => sessionStorage.getItem('room.userId'));
    const members = async (base) => {
      const res = await api('GET', '/api/rooms', undefined, base);
      const r = (res.body || []).find((x) => x.room === room);
      return r ? r.participants.map((p) => p.userId) : [];
    };
    assert.deepEqual(await members(server.base), [userId]);

    // The server goes away: the page says so and retries with growing delays.
    await stopServer(server);
    const delays = []; // delays[n - 1]: the delay before attempt n, in ms
    await until('three reconnect attempts', 20000, async () => {
      const { attempt, delayMs } = await tab.page.$eval('#conn', (el) => ({ ...el.dataset }));
      if (attempt && delays[Number(attempt) - 1] === undefined) delays[Number(attempt) - 1] = Number(delayMs);
      return delays.filter((d) => d !== undefined).length >= 3 && delays.length >= 3;
    }, 20);
    // Jittered exponential backoff: the nth delay is in [base/2, base], base = 0.5 s * 2^(n-1).
    for (let i = 0; i < 3; i += 1) {
      const base = 500 * 2 ** i;
      assert.ok(delays[i] >= base / 2 && delays[i] <= base, `attempt ${i + 1}: ${delays[i]} ms outside [${base / 2}, ${base}] (${delays})`);
    }
    assert.match(await text(tab.page, '#conn'), /^reconnect/);

    // Back on the same port: the page rejoins by itself with the same userId.
    server = await startServer(port, dir);
    await tab.page.waitForFunction(() => document.getElementById('conn').textContent === 'connected', null, { timeout: 20000 });
    await until('the page to be back in the room', 5000, async () => (await members(server.base)).join() === userId);
    assert.equal(await tab.page.evaluate(() => sessionStorage.getItem('room.userId')), userId);
    assert.match(await text(tab.page, '#log'), /connection lost/);

    // While the server was down Chromium logs the refused connections; nothing else.
    const refused = /WebSocket connection to .* failed|Failed to load resource: net::ERR_CONNECTION_REFUSED/;
    assertNoErrors(tab.errors.filter((e) => !refused.test(e)));
    assert.ok(tab.errors.some((e) => refused.test(e)), 'expected the refused reconnect attempts to be logged');
  } finally {
    await tab.context.close();
    await stopServer(server);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a room waiting for a free orb slot shows `queued` with its position, then the AI', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'browser-queue-'));
  const port = await freePort();
  const server = await startServer(port, dir, { MAX_CONCURRENT_ORBS: '1', ORB_HEALTH_CHECK_INTERVAL: '500' });
  const first = await openPage(browser, VIEWPORTS[1], 'first');
  const second = await openPage(browser, VIEWPORTS[0], 'second');
  try {
    const roomA = uniqueRoom('slot-a');
    const roomB = uniqueRoom('slot-b');
    await joinRoom(first.page, roomA, 'Coach A', 'coach', server.base);
    await first.page.waitForFunction(() => document.getElementById('ai-presence').textContent === 'in room', null, { timeout: 20000 });
    const a = await until('orb A ready', 15000, async () => {
      const o = await orb(roomA, server.base);
      return o && o.state === 'ready' ? o : null;
    });
    await joinRoom(second.page, roomB, 'Coach B', 'coach', server.base);
    await second.page.waitForFunction(() => document.getElementById('ai-status').textContent === 'queued');
    assert.match(await text(second.page, '#ai-detail'), /position 1/);
    assert.equal((await orb(roomB, server.base)).state, 'queued');

    // The slot frees: room B's orb starts and its page shows the AI.
    const killed = await api('DELETE', '/api/orbs/' + roomA, undefined, server.base);
    assert.equal(killed.status, 200, killed.text);
    assert.equal(alive(a.pid), false);
    await second.page.waitForFunction(() => document.getElementById('ai-presence').textContent === 'in room', null, { timeout: 20000 });
    await second.page.waitForFunction(() => ['ready', 'listening'].includes(document.getElementById('ai-status').textContent));
    assertNoErrors([...first.errors, ...second.errors]);
  } finally {
    await first.context.close();
    await second.context.close();
    await stopServer(server);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a crash-looping orb is parked: the page shows the error, the dashboard resets it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'browser-park-'));
  const port = await freePort();
  const server = await startServer(port, dir, { ORB_MAX_RESTARTS: '1', ORB_HEALTH_CHECK_INTERVAL: '500' });
  const coach = await openPage(browser, VIEWPORTS[1], 'coach');
  const dash = await openPage(browser, VIEWPORTS[0], 'dashboard');
  try {
    const room = uniqueRoom('park');
    const ready = (not) => until('a ready orb', 20000, async () => {
      const o = await orb(room, server.base);
      return o && o.state === 'ready' && o.pid && o.pid !== not ? o : null;
    });
    await joinRoom(coach.page, room, 'Coach P', 'coach', server.base);
    const first = await ready();
    process.kill(first.pid, 'SIGKILL');
    const second = await ready(first.pid);
    process.kill(second.pid, 'SIGKILL');
    await until('the orb to be parked', 15000, async () => (await orb(room, server.base)).state === 'parked');
    await coach.page.waitForFunction(() => document.getElementById('ai-status').textContent === 'error');
    assert.match(await text(coach.page, '#ai-detail'), /keeps failing/);
    assert.equal(await text(coach.page, '#ai-presence'), 'not in room');

    await dash.page.goto(server.base + '/dashboard');
    await dash.page.fill('#token', adminToken());
    await dash.page.click('#token-save');
    const row = `#orbs tr[data-room="${room}"]`;
    await dash.page.waitForSelector(`${row}[data-state="parked"] button.reset`);
    await dash.page.click(`${row} button.reset`);
    const third = await ready(second.pid);
    assert.notEqual(third.pid, first.pid);
    await coach.page.waitForFunction(() => document.getElementById('ai-presence').textContent === 'in room');
    await dash.page.waitForSelector(`${row}[data-pid="${third.pid}"][data-state="ready"]`, { timeout: 3000 });
    assertNoErrors([...coach.errors, ...dash.errors]);
  } finally {
    await coach.context.close();
    await dash.context.close();
    await stopServer(server);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('with a warm pool the dashboard shows its badge and the room gets the warm orb', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'browser-warm-'));
  const port = await freePort();
  const server = await startServer(port, dir, { ORB_WARM_POOL: '1', ORB_HEALTH_CHECK_INTERVAL: '500' });
  const coach = await openPage(browser, VIEWPORTS[1], 'coach');
  const dash = await openPage(browser, VIEWPORTS[0], 'dashboard');
  try {
    const member = await until('a ready, seated warm orb', 20000, async () => {
      const pool = (await api('GET', '/api/warm-pool', undefined, server.base)).body || {};
      return (pool.members || []).find((m) => m.state === 'ready' && m.seated && m.pid) || null;
    });
    await dash.page.goto(server.base + '/dashboard');
    await dash.page.fill('#token', adminToken());
    await dash.page.click('#token-save');
    await dash.page.waitForFunction(() => document.getElementById('warm').textContent === 'warm 1 / 1');
    assert.equal(await dash.page.isVisible('#warm'), true, 'the badge shows with ORB_WARM_POOL');
    assert.match(await dash.page.$eval('#warm', (el) => el.className), /\bok\b/);

    const room = uniqueRoom('warm');
    await joinRoom(coach.page, room, 'Coach W', 'coach', server.base);
    await coach.page.waitForFunction(() => document.getElementById('ai-presence').textContent === 'in room', null, { timeout: 20000 });
    const record = await until('the room orb ready', 15000, async () => {
      const o = await orb(room, server.base);
      return o && o.state === 'ready' ? o : null;
    });
    assert.equal(record.pid, member.pid, "the room's AI is the warm process");
    await dash.page.waitForSelector(`#orbs tr[data-room="${room}"][data-pid="${member.pid}"]`);
    // The pool refills: a new member, and the badge is back to 1 / 1.
    await until('the pool to refill', 20000, async () => {
      const pool = (await api('GET', '/api/warm-pool', undefined, server.base)).body || {};
      return (pool.members || []).some((m) => m.state === 'ready' && m.pid !== member.pid);
    });
    await dash.page.waitForFunction(() => document.getElementById('warm').textContent === 'warm 1 / 1');
    assertNoErrors([...coach.errors, ...dash.errors]);
  } finally {
    await coach.context.close();
    await dash.context.close();
    await stopServer(server);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an open /api/events stream ends cleanly when the server shuts down', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'browser-events-'));
  const port = await freePort();
  const server = await startServer(port, dir, { ORB_SPAWN_ON: 'manual' });
  try {
    const res = await fetch(server.base + '/api/events', { headers: { Authorization: 'Bearer ' + adminToken() } });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const first = await reader.read();
    assert.match(new TextDecoder().decode(first.value), /^event: snapshot/);
    const exited = new Promise((resolve) => server.child.once('exit', () => resolve(Date.now())));
    const stopAsked = Date.now();
    server.child.kill('SIGTERM');
    // Drain what is left: the stream must end (done), not be cut (an error), and soon.
    const ended = await (async () => {
      for (;;) {
        const { done } = await reader.read();
        if (done) return Date.now();
      }
    })();
    assert.ok(ended - stopAsked < 1500, `stream ended ${ended - stopAsked} ms after SIGTERM`);
    const exit = await exited;
    assert.ok(exit - stopAsked < 5000, `server exited ${exit - stopAsked} ms after SIGTERM`);
  } finally {
    await stopServer(server);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
