// WebSocket over TLS (gate_wss_port): a private msg_gate with a fresh self-signed certificate
// (openssl command: EC P-256, CN=localhost, 1 day), started from $CIM_BIN on free ports against
// the stack's Redis (under $STACK_PREFIX, i.e. valgrind, when the runner sets one). Checks the
// web page over https, a wss handshake, a login round trip, a chat with a plain ws:// user of the
// stack's gate 1, a plain ws:// attempt on the TLS port closed, a client with the wrong CA
// refused, and a clean exit on SIGTERM. Prints "N passed, N failed" last.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { RawWs, REPO, assert, createUser, env, harness, loadProto, sleep, waitFor } from './lib.mjs';

const P = await loadProto();
const { CMD } = P;
const h = harness('wss');
const dir = fs.mkdtempSync(path.join(env('CIM_TEST_DIR'), 'wss-'));
const cert = path.join(dir, 'cert.pem'), key = path.join(dir, 'key.pem');
const other = path.join(dir, 'other.pem'), otherKey = path.join(dir, 'other-key.pem');
const prefix = (process.env.STACK_PREFIX || '').trim();
const slow = prefix !== ''; // valgrind

function genCert(c, k) {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', k, '-out', c], { stdio: 'pipe' });
}

// a port free on 127.0.0.1 and 0.0.0.0, at random in 20000-32000 like the runner's (the kernel's
// own pick lies in the ephemeral range, where busy machines reuse it for outgoing connections)
const picked = new Set();
function canListen(port, host) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}
async function freePort() {
  for (let i = 0; i < 20000; i++) {
    const p = 20000 + Math.floor(Math.random() * 12001);
    if (picked.has(p)) continue;
    if (await canListen(p, '127.0.0.1') && await canListen(p, '0.0.0.0')) {
      picked.add(p);
      return p;
    }
  }
  throw new Error('no free port in 20000-32000');
}

let gate = null, gateExit = null, wssPort, metricsPort, logFile;
let alice, bob, wa, wb;
const ca = () => fs.readFileSync(cert);

async function startGate() {
  const [port, wss, nn] = [await freePort(), await freePort(), await freePort()];
  wssPort = wss;
  metricsPort = await freePort();
  const name = `gate-wss-${port}`;
  logFile = path.join(env('CIM_TEST_DIR'), 'log', `${name}.log`);
  const args = [path.join(env('CIM_BIN'), 'msg_gate'), `--gate_port=${port}`, '--gate_ws_port=0',
    `--gate_wss_port=${wss}`, `--gate_tls_cert=${cert}`, `--gate_tls_key=${key}`,
    `--gate_nn_addr=tcp://127.0.0.1:${nn}`, `--gate_metrics_port=${metricsPort}`,
    `--redis_addr=127.0.0.1:${env('CIM_REDIS_PORT')}`, '--gate_host=127.0.0.1', '--gate_auth_timeout=5',
    '--gate_idle_timeout=10', `--gate_web_root=${path.join(REPO, 'web')}`, '--log_level=info'];
  const argv = [...(prefix ? prefix.replaceAll('{name}', name).split(/\s+/) : []), ...args];
  const out = fs.openSync(logFile, 'a');
  gate = spawn(argv[0], argv.slice(1), { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  gateExit = new Promise((resolve) => gate.on('exit', (code, sig) => resolve({ code, sig })));
  await waitFor('the private gate to see 2 logics', async () => {
    if (gate.exitCode !== null) throw new Error(`msg_gate exited ${gate.exitCode} (see ${logFile})`);
    const r = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
    return (await r.json()).logics >= 2;
  }, slow ? 180000 : 60000, 200);
  // both stack logics connected to its delivery endpoint (before that, a logic that has not yet
  // read the registry drops deliveries to its users)
  for (const l of ['logic1', 'logic2']) {
    const f = path.join(env('CIM_TEST_DIR'), 'log', `${l}.log`);
    await waitFor(`${l} to know the private gate`,
      () => fs.readFileSync(f, 'utf8').includes(` at tcp://127.0.0.1:${nn}`), slow ? 180000 : 60000, 100);
  }
}

async function metric(name) {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : -1;
}

function httpsGet(p, opts) {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port: wssPort, path: p, servername: 'localhost', ...opts }, (rsp) => {
      const chunks = [];
      rsp.on('data', (c) => chunks.push(c));
      rsp.on('end', () => resolve({ status: rsp.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error('https timed out')));
  });
}

h.test('setup: certificate and a private gate with gate_wss_port', async () => {
  genCert(cert, key);
  genCert(other, otherKey);
  await startGate();
}, slow ? 240000 : 90000);

h.test('the web page over https (certificate checked against its own CA)', async () => {
  const r = await httpsGet('/', { ca: ca() });
  assert(r.status === 200, `GET / status ${r.status}`);
  assert(/<html/i.test(r.body), 'GET / is the page');
});

h.test('wss handshake and a login round trip', async () => {
  alice = await createUser('wssa', 'Alice WSS');
  wa = await new RawWs(P, `127.0.0.1:${wssPort}`, { ca: ca(), servername: 'localhost' }).connect();
  assert(wa.sock.getProtocol().startsWith('TLSv1.'), `protocol ${wa.sock.getProtocol()}`);
  assert(wa.sock.authorized, 'certificate verified');
  const r = await wa.login(alice);
  assert(r.result_code === 200, `login ${r.result_code}`);
  await wa.heartbeat();
  assert(await metric('cim_gate_tls_connections') >= 1, 'cim_gate_tls_connections');
});

h.test('chat between wss (private gate) and plain ws (stack gate 1)', async () => {
  bob = await createUser('wssb', 'Bob WS');
  wb = await new RawWs(P, env('CIM_GATE1_WS')).connect();
  await wb.login(bob);
  for (const [from, to, toUser, text] of [[wa, wb, bob, 'hi over wss'], [wb, wa, alice, 'hi back over ws']]) {
    const cmid = `wss-${Date.now()}-${Math.random()}`;
    const ack = await from.call(CMD.MSG_DATA, {
      to_session_id: toUser.uid, client_msg_id: cmid, msg_type: 1, session_type: 1, msg_data: P.text.encode(text),
    }, CMD.MSG_DATA_ACK);
    assert(ack.res_code === P.RES.OK, `send res_code ${ack.res_code}`);
    const got = await to.waitPacket((p) => p.cmd === CMD.MSG_DATA && p.msg.client_msg_id === cmid, 15000, `delivery of "${text}"`);
    assert(P.text.decode(got.msg.msg_data) === text, 'message text');
  }
});

h.test('plain ws:// on the wss port is closed; the wss user is unaffected', async () => {
  const before = await metric('cim_gate_tls_handshake_failures_total');
  const c = new RawWs(P, `127.0.0.1:${wssPort}`);
  let err = null;
  try { await c.connect(10000); } catch (e) { err = e; }
  c.close();
  assert(err && /closed/.test(err.message), `plain handshake on the TLS port: ${err ? err.message : 'accepted'}`);
  await waitFor('the failure counted', async () => (await metric('cim_gate_tls_handshake_failures_total')) > before, 5000);
  await wa.heartbeat();
});

h.test('a client checking against another CA refuses the gate', async () => {
  const c = new RawWs(P, `127.0.0.1:${wssPort}`, { ca: fs.readFileSync(other), servername: 'localhost' });
  let err = null;
  try { await c.connect(5000); } catch (e) { err = e; }
  c.close();
  assert(err && /self.signed|certificate/i.test(err.message), `error: ${err && err.message}`);
  await wa.heartbeat();
});

h.test('SIGTERM: the gate exits 0', async () => {
  for (const c of [wa, wb]) if (c) c.close();
  wa = wb = null;
  await sleep(100);
  gate.kill('SIGTERM');
  const t = setTimeout(() => gate.kill('SIGKILL'), slow ? 120000 : 15000);
  const { code, sig } = await gateExit;
  clearTimeout(t);
  gate = null;
  assert(code === 0, `exit code ${code} signal ${sig} (see ${logFile})`);
  const log = fs.readFileSync(logFile, 'utf8');
  assert(!/Sanitizer|runtime error/.test(log), `sanitizer report in ${logFile}`);
}, slow ? 180000 : 60000);

const r = await h.run({ stopOnFail: false });
for (const c of [wa, wb]) if (c) c.close();
if (gate) gate.kill('SIGKILL');
console.log(`${r.passed} passed, ${r.failed} failed`);
process.exit(r.failed ? 1 : 0);
