/* gate_conn: client TCP connections of msg_gate.
 *
 * Memory per connection is the struct below (uv_tcp_t + ~100 bytes). Reads go into one shared
 * buffer per loop; only a connection with a partial packet holds its own buffer, sized to that
 * packet, and frees it as soon as the packet is complete. Writes go out with uv_try_write
 * first; only what the kernel does not take is copied into a heap write request.
 * Deadlines (auth, idle, graceful close) need no timer per connection: connections sit on an
 * LRU list by last activity and on a FIFO "wait" list (unauthenticated in connect order, or
 * closing in close order); one sweep timer looks at the heads.
 * On the TLS ports (gate_tls.c) reads always go into the shared buffer; the ciphertext is
 * handed to the connection's SSL, and the plaintext it yields takes the same path as a plain
 * read (into the partial-packet buffer when there is one, else the shared buffer, which is
 * free again once the ciphertext is copied into the SSL's read BIO). Writes are encrypted
 * first and the ciphertext goes out through the same try-write-then-queue path. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gate.h"
#include "im_cmd.h"
#include "im_codec.h"
#include "im_id.h"
#include "im_log.h"
#include "proto/cim.pb-c.h"
#include "proto/internal.pb-c.h"

#define CLOSE_GRACE_MS 2000

struct gate_conn_s {
    uv_tcp_t tcp;
    gate_t *g;
    uint64_t id;
    uint64_t user_id;
    uint64_t connected_ms;
    uint64_t active_ms; /* last packet from the client */
    uint64_t closing_ms;
    gate_conn_t *lru_prev, *lru_next;
    gate_conn_t *wait_prev, *wait_next;
    gate_conn_t *user_next; /* same user on this gate */
    uint8_t *buf;           /* partial packet, or NULL */
    uint32_t blen, bcap;
    uint32_t peer_ip; /* network order */
    uint16_t peer_port;
    uint16_t push_seq;
    uint8_t state;
    uint8_t client_type;
    uint8_t on_wait;
    uint8_t close_reason;
    gate_ws_t *ws;      /* WebSocket state, NULL for plain TCP clients */
    gate_tls_t *tls;    /* TLS state on the TLS ports, else NULL */
    uint32_t rl_tokens; /* request bucket, in thousandths of a request */
    uint32_t rl_last;   /* ms (gate clock) of the last refill */
    uint32_t cf_tokens; /* delivery-confirmation bucket */
    uint32_t cf_last;
    uint16_t rl_strikes; /* requests refused since the bucket was last full */
};

typedef struct {
    uv_write_t req;
    gate_conn_t *c;
    size_t len;
    uint8_t data[];
} wreq_t;

typedef struct {
    uv_shutdown_t req;
} shut_t;

/* ---------------------------------------------------------------- lists */

#define LIST_UNLINK(head, tail, x, prev, next)                                                     \
    do {                                                                                           \
        if ((x)->prev)                                                                             \
            (x)->prev->next = (x)->next;                                                           \
        else                                                                                       \
            (head) = (x)->next;                                                                    \
        if ((x)->next)                                                                             \
            (x)->next->prev = (x)->prev;                                                           \
        else                                                                                       \
            (tail) = (x)->prev;                                                                    \
        (x)->prev = (x)->next = NULL;                                                              \
    } while (0)

#define LIST_APPEND(head, tail, x, prev, next)                                                     \
    do {                                                                                           \
        (x)->next = NULL;                                                                          \
        (x)->prev = (tail);                                                                        \
        if (tail)                                                                                  \
            (tail)->next = (x);                                                                    \
        else                                                                                       \
            (head) = (x);                                                                          \
        (tail) = (x);                                                                              \
    } while (0)

static void lru_touch(gate_t *g, gate_conn_t *c)
{
    if (g->lru_tail == c)
        return;
    LIST_UNLINK(g->lru_head, g->lru_tail, c, lru_prev, lru_next);
    LIST_APPEND(g->lru_head, g->lru_tail, c, lru_prev, lru_next);
}

static void wait_remove(gate_t *g, gate_conn_t *c)
{
    if (c->on_wait) {
        LIST_UNLINK(g->wait_head, g->wait_tail, c, wait_prev, wait_next);
        c->on_wait = 0;
    }
}

static void wait_append(gate_t *g, gate_conn_t *c)
{
    wait_remove(g, c);
    LIST_APPEND(g->wait_head, g->wait_tail, c, wait_prev, wait_next);
    c->on_wait = 1;
}

/* ---------------------------------------------------------------- users */

static void user_link(gate_t *g, gate_conn_t *c)
{
    gate_conn_t *first = im_map_get(&g->users, c->user_id);
    c->user_next = first;
    im_map_put(&g->users, c->user_id, c);
}

static void user_unlink(gate_t *g, gate_conn_t *c)
{
    gate_conn_t *first = im_map_get(&g->users, c->user_id);
    if (first == c) {
        if (c->user_next)
            im_map_put(&g->users, c->user_id, c->user_next);
        else
            im_map_del(&g->users, c->user_id);
    } else {
        for (gate_conn_t *p = first; p; p = p->user_next) {
            if (p->user_next == c) {
                p->user_next = c->user_next;
                break;
            }
        }
    }
    c->user_next = NULL;
}

gate_conn_t *gate_conn_user_first(gate_t *g, uint64_t user_id)
{
    return user_id ? im_map_get(&g->users, user_id) : NULL;
}

gate_conn_t *gate_conn_user_next(gate_conn_t *c)
{
    return c->user_next;
}

uint64_t gate_conn_id(const gate_conn_t *c)
{
    return c->id;
}

uint32_t gate_conn_client_type(const gate_conn_t *c)
{
    return c->client_type;
}

gate_conn_t *gate_conn_find(gate_t *g, uint64_t conn_id)
{
    gate_conn_t *c = conn_id ? im_map_get(&g->conns, conn_id) : NULL;
    return c && c->state != CONN_CLOSING ? c : NULL;
}

gate_ws_t *gate_conn_ws(gate_conn_t *c)
{
    return c->ws;
}

gate_t *gate_conn_gate(gate_conn_t *c)
{
    return c->g;
}

int gate_conn_is_closing(const gate_conn_t *c)
{
    return c->state == CONN_CLOSING;
}

const char *gate_conn_peer(const gate_conn_t *c, char *buf, size_t len);

static const char *peer_str(const gate_conn_t *c, char *buf, size_t len)
{
    return gate_conn_peer(c, buf, len);
}

const char *gate_conn_peer(const gate_conn_t *c, char *buf, size_t len)
{
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &c->peer_ip, ip, sizeof(ip));
    snprintf(buf, len, "%s:%u", ip, c->peer_port);
    return buf;
}

/* ---------------------------------------------------------------- close */

static void on_closed(uv_handle_t *h)
{
    gate_conn_t *c = h->data;
    gate_t *g = c->g;
    im_map_del(&g->conns, c->id);
    g->nconns--;
    im_metric_add(g->m.conns, -1);
    im_metric_add(g->m.closed, 1);
    free(c->buf);
    gate_ws_free(c->ws);
    if (c->tls) {
        gate_tls_free(c->tls);
        im_metric_add(g->m.tls_conns, -1);
    }
    free(c);
}

static void hard_close(gate_conn_t *c)
{
    if (uv_is_closing((uv_handle_t *) &c->tcp))
        return;
    gate_t *g = c->g;
    wait_remove(g, c);
    LIST_UNLINK(g->lru_head, g->lru_tail, c, lru_prev, lru_next);
    uv_close((uv_handle_t *) &c->tcp, on_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    gate_conn_t *c = req->handle->data;
    (void) status;
    free(req);
    hard_close(c);
}

void gate_conn_close(gate_conn_t *c, int reason, int graceful)
{
    gate_t *g = c->g;
    if (c->ws && c->state != CONN_CLOSING && gate_ws_defer_close(c, reason, graceful))
        return;
    if (c->state == CONN_CLOSING) {
        if (!graceful)
            hard_close(c);
        return;
    }
    char peer[48];
    int was = c->state;
    log_debug("conn %llu user %llu peer %s: close (reason %d%s)", (unsigned long long) c->id,
              (unsigned long long) c->user_id, peer_str(c, peer, sizeof(peer)), reason,
              graceful ? ", graceful" : "");
    c->state = CONN_CLOSING;
    c->close_reason = (uint8_t) reason;
    if (was == CONN_AUTHED) {
        user_unlink(g, c);
        im_metric_add(g->m.authed, -1);
        if (c->client_type < 8)
            im_metric_add(g->m.by_type[c->client_type], -1);
    }
    /* the logic removes the route (only if it still points here) */
    if (was == CONN_AUTHED || was == CONN_AUTHING)
        gate_link_up(g, c->user_id ? c->user_id : c->id, CIM__INTERNAL__UPSTREAM__KIND__CONN_CLOSED,
                     c->id, c->user_id, c->client_type, 0, 0, NULL, 0, NULL, (uint32_t) reason);
    if (c->ws)
        graceful |= gate_ws_close(c, reason); /* a close frame goes out first */
    if (c->tls && graceful)
        gate_tls_close_notify(c, c->tls); /* then TLS' own close */
    uv_read_stop((uv_stream_t *) &c->tcp);
    free(c->buf);
    c->buf = NULL;
    c->blen = c->bcap = 0;
    if (graceful && uv_stream_get_write_queue_size((uv_stream_t *) &c->tcp) > 0) {
        shut_t *s = malloc(sizeof(*s));
        if (s && uv_shutdown(&s->req, (uv_stream_t *) &c->tcp, on_shutdown) == 0) {
            c->closing_ms = im_mono_ms();
            wait_append(g, c);
            return;
        }
        free(s);
    }
    hard_close(c);
}

/* ---------------------------------------------------------------- write */

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *) req;
    (void) status;
    free(w);
}

/* Write a, then b, to the socket: what the kernel takes now is not copied; the rest goes into
 * one heap write request. 0 ok, -1 the connection was closed. */
int gate_conn__sock_write(gate_conn_t *c, const uint8_t *a, size_t alen, const uint8_t *b,
                          size_t blen)
{
    gate_t *g = c->g;
    if (uv_is_closing((uv_handle_t *) &c->tcp))
        return -1;
    size_t total = alen + blen, done = 0;
    uv_stream_t *s = (uv_stream_t *) &c->tcp;
    if (uv_stream_get_write_queue_size(s) == 0) {
        uv_buf_t bufs[2] = {uv_buf_init((char *) a, (unsigned) alen),
                            uv_buf_init((char *) b, (unsigned) blen)};
        int n = uv_try_write(s, bufs, blen ? 2 : 1);
        if (n > 0)
            done = (size_t) n;
        else if (n != UV_EAGAIN) {
            gate_conn_close(c, CLOSE_CLIENT, 0);
            return -1;
        }
        if (done == total)
            return 0;
    } else if (uv_stream_get_write_queue_size(s) + total > (size_t) g->cfg.gate_write_queue_max) {
        char peer[48];
        log_warn("conn %llu user %llu peer %s: client does not read (%zu bytes queued): closed",
                 (unsigned long long) c->id, (unsigned long long) c->user_id,
                 peer_str(c, peer, sizeof(peer)), uv_stream_get_write_queue_size(s));
        im_metric_add(g->m.slow_closes, 1);
        gate_conn_close(c, CLOSE_SLOW, 0);
        return -1;
    }
    size_t rest = total - done;
    wreq_t *w = malloc(sizeof(*w) + rest);
    if (!w) {
        gate_conn_close(c, CLOSE_CLIENT, 0);
        return -1;
    }
    w->c = c;
    w->len = rest;
    /* copy the unsent tail of a+b */
    if (done < alen) {
        memcpy(w->data, a + done, alen - done);
        if (blen)
            memcpy(w->data + (alen - done), b, blen);
    } else {
        memcpy(w->data, b + (done - alen), rest);
    }
    uv_buf_t buf = uv_buf_init((char *) w->data, (unsigned) rest);
    if (uv_write(&w->req, s, &buf, 1, on_written) != 0) {
        free(w);
        gate_conn_close(c, CLOSE_CLIENT, 0);
        return -1;
    }
    return 0;
}

int gate_conn_write_raw(gate_conn_t *c, const uint8_t *a, size_t alen, const uint8_t *b,
                        size_t blen)
{
    if (uv_is_closing((uv_handle_t *) &c->tcp))
        return -1;
    if (c->tls)
        return gate_tls_write(c, c->tls, a, alen, b, blen);
    return gate_conn__sock_write(c, a, alen, b, blen);
}

void gate_conn_send(gate_conn_t *c, uint16_t cmd, uint16_t seq, const uint8_t *body, size_t len)
{
    gate_t *g = c->g;
    if (uv_is_closing((uv_handle_t *) &c->tcp))
        return;
    if (IM_HEADER_LEN + len > IM_MAX_PACKET_S2C) {
        log_error("conn %llu: packet 0x%04x of %zu bytes over the 1 MiB limit, not sent",
                  (unsigned long long) c->id, cmd, len);
        return;
    }
    if (seq == 0) {
        if (++c->push_seq == 0)
            c->push_seq = 1;
        seq = c->push_seq;
    }
    uint8_t hdr[IM_HEADER_LEN];
    im_codec_write_header(hdr, cmd, seq, len);
    im_metric_add(g->m.pkts_out, 1);
    im_metric_add(g->m.bytes_out, (int64_t) (IM_HEADER_LEN + len));
    if (c->ws)
        gate_ws_send_packet(c, hdr, body, len); /* one packet per binary message */
    else
        gate_conn_write_raw(c, hdr, IM_HEADER_LEN, body, len);
}

/* ---------------------------------------------------------------- rate limits */

/* Token bucket in thousandths: rate per second, burst whole requests. 1 taken, 0 empty. */
static int bucket_take(uint32_t *tokens, uint32_t *last, uint32_t now, long long rate,
                       long long burst)
{
    if (rate <= 0)
        return 1;
    uint64_t cap = (uint64_t) burst * 1000;
    uint64_t t = *tokens + (uint64_t) (uint32_t) (now - *last) * (uint64_t) rate;
    *last = now;
    if (t > cap)
        t = cap;
    if (t < 1000) {
        *tokens = (uint32_t) t;
        return 0;
    }
    *tokens = (uint32_t) (t - 1000);
    return 1;
}

typedef struct ip_bucket_s {
    uint32_t tokens, last;
} ip_bucket_t;

/* per source address: connections per second */
static int ip_allowed(gate_t *g, uint32_t ip)
{
    if (g->cfg.gate_ip_conn_rate <= 0)
        return 1;
    uint32_t now = (uint32_t) im_mono_ms();
    ip_bucket_t *b = im_map_get(&g->ip_buckets, (uint64_t) ip + 1);
    if (!b) {
        b = malloc(sizeof(*b));
        if (!b)
            return 1;
        b->tokens = (uint32_t) (g->cfg.gate_ip_conn_burst * 1000);
        b->last = now;
        im_map_put(&g->ip_buckets, (uint64_t) ip + 1, b);
    }
    return bucket_take(&b->tokens, &b->last, now, g->cfg.gate_ip_conn_rate,
                       g->cfg.gate_ip_conn_burst);
}

/* forget addresses whose bucket has been full for a while */
static void ip_buckets_sweep(gate_t *g)
{
    uint32_t now = (uint32_t) im_mono_ms();
    uint64_t k;
    void *v;
    for (size_t it = 0; im_map_next(&g->ip_buckets, &it, &k, &v);) {
        ip_bucket_t *b = v;
        if ((uint32_t) (now - b->last) > 60000) {
            im_map_del(&g->ip_buckets, k);
            free(b);
        }
    }
}

/* ---------------------------------------------------------------- packets */

static void send_error_reply(gate_conn_t *c, uint16_t cmd, uint16_t seq, uint32_t code)
{
    const im_cmd_info_t *ci = im_cmd_info(cmd);
    uint8_t body[16];
    uint16_t rsp = 0;
    if (ci && ci->rsp_is_res)
        code = code == IM_ERR_STORAGE_UNAVAILABLE ? IM_RES_ERROR
               : code == IM_ERR_RATE_LIMITED      ? IM_RES_RATE_LIMITED
                                                  : IM_RES_REFUSED;
    int n = im_cmd_error_body(cmd, code, body, &rsp);
    if (n >= 0)
        gate_conn_send(c, rsp, seq, body, (size_t) n);
}

static void forward(gate_conn_t *c, const im_packet_t *p)
{
    gate_t *g = c->g;
    char peer[48];
    uint64_t key = c->state == CONN_AUTHED ? c->user_id : c->id;
    int kind = p->hdr.cmd == IM_CMD_MSG_DATA_ACK ? CIM__INTERNAL__UPSTREAM__KIND__CONFIRM
                                                 : CIM__INTERNAL__UPSTREAM__KIND__PACKET;
    if (gate_link_up(g, key, (uint32_t) kind, c->id, c->user_id, c->client_type, p->hdr.cmd,
                     p->hdr.seq, p->body, p->body_len, peer_str(c, peer, sizeof(peer)), 0) < 0) {
        im_metric_add(g->m.no_logic, 1);
        send_error_reply(c, p->hdr.cmd, p->hdr.seq, IM_ERR_STORAGE_UNAVAILABLE);
        if (c->state == CONN_AUTHING)
            c->state = CONN_NEW;
    }
}

/* Returns 0 to go on reading, -1 when the connection was closed. */
int gate_conn_handle_packet(gate_conn_t *c, const im_packet_t *p)
{
    gate_t *g = c->g;
    uint16_t cmd = p->hdr.cmd;
    char peer[48];
    im_metric_add(g->m.pkts_in, 1);
    c->active_ms = im_mono_ms();
    lru_touch(g, c);

    if (cmd == IM_CMD_HEARTBEAT) {
        gate_conn_send(c, IM_CMD_HEARTBEAT, p->hdr.seq, NULL, 0);
        return 0;
    }
    const im_cmd_info_t *ci = im_cmd_info(cmd);
    int known = ci && ci->client_req;
    if (c->state == CONN_AUTHED) {
        if (!known) {
            im_metric_add(g->m.unknown_cmds, 1);
            log_debug("conn %llu user %llu: unknown command 0x%04x ignored",
                      (unsigned long long) c->id, (unsigned long long) c->user_id, cmd);
            return 0;
        }
        if (cmd == IM_CMD_AUTH_REQ || cmd == IM_CMD_AUTH_TOKEN_REQ) {
            send_error_reply(c, cmd, p->hdr.seq, IM_ERR_INVALID_PARAMETER); /* already logged in */
            return 0;
        }
        uint32_t now = (uint32_t) c->active_ms;
        if (cmd == IM_CMD_MSG_DATA_ACK) {
            /* delivery confirmations are not requests, but a flood of them is abuse */
            if (!bucket_take(&c->cf_tokens, &c->cf_last, now, g->cfg.gate_rate * 20,
                             g->cfg.gate_burst * 20)) {
                im_metric_add(g->m.rate_limited, 1);
                log_warn("conn %llu user %llu peer %s: delivery confirmation flood: closed",
                         (unsigned long long) c->id, (unsigned long long) c->user_id,
                         peer_str(c, peer, sizeof(peer)));
                gate_conn_close(c, CLOSE_ABUSE, 1);
                return -1;
            }
        } else if (!bucket_take(&c->rl_tokens, &c->rl_last, now, g->cfg.gate_rate,
                                g->cfg.gate_burst)) {
            im_metric_add(g->m.rate_limited, 1);
            send_error_reply(c, cmd, p->hdr.seq, IM_ERR_RATE_LIMITED); /* not stored */
            if (++c->rl_strikes > g->cfg.gate_burst) {
                log_warn("conn %llu user %llu peer %s: kept sending over the rate limit: closed",
                         (unsigned long long) c->id, (unsigned long long) c->user_id,
                         peer_str(c, peer, sizeof(peer)));
                gate_conn_close(c, CLOSE_ABUSE, 1);
                return -1;
            }
            return 0;
        } else if (c->rl_tokens >= (uint32_t) (g->cfg.gate_burst * 1000) - 1000) {
            c->rl_strikes = 0;
        }
        forward(c, p);
        return 0;
    }
    /* not logged in: only auth and register (heartbeats handled above) */
    if (c->state == CONN_NEW &&
        (cmd == IM_CMD_AUTH_REQ || cmd == IM_CMD_AUTH_TOKEN_REQ || cmd == IM_CMD_REGISTER_REQ)) {
        if (cmd != IM_CMD_REGISTER_REQ)
            c->state = CONN_AUTHING;
        forward(c, p);
        return 0;
    }
    if (c->state == CONN_AUTHING && cmd == IM_CMD_REGISTER_REQ) {
        forward(c, p);
        return 0;
    }
    log_info("conn %llu peer %s: command 0x%04x before login: closed", (unsigned long long) c->id,
             peer_str(c, peer, sizeof(peer)), cmd);
    if (known)
        send_error_reply(c, cmd, p->hdr.seq, IM_ERR_NOT_LOGGED_IN);
    gate_conn_close(c, CLOSE_NOT_AUTHED, 1);
    return -1;
}

/* Decode and handle every whole packet in data[0..len); returns bytes consumed, or -1 when
 * the connection was closed. *need gets the total size of a partial packet (0 = unknown). */
static long process(gate_conn_t *c, const uint8_t *data, size_t len, size_t *need)
{
    gate_t *g = c->g;
    size_t off = 0;
    *need = 0;
    while (off < len && c->state != CONN_CLOSING) {
        im_packet_t p;
        size_t used = 0;
        int rc = im_codec_decode(data + off, len - off, (size_t) g->cfg.max_packet, &p, &used);
        if (rc == IM_AGAIN) {
            *need = used;
            break;
        }
        if (rc < 0) {
            char peer[48];
            im_metric_add(g->m.proto_errors, 1);
            log_warn("conn %llu user %llu peer %s: protocol error: %s: closed",
                     (unsigned long long) c->id, (unsigned long long) c->user_id,
                     peer_str(c, peer, sizeof(peer)), im_codec_strerror(rc));
            gate_conn_close(c, CLOSE_PROTOCOL, 0);
            return -1;
        }
        off += used;
        if (gate_conn_handle_packet(c, &p) < 0)
            return -1;
    }
    return c->state == CONN_CLOSING ? -1 : (long) off;
}

/* Where the next plaintext bytes go: the free tail of the partial packet being collected (no
 * copy), else the loop's shared buffer. */
static void plain_dest(gate_conn_t *c, uint8_t **p, size_t *cap)
{
    if (c->buf && !c->ws && c->bcap > c->blen) {
        *p = c->buf + c->blen;
        *cap = c->bcap - c->blen;
    } else {
        *p = c->g->rbuf;
        *cap = c->g->rbuf_size;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gate_conn_t *c = h->data;
    (void) suggested;
    uint8_t *p;
    size_t cap;
    if (c->tls) { /* ciphertext: always the shared buffer */
        p = c->g->rbuf;
        cap = c->g->rbuf_size;
    } else {
        plain_dest(c, &p, &cap);
    }
    buf->base = (char *) p;
    buf->len = cap;
}

/* keep the unconsumed tail of a read as this connection's partial packet */
static int keep_partial(gate_conn_t *c, const uint8_t *rest, size_t n, size_t need)
{
    size_t cap = need > n ? need : n;
    if (cap < 64)
        cap = 64;
    if (c->buf && rest == c->buf) {
        if (cap > c->bcap) {
            uint8_t *nb = realloc(c->buf, cap);
            if (!nb)
                return -1;
            c->buf = nb;
            c->bcap = (uint32_t) cap;
        }
        c->blen = (uint32_t) n;
        return 0;
    }
    if (c->buf && cap <= c->bcap) {
        memmove(c->buf, rest, n);
        c->blen = (uint32_t) n;
        return 0;
    }
    uint8_t *nb = malloc(cap);
    if (!nb)
        return -1;
    memcpy(nb, rest, n);
    free(c->buf);
    c->buf = nb;
    c->bcap = (uint32_t) cap;
    c->blen = (uint32_t) n;
    return 0;
}

/* n plaintext bytes at base (where plain_dest pointed, or anywhere) from the client */
static void on_plain(gate_conn_t *c, const uint8_t *base, size_t n)
{
    gate_t *g = c->g;
    im_metric_add(g->m.bytes_in, (int64_t) n);
    if (c->ws) {
        /* any bytes (pings included) count as liveness */
        c->active_ms = im_mono_ms();
        lru_touch(g, c);
        gate_ws_on_data(c, base, n);
        return;
    }
    const uint8_t *data;
    size_t len;
    if (c->buf && base == c->buf + c->blen) {
        c->blen += (uint32_t) n;
        data = c->buf;
        len = c->blen;
    } else if (c->buf) { /* not read in place: append */
        if (keep_partial(c, c->buf, c->blen, (size_t) c->blen + n) < 0) {
            gate_conn_close(c, CLOSE_CLIENT, 0);
            return;
        }
        memcpy(c->buf + c->blen, base, n);
        c->blen += (uint32_t) n;
        data = c->buf;
        len = c->blen;
    } else {
        data = base;
        len = n;
    }
    size_t need = 0;
    long used = process(c, data, len, &need);
    if (used < 0)
        return;
    size_t rest = len - (size_t) used;
    if (rest == 0) {
        free(c->buf); /* idle connections hold no buffer */
        c->buf = NULL;
        c->blen = c->bcap = 0;
        return;
    }
    if (keep_partial(c, data + used, rest, need) < 0)
        gate_conn_close(c, CLOSE_CLIENT, 0);
}

/* TLS slices the shared-buffer read into, so that the SSL's read BIO holds at most a record or
 * two (memory BIOs keep their largest size) */
#define TLS_FEED_SLICE (17 * 1024)

static void on_tls_read(gate_conn_t *c, const uint8_t *data, size_t len)
{
    /* the ciphertext is copied into the SSL's read BIO slice by slice; the shared buffer can
     * then take plaintext, but the slices after the current one are still in it: decrypt
     * into the partial-packet buffer, or into the part of the shared buffer already fed */
    size_t off = 0;
    while (off < len) {
        size_t take = len - off < TLS_FEED_SLICE ? len - off : TLS_FEED_SLICE;
        if (gate_tls_feed(c, c->tls, data + off, take) < 0)
            return;
        off += take;
        for (;;) {
            uint8_t *p;
            size_t cap;
            plain_dest(c, &p, &cap);
            if (p == c->g->rbuf)
                cap = off; /* only the part already copied into the BIO */
            long n = gate_tls_read(c, c->tls, p, cap);
            if (n <= 0)
                break;
            on_plain(c, p, (size_t) n);
            if (c->state == CONN_CLOSING)
                return;
        }
        if (c->state == CONN_CLOSING)
            return;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    gate_conn_t *c = s->data;
    if (nread == 0 || c->state == CONN_CLOSING)
        return;
    if (nread < 0) {
        gate_conn_close(c, CLOSE_CLIENT, 0);
        return;
    }
    if (c->tls)
        on_tls_read(c, (const uint8_t *) buf->base, (size_t) nread);
    else
        on_plain(c, (const uint8_t *) buf->base, (size_t) nread);
}

/* ---------------------------------------------------------------- auth results */

void gate_conn_kick(gate_conn_t *c, uint32_t reason)
{
    gate_t *g = c->g;
    CIM__Def__CIMKickoutNotify k = CIM__DEF__CIMKICKOUT_NOTIFY__INIT;
    uint8_t body[32];
    k.user_id = c->user_id;
    k.reason = reason;
    k.client_type = (CIM__Def__CIMClientType) c->client_type;
    size_t n = cim__def__cimkickout_notify__pack(&k, body);
    gate_conn_send(c, IM_CMD_KICKOUT_NOTIFY, 0, body, n);
    im_metric_add(g->m.kicks, 1);
    log_info("conn %llu user %llu type %u: kicked (reason %u)", (unsigned long long) c->id,
             (unsigned long long) c->user_id, c->client_type, reason);
    gate_conn_close(c, CLOSE_KICKED, 1);
}

void gate_conn_auth_failed(gate_conn_t *c)
{
    if (c->state == CONN_AUTHING)
        c->state = CONN_NEW;
}

void gate_conn_auth_ok(gate_conn_t *c, uint64_t user_id, uint32_t client_type)
{
    gate_t *g = c->g;
    if (c->state == CONN_AUTHED) {
        return;
    }
    /* one connection per (user, client type) on this gate too, whatever the race */
    for (gate_conn_t *o = gate_conn_user_first(g, user_id); o;) {
        gate_conn_t *next = o->user_next;
        if (o != c && o->client_type == client_type)
            gate_conn_kick(o, IM_KICK_SAME_TYPE);
        o = next;
    }
    c->state = CONN_AUTHED;
    c->user_id = user_id;
    c->client_type = (uint8_t) (client_type <= IM_CT_MAX ? client_type : 0);
    wait_remove(g, c);
    user_link(g, c);
    im_metric_add(g->m.authed, 1);
    if (c->client_type < 8)
        im_metric_add(g->m.by_type[c->client_type], 1);
    char peer[48];
    log_info("conn %llu user %llu type %u peer %s: logged in", (unsigned long long) c->id,
             (unsigned long long) user_id, client_type, peer_str(c, peer, sizeof(peer)));
}

/* ---------------------------------------------------------------- accept */

static void free_handle(uv_handle_t *h)
{
    free(h->data);
}

enum { ACCEPT_WS = 1, ACCEPT_TLS = 2 };

static void accept_conn(uv_stream_t *server, int status, int kind)
{
    gate_t *g = server->data;
    static uint64_t last_log_ms;
    if (status < 0) {
        im_metric_add(g->m.accept_errors, 1);
        uint64_t now = im_mono_ms();
        if (now - last_log_ms > 1000) {
            log_warn("accept: %s (connections: %ld)", uv_strerror(status), g->nconns);
            last_log_ms = now;
        }
        return;
    }
    gate_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    uv_tcp_init(g->loop, &c->tcp);
    c->tcp.data = c;
    c->g = g;
    if (uv_accept(server, (uv_stream_t *) &c->tcp) != 0) {
        uv_close((uv_handle_t *) &c->tcp, free_handle);
        return;
    }
    if (g->draining || g->nconns >= g->cfg.gate_max_conns) {
        im_metric_add(g->m.accept_errors, 1);
        uv_close((uv_handle_t *) &c->tcp, free_handle);
        return;
    }
    c->id = ++g->next_conn_id;
    c->connected_ms = c->active_ms = im_mono_ms();
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *) &ss, &sl) == 0 && ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *) &ss;
        c->peer_ip = sin->sin_addr.s_addr;
        c->peer_port = ntohs(sin->sin_port);
    }
    if (!ip_allowed(g, c->peer_ip)) {
        static uint64_t last_warn;
        im_metric_add(g->m.rate_limited, 1);
        im_metric_add(g->m.accept_errors, 1);
        if (c->connected_ms - last_warn > 1000) {
            char peer[48];
            log_warn("peer %s: over the per-address connection rate: refused",
                     peer_str(c, peer, sizeof(peer)));
            last_warn = c->connected_ms;
        }
        uv_close((uv_handle_t *) &c->tcp, free_handle);
        return;
    }
    c->rl_tokens = (uint32_t) (g->cfg.gate_burst * 1000);
    c->rl_last = c->cf_last = (uint32_t) c->connected_ms;
    c->cf_tokens = (uint32_t) (g->cfg.gate_burst * 20 * 1000);
    uv_tcp_nodelay(&c->tcp, 1);
    if ((kind & ACCEPT_WS) && !(c->ws = gate_ws_new(c))) {
        uv_close((uv_handle_t *) &c->tcp, free_handle);
        return;
    }
    if ((kind & ACCEPT_TLS) && !(c->tls = gate_tls_new(g))) {
        gate_ws_free(c->ws);
        uv_close((uv_handle_t *) &c->tcp, free_handle);
        return;
    }
    if (c->tls)
        im_metric_add(g->m.tls_conns, 1);
    im_map_put(&g->conns, c->id, c);
    g->nconns++;
    im_metric_add(g->m.conns, 1);
    im_metric_add(g->m.accepted, 1);
    LIST_APPEND(g->lru_head, g->lru_tail, c, lru_prev, lru_next);
    wait_append(g, c);
    if (uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read) != 0)
        gate_conn_close(c, CLOSE_CLIENT, 0);
}

static void on_connection(uv_stream_t *server, int status)
{
    accept_conn(server, status, 0);
}

static void on_ws_connection(uv_stream_t *server, int status)
{
    accept_conn(server, status, ACCEPT_WS);
}

static void on_tls_connection(uv_stream_t *server, int status)
{
    accept_conn(server, status, ACCEPT_TLS);
}

static void on_wss_connection(uv_stream_t *server, int status)
{
    accept_conn(server, status, ACCEPT_WS | ACCEPT_TLS);
}

static int listen_on(gate_t *g, uv_tcp_t *h, int port, uv_connection_cb cb)
{
    struct sockaddr_in addr;
    int rc = uv_ip4_addr(g->cfg.gate_host, port, &addr);
    if (rc != 0) {
        log_error("bad gate_host %s: %s", g->cfg.gate_host, uv_strerror(rc));
        return -1;
    }
    uv_tcp_init(g->loop, h);
    h->data = g;
    if (g->cfg.gate_reuseport) {
        /* libuv 1.44 has no UV_TCP_REUSEPORT: make the socket ourselves */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0) {
            log_error("listen %s:%d: %s", g->cfg.gate_host, port, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        uv_tcp_open(h, fd);
    } else if ((rc = uv_tcp_bind(h, (struct sockaddr *) &addr, 0)) != 0) {
        log_error("bind %s:%d: %s", g->cfg.gate_host, port, uv_strerror(rc));
        return -1;
    }
    rc = uv_listen((uv_stream_t *) h, 4096, cb);
    if (rc != 0) {
        log_error("listen %s:%d: %s", g->cfg.gate_host, port, uv_strerror(rc));
        return -1;
    }
    return 0;
}

int gate_conn_listen(gate_t *g)
{
    if (listen_on(g, &g->listener, (int) g->cfg.gate_port, on_connection) < 0)
        return -1;
    log_info("listening for clients on %s:%lld", g->cfg.gate_host, g->cfg.gate_port);
    if (g->cfg.gate_ws_port) {
        if (listen_on(g, &g->ws_listener, (int) g->cfg.gate_ws_port, on_ws_connection) < 0)
            return -1;
        g->ws_listening = 1;
        log_info("WebSocket clients and the web page on %s:%lld", g->cfg.gate_host,
                 g->cfg.gate_ws_port);
    }
    if (g->cfg.gate_tls_port) {
        if (listen_on(g, &g->tls_listener, (int) g->cfg.gate_tls_port, on_tls_connection) < 0)
            return -1;
        g->tls_listening = 1;
        log_info("TLS clients on %s:%lld", g->cfg.gate_host, g->cfg.gate_tls_port);
    }
    if (g->cfg.gate_wss_port) {
        if (listen_on(g, &g->wss_listener, (int) g->cfg.gate_wss_port, on_wss_connection) < 0)
            return -1;
        g->wss_listening = 1;
        log_info("WebSocket over TLS and the web page on %s:%lld", g->cfg.gate_host,
                 g->cfg.gate_wss_port);
    }
    return 0;
}

void gate_conn_stop_accepting(gate_t *g)
{
    if (!uv_is_closing((uv_handle_t *) &g->listener))
        uv_close((uv_handle_t *) &g->listener, NULL);
    if (g->ws_listening && !uv_is_closing((uv_handle_t *) &g->ws_listener))
        uv_close((uv_handle_t *) &g->ws_listener, NULL);
    if (g->tls_listening && !uv_is_closing((uv_handle_t *) &g->tls_listener))
        uv_close((uv_handle_t *) &g->tls_listener, NULL);
    if (g->wss_listening && !uv_is_closing((uv_handle_t *) &g->wss_listener))
        uv_close((uv_handle_t *) &g->wss_listener, NULL);
}

/* ---------------------------------------------------------------- deadlines */

void gate_conn_sweep(gate_t *g)
{
    uint64_t now = im_mono_ms();
    static unsigned n;
    if (++n % 300 == 0)
        ip_buckets_sweep(g);
    uint64_t auth_ms = (uint64_t) g->cfg.gate_auth_timeout * 1000;
    uint64_t idle_ms = (uint64_t) g->cfg.gate_idle_timeout * 1000;
    char peer[48];
    /* wait list, in the order entries were appended: unauthenticated ones (deadline: connect
     * + auth timeout) and closing ones (deadline: close + grace) */
    uint64_t young = auth_ms < CLOSE_GRACE_MS ? auth_ms : CLOSE_GRACE_MS;
    gate_conn_t *c = g->wait_head;
    while (c) {
        gate_conn_t *next = c->wait_next;
        uint64_t since = c->state == CONN_CLOSING ? c->closing_ms : c->connected_ms;
        if (now - since < young)
            break; /* appended in time order: everything after is younger still */
        if (c->state == CONN_CLOSING) {
            if (now - c->closing_ms >= CLOSE_GRACE_MS)
                hard_close(c);
        } else if (now - c->connected_ms >= auth_ms) {
            im_metric_add(g->m.auth_timeouts, 1);
            log_info("conn %llu peer %s: no login within %lld s: closed",
                     (unsigned long long) c->id, peer_str(c, peer, sizeof(peer)),
                     g->cfg.gate_auth_timeout);
            gate_conn_close(c, CLOSE_AUTH_TIMEOUT, 0);
        }
        c = next;
    }
    c = g->lru_head;
    while (c && now - c->active_ms >= idle_ms) {
        gate_conn_t *next = c->lru_next;
        if (c->state != CONN_CLOSING) {
            im_metric_add(g->m.idle_timeouts, 1);
            log_info("conn %llu user %llu peer %s: idle for %lld s: closed",
                     (unsigned long long) c->id, (unsigned long long) c->user_id,
                     peer_str(c, peer, sizeof(peer)), g->cfg.gate_idle_timeout);
            gate_conn_close(c, CLOSE_IDLE, 0);
        }
        c = next;
    }
}

int gate_conn_reannounce(gate_t *g)
{
    int n = 0;
    for (gate_conn_t *c = g->lru_head; c; c = c->lru_next) {
        if (c->state != CONN_AUTHED)
            continue;
        gate_link_up(g, c->user_id, CIM__INTERNAL__UPSTREAM__KIND__ROUTE, c->id, c->user_id,
                     c->client_type, 0, 0, NULL, 0, NULL, 0);
        n++;
    }
    return n;
}

void gate_conn_close_all(gate_t *g)
{
    for (gate_conn_t *c = g->lru_head; c;) {
        gate_conn_t *next = c->lru_next;
        gate_conn_close(c, CLOSE_SHUTDOWN, 1);
        c = next;
    }
    /* graceful ones still on the wait list: the sweep (or the exit path) finishes them */
}
