/* net_fuzz: fuzz a running cim stack over the network (not libFuzzer).
 *
 *   net_fuzz tcp SECONDS    register and log in users on CIM_GATE1/CIM_GATE2, then send mutated
 *                           packets over many connections (random client commands, random field
 *                           values, bit flips, truncation, stray fields, huge lengths, broken
 *                           headers), reconnecting and logging in again whenever a gate closes
 *   net_fuzz http SECONDS   mutated requests to the HTTP API on CIM_API (methods, paths, keys,
 *                           headers, JSON bodies: deep nesting, huge numbers, wrong types,
 *                           invalid UTF-8, 2 MB bodies, chunked, short or lying bodies)
 *   net_fuzz probe          the non-crash findings of this fuzzer, replayed (exit 3: a bug is
 *                           still there)
 *   net_fuzz check          a new user registers, logs in and sends a message to another new
 *                           user, who receives it: the stack still works
 * Environment: CIM_GATE1, CIM_GATE2, CIM_API, CIM_API_KEY; FUZZ_SEED (default: time),
 * FUZZ_CONNS (16), FUZZ_RATE (packets or requests per second, 1500 / 150).
 * Prints what it did ("execs N ..."); exits 1 when it could not do its job (setup failed,
 * check failed). Whether the servers survived is for the caller (pids, /healthz, logs). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <protobuf-c/protobuf-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "im_cmd.h"
#include "im_codec.h"
#include "proto/cim.pb-c.h"

#include "fuzz_desc.h"

#define MAX_CONNS 64
#define NUSERS    6
#define PWD       "fuzzpass123"

/* ---------------------------------------------------------------- utilities */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static unsigned rn(unsigned n) /* 0 .. n-1 */
{
    return n ? (unsigned) (rnd() % n) : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "net_fuzz: ");
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    exit(1);
}

static void wp_forget(int fd);

static int tcp_connect(const char *hostport)
{
    char host[128];
    snprintf(host, sizeof(host), "%s", hostport);
    char *colon = strrchr(host, ':');
    if (!colon)
        return -1;
    *colon = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    wp_forget(fd);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t) w;
    }
    return 0;
}

/* ---------------------------------------------------------------- packets */

typedef struct {
    int fd;
    int user; /* index into users, -1: never logs in */
    int ct;   /* client type */
    uint8_t rbuf[1 << 17];
    size_t rlen;
} conn_t;

typedef struct {
    char name[40];
    uint64_t id;
} user_t;

static user_t users[NUSERS];
static const char *gates[2];
static uint64_t st_sent, st_bytes, st_rsp, st_reconnects, st_closed, st_header_bad, st_mutated,
    st_login_fail;
static uint64_t cmd_sent[0x700];

static int send_packet(int fd, uint16_t cmd, uint16_t seq, const uint8_t *body, size_t len)
{
    uint8_t *p = malloc(IM_HEADER_LEN + len);
    im_codec_write_header(p, cmd, seq, len);
    if (len)
        memcpy(p + IM_HEADER_LEN, body, len);
    int rc = send_all(fd, p, IM_HEADER_LEN + len);
    free(p);
    return rc;
}

static int send_msg(int fd, uint16_t cmd, uint16_t seq, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n ? n : 1);
    protobuf_c_message_pack(m, b);
    int rc = send_packet(fd, cmd, seq, b, n);
    free(b);
    return rc;
}

typedef struct {
    int fd;
    size_t len;
    uint8_t buf[1 << 21];
} wp_pend_t;
static wp_pend_t wp_pend[4]; /* wait_packet's buffers (fd 0 never is a socket here) */

static void wp_forget(int fd)
{
    for (int k = 0; k < 4; k++)
        if (wp_pend[k].fd == fd)
            wp_pend[k].fd = -1, wp_pend[k].len = 0;
}

/* wait up to `secs` for a packet with command `want`; returns its body (malloc'd) or NULL.
 * Bytes after it stay buffered for the next call on the same fd (a few fds at a time). */
static uint8_t *wait_packet(int fd, uint16_t want, double secs, size_t *blen)
{
    wp_pend_t *pend = wp_pend;
    static unsigned next;
    unsigned k;
    for (k = 0; k < 4 && pend[k].fd != fd; k++)
        ;
    if (k == 4) {
        k = next++ % 4;
        pend[k].fd = fd;
        pend[k].len = 0;
    }
    uint8_t *buf = pend[k].buf;
    size_t *len = &pend[k].len;
    double end = now_s() + secs;
    for (;;) {
        for (;;) {
            im_packet_t p;
            size_t used;
            int rc = im_codec_decode(buf, *len, IM_MAX_PACKET_S2C, &p, &used);
            if (rc != IM_OK) {
                if (rc < 0) {
                    *len = 0;
                    return NULL;
                }
                break;
            }
            uint8_t *out = NULL;
            if (p.hdr.cmd == want) {
                out = malloc(p.body_len ? p.body_len : 1);
                memcpy(out, p.body, p.body_len);
                *blen = p.body_len;
            }
            memmove(buf, buf + used, *len - used);
            *len -= used;
            if (out)
                return out;
        }
        if (now_s() >= end)
            return NULL;
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        ssize_t r = recv(fd, buf + *len, sizeof(pend[k].buf) - *len, 0);
        if (r <= 0) {
            pend[k].fd = -1;
            *len = 0;
            return NULL;
        }
        *len += (size_t) r;
    }
}

static int do_register(const char *gate, const char *name)
{
    int fd = tcp_connect(gate);
    if (fd < 0)
        return -1;
    CIM__Def__CIMRegisterReq rq = CIM__DEF__CIMREGISTER_REQ__INIT;
    rq.user_name = (char *) name;
    rq.user_pwd = (char *) PWD;
    rq.nick_name = (char *) name;
    send_msg(fd, IM_CMD_REGISTER_REQ, 1, &rq.base);
    size_t bl;
    uint8_t *b = wait_packet(fd, IM_CMD_REGISTER_RSP, 5, &bl);
    close(fd);
    if (!b)
        return -1;
    CIM__Def__CIMRegisterRsp *rsp = cim__def__cimregister_rsp__unpack(NULL, bl, b);
    free(b);
    int rc = rsp && ((int) rsp->result_code == IM_ERR_SUCCESS ||
                     (int) rsp->result_code == IM_ERR_USER_ALREADY_EXIST)
                 ? 0
                 : -1;
    if (rsp)
        cim__def__cimregister_rsp__free_unpacked(rsp, NULL);
    return rc;
}

/* connect and log in; returns the fd, *uid set */
static int do_login(const char *gate, const char *name, int ct, uint64_t *uid)
{
    int fd = tcp_connect(gate);
    if (fd < 0)
        return -1;
    CIM__Def__CIMAuthReq rq = CIM__DEF__CIMAUTH_REQ__INIT;
    rq.user_name = (char *) name;
    rq.user_pwd = (char *) PWD;
    rq.client_type = (CIM__Def__CIMClientType) ct;
    rq.client_version = (char *) "net_fuzz";
    send_msg(fd, IM_CMD_AUTH_REQ, 1, &rq.base);
    size_t bl;
    uint8_t *b = wait_packet(fd, IM_CMD_AUTH_RSP, 5, &bl);
    if (!b) {
        close(fd);
        return -1;
    }
    CIM__Def__CIMAuthRsp *rsp = cim__def__cimauth_rsp__unpack(NULL, bl, b);
    free(b);
    int ok = rsp && (int) rsp->result_code == IM_ERR_SUCCESS && rsp->user_info;
    if (ok && uid)
        *uid = rsp->user_info->user_id;
    if (rsp)
        cim__def__cimauth_rsp__free_unpacked(rsp, NULL);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---------------------------------------------------------------- random messages */

/* a bump arena for the random messages, reset per packet */
static uint8_t arena[8 << 20];
static size_t arena_used;

static void *aalloc(size_t n)
{
    n = (n + 15) & ~(size_t) 15;
    if (arena_used + n > sizeof(arena))
        return NULL;
    void *p = arena + arena_used;
    arena_used += n;
    memset(p, 0, n);
    return p;
}

static uint64_t r_id(int me)
{
    switch (rn(10)) {
    case 0:
        return 0;
    case 1:
    case 2:
        return me >= 0 ? users[me].id : 0;
    case 3:
    case 4:
        return users[rn(NUSERS)].id;
    case 5:
        return 1 + rn(2000);
    case 6:
        return (uint64_t) 1 << 63;
    case 7:
        return UINT64_MAX - rn(3);
    case 8:
        return 9007199254740992ULL + rn(3);
    default:
        return rnd();
    }
}

static uint32_t r_u32(void)
{
    switch (rn(8)) {
    case 0:
        return 0;
    case 1:
        return 1;
    case 2:
        return 2;
    case 3:
        return rn(12);
    case 4:
        return 0xffffffffu;
    case 5:
        return 0x80000000u;
    case 6:
        return 100 + rn(1000);
    default:
        return (uint32_t) rnd();
    }
}

static char *r_str(void)
{
    size_t n;
    char *s;
    switch (rn(10)) {
    case 0:
        return (char *) "";
    case 1:
        return (char *) "abc";
    case 2: { /* decimal ids, some out of range */
        s = aalloc(32);
        snprintf(s, 32, "%llu", (unsigned long long) (rn(2) ? r_id(-1) : rn(100000)));
        return s;
    }
    case 3:
        return rn(2) ? (char *) "-1" : (char *) "99999999999999999999999";
    case 4: /* invalid UTF-8 */
        n = 1 + rn(64);
        s = aalloc(n + 1);
        for (size_t i = 0; i < n; i++)
            s[i] = (char) (0x80 + rn(0x7f));
        return s;
    case 5: /* long */
        n = rn(2) ? 64 + rn(3) : 100 + rn(20000);
        s = aalloc(n + 1);
        for (size_t i = 0; i < n; i++)
            s[i] = (char) ('a' + rn(26));
        return s;
    case 6:
        return rn(2) ? (char *) "'; DROP TABLE users; --" : (char *) "%s%n%x\\\"{}";
    default:
        n = rn(40);
        s = aalloc(n + 1);
        for (size_t i = 0; i < n; i++)
            s[i] = (char) (1 + rn(255));
        return s;
    }
}

static ProtobufCMessage *r_msg(const ProtobufCMessageDescriptor *d, int me, int depth)
{
    ProtobufCMessage *m = aalloc(d->sizeof_message);
    if (!m)
        return NULL;
    d->message_init(m);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (rn(8) == 0)
            continue; /* left at its default */
        char *member = (char *) m + f->offset;
        size_t count = 1, esz;
        switch (f->type) {
        case PROTOBUF_C_TYPE_STRING:
        case PROTOBUF_C_TYPE_MESSAGE:
            esz = sizeof(void *);
            break;
        case PROTOBUF_C_TYPE_BYTES:
            esz = sizeof(ProtobufCBinaryData);
            break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_DOUBLE:
            esz = 8;
            break;
        default:
            esz = 4;
        }
        char *base = member;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            unsigned pick = rn(20);
            count = pick < 14 ? rn(4) : pick < 18 ? 15 + rn(10) : pick < 19 ? 100 + rn(200) : 3000;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE && count > 50)
                count = 50;
            if (depth > 1 && f->type == PROTOBUF_C_TYPE_MESSAGE)
                count = 0;
            base = count ? aalloc(count * esz) : NULL;
            if (count && !base)
                count = 0;
            *(size_t *) ((char *) m + f->quantifier_offset) = count;
            *(void **) member = base;
        }
        for (size_t k = 0; k < count; k++) {
            char *slot = base + k * esz;
            switch (f->type) {
            case PROTOBUF_C_TYPE_STRING:
                *(char **) slot = r_str();
                break;
            case PROTOBUF_C_TYPE_BYTES: {
                ProtobufCBinaryData *bd = (ProtobufCBinaryData *) slot;
                unsigned pick = rn(10);
                size_t n = pick < 6   ? rn(100)
                           : pick < 9 ? 16 * 1024 - 2 + rn(5)
                                      : 40000 + rn(20000);
                bd->data = aalloc(n + 1);
                if (!bd->data)
                    n = 0;
                for (size_t j = 0; j < n; j++)
                    bd->data[j] = (uint8_t) rnd();
                if (n && rn(2)) /* a JSON-looking payload */
                    memcpy(bd->data, "{\"a\":", n < 5 ? n : 5);
                bd->len = n;
                break;
            }
            case PROTOBUF_C_TYPE_MESSAGE:
                if (depth < 3)
                    *(ProtobufCMessage **) slot =
                        r_msg((const ProtobufCMessageDescriptor *) f->descriptor, me, depth + 1);
                if (!*(ProtobufCMessage **) slot) /* repeated messages must not be NULL */
                    *(ProtobufCMessage **) slot =
                        r_msg((const ProtobufCMessageDescriptor *) f->descriptor, me, 99);
                break;
            case PROTOBUF_C_TYPE_BOOL:
                *(protobuf_c_boolean *) slot = (protobuf_c_boolean) rn(2);
                break;
            default:
                if (esz == 8)
                    *(uint64_t *) slot = r_id(me);
                else
                    *(uint32_t *) slot = r_u32();
            }
        }
    }
    return m;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t) v;
    return n;
}

/* mutate a packed body in place (buf has room for cap bytes); returns the new length */
static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
    int rounds = 1 + (int) rn(4);
    for (int r = 0; r < rounds; r++) {
        switch (rn(7)) {
        case 0: /* bit flips */
            for (unsigned k = 1 + rn(8); len && k; k--)
                buf[rn((unsigned) len)] ^= (uint8_t) (1u << rn(8));
            break;
        case 1: /* truncate */
            if (len)
                len = rn((unsigned) len);
            break;
        case 2: /* a random field: random tag, wire type and value */
            if (len + 32 < cap) {
                uint64_t tag = (uint64_t) rn(40) << 3 | rn(6);
                if (rn(4) == 0)
                    tag = rnd() & 0xffffffffffULL;
                size_t at = rn((unsigned) len + 1);
                uint8_t tmp[32];
                size_t t = put_varint(tmp, tag);
                t += put_varint(tmp + t, rn(2) ? rnd() : rn(300));
                memmove(buf + at + t, buf + at, len - at);
                memcpy(buf + at, tmp, t);
                len += t;
            }
            break;
        case 3: /* a length-delimited field claiming more than there is */
            if (len + 16 < cap) {
                uint8_t tmp[16];
                size_t t = put_varint(tmp, (uint64_t) (1 + rn(15)) << 3 | 2);
                t += put_varint(tmp + t, rn(2) ? 0xffffffffULL : 1000 + rn(100000));
                memcpy(buf + len, tmp, t);
                len += t;
            }
            break;
        case 4: /* random bytes over a slice */
            for (unsigned k = rn(16); len && k; k--)
                buf[rn((unsigned) len)] = (uint8_t) rnd();
            break;
        case 5: /* overlong varints: 10 x 0xff */
            if (len + 12 < cap) {
                memset(buf + len, 0xff, 10);
                buf[len + 10] = rn(2) ? 0x01 : 0x7f;
                len += 11;
            }
            break;
        default: /* duplicate the body (repeated fields twice, last-wins scalars) */
            if (2 * len < cap) {
                memcpy(buf + len, buf, len);
                len *= 2;
            }
        }
    }
    return len;
}

static uint16_t client_cmds[64];
static unsigned nclient;

static void init_cmds(void)
{
    for (unsigned c = 0; c <= 0xffff; c++) {
        const im_cmd_info_t *ci = im_cmd_info((uint16_t) c);
        if (ci && ci->client_req && c != IM_CMD_LOGOUT_REQ && nclient < 64)
            client_cmds[nclient++] = (uint16_t) c;
    }
}

/* ---------------------------------------------------------------- tcp fuzzing */

static int conn_open(conn_t *c, int idx)
{
    const char *gate = gates[idx % 2];
    if (c->user < 0) {
        c->fd = tcp_connect(gate);
    } else {
        uint64_t uid;
        c->fd = do_login(gate, users[c->user].name, c->ct, &uid);
        if (c->fd < 0)
            st_login_fail++;
    }
    c->rlen = 0;
    return c->fd;
}

static void conn_drop(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    st_closed++;
}

/* read what the gate sent; -1 when it closed */
static int conn_drain(conn_t *c)
{
    for (;;) {
        if (c->rlen == sizeof(c->rbuf))
            c->rlen = 0; /* an over-long packet: the gate never sends one; just resync */
        ssize_t r = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, MSG_DONTWAIT);
        if (r == 0)
            return -1;
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        c->rlen += (size_t) r;
        for (;;) {
            im_packet_t p;
            size_t used;
            int rc = im_codec_decode(c->rbuf, c->rlen, IM_MAX_PACKET_S2C, &p, &used);
            if (rc != IM_OK) {
                if (rc < 0) {
                    printf("net_fuzz: the gate sent an undecodable packet (%s)\n",
                           im_codec_strerror(rc));
                    c->rlen = 0;
                }
                break;
            }
            st_rsp++;
            memmove(c->rbuf, c->rbuf + used, c->rlen - used);
            c->rlen -= used;
        }
    }
}

static void fuzz_one(conn_t *c)
{
    static uint8_t body[256 * 1024];
    static uint16_t seq;
    uint16_t cmd;
    int me = c->user;
    unsigned pick = rn(100);
    if (pick < 88)
        cmd = client_cmds[rn(nclient)];
    else if (pick < 94)
        cmd = (uint16_t) (0x0100 * (1 + rn(6)) + rn(0x20)); /* near the real ones */
    else if (pick < 97)
        cmd = IM_CMD_LOGOUT_REQ;
    else
        cmd = (uint16_t) rnd();
    const ProtobufCMessageDescriptor *d = fuzz_desc_for(cmd);
    size_t len = 0;
    arena_used = 0;
    if (d && rn(10) != 0) {
        ProtobufCMessage *m = r_msg(d, me, 0);
        if (m) {
            size_t n = protobuf_c_message_get_packed_size(m);
            if (n <= sizeof(body) / 2) {
                protobuf_c_message_pack(m, body);
                len = n;
            }
        }
    } else {
        len = rn(2) ? rn(64) : rn(70000);
        for (size_t i = 0; i < len; i++)
            body[i] = (uint8_t) rnd();
    }
    if (rn(3) == 0) {
        len = mutate(body, len, sizeof(body) / 2);
        st_mutated++;
    }
    if (len > IM_MAX_PACKET_DEF - IM_HEADER_LEN && rn(4))
        len = IM_MAX_PACKET_DEF - IM_HEADER_LEN - rn(3); /* right at the limit */
    uint8_t hdr[IM_HEADER_LEN];
    im_codec_write_header(hdr, cmd, ++seq, len);
    if (rn(50) == 0) { /* a broken header: the gate must close this connection only */
        st_header_bad++;
        switch (rn(4)) {
        case 0:
            hdr[0] = hdr[1] = hdr[2] = 0, hdr[3] = (uint8_t) rn(16);
            break;
        case 1:
            hdr[5] = (uint8_t) (2 + rn(200));
            break;
        case 2:
            hdr[0] = 0xff;
            break;
        default: /* length says more than follows: the packet is completed by the next ones */
            hdr[2] ^= 0x01;
        }
    }
    st_sent++;
    if (cmd < 0x700)
        cmd_sent[cmd]++;
    st_bytes += IM_HEADER_LEN + len;
    if (send_all(c->fd, hdr, IM_HEADER_LEN) < 0 || send_all(c->fd, body, len) < 0) {
        conn_drop(c);
        return;
    }
    if (conn_drain(c) < 0)
        conn_drop(c);
}

static void setup_users(void)
{
    unsigned tag = (unsigned) (rnd() % 1000000);
    for (int i = 0; i < NUSERS; i++) {
        snprintf(users[i].name, sizeof(users[i].name), "fz%06u_%d", tag, i);
        if (do_register(gates[i % 2], users[i].name) < 0)
            die("could not register %s on %s", users[i].name, gates[i % 2]);
        int fd = do_login(gates[i % 2], users[i].name, 1, &users[i].id);
        if (fd < 0)
            die("could not log in %s", users[i].name);
        close(fd);
    }
}

static int run_tcp(double secs, int nconns, double rate)
{
    init_cmds();
    setup_users();
    static conn_t conns[MAX_CONNS];
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        /* most log in (as users x client types 1..6), a few never do */
        conns[i].user = i % 8 == 7 ? -1 : i % NUSERS;
        conns[i].ct = 1 + (i / NUSERS) % 6;
    }
    double start = now_s(), end = start + secs, next_report = start + 10;
    uint64_t opened = 0;
    while (now_s() < end) {
        conn_t *c = &conns[rn((unsigned) nconns)];
        if (c->fd < 0) {
            if (conn_open(c, (int) (c - conns)) < 0)
                continue;
            if (opened++ >= (uint64_t) nconns)
                st_reconnects++;
        }
        fuzz_one(c);
        double t = now_s();
        double due = start + (double) st_sent / rate;
        if (due > t)
            usleep((useconds_t) ((due - t) * 1e6));
        if (t > next_report) {
            printf("net_fuzz tcp: %.0f s: %llu packets, %llu replies, %llu reconnects\n", t - start,
                   (unsigned long long) st_sent, (unsigned long long) st_rsp,
                   (unsigned long long) st_reconnects);
            fflush(stdout);
            next_report += 10;
        }
    }
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0)
            close(conns[i].fd);
    double el = now_s() - start;
    printf("net_fuzz tcp: per command:");
    for (unsigned i = 0; i < nclient; i++)
        printf(" %04x:%llu", client_cmds[i], (unsigned long long) cmd_sent[client_cmds[i]]);
    printf("\n");
    printf("net_fuzz tcp: execs %llu (%.0f/s) bytes %llu, mutated %llu, broken headers %llu, "
           "replies %llu, closes %llu, reconnects %llu, failed logins %llu\n",
           (unsigned long long) st_sent, st_sent / el, (unsigned long long) st_bytes,
           (unsigned long long) st_mutated, (unsigned long long) st_header_bad,
           (unsigned long long) st_rsp, (unsigned long long) st_closed,
           (unsigned long long) st_reconnects, (unsigned long long) st_login_fail);
    if (st_reconnects > 10 && st_login_fail * 2 > st_reconnects)
        die("most logins failed during the run (%llu of %llu)", (unsigned long long) st_login_fail,
            (unsigned long long) st_reconnects);
    return 0;
}

/* ---------------------------------------------------------------- http fuzzing */

static char *api_key;
static uint64_t h_sent, h_status[6], h_noanswer, h_refused;

static void sb_add(char **s, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *s = realloc(*s, *cap);
    }
    memcpy(*s + *len, p, n);
    *len += n;
    (*s)[*len] = 0;
}

static void sb_printf(char **s, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void sb_printf(char **s, size_t *len, size_t *cap, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_add(s, len, cap, tmp, (size_t) n < sizeof(tmp) ? (size_t) n : sizeof(tmp) - 1);
}

static void j_value(char **s, size_t *l, size_t *c, int depth);

static void j_id(char **s, size_t *l, size_t *c)
{
    static const char *odd[] = {"0",
                                "-1",
                                "1e3",
                                "1.5",
                                "18446744073709551616",
                                "9007199254740992",
                                "9007199254740991",
                                "1e400",
                                "-0",
                                "99999999999999999999999999999999",
                                "\"12\"",
                                "null",
                                "true"};
    if (rn(3))
        sb_printf(s, l, c, "%llu", (unsigned long long) (rn(2) ? users[rn(NUSERS)].id : rn(5000)));
    else
        sb_printf(s, l, c, "%s", odd[rn(sizeof(odd) / sizeof(odd[0]))]);
}

static void j_string(char **s, size_t *l, size_t *c)
{
    sb_add(s, l, c, "\"", 1);
    switch (rn(6)) {
    case 0: /* invalid UTF-8 (jansson must reject it) */
        sb_add(s, l, c, "\xc3\x28\xff\xfe", 4);
        break;
    case 1:
        sb_add(s, l, c, "\\u0000\\ud800x", 13);
        break;
    case 2:
        for (unsigned n = 100 + rn(3000); n; n--)
            sb_add(s, l, c, "x", 1);
        break;
    case 3:
        sb_printf(s, l, c, "fz_%u", rn(100000));
        break;
    default:
        sb_printf(s, l, c, "hello %u", rn(100));
    }
    sb_add(s, l, c, "\"", 1);
}

static void j_value(char **s, size_t *l, size_t *c, int depth)
{
    switch (depth > 3 ? rn(3) : rn(6)) {
    case 0:
        j_id(s, l, c);
        break;
    case 1:
        j_string(s, l, c);
        break;
    case 2:
        sb_printf(s, l, c, "%s", rn(2) ? "true" : "null");
        break;
    case 3: {
        sb_add(s, l, c, "[", 1);
        unsigned n = rn(4) ? rn(5) : 50 + rn(2000);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                sb_add(s, l, c, ",", 1);
            if (rn(4))
                j_id(s, l, c);
            else
                j_value(s, l, c, depth + 1);
        }
        sb_add(s, l, c, "]", 1);
        break;
    }
    default: {
        sb_add(s, l, c, "{", 1);
        unsigned n = rn(4);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                sb_add(s, l, c, ",", 1);
            sb_printf(s, l, c, "\"k%u\":", rn(5));
            j_value(s, l, c, depth + 1);
        }
        sb_add(s, l, c, "}", 1);
    }
    }
}

static const char *fields[] = {"user_id",    "user_name",  "nick_name",   "avatar_url",
                               "password",   "all",        "to_user_ids", "from_user_id",
                               "msg_type",   "transient",  "msg_data",    "msg_data_base64",
                               "group_name", "member_ids", "owner_id",    "announcement",
                               "join_model", "mute_model", "user_ids"};

static char *j_body(size_t *len)
{
    char *s = NULL;
    size_t l = 0, c = 0;
    sb_add(&s, &l, &c, "", 0);
    unsigned pick = rn(20);
    if (pick == 0) { /* deep nesting */
        unsigned d = 1000 + rn(200000);
        for (unsigned i = 0; i < d; i++)
            sb_add(&s, &l, &c, rn(2) ? "[" : "{\"a\":", rn(2) ? 1 : 5);
    } else if (pick == 1) { /* 2 MB */
        sb_add(&s, &l, &c, "{\"msg_data\":\"", 13);
        char blk[4096];
        memset(blk, 'A', sizeof(blk));
        for (int i = 0; i < 512; i++)
            sb_add(&s, &l, &c, blk, sizeof(blk));
        sb_add(&s, &l, &c, "\"}", 2);
    } else if (pick == 2) { /* not an object */
        j_value(&s, &l, &c, 0);
    } else if (pick == 3) { /* garbage */
        for (unsigned n = rn(200); n; n--) {
            char ch = (char) rnd();
            sb_add(&s, &l, &c, &ch, 1);
        }
    } else {
        sb_add(&s, &l, &c, "{", 1);
        unsigned n = 1 + rn(6);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                sb_add(&s, &l, &c, ",", 1);
            sb_printf(&s, &l, &c, "\"%s\":", fields[rn(sizeof(fields) / sizeof(fields[0]))]);
            j_value(&s, &l, &c, 0);
        }
        if (rn(10) == 0)
            sb_add(&s, &l, &c, ",\"user_id\":1,\"user_id\":2", 24); /* duplicate keys */
        if (rn(10) != 0)
            sb_add(&s, &l, &c, "}", 1);
    }
    *len = l;
    return s;
}

static void h_path(char *out, size_t cap)
{
    static const char *fixed[] = {"/api/v1/users",
                                  "/api/v1/online/count",
                                  "/api/v1/push",
                                  "/api/v1/groups",
                                  "/healthz",
                                  "/metrics",
                                  "/",
                                  "/api/v1/",
                                  "/api/v1/users/",
                                  "/api/v1/groups//members",
                                  "*",
                                  "/api/v1/users/1/../../etc/passwd",
                                  "/api/v1/push?x=1&y=%00"};
    static const char *uid_rest[] = {"token",   "kick", "online", "",
                                     "members", "x",    "token/", "members/extra"};
    const char *ids[] = {
        "0",   "1",  "-1", "00001", "900719925474099", "9007199254740993", "18446744073709551616",
        "abc", "1a", "%31"};
    char id[32];
    switch (rn(4)) {
    case 0:
        snprintf(out, cap, "%s", fixed[rn(sizeof(fixed) / sizeof(fixed[0]))]);
        break;
    default:
        if (rn(2))
            snprintf(id, sizeof(id), "%llu",
                     (unsigned long long) (rn(2) ? users[rn(NUSERS)].id : 1 + rn(3000)));
        else
            snprintf(id, sizeof(id), "%s", ids[rn(sizeof(ids) / sizeof(ids[0]))]);
        snprintf(out, cap, "/api/v1/%s/%s/%s", rn(2) ? "users" : "groups", id,
                 uid_rest[rn(sizeof(uid_rest) / sizeof(uid_rest[0]))]);
    }
    if (rn(20) == 0) { /* a very long path */
        size_t l = strlen(out);
        while (l + 1 < cap && rn(3000))
            out[l++] = 'a';
        out[l] = 0;
    }
}

static void http_one(const char *api)
{
    static const char *methods[] = {"GET",  "POST",    "PATCH", "DELETE", "PUT",
                                    "HEAD", "OPTIONS", "BREW",  "get",    "POST /x"};
    char path[9000];
    h_path(path, rn(10) ? 512 : sizeof(path));
    const char *m = methods[rn(10) < 8 ? rn(4) : rn(sizeof(methods) / sizeof(methods[0]))];
    size_t blen = 0;
    char *body = (strcmp(m, "GET") != 0 || rn(10) == 0) ? j_body(&blen) : NULL;
    char *req = NULL;
    size_t rl = 0, rc = 0;
    sb_printf(&req, &rl, &rc, "%s %s HTTP/1.%d\r\nHost: x\r\n", m, path, rn(10) ? 1 : 0);
    switch (rn(10)) {
    case 0:
        break; /* no key */
    case 1:
        sb_printf(&req, &rl, &rc, "Authorization: Bearer wrong%u\r\n", rn(100));
        break;
    case 2:
        sb_printf(&req, &rl, &rc, "Authorization: %s\r\n", api_key);
        break;
    default:
        sb_printf(&req, &rl, &rc, "Authorization: Bearer %s\r\n", api_key);
    }
    if (rn(4))
        sb_printf(&req, &rl, &rc, "Content-Type: %s\r\n",
                  rn(4) ? "application/json" : "text/plain; charset=\xff");
    int chunked = body && rn(6) == 0;
    if (body && !chunked) {
        unsigned lie = rn(12);
        size_t cl = lie == 0 ? blen + 10 : lie == 1 && blen ? blen - 1 : blen;
        if (lie == 2)
            sb_printf(&req, &rl, &rc, "Content-Length: 99999999999999999999\r\n");
        else if (lie == 3)
            sb_printf(&req, &rl, &rc, "Content-Length: -5\r\n");
        else
            sb_printf(&req, &rl, &rc, "Content-Length: %zu\r\n", cl);
    } else if (chunked) {
        sb_printf(&req, &rl, &rc, "Transfer-Encoding: chunked\r\n");
    }
    for (unsigned n = rn(8) == 0 ? 50 + rn(200) : 0; n; n--)
        sb_printf(&req, &rl, &rc, "X-Junk-%u: %u\r\n", n, rn(1000000));
    sb_printf(&req, &rl, &rc, "Connection: close\r\n\r\n");
    if (body && !chunked) {
        sb_add(&req, &rl, &rc, body, blen);
    } else if (chunked) {
        size_t off = 0;
        while (off < blen) {
            size_t n = 1 + rn(4000);
            if (n > blen - off)
                n = blen - off;
            sb_printf(&req, &rl, &rc, rn(30) ? "%zx\r\n" : "%zx;ext=1\r\n", n);
            sb_add(&req, &rl, &rc, body + off, n);
            sb_add(&req, &rl, &rc, "\r\n", 2);
            off += n;
        }
        if (rn(10))
            sb_add(&req, &rl, &rc, "0\r\n\r\n", 5);
        else
            sb_add(&req, &rl, &rc, "fffffffffffffffff\r\n", 19); /* a bad chunk size */
    }
    free(body);
    h_sent++;
    int fd = tcp_connect(api);
    if (fd < 0) {
        h_refused++;
        free(req);
        return;
    }
    /* the server may answer (413, 400) and close before it read everything: not an error */
    size_t cut = rn(25) == 0 ? rn((unsigned) rl) : rl; /* sometimes stop mid-request */
    send_all(fd, (const uint8_t *) req, cut);
    free(req);
    if (cut < rl) {
        close(fd);
        return;
    }
    shutdown(fd, SHUT_WR);
    char rsp[64] = "";
    size_t got = 0;
    double end = now_s() + 3;
    while (now_s() < end) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        char buf[8192];
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0)
            break;
        if (got < sizeof(rsp) - 1) {
            size_t n = (size_t) r < sizeof(rsp) - 1 - got ? (size_t) r : sizeof(rsp) - 1 - got;
            memcpy(rsp + got, buf, n);
            got += n;
            rsp[got] = 0;
        }
    }
    close(fd);
    int status = 0;
    if (sscanf(rsp, "HTTP/1.%*d %d", &status) == 1 && status >= 100 && status < 600)
        h_status[status / 100]++;
    else
        h_noanswer++;
}

static int run_http(double secs, double rate)
{
    const char *api = getenv("CIM_API");
    api_key = getenv("CIM_API_KEY");
    if (!api || !api_key)
        die("CIM_API and CIM_API_KEY are needed");
    /* a few real users so that ids in paths and bodies hit existing rows */
    if (gates[0] && gates[1])
        setup_users();
    double start = now_s(), end = start + secs, next_report = start + 10;
    while (now_s() < end) {
        http_one(api);
        double t = now_s(), due = start + (double) h_sent / rate;
        if (due > t)
            usleep((useconds_t) ((due - t) * 1e6));
        if (t > next_report) {
            printf("net_fuzz http: %.0f s: %llu requests\n", t - start,
                   (unsigned long long) h_sent);
            fflush(stdout);
            next_report += 10;
        }
    }
    double el = now_s() - start;
    printf("net_fuzz http: execs %llu (%.0f/s): 2xx %llu, 3xx %llu, 4xx %llu, 5xx %llu, "
           "no answer (cut, or closed early) %llu, refused %llu\n",
           (unsigned long long) h_sent, h_sent / el, (unsigned long long) h_status[2],
           (unsigned long long) h_status[3], (unsigned long long) h_status[4],
           (unsigned long long) h_status[5], (unsigned long long) h_noanswer,
           (unsigned long long) h_refused);
    if (h_refused * 2 > h_sent)
        die("most connections to the API were refused");
    return 0;
}

/* ---------------------------------------------------------------- check */

static int run_check(void)
{
    char a[40], b[40];
    unsigned tag = (unsigned) (rnd() % 1000000);
    snprintf(a, sizeof(a), "fzok%06u_a", tag);
    snprintf(b, sizeof(b), "fzok%06u_b", tag);
    if (do_register(gates[0], a) < 0 || do_register(gates[1], b) < 0)
        die("check: register failed");
    uint64_t ida = 0, idb = 0;
    int fb = do_login(gates[1], b, 1, &idb);
    int fa = do_login(gates[0], a, 1, &ida);
    if (fa < 0 || fb < 0)
        die("check: login failed");
    CIM__Def__CIMMsgData m = CIM__DEF__CIMMSG_DATA__INIT;
    m.from_user_id = ida;
    m.to_session_id = idb;
    char cmid[32];
    snprintf(cmid, sizeof(cmid), "fzcheck-%u", tag);
    m.client_msg_id = cmid;
    m.msg_type = CIM__DEF__CIMMSG_TYPE__kCIM_MSG_TYPE_TEXT;
    m.session_type = CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_SINGLE;
    m.msg_data.data = (uint8_t *) "still alive";
    m.msg_data.len = 11;
    send_msg(fa, IM_CMD_MSG_DATA, 7, &m.base);
    size_t bl;
    uint8_t *body = wait_packet(fa, IM_CMD_MSG_DATA_ACK, 10, &bl);
    if (!body)
        die("check: no ack");
    CIM__Def__CIMMsgDataAck *ack = cim__def__cimmsg_data_ack__unpack(NULL, bl, body);
    free(body);
    if (!ack || ack->res_code != CIM__DEF__CIMRES_CODE__kCIM_RES_CODE_OK || !ack->server_msg_id)
        die("check: ack res_code %d", ack ? (int) ack->res_code : -1);
    uint64_t smid = ack->server_msg_id;
    cim__def__cimmsg_data_ack__free_unpacked(ack, NULL);
    body = wait_packet(fb, IM_CMD_MSG_DATA, 10, &bl);
    if (!body)
        die("check: the recipient got nothing");
    CIM__Def__CIMMsgData *got = cim__def__cimmsg_data__unpack(NULL, bl, body);
    free(body);
    if (!got || got->server_msg_id != smid || got->from_user_id != ida)
        die("check: the recipient got a different message");
    cim__def__cimmsg_data__free_unpacked(got, NULL);
    close(fa);
    close(fb);
    printf("net_fuzz check: %s -> %s delivered (server_msg_id %llu)\n", a, b,
           (unsigned long long) smid);
    return 0;
}

/* ---------------------------------------------------------------- probe (known findings) */

/* send n messages (msg_type mt) pipelined on fd; count acks by res_code into res[0..4] */
static void burst(int fd, uint64_t to, uint32_t mt, int n, const char *tag)
{
    for (int i = 0; i < n; i++) {
        CIM__Def__CIMMsgData m = CIM__DEF__CIMMSG_DATA__INIT;
        m.to_session_id = to;
        char cmid[48];
        snprintf(cmid, sizeof(cmid), "%s-%d", tag, i);
        m.client_msg_id = cmid;
        m.msg_type = (CIM__Def__CIMMsgType) mt;
        m.session_type = CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_SINGLE;
        m.msg_data.data = (uint8_t *) "x";
        m.msg_data.len = 1;
        send_msg(fd, IM_CMD_MSG_DATA, (uint16_t) (i + 1), &m.base);
    }
}

static int collect_acks(int fd, int n, unsigned res[5])
{
    int got = 0;
    while (got < n) {
        size_t bl;
        uint8_t *b = wait_packet(fd, IM_CMD_MSG_DATA_ACK, 10, &bl);
        if (!b)
            break;
        CIM__Def__CIMMsgDataAck *a = cim__def__cimmsg_data_ack__unpack(NULL, bl, b);
        free(b);
        if (a) {
            res[a->res_code < 5 ? a->res_code : 0]++;
            cim__def__cimmsg_data_ack__free_unpacked(a, NULL);
        }
        got++;
    }
    return got;
}

/* Findings of the network fuzzer that are not crashes; prints one line per probe:
 * "probe NAME: ok" or "probe NAME: BUG ...". Exit 0 when all are ok, 3 otherwise. */
static int run_probe(void)
{
    int bugs = 0;
    unsigned tag = (unsigned) (rnd() % 1000000);
    char a[40], b[40], bad[40];
    snprintf(a, sizeof(a), "fzpr%06u_a", tag);
    snprintf(b, sizeof(b), "fzpr%06u_b", tag);
    if (do_register(gates[0], a) < 0 || do_register(gates[0], b) < 0)
        die("probe: register failed");
    /* 1. register with a nick_name that is not UTF-8: must be USER_INVALID_PARAMETER */
    snprintf(bad, sizeof(bad), "fzpr%06u_n", tag);
    int fd = tcp_connect(gates[0]);
    CIM__Def__CIMRegisterReq rq = CIM__DEF__CIMREGISTER_REQ__INIT;
    rq.user_name = bad;
    rq.user_pwd = (char *) PWD;
    rq.nick_name = (char *) "\xc3\x28\xff";
    send_msg(fd, IM_CMD_REGISTER_REQ, 1, &rq.base);
    size_t bl;
    uint8_t *body = wait_packet(fd, IM_CMD_REGISTER_RSP, 5, &bl);
    close(fd);
    CIM__Def__CIMRegisterRsp *rr = body ? cim__def__cimregister_rsp__unpack(NULL, bl, body) : NULL;
    free(body);
    int code = rr ? (int) rr->result_code : -1;
    if (rr)
        cim__def__cimregister_rsp__free_unpacked(rr, NULL);
    if (code == IM_ERR_USER_INVALID_PARAMETER) {
        printf("probe register_nick_utf8: ok\n");
    } else {
        printf("probe register_nick_utf8: BUG: non-UTF-8 nick_name answered %d, not 9001 "
               "(USER_INVALID_PARAMETER)\n",
               code);
        bugs++;
    }
    /* 2. a message with msg_type > 255: must be REFUSED (not ERROR = retry later) */
    uint64_t ida, idb;
    int fa = do_login(gates[0], a, 1, &ida), fb = do_login(gates[0], b, 2, &idb);
    if (fa < 0 || fb < 0)
        die("probe: login failed");
    unsigned res[5] = {0};
    burst(fa, idb, 300, 1, "bigtype");
    collect_acks(fa, 1, res);
    if (res[IM_RES_REFUSED] == 1) {
        printf("probe msg_type_range: ok\n");
    } else {
        printf("probe msg_type_range: BUG: msg_type 300 answered ok %u error %u refused %u "
               "(the INSERT fails in MySQL; must be refused before storing)\n",
               res[1], res[2], res[3]);
        bugs++;
    }
    /* 3. collateral damage: B's good messages sent while A sends bad ones */
    unsigned rb[5] = {0}, ra[5] = {0};
    for (int round = 0; round < 5; round++) {
        char t1[32], t2[32];
        snprintf(t1, sizeof(t1), "bad%d", round);
        snprintf(t2, sizeof(t2), "good%d", round);
        burst(fa, idb, 300, 40, t1);
        burst(fb, ida, 1, 40, t2);
        collect_acks(fa, 40, ra);
        collect_acks(fb, 40, rb);
    }
    if (rb[IM_RES_OK] == 200) {
        printf("probe msg_type_collateral: ok (200 good messages stored)\n");
    } else {
        printf("probe msg_type_collateral: BUG: of 200 good messages sent next to bad ones: ok "
               "%u, error %u, refused %u, no ack %u\n",
               rb[1], rb[2], rb[3], 200 - rb[1] - rb[2] - rb[3]);
        bugs++;
    }
    close(fa);
    close(fb);
    return bugs ? 3 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: net_fuzz tcp|http SECONDS | net_fuzz check\n");
        return 2;
    }
    const char *seed = getenv("FUZZ_SEED");
    rng_state = seed ? strtoull(seed, NULL, 0) : (uint64_t) time(NULL) ^ (uint64_t) getpid() << 20;
    if (!rng_state)
        rng_state = 88172645463325252ULL;
    printf("net_fuzz %s: seed %llu (FUZZ_SEED to repeat)\n", argv[1],
           (unsigned long long) rng_state);
    gates[0] = getenv("CIM_GATE1");
    gates[1] = getenv("CIM_GATE2");
    if (!gates[1])
        gates[1] = gates[0];
    double secs = argc > 2 ? atof(argv[2]) : 30;
    const char *e = getenv("FUZZ_CONNS");
    int nconns = e ? atoi(e) : 16;
    if (nconns < 1 || nconns > MAX_CONNS)
        nconns = 16;
    e = getenv("FUZZ_RATE");
    if (!strcmp(argv[1], "tcp")) {
        if (!gates[0])
            die("CIM_GATE1 is needed");
        return run_tcp(secs, nconns, e ? atof(e) : 1500);
    }
    if (!strcmp(argv[1], "http"))
        return run_http(secs, e ? atof(e) : 150);
    if (!strcmp(argv[1], "probe")) {
        if (!gates[0])
            die("CIM_GATE1 is needed");
        return run_probe();
    }
    if (!strcmp(argv[1], "check")) {
        if (!gates[0])
            die("CIM_GATE1 is needed");
        return run_check();
    }
    fprintf(stderr, "usage: net_fuzz tcp|http SECONDS | net_fuzz check\n");
    return 2;
}
