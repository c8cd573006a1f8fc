// cim wire protocol for the browser: the 16-byte packet header and a minimal proto3
// encoder/decoder for the messages of /PROTOCOL.md section 4 that the page uses.
// No dependencies; also imported by the node tests (tests/web/).
//
// Values: uint64 fields are decimal strings ("0" when unset), uint32/int32/enum numbers,
// bool booleans, string strings, bytes Uint8Array, nested messages objects, repeated arrays.

export const CMD = {
  AUTH_TOKEN_REQ: 0x0101, AUTH_TOKEN_RSP: 0x0102,
  LOGOUT_REQ: 0x0103, LOGOUT_RSP: 0x0104,
  HEARTBEAT: 0x0105,
  AUTH_REQ: 0x0107, AUTH_RSP: 0x0108,
  REGISTER_REQ: 0x0109, REGISTER_RSP: 0x010a,
  KICKOUT_NOTIFY: 0x010b,
  SESSIONS_REQ: 0x0201, SESSIONS_RSP: 0x0202,
  MSG_LIST_REQ: 0x0205, MSG_LIST_RSP: 0x0206,
  SYNC_REQ: 0x0207, SYNC_RSP: 0x0208,
  MSG_DATA: 0x0301, MSG_DATA_ACK: 0x0302,
  MSG_READ_ACK: 0x0303, MSG_READ_NOTIFY: 0x0304,
  RECALL_NOTIFY: 0x0312,
  GROUP_CREATE_REQ: 0x0501, GROUP_CREATE_RSP: 0x0502,
  GROUP_LIST_REQ: 0x0507, GROUP_LIST_RSP: 0x0508,
  GROUP_INFO_REQ: 0x0509, GROUP_INFO_RSP: 0x0510,
  GROUP_MEMBER_CHANGED: 0x0515,
  GROUP_MEMBERS_REQ: 0x0516, GROUP_MEMBERS_RSP: 0x0517,
  ONLINE_REQ: 0x0603, ONLINE_RSP: 0x0604,
  PRESENCE_NOTIFY: 0x0605,
};

export const ERR = {
  SUCCESS: 200, INVALID_USER_TOKEN: 2002, INVALID_USER_OR_PWD: 2003,
  NOT_LOGGED_IN: 3007, USER_ALREADY_EXIST: 9000, USER_INVALID_PARAMETER: 9001,
};
export const CLIENT_WEB = 3;
export const SESSION = { SINGLE: 1, GROUP: 2 };
export const MSG_TYPE = { TEXT: 1, NOTIFICATION: 9 };
export const MSG_STATUS_RECALLED = 11;
export const RES = { OK: 1, ERROR: 2, REFUSED: 3, RATE_LIMITED: 4 };
export const HEADER_LEN = 16;

// ------------------------------------------------------------------ schemas
// field number -> [name, type, repeated]; type: u64 u32 i32 enum bool string bytes or a
// schema name (nested message)
const S = {
  UserInfo: { 1: ['user_id', 'u64'], 2: ['nick_name', 'string'], 3: ['nick_name_spell', 'string'],
    9: ['phone', 'string'], 10: ['avatar_url', 'string'], 11: ['attach_info', 'string'] },
  ContactSessionInfo: { 1: ['session_id', 'u64'], 2: ['session_type', 'enum'],
    3: ['session_status', 'enum'], 4: ['unread_cnt', 'u32'], 5: ['updated_time', 'u32'],
    6: ['msg_id', 'string'], 7: ['server_msg_id', 'u64'], 8: ['msg_time_stamp', 'u32'],
    9: ['msg_data', 'bytes'], 10: ['msg_type', 'enum'], 11: ['msg_from_user_id', 'u64'],
    12: ['msg_status', 'enum'], 13: ['msg_attach', 'string'], 14: ['extend_data', 'string'],
    15: ['is_robot_session', 'bool'] },
  MsgInfo: { 1: ['client_msg_id', 'string'], 2: ['server_msg_id', 'u64'], 3: ['msg_res_code', 'enum'],
    4: ['msg_feature', 'enum'], 5: ['session_type', 'enum'], 6: ['from_user_id', 'u64'],
    7: ['to_session_id', 'u64'], 8: ['create_time', 'u32'], 9: ['msg_type', 'enum'],
    10: ['msg_status', 'enum'], 11: ['msg_data', 'bytes'], 12: ['attach', 'string'],
    13: ['sender_client_type', 'enum'], 14: ['seq', 'u64'] },
  GroupInfo: { 1: ['group_id', 'u64'], 2: ['group_name', 'string'], 3: ['group_type', 'enum'],
    4: ['join_model', 'enum'], 5: ['be_invite_model', 'enum'], 6: ['mute_model', 'enum'],
    7: ['group_owner_id', 'u64'], 8: ['create_time', 'u32'], 9: ['update_time', 'u32'],
    10: ['group_intro', 'string'], 11: ['announcement', 'string'], 12: ['group_avatar', 'string'] },
  GroupVersionInfo: { 1: ['group_id', 'u64'], 2: ['group_version', 'u32'] },
  GroupMemberChangedInfo: { 1: ['user_id', 'u64'], 2: ['type', 'enum'] },

  AuthTokenReq: { 1: ['user_id', 'u64'], 2: ['nick_name', 'string'], 3: ['user_token', 'string'],
    4: ['client_type', 'enum'], 5: ['client_version', 'string'] },
  AuthRsp: { 1: ['server_time', 'u32'], 2: ['result_code', 'enum'], 3: ['result_string', 'string'],
    4: ['user_info', 'UserInfo'], 5: ['user_token', 'string'] },
  AuthReq: { 1: ['user_name', 'string'], 2: ['user_pwd', 'string'], 3: ['client_type', 'enum'],
    4: ['client_version', 'string'] },
  LogoutReq: { 1: ['user_id', 'u64'], 2: ['client_type', 'enum'] },
  LogoutRsp: { 1: ['result_code', 'u32'] },
  Empty: {},
  RegisterReq: { 1: ['user_name', 'string'], 2: ['user_pwd', 'string'], 3: ['nick_name', 'string'],
    4: ['client_type', 'enum'] },
  RegisterRsp: { 1: ['result_code', 'enum'], 2: ['result_string', 'string'], 3: ['user_info', 'UserInfo'] },
  KickoutNotify: { 1: ['user_id', 'u64'], 2: ['reason', 'u32'], 3: ['client_type', 'enum'] },

  SessionsReq: { 1: ['user_id', 'u64'], 2: ['latest_update_time', 'u32'] },
  SessionsRsp: { 1: ['user_id', 'u64'], 2: ['unread_counts', 'u32'],
    3: ['contact_session_list', 'ContactSessionInfo', true], 15: ['result_code', 'u32'] },
  MsgListReq: { 1: ['user_id', 'u64'], 2: ['session_type', 'enum'], 3: ['session_id', 'u64'],
    4: ['end_msg_id', 'u64'], 6: ['limit_count', 'u32'] },
  MsgListRsp: { 1: ['user_id', 'u64'], 2: ['session_type', 'enum'], 3: ['session_id', 'u64'],
    4: ['end_msg_id', 'u64'], 6: ['msg_list', 'MsgInfo', true], 15: ['result_code', 'u32'] },
  SyncReq: { 1: ['user_id', 'u64'], 2: ['after_seq', 'u64'], 3: ['limit', 'u32'] },
  SyncRsp: { 1: ['user_id', 'u64'], 2: ['msg_list', 'MsgInfo', true], 3: ['max_seq', 'u64'],
    4: ['has_more', 'bool'], 15: ['result_code', 'u32'] },

  MsgData: { 1: ['from_user_id', 'u64'], 2: ['from_nick_name', 'string'], 3: ['to_session_id', 'u64'],
    4: ['client_msg_id', 'string'], 5: ['server_msg_id', 'u64'], 6: ['create_time', 'i32'],
    7: ['msg_type', 'enum'], 8: ['session_type', 'enum'], 9: ['msg_data', 'bytes'], 10: ['seq', 'u64'] },
  MsgDataAck: { 1: ['from_user_id', 'u64'], 2: ['to_session_id', 'u64'], 3: ['client_msg_id', 'string'],
    4: ['server_msg_id', 'u64'], 5: ['res_code', 'enum'], 6: ['session_type', 'enum'],
    7: ['create_time', 'i32'], 8: ['seq', 'u64'] },
  MsgReadAck: { 1: ['user_id', 'u64'], 2: ['session_id', 'u64'], 3: ['msg_id', 'u64'],
    4: ['session_type', 'enum'] },
  RecallNotify: { 1: ['from_user_id', 'u64'], 2: ['session_type', 'enum'], 3: ['session_id', 'u64'],
    4: ['server_msg_id', 'u64'] },

  GroupCreateReq: { 1: ['user_id', 'u64'], 2: ['group_name', 'string'], 3: ['member_id_list', 'u64', true] },
  GroupCreateRsp: { 1: ['user_id', 'u64'], 2: ['result_code', 'u32'], 3: ['group_info', 'GroupInfo'],
    4: ['member_id_list', 'u64', true], 10: ['attach_notificatino_msg', 'bytes'] },
  GroupListReq: { 1: ['user_id', 'u64'] },
  GroupListRsp: { 1: ['user_id', 'u64'], 2: ['group_version_list', 'GroupVersionInfo', true],
    15: ['result_code', 'u32'] },
  GroupInfoReq: { 1: ['user_id', 'u64'], 2: ['group_version_list', 'GroupVersionInfo', true] },
  GroupInfoRsp: { 1: ['user_id', 'u64'], 2: ['result_code', 'u32'], 3: ['group_info_list', 'GroupInfo', true] },
  GroupMemberChanged: { 1: ['user_id', 'u64'], 2: ['group_id', 'u64'],
    3: ['changed_list', 'GroupMemberChangedInfo', true] },
  GroupMembersReq: { 1: ['user_id', 'u64'], 2: ['group_id', 'u64'] },
  GroupMembersRsp: { 1: ['user_id', 'u64'], 2: ['group_id', 'u64'], 3: ['member_id_list', 'u64', true],
    15: ['result_code', 'u32'] },

  OnlineReq: { 1: ['user_id', 'u64'], 2: ['offset', 'u32'], 3: ['limit', 'u32'], 4: ['subscribe', 'u32'] },
  OnlineRsp: { 1: ['user_id', 'u64'], 2: ['total_online', 'u32'], 3: ['user_list', 'UserInfo', true],
    4: ['next_offset', 'u32'], 15: ['result_code', 'u32'] },
  PresenceNotify: { 1: ['user_id', 'u64'], 2: ['online', 'bool'], 3: ['client_type', 'enum'] },
};
export const SCHEMAS = S;

// the body schema of each command (both directions)
export const BODY = {
  [CMD.AUTH_TOKEN_REQ]: 'AuthTokenReq', [CMD.AUTH_TOKEN_RSP]: 'AuthRsp',
  [CMD.LOGOUT_REQ]: 'LogoutReq', [CMD.LOGOUT_RSP]: 'LogoutRsp',
  [CMD.HEARTBEAT]: 'Empty',
  [CMD.AUTH_REQ]: 'AuthReq', [CMD.AUTH_RSP]: 'AuthRsp',
  [CMD.REGISTER_REQ]: 'RegisterReq', [CMD.REGISTER_RSP]: 'RegisterRsp',
  [CMD.KICKOUT_NOTIFY]: 'KickoutNotify',
  [CMD.SESSIONS_REQ]: 'SessionsReq', [CMD.SESSIONS_RSP]: 'SessionsRsp',
  [CMD.MSG_LIST_REQ]: 'MsgListReq', [CMD.MSG_LIST_RSP]: 'MsgListRsp',
  [CMD.SYNC_REQ]: 'SyncReq', [CMD.SYNC_RSP]: 'SyncRsp',
  [CMD.MSG_DATA]: 'MsgData', [CMD.MSG_DATA_ACK]: 'MsgDataAck',
  [CMD.MSG_READ_ACK]: 'MsgReadAck', [CMD.MSG_READ_NOTIFY]: 'MsgReadAck',
  [CMD.RECALL_NOTIFY]: 'RecallNotify',
  [CMD.GROUP_CREATE_REQ]: 'GroupCreateReq', [CMD.GROUP_CREATE_RSP]: 'GroupCreateRsp',
  [CMD.GROUP_LIST_REQ]: 'GroupListReq', [CMD.GROUP_LIST_RSP]: 'GroupListRsp',
  [CMD.GROUP_INFO_REQ]: 'GroupInfoReq', [CMD.GROUP_INFO_RSP]: 'GroupInfoRsp',
  [CMD.GROUP_MEMBER_CHANGED]: 'GroupMemberChanged',
  [CMD.GROUP_MEMBERS_REQ]: 'GroupMembersReq', [CMD.GROUP_MEMBERS_RSP]: 'GroupMembersRsp',
  [CMD.ONLINE_REQ]: 'OnlineReq', [CMD.ONLINE_RSP]: 'OnlineRsp',
  [CMD.PRESENCE_NOTIFY]: 'PresenceNotify',
};

// ------------------------------------------------------------------ encoding
const utf8enc = new TextEncoder();
const utf8dec = new TextDecoder();
const U64 = (1n << 64n) - 1n;

class Writer {
  constructor() { this.buf = new Uint8Array(64); this.len = 0; }
  room(n) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  varint(v) { // v: BigInt, 0 <= v < 2^64
    this.room(10);
    while (v > 127n) { this.buf[this.len++] = Number(v & 127n) | 128; v >>= 7n; }
    this.buf[this.len++] = Number(v);
  }
  bytes(b) { this.varint(BigInt(b.length)); this.room(b.length); this.buf.set(b, this.len); this.len += b.length; }
  key(no, wt) { this.varint(BigInt((no << 3) | wt)); }
  done() { return this.buf.slice(0, this.len); }
}

function toBig(type, v) {
  if (type === 'bool') return v ? 1n : 0n;
  if (type === 'u64') return BigInt.asUintN(64, BigInt(v || 0));
  return BigInt.asUintN(64, BigInt(Math.trunc(Number(v) || 0))); // u32, i32 (negatives: 10 bytes), enum
}

function isDefault(type, v) {
  if (v === undefined || v === null) return true;
  if (type === 'string') return v === '';
  if (type === 'bytes') return v.length === 0;
  if (type === 'bool') return !v;
  if (type === 'u64') return BigInt(v) === 0n;
  if (S[type]) return false;
  return Number(v) === 0;
}

function encodeInto(w, schemaName, obj) {
  const schema = S[schemaName];
  if (!schema) throw new Error(`no schema ${schemaName}`);
  for (const no of Object.keys(schema).map(Number).sort((a, b) => a - b)) {
    const [name, type, repeated] = schema[no];
    const v = obj ? obj[name] : undefined;
    if (repeated) {
      if (!v || !v.length) continue;
      if (S[type] || type === 'string' || type === 'bytes') {
        for (const item of v) encodeValue(w, no, type, item);
      } else { // packed scalars (proto3 default)
        const inner = new Writer();
        for (const item of v) inner.varint(toBig(type, item));
        w.key(no, 2);
        w.bytes(inner.done());
      }
      continue;
    }
    if (isDefault(type, v)) continue;
    encodeValue(w, no, type, v);
  }
}

function encodeValue(w, no, type, v) {
  if (type === 'string') { w.key(no, 2); w.bytes(utf8enc.encode(v)); }
  else if (type === 'bytes') { w.key(no, 2); w.bytes(typeof v === 'string' ? utf8enc.encode(v) : v); }
  else if (S[type]) { const inner = new Writer(); encodeInto(inner, type, v); w.key(no, 2); w.bytes(inner.done()); }
  else { w.key(no, 0); w.varint(toBig(type, v)); }
}

export function encode(schemaName, obj) {
  const w = new Writer();
  encodeInto(w, schemaName, obj || {});
  return w.done();
}

// ------------------------------------------------------------------ decoding
class Reader {
  constructor(buf) { this.buf = buf; this.pos = 0; }
  varint() {
    let v = 0n, shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++];
      v |= BigInt(b & 127) << shift;
      if (!(b & 128)) break;
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
    return v & U64;
  }
  take(n) {
    if (n < 0 || this.pos + n > this.buf.length) throw new Error('truncated field');
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
}

function fromBig(type, v) {
  if (type === 'u64') return v.toString();
  if (type === 'bool') return v !== 0n;
  if (type === 'i32') return Number(BigInt.asIntN(32, v));
  return Number(BigInt.asUintN(32, v));
}

function defaults(schemaName) {
  const o = {};
  for (const [name, type, repeated] of Object.values(S[schemaName])) {
    if (repeated) o[name] = [];
    else if (type === 'u64') o[name] = '0';
    else if (type === 'string') o[name] = '';
    else if (type === 'bytes') o[name] = new Uint8Array(0);
    else if (type === 'bool') o[name] = false;
    else if (S[type]) o[name] = null;
    else o[name] = 0;
  }
  return o;
}

export function decode(schemaName, buf) {
  const schema = S[schemaName];
  if (!schema) throw new Error(`no schema ${schemaName}`);
  const o = defaults(schemaName);
  const r = new Reader(buf);
  while (r.pos < buf.length) {
    const key = Number(r.varint());
    const no = key >>> 3, wt = key & 7;
    const f = schema[no];
    let raw;
    if (wt === 0) raw = r.varint();
    else if (wt === 2) raw = r.take(Number(r.varint()));
    else if (wt === 1) raw = r.take(8);
    else if (wt === 5) raw = r.take(4);
    else throw new Error(`unsupported wire type ${wt}`);
    if (!f) continue; // unknown field: skipped
    const [name, type, repeated] = f;
    let vals;
    if (S[type]) vals = [decode(type, raw)];
    else if (type === 'string') vals = [utf8dec.decode(raw)];
    else if (type === 'bytes') vals = [raw.slice()];
    else if (wt === 2) { // packed
      const pr = new Reader(raw);
      vals = [];
      while (pr.pos < raw.length) vals.push(fromBig(type, pr.varint()));
    } else vals = [fromBig(type, raw)];
    if (repeated) o[name].push(...vals);
    else o[name] = vals[vals.length - 1];
  }
  return o;
}

// ------------------------------------------------------------------ packets
// a whole packet: 16-byte big-endian header + body
export function packet(cmd, seq, body) {
  body = body || new Uint8Array(0);
  const p = new Uint8Array(HEADER_LEN + body.length);
  const dv = new DataView(p.buffer);
  dv.setUint32(0, p.length);
  dv.setUint16(4, 1); // version
  dv.setUint16(6, 0); // flag
  dv.setUint16(8, 0); // service_id
  dv.setUint16(10, cmd);
  dv.setUint16(12, seq);
  dv.setUint16(14, 0);
  p.set(body, HEADER_LEN);
  return p;
}

// encode a request by its command's schema
export function packetOf(cmd, seq, obj) {
  return packet(cmd, seq, encode(BODY[cmd] || 'Empty', obj));
}

// parse one packet: {cmd, seq, body (Uint8Array), msg (decoded when the command is known)}
export function parsePacket(buf) {
  const u8 = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  if (u8.length < HEADER_LEN) throw new Error('short packet');
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const len = dv.getUint32(0);
  if (len !== u8.length) throw new Error(`packet length ${len} != ${u8.length}`);
  if (dv.getUint16(4) !== 1) throw new Error('bad version');
  const cmd = dv.getUint16(10), seq = dv.getUint16(12);
  const body = u8.subarray(HEADER_LEN);
  const schema = BODY[cmd];
  return { cmd, seq, body, msg: schema ? decode(schema, body) : null };
}

export const text = {
  encode: (s) => utf8enc.encode(s),
  decode: (b) => utf8dec.decode(b),
};

// compare two u64 decimal strings
export function cmpId(a, b) {
  const x = BigInt(a || 0), y = BigInt(b || 0);
  return x < y ? -1 : x > y ? 1 : 0;
}
