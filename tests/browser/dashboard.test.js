// The operator dashboard against the real server: token prompt, live orb row and
// chart fed by /api/events, rooms and capacity; /api/events' own auth.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const {
  VIEWPORTS, launch, openPage, until, orb, joinRoom, text, screenshot, assertNoErrors, uniqueRoom, adminToken, baseUrl,
} = require('./lib.js');

let browser;
before(async () => { browser = await launch(); });
after(async () => { if (browser) await browser.close(); });

/** Reads the first SSE `snapshot` event of /api/events with `init`; {status, snapshot}. */
async function firstSnapshot(urlPath, init = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 5000);
  try {
    const res = await fetch(baseUrl() + urlPath, { ...init, signal: controller.signal });
    if (res.status !== 200) return { status: res.status, type: res.headers.get('content-type') };
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    while (!buffer.includes('\n\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
    }
    controller.abort();
    const block = buffer.split('\n\n')[0];
    const event = block.split('\n').find((l) => l.startsWith('event:'));
    const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
    return { status: res.status, type: res.headers.get('content-type'), event: event && event.slice(6).trim(), snapshot: JSON.parse(data) };
  } finally {
    clearTimeout(timer);
  }
}

test('/api/events needs the admin token (header or ?token=) and sends snapshots', async () => {
  assert.equal((await firstSnapshot('/api/events')).status, 401);
  assert.equal((await firstSnapshot('/api/events?token=wrong-token-0123456789')).status, 401);
  assert.equal((await firstSnapshot('/api/events', { headers: { Authorization: 'Bearer nope' } })).status, 401);
  const byHeader = await firstSnapshot('/api/events', { headers: { Authorization: 'Bearer ' + adminToken() } });
  assert.equal(byHeader.status, 200);
  assert.match(byHeader.type, /^text\/event-stream/);
  assert.equal(byHeader.event, 'snapshot');
  for (const key of ['orbs', 'rooms']) assert.ok(Array.isArray(byHeader.snapshot[key]), key);
  assert.equal(typeof byHeader.snapshot.capacity.max, 'number');
  assert.ok(byHeader.snapshot.capacity.max >= 1);
  const byQuery = await firstSnapshot('/api/events?token=' + encodeURIComponent(adminToken()));
  assert.equal(byQuery.status, 200);
  assert.equal(byQuery.event, 'snapshot');
});

for (const viewport of VIEWPORTS) {
  test(`dashboard shows the orb row, its chart updating, rooms and capacity (${viewport.name})`, async () => {
    const room = uniqueRoom('dash-' + viewport.name);
    const coach = await openPage(browser, viewport, 'coach');
    const dash = await openPage(browser, viewport, 'dashboard');
    try {
      await joinRoom(coach.page, room, 'Coach Dana', 'coach');
      const record = await until('the orb to be ready', 20000, async () => {
        const o = await orb(room);
        return o && o.state === 'ready' && o.pid ? o : null;
      });

      await dash.page.goto(baseUrl() + '/dashboard');
      assert.equal(await dash.page.isVisible('#token-form'), true, 'the dashboard asks for the token');
      await dash.page.fill('#token', adminToken());
      await dash.page.click('#token-save');
      const row = `#orbs tr[data-room="${room}"]`;
      await dash.page.waitForSelector(row);
      assert.equal(await dash.page.$eval(row, (tr) => tr.dataset.pid), String(record.pid));
      await dash.page.waitForFunction((sel) => document.querySelector(sel).dataset.state === 'ready', row);
      const cells = await dash.page.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent));
      assert.equal(cells[0], room);
      assert.equal(cells[1], String(record.pid));
      assert.match(cells[2], /^ready/);
      assert.match(cells[3], /\d+ s|min/, 'uptime');
      assert.equal(cells[4], String(record.restarts));
      assert.match(cells[7], /ago|–/, 'heartbeat age');
      assert.equal(cells[9], '–', 'a test-mode orb has no voice');
      assert.equal(cells[10], '–', 'no GPU slots and no NVML');
      assert.equal(cells[11], '–', 'not a cluster job');

      // RSS and CPU are sampled: the chart gains points and its pixels change.
      await until('an RSS sample', 15000, async () => /MB$/.test(await text(dash.page, `${row} td:nth-child(6)`)));
      const canvas = `${row} canvas.chart`;
      const before = await dash.page.$eval(canvas, (c) => ({ n: Number(c.dataset.samples), png: c.toDataURL() }));
      await until('the chart to update', 5000, async () => {
        const now = await dash.page.$eval(canvas, (c) => ({ n: Number(c.dataset.samples), png: c.toDataURL() }));
        return now.n >= before.n + 2 && now.png !== before.png;
      });
      const blank = await dash.page.$eval(canvas, (c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i]) painted += 1;
        return painted;
      });
      assert.ok(blank > 20, `chart has almost no painted pixels (${blank})`);

      // Rooms with participants, and capacity.
      const roomRow = `#rooms tr[data-room="${room}"]`;
      await dash.page.waitForSelector(roomRow);
      assert.match(await text(dash.page, `${roomRow} td:nth-child(2)`), /Coach Dana \(coach\)/);
      assert.match(await text(dash.page, `${roomRow} td:nth-child(2)`), /AI Assistant \(ai\)/);
      const active = Number(await dash.page.$eval('#capacity', (el) => el.dataset.active));
      assert.ok(active >= 1, 'capacity counts the running orb');
      assert.match(await text(dash.page, '#capacity'), /^\d+ \/ \d+ orbs running$/);
      assert.match(await text(dash.page, '#queue'), /^queue \d+$/);
      assert.equal(await dash.page.isVisible('#warm'), false, 'no warm pool badge without ORB_WARM_POOL');
      await until('a few seconds of chart', 15000, async () =>
        Number(await dash.page.$eval(canvas, (c) => c.dataset.samples)) >= 8);
      await screenshot(dash.page, `dashboard-${viewport.name}`, viewport.name === 'wide' ? 'dashboard.png' : null);

      // The token is kept for the tab: a reload goes straight to the data.
      await dash.page.reload();
      await dash.page.waitForSelector(row);
      assert.equal(await dash.page.isVisible('#token-form'), false);

      // Kill all asks for confirmation; dismissing it kills nothing.
      dash.page.once('dialog', (d) => d.dismiss());
      await dash.page.click('#kill-all');
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await orb(room)).pid, record.pid, 'a dismissed kill-all must not kill');

      assertNoErrors([...coach.errors, ...dash.errors]);
    } finally {
      await coach.context.close();
      await dash.context.close();
    }
  });
}

test('kill all (confirmed) stops every orb and the dashboard shows none', async () => {
  const room = uniqueRoom('dash-all');
  const coach = await openPage(browser, VIEWPORTS[1], 'coach');
  const dash = await openPage(browser, VIEWPORTS[1], 'dashboard');
  try {
    await joinRoom(coach.page, room, 'Coach Eve', 'coach');
    const record = await until('the orb to be ready', 20000, async () => {
      const o = await orb(room);
      return o && o.state === 'ready' && o.pid ? o : null;
    });
    await dash.page.goto(baseUrl() + '/dashboard');
    await dash.page.fill('#token', adminToken());
    await dash.page.click('#token-save');
    await dash.page.waitForSelector(`#orbs tr[data-room="${room}"]`);
    dash.page.once('dialog', (d) => d.accept());
    await dash.page.click('#kill-all');
    await until('the orb record to be gone', 15000, async () => (await orb(room)) === null);
    await dash.page.waitForSelector(`#orbs tr[data-room="${room}"]`, { state: 'detached', timeout: 3000 });
    await coach.page.waitForFunction(() => document.getElementById('ai-presence').textContent === 'not in room');
    assert.ok(record.pid > 0);
    assertNoErrors([...coach.errors, ...dash.errors]);
  } finally {
    await coach.context.close();
    await dash.context.close();
  }
});

test('a room whose orb was killed through the API shows why, and its timeline on click', async () => {
  const room = uniqueRoom('dash-why');
  const coach = await openPage(browser, VIEWPORTS[1], 'coach');
  const dash = await openPage(browser, VIEWPORTS[1], 'dashboard');
  try {
    await joinRoom(coach.page, room, 'Coach Finn', 'coach');
    await until('the orb to be ready', 20000, async () => {
      const o = await orb(room);
      return o && o.state === 'ready' && o.pid ? o : null;
    });
    await dash.page.goto(baseUrl() + '/dashboard');
    await dash.page.fill('#token', adminToken());
    await dash.page.click('#token-save');
    await dash.page.waitForSelector(`#orbs tr[data-room="${room}"]`);
    const res = await fetch(baseUrl() + '/api/orbs/' + room, {
      method: 'DELETE', headers: { Authorization: 'Bearer ' + adminToken() },
    });
    assert.ok(res.status >= 200 && res.status < 300, `DELETE answered ${res.status}`);
    const why = `#rooms tr[data-room="${room}"] td.why`;
    await until('the why line to name the operator', 15000, async () => /operator/i.test(await text(dash.page, why)));
    await dash.page.click(`#rooms tr[data-room="${room}"] td.room`);
    const timeline = `#rooms tr.timeline[data-room="${room}"]`;
    await dash.page.waitForSelector(`${timeline} li[data-event="exited"]`, { timeout: 5000 });
    assert.ok(await dash.page.$(`${timeline} li[data-event="spawned"], ${timeline} li`), 'timeline has entries');
    assertNoErrors([...coach.errors, ...dash.errors]);
  } finally {
    await coach.context.close();
    await dash.context.close();
  }
});
