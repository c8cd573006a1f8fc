/* cim-bench: load generator for a local cim stack (issue 7).
 *
 *   cim-bench --scenario idle|p2p|offline|group|login|hostile --gates 127.0.0.1:8000,127.0.0.1:8010
 *             --users N --duration S --rate R --inflight K --members M --procs P
 *             --src-ips 127.0.0.1-8 --api http://127.0.0.1:8080 --api-key-file run/api_key
 *
 * Users BASE+i are created through the business API (409 -> GET .../token) before the clock
 * starts, then each connection logs in with 0x0101. --procs P forks P workers (user i belongs to
 * worker i % P); each runs its own libuv loop and reports to the parent over a pipe (progress
 * every 250 ms, at the end counters, histograms and the keys of acked and delivered messages).
 * The parent drives the phases, prints progress every second, samples the servers' RSS and CPU
 * (/proc) and prints exactly one "RESULT {json}" line.
 *
 * Messages: client_msg_id "<run>.<q>.<to>.<send_ns>", msg_data "B|<run>|<sender>|<q>|<send_ns>|"
 * padded to --size. Lost = acked OK but never delivered (after a drain), dup = delivered twice,
 * both counted by (sender, q) at the receivers. Every delivery is confirmed with 0x0302.
 * Only 127.0.0.0/8 targets are accepted. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "im_cmd.h"
#include "im_codec.h"
#include "proto/cim.pb-c.h"

#define MAX_GATES 64
#define MAX_SRC   256
#define MAX_PROCS 64

enum { SC_IDLE, SC_P2P, SC_OFFLINE, SC_GROUP, SC_LOGIN, SC_HOSTILE, SC_N };
static const char *const sc_names[] = {"idle", "p2p", "offline", "group", "login", "hostile"};

/* ---------------------------------------------------------------- options */

static struct {
    int sc;
    struct sockaddr_in gate[MAX_GATES];
    int ngates;
    char gates_s[1024];
    int users, duration, rate, inflight, members, procs;
    struct sockaddr_in src[MAX_SRC];
    int nsrc;
    char src_s[64];
    struct sockaddr_in api;
    char api_key[512];
    uint64_t uid_base;
    int msgs, size, conc, heartbeat, drain, api_conc, login_timeout, client_type, drip_ms;
    const char *pids, *run_dir;
} O = {
    .sc = SC_P2P,
    .users = 100,
    .duration = 10,
    .rate = 0,
    .inflight = 4,
    .members = 100,
    .procs = 1,
    .uid_base = 700000000ULL,
    .msgs = 20000,
    .size = 64,
    .conc = 500,
    .heartbeat = 20,
    .drain = 5,
    .api_conc = 16,
    .login_timeout = 120,
    .client_type = 1,
    .drip_ms = 1000,
};

/* shared by every process (filled before fork) */
static struct {
    int n; /* users */
    uint64_t *uid;
    char **tok;
    uint64_t group_id;
    uint32_t run;
} G;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cim-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static int is_loopback(const struct sockaddr_in *a)
{
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
}

static void parse_hostport(const char *s, struct sockaddr_in *out, const char *what)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t) (colon - s) >= sizeof(host))
        die("%s: host:port expected, got '%s'", what, s);
    memcpy(host, s, (size_t) (colon - s));
    host[colon - s] = '\0';
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    int port = atoi(colon + 1);
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1 || port <= 0 || port > 65535)
        die("%s: bad address '%s' (a literal IPv4 address is expected)", what, s);
    out->sin_port = htons((uint16_t) port);
    if (!is_loopback(out))
        die("%s: %s is not a loopback address (only 127.0.0.0/8 is allowed)", what, s);
}

static void parse_src(const char *s)
{
    char a[32];
    const char *dash = strchr(s, '-');
    size_t l = dash ? (size_t) (dash - s) : strlen(s);
    if (l >= sizeof(a))
        die("--src-ips: bad range '%s'", s);
    memcpy(a, s, l);
    a[l] = '\0';
    struct in_addr ia;
    if (inet_pton(AF_INET, a, &ia) != 1)
        die("--src-ips: bad address '%s'", a);
    uint32_t first = ntohl(ia.s_addr), last = first;
    if (dash) {
        if (strchr(dash + 1, '.')) {
            if (inet_pton(AF_INET, dash + 1, &ia) != 1)
                die("--src-ips: bad address '%s'", dash + 1);
            last = ntohl(ia.s_addr);
        } else {
            last = (first & 0xffffff00u) | (uint32_t) atoi(dash + 1);
        }
    }
    if (last < first || last - first >= MAX_SRC)
        die("--src-ips: bad range '%s' (at most %d addresses)", s, MAX_SRC);
    for (uint32_t v = first; v <= last; v++) {
        struct sockaddr_in *sa = &O.src[O.nsrc++];
        memset(sa, 0, sizeof(*sa));
        sa->sin_family = AF_INET;
        sa->sin_addr.s_addr = htonl(v);
        if (!is_loopback(sa))
            die("--src-ips: %s is not a loopback address", s);
    }
    snprintf(O.src_s, sizeof(O.src_s), "%s", s);
}

/* ---------------------------------------------------------------- histogram (log-linear, us) */

#define H_SUB 32
#define H_N   (64 + 43 * H_SUB)

typedef struct {
    uint64_t b[H_N];
    uint64_t n, max;
} hist_t;

static int h_idx(uint64_t v)
{
    if (v < 64)
        return (int) v;
    int m = 63 - __builtin_clzll(v);
    int sh = m - 5;
    int idx = 64 + (sh - 1) * H_SUB + (int) ((v >> sh) - H_SUB);
    return idx < H_N ? idx : H_N - 1;
}

static uint64_t h_val(int idx)
{
    if (idx < 64)
        return (uint64_t) idx;
    int sh = (idx - 64) / H_SUB + 1;
    uint64_t mant = (uint64_t) ((idx - 64) % H_SUB + H_SUB);
    return (mant << sh) + ((1ULL << sh) >> 1); /* middle of the bucket */
}

static void h_add(hist_t *h, uint64_t us)
{
    h->b[h_idx(us)]++;
    h->n++;
    if (us > h->max)
        h->max = us;
}

static void h_merge(hist_t *d, const hist_t *s)
{
    for (int i = 0; i < H_N; i++)
        d->b[i] += s->b[i];
    d->n += s->n;
    if (s->max > d->max)
        d->max = s->max;
}

static double h_pct_ms(const hist_t *h, double p)
{
    if (!h->n)
        return 0;
    uint64_t want = (uint64_t) ((double) h->n * p / 100.0 + 0.5), acc = 0;
    if (want < 1)
        want = 1;
    for (int i = 0; i < H_N; i++) {
        acc += h->b[i];
        if (acc >= want) {
            uint64_t v = h_val(i);
            return (double) (v > h->max ? h->max : v) / 1000.0;
        }
    }
    return (double) h->max / 1000.0;
}

static int h_json(char *o, size_t n, const hist_t *h)
{
    return snprintf(o, n, "{\"n\":%" PRIu64 ",\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
                    h->n, h_pct_ms(h, 50), h_pct_ms(h, 90), h_pct_ms(h, 99),
                    (double) h->max / 1000.0);
}

/* ---------------------------------------------------------------- small containers */

typedef struct {
    uint64_t *v;
    size_t n, cap;
} vec_t;

static void vec_push(vec_t *a, uint64_t x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 1024;
        a->v = realloc(a->v, a->cap * sizeof(uint64_t));
        if (!a->v)
            die("out of memory");
    }
    a->v[a->n++] = x;
}

typedef struct { /* open-addressing set of uint64 (stored +1; 0 = empty) */
    uint64_t *t;
    size_t cap, n;
} set_t;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int set_put_raw(uint64_t *t, size_t cap, uint64_t k)
{
    size_t i = mix64(k) & (cap - 1);
    while (t[i]) {
        if (t[i] == k)
            return 0;
        i = (i + 1) & (cap - 1);
    }
    t[i] = k;
    return 1;
}

/* 1 when k was new */
static int set_add(set_t *s, uint64_t k)
{
    k++;
    if ((s->n + 1) * 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 4096;
        uint64_t *nt = calloc(nc, sizeof(uint64_t));
        if (!nt)
            die("out of memory");
        for (size_t i = 0; i < s->cap; i++)
            if (s->t[i])
                set_put_raw(nt, nc, s->t[i]);
        free(s->t);
        s->t = nt;
        s->cap = nc;
    }
    int r = set_put_raw(s->t, s->cap, k);
    s->n += (size_t) r;
    return r;
}

static int set_has(const set_t *s, uint64_t k)
{
    if (!s->cap)
        return 0;
    k++;
    size_t i = mix64(k) & (s->cap - 1);
    while (s->t[i]) {
        if (s->t[i] == k)
            return 1;
        i = (i + 1) & (s->cap - 1);
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------------- worker <-> parent records */

typedef struct {
    int64_t conns_ok, conn_fail, login_fail, closed, proto_err, kicked;
    int64_t sent, acked, ack_err, refused, rate_limited, retried, inflight;
    int64_t delivered, dup, overlap, foreign, confirms, hb;
    int64_t sync_pages, sync_entries, sync_err;
    int64_t h_open, h_reconn, h_bytes; /* hostile: open now, reconnects, bytes sent */
    uint64_t t_first_send, t_last_ack, t_last_deliv, t_first_conn, t_last_login;
} ctr_t;

enum { R_PROG = 1, R_PHASE_DONE, R_FINAL };

typedef struct {
    int32_t type, phase;
    ctr_t c;
} rec_t;

static void ctr_sum(ctr_t *d, const ctr_t *s)
{
    int64_t *dv = (int64_t *) d;
    const int64_t *sv = (const int64_t *) s;
    size_t nsum = offsetof(ctr_t, t_first_send) / sizeof(int64_t);
    for (size_t i = 0; i < nsum; i++)
        dv[i] += sv[i];
#define MINT(f)                                                                                    \
    if (s->f && (!d->f || s->f < d->f))                                                            \
        d->f = s->f;
#define MAXT(f)                                                                                    \
    if (s->f > d->f)                                                                               \
        d->f = s->f;
    MINT(t_first_send)
    MAXT(t_last_ack)
    MAXT(t_last_deliv)
    MINT(t_first_conn)
    MAXT(t_last_login)
#undef MINT
#undef MAXT
}

static int write_full(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t) w;
    }
    return 0;
}

static int read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t) r;
    }
    return 0;
}

/* ---------------------------------------------------------------- worker */

enum { C_IDLE, C_CONNECTING, C_LOGIN, C_READY, C_CLOSING, C_HOSTILE };

typedef struct conn_s {
    uv_tcp_t tcp;
    uint32_t idx;
    uint8_t st;
    uint8_t pending; /* counted in the login pump, not resolved yet */
    uint8_t quit;    /* close asked by us */
    uint16_t seq;
    uint32_t inflight;
    uint32_t nextq, quota;
    uint64_t t0, last_tx, after_seq;
    uint8_t *rb;
    uint32_t rl, rc;
} conn_t;

typedef struct {
    uint32_t conn, q, to;
    uint64_t ns, due;
} retry_t;

static struct {
    uv_loop_t *loop;
    int id, up;
    conn_t *c;
    int nc;
    int phase, loading, finishing;
    conn_t **q;
    int qn, qi, busy, unresolved;
    uint64_t load_t0, load_end, sent_target, hb_ns;
    ctr_t k;
    hist_t h_ack, h_del, h_login;
    vec_t acked, deliv;
    set_t seen, seen_sync;
    uint32_t *gcnt;
    uint64_t *gmax;
    size_t gn;
    retry_t *rq;
    size_t rqn, rqcap;
    uv_timer_t tick, prog;
    uv_pipe_t down;
    uint32_t hb_pos, h_pos;
    uint64_t rnd;
    char pad[16384];
} W;

static uint32_t rnd32(void)
{
    W.rnd ^= W.rnd << 13;
    W.rnd ^= W.rnd >> 7;
    W.rnd ^= W.rnd << 17;
    return (uint32_t) (W.rnd >> 11);
}

static int is_receiver(uint32_t idx) /* offline: odd users are the offline receivers */
{
    return O.sc == SC_OFFLINE && (idx & 1);
}

static void send_rec(int type, int phase)
{
    rec_t r = {type, phase, W.k};
    r.c.inflight = 0;
    for (int i = 0; i < W.nc; i++)
        r.c.inflight += W.c[i].inflight;
    if (write_full(W.up, &r, sizeof(r)) < 0)
        _exit(3); /* the parent is gone */
}

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
    char data[];
} wreq_t;

static void on_written(uv_write_t *req, int status)
{
    (void) status;
    free(req);
}

static void conn_close(conn_t *c);

static void conn_write(conn_t *c, const uint8_t *p, size_t n)
{
    if (c->st == C_IDLE || c->st == C_CLOSING)
        return;
    int w = uv_try_write((uv_stream_t *) &c->tcp, &(uv_buf_t){(char *) p, n}, 1);
    if (w == (int) n)
        goto done;
    if (w < 0 && w != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    size_t off = w > 0 ? (size_t) w : 0;
    wreq_t *r = malloc(sizeof(*r) + n - off);
    if (!r)
        die("out of memory");
    memcpy(r->data, p + off, n - off);
    r->buf = uv_buf_init(r->data, (unsigned) (n - off));
    if (uv_write(&r->req, (uv_stream_t *) &c->tcp, &r->buf, 1, on_written) != 0) {
        free(r);
        conn_close(c);
        return;
    }
done:
    c->last_tx = now_ns();
}

static void send_pkt(conn_t *c, uint16_t cmd, uint16_t seq, const ProtobufCMessage *m)
{
    uint8_t stackbuf[1024];
    size_t bl = m ? protobuf_c_message_get_packed_size(m) : 0;
    uint8_t *b = bl + IM_HEADER_LEN <= sizeof(stackbuf) ? stackbuf : malloc(bl + IM_HEADER_LEN);
    if (!b)
        die("out of memory");
    im_codec_write_header(b, cmd, seq, bl);
    if (m)
        protobuf_c_message_pack(m, b + IM_HEADER_LEN);
    conn_write(c, b, bl + IM_HEADER_LEN);
    if (b != stackbuf)
        free(b);
}

static uint16_t next_seq(conn_t *c)
{
    if (++c->seq == 0)
        c->seq = 1;
    return c->seq;
}

static void phase_check(void);

/* a connection finished what this phase wanted from it */
static void resolve(conn_t *c)
{
    if (!c->pending)
        return;
    c->pending = 0;
    W.busy--;
    W.unresolved--;
    phase_check();
}

static void on_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (c->nextq) { /* hostile: it was open */
        c->nextq = 0;
        W.k.h_open--;
    }
    free(c->rb);
    c->rb = NULL;
    c->rl = c->rc = 0;
    c->st = C_IDLE;
    if (c->pending) {
        if (!c->quit)
            W.k.login_fail++;
        resolve(c);
    }
}

static void conn_close(conn_t *c)
{
    if (c->st == C_IDLE || c->st == C_CLOSING)
        return;
    if (!c->quit)
        W.k.closed++;
    c->t0 = now_ns();
    c->st = C_CLOSING;
    c->inflight = 0;
    uv_close((uv_handle_t *) &c->tcp, on_closed);
}

/* ---- messages */

static void send_msg(conn_t *c, uint32_t q, uint32_t to, uint64_t ns)
{
    char cmid[80];
    snprintf(cmid, sizeof(cmid), "%08x.%u.%u.%" PRIu64, G.run, q, to, ns);
    int l = snprintf(W.pad, sizeof(W.pad), "B|%08x|%u|%u|%" PRIu64 "|", G.run, c->idx, q, ns);
    size_t dl = (size_t) l;
    if ((size_t) O.size > dl) {
        memset(W.pad + dl, 'x', (size_t) O.size - dl);
        dl = (size_t) O.size;
    }
    CIM__Def__CIMMsgData d = CIM__DEF__CIMMSG_DATA__INIT;
    d.from_user_id = G.uid[c->idx];
    d.client_msg_id = cmid;
    d.create_time = (int32_t) time(NULL);
    d.msg_type = CIM__DEF__CIMMSG_TYPE__kCIM_MSG_TYPE_TEXT;
    if (O.sc == SC_GROUP) {
        d.session_type = CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_GROUP;
        d.to_session_id = G.group_id;
    } else {
        d.session_type = CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_SINGLE;
        d.to_session_id = G.uid[to];
    }
    d.msg_data.data = (uint8_t *) W.pad;
    d.msg_data.len = dl;
    send_pkt(c, IM_CMD_MSG_DATA, next_seq(c), &d.base);
    c->inflight++;
}

static uint32_t pick_to(uint32_t from)
{
    if (O.sc == SC_GROUP)
        return 0;
    if (O.sc == SC_OFFLINE) {
        uint32_t nr = (uint32_t) G.n / 2;
        return 2 * (rnd32() % nr) + 1;
    }
    uint32_t to = rnd32() % (uint32_t) (G.n - 1);
    return to >= from ? to + 1 : to;
}

static void send_new(conn_t *c)
{
    uint64_t t = now_ns();
    if (!W.k.t_first_send)
        W.k.t_first_send = t;
    W.k.sent++;
    send_msg(c, c->nextq++, pick_to(c->idx), t);
}

/* closed loop: keep K in flight while the load lasts */
static void refill(conn_t *c)
{
    if (c->st != C_READY)
        return;
    if (O.sc == SC_OFFLINE) {
        while (c->inflight < (uint32_t) O.inflight && c->nextq < c->quota)
            send_new(c);
        if (c->nextq >= c->quota && c->inflight == 0)
            phase_check();
        return;
    }
    if (!W.loading || O.rate > 0)
        return;
    if (O.sc == SC_GROUP && c->idx != 0)
        return;
    while (c->inflight < (uint32_t) O.inflight)
        send_new(c);
}

static void on_ack(conn_t *c, const uint8_t *body, size_t len)
{
    CIM__Def__CIMMsgDataAck *a = cim__def__cimmsg_data_ack__unpack(NULL, len, body);
    if (!a) {
        W.k.proto_err++;
        return;
    }
    unsigned run = 0, q = 0, to = 0;
    uint64_t ns = 0;
    if (sscanf(a->client_msg_id, "%x.%u.%u.%" SCNu64, &run, &q, &to, &ns) != 4 || run != G.run) {
        W.k.foreign++;
        cim__def__cimmsg_data_ack__free_unpacked(a, NULL);
        return;
    }
    uint64_t t = now_ns();
    if (c->inflight)
        c->inflight--;
    int rc = a->res_code;
    cim__def__cimmsg_data_ack__free_unpacked(a, NULL);
    if (rc == CIM__DEF__CIMRES_CODE__kCIM_RES_CODE_OK) {
        W.k.acked++;
        W.k.t_last_ack = t;
        h_add(&W.h_ack, (t - ns) / 1000);
        vec_push(&W.acked, ((uint64_t) c->idx << 32) | q);
    } else if (rc == 3 /* REFUSED */) {
        W.k.refused++;
    } else { /* ERROR, RATE_LIMITED: the same client_msg_id again, later */
        if (rc == 4)
            W.k.rate_limited++;
        else
            W.k.ack_err++;
        if (W.rqn == W.rqcap) {
            W.rqcap = W.rqcap ? W.rqcap * 2 : 256;
            W.rq = realloc(W.rq, W.rqcap * sizeof(retry_t));
            if (!W.rq)
                die("out of memory");
        }
        W.rq[W.rqn++] = (retry_t){(uint32_t) (c - W.c), q, to, ns, t + 200000000ULL};
        c->inflight++; /* still ours */
        return;
    }
    refill(c);
}

static void deliver(uint32_t rcpt, const uint8_t *data, size_t len, int push)
{
    char buf[96];
    size_t n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
    memcpy(buf, data, n);
    buf[n] = '\0';
    unsigned run = 0, s = 0, q = 0;
    uint64_t ns = 0;
    if (sscanf(buf, "B|%x|%u|%u|%" SCNu64 "|", &run, &s, &q, &ns) != 4 || run != G.run) {
        W.k.foreign++;
        return;
    }
    uint64_t key = O.sc == SC_GROUP ? ((uint64_t) rcpt << 32) | q : ((uint64_t) s << 32) | q;
    /* dup: the same path twice; push + sync of one message is normal (a real client dedupes
     * by seq) and is counted as overlap */
    if (!set_add(push ? &W.seen : &W.seen_sync, key)) {
        W.k.dup++;
        return;
    }
    if (set_has(push ? &W.seen_sync : &W.seen, key)) {
        W.k.overlap++;
        return;
    }
    uint64_t t = now_ns();
    W.k.delivered++;
    W.k.t_last_deliv = t;
    uint64_t us = t > ns ? (t - ns) / 1000 : 0;
    if (push)
        h_add(&W.h_del, us);
    if (O.sc == SC_GROUP) {
        if (q >= W.gn) {
            size_t nn = q + 1024;
            W.gcnt = realloc(W.gcnt, nn * sizeof(uint32_t));
            W.gmax = realloc(W.gmax, nn * sizeof(uint64_t));
            if (!W.gcnt || !W.gmax)
                die("out of memory");
            memset(W.gcnt + W.gn, 0, (nn - W.gn) * sizeof(uint32_t));
            memset(W.gmax + W.gn, 0, (nn - W.gn) * sizeof(uint64_t));
            W.gn = nn;
        }
        W.gcnt[q]++;
        if (us > W.gmax[q])
            W.gmax[q] = us;
    } else {
        vec_push(&W.deliv, key);
    }
}

static void on_push(conn_t *c, const uint8_t *body, size_t len)
{
    CIM__Def__CIMMsgData *d = cim__def__cimmsg_data__unpack(NULL, len, body);
    if (!d) {
        W.k.proto_err++;
        return;
    }
    /* confirm like a real client (PROTOCOL.md section 5) */
    CIM__Def__CIMMsgDataAck a = CIM__DEF__CIMMSG_DATA_ACK__INIT;
    a.from_user_id = d->from_user_id;
    a.to_session_id = d->session_type == CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_GROUP
                          ? d->to_session_id
                          : d->from_user_id;
    a.client_msg_id = d->client_msg_id;
    a.server_msg_id = d->server_msg_id;
    a.res_code = CIM__DEF__CIMRES_CODE__kCIM_RES_CODE_OK;
    a.session_type = d->session_type;
    a.create_time = d->create_time;
    a.seq = d->seq;
    send_pkt(c, IM_CMD_MSG_DATA_ACK, next_seq(c), &a.base);
    W.k.confirms++;
    deliver(c->idx, d->msg_data.data, d->msg_data.len, 1);
    cim__def__cimmsg_data__free_unpacked(d, NULL);
}

static void send_sync(conn_t *c, uint32_t limit)
{
    CIM__Def__CIMSyncReq s = CIM__DEF__CIMSYNC_REQ__INIT;
    s.after_seq = c->after_seq;
    s.limit = limit;
    send_pkt(c, IM_CMD_SYNC_REQ, next_seq(c), &s.base);
}

static void on_sync(conn_t *c, const uint8_t *body, size_t len)
{
    CIM__Def__CIMSyncRsp *r = cim__def__cimsync_rsp__unpack(NULL, len, body);
    if (!r || (r->result_code && r->result_code != 200)) {
        W.k.sync_err++;
        if (r)
            cim__def__cimsync_rsp__free_unpacked(r, NULL);
        conn_close(c);
        return;
    }
    if (W.phase == 0) { /* probe: remember the inbox position, then go offline */
        c->after_seq = r->max_seq;
        cim__def__cimsync_rsp__free_unpacked(r, NULL);
        c->quit = 1;
        conn_close(c);
        return;
    }
    W.k.sync_pages++;
    for (size_t i = 0; i < r->n_msg_list; i++) {
        CIM__Def__CIMMsgInfo *m = r->msg_list[i];
        W.k.sync_entries++;
        if (m->seq > c->after_seq)
            c->after_seq = m->seq;
        deliver(c->idx, m->msg_data.data, m->msg_data.len, 0);
    }
    int more = r->has_more && r->n_msg_list > 0;
    cim__def__cimsync_rsp__free_unpacked(r, NULL);
    if (more)
        send_sync(c, 500);
    else
        resolve(c);
}

static void on_login(conn_t *c, const uint8_t *body, size_t len)
{
    CIM__Def__CIMAuthTokenRsp *r = cim__def__cimauth_token_rsp__unpack(NULL, len, body);
    int ok = r && r->result_code == 200;
    if (r)
        cim__def__cimauth_token_rsp__free_unpacked(r, NULL);
    if (!ok) {
        W.k.login_fail++;
        c->quit = 1;
        conn_close(c);
        return;
    }
    uint64_t t = now_ns();
    c->st = C_READY;
    W.k.conns_ok++;
    W.k.t_last_login = t;
    h_add(&W.h_login, (t - c->t0) / 1000);
    if (O.sc == SC_OFFLINE && is_receiver(c->idx)) {
        send_sync(c, W.phase == 0 ? 1 : 500);
        return;
    }
    resolve(c);
}

static void on_packet(conn_t *c, const im_packet_t *p)
{
    switch (p->hdr.cmd) {
    case IM_CMD_AUTH_TOKEN_RSP:
        on_login(c, p->body, p->body_len);
        break;
    case IM_CMD_MSG_DATA_ACK:
        on_ack(c, p->body, p->body_len);
        break;
    case IM_CMD_MSG_DATA:
        on_push(c, p->body, p->body_len);
        break;
    case IM_CMD_SYNC_RSP:
        on_sync(c, p->body, p->body_len);
        break;
    case IM_CMD_HEARTBEAT:
        W.k.hb++;
        break;
    case IM_CMD_KICKOUT_NOTIFY:
        W.k.kicked++;
        break;
    default:
        break;
    }
}

static char g_rbuf[256 * 1024];

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void) h;
    (void) sz;
    *b = uv_buf_init(g_rbuf, sizeof(g_rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0 || c->st == C_HOSTILE) /* hostile: whatever the gate says is dropped */
        return;
    const uint8_t *p = (const uint8_t *) b->base;
    size_t len = (size_t) n;
    if (c->rl) { /* a partial packet is waiting: append */
        if (c->rl + len > c->rc) {
            c->rc = (uint32_t) (c->rl + len);
            c->rb = realloc(c->rb, c->rc);
            if (!c->rb)
                die("out of memory");
        }
        memcpy(c->rb + c->rl, p, len);
        c->rl += (uint32_t) len;
        p = c->rb;
        len = c->rl;
    }
    size_t off = 0;
    while (off < len && c->st != C_CLOSING && c->st != C_IDLE) {
        im_packet_t pkt;
        size_t used = 0;
        int rc = im_codec_decode(p + off, len - off, IM_MAX_PACKET_S2C, &pkt, &used);
        if (rc == IM_AGAIN)
            break;
        if (rc != IM_OK) {
            W.k.proto_err++;
            conn_close(c);
            return;
        }
        on_packet(c, &pkt);
        off += used;
    }
    if (c->st == C_CLOSING || c->st == C_IDLE)
        return;
    size_t left = len - off;
    if (!left) {
        c->rl = 0;
        if (c->rc > 65536) { /* do not keep a big buffer around */
            free(c->rb);
            c->rb = NULL;
            c->rc = 0;
        }
        return;
    }
    if (p == c->rb) {
        memmove(c->rb, c->rb + off, left);
    } else {
        if (left > c->rc) {
            free(c->rb);
            c->rb = malloc(left);
            if (!c->rb)
                die("out of memory");
            c->rc = (uint32_t) left;
        }
        memcpy(c->rb, p + off, left);
    }
    c->rl = (uint32_t) left;
}

/* ---- hostile: connections that never log in (scenario hostile), to run next to a real load.
 * Kind by index: 0 slowloris (a login header, one byte per --drip-ms), 1 silent (connects and
 * sends nothing), 2 garbage (16 random bytes per --drip-ms), 3 wrong token (a well-formed login
 * with a bad token, once per connection). Whatever the gate closes is reopened after 1-2 s,
 * so about --users stay open for --duration s. */

static void conn_start(conn_t *c);

static void hostile_open(conn_t *c)
{
    c->st = C_HOSTILE;
    c->nextq = 1; /* open, counted */
    c->quota = 0; /* bytes of the slowloris header sent */
    W.k.h_open++;
    W.k.conns_ok++;
    W.k.t_last_login = now_ns();
    if (c->idx % 4 == 3) {
        CIM__Def__CIMAuthTokenReq a = CIM__DEF__CIMAUTH_TOKEN_REQ__INIT;
        a.user_id = O.uid_base + c->idx;
        a.user_token = (char *) "1.1.99999999999.not-a-valid-signature";
        a.client_type = CIM__DEF__CIMCLIENT_TYPE__kCIM_CLIENT_TYPE_DEFAULT;
        send_pkt(c, IM_CMD_AUTH_TOKEN_REQ, next_seq(c), &a.base);
        c->st = C_HOSTILE;
    }
    resolve(c);
}

static void hostile_visit(conn_t *c, uint64_t now)
{
    if (c->st == C_IDLE) {
        if (!W.loading || now < c->t0 + 1000000000ULL + (uint64_t) (c->idx % 1000) * 1000000ULL)
            return;
        W.k.h_reconn++;
        conn_start(c);
        return;
    }
    if (c->st != C_HOSTILE || now - c->last_tx < (uint64_t) O.drip_ms * 1000000ULL)
        return;
    uint8_t b[16];
    size_t n = 0;
    if (c->idx % 4 == 0) {
        uint8_t hdr[IM_HEADER_LEN];
        im_codec_write_header(hdr, IM_CMD_AUTH_TOKEN_REQ, 1, 64);
        if (c->quota < IM_HEADER_LEN)
            b[n++] = hdr[c->quota++];
        else
            b[n++] = 0x0a; /* the body never completes */
    } else if (c->idx % 4 == 2) {
        for (; n < sizeof(b); n++)
            b[n] = (uint8_t) rnd32();
    }
    if (n) {
        W.k.h_bytes += (int64_t) n;
        conn_write(c, b, n);
    } else {
        c->last_tx = now;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    free(req);
    if (c->st != C_CONNECTING)
        return;
    if (status < 0) {
        W.k.conn_fail++;
        c->quit = 1;
        conn_close(c);
        return;
    }
    c->st = C_LOGIN;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read);
    if (O.sc == SC_HOSTILE) {
        hostile_open(c);
        return;
    }
    char nick[32];
    snprintf(nick, sizeof(nick), "bench%u", c->idx);
    CIM__Def__CIMAuthTokenReq a = CIM__DEF__CIMAUTH_TOKEN_REQ__INIT;
    a.user_id = G.uid[c->idx];
    a.user_token = G.tok[c->idx];
    a.nick_name = nick;
    a.client_type = (CIM__Def__CIMClientType) O.client_type;
    a.client_version = (char *) "cim-bench";
    send_pkt(c, IM_CMD_AUTH_TOKEN_REQ, next_seq(c), &a.base);
}

static void conn_start(conn_t *c)
{
    memset(&c->tcp, 0, sizeof(c->tcp));
    c->quit = 0;
    c->inflight = 0;
    c->seq = 0;
    c->t0 = now_ns();
    if (!W.k.t_first_conn)
        W.k.t_first_conn = c->t0;
    c->tcp.data = c;
    if (uv_tcp_init_ex(W.loop, &c->tcp, AF_INET) != 0)
        die("uv_tcp_init_ex failed");
    c->st = C_CONNECTING;
    if (O.nsrc) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *) &c->tcp, &fd) == 0) {
            int one = 1;
#ifdef IP_BIND_ADDRESS_NO_PORT
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
            (void) one;
        }
        const struct sockaddr_in *sa = &O.src[(c->idx / (uint32_t) O.ngates) % (uint32_t) O.nsrc];
        if (uv_tcp_bind(&c->tcp, (const struct sockaddr *) sa, 0) != 0) {
            W.k.conn_fail++;
            c->quit = 1;
            conn_close(c);
            return;
        }
    }
    uv_connect_t *req = malloc(sizeof(*req));
    if (!req)
        die("out of memory");
    req->data = c;
    int rc = uv_tcp_connect(req, &c->tcp, (const struct sockaddr *) &O.gate[c->idx % O.ngates],
                            on_connect);
    if (rc != 0) {
        free(req);
        W.k.conn_fail++;
        c->quit = 1;
        conn_close(c);
    }
}

/* login pump: at most --conc connections handshaking at a time */
static void pump(void)
{
    static int in_pump;
    if (in_pump)
        return;
    in_pump = 1;
    while (W.busy < O.conc && W.qi < W.qn) {
        conn_t *c = W.q[W.qi++];
        c->pending = 1;
        W.busy++;
        if (c->st == C_READY) /* already logged in: nothing to do in this phase */
            resolve(c);
        else if (c->st == C_IDLE)
            conn_start(c);
    }
    in_pump = 0;
}

static void queue_logins(int (*want)(const conn_t *))
{
    W.qn = W.qi = 0;
    for (int i = 0; i < W.nc; i++)
        if (!want || want(&W.c[i]))
            W.q[W.qn++] = &W.c[i];
    W.unresolved = W.qn;
    pump();
}

static int want_receiver(const conn_t *c)
{
    return is_receiver(c->idx);
}

static void phase_done(void)
{
    W.phase = -W.phase - 100; /* not active */
}

/* is the current phase finished? */
static void phase_check(void)
{
    if (W.phase < 0)
        return;
    pump();
    int ph = W.phase;
    int login_phase = ((O.sc == SC_IDLE || O.sc == SC_HOSTILE) && ph == 1) ||
                      (O.sc == SC_LOGIN && ph == 1) ||
                      ((O.sc == SC_P2P || O.sc == SC_GROUP) && ph == 0) ||
                      (O.sc == SC_OFFLINE && (ph == 0 || ph == 2));
    if (login_phase) {
        if (W.unresolved > 0)
            return;
    } else if (O.sc == SC_OFFLINE && ph == 1) {
        for (int i = 0; i < W.nc; i++) {
            conn_t *c = &W.c[i];
            if (c->st == C_READY && !is_receiver(c->idx) && (c->nextq < c->quota || c->inflight))
                if (now_ns() < W.load_end + (uint64_t) O.drain * 1000000000ULL)
                    return;
        }
    } else if (ph == 1 || ((O.sc == SC_IDLE || O.sc == SC_HOSTILE) && ph == 2)) {
        if (!W.finishing)
            return;
    } else if (ph != 0) {
        return;
    }
    send_rec(R_PHASE_DONE, ph);
    phase_done();
}

static void start_phase(int ph)
{
    W.phase = ph;
    uint64_t t = now_ns();
    switch (O.sc) {
    case SC_IDLE:
    case SC_HOSTILE:
    case SC_LOGIN:
        if (ph == 1)
            queue_logins(NULL);
        if (ph == 2) {
            W.load_t0 = t;
            W.load_end = t + (uint64_t) O.duration * 1000000000ULL;
            W.loading = 1;
        }
        break;
    case SC_P2P:
    case SC_GROUP:
        if (ph == 0)
            queue_logins(NULL);
        if (ph == 1) {
            W.load_t0 = t;
            W.load_end = t + (uint64_t) O.duration * 1000000000ULL;
            W.loading = 1;
            for (int i = 0; i < W.nc; i++)
                refill(&W.c[i]);
        }
        break;
    case SC_OFFLINE:
        if (ph == 0)
            queue_logins(NULL); /* receivers: login, probe, close; senders: login */
        if (ph == 1) {
            W.load_t0 = t;
            W.load_end = t + (uint64_t) O.duration * 1000000000ULL;
            uint32_t ns = (uint32_t) (G.n + 1) / 2, per = (uint32_t) O.msgs / ns,
                     extra = (uint32_t) O.msgs % ns;
            for (int i = 0; i < W.nc; i++) {
                conn_t *c = &W.c[i];
                if (is_receiver(c->idx))
                    continue;
                c->quota = per + (c->idx / 2 < extra ? 1 : 0);
                refill(c);
            }
        }
        if (ph == 2)
            queue_logins(want_receiver);
        break;
    }
    phase_check();
}

static void on_tick(uv_timer_t *t)
{
    (void) t;
    uint64_t now = now_ns();
    /* retries due */
    size_t j = 0;
    for (size_t i = 0; i < W.rqn; i++) {
        retry_t *r = &W.rq[i];
        conn_t *c = &W.c[r->conn];
        if (r->due > now) {
            W.rq[j++] = *r;
            continue;
        }
        if (c->st == C_READY) {
            c->inflight--;
            W.k.retried++;
            send_msg(c, r->q, r->to, r->ns);
        }
    }
    W.rqn = j;
    /* open loop */
    if (W.loading && O.rate > 0 && (O.sc == SC_P2P || O.sc == SC_GROUP) && now < W.load_end) {
        double rate = O.sc == SC_GROUP ? (double) O.rate : (double) O.rate / O.procs;
        uint64_t due = (uint64_t) ((double) (now - W.load_t0) / 1e9 * rate);
        int guard = 0;
        while (W.sent_target < due && guard++ < 100000) {
            conn_t *c = NULL;
            if (O.sc == SC_GROUP) {
                c = W.id == 0 && W.c[0].idx == 0 && W.c[0].st == C_READY ? &W.c[0] : NULL;
            } else {
                for (int k = 0; k < 8 && !c; k++) {
                    conn_t *x = &W.c[rnd32() % (uint32_t) W.nc];
                    if (x->st == C_READY)
                        c = x;
                }
            }
            W.sent_target++;
            if (c)
                send_new(c);
        }
    }
    if (W.loading && now >= W.load_end) {
        W.loading = 0;
        W.finishing = 0;
    }
    if (!W.loading && W.load_end && !W.finishing && W.phase >= 0) {
        int64_t infl = 0;
        for (int i = 0; i < W.nc; i++)
            infl += W.c[i].inflight;
        if ((infl == 0 && W.rqn == 0) || now >= W.load_end + (uint64_t) O.drain * 1000000000ULL)
            W.finishing = 1;
    }
    /* heartbeats: a slice of the connections per tick */
    int slice = W.nc / 100 + 1;
    for (int k = 0; k < slice && W.nc; k++) {
        conn_t *c = &W.c[W.hb_pos++ % (uint32_t) W.nc];
        if (c->st == C_READY && now - c->last_tx > W.hb_ns)
            send_pkt(c, IM_CMD_HEARTBEAT, next_seq(c), NULL);
    }
    if (O.sc == SC_HOSTILE) /* every connection visited about every 200 ms */
        for (int k = 0, sl = W.nc / 200 + 1; k < sl && W.nc; k++)
            hostile_visit(&W.c[W.h_pos++ % (uint32_t) W.nc], now);
    phase_check();
}

static void on_prog(uv_timer_t *t)
{
    (void) t;
    send_rec(R_PROG, W.phase);
}

static void send_final(void)
{
    send_rec(R_FINAL, W.phase);
    write_full(W.up, &W.h_ack, sizeof(hist_t));
    write_full(W.up, &W.h_del, sizeof(hist_t));
    write_full(W.up, &W.h_login, sizeof(hist_t));
    uint64_t n = W.acked.n;
    write_full(W.up, &n, 8);
    write_full(W.up, W.acked.v, n * 8);
    n = W.deliv.n;
    write_full(W.up, &n, 8);
    write_full(W.up, W.deliv.v, n * 8);
    n = W.gn;
    write_full(W.up, &n, 8);
    write_full(W.up, W.gcnt, n * 4);
    write_full(W.up, W.gmax, n * 8);
}

static void on_down(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void) s;
    if (n < 0) { /* parent gone */
        _exit(3);
    }
    for (ssize_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) b->base[i];
        if (ch == 'Q') {
            send_final();
            _exit(0);
        }
        if (ch >= '0' && ch <= '9')
            start_phase(ch - '0');
    }
}

static void worker_main(int id, int up, int down)
{
    memset(&W, 0, sizeof(W));
    W.id = id;
    W.up = up;
    W.phase = -1000;
    W.rnd = 0x9e3779b97f4a7c15ULL ^ ((uint64_t) getpid() << 20) ^ now_ns();
    W.hb_ns = (uint64_t) O.heartbeat * 1000000000ULL;
    W.loop = malloc(sizeof(uv_loop_t));
    if (!W.loop || uv_loop_init(W.loop) != 0)
        die("uv_loop_init failed");
    for (int i = id; i < G.n; i += O.procs)
        W.nc++;
    W.c = calloc((size_t) W.nc + 1, sizeof(conn_t));
    W.q = calloc((size_t) W.nc + 1, sizeof(conn_t *));
    if (!W.c || !W.q)
        die("out of memory");
    int k = 0;
    for (int i = id; i < G.n; i += O.procs)
        W.c[k++].idx = (uint32_t) i;
    uv_timer_init(W.loop, &W.tick);
    uv_timer_start(&W.tick, on_tick, 1, 1);
    uv_timer_init(W.loop, &W.prog);
    uv_timer_start(&W.prog, on_prog, 250, 250);
    uv_pipe_init(W.loop, &W.down, 0);
    uv_pipe_open(&W.down, down);
    uv_read_start((uv_stream_t *) &W.down, on_alloc, on_down);
    uv_run(W.loop, UV_RUN_DEFAULT);
    _exit(0);
}

/* ---------------------------------------------------------------- provisioning (HTTP) */

static int http_open(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *) &O.api, sizeof(O.api)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* one request on a keep-alive socket (*fd reopened when needed); the HTTP status, -1 on error */
static int http_do(int *fd, const char *method, const char *path, const char *body, char **resp)
{
    size_t bl = body ? strlen(body) : 0;
    size_t hl = 512 + strlen(path) + strlen(O.api_key);
    char *req = malloc(hl + bl);
    if (!req)
        return -1;
    int n = snprintf(req, hl,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: keep-alive\r\n\r\n",
                     method, path, O.api_key, bl);
    memcpy(req + n, body ? body : "", bl);
    *resp = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (*fd < 0 && (*fd = http_open()) < 0)
            break;
        if (write_full(*fd, req, (size_t) n + bl) < 0)
            goto reopen;
        size_t cap = 4096, len = 0;
        char *b = malloc(cap + 1);
        if (!b)
            break;
        char *eoh = NULL;
        long clen = -1;
        for (;;) {
            if (len == cap) {
                cap *= 2;
                char *nb = realloc(b, cap + 1);
                if (!nb)
                    break;
                b = nb;
            }
            ssize_t r = read(*fd, b + len, cap - len);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            len += (size_t) r;
            b[len] = '\0';
            if (!eoh && (eoh = strstr(b, "\r\n\r\n")) != NULL) {
                char *cl = strcasestr(b, "\r\ncontent-length:");
                clen = cl && cl < eoh ? atol(cl + 17) : 0;
            }
            if (eoh && (long) (len - (size_t) (eoh + 4 - b)) >= clen)
                break;
        }
        if (!eoh || (long) (len - (size_t) (eoh + 4 - b)) < clen) {
            free(b);
            goto reopen;
        }
        int status = atoi(b + 9);
        *eoh = '\0';
        int closing = strcasestr(b, "connection: close") != NULL;
        size_t off = (size_t) (eoh + 4 - b);
        memmove(b, b + off, (size_t) clen);
        b[clen] = '\0';
        *resp = b;
        if (closing) {
            close(*fd);
            *fd = -1;
        }
        free(req);
        return status;
    reopen:
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
    }
    free(req);
    return -1;
}

static char *json_field_str(const char *body, const char *name)
{
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    char *out = NULL;
    if (j) {
        json_t *v = json_object_get(j, name);
        if (json_is_string(v))
            out = strdup(json_string_value(v));
        else if (json_is_integer(v) &&
                 asprintf(&out, "%lld", (long long) json_integer_value(v)) < 0)
            out = NULL;
        json_decref(j);
    }
    return out;
}

static atomic_int prov_next, prov_created, prov_existing, prov_failed;

static void *prov_thread(void *arg)
{
    (void) arg;
    int fd = -1;
    char body[160], path[96];
    for (;;) {
        int i = atomic_fetch_add(&prov_next, 1);
        if (i >= G.n)
            break;
        for (int attempt = 0; attempt < 5 && !G.tok[i]; attempt++) {
            char *resp = NULL;
            snprintf(body, sizeof(body), "{\"user_id\":%" PRIu64 ",\"nick_name\":\"bench%d\"}",
                     G.uid[i], i);
            int st = http_do(&fd, "POST", "/api/v1/users", body, &resp);
            if (st == 200) {
                G.tok[i] = json_field_str(resp, "token");
                atomic_fetch_add(&prov_created, 1);
            } else if (st == 409) {
                free(resp);
                resp = NULL;
                snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/token", G.uid[i]);
                st = http_do(&fd, "GET", path, NULL, &resp);
                if (st == 200) {
                    G.tok[i] = json_field_str(resp, "token");
                    atomic_fetch_add(&prov_existing, 1);
                }
            }
            if (!G.tok[i]) {
                if (attempt == 4)
                    fprintf(stderr, "cim-bench: user %" PRIu64 ": HTTP %d %s\n", G.uid[i], st,
                            resp ? resp : "");
                usleep(100000);
            }
            free(resp);
        }
        if (!G.tok[i])
            atomic_fetch_add(&prov_failed, 1);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void provision(void)
{
    G.uid = calloc((size_t) G.n, sizeof(uint64_t));
    G.tok = calloc((size_t) G.n, sizeof(char *));
    if (!G.uid || !G.tok)
        die("out of memory");
    for (int i = 0; i < G.n; i++)
        G.uid[i] = O.uid_base + (uint64_t) i;
    uint64_t t0 = now_ns();
    int nt = O.api_conc < G.n ? O.api_conc : G.n;
    pthread_t th[256];
    if (nt > 256)
        nt = 256;
    for (int i = 0; i < nt; i++)
        pthread_create(&th[i], NULL, prov_thread, NULL);
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    double s = (double) (now_ns() - t0) / 1e9;
    printf("provisioned %d users (%d created, %d existing, %d failed) in %.2f s = %.0f/s\n", G.n,
           prov_created, prov_existing, prov_failed, s, s > 0 ? G.n / s : 0);
    fflush(stdout);
    if (prov_failed)
        die("%d users could not be provisioned (is the API at %s:%d up, is the key right?)",
            (int) prov_failed, inet_ntoa(O.api.sin_addr), ntohs(O.api.sin_port));
}

static void create_group(void)
{
    size_t cap = (size_t) G.n * 24 + 256;
    char *b = malloc(cap);
    if (!b)
        die("out of memory");
    size_t n = (size_t) snprintf(b, cap,
                                 "{\"owner_id\":%" PRIu64 ",\"group_name\":\"bench-%08x\","
                                 "\"member_ids\":[",
                                 G.uid[0], G.run);
    for (int i = 1; i < G.n; i++)
        n += (size_t) snprintf(b + n, cap - n, "%s%" PRIu64, i > 1 ? "," : "", G.uid[i]);
    snprintf(b + n, cap - n, "]}");
    int fd = -1;
    char *resp = NULL;
    uint64_t t0 = now_ns();
    int st = http_do(&fd, "POST", "/api/v1/groups", b, &resp);
    char *gid = resp ? json_field_str(resp, "group_id") : NULL;
    if (st != 200 || !gid)
        die("group create: HTTP %d %s", st, resp ? resp : "");
    G.group_id = strtoull(gid, NULL, 10);
    printf("group %" PRIu64 " created with %d members in %.2f s\n", G.group_id, G.n,
           (double) (now_ns() - t0) / 1e9);
    fflush(stdout);
    free(gid);
    free(resp);
    free(b);
    if (fd >= 0)
        close(fd);
}

/* ---------------------------------------------------------------- server processes (/proc) */

#define MAX_SRV 64
static struct {
    int pid;
    char name[32];
    long rss0, rss1, rss_end; /* kB */
    unsigned long long cpu0, cpu1;
} S[MAX_SRV];
static int nsrv;

static long proc_rss_kb(int pid)
{
    char p[64], line[256];
    snprintf(p, sizeof(p), "/proc/%d/status", pid);
    FILE *f = fopen(p, "r");
    long v = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = atol(line + 6);
    fclose(f);
    return v;
}

static unsigned long long proc_cpu_ticks(int pid)
{
    char p[64], buf[1024];
    snprintf(p, sizeof(p), "/proc/%d/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (s && sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
        return ut + st;
    return 0;
}

static void add_srv(int pid)
{
    char p[64], name[32] = "";
    for (int i = 0; i < nsrv; i++)
        if (S[i].pid == pid)
            return;
    snprintf(p, sizeof(p), "/proc/%d/comm", pid);
    FILE *f = fopen(p, "r");
    if (!f || nsrv >= MAX_SRV) {
        if (f)
            fclose(f);
        return;
    }
    if (fgets(name, sizeof(name), f))
        name[strcspn(name, "\n")] = '\0';
    fclose(f);
    S[nsrv].pid = pid;
    snprintf(S[nsrv].name, sizeof(S[nsrv].name), "%s", name);
    nsrv++;
}

static void find_servers(void)
{
    if (O.pids) {
        char *d = strdup(O.pids), *save = NULL;
        for (char *t = strtok_r(d, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (atoi(t) > 0)
                add_srv(atoi(t));
        free(d);
    }
    if (O.run_dir) {
        for (int k = 0; k < 2; k++) {
            char pat[512];
            glob_t g;
            snprintf(pat, sizeof(pat), "%s/%s", O.run_dir, k ? "*/*.pid" : "*.pid");
            if (glob(pat, 0, NULL, &g) != 0)
                continue;
            for (size_t i = 0; i < g.gl_pathc; i++) {
                FILE *f = fopen(g.gl_pathv[i], "r");
                int pid = 0;
                if (f) {
                    if (fscanf(f, "%d", &pid) != 1)
                        pid = 0;
                    fclose(f);
                }
                if (pid > 0 && kill(pid, 0) == 0)
                    add_srv(pid);
            }
            globfree(&g);
        }
    }
}

static void sample(int which)
{
    for (int i = 0; i < nsrv; i++) {
        long r = proc_rss_kb(S[i].pid);
        unsigned long long c = proc_cpu_ticks(S[i].pid);
        if (which == 0) {
            S[i].rss0 = r;
            S[i].cpu0 = c;
        } else if (which == 1) {
            S[i].rss1 = r;
            S[i].cpu1 = c;
        } else {
            S[i].rss_end = r;
        }
    }
}

static long rss_sum(const char *name, int which)
{
    long s = 0;
    for (int i = 0; i < nsrv; i++)
        if (strcmp(S[i].name, name) == 0)
            s += which == 0 ? S[i].rss0 : which == 1 ? S[i].rss1 : S[i].rss_end;
    return s;
}

/* ---------------------------------------------------------------- parent */

static struct {
    int up[MAX_PROCS], down[MAX_PROCS];
    pid_t pid[MAX_PROCS];
    ctr_t last[MAX_PROCS];
    int phase_done[MAX_PROCS];
    int alive[MAX_PROCS];
    uint64_t t_start;
} P;

static ctr_t total(void)
{
    ctr_t t;
    memset(&t, 0, sizeof(t));
    for (int i = 0; i < O.procs; i++)
        ctr_sum(&t, &P.last[i]);
    return t;
}

static void progress(const char *what)
{
    static ctr_t prev;
    static uint64_t tprev;
    ctr_t t = total();
    uint64_t now = now_ns();
    double dt = tprev ? (double) (now - tprev) / 1e9 : 1;
    if (O.sc == SC_HOSTILE) {
        printf("[%6.1fs] %-8s hostile open %" PRId64 " | opened %" PRId64 " fail %" PRId64
               " | closed by the gate %" PRId64 " | reopened %" PRId64 " | bytes %" PRId64 "\n",
               (double) (now - P.t_start) / 1e9, what, t.h_open, t.conns_ok, t.conn_fail, t.closed,
               t.h_reconn, t.h_bytes);
        fflush(stdout);
        tprev = now;
        return;
    }
    printf("[%6.1fs] %-8s conns %" PRId64 " fail %" PRId64 " | sent %" PRId64 " acked %" PRId64
           " (%.0f/s) inflight %" PRId64 " | delivered %" PRId64 " (%.0f/s) dup %" PRId64
           " | sync %" PRId64 " | closed %" PRId64 "\n",
           (double) (now - P.t_start) / 1e9, what, t.conns_ok, t.conn_fail + t.login_fail, t.sent,
           t.acked, (double) (t.acked - prev.acked) / dt, t.inflight, t.delivered,
           (double) (t.delivered - prev.delivered) / dt, t.dup, t.sync_entries, t.closed);
    fflush(stdout);
    prev = t;
    tprev = now;
}

/* read whatever records are ready (up to timeout_ms) */
static void pump_records(int timeout_ms)
{
    struct pollfd pf[MAX_PROCS];
    int map[MAX_PROCS], n = 0;
    for (int i = 0; i < O.procs; i++)
        if (P.alive[i]) {
            pf[n].fd = P.up[i];
            pf[n].events = POLLIN;
            map[n++] = i;
        }
    if (!n) {
        usleep((useconds_t) timeout_ms * 1000);
        return;
    }
    if (poll(pf, (nfds_t) n, timeout_ms) <= 0)
        return;
    for (int k = 0; k < n; k++) {
        if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        int i = map[k];
        rec_t r;
        if (read_full(P.up[i], &r, sizeof(r)) < 0) {
            fprintf(stderr, "cim-bench: worker %d died\n", i);
            P.alive[i] = 0;
            continue;
        }
        P.last[i] = r.c;
        if (r.type == R_PHASE_DONE)
            P.phase_done[i] = r.phase;
    }
}

static void go(int phase)
{
    char ch = (char) ('0' + phase);
    for (int i = 0; i < O.procs; i++) {
        P.phase_done[i] = -1;
        if (P.alive[i] && write_full(P.down[i], &ch, 1) < 0)
            P.alive[i] = 0;
    }
}

/* wait until every worker finished phase (or the deadline); progress each second */
static uint64_t wait_phase(int phase, const char *what, double max_s)
{
    uint64_t t0 = now_ns(), next = t0 + 1000000000ULL;
    for (;;) {
        int all = 1;
        for (int i = 0; i < O.procs; i++)
            if (P.alive[i] && P.phase_done[i] != phase)
                all = 0;
        if (all)
            break;
        uint64_t now = now_ns();
        if ((double) (now - t0) / 1e9 > max_s) {
            fprintf(stderr, "cim-bench: phase %s not finished after %.0f s, going on\n", what,
                    max_s);
            break;
        }
        if (now >= next) {
            progress(what);
            next += 1000000000ULL;
        }
        pump_records(100);
    }
    return now_ns();
}

/* after the load: until the expected deliveries arrived, nothing moved for 1.5 s, or drain */
static void wait_deliveries(int64_t per_msg)
{
    uint64_t t0 = now_ns(), next = t0 + 1000000000ULL, tchange = t0;
    int64_t lastd = -1;
    for (;;) {
        pump_records(100);
        ctr_t t = total();
        uint64_t now = now_ns();
        if (t.delivered + t.dup != lastd) {
            lastd = t.delivered + t.dup;
            tchange = now;
        }
        if (t.delivered >= t.acked * per_msg)
            break;
        if (now - tchange > 1500000000ULL || now - t0 > (uint64_t) O.drain * 1000000000ULL)
            break;
        if (now >= next) {
            progress("drain");
            next += 1000000000ULL;
        }
    }
}

typedef struct {
    ctr_t c;
    hist_t h_ack, h_del, h_login, h_ttl;
    vec_t acked, deliv;
    uint32_t *gcnt;
    uint64_t *gmax;
    size_t gn;
} final_t;

static void collect(final_t *F)
{
    memset(F, 0, sizeof(*F));
    for (int i = 0; i < O.procs; i++) {
        if (!P.alive[i])
            continue;
        if (write_full(P.down[i], "Q", 1) < 0) {
            P.alive[i] = 0;
            continue;
        }
        rec_t r;
        /* skip progress records still in the pipe */
        do {
            if (read_full(P.up[i], &r, sizeof(r)) < 0) {
                P.alive[i] = 0;
                break;
            }
        } while (r.type != R_FINAL);
        if (!P.alive[i])
            continue;
        P.last[i] = r.c;
        hist_t h;
        read_full(P.up[i], &h, sizeof(h));
        h_merge(&F->h_ack, &h);
        read_full(P.up[i], &h, sizeof(h));
        h_merge(&F->h_del, &h);
        read_full(P.up[i], &h, sizeof(h));
        h_merge(&F->h_login, &h);
        for (int k = 0; k < 2; k++) {
            vec_t *v = k ? &F->deliv : &F->acked;
            uint64_t n = 0;
            read_full(P.up[i], &n, 8);
            uint64_t *tmp = malloc(n * 8 + 8);
            if (!tmp)
                die("out of memory");
            read_full(P.up[i], tmp, n * 8);
            for (uint64_t j = 0; j < n; j++)
                vec_push(v, tmp[j]);
            free(tmp);
        }
        uint64_t gn = 0;
        read_full(P.up[i], &gn, 8);
        uint32_t *cnt = malloc(gn * 4 + 4);
        uint64_t *mx = malloc(gn * 8 + 8);
        if (!cnt || !mx)
            die("out of memory");
        read_full(P.up[i], cnt, gn * 4);
        read_full(P.up[i], mx, gn * 8);
        if (gn > F->gn) {
            F->gcnt = realloc(F->gcnt, gn * 4);
            F->gmax = realloc(F->gmax, gn * 8);
            if (!F->gcnt || !F->gmax)
                die("out of memory");
            memset(F->gcnt + F->gn, 0, (gn - F->gn) * 4);
            memset(F->gmax + F->gn, 0, (gn - F->gn) * 8);
            F->gn = gn;
        }
        for (uint64_t j = 0; j < gn; j++) {
            F->gcnt[j] += cnt[j];
            if (mx[j] > F->gmax[j])
                F->gmax[j] = mx[j];
        }
        free(cnt);
        free(mx);
    }
    F->c = total();
    for (int i = 0; i < O.procs; i++)
        if (P.pid[i] > 0)
            waitpid(P.pid[i], NULL, 0);
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: cim-bench --scenario idle|p2p|offline|group|login|hostile [options]\n"
        "  --gates H:P,H:P     gates (127.0.0.0/8 only; default 127.0.0.1:8000,127.0.0.1:8010)\n"
        "  --users N           users/connections (group: --members) [100]\n"
        "  --duration S        load (p2p, group), hold (idle), send cap (offline) [10]\n"
        "  --rate R            msgs/s in total, open loop (0 = closed loop) [0]\n"
        "  --inflight K        closed loop: unacked messages per sender [4]\n"
        "  --members M         group size [100]\n"
        "  --msgs N            offline: messages to store [20000]\n"
        "  --size B            msg_data bytes [64]\n"
        "  --procs P           worker processes [1]\n"
        "  --src-ips A-B       client source addresses, e.g. 127.0.0.1-8\n"
        "  --conc C            connects+logins in flight per process [500]\n"
        "  --heartbeat S       heartbeat a connection idle for S seconds [20]\n"
        "  --drain S           wait at most S s for acks/deliveries after the load [5]\n"
        "  --api URL           business API [http://127.0.0.1:8080]\n"
        "  --api-key-file F    [run/api_key]   --api-key KEY\n"
        "  --api-conc N        provisioning connections [16]\n"
        "  --uid-base B        user i is B+i [700000000]\n"
        "  --pids a,b,c        server pids to sample   --run-dir DIR  pids from DIR/*.pid\n"
        "  --login-timeout S   cap for login phases [120]\n"
        "  --drip-ms MS        hostile: a slowloris byte / garbage burst every MS [1000]\n"
        "scenario hostile: --users connections that never log in (slowloris, silent, garbage,\n"
        "  wrong token; reopened when closed), held --duration s; run it next to a p2p run.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"scenario", 1, 0, 's'},
                                       {"gates", 1, 0, 'g'},
                                       {"users", 1, 0, 'n'},
                                       {"duration", 1, 0, 'd'},
                                       {"rate", 1, 0, 'r'},
                                       {"inflight", 1, 0, 'k'},
                                       {"members", 1, 0, 'm'},
                                       {"procs", 1, 0, 'p'},
                                       {"src-ips", 1, 0, 'S'},
                                       {"api", 1, 0, 'a'},
                                       {"api-key-file", 1, 0, 'K'},
                                       {"api-key", 1, 0, 'Y'},
                                       {"uid-base", 1, 0, 'u'},
                                       {"msgs", 1, 0, 'M'},
                                       {"size", 1, 0, 'z'},
                                       {"conc", 1, 0, 'c'},
                                       {"heartbeat", 1, 0, 'H'},
                                       {"drain", 1, 0, 'D'},
                                       {"api-conc", 1, 0, 'A'},
                                       {"pids", 1, 0, 'P'},
                                       {"run-dir", 1, 0, 'R'},
                                       {"login-timeout", 1, 0, 'L'},
                                       {"help", 0, 0, 'h'},
                                       {"drip-ms", 1, 0, 'j'},
                                       {0, 0, 0, 0}};
    const char *gates = "127.0.0.1:8000,127.0.0.1:8010", *api = "http://127.0.0.1:8080";
    const char *keyfile = NULL, *key = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (opt) {
        case 's':
            O.sc = -1;
            for (int i = 0; i < SC_N; i++)
                if (strcmp(optarg, sc_names[i]) == 0)
                    O.sc = i;
            if (O.sc < 0)
                die("unknown scenario '%s'", optarg);
            break;
        case 'g':
            gates = optarg;
            break;
        case 'n':
            O.users = atoi(optarg);
            break;
        case 'd':
            O.duration = atoi(optarg);
            break;
        case 'r':
            O.rate = atoi(optarg);
            break;
        case 'k':
            O.inflight = atoi(optarg);
            break;
        case 'm':
            O.members = atoi(optarg);
            break;
        case 'p':
            O.procs = atoi(optarg);
            break;
        case 'S':
            parse_src(optarg);
            break;
        case 'a':
            api = optarg;
            break;
        case 'K':
            keyfile = optarg;
            break;
        case 'Y':
            key = optarg;
            break;
        case 'u':
            O.uid_base = strtoull(optarg, NULL, 10);
            break;
        case 'M':
            O.msgs = atoi(optarg);
            break;
        case 'z':
            O.size = atoi(optarg);
            break;
        case 'c':
            O.conc = atoi(optarg);
            break;
        case 'H':
            O.heartbeat = atoi(optarg);
            break;
        case 'D':
            O.drain = atoi(optarg);
            break;
        case 'A':
            O.api_conc = atoi(optarg);
            break;
        case 'P':
            O.pids = optarg;
            break;
        case 'R':
            O.run_dir = optarg;
            break;
        case 'L':
            O.login_timeout = atoi(optarg);
            break;
        case 'j':
            O.drip_ms = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (optind < argc)
        usage();
    /* bounds: every run is bounded in time and count */
    if (O.users < 2 || O.users > 1000000 || O.members < 2 || O.members > 100000)
        die("--users / --members: 2..1000000 / 2..100000");
    if (O.duration < 0 || O.duration > 3600 || O.rate < 0 || O.rate > 10000000 || O.inflight < 1 ||
        O.inflight > 10000 || O.msgs < 1 || O.msgs > 50000000 || O.size < 1 || O.size > 16000 ||
        O.conc < 1 || O.heartbeat < 1 || O.drain < 0 || O.drain > 600 || O.api_conc < 1 ||
        O.login_timeout < 1 || O.drip_ms < 1)
        die("an option is out of range (see --help)");
    if (O.procs < 1 || O.procs > MAX_PROCS)
        die("--procs: 1..%d", MAX_PROCS);
    char *gd = strdup(gates), *save = NULL;
    for (char *t = strtok_r(gd, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (O.ngates == MAX_GATES)
            die("too many gates");
        parse_hostport(t, &O.gate[O.ngates++], "--gates");
    }
    free(gd);
    snprintf(O.gates_s, sizeof(O.gates_s), "%s", gates);
    if (!O.ngates)
        die("--gates: none given");
    if (strncmp(api, "http://", 7) == 0)
        api += 7;
    char apih[128];
    snprintf(apih, sizeof(apih), "%s", api);
    apih[strcspn(apih, "/")] = '\0';
    parse_hostport(apih, &O.api, "--api");
    if (O.sc == SC_HOSTILE) {
        /* no users, no API */
    } else if (!key) {
        FILE *f = fopen(keyfile ? keyfile : "run/api_key", "r");
        if (!f || !fgets(O.api_key, sizeof(O.api_key), f))
            die("cannot read the API key from %s (--api-key-file)",
                keyfile ? keyfile : "run/api_key");
        fclose(f);
        O.api_key[strcspn(O.api_key, "\r\n")] = '\0';
    } else {
        snprintf(O.api_key, sizeof(O.api_key), "%s", key);
    }
    G.n = O.sc == SC_GROUP ? O.members : O.users;
    if (O.sc == SC_OFFLINE && G.n < 2)
        die("offline: at least 2 users");
    if (O.procs > G.n)
        O.procs = G.n;
    if (G.n / O.procs > 19800)
        fprintf(stderr,
                "cim-bench: warning: %d connections per process; the open-files limit is "
                "about 20,000: use more --procs\n",
                G.n / O.procs);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    G.run = (uint32_t) (mix64(now_ns() ^ ((uint64_t) getpid() << 32)) & 0xffffffffu);
    printf("cim-bench %s: users %d, gates %s, procs %d, run %08x, uid %" PRIu64 "..%" PRIu64 "\n",
           sc_names[O.sc], G.n, O.gates_s, O.procs, G.run, O.uid_base,
           O.uid_base + (uint64_t) G.n - 1);

    if (O.sc != SC_HOSTILE)
        provision();
    if (O.sc == SC_GROUP)
        create_group();
    find_servers();

    P.t_start = now_ns();
    for (int i = 0; i < O.procs; i++) {
        int up[2], down[2];
        if (pipe(up) != 0 || pipe(down) != 0)
            die("pipe: %s", strerror(errno));
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            close(up[0]);
            close(down[1]);
            for (int j = 0; j < i; j++) {
                close(P.up[j]);
                close(P.down[j]);
            }
            worker_main(i, up[1], down[0]);
        }
        close(up[1]);
        close(down[0]);
        P.up[i] = up[0];
        P.down[i] = down[1];
        P.pid[i] = pid;
        P.alive[i] = 1;
    }

    double lt = O.login_timeout;
    double load_cap = O.duration + O.drain + 30;
    uint64_t t_go = 0, t_done = 0, t_go2 = 0, t_done2 = 0;
    int64_t per_msg = O.sc == SC_GROUP ? G.n - 1 : 1;
    switch (O.sc) {
    case SC_IDLE:
    case SC_HOSTILE:
        go(0);
        wait_phase(0, "setup", 10);
        sample(0);
        go(1);
        t_go = now_ns();
        t_done = wait_phase(1, "connect", lt);
        progress("connect");
        sleep(2);
        sample(1);
        go(2);
        wait_phase(2, "hold", load_cap);
        break;
    case SC_LOGIN:
        go(0);
        wait_phase(0, "setup", 10);
        sample(0);
        go(1);
        t_go = now_ns();
        t_done = wait_phase(1, "login", lt);
        sample(1);
        break;
    case SC_P2P:
    case SC_GROUP:
        go(0);
        wait_phase(0, "login", lt);
        progress("login");
        sample(0);
        go(1);
        t_go = now_ns();
        wait_phase(1, "load", load_cap);
        wait_deliveries(per_msg);
        t_done = now_ns();
        sample(1);
        break;
    case SC_OFFLINE:
        go(0);
        wait_phase(0, "prepare", lt);
        progress("prepare");
        sleep(1); /* let the gates drop the receivers' routes */
        sample(0);
        go(1);
        t_go = now_ns();
        t_done = wait_phase(1, "store", load_cap);
        progress("store");
        go(2);
        t_go2 = now_ns();
        t_done2 = wait_phase(2, "sync", lt);
        progress("sync");
        sample(1);
        break;
    }
    if (O.sc == SC_IDLE || O.sc == SC_HOSTILE)
        sample(2);
    final_t F;
    collect(&F);
    ctr_t *c = &F.c;

    /* lost / dup: acked messages against the recipients' deliveries */
    int64_t lost = 0, incomplete = 0, unacked_delivered = 0;
    if (O.sc == SC_GROUP) {
        for (size_t i = 0; i < F.acked.n; i++) {
            uint32_t q = (uint32_t) F.acked.v[i];
            uint32_t got = q < F.gn ? F.gcnt[q] : 0;
            if (got < (uint32_t) per_msg) {
                lost += per_msg - got;
                incomplete++;
            } else {
                h_add(&F.h_ttl, F.gmax[q]);
            }
        }
    } else {
        if (F.deliv.n)
            qsort(F.deliv.v, F.deliv.n, 8, cmp_u64);
        if (F.acked.n)
            qsort(F.acked.v, F.acked.n, 8, cmp_u64);
        for (size_t i = 0; i < F.acked.n; i++)
            if (!F.deliv.n || !bsearch(&F.acked.v[i], F.deliv.v, F.deliv.n, 8, cmp_u64))
                lost++;
        for (size_t i = 0; i < F.deliv.n; i++)
            if (!F.acked.n || !bsearch(&F.deliv.v[i], F.acked.v, F.acked.n, 8, cmp_u64))
                unacked_delivered++;
    }

    double win_ack =
        c->t_last_ack > c->t_first_send ? (double) (c->t_last_ack - c->t_first_send) / 1e9 : 0;
    double win_del =
        c->t_last_deliv > c->t_first_send ? (double) (c->t_last_deliv - c->t_first_send) / 1e9 : 0;
    double acked_ps = win_ack > 0 ? (double) c->acked / win_ack : 0;
    double deliv_ps = win_del > 0 ? (double) c->delivered / win_del : 0;
    double cpu_win = t_done > t_go ? (double) (t_done - t_go) / 1e9 : 0;
    if (O.sc == SC_OFFLINE)
        cpu_win = (double) (t_done2 - t_go) / 1e9;
    long tck = sysconf(_SC_CLK_TCK);

    static char out[65536];
    size_t n = 0;
#define J(...) n += (size_t) snprintf(out + n, sizeof(out) - n, __VA_ARGS__)
    J("{\"scenario\":\"%s\",\"users\":%d,\"procs\":%d,\"gates\":%d,\"src_ips\":%d,", sc_names[O.sc],
      G.n, O.procs, O.ngates, O.nsrc ? O.nsrc : 1);
    J("\"duration_s\":%d,\"rate\":%d,\"inflight\":%d,\"size\":%d,\"run\":\"%08x\",", O.duration,
      O.rate, O.inflight, O.size, G.run);
    J("\"uid_first\":%" PRIu64 ",\"uid_last\":%" PRIu64 ",", O.uid_base,
      O.uid_base + (uint64_t) G.n - 1);
    J("\"conns_ok\":%" PRId64 ",\"conn_fail\":%" PRId64 ",\"login_fail\":%" PRId64
      ",\"closed\":%" PRId64 ",\"kicked\":%" PRId64 ",\"proto_errors\":%" PRId64 ",",
      c->conns_ok, c->conn_fail, c->login_fail, c->closed, c->kicked, c->proto_err);
    J("\"sent\":%" PRId64 ",\"acked\":%" PRId64 ",\"ack_errors\":%" PRId64
      ",\"rate_limited\":%" PRId64 ",\"refused\":%" PRId64 ",\"retried\":%" PRId64 ",",
      c->sent, c->acked, c->ack_err, c->rate_limited, c->refused, c->retried);
    J("\"delivered\":%" PRId64 ",\"expected\":%" PRId64 ",\"lost\":%" PRId64 ",\"dup\":%" PRId64
      ",\"unacked_delivered\":%" PRId64 ",\"push_sync_overlap\":%" PRId64 ",\"foreign\":%" PRId64
      ",\"confirms\":%" PRId64 ",",
      c->delivered, c->acked * per_msg, lost, c->dup, unacked_delivered, c->overlap, c->foreign,
      c->confirms);
    J("\"acked_per_sec\":%.1f,\"delivered_per_sec\":%.1f,", acked_ps, deliv_ps);
    J("\"ack_ms\":");
    n += (size_t) h_json(out + n, sizeof(out) - n, &F.h_ack);
    J(",\"deliver_ms\":");
    n += (size_t) h_json(out + n, sizeof(out) - n, &F.h_del);
    J(",\"login_ms\":");
    n += (size_t) h_json(out + n, sizeof(out) - n, &F.h_login);
    if (O.sc == SC_LOGIN || O.sc == SC_IDLE) {
        double w = c->t_last_login > c->t_first_conn
                       ? (double) (c->t_last_login - c->t_first_conn) / 1e9
                       : 0;
        J(",\"logins_per_sec\":%.1f,\"login_window_s\":%.3f", w > 0 ? c->conns_ok / w : 0, w);
    }
    if (O.sc == SC_HOSTILE)
        J(",\"hostile_open_end\":%" PRId64 ",\"reconnects\":%" PRId64 ",\"hostile_bytes\":%" PRId64
          ",\"drip_ms\":%d",
          c->h_open, c->h_reconn, c->h_bytes, O.drip_ms);
    if (O.sc == SC_GROUP) {
        J(",\"members\":%d,\"group_id\":%" PRIu64 ",\"group_msgs\":%zu,\"incomplete\":%" PRId64
          ",\"member_deliveries_per_sec\":%.1f,\"time_to_last_ms\":",
          G.n, G.group_id, F.acked.n, incomplete, deliv_ps);
        n += (size_t) h_json(out + n, sizeof(out) - n, &F.h_ttl);
    }
    if (O.sc == SC_OFFLINE) {
        double st = (double) (c->t_last_ack - t_go) / 1e9, sy = (double) (t_done2 - t_go2) / 1e9;
        (void) t_done;
        J(",\"msgs\":%d,\"stored_per_sec\":%.1f,\"store_s\":%.3f,\"sync_entries\":%" PRId64
          ",\"sync_pages\":%" PRId64 ",\"sync_errors\":%" PRId64
          ",\"sync_per_sec\":%.1f,\"sync_s\":%.3f",
          O.msgs, st > 0 ? c->acked / st : 0, st, c->sync_entries, c->sync_pages, c->sync_err,
          sy > 0 ? (double) c->delivered / sy : 0, sy);
    }
    /* servers */
    long g0 = rss_sum("msg_gate", 0), g1 = rss_sum("msg_gate", 1), l1 = rss_sum("msg_logic", 1);
    double srv_cpu = 0, db_cpu = 0;
    J(",\"window_s\":%.3f,\"servers\":[", cpu_win);
    for (int i = 0; i < nsrv; i++) {
        double pct =
            cpu_win > 0 ? (double) (S[i].cpu1 - S[i].cpu0) / (double) tck / cpu_win * 100 : 0;
        if (strcmp(S[i].name, "msg_gate") == 0 || strcmp(S[i].name, "msg_logic") == 0)
            srv_cpu += pct;
        else
            db_cpu += pct;
        J("%s{\"name\":\"%s\",\"pid\":%d,\"rss_kb\":%ld,\"rss_before_kb\":%ld,\"cpu_pct\":%.1f}",
          i ? "," : "", S[i].name, S[i].pid, S[i].rss1, S[i].rss0, pct);
    }
    J("],\"gate_rss_kb\":%ld,\"logic_rss_kb\":%ld,\"srv_cpu_pct\":%.1f,\"db_cpu_pct\":%.1f", g1, l1,
      srv_cpu, db_cpu);
    if (O.sc == SC_IDLE)
        J(",\"gate_rss_before_kb\":%ld,\"gate_rss_after_kb\":%ld,\"gate_rss_end_kb\":%ld,"
          "\"bytes_per_conn\":%.0f",
          g0, g1, rss_sum("msg_gate", 2),
          c->conns_ok > 0 ? (double) (g1 - g0) * 1024.0 / (double) c->conns_ok : 0);
    J("}");
#undef J
    printf("RESULT %s\n", out);
    free(F.acked.v);
    free(F.deliv.v);
    free(F.gcnt);
    free(F.gmax);
    return 0;
}
