// Two room pages (coach and client) in one room against the real cpu-server and
// real gpu-orbs, at a narrow and a wide viewport; the dashboard kills the orb.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const {
  VIEWPORTS, launch, openPage, until, orb, alive, joinRoom, text, texts, screenshot, assertNoErrors,
  uniqueRoom, adminToken, baseUrl,
} = require('./lib.js');

let browser;
before(async () => { browser = await launch(); });
after(async () => { if (browser) await browser.close(); });

const aiPresence = (page) => text(page, '#ai-presence');
const people = (page) => texts(page, '#participants li');

/** Waits for the page to show the AI in (or out of) the room; the time it was seen. */
async function seeAi(page, present, timeout) {
  await page.waitForFunction(
    (want) => document.getElementById('ai-presence').textContent === want,
    present ? 'in room' : 'not in room',
    { timeout },
  );
  return Date.now();
}

async function openDashboard(viewport) {
  const dash = await openPage(browser, viewport, 'dashboard');
  await dash.page.goto(baseUrl() + '/dashboard');
  await dash.page.fill('#token', adminToken());
  await dash.page.click('#token-save');
  await dash.page.waitForFunction(() => document.getElementById('feed').textContent === 'live');
  return dash;
}

for (const viewport of VIEWPORTS) {
  test(`coach and client share a room with the AI (${viewport.name} ${viewport.width}x${viewport.height})`, async () => {
    const room = uniqueRoom('br-' + viewport.name);
    const coach = await openPage(browser, viewport, 'coach');
    const client = await openPage(browser, viewport, 'client');
    const errors = () => [...coach.errors, ...client.errors];
    const requests = []; // the coach page's fetches and sockets, in order
    coach.page.on('request', (r) => requests.push(new URL(r.url()).pathname));
    coach.page.on('websocket', (ws) => requests.push('ws ' + new URL(ws.url()).pathname));
    try {
      // The client alone starts no orb; the coach's arrival does.
      await joinRoom(client.page, room, 'Client Cleo', 'client');
      assert.equal(await orb(room), null, 'a client alone must not start an orb');
      await joinRoom(coach.page, room, 'Coach Carla', 'coach');
      await seeAi(coach.page, true, 20000);
      await seeAi(client.page, true, 5000);
      const first = await until('the orb to be ready', 15000, async () => {
        const o = await orb(room);
        return o && o.state === 'ready' && o.pid ? o : null;
      });
      for (const page of [coach.page, client.page]) {
        const names = (await people(page)).join(' | ');
        assert.match(names, /Coach Carla · coach/);
        assert.match(names, /Client Cleo · client/);
        assert.match(names, /AI Assistant · ai/);
        await page.waitForFunction(() => ['ready', 'listening'].includes(document.getElementById('ai-status').textContent));
      }
      // As the old client: ICE servers are asked for before the socket opens.
      const turn = requests.indexOf('/api/turn-credentials');
      const socket = requests.indexOf('ws /ws-simple/' + room);
      assert.ok(turn >= 0 && socket > turn, `turn-credentials not fetched before the socket: ${requests}`);
      // The same userId is kept for the tab (sessionStorage) and used in the room.
      const coachId = await coach.page.evaluate(() => sessionStorage.getItem('room.userId'));
      assert.match(coachId, /^u-[0-9a-f]{16}$/);
      assert.equal(await coach.page.$eval('#participants li[data-role="coach"]', (el) => el.dataset.userId), coachId);
      assert.equal(await client.page.$eval('#participants li[data-role="coach"]', (el) => el.dataset.userId), coachId);

      // say hello: the answer reaches both pages through the server and the orb.
      await coach.page.fill('#say-text', 'hello');
      await coach.page.click('#say');
      for (const page of [coach.page, client.page]) {
        await page.waitForFunction(() => [...document.querySelectorAll('#responses li')].some((li) => li.textContent === 'echo: hello'));
      }
      // The client's page also shows the coach's request.
      await client.page.waitForFunction(() => document.getElementById('log').textContent.includes('Coach Carla said to the AI: hello'));

      // Client raises a hand: the coach sees it.
      assert.equal(await coach.page.isVisible('#hand'), false, 'coach has no raise-hand button');
      assert.equal(await client.page.isVisible('#pause'), false, 'client has no pause button');
      await client.page.click('#hand');
      await coach.page.waitForFunction(() =>
        document.querySelector('#participants li[data-role="client"]').textContent.includes('hand raised'));
      assert.equal(await text(client.page, '#hand'), 'Lower hand');

      // Pause and resume from the coach: the AI's status follows on both pages.
      await coach.page.click('#pause');
      for (const page of [coach.page, client.page]) {
        await page.waitForFunction(() => document.getElementById('ai-status').textContent === 'paused');
      }
      await coach.page.click('#resume');
      for (const page of [coach.page, client.page]) {
        await page.waitForFunction(() => document.getElementById('ai-status').textContent === 'listening');
      }
      await screenshot(coach.page, `room-coach-${viewport.name}`, viewport.name === 'wide' ? 'room.png' : null);
      await screenshot(client.page, `room-client-${viewport.name}`);

      // Kill from the dashboard: the orb really dies, the pages show the AI leaving within 2 s.
      const dash = await openDashboard(viewport);
      try {
        const row = `#orbs tr[data-room="${room}"]`;
        await dash.page.waitForSelector(`${row}[data-pid="${first.pid}"]`);
        await dash.page.click(`${row} button.kill`);
        const dead = await until(`orb ${first.pid} to exit`, 10000, () => !alive(first.pid) && Date.now(), 20);
        const seen = await seeAi(client.page, false, 10000);
        assert.ok(seen - dead <= 2000, `the page showed the AI leaving ${seen - dead} ms after the orb died`);
        await seeAi(coach.page, false, 2000);
        await until('the orb record to be gone', 10000, async () => (await orb(room)) === null);

        // Start it again from the dashboard: a new process, shown on both pages.
        await dash.page.waitForSelector(`#rooms tr[data-room="${room}"] button.start`);
        await dash.page.click(`#rooms tr[data-room="${room}"] button.start`);
        const second = await until('a new ready orb', 20000, async () => {
          const o = await orb(room);
          return o && o.state === 'ready' && o.pid ? o : null;
        });
        assert.notEqual(second.pid, first.pid, 'the orb process must be a new one');
        const ready = Date.now();
        for (const page of [coach.page, client.page]) {
          const shown = await seeAi(page, true, 10000);
          assert.ok(shown - ready <= 2000, `AI shown ${shown - ready} ms after the new orb was ready`);
        }

        // A crash (SIGKILL): the manager restarts it; pages and dashboard show the new orb.
        process.kill(second.pid, 'SIGKILL');
        const crashed = Date.now();
        const left = await seeAi(coach.page, false, 5000);
        assert.ok(left - crashed <= 2000, `crash shown ${left - crashed} ms after the kill`);
        const third = await until('the restarted orb', 20000, async () => {
          const o = await orb(room);
          return o && o.state === 'ready' && o.pid && o.pid !== second.pid ? o : null;
        });
        assert.ok(third.restarts >= 1, `restart not counted: ${JSON.stringify(third)}`);
        assert.equal(alive(second.pid), false);
        const back = Date.now();
        for (const page of [coach.page, client.page]) {
          const shown = await seeAi(page, true, 10000);
          assert.ok(shown - back <= 2000, `restarted AI shown ${shown - back} ms after it was ready`);
        }
        await dash.page.waitForSelector(`${row}[data-pid="${third.pid}"]`, { timeout: 2500 });
        assert.equal(await text(dash.page, `${row} td.restarts`), String(third.restarts));
        assertNoErrors(dash.errors);
      } finally {
        await dash.context.close();
      }

      // End session from the coach: the AI leaves both pages and its process ends.
      await coach.page.waitForFunction(() => ['ready', 'listening'].includes(document.getElementById('ai-status').textContent));
      const last = await orb(room);
      await coach.page.click('#end');
      await seeAi(coach.page, false, 10000);
      await seeAi(client.page, false, 2000);
      await until('the orb to exit after end_session', 10000, () => !alive(last.pid));
      assert.equal(await aiPresence(client.page), 'not in room');
      assertNoErrors(errors());
    } finally {
      await coach.context.close();
      await client.context.close();
    }
  });
}

test('the server error reply is shown on the page', async () => {
  // A name over the server's 256-character limit: the server answers `error` to the
  // join, and the page must show it.
  const room = uniqueRoom('br-error');
  const tab = await openPage(browser, VIEWPORTS[1], 'error-tab');
  try {
    await tab.page.goto(baseUrl() + '/room/' + room);
    await tab.page.evaluate(() => document.getElementById('name').removeAttribute('maxlength'));
    await tab.page.fill('#name', 'N'.repeat(300));
    await tab.page.click('#join');
    await tab.page.waitForFunction(() => !document.getElementById('error').classList.contains('hidden'));
    assert.match(await text(tab.page, '#error'), /Server error \(\w+\)/);
    assertNoErrors(tab.errors);
  } finally {
    await tab.context.close();
  }
});

test('the CSP lets the room page open WebSockets to its own origin only', async () => {
  const room = uniqueRoom('br-csp');
  const tab = await openPage(browser, VIEWPORTS[1], 'csp-tab');
  try {
    await tab.page.goto(baseUrl() + '/room/' + room);
    // Resolves with what happened to `new WebSocket(url)`: opened, a CSP violation, or neither in 5 s.
    const attempt = (url) => tab.page.evaluate((target) => new Promise((resolve) => {
      const timer = setTimeout(() => resolve('nothing'), 5000);
      const done = (what) => { clearTimeout(timer); resolve(what); };
      document.addEventListener('securitypolicyviolation', (e) => done('blocked ' + e.effectiveDirective), { once: true });
      try {
        const ws = new WebSocket(target);
        ws.onopen = () => { ws.close(); done('open'); };
      } catch (e) {
        done('blocked ' + e.name);
      }
    }), url);
    const own = new URL(baseUrl());
    assert.equal(await attempt(`ws://${own.host}/ws-simple/${room}`), 'open', "'self' covers the same-origin socket");
    // Another host (the same server under another name): refused by the browser.
    assert.match(await attempt(`ws://localhost:${own.port}/ws-simple/${room}`), /^blocked (connect-src|SecurityError)$/);
    assert.match(await attempt('wss://ws.example.com/ws-simple/x'), /^blocked (connect-src|SecurityError)$/);
  } finally {
    await tab.context.close();
  }
});

test('the room page answers only valid room ids, with the CSP header', async () => {
  const ok = await fetch(baseUrl() + '/room/Room_2.session-1');
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('content-security-policy'), "default-src 'self'; connect-src 'self'");
  assert.match(ok.headers.get('content-type'), /^text\/html/);
  const html = await ok.text();
  assert.doesNotMatch(html, /https?:\/\//, 'no external resources');
  for (const bad of ['bad%20id', 'x'.repeat(65), 'a%2Fb', '..', '.']) {
    // Raw paths: fetch would resolve `..` itself.
    const status = await new Promise((resolve, reject) => {
      const { hostname, port } = new URL(baseUrl());
      http.get({ hostname, port, path: '/room/' + bad }, (res) => { res.resume(); resolve(res.statusCode); })
        .on('error', reject);
    });
    assert.equal(status, 400, `/room/${bad} should be refused`);
  }
  const dashboard = await fetch(baseUrl() + '/dashboard');
  assert.equal(dashboard.status, 200);
  assert.equal(dashboard.headers.get('content-security-policy'), "default-src 'self'; connect-src 'self'");
  for (const asset of ['/assets/room.js', '/assets/dashboard.js', '/assets/style.css']) {
    const res = await fetch(baseUrl() + asset);
    assert.equal(res.status, 200, asset);
  }
});
