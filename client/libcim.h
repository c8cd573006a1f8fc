/* libcim: a small blocking client library for the cim wire protocol (PROTOCOL.md).
 *
 * One cim_client_t is one TCP connection to a msg_gate plus what the client remembers across
 * reconnects (gate list, user id, token, client type). Everything is blocking with poll()
 * and a timeout in milliseconds; there are no threads and no event loop, and a client must
 * be used from one thread at a time.
 *
 * Incoming packets are matched to the call that waits for them by (command_id, seq_num);
 * every other packet is a "push": it is handed to the push callback when one is set, else
 * queued until cim_next_push() pops it. The queue survives the connection's close, so a
 * test can read the 0x010B that preceded a kick.
 *
 * TLS (optional, cim_set_tls): the same packets inside TLS 1.2+, to a gate's gate_tls_port.
 * OpenSSL works on memory buffers and the library does the socket I/O itself, so everything
 * above holds unchanged: each read drains what TLS has decrypted, so poll() on cim_fd() stays
 * a valid "something to read" signal.
 *
 * Return values: 0 (CIM_OK) on success, else a negative CIM_E* code below, or a negative
 * errno from the socket layer (cim_connect); cim_strerror() prints either. */
#ifndef CIM_LIBCIM_H
#define CIM_LIBCIM_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "proto/cim.pb-c.h"

enum {
    CIM_OK = 0,
    CIM_EINVAL = -1001,    /* bad argument (address, name, NULL) */
    CIM_ETIMEDOUT = -1002, /* no answer within the timeout */
    CIM_ECLOSED = -1003,   /* the peer closed the connection (or reset it) */
    CIM_EPROTO = -1004,    /* bad frame or a body that does not parse; the connection is closed */
    CIM_ENOMEM = -1005,
    CIM_ENOTCONN = -1006, /* not connected */
    CIM_EIO = -1007,      /* socket error other than a close; see cim_last_errno() */
    CIM_ERESULT = -1008,  /* the server answered with a result code other than 200 */
    CIM_ENOTOKEN = -1009, /* cim_reconnect() without a remembered token */
    CIM_ETLS = -1010,     /* TLS handshake or certificate check failed; see cim_tls_error() */
};

#define CIM_DEFAULT_PORT         8000
#define CIM_MAX_INCOMING         (8 * 1024 * 1024) /* largest server->client packet accepted */
#define CIM_DEFAULT_HEARTBEAT_MS 25000
#define CIM_DEFAULT_CALL_MS      10000
#define CIM_DEFAULT_CLIENT_TYPE  5 /* PC_WINDOWS */
#define CIM_RESULT_SUCCESS       200

typedef struct cim_client_s cim_client_t;

/* One received packet. body is a private copy owned by the packet (NULL when body_len is 0);
 * free the packet with cim_packet_free(). */
typedef struct cim_packet_s {
    uint16_t cmd;
    uint16_t seq;
    size_t body_len;
    uint8_t *body;
    struct cim_packet_s *next; /* library use (push queue) */
} cim_packet_t;

/* Push callback: called for every push as it is read. The packet belongs to the library and
 * is freed when the callback returns; the callback must not call cim_call, cim_poll or any
 * other function that reads from the connection. */
typedef void (*cim_push_cb)(cim_client_t *c, const cim_packet_t *pkt, void *ud);

/* ------------------------------------------------------------------ lifetime and connection */

/* A new unconnected client (gate 127.0.0.1:8000, client type PC_WINDOWS, heartbeat 25 s), or
 * NULL when out of memory. Free it with cim_client_free(). */
cim_client_t *cim_client_new(void);

/* Closes the connection and frees the client with its queued packets; NULL is accepted. */
void cim_client_free(cim_client_t *c);

/* Connect to host:port (name or literal; closes an existing connection first); remembers
 * the address as the only gate. 0, CIM_ETIMEDOUT, CIM_EINVAL (bad host), or -errno. */
int cim_connect(cim_client_t *c, const char *host, int port, int timeout_ms);

/* Like cim_connect with "host:port" (port defaults to 8000) or a comma-separated list
 * "h:p,h:p": sets the gate list (cim_set_gates) and connects to the first gate that
 * answers, trying the others in order. */
int cim_connect_addr(cim_client_t *c, const char *addrs, int timeout_ms);

/* Set the gate list used by cim_connect_addr/cim_reconnect, "h:p[,h:p...]" (copied).
 * 0 or CIM_EINVAL (then the old list is kept). */
int cim_set_gates(cim_client_t *c, const char *addrs);

/* Bind the source address (literal IPv4/IPv6, copied; NULL = any) for later connects, so load
 * tests can use 127.0.0.2... for more ports. 0 or CIM_EINVAL. */
int cim_set_source_ip(cim_client_t *c, const char *ip);

/* TLS for the connects that follow (a gate's gate_tls_port), for every gate of the list:
 *   CIM_TLS_VERIFY    check the gate's certificate against ca_file (PEM; NULL = the system's
 *                     CA store) and its name: the host name of the gate address, or its IP
 *                     address when the address is a literal (then the certificate needs it as
 *                     an IP subjectAltName)
 *   CIM_TLS_INSECURE  encrypt without checking the certificate (self-signed test setups only;
 *                     ca_file is ignored)
 *   CIM_TLS_OFF       plain TCP again (the default)
 * TLS 1.2 at least. 0; CIM_EINVAL (bad mode, or ca_file unusable: cim_tls_error() says why);
 * CIM_ENOMEM. A connect whose handshake fails returns CIM_ETLS (or CIM_ETIMEDOUT, CIM_ECLOSED)
 * and cim_tls_error() says why. */
enum { CIM_TLS_OFF = 0, CIM_TLS_VERIFY = 1, CIM_TLS_INSECURE = 2 };
int cim_set_tls(cim_client_t *c, int mode, const char *ca_file);

/* The last TLS failure in words ("" if none); owned by the client, valid until the next
 * connect or cim_set_tls. */
const char *cim_tls_error(const cim_client_t *c);

/* 1 when the current connection is TLS, else 0. */
int cim_is_tls(const cim_client_t *c);

/* Close the connection (the queue, user id and token are kept). Safe when not connected. */
void cim_close(cim_client_t *c);

/* 1 while the socket is open and the peer has not closed it, else 0. */
int cim_is_connected(const cim_client_t *c);

/* The socket, for poll() by the caller (console: stdin + socket), or -1 when not connected.
 * The caller only polls it for POLLIN and then calls cim_poll(c, 0). */
int cim_fd(const cim_client_t *c);

/* "host:port" of the connected (or last) gate; owned by the client, valid until the next
 * connect or cim_set_gates. */
const char *cim_gate(const cim_client_t *c);

/* errno of the last socket error (for CIM_EIO), 0 if none. */
int cim_last_errno(const cim_client_t *c);

/* ------------------------------------------------------------------ packets */

/* The next request seq_num, 1..65535 wrapping to 1. */
uint16_t cim_next_seq(cim_client_t *c);

/* Send one packet: header + msg packed (NULL = empty body). Blocks until the whole packet is
 * written (up to 10 s). 0, CIM_ENOTCONN, CIM_ECLOSED, CIM_ETIMEDOUT, CIM_ENOMEM or CIM_EIO. */
int cim_send(cim_client_t *c, uint16_t cmd, uint16_t seq, const ProtobufCMessage *msg);

/* Send arbitrary bytes (garbage tests; bytes are not retained). Same returns as cim_send. */
int cim_send_raw(cim_client_t *c, const void *bytes, size_t len);

/* Send req (NULL = empty body) with a new seq and wait for the packet (rsp_cmd, same seq);
 * other packets that arrive meanwhile are pushes. On 0 and with rsp_out non-NULL,
 * *rsp_out is the unpacked response (rsp_desc), owned by the caller, freed with
 * protobuf_c_message_free_unpacked(*rsp_out, NULL). rsp_desc/rsp_out may be NULL to only
 * wait. 0, CIM_ETIMEDOUT, CIM_ECLOSED, CIM_EPROTO (body does not parse) or a send error. */
int cim_call(cim_client_t *c, uint16_t cmd, const ProtobufCMessage *req, uint16_t rsp_cmd,
             const ProtobufCMessageDescriptor *rsp_desc, ProtobufCMessage **rsp_out,
             int timeout_ms);

/* Pop the first queued push with command cmd (0 = any), reading for up to timeout_ms when
 * none is queued yet (even after the connection closed, queued packets are returned).
 * On 0, *out is owned by the caller (cim_packet_free). CIM_ETIMEDOUT, or CIM_ECLOSED when
 * the connection is closed and nothing matching is queued. */
int cim_next_push(cim_client_t *c, uint16_t cmd, int timeout_ms, cim_packet_t **out);

/* Number of queued pushes. */
size_t cim_queued(const cim_client_t *c);

/* Free a packet from cim_next_push; NULL is accepted. */
void cim_packet_free(cim_packet_t *pkt);

/* Unpack a packet's body as desc; the message is owned by the caller
 * (protobuf_c_message_free_unpacked). NULL when it does not parse. */
ProtobufCMessage *cim_packet_unpack(const cim_packet_t *pkt,
                                    const ProtobufCMessageDescriptor *desc);

/* Set (or clear with NULL) the push callback; while set, pushes are given to it and not
 * queued. ud is passed through, not owned. */
void cim_set_push_cb(cim_client_t *c, cim_push_cb cb, void *ud);

/* Wait up to timeout_ms (0 = no wait) for input, read what is available and dispatch it;
 * sends an automatic heartbeat when one is due. Returns the number of packets dispatched
 * (>= 0), CIM_ECLOSED when the peer closed (packets read before the close are dispatched
 * first), CIM_ENOTCONN when not connected, or CIM_EPROTO. */
int cim_poll(cim_client_t *c, int timeout_ms);

/* Read (queueing pushes) until the server closes the connection or timeout_ms passes:
 * 1 if it is closed (also when it already was), 0 if it is still open. No heartbeats. */
int cim_wait_closed(cim_client_t *c, int timeout_ms);

/* ------------------------------------------------------------------ heartbeat */

/* Send 0x0105 and wait for its echo with the same seq. 0, CIM_ETIMEDOUT, CIM_ECLOSED... */
int cim_heartbeat(cim_client_t *c, int timeout_ms);

/* Automatic heartbeat: cim_poll, cim_call and cim_next_push send 0x0105 when nothing was sent
 * for interval_ms (0 disables; default 25000). The echoes of these are swallowed. */
void cim_set_heartbeat_interval(cim_client_t *c, int interval_ms);

/* ------------------------------------------------------------------ account */

/* Timeout of each request of the account calls below (default 10 s; <= 0 restores it). */
void cim_set_call_timeout(cim_client_t *c, int timeout_ms);

/* All of these return 0 when the server answered 200, CIM_ERESULT when it answered another
 * result code, or a transport error; *result_code (may be NULL) gets the server's code, or 0
 * when there was no answer. */

/* 0x0109 register (does not log in); *user_id (may be NULL) gets the new id. */
int cim_register(cim_client_t *c, const char *name, const char *pwd, const char *nick,
                 uint32_t *result_code, uint64_t *user_id);

/* 0x0107 password login; on success remembers the user id, name, client type and the token of
 * CIMAuthRsp field 5 (for cim_reconnect). */
int cim_login_password(cim_client_t *c, const char *name, const char *pwd, uint32_t client_type,
                       uint32_t *result_code);

/* 0x0101 token login; on success remembers uid, token (copied) and client type. */
int cim_login_token(cim_client_t *c, uint64_t uid, const char *token, uint32_t client_type,
                    uint32_t *result_code);

/* 0x0103 logout; on an answer the client counts as logged out (no auto-reconnect) and the
 * server closes the connection. Not connected: only forgets the login (CIM_ENOTCONN). */
int cim_logout(cim_client_t *c, uint32_t *result_code);

/* The logged-in (or last) user id, 0 if none. */
uint64_t cim_user_id(const cim_client_t *c);

/* The remembered token ("" if none); owned by the client, valid until the next login. */
const char *cim_token(const cim_client_t *c);

/* The user name of the last password login ("" if none); owned by the client. */
const char *cim_user_name(const cim_client_t *c);

/* 1 after a successful login until logout, kick (0x010B) or a failed re-login, else 0. The
 * flag survives a dropped connection: that is what cim_reconnect restores. */
int cim_logged_in(const cim_client_t *c);

/* 1 if the last connection ended with a 0x010B kickout (cim_kick_reason gives the reason). */
int cim_was_kicked(const cim_client_t *c);
uint32_t cim_kick_reason(const cim_client_t *c);

/* Close, connect to the current gate or the next ones of the list (round robin from the one
 * after the last used when there are several), and log in again with the remembered uid,
 * token and client type. 0; CIM_ENOTOKEN when there is nothing to log in with; a connect
 * error; or CIM_ERESULT when the token was refused (then the client is logged out). */
int cim_reconnect(cim_client_t *c, int timeout_ms);

/* ------------------------------------------------------------------ messaging
 *
 * Sending. Every message gets a client_msg_id (generated unless given) and is kept in the
 * client's "unacked" list until a 0x0302 ack with res_code OK or REFUSED arrives for it; an
 * ack with ERROR or RATE_LIMITED, a timeout or a lost connection leave it there, to be sent
 * again with the same client_msg_id (the server stores and delivers it once). After every
 * login (fresh or cim_reconnect) the library syncs from the remembered seq (below) and then
 * resends every unacked message, without waiting for their acks.
 *
 * Acks are matched by client_msg_id: the ack of a blocking send is returned by it; every
 * other ack (async sends, resends) updates the unacked list and then goes to the ack callback
 * when one is set, else it is handled like any push (push callback or queue, as a 0x0302
 * packet).
 *
 * Receiving. Every 0x0301 delivery carries the entry's seq in the user's inbox. The library
 * remembers which seqs it has seen (pushes, its own acks, syncs): cim_seq() is the highest
 * seq below which nothing is missing. A delivery whose seq was already seen is dropped
 * (confirmed again, not passed on). Unless disabled, each delivery from another user is
 * confirmed to the server with a 0x0302 (from_user_id = sender, to_session_id = the session
 * as this user sees it), sent after the packets read with it. The automatic sync after a
 * login hands every entry not seen yet to the push callback / queue as a 0x0301 packet
 * (seq_num 0) built from the synced CIMMsgInfo, in seq order. */

#define CIM_CMID_MAX         64 /* client_msg_id: 1..64 bytes */
#define CIM_RES_OK           1
#define CIM_RES_ERROR        2
#define CIM_RES_REFUSED      3
#define CIM_RES_RATE_LIMITED 4
#define CIM_SESSION_SINGLE   1
#define CIM_SESSION_GROUP    2
#define CIM_MSG_TEXT         1

/* A message to send; zero-initialize and set what matters. */
typedef struct cim_msg_out_s {
    uint64_t to;           /* to_session_id: a user (SINGLE) or a group */
    uint32_t session_type; /* 0 = SINGLE */
    uint32_t msg_type;     /* 0 = TEXT */
    const void *data;      /* msg_data (copied) */
    size_t len;
    const char *client_msg_id; /* NULL = generated; else used as is (tests: bad ids) */
    uint64_t from_user_id;     /* 0 = let the server fill it in (tests set others) */
} cim_msg_out_t;

/* One ack (0x0302 from the server). */
typedef struct cim_ack_s {
    char client_msg_id[CIM_CMID_MAX + 2]; /* truncated if the server sent a longer one */
    uint32_t res_code;                    /* CIMResCode; 0 = no answer */
    uint64_t server_msg_id, seq, to_session_id, from_user_id;
    uint32_t session_type;
    int32_t create_time;
} cim_ack_t;

typedef void (*cim_ack_cb)(cim_client_t *c, const cim_ack_t *ack, void *ud);

/* Send and wait (call timeout) for the ack. 0 when acked OK; CIM_ERESULT for another res_code
 * (ack->res_code); a transport error or CIM_ETIMEDOUT (the message stays unacked). ack may be
 * NULL. */
int cim_send_msg(cim_client_t *c, const cim_msg_out_t *m, cim_ack_t *ack);

/* cim_send_msg of a TEXT message to user `to`. */
int cim_send_text(cim_client_t *c, uint64_t to, const char *text, cim_ack_t *ack);

/* Send without waiting: the message joins the unacked list and its ack arrives later (ack
 * callback, or queued as a 0x0302 packet) while the client reads (cim_poll, cim_flush, any
 * call). cmid_out (may be NULL, >= CIM_CMID_MAX + 1 bytes) gets the client_msg_id. 0 (the
 * message is in the list even when the send failed: it is resent later), or CIM_EINVAL /
 * CIM_ENOMEM (not taken). */
int cim_send_msg_async(cim_client_t *c, const cim_msg_out_t *m, char *cmid_out);

/* Set (or clear) the callback for acks that no blocking send waits for. */
void cim_set_ack_cb(cim_client_t *c, cim_ack_cb cb, void *ud);

/* Messages without a final ack; of those, sent on the current connection and not answered. */
size_t cim_unacked(const cim_client_t *c);
size_t cim_in_flight(const cim_client_t *c);

/* Send again every unacked message that is not in flight on this connection (same
 * client_msg_id). Number sent, or a send error. */
int cim_resend_unacked(cim_client_t *c);

/* Read and resend until every message is acked OK or REFUSED: ERROR / RATE_LIMITED ones
 * again after a growing pause (100 ms .. 2 s), unanswered ones after the call timeout.
 * 0, CIM_ETIMEDOUT, or a connection error (reconnect: the login resends them). */
int cim_flush(cim_client_t *c, int timeout_ms);

/* Forget every unacked message. */
void cim_drop_unacked(cim_client_t *c);

/* Seq tracking: the highest seq below which every entry was seen; set it to restore a
 * remembered position (forgets what was seen above). */
uint64_t cim_seq(const cim_client_t *c);
void cim_set_seq(cim_client_t *c, uint64_t seq);

/* Highest seq seen at all (>= cim_seq). */
uint64_t cim_max_seq_seen(const cim_client_t *c);

/* Automatic sync + resend after login (default on) and delivery confirmations (default on). */
void cim_set_auto_sync(cim_client_t *c, int on);
void cim_set_auto_confirm(cim_client_t *c, int on);

/* The requests below return 0 when the server answered success (result_code 0 or 200),
 * CIM_ERESULT with *result_code (may be NULL) set otherwise, or a transport error. */

/* 0x0207 one page: entries with seq > after_seq (limit 0 = server default). *out is owned by
 * the caller (cim__def__cimsync_rsp__free_unpacked). Seqs are recorded as seen. */
int cim_sync_page(cim_client_t *c, uint64_t after_seq, uint32_t limit, CIM__Def__CIMSyncRsp **out,
                  uint32_t *result_code);

/* Sync callback: one entry (owned by the library, valid during the call). */
typedef void (*cim_sync_cb)(cim_client_t *c, const CIM__Def__CIMMsgInfo *m, void *ud);

/* 0x0207 paging from after_seq until has_more is false, calling cb (may be NULL) for every
 * entry in seq order. *max_seq (may be NULL) gets the server's max_seq; *count (may be NULL)
 * the number of entries. Seqs are recorded as seen. */
int cim_sync(cim_client_t *c, uint64_t after_seq, uint32_t limit, cim_sync_cb cb, void *ud,
             uint64_t *max_seq, size_t *count, uint32_t *result_code);

/* 0x0205 one history page of a session, newest first, server_msg_id < end_msg_id (0 = from the
 * newest); rsp->end_msg_id is the next cursor. */
int cim_history(cim_client_t *c, uint32_t session_type, uint64_t session_id, uint64_t end_msg_id,
                uint32_t limit, CIM__Def__CIMGetMsgListRsp **out, uint32_t *result_code);

/* 0x0201 recent sessions with unread counts (since: unix time, 0 = all). */
int cim_sessions(cim_client_t *c, uint32_t since, CIM__Def__CIMRecentContactSessionRsp **out,
                 uint32_t *result_code);

/* 0x0303 read ack: everything <= msg_id in the session is read (no answer). */
int cim_read_ack(cim_client_t *c, uint32_t session_type, uint64_t session_id, uint64_t msg_id);

/* 0x0310 recall one of my messages. */
int cim_recall(cim_client_t *c, uint32_t session_type, uint64_t session_id, uint64_t server_msg_id,
               uint32_t *result_code);

/* 0x0305 the latest server_msg_id of a session (0 when empty). */
int cim_latest_msg_id(cim_client_t *c, uint32_t session_type, uint64_t session_id, uint64_t *latest,
                      uint32_t *result_code);

/* 0x0307 messages by server_msg_id (the server takes at most 20). */
int cim_msgs_by_id(cim_client_t *c, uint32_t session_type, uint64_t session_id, const uint64_t *ids,
                   size_t n, CIM__Def__CIMGetMsgByIdRsp **out, uint32_t *result_code);

/* ------------------------------------------------------------------ names */

/* Text for a return code of this library or a negative errno; static storage. */
const char *cim_strerror(int rc);

/* Name of a CIMErrorCode value ("LOGIN_INVALID_USER_OR_PWD"), "UNKNOWN" for others. */
const char *cim_result_name(uint32_t code);

/* Name of a command id ("CIMAuthReq"), or "unknown". */
const char *cim_cmd_name(uint16_t cmd);

#endif
