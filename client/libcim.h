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
 * Return values: 0 (CIM_OK) on success, else a negative CIM_E* code below, or a negative
 * errno from the socket layer (cim_connect); cim_strerror() prints either. */
#ifndef CIM_LIBCIM_H
#define CIM_LIBCIM_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

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

/* ------------------------------------------------------------------ names */

/* Text for a return code of this library or a negative errno; static storage. */
const char *cim_strerror(int rc);

/* Name of a CIMErrorCode value ("LOGIN_INVALID_USER_OR_PWD"), "UNKNOWN" for others. */
const char *cim_result_name(uint32_t code);

/* Name of a command id ("CIMAuthReq"), or "unknown". */
const char *cim_cmd_name(uint16_t cmd);

#endif
