// WebSocket bad input against a gate's WebSocket port: every bad connection is closed with
// the right close code (PROTOCOL.md section 1) while logged-in WebSocket users on the same
// gate keep working. Prints "N passed, N failed" last; exit status 1 on failure.
import { RawWs, assert, createUser, env, harness, loadProto, sleep } from './lib.mjs';

const P = await loadProto();
const { CMD } = P;
const GATE1_WS = env('CIM_GATE1_WS');
const GATE2_WS = env('CIM_GATE2_WS');
const h = harness('ws');

let alice, bob, wa, wb;

// the logged-in users still answer after each bad connection
async function survivorsOk() {
  await wa.heartbeat();
  await wb.heartbeat();
}

async function badConnection(setup, wantCode, what) {
  const c = await new RawWs(P, GATE1_WS).connect();
  try {
    await setup(c);
    const code = await c.waitClosed(10000);
    if (wantCode) assert(code === wantCode, `${what}: close code ${code}, want ${wantCode}`);
    return code;
  } finally {
    c.close();
  }
}

h.test('setup: two WebSocket users log in (gate 1 and gate 2) and chat', async () => {
  alice = await createUser('wsa', 'Alice WS');
  bob = await createUser('wsb', 'Bob WS');
  wa = await new RawWs(P, GATE1_WS).connect();
  wb = await new RawWs(P, GATE2_WS).connect();
  await wa.login(alice);
  await wb.login(bob);
  await survivorsOk();
});

h.test('text frame -> close 1002', async () => {
  await badConnection(async (c) => {
    await c.heartbeat(); // a good packet first: the connection works
    c.sendFrame(1, 'hello, this is text');
  }, 1002, 'text frame');
  await survivorsOk();
});

h.test('oversized frame (> 64 KiB) -> close 1009', async () => {
  await badConnection(async (c) => {
    const big = new Uint8Array(70000);
    new DataView(big.buffer).setUint32(0, big.length);
    new DataView(big.buffer).setUint16(4, 1);
    new DataView(big.buffer).setUint16(10, CMD.HEARTBEAT);
    c.sock.on('error', () => {}); // the gate may close before it has read it all
    c.sendFrame(2, big);
  }, 1009, 'oversized frame');
  await survivorsOk();
});

h.test('binary frame that is not one packet -> close 1002', async () => {
  // version 2 header
  await badConnection(async (c) => {
    const p = P.packet(CMD.HEARTBEAT, 1);
    new DataView(p.buffer).setUint16(4, 2);
    c.sendFrame(2, p);
  }, 1002, 'bad version');
  // length field says more than the frame holds (truncated packet)
  await badConnection(async (c) => {
    const p = P.packet(CMD.HEARTBEAT, 1);
    new DataView(p.buffer).setUint32(0, 40);
    c.sendFrame(2, p);
  }, 1002, 'truncated packet');
  // two packets in one message
  await badConnection(async (c) => {
    c.sendFrame(2, Buffer.concat([Buffer.from(P.packet(CMD.HEARTBEAT, 1)), Buffer.from(P.packet(CMD.HEARTBEAT, 2))]));
  }, 1002, 'two packets in one message');
  // (a body that does not parse is not checked here: after login the gate forwards it and
  // msg_logic answers INVALID_PARAMETER without closing, on TCP and WebSocket alike)
  await survivorsOk();
});

h.test('unmasked client frame -> closed (1002)', async () => {
  await badConnection(async (c) => {
    c.sendFrame(2, P.packet(CMD.HEARTBEAT, 1), { mask: false });
  }, 1002, 'unmasked frame');
  await survivorsOk();
});

h.test('command before login -> error reply, then close 1008', async () => {
  let reply;
  await badConnection(async (c) => {
    await c.heartbeat(); // heartbeats are fine before login
    const seq = c.send(CMD.SESSIONS_REQ, { user_id: '0' });
    reply = await c.waitPacket((p) => p.cmd === CMD.SESSIONS_RSP && p.seq === seq, 5000, 'the error reply');
  }, 1008, 'not logged in');
  assert(reply.msg.result_code === P.ERR.NOT_LOGGED_IN, `result_code ${reply.msg.result_code}, want ${P.ERR.NOT_LOGGED_IN}`);
  await survivorsOk();
});

h.test('the logged-in users still chat both ways after all that', async () => {
  for (const [from, to, toUser, text] of [[wa, wb, bob, 'still here?'], [wb, wa, alice, 'yes, still here']]) {
    const cmid = `ws-${Date.now()}-${Math.random()}`;
    const ack = await from.call(CMD.MSG_DATA, {
      to_session_id: toUser.uid, client_msg_id: cmid, msg_type: 1, session_type: 1, msg_data: P.text.encode(text),
    }, CMD.MSG_DATA_ACK);
    assert(ack.res_code === P.RES.OK, `send res_code ${ack.res_code}`);
    const got = await to.waitPacket((p) => p.cmd === CMD.MSG_DATA && p.msg.client_msg_id === cmid, 10000, `delivery of "${text}"`);
    assert(P.text.decode(got.msg.msg_data) === text, 'message text');
    assert(got.msg.server_msg_id === ack.server_msg_id, 'server_msg_id in delivery = ack');
  }
  await sleep(100);
});

const r = await h.run({ stopOnFail: false });
for (const c of [wa, wb]) if (c) c.close();
console.log(`${r.passed} passed, ${r.failed} failed`);
process.exit(r.failed ? 1 : 0);
