// cim web client: one WebSocket to a gate (one PROTOCOL.md packet per binary message).
// Plain ES module, no build step. Settings, in the URL fragment (#hb=1000&ws=...; the gate's
// file server takes no query strings) or the query string, all optional:
//   ws=HOST:PORT[,HOST:PORT...]  gates to connect to, tried in turn (default: this page's host)
//   hb=MS                         heartbeat interval (default 25000)
//   maxBackoff=MS                 longest wait between reconnect attempts (default 10000)
import * as P from './proto.js';

const { CMD } = P;
const params = new URLSearchParams(location.hash.replace(/^#/, '') || location.search);
const HB_MS = Math.max(200, Number(params.get('hb')) || 25000);
const BACKOFF_MIN = 500;
const BACKOFF_MAX = Math.max(BACKOFF_MIN, Number(params.get('maxBackoff')) || 10000);
const CALL_MS = 15000;
const PAGE = 20;
const CLIENT_VERSION = 'cim-web/1.0';
const GATES = (params.get('ws') || location.host).split(',').map((s) => s.trim()).filter(Boolean);
const TOKEN_KEY = 'cim.auth';

// ------------------------------------------------------------------ state
const st = {
  ws: null,
  connState: 'offline', // offline | connecting | online | reconnecting
  authed: false,
  wantOnline: false, // logged in: reconnect when the connection drops
  everAuthed: false, // this page has loaded its lists once
  me: null, // {uid, name, nick}
  seq: 0,
  pending: new Map(), // "cmd:seq" -> {resolve, reject, timer}
  maxSeq: 0n, // highest inbox seq seen
  syncing: false,
  syncAgain: false,
  convs: new Map(), // "s:UID" | "g:GID" -> conversation
  active: null,
  nicks: new Map(), // uid -> nick
  groups: new Map(), // gid -> CIMGroupInfo
  online: new Map(), // uid -> nick
  onlineTotal: 0,
  outbox: new Map(), // client_msg_id -> {conv, msg}
  backoff: BACKOFF_MIN,
  gateIdx: 0,
  reconnectTimer: null,
  reconnectAt: 0,
  hbTimer: null,
  lastRx: 0,
  kicked: false,
  tab: 'chats',
};
window.cim = { st, P }; // for debugging and the tests

// ------------------------------------------------------------------ small helpers
const $ = (id) => document.getElementById(id);
const el = (tag, cls, textContent) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (textContent !== undefined) e.textContent = textContent;
  return e;
};
const big = (v) => BigInt(v || 0);
const maxId = (a, b) => (big(a) >= big(b) ? String(a || '0') : String(b || '0'));
const nowSec = () => Math.floor(Date.now() / 1000);

function randomId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return 'w' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function toast(text, kind) {
  const t = $('toast');
  t.textContent = text;
  t.className = 'toast ' + (kind || '');
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

function fmtTime(sec) {
  if (!sec) return '';
  const d = new Date(sec * 1000);
  const today = new Date();
  if (d.toDateString() === today.toDateString())
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' });
}
const fmtClock = (sec) => new Date(sec * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
function fmtDay(sec) {
  const d = new Date(sec * 1000);
  const today = new Date();
  const y = new Date(); y.setDate(today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === y.toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], { weekday: 'long', month: 'long', day: 'numeric' });
}

function nickOf(uid) {
  uid = String(uid);
  if (uid === '0') return 'System';
  if (st.me && uid === st.me.uid) return st.me.nick || st.me.name || 'Me';
  return st.nicks.get(uid) || st.online.get(uid) || `User ${uid}`;
}
function learnNick(uid, nick) {
  if (nick && uid && uid !== '0') st.nicks.set(String(uid), nick);
}

const PALETTE = ['#5b8def', '#e8697d', '#f0a04b', '#43b581', '#9b6bdf', '#34a5b5', '#d46fb4', '#7a8b99'];
function avatar(node, label, seed) {
  node.textContent = (label || '?').trim().slice(0, 1).toUpperCase() || '?';
  let h = 0;
  for (const ch of String(seed)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  node.style.background = PALETTE[h % PALETTE.length];
}

// ------------------------------------------------------------------ connection
function wsUrl(hostport) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${hostport}/`;
}

function setConn(state, text) {
  st.connState = state;
  const c = $('conn');
  c.dataset.state = state;
  $('conn-text').textContent = text || { offline: 'Offline', connecting: 'Connecting…', online: 'Connected', reconnecting: 'Reconnecting…' }[state];
}

function openSocket() {
  return new Promise((resolve, reject) => {
    const gate = GATES[st.gateIdx % GATES.length];
    let ws;
    try {
      ws = new WebSocket(wsUrl(gate));
    } catch (e) {
      reject(e);
      return;
    }
    ws.binaryType = 'arraybuffer';
    st.ws = ws;
    st.authed = false;
    let opened = false;
    ws.onopen = () => { opened = true; st.lastRx = Date.now(); resolve(ws); };
    ws.onmessage = (e) => {
      if (ws !== st.ws) return;
      st.lastRx = Date.now();
      if (typeof e.data === 'string') return;
      let p;
      try {
        p = P.parsePacket(e.data);
      } catch (err) {
        console.warn('bad packet from the gate', err);
        return;
      }
      onPacket(p);
    };
    ws.onerror = () => {};
    ws.onclose = (e) => {
      if (!opened) reject(new Error(`cannot connect to ${gate}`));
      onSocketClosed(ws, e);
    };
  });
}

function nextSeq() {
  st.seq = (st.seq % 65535) + 1;
  return st.seq;
}

function sendPacket(cmd, obj) {
  const seq = nextSeq();
  if (!st.ws || st.ws.readyState !== WebSocket.OPEN) throw new Error('not connected');
  st.ws.send(P.packetOf(cmd, seq, obj));
  return seq;
}

// a request and its response (matched by command id and seq_num)
function call(cmd, obj, rspCmd, timeoutMs) {
  return new Promise((resolve, reject) => {
    let seq;
    try {
      seq = sendPacket(cmd, obj);
    } catch (e) {
      reject(e);
      return;
    }
    const key = `${rspCmd}:${seq}`;
    const timer = setTimeout(() => {
      st.pending.delete(key);
      reject(new Error('timed out'));
    }, timeoutMs || CALL_MS);
    st.pending.set(key, { resolve, reject, timer });
  });
}

function failPending(why) {
  for (const [key, p] of st.pending) {
    clearTimeout(p.timer);
    p.reject(new Error(why));
    st.pending.delete(key);
  }
}

function onSocketClosed(ws, e) {
  if (ws !== st.ws) return;
  st.ws = null;
  st.authed = false;
  stopHeartbeat();
  failPending('connection closed');
  if (st.kicked) {
    setConn('offline', 'Signed out');
    return;
  }
  if (st.wantOnline) {
    console.info(`connection closed (${e.code}); reconnecting`);
    scheduleReconnect();
  } else {
    setConn('offline');
  }
}

function scheduleReconnect() {
  clearTimeout(st.reconnectTimer);
  const delay = Math.round(st.backoff * (0.75 + Math.random() * 0.5));
  st.backoff = Math.min(st.backoff * 2, BACKOFF_MAX);
  st.reconnectAt = Date.now() + delay;
  const tick = () => {
    const left = Math.max(0, Math.ceil((st.reconnectAt - Date.now()) / 1000));
    setConn('reconnecting', left > 0 ? `Reconnecting in ${left} s…` : 'Reconnecting…');
  };
  tick();
  clearInterval(st.countdown);
  st.countdown = setInterval(tick, 500);
  st.reconnectTimer = setTimeout(reconnect, delay);
}

async function reconnect() {
  clearInterval(st.countdown);
  if (!st.wantOnline || st.ws) return;
  const saved = loadToken();
  if (!saved) {
    showLogin('Please log in again.');
    return;
  }
  setConn('reconnecting', 'Reconnecting…');
  try {
    await openSocket();
  } catch (e) {
    st.gateIdx++; // try the next gate next time; onclose scheduled the retry
    return;
  }
  try {
    const rsp = await call(CMD.AUTH_TOKEN_REQ, {
      user_id: saved.uid, user_token: saved.token, client_type: P.CLIENT_WEB, client_version: CLIENT_VERSION,
    }, CMD.AUTH_TOKEN_RSP);
    if (rsp.result_code === P.ERR.INVALID_USER_TOKEN || rsp.result_code === P.ERR.INVALID_USER_OR_PWD) {
      clearToken();
      st.wantOnline = false;
      st.ws && st.ws.close();
      showLogin('Your session expired: please log in again.');
      return;
    }
    if (rsp.result_code !== P.ERR.SUCCESS) throw new Error(`token login: ${rsp.result_code} ${rsp.result_string}`);
    if (rsp.user_info) learnMe(rsp.user_info, saved.name);
    await onAuthed();
  } catch (e) {
    console.warn('reconnect failed', e);
    if (st.ws) st.ws.close(); // onclose schedules the next attempt
  }
}

function startHeartbeat() {
  stopHeartbeat();
  st.hbTimer = setInterval(() => {
    if (!st.ws || st.ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - st.lastRx > HB_MS * 2 + 5000) {
      console.warn('no answer from the gate: reconnecting');
      st.ws.close();
      return;
    }
    try { sendPacket(CMD.HEARTBEAT, {}); } catch (e) { /* closed */ }
    if (st.active) markRead(st.active); // a safety net: read receipts for what is on screen
  }, HB_MS);
}
function stopHeartbeat() { clearInterval(st.hbTimer); st.hbTimer = null; }

// ------------------------------------------------------------------ token storage
function saveToken(uid, token, name) { sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ uid, token, name })); }
function loadToken() { try { return JSON.parse(sessionStorage.getItem(TOKEN_KEY)); } catch (e) { return null; } }
function clearToken() { sessionStorage.removeItem(TOKEN_KEY); }

function learnMe(info, name) {
  st.me = { uid: info.user_id, name: name || (st.me && st.me.name) || '', nick: info.nick_name || name || '' };
}

// ------------------------------------------------------------------ login / register
async function loginWithPassword(register) {
  const name = $('login-name').value.trim();
  const pwd = $('login-pwd').value;
  const nick = $('login-nick').value.trim();
  const err = $('login-error');
  err.textContent = '';
  if (!/^[A-Za-z0-9_.-]{3,32}$/.test(name)) { err.textContent = 'User name: 3-32 letters, digits, _ . -'; return; }
  if (pwd.length < 6) { err.textContent = 'Password: at least 6 characters.'; return; }
  setBusy(true);
  try {
    if (st.ws) { const old = st.ws; st.ws = null; old.close(); }
    await openSocket();
    if (register) {
      const r = await call(CMD.REGISTER_REQ, { user_name: name, user_pwd: pwd, nick_name: nick || name, client_type: P.CLIENT_WEB }, CMD.REGISTER_RSP);
      if (r.result_code !== P.ERR.SUCCESS) {
        throw new Error(r.result_code === P.ERR.USER_ALREADY_EXIST ? 'That user name is taken.'
          : r.result_code === P.ERR.USER_INVALID_PARAMETER ? 'Invalid user name or password.'
            : `Registration failed (${r.result_code}${r.result_string ? ': ' + r.result_string : ''}).`);
      }
    }
    const rsp = await call(CMD.AUTH_REQ, { user_name: name, user_pwd: pwd, client_type: P.CLIENT_WEB, client_version: CLIENT_VERSION }, CMD.AUTH_RSP);
    if (rsp.result_code !== P.ERR.SUCCESS) {
      throw new Error(rsp.result_code === P.ERR.INVALID_USER_OR_PWD ? 'Wrong user name or password.'
        : `Login failed (${rsp.result_code}${rsp.result_string ? ': ' + rsp.result_string : ''}).`);
    }
    learnMe(rsp.user_info || {}, name);
    saveToken(st.me.uid, rsp.user_token, name);
    st.kicked = false;
    $('login-pwd').value = '';
    await onAuthed();
  } catch (e) {
    err.textContent = e.message === 'connection closed' ? 'The connection was closed: try again.' : e.message;
    st.wantOnline = false;
    if (st.ws) { const old = st.ws; st.ws = null; old.close(); }
  } finally {
    setBusy(false);
  }
}

function setBusy(b) { $('login-btn').disabled = b; $('register-btn').disabled = b; }

async function onAuthed() {
  st.authed = true;
  st.wantOnline = true;
  st.backoff = BACKOFF_MIN;
  clearTimeout(st.reconnectTimer);
  clearInterval(st.countdown);
  setConn('online');
  startHeartbeat();
  showChat();
  if (!st.everAuthed) {
    st.everAuthed = true;
    // where the inbox stands now: later entries arrive as pushes (or by sync after a gap)
    const s = await call(CMD.SYNC_REQ, { user_id: st.me.uid, after_seq: '0', limit: 1 }, CMD.SYNC_RSP);
    if (big(s.max_seq) > st.maxSeq) st.maxSeq = big(s.max_seq);
    await Promise.all([loadSessions(), loadGroups(), loadOnline()]);
  } else {
    // back after a disconnect: catch up from the highest seq seen, then refresh the lists
    await syncNow();
    await Promise.all([loadSessions(), loadGroups(), loadOnline()]);
    if (st.active && !st.active.loaded) await loadHistory(st.active);
  }
  flushOutbox();
  if (st.active) markRead(st.active);
  renderConvList();
  renderMessages();
}

async function logout() {
  st.wantOnline = false;
  try {
    if (st.authed) await call(CMD.LOGOUT_REQ, { user_id: st.me.uid, client_type: P.CLIENT_WEB }, CMD.LOGOUT_RSP, 3000);
  } catch (e) { /* closing anyway */ }
  clearToken();
  if (st.ws) st.ws.close();
  location.reload();
}

// ------------------------------------------------------------------ incoming packets
function onPacket(p) {
  const pend = st.pending.get(`${p.cmd}:${p.seq}`);
  if (pend) {
    st.pending.delete(`${p.cmd}:${p.seq}`);
    clearTimeout(pend.timer);
    pend.resolve(p.msg || {});
    return;
  }
  const m = p.msg;
  switch (p.cmd) {
    case CMD.HEARTBEAT: break;
    case CMD.MSG_DATA: onPushMsg(m); break;
    case CMD.MSG_READ_NOTIFY: onReadNotify(m); break;
    case CMD.RECALL_NOTIFY: onRecall(m.session_type, m.session_type === P.SESSION.GROUP ? m.session_id
      : (m.from_user_id === st.me.uid ? m.session_id : m.from_user_id), m.server_msg_id); break;
    case CMD.GROUP_MEMBER_CHANGED: refreshGroupsSoon(); break;
    case CMD.PRESENCE_NOTIFY: onPresence(m); break;
    case CMD.KICKOUT_NOTIFY: onKicked(m); break;
    default: break; // responses nobody waits for any more, unknown pushes
  }
}

function onKicked(m) {
  st.kicked = true;
  st.wantOnline = false;
  clearToken();
  const why = { 1: 'you logged in from another browser', 2: 'by the server', 3: 'the account is disabled' }[m.reason] || 'by the server';
  showLogin(`Signed out: ${why}.`);
}

function sessionOfMsg(from, to, sessionType) {
  if (sessionType === P.SESSION.GROUP) return { type: P.SESSION.GROUP, id: to };
  return { type: P.SESSION.SINGLE, id: st.me && from === st.me.uid ? to : from };
}

function onPushMsg(d) {
  const s = sessionOfMsg(d.from_user_id, d.to_session_id, d.session_type);
  // confirm the delivery (PROTOCOL.md section 5): the session as this recipient sees it
  try {
    sendPacket(CMD.MSG_DATA_ACK, {
      from_user_id: d.from_user_id, to_session_id: s.id, client_msg_id: d.client_msg_id,
      server_msg_id: d.server_msg_id, session_type: d.session_type,
    });
  } catch (e) { /* closed: sync will bring it again */ }
  learnNick(d.from_user_id, d.from_nick_name);
  if (!d.from_nick_name && d.from_user_id !== '0' && !st.nicks.has(d.from_user_id)) refreshOnlineSoon();
  applyMsg({
    smid: d.server_msg_id, cmid: d.client_msg_id, from: d.from_user_id, sessionType: d.session_type,
    sessionId: s.id, time: d.create_time, msgType: d.msg_type, data: d.msg_data, seq: d.seq,
  }, 'push');
  noteSeq(d.seq);
}

function fromInfo(mi) {
  const s = sessionOfMsg(mi.from_user_id, mi.to_session_id, mi.session_type);
  return {
    smid: mi.server_msg_id, cmid: mi.client_msg_id, from: mi.from_user_id, sessionType: mi.session_type,
    sessionId: s.id, time: mi.create_time, msgType: mi.msg_type, data: mi.msg_data, seq: mi.seq,
    recalled: mi.msg_status === P.MSG_STATUS_RECALLED, peerRead: mi.msg_status === 2,
  };
}

// a seq arrived (push or ack): a gap means something was missed: sync
function noteSeq(seq) {
  const s = big(seq);
  if (s === 0n) return;
  if (s > st.maxSeq + 1n) { syncNow(); return; }
  if (s > st.maxSeq) st.maxSeq = s;
}

async function syncNow() {
  if (st.syncing) { st.syncAgain = true; return; }
  st.syncing = true;
  try {
    do {
      st.syncAgain = false;
      for (let pages = 0; pages < 50; pages++) {
        const r = await call(CMD.SYNC_REQ, { user_id: st.me.uid, after_seq: st.maxSeq.toString(), limit: 200 }, CMD.SYNC_RSP);
        if (r.result_code && r.result_code !== 200) throw new Error(`sync refused: ${r.result_code}`);
        for (const mi of r.msg_list) {
          applyMsg(fromInfo(mi), 'sync');
          if (big(mi.seq) > st.maxSeq) st.maxSeq = big(mi.seq);
        }
        if (!r.has_more) {
          if (big(r.max_seq) > st.maxSeq) st.maxSeq = big(r.max_seq);
          break;
        }
        if (!r.msg_list.length) break;
      }
    } while (st.syncAgain);
  } catch (e) {
    console.warn('sync failed', e);
  } finally {
    st.syncing = false;
  }
}

function onReadNotify(m) {
  if (!st.me) return;
  if (m.user_id === st.me.uid) { // I read it on another device
    const c = conv(m.session_type || P.SESSION.SINGLE, m.session_id);
    c.readSent = maxId(c.readSent, m.msg_id);
    c.unread = 0;
  } else if (m.session_type !== P.SESSION.GROUP) { // the peer read my messages
    const c = conv(P.SESSION.SINGLE, m.session_id === st.me.uid ? m.user_id : m.session_id);
    c.peerRead = maxId(c.peerRead, m.msg_id);
  }
  renderConvList();
  renderMessages();
}

function onRecall(sessionType, sessionId, smid) {
  const c = conv(sessionType, sessionId);
  const msg = c.msgs.get(String(smid));
  if (msg) { msg.recalled = true; msg.text = ''; }
  renderConvList();
  if (c === st.active) renderMessages();
}

function onPresence(m) {
  if (m.online) {
    st.online.set(m.user_id, st.online.get(m.user_id) || st.nicks.get(m.user_id) || '');
    if (!st.nicks.has(m.user_id)) refreshOnlineSoon(); // the notify has no nick: ask for it
  } else {
    st.online.delete(m.user_id);
  }
  st.onlineTotal = st.online.size;
  renderOnline();
  renderConvList();
  if (st.active) renderConvHead();
}

// ------------------------------------------------------------------ conversations
function conv(type, id) {
  type = Number(type) === P.SESSION.GROUP ? P.SESSION.GROUP : P.SESSION.SINGLE;
  id = String(id);
  const key = (type === P.SESSION.GROUP ? 'g:' : 's:') + id;
  let c = st.convs.get(key);
  if (!c) {
    c = {
      key, type, id, msgs: new Map(), unread: 0, last: null, cursor: '0', hasMore: true,
      loaded: false, loading: false, peerRead: '0', readSent: '0', members: null,
    };
    st.convs.set(key, c);
  }
  return c;
}
const convName = (c) => (c.type === P.SESSION.GROUP ? (st.groups.get(c.id)?.group_name || `Group ${c.id}`) : nickOf(c.id));

function notificationText(json) {
  let n;
  try { n = JSON.parse(json); } catch (e) { return 'Notification'; }
  const who = (u) => nickOf(u);
  const list = (ids) => (ids || []).map(who).join(', ');
  switch (n.type) {
    case 'group_create': return `${who(n.owner_id)} created the group “${n.group_name}”` + (n.member_ids && n.member_ids.length ? ` with ${list(n.member_ids.filter((u) => u !== n.owner_id))}` : '');
    case 'group_invite': return `${who(n.by)} added ${list(n.member_ids)}`;
    case 'group_kick': return `${who(n.by)} removed ${list(n.member_ids)}`;
    case 'group_join': return `${who(n.user_id)} joined the group`;
    case 'group_exit': return `${who(n.user_id)} left the group` + (n.new_owner_id ? `; ${who(n.new_owner_id)} is the new owner` : '');
    case 'group_disband': return `${who(n.by)} disbanded the group`;
    case 'group_update': return 'The group info was updated';
    case 'recall': return 'A message was recalled';
    default: return 'Notification';
  }
}

const isViewing = (c) => st.active === c && document.visibilityState === 'visible' && st.authed;

// add or update one message; source: push | sync | history | ack
function applyMsg(m, source) {
  const c = conv(m.sessionType, m.sessionId);
  const smid = String(m.smid || '0');
  const mine = st.me && m.from === st.me.uid;
  const isNote = m.msgType === P.MSG_TYPE.NOTIFICATION;
  let textStr = '';
  if (isNote) {
    const json = P.text.decode(m.data || new Uint8Array(0));
    textStr = notificationText(json);
    try {
      const n = JSON.parse(json);
      if (n.type === 'recall' && n.server_msg_id) {
        const target = c.msgs.get(String(n.server_msg_id));
        if (target) { target.recalled = true; target.text = ''; }
      } else if (String(n.type || '').startsWith('group_') && source !== 'history') {
        refreshGroupsSoon();
      }
    } catch (e) { /* not JSON */ }
  } else if (m.msgType === P.MSG_TYPE.TEXT || !m.msgType) {
    textStr = P.text.decode(m.data || new Uint8Array(0));
  } else {
    textStr = `[message of type ${m.msgType}]`;
  }
  // my own message coming back (sync / other device) while still pending here
  if (mine && m.cmid && c.msgs.has('c:' + m.cmid)) {
    c.msgs.delete('c:' + m.cmid);
    st.outbox.delete(m.cmid);
  }
  const existing = c.msgs.get(smid);
  if (existing) {
    if (m.recalled) { existing.recalled = true; existing.text = ''; }
    if (m.peerRead && mine) c.peerRead = maxId(c.peerRead, smid);
    return;
  }
  const msg = {
    smid, cmid: m.cmid, from: m.from, time: m.time || nowSec(), text: m.recalled ? '' : textStr,
    note: isNote, status: 'sent', recalled: !!m.recalled, seq: String(m.seq || '0'),
  };
  c.msgs.set(smid, msg);
  if (m.peerRead && mine) c.peerRead = maxId(c.peerRead, smid);
  // the list entry: the newest message
  if (!c.last || big(smid) >= big(c.last.smid)) {
    c.last = { smid, text: isNote ? textStr : msg.recalled ? 'Message recalled' : textStr, time: msg.time, from: m.from, note: isNote };
  }
  if (source === 'push' || source === 'sync') {
    if (!mine && !isNote) {
      if (isViewing(c)) scheduleRead(c);
      else if (big(smid) > big(c.readSent)) c.unread++;
    }
    scheduleRender(c);
  }
}

let renderPending = null;
function scheduleRender(c) {
  if (renderPending) { renderPending.add(c); return; }
  renderPending = new Set([c]);
  requestAnimationFrame(() => {
    const set = renderPending;
    renderPending = null;
    renderConvList();
    if (st.active && set.has(st.active)) renderMessages({ stick: true });
  });
}

let readTimer = null;
function scheduleRead(c) {
  clearTimeout(readTimer);
  readTimer = setTimeout(() => markRead(c), 150);
}

// 0x0303: everything up to the newest message of the viewed conversation is read
function markRead(c) {
  if (!st.authed || !isViewing(c)) return;
  let top = '0';
  for (const m of c.msgs.values()) if (m.smid !== '0' && !m.smid.startsWith('c:')) top = maxId(top, m.smid);
  if (c.last) top = maxId(top, c.last.smid);
  const had = c.unread;
  c.unread = 0;
  if (big(top) > big(c.readSent)) {
    c.readSent = top;
    try {
      sendPacket(CMD.MSG_READ_ACK, { user_id: st.me.uid, session_id: c.id, msg_id: top, session_type: c.type });
    } catch (e) { c.readSent = '0'; }
  }
  if (had) renderConvList();
}

// ------------------------------------------------------------------ lists from the server
async function loadSessions() {
  const r = await call(CMD.SESSIONS_REQ, { user_id: st.me.uid, latest_update_time: 0 }, CMD.SESSIONS_RSP);
  if (r.result_code && r.result_code !== 200) return;
  for (const s of r.contact_session_list) {
    const c = conv(s.session_type, s.session_id);
    c.unread = isViewing(c) ? 0 : s.unread_cnt;
    if (s.server_msg_id !== '0' && (!c.last || big(s.server_msg_id) >= big(c.last.smid))) {
      const isNote = s.msg_type === P.MSG_TYPE.NOTIFICATION;
      const body = P.text.decode(s.msg_data);
      c.last = {
        smid: s.server_msg_id, from: s.msg_from_user_id, time: s.msg_time_stamp || s.updated_time, note: isNote,
        text: s.msg_status === P.MSG_STATUS_RECALLED ? 'Message recalled' : isNote ? notificationText(body) : body,
      };
    }
  }
  renderConvList();
}

async function loadGroups() {
  const r = await call(CMD.GROUP_LIST_REQ, { user_id: st.me.uid }, CMD.GROUP_LIST_RSP);
  if (r.result_code && r.result_code !== 200) return;
  const mine = new Set(r.group_version_list.map((g) => g.group_id));
  for (const gid of [...st.groups.keys()]) if (!mine.has(gid)) st.groups.delete(gid);
  if (r.group_version_list.length) {
    const info = await call(CMD.GROUP_INFO_REQ, {
      user_id: st.me.uid, group_version_list: r.group_version_list.map((g) => ({ group_id: g.group_id, group_version: 0 })),
    }, CMD.GROUP_INFO_RSP);
    for (const g of info.group_info_list) {
      st.groups.set(g.group_id, g);
      const c = conv(P.SESSION.GROUP, g.group_id);
      if (!c.last) c.last = { smid: '0', text: 'No messages yet', time: g.create_time, from: '0', note: true };
    }
  }
  renderConvList();
  if (st.active && st.active.type === P.SESSION.GROUP) { st.active.members = null; renderConvHead(); }
}

let groupsTimer = null;
function refreshGroupsSoon() {
  clearTimeout(groupsTimer);
  groupsTimer = setTimeout(() => { if (st.authed) loadGroups().catch((e) => console.warn(e)); }, 200);
}

async function loadOnline() {
  const next = new Map();
  let offset = 0, total = 0;
  for (let pages = 0; pages < 20; pages++) {
    const r = await call(CMD.ONLINE_REQ, { user_id: st.me.uid, offset, limit: 200, subscribe: 1 }, CMD.ONLINE_RSP);
    if (r.result_code && r.result_code !== 200) return;
    for (const u of r.user_list) { next.set(u.user_id, u.nick_name); learnNick(u.user_id, u.nick_name); }
    total = r.total_online;
    if (!r.next_offset) break;
    offset = r.next_offset;
  }
  st.online = next;
  st.onlineTotal = Math.max(total, next.size);
  renderOnline();
  renderConvList();
  if (st.active) { renderConvHead(); renderMessages(); }
}

let onlineTimer = null;
function refreshOnlineSoon() {
  clearTimeout(onlineTimer);
  onlineTimer = setTimeout(() => { if (st.authed) loadOnline().catch((e) => console.warn(e)); }, 300);
}

async function loadMembers(c) {
  if (c.type !== P.SESSION.GROUP || c.members || !st.authed) return;
  c.members = [];
  try {
    const r = await call(CMD.GROUP_MEMBERS_REQ, { user_id: st.me.uid, group_id: c.id }, CMD.GROUP_MEMBERS_RSP);
    c.members = r.member_id_list;
  } catch (e) { c.members = null; }
  if (st.active === c) renderConvHead();
}

// history: a page older than the oldest loaded (end_msg_id cursor), newest first
async function loadHistory(c) {
  if (c.loading || !c.hasMore || !st.authed) return;
  c.loading = true;
  renderHistoryStatus();
  const box = $('messages');
  const before = box.scrollHeight - box.scrollTop;
  try {
    const r = await call(CMD.MSG_LIST_REQ, {
      user_id: st.me.uid, session_type: c.type, session_id: c.id, end_msg_id: c.cursor, limit_count: PAGE,
    }, CMD.MSG_LIST_RSP);
    if (r.result_code && r.result_code !== 200) throw new Error(`history refused (${r.result_code})`);
    for (const mi of r.msg_list) applyMsg(fromInfo(mi), 'history');
    if (r.msg_list.length < PAGE || r.end_msg_id === '0') c.hasMore = false;
    else c.cursor = r.end_msg_id;
    const first = !c.loaded;
    c.loaded = true;
    c.loading = false;
    if (st.active === c) {
      renderMessages();
      if (first) box.scrollTop = box.scrollHeight;
      else box.scrollTop = box.scrollHeight - before; // keep what the reader was looking at
      markRead(c);
      // not enough to scroll yet: fetch another page
      if (c.hasMore && box.scrollHeight <= box.clientHeight + 20) loadHistory(c);
    }
    renderConvList();
  } catch (e) {
    c.loading = false;
    console.warn('history', e);
  }
  renderHistoryStatus();
}

// ------------------------------------------------------------------ sending
function sendText(c, text) {
  const cmid = randomId();
  const msg = { smid: 'c:' + cmid, cmid, from: st.me.uid, time: nowSec(), text, note: false, status: 'sending', recalled: false, seq: '0' };
  c.msgs.set(msg.smid, msg);
  c.last = { smid: c.last ? c.last.smid : '0', text, time: msg.time, from: st.me.uid, note: false };
  st.outbox.set(cmid, { c, msg, tries: 0 });
  renderConvList();
  renderMessages({ stick: true, force: true });
  trySend(cmid);
}

async function trySend(cmid) {
  const item = st.outbox.get(cmid);
  if (!item || item.inflight || !st.authed) return;
  const { c, msg } = item;
  item.inflight = true;
  item.tries++;
  try {
    const ack = await call(CMD.MSG_DATA, {
      from_user_id: st.me.uid, to_session_id: c.id, client_msg_id: cmid, create_time: msg.time,
      msg_type: P.MSG_TYPE.TEXT, session_type: c.type, msg_data: P.text.encode(msg.text),
    }, CMD.MSG_DATA_ACK);
    item.inflight = false;
    if (ack.res_code === P.RES.OK) {
      st.outbox.delete(cmid);
      c.msgs.delete('c:' + cmid);
      if (!c.msgs.has(ack.server_msg_id)) {
        msg.smid = ack.server_msg_id;
        msg.status = 'sent';
        msg.seq = ack.seq;
        if (ack.create_time) msg.time = ack.create_time;
        c.msgs.set(msg.smid, msg);
      }
      if (!c.last || big(ack.server_msg_id) >= big(c.last.smid))
        c.last = { smid: ack.server_msg_id, text: msg.text, time: msg.time, from: st.me.uid, note: false };
      noteSeq(ack.seq);
    } else if (ack.res_code === P.RES.REFUSED) {
      st.outbox.delete(cmid);
      msg.status = 'failed';
      toast('The message was refused (no such user or group, or not a member).', 'error');
    } else { // ERROR or RATE_LIMITED: the same client_msg_id again, later
      setTimeout(() => trySend(cmid), Math.min(1000 * item.tries, 8000));
    }
  } catch (e) {
    item.inflight = false; // connection lost: resent after the reconnect
    if (st.authed && String(e.message).includes('timed out')) setTimeout(() => trySend(cmid), 1000);
  }
  renderConvList();
  if (st.active === c) renderMessages({ stick: true });
}

function flushOutbox() {
  for (const cmid of st.outbox.keys()) trySend(cmid);
}

// ------------------------------------------------------------------ views
function showLogin(message) {
  $('login-view').hidden = false;
  $('chat-view').hidden = true;
  $('login-error').textContent = message || '';
}

function showChat() {
  $('login-view').hidden = true;
  $('chat-view').hidden = false;
  $('me-name').textContent = st.me.nick || st.me.name;
  $('me-uid').textContent = `#${st.me.uid}`;
  avatar($('me-avatar'), st.me.nick || st.me.name, st.me.uid);
}

function sortedConvs() {
  return [...st.convs.values()]
    .filter((c) => c.last || c === st.active)
    .sort((a, b) => {
      const ta = a.last ? a.last.time : 0, tb = b.last ? b.last.time : 0;
      if (ta !== tb) return tb - ta;
      return big(b.last?.smid) > big(a.last?.smid) ? 1 : -1;
    });
}

function renderConvList() {
  if (!st.me) return;
  const ul = $('conv-list');
  ul.textContent = '';
  let total = 0;
  const convs = sortedConvs();
  if (!convs.length) ul.append(el('li', 'placeholder', 'No conversations yet. Open a chat by user id, or pick someone online.'));
  for (const c of convs) {
    total += c.unread;
    const li = el('li', 'conv' + (c === st.active ? ' active' : ''));
    li.dataset.conv = c.key;
    li.tabIndex = 0;
    const av = el('span', 'avatar');
    avatar(av, convName(c), c.key);
    if (c.type === P.SESSION.GROUP) av.classList.add('group');
    if (c.type === P.SESSION.SINGLE && st.online.has(c.id)) av.append(el('span', 'presence'));
    const body = el('div', 'conv-body');
    const top = el('div', 'conv-top');
    top.append(el('span', 'conv-name', convName(c)), el('span', 'conv-time', c.last ? fmtTime(c.last.time) : ''));
    const bottom = el('div', 'conv-bottom');
    let preview = c.last ? c.last.text : '';
    if (c.last && !c.last.note && c.type === P.SESSION.GROUP && c.last.from !== '0')
      preview = `${c.last.from === st.me.uid ? 'You' : nickOf(c.last.from)}: ${preview}`;
    else if (c.last && !c.last.note && c.last.from === st.me.uid) preview = `You: ${preview}`;
    bottom.append(el('span', 'conv-preview', preview));
    if (c.unread > 0) {
      const b = el('span', 'badge', c.unread > 99 ? '99+' : String(c.unread));
      b.dataset.unread = String(c.unread);
      bottom.append(b);
    }
    body.append(top, bottom);
    li.append(av, body);
    li.onclick = () => openConv(c);
    li.onkeydown = (e) => { if (e.key === 'Enter') openConv(c); };
    ul.append(li);
  }
  const tu = $('total-unread');
  tu.hidden = total === 0;
  tu.textContent = total > 99 ? '99+' : String(total);
  document.title = total ? `(${total}) cim` : 'cim';
}

function renderOnline() {
  const ul = $('online-list');
  ul.textContent = '';
  $('online-count').textContent = st.onlineTotal ? String(st.onlineTotal) : '';
  const users = [...st.online.entries()].sort((a, b) => nickOf(a[0]).localeCompare(nickOf(b[0])));
  if (!users.length) ul.append(el('li', 'placeholder', 'Nobody is online.'));
  for (const [uid] of users) {
    const li = el('li', 'conv online-user');
    li.dataset.uid = uid;
    const av = el('span', 'avatar');
    avatar(av, nickOf(uid), 's:' + uid);
    av.append(el('span', 'presence'));
    const body = el('div', 'conv-body');
    body.append(el('div', 'conv-name', nickOf(uid) + (uid === st.me.uid ? ' (you)' : '')), el('div', 'conv-preview', `#${uid}`));
    li.append(av, body);
    if (uid !== st.me.uid) li.onclick = () => { switchTab('chats'); openConv(conv(P.SESSION.SINGLE, uid)); };
    ul.append(li);
  }
}

function renderConvHead() {
  const c = st.active;
  if (!c) return;
  $('conv-title').textContent = convName(c);
  avatar($('conv-avatar'), convName(c), c.key);
  $('conv-avatar').classList.toggle('group', c.type === P.SESSION.GROUP);
  let sub;
  if (c.type === P.SESSION.GROUP) {
    const g = st.groups.get(c.id);
    sub = `Group #${c.id}` + (c.members && c.members.length ? ` · ${c.members.length} members` : '') + (g && g.group_owner_id === st.me.uid ? ' · you are the owner' : '');
  } else {
    sub = `#${c.id} · ` + (c.id === '0' ? 'system messages' : st.online.has(c.id) ? 'online' : 'offline');
  }
  $('conv-sub').textContent = sub;
}

function renderHistoryStatus() {
  const c = st.active;
  const s = $('history-status');
  if (!c) return;
  s.textContent = c.loading ? 'Loading older messages…' : !c.hasMore && c.loaded ? 'Beginning of the conversation' : '';
}

function sortedMsgs(c) {
  const done = [], pending = [];
  for (const m of c.msgs.values()) (m.smid.startsWith('c:') ? pending : done).push(m);
  done.sort((a, b) => (big(a.smid) < big(b.smid) ? -1 : 1));
  pending.sort((a, b) => a.time - b.time);
  return done.concat(pending);
}

function renderMessages(opts) {
  const c = st.active;
  if (!c) return;
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const list = $('msg-list');
  list.textContent = '';
  let lastDay = '', lastFrom = null;
  for (const m of sortedMsgs(c)) {
    const day = fmtDay(m.time);
    if (day !== lastDay) { list.append(el('div', 'day', day)); lastDay = day; lastFrom = null; }
    if (m.note) {
      const n = el('div', 'note', m.text);
      n.dataset.smid = m.smid;
      list.append(n);
      lastFrom = null;
      continue;
    }
    const mine = m.from === st.me.uid;
    const row = el('div', 'msg ' + (mine ? 'mine' : 'theirs'));
    row.dataset.smid = m.smid;
    row.dataset.from = m.from;
    if (!mine && c.type === P.SESSION.GROUP) {
      const av = el('span', 'avatar small');
      if (lastFrom !== m.from) avatar(av, nickOf(m.from), 's:' + m.from);
      else av.classList.add('blank');
      row.append(av);
    }
    const bubble = el('div', 'bubble' + (m.recalled ? ' recalled' : ''));
    if (!mine && c.type === P.SESSION.GROUP && lastFrom !== m.from) bubble.append(el('div', 'sender', nickOf(m.from)));
    bubble.append(el('div', 'text', m.recalled ? 'This message was recalled' : m.text));
    const meta = el('div', 'meta');
    meta.append(el('span', 'time', fmtClock(m.time)));
    if (mine) {
      let status = m.status;
      if (status === 'sent' && c.type === P.SESSION.SINGLE && !m.smid.startsWith('c:') && big(m.smid) <= big(c.peerRead)) status = 'read';
      const s = el('span', 'status ' + status, { sending: '◷ sending', sent: '✓ sent', read: '✓✓ read', failed: '! failed: tap to retry' }[status]);
      row.dataset.status = status;
      if (status === 'failed') s.onclick = () => { m.status = 'sending'; st.outbox.set(m.cmid, { c, msg: m, tries: 0 }); trySend(m.cmid); renderMessages(); };
      meta.append(s);
    }
    bubble.append(meta);
    row.append(bubble);
    list.append(row);
    lastFrom = m.from;
  }
  if (!c.msgs.size && c.loaded) list.append(el('div', 'placeholder center', 'No messages yet: say hello!'));
  renderHistoryStatus();
  if ((opts && opts.force) || (opts && opts.stick && atBottom)) box.scrollTop = box.scrollHeight;
}

function openConv(c) {
  st.active = c;
  $('empty-pane').hidden = true;
  $('conv-pane').hidden = false;
  renderConvHead();
  renderMessages();
  $('messages').scrollTop = $('messages').scrollHeight;
  renderConvList();
  if (!c.loaded) loadHistory(c);
  else markRead(c);
  loadMembers(c);
  $('composer-input').focus();
}

function switchTab(tab) {
  st.tab = tab;
  for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.tab === tab);
  $('conv-list').hidden = tab !== 'chats';
  $('online-list').hidden = tab !== 'online';
}

// ------------------------------------------------------------------ wiring
function wire() {
  $('login-form').addEventListener('submit', (e) => { e.preventDefault(); loginWithPassword(false); });
  $('register-btn').addEventListener('click', () => { if ($('login-form').reportValidity()) loginWithPassword(true); });
  $('logout-btn').addEventListener('click', logout);
  for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => switchTab(b.dataset.tab));
  $('newchat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const uid = $('newchat-uid').value.trim();
    if (!/^[0-9]+$/.test(uid)) { toast('Enter a numeric user id.', 'error'); return; }
    if (uid === st.me.uid) { toast('That is you.', 'error'); return; }
    $('newchat-uid').value = '';
    switchTab('chats');
    openConv(conv(P.SESSION.SINGLE, uid));
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('composer-input');
    const text = input.value.trim();
    if (!text || !st.active) return;
    input.value = '';
    autosize();
    sendText(st.active, text);
  });
  const autosize = () => { const t = $('composer-input'); t.style.height = 'auto'; t.style.height = Math.min(t.scrollHeight, 140) + 'px'; };
  $('composer-input').addEventListener('input', autosize);
  $('composer-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); $('composer').requestSubmit(); }
  });
  $('messages').addEventListener('scroll', () => {
    const c = st.active;
    if (c && c.loaded && c.hasMore && $('messages').scrollTop < 40) loadHistory(c);
  });
  document.addEventListener('visibilitychange', () => { if (st.active) markRead(st.active); });
  window.addEventListener('focus', () => { if (st.active) markRead(st.active); });

  const dlg = $('group-dialog');
  $('newgroup-btn').addEventListener('click', () => {
    $('group-error').textContent = '';
    $('group-name').value = '';
    $('group-members').value = '';
    dlg.showModal();
  });
  $('group-cancel').addEventListener('click', () => dlg.close());
  $('group-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('group-name').value.trim();
    const ids = $('group-members').value.split(/[\s,;]+/).filter(Boolean);
    if (!name) { $('group-error').textContent = 'Give the group a name.'; return; }
    if (ids.some((x) => !/^[0-9]+$/.test(x))) { $('group-error').textContent = 'Members are numeric user ids.'; return; }
    $('group-create').disabled = true;
    try {
      const r = await call(CMD.GROUP_CREATE_REQ, { user_id: st.me.uid, group_name: name, member_id_list: ids }, CMD.GROUP_CREATE_RSP);
      if (r.result_code !== 200 && r.result_code !== 0) {
        $('group-error').textContent = r.result_code === 3003 ? 'Some of those users do not exist.' : `Could not create the group (${r.result_code}).`;
        return;
      }
      const g = r.group_info;
      st.groups.set(g.group_id, g);
      const c = conv(P.SESSION.GROUP, g.group_id);
      c.members = null;
      if (!c.last) c.last = { smid: '0', text: 'Group created', time: g.create_time || nowSec(), from: '0', note: true };
      dlg.close();
      switchTab('chats');
      openConv(c);
    } catch (err) {
      $('group-error').textContent = `Could not create the group: ${err.message}.`;
    } finally {
      $('group-create').disabled = false;
    }
  });
}

function start() {
  wire();
  setConn('offline');
  const saved = loadToken();
  if (saved && saved.uid && saved.token) {
    // a reload: log in again with the stored token
    st.me = { uid: String(saved.uid), name: saved.name || '', nick: saved.name || '' };
    st.wantOnline = true;
    showChat();
    setConn('connecting');
    reconnect();
  } else {
    showLogin();
  }
}

start();
