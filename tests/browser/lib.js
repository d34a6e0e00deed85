// Helpers of the browser tests: Chromium through playwright-core, the server under
// test (BASE_URL, ADMIN_TOKEN, set by tests/browser_pages.rs), bounded waits,
// console/page error collection and screenshots.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const assert = require('node:assert/strict');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = path.resolve(__dirname, '..', 'artifacts');
const DOCS = path.resolve(__dirname, '..', '..', 'docs');
const VIEWPORTS = [
  { name: 'narrow', width: 375, height: 700 },
  { name: 'wide', width: 1280, height: 800 },
];

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through \`cargo test -p system-tests --test browser_pages\``);
  return value;
}

const baseUrl = () => env('BASE_URL');
const adminToken = () => env('ADMIN_TOKEN');

function loadPlaywright() {
  try {
    return require('playwright-core');
  } catch (e) {
    throw new Error('playwright-core is not installed: run `bash tests/browser/setup.sh` (' + e.message + ')');
  }
}

/** Chromium, headless, with a fresh profile; fails clearly when it is not installed. */
async function launch() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: run \`bash tests/browser/setup.sh\` (apt-get install chromium)`);
  }
  const { chromium } = loadPlaywright();
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** A page in its own context (own sessionStorage) that records console and page errors. */
async function openPage(browser, viewport, label) {
  const context = await browser.newContext({ viewport: { width: viewport.width, height: viewport.height } });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`[${label}] console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`[${label}] page error: ${err.message}`));
  page.setDefaultTimeout(15000);
  return { page, context, errors };
}

/** Polls `check` (sync or async) until it returns a truthy value; throws after `timeout` ms. */
async function until(what, timeout, check, every = 100) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** A call of the admin API: {status, body}. */
async function api(method, urlPath, body, base = baseUrl()) {
  const res = await fetch(base + urlPath, {
    method,
    headers: { Authorization: 'Bearer ' + adminToken(), 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
  return { status: res.status, body: json, text, headers: res.headers };
}

/** The room's orb record, or null. */
async function orb(room, base = baseUrl()) {
  const res = await api('GET', '/api/orbs/' + encodeURIComponent(room), undefined, base);
  return res.status === 200 ? res.body : null;
}

/** Whether a process exists (signal 0); the orbs are the server's children, reaped when they exit. */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** Opens the room page and joins as `name` / `role`; waits until connected. */
async function joinRoom(page, room, name, role, base = baseUrl()) {
  await page.goto(base + '/room/' + encodeURIComponent(room));
  await page.fill('#name', name);
  await page.selectOption('#role', role);
  await page.click('#join');
  await page.waitForFunction(() => document.getElementById('conn').textContent === 'connected');
}

const text = (page, selector) => page.$eval(selector, (el) => el.textContent);
const texts = (page, selector) => page.$$eval(selector, (els) => els.map((el) => el.textContent));

/** Saves a screenshot under tests/artifacts/; with UPDATE_DOCS_SCREENSHOTS=1 also as docs/<docsName>. */
async function screenshot(page, name, docsName) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name + '.png');
  await page.screenshot({ path: file, fullPage: true });
  if (docsName && process.env.UPDATE_DOCS_SCREENSHOTS === '1') {
    fs.mkdirSync(DOCS, { recursive: true });
    fs.copyFileSync(file, path.join(DOCS, docsName));
  }
  return file;
}

function assertNoErrors(errors) {
  assert.deepEqual(errors, [], 'console or page errors:\n' + errors.join('\n'));
}

const uniqueRoom = (prefix) => prefix + '-' + Date.now().toString(36) + '-' + Math.floor(Math.random() * 1e6).toString(36);

module.exports = {
  VIEWPORTS, ARTIFACTS, baseUrl, adminToken, launch, openPage, until, api, orb, alive, joinRoom,
  text, texts, screenshot, assertNoErrors, uniqueRoom,
};
