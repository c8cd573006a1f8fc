/* msg_gate: internal API shared by the gate's files. One libuv loop, one process. */
#ifndef GATE_H
#define GATE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "im_codec.h"
#include "im_map.h"
#include "im_metrics.h"
#include "im_nn.h"
#include "im_redis.h"

typedef struct gate_config_s {
    long long gate_id; /* 0 = random at start */
    char *gate_host;
    long long gate_port;
    long long gate_ws_port;
    long long gate_tls_port; /* binary protocol over TLS, 0 = off */
    long long gate_wss_port; /* WebSocket over TLS, 0 = off */
    char *gate_tls_cert;     /* PEM certificate chain (leaf first) */
    char *gate_tls_key;      /* PEM private key, unencrypted */
    char *gate_nn_addr;      /* delivery endpoint, bound and advertised: tcp://IP:PORT */
    long long gate_metrics_port;
    char *redis_addr;
    long long registry_ttl;      /* seconds */
    long long gate_auth_timeout; /* seconds */
    long long gate_idle_timeout; /* seconds */
    long long max_packet;
    long long gate_max_conns;
    long long gate_write_queue_max; /* bytes queued to one client before it is closed */
    long long gate_reuseport;
    char *log_level;
    char *gate_web_root;                             /* static files served on the WebSocket port */
    long long gate_rate, gate_burst;                 /* requests per connection */
    long long gate_ip_conn_rate, gate_ip_conn_burst; /* connections per source address */
} gate_config_t;

enum { CONN_NEW = 0, CONN_AUTHING, CONN_AUTHED, CONN_CLOSING };

/* close reasons (also sent upstream) */
enum {
    CLOSE_CLIENT = 1,
    CLOSE_IDLE = 2,
    CLOSE_PROTOCOL = 3,
    CLOSE_KICKED = 4,
    CLOSE_SHUTDOWN = 5,
    CLOSE_AUTH_TIMEOUT = 6,
    CLOSE_LOGOUT = 7,
    CLOSE_SLOW = 8,
    CLOSE_NOT_AUTHED = 9,
    CLOSE_ABUSE = 10,
};

typedef struct gate_conn_s gate_conn_t;
typedef struct gate_ws_s gate_ws_t;
typedef struct gate_tls_s gate_tls_t;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

typedef struct gate_logic_s {
    uint64_t id;
    im_nn_out_t *out;
    uint64_t expires_ms; /* unix ms from the registry */
} gate_logic_t;

#define GATE_MAX_LOGICS 64

typedef struct gate_s {
    uv_loop_t *loop;
    gate_config_t cfg;
    uint64_t id;
    uv_tcp_t listener;
    uv_tcp_t ws_listener;
    int ws_listening;
    uv_tcp_t tls_listener, wss_listener;
    int tls_listening, wss_listening;
    struct ssl_ctx_st *tls_ctx; /* NULL when no TLS port is on */
    uv_timer_t sweep_timer;
    uv_timer_t registry_timer;
    uv_signal_t sigterm, sigint;
    im_nn_in_t *nn_in;
    im_redis_t *redis;
    im_map_t conns;      /* conn_id -> gate_conn_t */
    im_map_t users;      /* user_id -> first gate_conn_t of that user (chain) */
    im_map_t ip_buckets; /* source address + 1 -> connection-rate bucket */
    uint64_t next_conn_id;
    long nconns;
    gate_conn_t *lru_head, *lru_tail;   /* all open conns, least recently active first */
    gate_conn_t *wait_head, *wait_tail; /* not yet authed (connect order) / closing (close order) */
    gate_logic_t logics[GATE_MAX_LOGICS];
    int nlogics;
    uint8_t nn_prefix[128]; /* GateMsg fields 1-2, the start of every upstream batch */
    size_t nn_prefix_len;
    int draining;
    uint8_t *rbuf; /* the loop's shared read buffer */
    size_t rbuf_size;
    struct gate_metrics_s {
        im_metric_t *conns, *authed, *accepted, *closed, *pkts_in, *pkts_out, *bytes_in, *bytes_out,
            *proto_errors, *unknown_cmds, *kicks, *accept_errors, *auth_timeouts, *idle_timeouts,
            *slow_closes, *up_dropped, *no_logic, *logics, *ws_conns, *rate_limited, *up_queued,
            *tls_conns, *tls_failures;
        im_metric_t *by_type[8];
    } m;
} gate_t;

extern gate_t g_gate;

/* gate_conn.c */
int gate_conn_listen(gate_t *g);
void gate_conn_sweep(gate_t *g);
void gate_conn_close_all(gate_t *g);
gate_conn_t *gate_conn_find(gate_t *g, uint64_t conn_id);
/* Send one packet (header + body) to the client; seq 0 = the connection's push counter. */
void gate_conn_send(gate_conn_t *c, uint16_t cmd, uint16_t seq, const uint8_t *body, size_t len);
/* Close: graceful (pending writes flushed, at most 2 s) or at once. */
void gate_conn_close(gate_conn_t *c, int reason, int graceful);
void gate_conn_auth_ok(gate_conn_t *c, uint64_t user_id, uint32_t client_type);
void gate_conn_kick(gate_conn_t *c, uint32_t reason);
void gate_conn_auth_failed(gate_conn_t *c);
gate_conn_t *gate_conn_user_first(gate_t *g, uint64_t user_id);
gate_conn_t *gate_conn_user_next(gate_conn_t *c);
uint64_t gate_conn_id(const gate_conn_t *c);
uint32_t gate_conn_client_type(const gate_conn_t *c);
void gate_conn_stop_accepting(gate_t *g);
/* Send a ROUTE item upstream for every logged-in connection; returns how many. */
int gate_conn_reannounce(gate_t *g);

/* Write a, then b (may be NULL), to the client's byte stream: through TLS on the TLS ports,
 * else straight to the socket. 0 ok, -1 the connection was closed. The bytes are not
 * retained (what cannot be sent now is copied). */
int gate_conn_write_raw(gate_conn_t *c, const uint8_t *a, size_t alen, const uint8_t *b,
                        size_t blen);
/* The socket itself (TLS ciphertext): uv_try_write, the rest queued; closes a client whose
 * queue would pass gate_write_queue_max. 0 ok, -1 the connection was closed. */
int gate_conn__sock_write(gate_conn_t *c, const uint8_t *a, size_t alen, const uint8_t *b,
                          size_t blen);
/* Handle one decoded client packet; 0 go on, -1 the connection was closed. */
int gate_conn_handle_packet(gate_conn_t *c, const im_packet_t *p);
gate_t *gate_conn_gate(gate_conn_t *c);
int gate_conn_is_closing(const gate_conn_t *c);
const char *gate_conn_peer(const gate_conn_t *c, char *buf, size_t len);

/* gate_ws.c: WebSocket (RFC 6455, wslay) and the static web page on gate_ws_port */
gate_ws_t *gate_ws_new(gate_conn_t *c);
void gate_ws_free(gate_ws_t *ws);
void gate_ws_on_data(gate_conn_t *c, const uint8_t *data, size_t len);
void gate_ws_send_packet(gate_conn_t *c, const uint8_t *hdr, const uint8_t *body, size_t len);
/* Queue a close frame for reason and flush; returns 1 when the close must be graceful. */
int gate_ws_close(gate_conn_t *c, int reason);
/* Inside wslay's receive loop a close is only noted (returns 1); it happens when wslay returns. */
int gate_ws_defer_close(gate_conn_t *c, int reason, int graceful);
gate_ws_t *gate_conn_ws(gate_conn_t *c);

/* gate_tls.c: TLS on gate_tls_port / gate_wss_port (OpenSSL, memory BIOs; libuv owns the
 * socket) */
/* Load the certificate and key into g->tls_ctx when a TLS port is on. 0 ok (also when TLS is
 * off), -1 after logging why (missing or bad file, key that does not match). */
int gate_tls_init(gate_t *g);
/* Free g->tls_ctx (at exit). */
void gate_tls_cleanup(gate_t *g);
/* Server-side TLS state for a new connection, or NULL when out of memory. */
gate_tls_t *gate_tls_new(gate_t *g);
void gate_tls_free(gate_tls_t *t);
/* Ciphertext from the socket: taken in whole and, while the handshake is not done, used to
 * advance it. 0 go on (gate_tls_read), -1 the connection was closed (handshake failure,
 * logged). */
int gate_tls_feed(gate_conn_t *c, gate_tls_t *t, const uint8_t *data, size_t len);
/* Plaintext received, up to cap bytes into buf: > 0 bytes, 0 none until more ciphertext
 * comes, -1 the connection was closed (close_notify from the client, or a TLS error). */
long gate_tls_read(gate_conn_t *c, gate_tls_t *t, uint8_t *buf, size_t cap);
/* Encrypt a then b and send the records; dropped before the handshake is done. 0 ok, -1 the
 * connection was closed. */
int gate_tls_write(gate_conn_t *c, gate_tls_t *t, const uint8_t *a, size_t alen, const uint8_t *b,
                   size_t blen);
/* Send close_notify (graceful close); the client's is not awaited. */
void gate_tls_close_notify(gate_conn_t *c, gate_tls_t *t);

/* gate_link.c */
int gate_link_start(gate_t *g);
void gate_link_stop(gate_t *g);
/* Forward a client packet (or a close) to the logic that owns key. 0 ok, -1 no logic. */
int gate_link_up(gate_t *g, uint64_t key, uint32_t kind, uint64_t conn_id, uint64_t user_id,
                 uint32_t client_type, uint16_t cmd, uint16_t seq, const uint8_t *body, size_t len,
                 const char *peer, uint32_t close_reason);
void gate_link_registry_tick(gate_t *g);

#endif
