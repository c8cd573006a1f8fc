// The web page (web/) in a real browser: Debian's chromium driven by playwright-core.
// Two browser users chat both ways, a browser user and a console `cim` user chat both ways,
// history scrolls back, a group with browser members, the online list, and the page
// reconnecting by itself (and syncing) after gate 1 restarts.
// Screenshots go to tests/out/web/ (WEB_SCREENSHOTS_TO_DOCS=1 also refreshes web/screenshots/).
// Prints "N passed, N failed" last; exit status 1 on failure.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { OUT, REPO, assert, createUser, env, harness, sleep, uniq, waitFor } from './lib.mjs';

const GATE1 = env('CIM_GATE1');
const GATE1_WS = env('CIM_GATE1_WS');
const GATE2_WS = env('CIM_GATE2_WS');
const BIN = env('CIM_BIN');
const TEST_DIR = env('CIM_TEST_DIR');
const CHROMIUM = process.env.CIM_CHROMIUM || '/usr/bin/chromium';
const T = 20000; // per wait: the machine is shared
const PWD = 'secret123';

fs.mkdirSync(OUT, { recursive: true });
const h = harness('web');
const shots = [];
const pageErrors = [];

// ------------------------------------------------------------------ browser helpers
const pageUrl = (gateWs) => `http://${gateWs}/#hb=1000&maxBackoff=2000`; // test stack: idle timeout 3 s

async function shot(page, name) {
  const file = path.join(OUT, `${name}.png`);
  await page.screenshot({ path: file });
  shots.push(file);
  return file;
}

function watch(page, who) {
  page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`  [${who} console] ${m.text()}`); });
}

async function registerInPage(page, name, nick) {
  await page.fill('#login-name', name);
  await page.fill('#login-pwd', PWD);
  await page.fill('#login-nick', nick);
  await page.click('#register-btn');
  await page.waitForSelector('#conn[data-state="online"]', { timeout: T });
  return page.evaluate(() => window.cim.st.me.uid);
}

async function openChatWith(page, uid) {
  const item = page.locator(`#conv-list [data-conv="s:${uid}"]`);
  if (await item.count()) await item.click();
  else {
    await page.fill('#newchat-uid', String(uid));
    await page.click('#newchat-form button');
  }
  await page.waitForFunction((u) => window.cim.st.active && window.cim.st.active.key === `s:${u}`, uid, { timeout: T });
}

async function sendInPage(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
  // acked: the bubble carries a server id
  await page.waitForFunction((t) => [...document.querySelectorAll('#msg-list .msg.mine')]
    .some((r) => r.querySelector('.text').textContent === t && !r.dataset.smid.startsWith('c:')), text, { timeout: T });
}

const msgInPage = (page, text) => page.waitForFunction((t) => [...document.querySelectorAll('#msg-list .text')]
  .some((e) => e.textContent === t), text, { timeout: T });

const badge = (page, key) => page.evaluate((k) => {
  const b = document.querySelector(`#conv-list [data-conv="${k}"] .badge`);
  return b ? Number(b.dataset.unread) : 0;
}, key);

// ------------------------------------------------------------------ console client
class Console {
  constructor(user) {
    this.user = user;
    this.out = '';
    this.p = spawn(path.join(BIN, 'cim'), ['--gate', GATE1, '--quiet', '--batch', '--keep-going'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.p.stdout.on('data', (d) => { this.out += d; });
    this.p.stderr.on('data', (d) => { this.out += d; });
    this.exited = new Promise((r) => this.p.on('exit', (code) => r(code)));
    // the test stack closes connections idle for 3 s; the console beats every 25 s
    this.keepalive = setInterval(() => this.cmd('ping'), 1000);
  }
  cmd(line) { if (this.p.exitCode === null) this.p.stdin.write(line + '\n'); }
  async expect(what, re, timeoutMs = T) {
    try {
      return await waitFor(`console: ${what}`, () => this.out.match(re), timeoutMs);
    } catch (e) {
      console.log(`  console output (pings left out):\n${this.out.split('\n').filter((l) => !/^pong from/.test(l)).map((l) => `  | ${l}`).join('\n')}`);
      throw e;
    }
  }
  async quit() {
    clearInterval(this.keepalive);
    this.cmd('quit');
    this.p.stdin.end();
    const timer = setTimeout(() => this.p.kill('SIGTERM'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ------------------------------------------------------------------ the tests
let browser, ctxA, ctxB, pa, pb, A, B, C, cons, groupId;
const nameA = uniq('wa'), nameB = uniq('wb');

h.test('the gate serves the page; two users register in the browser', async () => {
  const rsp = await fetch(`http://${GATE1_WS}/`);
  assert(rsp.ok && (await rsp.text()).includes('<script type="module" src="app.js">'), 'GET / serves web/index.html');
  for (const f of ['app.js', 'proto.js', 'style.css']) assert((await fetch(`http://${GATE2_WS}/${f}`)).ok, `GET /${f}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const opts = { viewport: { width: 1180, height: 720 }, deviceScaleFactor: 1 };
  ctxA = await browser.newContext(opts); // each context: its own storage (fresh profile dir)
  ctxB = await browser.newContext(opts);
  pa = await ctxA.newPage();
  pb = await ctxB.newPage();
  watch(pa, 'A');
  watch(pb, 'B');
  await pa.goto(pageUrl(GATE1_WS));
  await pb.goto(pageUrl(GATE2_WS));
  await pa.waitForSelector('#login-form');
  await shot(pa, 'login');
  A = await registerInPage(pa, nameA, 'Alice');
  B = await registerInPage(pb, nameB, 'Bob');
  assert(/^[1-9][0-9]*$/.test(A) && /^[1-9][0-9]*$/.test(B) && A !== B, `user ids ${A} ${B}`);
  // the token is kept for reconnects
  const tok = await pa.evaluate(() => JSON.parse(sessionStorage.getItem('cim.auth')));
  assert(tok && tok.uid === A && tok.token, 'token in sessionStorage');
}, 90000);

h.test('two browsers chat both ways (unread badge, read receipt)', async () => {
  await openChatWith(pa, B);
  await sendInPage(pa, 'Hi Bob! This is Alice, writing from the browser.');
  // B is not looking at the conversation: a badge
  await waitFor('unread badge 1 at B', async () => (await badge(pb, `s:${A}`)) === 1, T);
  await openChatWith(pb, A);
  await msgInPage(pb, 'Hi Bob! This is Alice, writing from the browser.');
  // B viewed it: 0x0303 -> A sees the read receipt (0x0304)
  try {
    await pa.waitForSelector('#msg-list .msg.mine[data-status="read"]', { timeout: T });
  } catch (e) {
    console.log('A:', await pa.evaluate((b) => { const c = window.cim.st.convs.get('s:' + b); return JSON.stringify([c.peerRead, [...c.msgs.values()].map((m) => [m.smid, m.status]), document.querySelector('#msg-list').innerHTML.slice(0, 600)]); }, B));
    console.log('B:', await pb.evaluate(() => JSON.stringify([document.visibilityState, window.cim.st.active.readSent, window.cim.st.active.key])));
    throw e;
  }
  assert((await badge(pb, `s:${A}`)) === 0, 'badge cleared at B');
  await sendInPage(pb, 'Hello Alice, got it. Lunch at noon?');
  await msgInPage(pa, 'Hello Alice, got it. Lunch at noon?');
  await sendInPage(pa, 'Sure, see you there.');
  await msgInPage(pb, 'Sure, see you there.');
  await pb.waitForSelector('#msg-list .msg.mine[data-status="read"]', { timeout: T });
  // the nick arrived with the messages
  await pb.waitForFunction(() => document.querySelector('#conv-title').textContent === 'Alice', null, { timeout: T });
  await shot(pb, 'chat-1to1');
}, 90000);

h.test('a browser user and a console cim user chat both ways', async () => {
  C = await createUser('wc', 'Carol (console)', PWD);
  cons = new Console(C);
  cons.cmd(`login ${C.name} ${PWD}`);
  await cons.expect('login', new RegExp(`logged in as ${esc(C.name)} \\(uid ${C.uid}\\)`));
  cons.cmd(`send ${A} Hi Alice, Carol here on the console.`);
  await cons.expect('sent', /sent: msg \d+ seq \d+/);
  await waitFor('unread badge at A', async () => (await badge(pa, `s:${C.uid}`)) === 1, T);
  await openChatWith(pa, C.uid);
  await msgInPage(pa, 'Hi Alice, Carol here on the console.');
  await sendInPage(pa, 'Hello Carol, greetings from the web page!');
  await cons.expect('the browser message', new RegExp(`\\[msg (\\d+) from [^(]*\\(${A}\\) seq \\d+\\] Hello Carol, greetings from the web page!`));
}, 60000);

h.test('history scrolls back with the end_msg_id cursor (0x0205)', async () => {
  // A looks at Bob's conversation meanwhile: Carol's messages count as unread
  await openChatWith(pa, B);
  for (let i = 1; i <= 30; i++) cons.cmd(`send ${A} bulk message ${String(i).padStart(2, '0')}`);
  await waitFor('console: 30 more sent', () => (cons.out.match(/sent: msg \d+ seq \d+/g) || []).length === 31, 40000);
  await pa.waitForFunction((u) => window.cim.st.convs.get(`s:${u}`).msgs.size >= 32, C.uid, { timeout: T });
  // a fresh look: reload the page (token login), open the conversation, scroll up
  await pa.reload();
  await pa.waitForSelector('#conn[data-state="online"]', { timeout: T });
  await waitFor('unread 30 after reload (0x0201)', async () => (await badge(pa, `s:${C.uid}`)) === 30, T);
  await openChatWith(pa, C.uid);
  await msgInPage(pa, 'bulk message 30');
  const first = await pa.evaluate(() => document.querySelectorAll('#msg-list .msg').length);
  assert(first >= 20 && first < 32, `first page holds ${first} messages`);
  for (let i = 0; i < 5; i++) {
    await pa.evaluate(() => { document.querySelector('#messages').scrollTop = 0; });
    if (await pa.evaluate(() => !window.cim.st.active.hasMore && !window.cim.st.active.loading)) break;
    await sleep(500);
  }
  await msgInPage(pa, 'bulk message 01');
  await msgInPage(pa, 'Hi Alice, Carol here on the console.');
  await pa.waitForSelector('#history-status:has-text("Beginning of the conversation")', { timeout: T });
  const all = await pa.evaluate(() => [...document.querySelectorAll('#msg-list .msg .text')].map((e) => e.textContent));
  assert(all.length === 32, `32 messages after scrolling back, got ${all.length}`);
  assert(all.indexOf('bulk message 01') < all.indexOf('bulk message 30'), 'oldest first on screen');
  assert((await badge(pa, `s:${C.uid}`)) === 0, 'badge cleared after reading');
}, 90000);

h.test('a group with browser members (and the console user)', async () => {
  await pa.click('#newgroup-btn');
  await pa.fill('#group-name', 'Weekend plans');
  await pa.fill('#group-members', `${B}, ${C.uid}`);
  await pa.click('#group-create');
  await pa.waitForFunction(() => window.cim.st.active && window.cim.st.active.type === 2, null, { timeout: T });
  groupId = await pa.evaluate(() => window.cim.st.active.id);
  await pa.waitForFunction(() => /3 members/.test(document.querySelector('#conv-sub').textContent), null, { timeout: T });
  await sendInPage(pa, 'Who is up for hiking on Saturday?');
  // Bob: the group shows up with the message (0x0515 / NOTIFICATION -> 0x0507/0x0509)
  await pb.waitForSelector(`#conv-list [data-conv="g:${groupId}"]`, { timeout: T });
  await pb.waitForFunction((g) => document.querySelector(`#conv-list [data-conv="g:${g}"] .conv-name`).textContent === 'Weekend plans', groupId, { timeout: T });
  await pb.click(`#conv-list [data-conv="g:${groupId}"]`);
  await msgInPage(pb, 'Who is up for hiking on Saturday?');
  await sendInPage(pb, 'Me! I will bring snacks.');
  await msgInPage(pa, 'Me! I will bring snacks.');
  await cons.expect('the group message', new RegExp(`\\[msg \\d+ from [^(]*\\(${A}\\) in group ${groupId} seq \\d+\\] Who is up for hiking on Saturday\\?`));
  await cons.expect('the reply', new RegExp(`\\[msg \\d+ from [^(]*\\(${B}\\) in group ${groupId} seq \\d+\\] Me! I will bring snacks\\.`));
  await sendInPage(pa, 'Great, meet at 9 at the station.');
  await msgInPage(pb, 'Great, meet at 9 at the station.');
  await shot(pa, 'group');
}, 60000);

h.test('the online list shows who is online (0x0603 + 0x0605)', async () => {
  await pa.click('#tab-online');
  for (const u of [B, C.uid]) await pa.waitForSelector(`#online-list [data-uid="${u}"]`, { timeout: T });
  await shot(pa, 'online');
  await cons.quit();
  cons = null;
  await pa.waitForSelector(`#online-list [data-uid="${C.uid}"]`, { state: 'detached', timeout: T }); // 0x0605 offline
  await pa.click('#tab-chats');
}, 60000);

h.test('gate 1 restarts: the page reconnects by itself and syncs what was sent meanwhile', async () => {
  await openChatWith(pa, B);
  await openChatWith(pb, A);
  const ctl = path.join(TEST_DIR, 'ctl.sh');
  execFileSync(ctl, ['stop', 'gate1'], { stdio: 'inherit', timeout: 90000 });
  try {
    await pa.waitForSelector('#conn[data-state="reconnecting"]', { timeout: T });
    await sendInPage(pb, 'Sent while your gate was down: did you get it?');
    await sleep(300);
    await shot(pa, 'reconnecting');
  } finally {
    execFileSync(ctl, ['start', 'gate1'], { stdio: 'inherit', timeout: 120000 });
  }
  await pa.waitForSelector('#conn[data-state="online"]', { timeout: 30000 });
  await msgInPage(pa, 'Sent while your gate was down: did you get it?'); // from 0x0207
}, 150000);

h.test('after the restart, live delivery works again both ways', async () => {
  await sendInPage(pb, 'Welcome back!');
  await msgInPage(pa, 'Welcome back!');
  await sendInPage(pa, 'Thanks, I am back online.');
  await msgInPage(pb, 'Thanks, I am back online.');
  await pb.waitForSelector('#msg-list .msg.mine[data-status="read"] >> text=Welcome back!', { timeout: T });
  await shot(pa, 'after-reconnect');
}, 150000);

h.test('no script errors in the pages', async () => {
  assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
});

// on a failure: what each page shows and knows
h.onFail = async () => {
  for (const [who, page] of [['A', pa], ['B', pb]]) {
    if (!page) continue;
    const d = await page.evaluate(() => {
      const st = window.cim.st;
      const a = st.active;
      return {
        me: st.me, conn: st.connState, maxSeq: String(st.maxSeq), active: a && a.key, title: document.querySelector('#conv-title').textContent,
        online: [...st.online.entries()], nicks: [...st.nicks.entries()], outbox: st.outbox.size,
        msgs: a ? [...a.msgs.values()].map((m) => `${m.smid} ${m.from} ${m.status} ${m.text.slice(0, 30)}`) : [],
        peerRead: a && a.peerRead, readSent: a && a.readSent,
        convs: [...st.convs.values()].map((c) => `${c.key} unread ${c.unread} last ${c.last && c.last.text.slice(0, 20)}`),
      };
    });
    console.log(`  page ${who}: ${JSON.stringify(d, null, 1).replace(/\n/g, '\n  ')}`);
    await shot(page, `failure-${who}`);
  }
};
const r = await h.run({ stopOnFail: true });
try {
  if (cons) await cons.quit();
  if (browser) await browser.close();
} catch (e) { /* closing anyway */ }
// the gate must be up for whatever runs next
try {
  execFileSync(path.join(TEST_DIR, 'ctl.sh'), ['start', 'gate1'], { stdio: 'ignore', timeout: 120000 });
} catch (e) { console.log(`could not make sure gate1 runs: ${e.message}`); }
console.log(`screenshots: ${shots.map((f) => path.relative(REPO, f)).join(' ')}`);
if (process.env.WEB_SCREENSHOTS_TO_DOCS === '1' && !r.failed) {
  const docs = path.join(REPO, 'web', 'screenshots');
  fs.mkdirSync(docs, { recursive: true });
  for (const n of ['chat-1to1', 'group', 'reconnecting']) fs.copyFileSync(path.join(OUT, `${n}.png`), path.join(docs, `${n}.png`));
  console.log(`copied to ${path.relative(REPO, docs)}/`);
}
console.log(`${r.passed} passed, ${r.failed} failed`);
process.exit(r.failed ? 1 : 0);
