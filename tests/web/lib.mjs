// Helpers for the web tests: environment, a tiny test harness, the business API, the
// protocol module of the page (web/proto.js), and a raw WebSocket client on net.Socket that
// can also send what browsers never send (unmasked frames, text frames, oversized frames), in
// plain TCP or in TLS (wss).
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const OUT = path.join(REPO, 'tests', 'out', 'web');

export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run through tests/run.sh, or export the CIM_* variables)`);
  return v;
}

// web/proto.js is an ES module without imports; node loads it from a data: URL so that web/
// needs no package.json
export async function loadProto() {
  const src = fs.readFileSync(path.join(REPO, 'web', 'proto.js'), 'utf8');
  return import('data:text/javascript;base64,' + Buffer.from(src).toString('base64'));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const uniq = (prefix) => `${prefix}${Date.now().toString(36)}${crypto.randomBytes(3).toString('hex')}`;

export async function waitFor(what, fn, timeoutMs = 15000, stepMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ` (${last.message})` : ''}`);
    await sleep(stepMs);
  }
}

export function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

// ------------------------------------------------------------------ harness
export function harness(suite) {
  const tests = [];
  return {
    test(name, fn, timeoutMs = 60000) { tests.push({ name, fn, timeoutMs }); },
    async run({ stopOnFail = false } = {}) {
      let passed = 0, failed = 0;
      for (const t of tests) {
        const t0 = Date.now();
        let timer;
        try {
          await Promise.race([
            t.fn(),
            new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out after ${t.timeoutMs} ms`)), t.timeoutMs); }),
          ]);
          passed++;
          console.log(`ok   ${suite}: ${t.name} (${Date.now() - t0} ms)`);
        } catch (e) {
          failed++;
          console.log(`FAIL ${suite}: ${t.name} (${Date.now() - t0} ms): ${e && e.stack ? e.stack : e}`);
          if (this.onFail) { try { await this.onFail(t.name); } catch (e2) { console.log(`  (diagnostics failed: ${e2.message})`); } }
          if (stopOnFail) break;
        } finally {
          clearTimeout(timer);
        }
      }
      const skipped = tests.length - passed - failed;
      if (skipped) { failed += skipped; console.log(`FAIL ${suite}: ${skipped} test(s) not run after a failure`); }
      return { passed, failed };
    },
  };
}

// ------------------------------------------------------------------ business API
export async function api(method, p, body) {
  const rsp = await fetch(`http://${env('CIM_API')}${p}`, {
    method,
    headers: { Authorization: `Bearer ${env('CIM_API_KEY')}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await rsp.text();
  if (!rsp.ok) throw new Error(`${method} ${p}: HTTP ${rsp.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

export async function createUser(prefix, nick, password = 'secret123') {
  const name = uniq(prefix);
  const r = await api('POST', '/api/v1/users', { user_name: name, nick_name: nick, password });
  return { uid: String(r.user_id), name, password, nick, token: r.token };
}

// ------------------------------------------------------------------ raw WebSocket client
export class RawWs {
  // tlsOptions: null for ws://, else node tls.connect options for wss:// (ca, servername...)
  constructor(P, hostport, tlsOptions = null) {
    this.P = P;
    this.hostport = hostport;
    this.tlsOptions = tlsOptions;
    this.buf = Buffer.alloc(0);
    this.packets = [];
    this.waiters = [];
    this.seq = 0;
    this.closeCode = null; // from the server's close frame
    this.closed = false; // TCP closed
    this.closedWaiters = [];
    this.hbTimer = null;
  }

  connect(timeoutMs = 10000) {
    const [host, port] = this.hostport.split(':');
    return new Promise((resolve, reject) => {
      const key = crypto.randomBytes(16).toString('base64');
      const sock = this.tlsOptions
        ? tls.connect({ host, port: Number(port), ...this.tlsOptions })
        : net.connect(Number(port), host);
      this.sock = sock;
      let head = Buffer.alloc(0), upgraded = false;
      const timer = setTimeout(() => { sock.destroy(); reject(new Error('handshake timed out')); }, timeoutMs);
      sock.on(this.tlsOptions ? 'secureConnect' : 'connect', () => {
        sock.write(`GET / HTTP/1.1\r\nHost: ${this.hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      });
      sock.on('data', (d) => {
        if (upgraded) { this.onData(d); return; }
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = head.subarray(0, end).toString();
        const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        clearTimeout(timer);
        if (!/^HTTP\/1\.1 101/.test(status) || !status.includes(accept)) {
          sock.destroy();
          reject(new Error(`bad handshake answer: ${status.split('\r\n')[0]}`));
          return;
        }
        upgraded = true;
        resolve(this);
        if (head.length > end + 4) this.onData(head.subarray(end + 4));
      });
      sock.on('error', (e) => { clearTimeout(timer); if (!upgraded) reject(e); });
      sock.on('close', () => {
        if (!upgraded) { clearTimeout(timer); reject(new Error('connection closed during the handshake')); }
        this.closed = true;
        clearInterval(this.hbTimer);
        for (const w of this.closedWaiters) w();
        this.closedWaiters = [];
        for (const w of this.waiters) w.reject(new Error(`connection closed (close code ${this.closeCode})`));
        this.waiters = [];
      });
    });
  }

  // one frame; opts: {mask (default true), fin (default true)}
  frame(opcode, payload, opts = {}) {
    const mask = opts.mask !== false;
    payload = Buffer.from(payload);
    const len = payload.length;
    const hdr = [0x80 | opcode];
    if (len < 126) hdr.push((mask ? 0x80 : 0) | len);
    else if (len < 65536) hdr.push((mask ? 0x80 : 0) | 126, len >> 8, len & 255);
    else {
      hdr.push((mask ? 0x80 : 0) | 127, 0, 0, 0, 0);
      hdr.push((len >>> 24) & 255, (len >>> 16) & 255, (len >>> 8) & 255, len & 255);
    }
    let body = payload;
    const parts = [Buffer.from(hdr)];
    if (mask) {
      const m = crypto.randomBytes(4);
      body = Buffer.alloc(len);
      for (let i = 0; i < len; i++) body[i] = payload[i] ^ m[i & 3];
      parts.push(m);
    }
    parts.push(body);
    return Buffer.concat(parts);
  }

  sendFrame(opcode, payload, opts) {
    if (this.closed) throw new Error('closed');
    this.sock.write(this.frame(opcode, payload, opts));
  }

  send(cmd, obj) {
    this.seq = (this.seq % 65535) + 1;
    this.sendFrame(2, this.P.packetOf(cmd, this.seq, obj));
    return this.seq;
  }

  onData(d) {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const op = b[0] & 15, masked = b[1] & 128;
      let len = b[1] & 127, off = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); off = 10; }
      if (masked) off += 4; // servers do not mask; tolerate it anyway
      if (b.length < off + len) return;
      let payload = b.subarray(off, off + len);
      if (masked) {
        const m = b.subarray(off - 4, off);
        payload = Buffer.from(payload.map((x, i) => x ^ m[i & 3]));
      }
      this.buf = b.subarray(off + len);
      if (op === 2) this.onPacket(this.P.parsePacket(new Uint8Array(payload)));
      else if (op === 8) {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        try { this.sendFrame(8, payload.subarray(0, 2)); } catch (e) { /* gone */ }
      } else if (op === 9) {
        try { this.sendFrame(10, payload); } catch (e) { /* gone */ }
      }
    }
  }

  onPacket(p) {
    const i = this.waiters.findIndex((w) => w.match(p));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(p);
      return;
    }
    this.packets.push(p);
    if (p.cmd === this.P.CMD.MSG_DATA) { // confirm deliveries like a real client
      const m = p.msg;
      try {
        this.send(this.P.CMD.MSG_DATA_ACK, {
          from_user_id: m.from_user_id, to_session_id: m.session_type === 2 ? m.to_session_id : m.from_user_id,
          client_msg_id: m.client_msg_id, server_msg_id: m.server_msg_id, session_type: m.session_type,
        });
      } catch (e) { /* closed */ }
    }
  }

  // next packet matching fn (already queued or arriving within timeoutMs)
  waitPacket(fn, timeoutMs = 10000, what = 'a packet') {
    const i = this.packets.findIndex(fn);
    if (i >= 0) return Promise.resolve(this.packets.splice(i, 1)[0]);
    if (this.closed) return Promise.reject(new Error(`connection closed (close code ${this.closeCode}) waiting for ${what}`));
    return new Promise((resolve, reject) => {
      const w = { match: fn, resolve, reject };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  call(cmd, obj, rspCmd, timeoutMs) {
    const seq = this.send(cmd, obj);
    return this.waitPacket((p) => p.cmd === rspCmd && p.seq === seq, timeoutMs, `response 0x${rspCmd.toString(16)}`)
      .then((p) => p.msg);
  }

  async heartbeat(timeoutMs = 5000) {
    const seq = this.send(this.P.CMD.HEARTBEAT, {});
    await this.waitPacket((p) => p.cmd === this.P.CMD.HEARTBEAT && p.seq === seq, timeoutMs, 'heartbeat echo');
  }

  async login(user) {
    const r = await this.call(this.P.CMD.AUTH_REQ, { user_name: user.name, user_pwd: user.password, client_type: 3 }, this.P.CMD.AUTH_RSP);
    if (r.result_code !== 200) throw new Error(`login ${user.name}: ${r.result_code} ${r.result_string}`);
    // the test stack closes connections idle for 3 s
    this.hbTimer = setInterval(() => { try { this.send(this.P.CMD.HEARTBEAT, {}); } catch (e) { /* closed */ } }, 1000);
    return r;
  }

  // resolves when the TCP connection is closed (with this.closeCode set if a close frame came)
  waitClosed(timeoutMs = 10000) {
    if (this.closed) return Promise.resolve(this.closeCode);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('connection still open')), timeoutMs);
      this.closedWaiters.push(() => { clearTimeout(timer); resolve(this.closeCode); });
    });
  }

  close() {
    clearInterval(this.hbTimer);
    if (this.sock) this.sock.destroy();
  }
}
