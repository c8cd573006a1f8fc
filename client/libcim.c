/* libcim: blocking cim client (see libcim.h). poll() + non-blocking socket, no threads.
 *
 * TLS (cim_set_tls) keeps the socket code as it is: the SSL object reads and writes two memory
 * BIOs. Bytes from recv() go into the read BIO and SSL_read drains all the plaintext they
 * complete into rbuf (so nothing decrypted waits inside OpenSSL while the caller polls the
 * socket); packets are SSL_write'n in slices of one record and the ciphertext left in the
 * write BIO goes out with the plain path's send loop (MSG_NOSIGNAL, deadline). */
#include "libcim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "im_codec.h"
#include "im_cmd.h"
#include "proto/cim.pb-c.h"

#define GATE_HOST_MAX  256
#define READ_CHUNK     (64 * 1024)
#define SEND_TIMEOUT   10000
#define HB_RING        8
#define CLIENT_VERSION "libcim/0.1"
#define TLS_SLICE      16384 /* plaintext per SSL_write: one record */
#define TLS_CHUNK      (32 * 1024)

#define AHEAD_MAX     65536
#define RETRY_BASE_MS 100
#define RETRY_MAX_MS  2000

/* A message waiting for its final ack; body is the packed CIMMsgData. */
typedef struct unacked_s {
    struct unacked_s *next;
    char *cmid; /* as sent (may be invalid on purpose: tests) */
    uint8_t *body;
    size_t len;
    int in_flight; /* sent on the current connection, no answer yet */
    int tries;
    int64_t sent_at;  /* ms clock of the last send */
    int64_t retry_at; /* ms clock: not before (after ERROR / RATE_LIMITED) */
} unacked_t;

typedef struct gate_addr_s {
    char host[GATE_HOST_MAX];
    int port;
} gate_addr_t;

struct cim_client_s {
    int fd;         /* -1 when not connected */
    int peer_gone;  /* a send saw EPIPE/ECONNRESET: reads drain what is left, then close */
    int last_errno; /* for CIM_EIO */

    SSL_CTX *tls_ctx; /* NULL: plain TCP */
    int tls_mode;
    SSL *ssl;         /* TLS on the current connection, else NULL */
    BIO *rbio, *wbio; /* owned by ssl */
    int tls_dead;     /* a fatal TLS error: no close_notify */
    uint8_t *tbuf;    /* ciphertext from recv(), TLS_CHUNK bytes */
    char tls_err[640];

    gate_addr_t *gates;
    int ngates;
    int cur; /* index of the gate connected to (or last tried) */
    char gate_str[GATE_HOST_MAX + 16];
    char source_ip[INET6_ADDRSTRLEN];

    uint8_t *rbuf; /* input bytes not yet decoded: rbuf[0..rlen) */
    size_t rcap, rlen;

    uint16_t seq;
    int64_t last_send_ms;
    int hb_interval_ms;
    int call_timeout_ms;       /* for the account calls */
    uint16_t hb_auto[HB_RING]; /* seqs of automatic heartbeats whose echo is swallowed */
    int hb_auto_n;

    /* the one packet a blocking call waits for */
    int waiting;
    uint16_t w_cmd; /* 0 = any */
    int w_seq;      /* -1 = any */
    cim_packet_t *w_got;

    cim_packet_t *q_head, *q_tail; /* pushes, oldest first */
    size_t q_len;
    cim_push_cb push_cb;
    void *push_ud;

    uint64_t uid;
    char *token;
    char name[64];
    uint32_t client_type;
    int logged_in;
    int kicked;
    uint32_t kick_reason;

    /* messaging */
    int auto_sync, auto_confirm;
    uint64_t seen_upto; /* every seq <= this was seen */
    uint64_t *ahead;    /* seen seqs > seen_upto + 1, ascending */
    size_t nahead, cahead;
    unacked_t *un_head, *un_tail;
    size_t n_unacked;
    cim_ack_cb ack_cb;
    void *ack_ud;
    uint8_t *cbuf; /* delivery confirmations to send once the input is processed */
    size_t clen, ccap;
    uint64_t cmid_rand;
    uint32_t cmid_ctr;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
}

/* Milliseconds left until deadline for poll(): -1 = forever, 0 = expired. */
static int remaining(int64_t deadline)
{
    if (deadline == INT64_MAX)
        return -1;
    int64_t left = deadline - now_ms();
    if (left <= 0)
        return 0;
    return left > 0x7fffffff ? 0x7fffffff : (int) left;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* messaging internals (defined with the messaging functions) */
static void seed_cmid(cim_client_t *c);
static int on_delivery(cim_client_t *c, const cim_packet_t *p);
static void on_ack(cim_client_t *c, const cim_packet_t *p, cim_ack_t *ack);
static void flush_confirms(cim_client_t *c);
static int sock_send(cim_client_t *c, const uint8_t *p, size_t len);

/* ------------------------------------------------------------------ lifetime */

cim_client_t *cim_client_new(void)
{
    cim_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = -1;
    c->hb_interval_ms = CIM_DEFAULT_HEARTBEAT_MS;
    c->call_timeout_ms = CIM_DEFAULT_CALL_MS;
    c->client_type = CIM_DEFAULT_CLIENT_TYPE;
    c->auto_sync = 1;
    c->auto_confirm = 1;
    seed_cmid(c);
    c->token = xstrdup("");
    if (!c->token || cim_set_gates(c, "127.0.0.1:8000") != 0) {
        cim_client_free(c);
        return NULL;
    }
    return c;
}

void cim_packet_free(cim_packet_t *pkt)
{
    if (!pkt)
        return;
    free(pkt->body);
    free(pkt);
}

void cim_client_free(cim_client_t *c)
{
    if (!c)
        return;
    cim_close(c);
    while (c->q_head) {
        cim_packet_t *p = c->q_head;
        c->q_head = p->next;
        cim_packet_free(p);
    }
    cim_drop_unacked(c);
    free(c->ahead);
    free(c->cbuf);
    free(c->gates);
    free(c->rbuf);
    free(c->token);
    free(c->tbuf);
    SSL_CTX_free(c->tls_ctx);
    free(c);
}

void cim_close(cim_client_t *c)
{
    if (c->ssl) {
        /* close_notify, best effort: one non-blocking send */
        if (c->fd >= 0 && !c->tls_dead && !c->peer_gone && SSL_is_init_finished(c->ssl)) {
            ERR_clear_error();
            if (SSL_shutdown(c->ssl) >= 0) {
                uint8_t buf[256];
                int n = BIO_read(c->wbio, buf, (int) sizeof(buf));
                if (n > 0 && send(c->fd, buf, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                    c->last_errno = errno;
            }
        }
        ERR_clear_error();
        SSL_free(c->ssl);
        c->ssl = NULL;
        c->rbio = c->wbio = NULL;
    }
    c->tls_dead = 0;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->peer_gone = 0;
    c->rlen = 0;
    c->hb_auto_n = 0;
    c->clen = 0;
    for (unacked_t *u = c->un_head; u; u = u->next)
        u->in_flight = 0;
}

int cim_is_connected(const cim_client_t *c)
{
    return c->fd >= 0;
}

int cim_is_tls(const cim_client_t *c)
{
    return c->ssl != NULL;
}

int cim_fd(const cim_client_t *c)
{
    return c->fd;
}

const char *cim_gate(const cim_client_t *c)
{
    return c->gate_str;
}

int cim_last_errno(const cim_client_t *c)
{
    return c->last_errno;
}

/* ------------------------------------------------------------------ addresses */

static int parse_one_gate(const char *s, size_t n, gate_addr_t *out)
{
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0)
        return CIM_EINVAL;
    const char *host = s, *port = NULL;
    size_t hlen;
    if (*s == '[') { /* [v6]:port */
        const char *rb = memchr(s, ']', n);
        if (!rb)
            return CIM_EINVAL;
        host = s + 1;
        hlen = (size_t) (rb - host);
        if ((size_t) (rb + 1 - s) < n) {
            if (rb[1] != ':')
                return CIM_EINVAL;
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        int ncolons = 0;
        for (size_t i = 0; i < n; i++)
            ncolons += s[i] == ':';
        if (ncolons == 1) {
            hlen = (size_t) (colon - s);
            port = colon + 1;
        } else {
            hlen = n; /* no port, or a bare IPv6 literal */
        }
    }
    if (hlen == 0 || hlen >= GATE_HOST_MAX)
        return CIM_EINVAL;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = CIM_DEFAULT_PORT;
    if (port) {
        size_t plen = (size_t) (s + n - port);
        if (plen == 0 || plen > 5)
            return CIM_EINVAL;
        int v = 0;
        for (size_t i = 0; i < plen; i++) {
            if (port[i] < '0' || port[i] > '9')
                return CIM_EINVAL;
            v = v * 10 + (port[i] - '0');
        }
        if (v <= 0 || v > 65535)
            return CIM_EINVAL;
        out->port = v;
    }
    return 0;
}

int cim_set_gates(cim_client_t *c, const char *addrs)
{
    if (!addrs || !*addrs)
        return CIM_EINVAL;
    int n = 1;
    for (const char *p = addrs; *p; p++)
        n += *p == ',';
    gate_addr_t *g = calloc((size_t) n, sizeof(*g));
    if (!g)
        return CIM_ENOMEM;
    int i = 0;
    const char *p = addrs;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen(p);
        if (parse_one_gate(p, len, &g[i]) != 0) {
            free(g);
            return CIM_EINVAL;
        }
        i++;
        if (!comma)
            break;
        p = comma + 1;
    }
    free(c->gates);
    c->gates = g;
    c->ngates = i;
    c->cur = 0;
    snprintf(c->gate_str, sizeof(c->gate_str), "%s:%d", g[0].host, g[0].port);
    return 0;
}

int cim_set_source_ip(cim_client_t *c, const char *ip)
{
    if (!ip || !*ip) {
        c->source_ip[0] = '\0';
        return 0;
    }
    unsigned char tmp[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, ip, tmp) != 1 && inet_pton(AF_INET6, ip, tmp) != 1)
        return CIM_EINVAL;
    snprintf(c->source_ip, sizeof(c->source_ip), "%s", ip);
    return 0;
}

static int bind_source(const cim_client_t *c, int fd, int family)
{
    if (!c->source_ip[0])
        return 0;
    if (family == AF_INET) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, c->source_ip, &sa.sin_addr) != 1)
            return -EAFNOSUPPORT;
        return bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 ? 0 : -errno;
    }
    struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET6, c->source_ip, &sa6.sin6_addr) != 1)
        return -EAFNOSUPPORT;
    return bind(fd, (struct sockaddr *) &sa6, sizeof(sa6)) == 0 ? 0 : -errno;
}

/* Connect one socket to ai within the deadline: fd, or a negative code. */
static int connect_ai(cim_client_t *c, const struct addrinfo *ai, int64_t deadline)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = bind_source(c, fd, ai->ai_family);
    if (rc < 0)
        goto fail;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto fail;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n;
        do {
            n = poll(&pfd, 1, remaining(deadline));
        } while (n < 0 && errno == EINTR);
        if (n == 0) {
            rc = CIM_ETIMEDOUT;
            goto fail;
        }
        if (n < 0) {
            rc = -errno;
            goto fail;
        }
        int err = 0;
        socklen_t elen = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
            err = errno;
        if (err) {
            rc = -err;
            goto fail;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------ TLS */

/* Note a TLS failure: what, then OpenSSL's first queued error or the certificate check's
 * verdict (the queue is cleared). */
static void tls_note(cim_client_t *c, const char *what)
{
    char why[200] = "";
    long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    unsigned long e = ERR_get_error();
    if (vr != X509_V_OK)
        snprintf(why, sizeof(why), "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    else if (e)
        ERR_error_string_n(e, why, sizeof(why));
    ERR_clear_error();
    snprintf(c->tls_err, sizeof(c->tls_err), "%s%s%s", what, *why ? ": " : "", why);
}

int cim_set_tls(cim_client_t *c, int mode, const char *ca_file)
{
    if (mode != CIM_TLS_OFF && mode != CIM_TLS_VERIFY && mode != CIM_TLS_INSECURE)
        return CIM_EINVAL;
    c->tls_err[0] = '\0';
    SSL_CTX *ctx = NULL;
    if (mode != CIM_TLS_OFF) {
        ERR_clear_error();
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) {
            ERR_clear_error();
            return CIM_ENOMEM;
        }
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
        if (mode == CIM_TLS_VERIFY) {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
            int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                             : SSL_CTX_set_default_verify_paths(ctx);
            if (ok != 1) {
                char what[300];
                snprintf(what, sizeof(what), "CA file %.255s", ca_file ? ca_file : "(system)");
                tls_note(c, what);
                SSL_CTX_free(ctx);
                return CIM_EINVAL;
            }
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        }
    }
    SSL_CTX_free(c->tls_ctx);
    c->tls_ctx = ctx;
    c->tls_mode = mode;
    return 0;
}

const char *cim_tls_error(const cim_client_t *c)
{
    return c->tls_err;
}

/* Send the ciphertext waiting in the write BIO. 0 or a send error. */
static int tls_flush(cim_client_t *c)
{
    uint8_t buf[TLS_SLICE + 1024];
    int n;
    while (c->ssl && (n = BIO_read(c->wbio, buf, (int) sizeof(buf))) > 0) {
        int rc = sock_send(c, buf, (size_t) n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* TLS handshake on the freshly connected c->fd, as a client of host, until deadline.
 * 0, CIM_ETLS, CIM_ETIMEDOUT, CIM_ECLOSED, CIM_EIO or CIM_ENOMEM (the caller closes). */
static int tls_start(cim_client_t *c, const char *host, int64_t deadline)
{
    ERR_clear_error();
    if (!c->tbuf && !(c->tbuf = malloc(TLS_CHUNK)))
        return CIM_ENOMEM;
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    c->ssl = rb && wb ? SSL_new(c->tls_ctx) : NULL;
    if (!c->ssl) {
        BIO_free(rb);
        BIO_free(wb);
        ERR_clear_error();
        return CIM_ENOMEM;
    }
    BIO_set_mem_eof_return(rb, -1);
    BIO_set_mem_eof_return(wb, -1);
    SSL_set_bio(c->ssl, rb, wb);
    c->rbio = rb;
    c->wbio = wb;
    SSL_set_connect_state(c->ssl);
    unsigned char addr[sizeof(struct in6_addr)];
    int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(c->ssl, host); /* SNI: names only */
    if (c->tls_mode == CIM_TLS_VERIFY) {
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host)
                       : SSL_set1_host(c->ssl, host);
        if (ok != 1) {
            tls_note(c, "TLS: cannot check the certificate against the gate address");
            return CIM_ETLS;
        }
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
        int frc = tls_flush(c); /* our flight, or the alert that says why we stop */
        if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ) {
            char what[300];
            snprintf(what, sizeof(what), "TLS handshake with %s failed", c->gate_str);
            tls_note(c, what);
            c->tls_dead = 1;
            return CIM_ETLS;
        }
        if (frc < 0) {
            snprintf(c->tls_err, sizeof(c->tls_err), "TLS handshake: send failed: %s",
                     cim_strerror(frc));
            return frc;
        }
        if (e == SSL_ERROR_NONE)
            return 0;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int t = remaining(deadline);
        int n = t == 0 ? 0 : poll(&pfd, 1, t);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            c->last_errno = errno;
            return CIM_EIO;
        }
        if (n == 0) {
            snprintf(c->tls_err, sizeof(c->tls_err), "TLS handshake with %s timed out",
                     c->gate_str);
            return CIM_ETIMEDOUT;
        }
        ssize_t got = recv(c->fd, c->tbuf, TLS_CHUNK, 0);
        if (got > 0) {
            if (BIO_write(c->rbio, c->tbuf, (int) got) != (int) got)
                return CIM_ENOMEM;
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
            if (got < 0)
                c->last_errno = errno;
            snprintf(c->tls_err, sizeof(c->tls_err),
                     "TLS handshake with %s: connection closed by the server (not a TLS "
                     "port?)",
                     c->gate_str);
            c->tls_dead = 1;
            return CIM_ECLOSED;
        }
    }
}

/* Connect to gates[idx]; on success the client's connection state is fresh. */
static int connect_gate(cim_client_t *c, int idx, int64_t deadline)
{
    const gate_addr_t *g = &c->gates[idx];
    cim_close(c);
    c->cur = idx;
    snprintf(c->gate_str, sizeof(c->gate_str), "%s:%d", g->host, g->port);

    char port[8];
    snprintf(port, sizeof(port), "%d", g->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(g->host, port, &hints, &res) != 0 || !res)
        return CIM_EINVAL;
    /* a name with several addresses (gates behind DNS): start at a random one, so clients
     * spread over the gates (glibc sorts A records the same way for everyone), and give each
     * an equal share of the time left, so one dead address cannot use it all */
    const struct addrinfo *list[32];
    int n = 0;
    for (const struct addrinfo *ai = res; ai && n < 32; ai = ai->ai_next)
        list[n++] = ai;
    unsigned pick = (unsigned) now_ms() ^ (unsigned) getpid() ^ (unsigned) (uintptr_t) c;
    int rc = CIM_EINVAL, first = n > 1 ? (int) (pick % (unsigned) n) : 0;
    for (int i = 0; i < n; i++) {
        int64_t left = remaining(deadline);
        if (left <= 0) {
            rc = CIM_ETIMEDOUT;
            break;
        }
        int64_t share = left / (n - i);
        if (share < 500)
            share = left < 500 ? left : 500;
        rc = connect_ai(c, list[(first + i) % n], now_ms() + share);
        if (rc >= 0)
            break;
    }
    freeaddrinfo(res);
    if (rc < 0)
        return rc;
    c->fd = rc;
    if (c->tls_ctx) {
        c->tls_err[0] = '\0';
        rc = tls_start(c, g->host, deadline);
        if (rc < 0) {
            cim_close(c);
            return rc;
        }
    }
    c->kicked = 0;
    c->kick_reason = 0;
    c->last_send_ms = now_ms();
    return 0;
}

int cim_connect(cim_client_t *c, const char *host, int port, int timeout_ms)
{
    if (!host || port <= 0 || port > 65535 || strlen(host) >= GATE_HOST_MAX)
        return CIM_EINVAL;
    gate_addr_t *g = calloc(1, sizeof(*g));
    if (!g)
        return CIM_ENOMEM;
    snprintf(g->host, sizeof(g->host), "%s", host);
    g->port = port;
    free(c->gates);
    c->gates = g;
    c->ngates = 1;
    return connect_gate(c, 0, deadline_of(timeout_ms));
}

int cim_connect_addr(cim_client_t *c, const char *addrs, int timeout_ms)
{
    int rc = cim_set_gates(c, addrs);
    if (rc != 0)
        return rc;
    int64_t deadline = deadline_of(timeout_ms);
    for (int i = 0; i < c->ngates; i++) {
        rc = connect_gate(c, i, deadline);
        if (rc == 0)
            return 0;
        if (remaining(deadline) == 0)
            break;
    }
    return rc;
}

/* ------------------------------------------------------------------ output */

/* The socket itself: all of p within SEND_TIMEOUT. 0, CIM_ETIMEDOUT (the connection is then
 * closed), CIM_ECLOSED (peer_gone), CIM_EIO. */
static int sock_send(cim_client_t *c, const uint8_t *p, size_t len)
{
    int64_t deadline = now_ms() + SEND_TIMEOUT;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t) n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
            int t = remaining(deadline);
            if (t == 0 || poll(&pfd, 1, t) == 0) {
                cim_close(c); /* part of a packet may be out: the stream is unusable */
                return CIM_ETIMEDOUT;
            }
            continue;
        }
        c->last_errno = errno;
        if (errno == EPIPE || errno == ECONNRESET) {
            c->peer_gone = 1; /* reads still drain what the server sent before closing */
            return CIM_ECLOSED;
        }
        return CIM_EIO;
    }
    return 0;
}

/* Plaintext through TLS, one record at a time. */
static int tls_write(cim_client_t *c, const uint8_t *p, size_t len)
{
    while (len > 0) {
        size_t n = len < TLS_SLICE ? len : TLS_SLICE;
        ERR_clear_error();
        int w = SSL_write(c->ssl, p, (int) n);
        if (w <= 0) {
            tls_note(c, "TLS write failed");
            c->tls_dead = 1;
            return CIM_EIO;
        }
        p += w;
        len -= (size_t) w;
        int rc = tls_flush(c);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int write_all(cim_client_t *c, const uint8_t *p, size_t len)
{
    if (c->fd < 0)
        return CIM_ENOTCONN;
    if (c->peer_gone)
        return CIM_ECLOSED;
    int rc = c->ssl ? tls_write(c, p, len) : sock_send(c, p, len);
    if (rc < 0)
        return rc;
    c->last_send_ms = now_ms();
    return 0;
}

uint16_t cim_next_seq(cim_client_t *c)
{
    c->seq = (uint16_t) (c->seq == 65535 ? 1 : c->seq + 1);
    return c->seq;
}

int cim_send(cim_client_t *c, uint16_t cmd, uint16_t seq, const ProtobufCMessage *msg)
{
    if (c->fd < 0)
        return CIM_ENOTCONN;
    size_t blen = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    uint8_t stackbuf[512];
    uint8_t *buf = stackbuf;
    if (IM_HEADER_LEN + blen > sizeof(stackbuf)) {
        buf = malloc(IM_HEADER_LEN + blen);
        if (!buf)
            return CIM_ENOMEM;
    }
    im_codec_write_header(buf, cmd, seq, blen);
    if (msg)
        protobuf_c_message_pack(msg, buf + IM_HEADER_LEN);
    int rc = write_all(c, buf, IM_HEADER_LEN + blen);
    if (buf != stackbuf)
        free(buf);
    return rc;
}

int cim_send_raw(cim_client_t *c, const void *bytes, size_t len)
{
    return write_all(c, bytes, len);
}

static int maybe_heartbeat(cim_client_t *c)
{
    if (c->hb_interval_ms <= 0 || c->fd < 0 || c->peer_gone)
        return 0;
    if (now_ms() - c->last_send_ms < c->hb_interval_ms)
        return 0;
    uint16_t seq = cim_next_seq(c);
    if (c->hb_auto_n == HB_RING) { /* forget the oldest: its echo, if any, is queued */
        memmove(c->hb_auto, c->hb_auto + 1, (HB_RING - 1) * sizeof(c->hb_auto[0]));
        c->hb_auto_n--;
    }
    c->hb_auto[c->hb_auto_n++] = seq;
    return cim_send(c, IM_CMD_HEARTBEAT, seq, NULL);
}

/* poll() timeout capped so that an automatic heartbeat is not late. */
static int hb_cap(const cim_client_t *c, int t)
{
    if (c->hb_interval_ms <= 0 || c->fd < 0 || c->peer_gone)
        return t;
    int64_t due = c->last_send_ms + c->hb_interval_ms - now_ms();
    int d = due < 0 ? 0 : (int) due;
    return (t < 0 || d < t) ? d : t;
}

void cim_set_call_timeout(cim_client_t *c, int timeout_ms)
{
    c->call_timeout_ms = timeout_ms <= 0 ? CIM_DEFAULT_CALL_MS : timeout_ms;
}

void cim_set_heartbeat_interval(cim_client_t *c, int interval_ms)
{
    c->hb_interval_ms = interval_ms < 0 ? 0 : interval_ms;
}

/* ------------------------------------------------------------------ input */

static cim_packet_t *packet_new(uint16_t cmd, uint16_t seq, const uint8_t *body, size_t len)
{
    cim_packet_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->cmd = cmd;
    p->seq = seq;
    p->body_len = len;
    if (len) {
        p->body = malloc(len);
        if (!p->body) {
            free(p);
            return NULL;
        }
        memcpy(p->body, body, len);
    }
    return p;
}

ProtobufCMessage *cim_packet_unpack(const cim_packet_t *pkt, const ProtobufCMessageDescriptor *desc)
{
    static const uint8_t empty[1];
    return protobuf_c_message_unpack(desc, NULL, pkt->body_len, pkt->body ? pkt->body : empty);
}

static void enqueue(cim_client_t *c, cim_packet_t *p)
{
    p->next = NULL;
    if (c->q_tail)
        c->q_tail->next = p;
    else
        c->q_head = p;
    c->q_tail = p;
    c->q_len++;
}

/* Remove and return the first queued packet with cmd (0 = any) and seq (-1 = any). */
static cim_packet_t *dequeue(cim_client_t *c, uint16_t cmd, int seq)
{
    cim_packet_t *prev = NULL;
    for (cim_packet_t *p = c->q_head; p; prev = p, p = p->next) {
        if ((cmd && p->cmd != cmd) || (seq >= 0 && p->seq != seq))
            continue;
        if (prev)
            prev->next = p->next;
        else
            c->q_head = p->next;
        if (c->q_tail == p)
            c->q_tail = prev;
        c->q_len--;
        p->next = NULL;
        return p;
    }
    return NULL;
}

size_t cim_queued(const cim_client_t *c)
{
    return c->q_len;
}

static void dispatch(cim_client_t *c, cim_packet_t *p)
{
    if (p->cmd == IM_CMD_HEARTBEAT) {
        for (int i = 0; i < c->hb_auto_n; i++) {
            if (c->hb_auto[i] == p->seq) {
                memmove(c->hb_auto + i, c->hb_auto + i + 1,
                        (size_t) (c->hb_auto_n - i - 1) * sizeof(c->hb_auto[0]));
                c->hb_auto_n--;
                cim_packet_free(p);
                return;
            }
        }
    }
    if (p->cmd == IM_CMD_KICKOUT_NOTIFY) {
        CIM__Def__CIMKickoutNotify *k = (CIM__Def__CIMKickoutNotify *) cim_packet_unpack(
            p, &cim__def__cimkickout_notify__descriptor);
        c->kicked = 1;
        c->kick_reason = k ? k->reason : 0;
        c->logged_in = 0;
        if (k)
            protobuf_c_message_free_unpacked(&k->base, NULL);
    }
    if (p->cmd == IM_CMD_MSG_DATA && on_delivery(c, p)) {
        cim_packet_free(p); /* a repeat of an entry already seen */
        return;
    }
    if (c->waiting && !c->w_got && (!c->w_cmd || c->w_cmd == p->cmd) &&
        (c->w_seq < 0 || c->w_seq == p->seq)) {
        c->w_got = p;
        return;
    }
    if (p->cmd == IM_CMD_MSG_DATA_ACK) {
        cim_ack_t ack;
        on_ack(c, p, &ack);
        if (c->ack_cb) {
            c->ack_cb(c, &ack, c->ack_ud);
            cim_packet_free(p);
            return;
        }
    }
    if (c->push_cb) {
        c->push_cb(c, p, c->push_ud);
        cim_packet_free(p);
        return;
    }
    enqueue(c, p);
}

/* Decode and dispatch every complete packet in rbuf. Count, or CIM_EPROTO / CIM_ENOMEM (the
 * connection is then closed). */
static int process_input(cim_client_t *c)
{
    size_t off = 0;
    int n = 0, rc = 0;
    while (off < c->rlen) {
        im_packet_t ip;
        size_t used = 0;
        int drc = im_codec_decode(c->rbuf + off, c->rlen - off, CIM_MAX_INCOMING, &ip, &used);
        if (drc == IM_AGAIN)
            break;
        if (drc != IM_OK) {
            rc = CIM_EPROTO;
            break;
        }
        cim_packet_t *p = packet_new(ip.hdr.cmd, ip.hdr.seq, ip.body, ip.body_len);
        if (!p) {
            rc = CIM_ENOMEM;
            break;
        }
        off += used;
        n++;
        dispatch(c, p);
    }
    if (rc < 0) {
        cim_close(c);
        return rc;
    }
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return n;
}

/* Wait up to timeout_ms (-1 = forever) for input, read once, dispatch. Packets dispatched
 * (0 on timeout), CIM_ECLOSED on EOF/reset (the socket is then closed), CIM_ENOTCONN,
 * CIM_EPROTO, CIM_ENOMEM, CIM_EIO. */
/* At least READ_CHUNK bytes free at the end of rbuf (less only at the size limit). */
static int rbuf_room(cim_client_t *c)
{
    if (c->rcap - c->rlen < READ_CHUNK) {
        size_t ncap = c->rcap ? c->rcap * 2 : 2 * READ_CHUNK;
        if (ncap > CIM_MAX_INCOMING + 2 * READ_CHUNK)
            ncap = CIM_MAX_INCOMING + 2 * READ_CHUNK;
        if (ncap > c->rcap) {
            uint8_t *nb = realloc(c->rbuf, ncap);
            if (!nb)
                return CIM_ENOMEM;
            c->rbuf = nb;
            c->rcap = ncap;
        }
    }
    return 0;
}

/* The socket is readable (or TLS holds plaintext): recv once into the read BIO, then decrypt
 * and dispatch everything that completes. Same returns as read_input. */
static int tls_read_input(cim_client_t *c)
{
    int eof = 0, got = 0;
    ssize_t r = recv(c->fd, c->tbuf, TLS_CHUNK, 0);
    if (r > 0) {
        if (BIO_write(c->rbio, c->tbuf, (int) r) != (int) r) {
            ERR_clear_error();
            return CIM_ENOMEM;
        }
    } else if (r == 0) {
        eof = 1;
    } else if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
        if (SSL_pending(c->ssl) == 0)
            return 0;
    } else {
        c->last_errno = errno;
        if (errno != ECONNRESET && errno != EPIPE) {
            cim_close(c);
            return CIM_EIO;
        }
        eof = 1;
    }
    for (;;) {
        if (rbuf_room(c) < 0)
            return CIM_ENOMEM;
        size_t room = c->rcap - c->rlen;
        ERR_clear_error();
        int n = SSL_read(c->ssl, c->rbuf + c->rlen, room > INT_MAX ? INT_MAX : (int) room);
        if (n > 0) {
            c->rlen += (size_t) n;
            int p = process_input(c); /* on an error the connection is closed */
            if (p < 0)
                return p;
            got += p;
            if (!c->ssl)
                return got; /* closed meanwhile */
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) { /* the server's close_notify */
            eof = 1;
            break;
        }
        tls_note(c, "TLS error");
        c->tls_dead = 1;
        cim_close(c);
        return CIM_EPROTO;
    }
    if (tls_flush(c) == CIM_EIO) { /* what SSL_read had to answer (rare in TLS 1.3) */
        cim_close(c);
        return CIM_EIO;
    }
    flush_confirms(c);
    if (eof) {
        cim_close(c);
        return CIM_ECLOSED;
    }
    return got;
}

static int read_input(cim_client_t *c, int timeout_ms)
{
    if (c->fd < 0)
        return CIM_ENOTCONN;
    if (c->ssl && SSL_pending(c->ssl) > 0)
        return tls_read_input(c);
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int n = poll(&pfd, 1, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : CIM_EIO;
    if (n == 0)
        return 0;
    if (c->ssl)
        return tls_read_input(c);
    if (rbuf_room(c) < 0)
        return CIM_ENOMEM;
    ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    if (r > 0) {
        c->rlen += (size_t) r;
        int got = process_input(c);
        flush_confirms(c);
        return got;
    }
    if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (r < 0) {
        c->last_errno = errno;
        if (errno != ECONNRESET && errno != EPIPE) {
            cim_close(c);
            return CIM_EIO;
        }
    }
    cim_close(c);
    return CIM_ECLOSED;
}

/* Wait for a packet (cmd 0 = any, seq -1 = any) until deadline: 0 and *out, or an error. */
static int wait_packet(cim_client_t *c, uint16_t cmd, int seq, int64_t deadline, int heartbeats,
                       cim_packet_t **out)
{
    int rc = 0;
    c->waiting = 1;
    c->w_cmd = cmd;
    c->w_seq = seq;
    c->w_got = NULL;
    while (!c->w_got) {
        if (c->fd < 0) {
            rc = CIM_ECLOSED;
            break;
        }
        int t = remaining(deadline);
        if (t == 0) {
            rc = CIM_ETIMEDOUT;
            break;
        }
        if (heartbeats) {
            int hrc = maybe_heartbeat(c);
            if (hrc == CIM_EIO || hrc == CIM_ENOMEM) {
                rc = hrc;
                break;
            }
            t = hb_cap(c, t);
        }
        rc = read_input(c, t);
        if (rc < 0 && rc != CIM_ECLOSED)
            break;
        rc = 0;
    }
    c->waiting = 0;
    if (c->w_got) {
        *out = c->w_got;
        c->w_got = NULL;
        return 0;
    }
    return rc;
}

int cim_poll(cim_client_t *c, int timeout_ms)
{
    if (c->fd < 0)
        return CIM_ENOTCONN;
    int rc = maybe_heartbeat(c);
    if (rc == CIM_EIO || rc == CIM_ENOMEM)
        return rc;
    int total = 0;
    rc = read_input(c, hb_cap(c, timeout_ms));
    while (rc > 0) { /* drain what is already there without waiting */
        total += rc;
        rc = read_input(c, 0);
    }
    if (rc < 0)
        return rc;
    return total;
}

int cim_wait_closed(cim_client_t *c, int timeout_ms)
{
    int64_t deadline = deadline_of(timeout_ms);
    while (c->fd >= 0) {
        int t = remaining(deadline);
        if (t == 0)
            return 0;
        int rc = read_input(c, t);
        if (rc < 0 && c->fd >= 0) /* EIO/ENOMEM without a close: count as closed */
            cim_close(c);
    }
    return 1;
}

int cim_next_push(cim_client_t *c, uint16_t cmd, int timeout_ms, cim_packet_t **out)
{
    *out = dequeue(c, cmd, -1);
    if (*out)
        return 0;
    if (c->fd < 0)
        return CIM_ECLOSED;
    return wait_packet(c, cmd, -1, deadline_of(timeout_ms), 1, out);
}

void cim_set_push_cb(cim_client_t *c, cim_push_cb cb, void *ud)
{
    c->push_cb = cb;
    c->push_ud = ud;
}

int cim_call(cim_client_t *c, uint16_t cmd, const ProtobufCMessage *req, uint16_t rsp_cmd,
             const ProtobufCMessageDescriptor *rsp_desc, ProtobufCMessage **rsp_out, int timeout_ms)
{
    if (rsp_out)
        *rsp_out = NULL;
    if (c->fd < 0)
        return CIM_ENOTCONN;
    int64_t deadline = deadline_of(timeout_ms);
    uint16_t seq = cim_next_seq(c);
    int rc = cim_send(c, cmd, seq, req);
    if (rc != 0 && rc != CIM_ECLOSED)
        return rc;
    /* on CIM_ECLOSED from the send, the answer may still be in the receive buffer */
    cim_packet_t *p = NULL;
    rc = wait_packet(c, rsp_cmd, seq, deadline, 1, &p);
    if (rc != 0)
        return rc;
    if (rsp_desc && rsp_out) {
        *rsp_out = cim_packet_unpack(p, rsp_desc);
        if (!*rsp_out)
            rc = CIM_EPROTO;
    }
    cim_packet_free(p);
    return rc;
}

int cim_heartbeat(cim_client_t *c, int timeout_ms)
{
    return cim_call(c, IM_CMD_HEARTBEAT, NULL, IM_CMD_HEARTBEAT, NULL, NULL, timeout_ms);
}

/* ------------------------------------------------------------------ account */

static int result_rc(uint32_t code)
{
    return code == CIM_RESULT_SUCCESS ? 0 : CIM_ERESULT;
}

static int set_token(cim_client_t *c, const char *token)
{
    char *t = xstrdup(token ? token : "");
    if (!t)
        return CIM_ENOMEM;
    free(c->token);
    c->token = t;
    return 0;
}

static void auto_sync(cim_client_t *c);

/* Called after every successful login, fresh or on reconnect.
 * This is the place for what a client does once it is (again) online:
 *   - sync: 0x0207 from the highest inbox seq seen (issue 3),
 *   - resend of messages sent but not acked, with their client_msg_id (issue 4). */
static void after_login(cim_client_t *c, int reconnect)
{
    (void) reconnect;
    if (!c->auto_sync)
        return;
    auto_sync(c);
    cim_resend_unacked(c);
}

int cim_register(cim_client_t *c, const char *name, const char *pwd, const char *nick,
                 uint32_t *result_code, uint64_t *user_id)
{
    if (result_code)
        *result_code = 0;
    if (user_id)
        *user_id = 0;
    CIM__Def__CIMRegisterReq req = CIM__DEF__CIMREGISTER_REQ__INIT;
    req.user_name = (char *) (name ? name : "");
    req.user_pwd = (char *) (pwd ? pwd : "");
    req.nick_name = (char *) (nick ? nick : "");
    req.client_type = (CIM__Def__CIMClientType) c->client_type;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_REGISTER_REQ, &req.base, IM_CMD_REGISTER_RSP,
                      &cim__def__cimregister_rsp__descriptor, &m, c->call_timeout_ms);
    if (rc != 0)
        return rc;
    CIM__Def__CIMRegisterRsp *rsp = (CIM__Def__CIMRegisterRsp *) m;
    uint32_t code = (uint32_t) rsp->result_code;
    if (result_code)
        *result_code = code;
    if (user_id && rsp->user_info)
        *user_id = rsp->user_info->user_id;
    protobuf_c_message_free_unpacked(m, NULL);
    return result_rc(code);
}

int cim_login_password(cim_client_t *c, const char *name, const char *pwd, uint32_t client_type,
                       uint32_t *result_code)
{
    if (result_code)
        *result_code = 0;
    CIM__Def__CIMAuthReq req = CIM__DEF__CIMAUTH_REQ__INIT;
    req.user_name = (char *) (name ? name : "");
    req.user_pwd = (char *) (pwd ? pwd : "");
    req.client_type = (CIM__Def__CIMClientType) client_type;
    req.client_version = (char *) CLIENT_VERSION;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_AUTH_REQ, &req.base, IM_CMD_AUTH_RSP,
                      &cim__def__cimauth_rsp__descriptor, &m, c->call_timeout_ms);
    if (rc != 0)
        return rc;
    CIM__Def__CIMAuthRsp *rsp = (CIM__Def__CIMAuthRsp *) m;
    uint32_t code = (uint32_t) rsp->result_code;
    if (result_code)
        *result_code = code;
    if (code == CIM_RESULT_SUCCESS) {
        rc = set_token(c, rsp->user_token);
        c->uid = rsp->user_info ? rsp->user_info->user_id : 0;
        snprintf(c->name, sizeof(c->name), "%s", req.user_name);
        c->client_type = client_type;
        c->logged_in = 1;
        c->kicked = 0;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    if (rc != 0)
        return rc;
    if (code == CIM_RESULT_SUCCESS)
        after_login(c, 0);
    return result_rc(code);
}

static int login_token(cim_client_t *c, uint64_t uid, const char *token, uint32_t client_type,
                       uint32_t *result_code)
{
    if (result_code)
        *result_code = 0;
    CIM__Def__CIMAuthTokenReq req = CIM__DEF__CIMAUTH_TOKEN_REQ__INIT;
    req.user_id = uid;
    req.user_token = (char *) (token ? token : "");
    req.client_type = (CIM__Def__CIMClientType) client_type;
    req.client_version = (char *) CLIENT_VERSION;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_AUTH_TOKEN_REQ, &req.base, IM_CMD_AUTH_TOKEN_RSP,
                      &cim__def__cimauth_token_rsp__descriptor, &m, c->call_timeout_ms);
    if (rc != 0)
        return rc;
    CIM__Def__CIMAuthTokenRsp *rsp = (CIM__Def__CIMAuthTokenRsp *) m;
    uint32_t code = (uint32_t) rsp->result_code;
    if (result_code)
        *result_code = code;
    protobuf_c_message_free_unpacked(m, NULL);
    if (code == CIM_RESULT_SUCCESS) {
        if (token != c->token) { /* cim_reconnect passes the remembered token itself */
            rc = set_token(c, token);
            if (rc != 0)
                return rc;
            c->name[0] = '\0';
        }
        c->uid = uid;
        c->client_type = client_type;
        c->logged_in = 1;
        c->kicked = 0;
    }
    return result_rc(code);
}

int cim_logout(cim_client_t *c, uint32_t *result_code)
{
    if (result_code)
        *result_code = 0;
    if (c->fd < 0) {
        c->logged_in = 0;
        return CIM_ENOTCONN;
    }
    CIM__Def__CIMLogoutReq req = CIM__DEF__CIMLOGOUT_REQ__INIT;
    req.user_id = c->uid;
    req.client_type = (CIM__Def__CIMClientType) c->client_type;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_LOGOUT_REQ, &req.base, IM_CMD_LOGOUT_RSP,
                      &cim__def__cimlogout_rsp__descriptor, &m, c->call_timeout_ms);
    if (rc != 0)
        return rc;
    uint32_t code = ((CIM__Def__CIMLogoutRsp *) m)->result_code;
    if (result_code)
        *result_code = code;
    protobuf_c_message_free_unpacked(m, NULL);
    c->logged_in = 0;
    return result_rc(code);
}

int cim_login_token(cim_client_t *c, uint64_t uid, const char *token, uint32_t client_type,
                    uint32_t *result_code)
{
    int rc = login_token(c, uid, token, client_type, result_code);
    if (rc == 0)
        after_login(c, 0);
    return rc;
}

uint64_t cim_user_id(const cim_client_t *c)
{
    return c->uid;
}

const char *cim_token(const cim_client_t *c)
{
    return c->token;
}

const char *cim_user_name(const cim_client_t *c)
{
    return c->name;
}

int cim_logged_in(const cim_client_t *c)
{
    return c->logged_in;
}

int cim_was_kicked(const cim_client_t *c)
{
    return c->kicked;
}

uint32_t cim_kick_reason(const cim_client_t *c)
{
    return c->kick_reason;
}

int cim_reconnect(cim_client_t *c, int timeout_ms)
{
    if (!c->uid || !c->token[0])
        return CIM_ENOTOKEN;
    int64_t deadline = deadline_of(timeout_ms);
    int start = c->ngates > 1 ? (c->cur + 1) % c->ngates : c->cur;
    int rc = CIM_ETIMEDOUT;
    for (int i = 0; i < c->ngates; i++) {
        rc = connect_gate(c, (start + i) % c->ngates, deadline);
        if (rc == 0)
            break;
        if (remaining(deadline) == 0)
            return rc;
    }
    if (rc != 0)
        return rc;
    uint32_t code = 0;
    rc = login_token(c, c->uid, c->token, c->client_type, &code);
    if (rc == CIM_ERESULT) {
        c->logged_in = 0; /* the token is no longer good: do not try again */
        return rc;
    }
    if (rc != 0) {
        cim_close(c);
        return rc;
    }
    after_login(c, 1);
    return 0;
}

/* ------------------------------------------------------------------ messaging */

static void seed_cmid(cim_client_t *c)
{
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &r, sizeof(r)) != (ssize_t) sizeof(r))
            r = 0;
        close(fd);
    }
    if (!r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = ((uint64_t) ts.tv_sec << 32) ^ (uint64_t) ts.tv_nsec ^ ((uint64_t) getpid() << 16) ^
            (uint64_t) (uintptr_t) c;
    }
    c->cmid_rand = r;
}

/* ---- seq tracking */

static int seq_seen(const cim_client_t *c, uint64_t seq)
{
    if (seq <= c->seen_upto)
        return 1;
    size_t lo = 0, hi = c->nahead;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->ahead[mid] == seq)
            return 1;
        if (c->ahead[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Record seq as seen: 1 if it is new, 0 if it was seen before (or 0). */
static int seq_mark(cim_client_t *c, uint64_t seq)
{
    if (seq == 0 || seq_seen(c, seq))
        return seq == 0;
    if (seq == c->seen_upto + 1) {
        c->seen_upto = seq;
        size_t k = 0;
        while (k < c->nahead && c->ahead[k] == c->seen_upto + 1)
            c->seen_upto = c->ahead[k++];
        if (k) {
            memmove(c->ahead, c->ahead + k, (c->nahead - k) * sizeof(uint64_t));
            c->nahead -= k;
        }
        return 1;
    }
    if (c->nahead == c->cahead) {
        size_t ncap = c->cahead ? c->cahead * 2 : 64;
        uint64_t *na = ncap <= AHEAD_MAX ? realloc(c->ahead, ncap * sizeof(uint64_t)) : NULL;
        if (!na)
            return 1; /* not remembered: a repeat may get through */
        c->ahead = na;
        c->cahead = ncap;
    }
    size_t i = c->nahead;
    while (i > 0 && c->ahead[i - 1] > seq) {
        c->ahead[i] = c->ahead[i - 1];
        i--;
    }
    c->ahead[i] = seq;
    c->nahead++;
    return 1;
}

uint64_t cim_seq(const cim_client_t *c)
{
    return c->seen_upto;
}

uint64_t cim_max_seq_seen(const cim_client_t *c)
{
    return c->nahead ? c->ahead[c->nahead - 1] : c->seen_upto;
}

void cim_set_seq(cim_client_t *c, uint64_t seq)
{
    c->seen_upto = seq;
    c->nahead = 0;
}

void cim_set_auto_sync(cim_client_t *c, int on)
{
    c->auto_sync = on != 0;
}

void cim_set_auto_confirm(cim_client_t *c, int on)
{
    c->auto_confirm = on != 0;
}

/* ---- deliveries */

static void queue_confirm(cim_client_t *c, const CIM__Def__CIMMsgData *d)
{
    CIM__Def__CIMMsgDataAck a = CIM__DEF__CIMMSG_DATA_ACK__INIT;
    a.from_user_id = d->from_user_id;
    /* the session as this user sees it: the sender for 1:1, the group for groups */
    a.to_session_id = d->session_type == CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_GROUP
                          ? d->to_session_id
                          : d->from_user_id;
    a.client_msg_id = d->client_msg_id;
    a.server_msg_id = d->server_msg_id;
    a.session_type = d->session_type;
    size_t blen = cim__def__cimmsg_data_ack__get_packed_size(&a);
    size_t need = c->clen + IM_HEADER_LEN + blen;
    if (need > c->ccap) {
        size_t ncap = c->ccap ? c->ccap : 1024;
        while (ncap < need)
            ncap *= 2;
        uint8_t *nb = realloc(c->cbuf, ncap);
        if (!nb)
            return;
        c->cbuf = nb;
        c->ccap = ncap;
    }
    im_codec_write_header(c->cbuf + c->clen, IM_CMD_MSG_DATA_ACK, cim_next_seq(c), blen);
    cim__def__cimmsg_data_ack__pack(&a, c->cbuf + c->clen + IM_HEADER_LEN);
    c->clen = need;
}

static void flush_confirms(cim_client_t *c)
{
    if (c->clen == 0 || c->fd < 0)
        return;
    size_t n = c->clen;
    c->clen = 0;
    write_all(c, c->cbuf, n); /* a failure shows at the next read */
}

/* A 0x0301 from the server: record its seq, queue the confirmation. 1 = a repeat (drop). */
static int on_delivery(cim_client_t *c, const cim_packet_t *p)
{
    CIM__Def__CIMMsgData *d =
        (CIM__Def__CIMMsgData *) cim_packet_unpack(p, &cim__def__cimmsg_data__descriptor);
    if (!d)
        return 0; /* the application sees what it is */
    if (c->auto_confirm && d->server_msg_id && d->from_user_id != c->uid)
        queue_confirm(c, d);
    int repeat = d->seq && !seq_mark(c, d->seq);
    cim__def__cimmsg_data__free_unpacked(d, NULL);
    return repeat;
}

/* ---- unacked list */

static unacked_t *un_find(const cim_client_t *c, const char *cmid)
{
    for (unacked_t *u = c->un_head; u; u = u->next)
        if (strcmp(u->cmid, cmid) == 0)
            return u;
    return NULL;
}

static void un_remove(cim_client_t *c, unacked_t *u)
{
    unacked_t *prev = NULL;
    for (unacked_t *x = c->un_head; x; prev = x, x = x->next) {
        if (x != u)
            continue;
        if (prev)
            prev->next = u->next;
        else
            c->un_head = u->next;
        if (c->un_tail == u)
            c->un_tail = prev;
        c->n_unacked--;
        free(u->cmid);
        free(u->body);
        free(u);
        return;
    }
}

void cim_drop_unacked(cim_client_t *c)
{
    while (c->un_head)
        un_remove(c, c->un_head);
}

size_t cim_unacked(const cim_client_t *c)
{
    return c->n_unacked;
}

size_t cim_in_flight(const cim_client_t *c)
{
    size_t n = 0;
    for (const unacked_t *u = c->un_head; u; u = u->next)
        n += u->in_flight;
    return n;
}

void cim_set_ack_cb(cim_client_t *c, cim_ack_cb cb, void *ud)
{
    c->ack_cb = cb;
    c->ack_ud = ud;
}

/* Apply an ack to the unacked list and fill *ack from it. */
static void ack_apply(cim_client_t *c, const CIM__Def__CIMMsgDataAck *a, cim_ack_t *ack)
{
    memset(ack, 0, sizeof(*ack));
    snprintf(ack->client_msg_id, sizeof(ack->client_msg_id), "%s", a->client_msg_id);
    ack->res_code = (uint32_t) a->res_code;
    ack->server_msg_id = a->server_msg_id;
    ack->seq = a->seq;
    ack->to_session_id = a->to_session_id;
    ack->from_user_id = a->from_user_id;
    ack->session_type = (uint32_t) a->session_type;
    ack->create_time = a->create_time;
    if (a->res_code == CIM_RES_OK)
        seq_mark(c, a->seq); /* the message's entry in my own inbox */
    unacked_t *u = un_find(c, a->client_msg_id);
    if (!u)
        return;
    if (a->res_code == CIM_RES_OK || a->res_code == CIM_RES_REFUSED) {
        un_remove(c, u);
        return;
    }
    u->in_flight = 0; /* ERROR, RATE_LIMITED, unknown: again later */
    u->tries++;
    int shift = u->tries < 6 ? u->tries - 1 : 5;
    int64_t delay = (int64_t) RETRY_BASE_MS << shift;
    u->retry_at = now_ms() + (delay > RETRY_MAX_MS ? RETRY_MAX_MS : delay);
}

static void on_ack(cim_client_t *c, const cim_packet_t *p, cim_ack_t *ack)
{
    CIM__Def__CIMMsgDataAck *a =
        (CIM__Def__CIMMsgDataAck *) cim_packet_unpack(p, &cim__def__cimmsg_data_ack__descriptor);
    if (!a) {
        memset(ack, 0, sizeof(*ack));
        return;
    }
    ack_apply(c, a, ack);
    cim__def__cimmsg_data_ack__free_unpacked(a, NULL);
}

/* Take m into the unacked list (packed); *out the entry. */
static int un_add(cim_client_t *c, const cim_msg_out_t *m, unacked_t **out)
{
    if (!m || (m->len && !m->data))
        return CIM_EINVAL;
    unacked_t *u = calloc(1, sizeof(*u));
    if (!u)
        return CIM_ENOMEM;
    char gen[CIM_CMID_MAX + 1];
    snprintf(gen, sizeof(gen), "%016llx-%08x-%llu", (unsigned long long) c->cmid_rand,
             ++c->cmid_ctr, (unsigned long long) c->uid);
    u->cmid = xstrdup(m->client_msg_id ? m->client_msg_id : gen);
    if (!u->cmid) {
        free(u);
        return CIM_ENOMEM;
    }
    CIM__Def__CIMMsgData d = CIM__DEF__CIMMSG_DATA__INIT;
    d.from_user_id = m->from_user_id;
    d.to_session_id = m->to;
    d.client_msg_id = u->cmid;
    d.create_time = (int32_t) time(NULL);
    d.msg_type = (CIM__Def__CIMMsgType) (m->msg_type ? m->msg_type : CIM_MSG_TEXT);
    d.session_type =
        (CIM__Def__CIMSessionType) (m->session_type ? m->session_type : CIM_SESSION_SINGLE);
    d.msg_data.data = (uint8_t *) m->data;
    d.msg_data.len = m->len;
    u->len = cim__def__cimmsg_data__get_packed_size(&d);
    u->body = malloc(u->len ? u->len : 1);
    if (!u->body) {
        free(u->cmid);
        free(u);
        return CIM_ENOMEM;
    }
    cim__def__cimmsg_data__pack(&d, u->body);
    if (c->un_tail)
        c->un_tail->next = u;
    else
        c->un_head = u;
    c->un_tail = u;
    c->n_unacked++;
    *out = u;
    return 0;
}

/* Send one unacked entry with a new seq_num: 0 or a send error. */
static int un_send(cim_client_t *c, unacked_t *u, uint16_t *seq_out)
{
    if (c->fd < 0)
        return CIM_ENOTCONN;
    uint8_t *buf = malloc(IM_HEADER_LEN + u->len);
    if (!buf)
        return CIM_ENOMEM;
    uint16_t seq = cim_next_seq(c);
    im_codec_write_header(buf, IM_CMD_MSG_DATA, seq, u->len);
    memcpy(buf + IM_HEADER_LEN, u->body, u->len);
    int rc = write_all(c, buf, IM_HEADER_LEN + u->len);
    free(buf);
    if (rc == 0 || rc == CIM_ECLOSED) /* closed: the answer may still come in */
        u->in_flight = c->fd >= 0;
    u->sent_at = now_ms();
    if (seq_out)
        *seq_out = seq;
    return rc;
}

int cim_send_msg_async(cim_client_t *c, const cim_msg_out_t *m, char *cmid_out)
{
    unacked_t *u = NULL;
    int rc = un_add(c, m, &u);
    if (rc != 0)
        return rc;
    if (cmid_out)
        snprintf(cmid_out, CIM_CMID_MAX + 1, "%s", u->cmid);
    un_send(c, u, NULL);
    return 0;
}

int cim_send_msg(cim_client_t *c, const cim_msg_out_t *m, cim_ack_t *ack)
{
    cim_ack_t tmp;
    if (!ack)
        ack = &tmp;
    memset(ack, 0, sizeof(*ack));
    unacked_t *u = NULL;
    int rc = un_add(c, m, &u);
    if (rc != 0)
        return rc;
    snprintf(ack->client_msg_id, sizeof(ack->client_msg_id), "%s", u->cmid);
    char *cmid = xstrdup(u->cmid); /* u may go away with an ack that comes another way */
    if (!cmid)
        return CIM_ENOMEM;
    int64_t deadline = deadline_of(c->call_timeout_ms);
    uint16_t seq = 0;
    rc = un_send(c, u, &seq);
    cim_packet_t *p = NULL;
    if (rc == 0 || rc == CIM_ECLOSED)
        rc = wait_packet(c, IM_CMD_MSG_DATA_ACK, seq, deadline, 1, &p);
    if (rc != 0) {
        /* stays unacked for a resend (unless an ack came in another way meanwhile) */
        unacked_t *x = un_find(c, cmid);
        if (x)
            x->in_flight = 0;
        free(cmid);
        return rc;
    }
    free(cmid);
    char want[sizeof(ack->client_msg_id)];
    snprintf(want, sizeof(want), "%s", ack->client_msg_id);
    on_ack(c, p, ack);
    cim_packet_free(p);
    if (ack->client_msg_id[0] == '\0')
        snprintf(ack->client_msg_id, sizeof(ack->client_msg_id), "%s", want);
    return ack->res_code == CIM_RES_OK ? 0 : CIM_ERESULT;
}

int cim_send_text(cim_client_t *c, uint64_t to, const char *text, cim_ack_t *ack)
{
    cim_msg_out_t m = {.to = to, .data = text, .len = text ? strlen(text) : 0};
    return cim_send_msg(c, &m, ack);
}

int cim_resend_unacked(cim_client_t *c)
{
    int n = 0;
    for (unacked_t *u = c->un_head; u; u = u->next) {
        if (u->in_flight)
            continue;
        int rc = un_send(c, u, NULL);
        if (rc != 0)
            return rc;
        n++;
    }
    return n;
}

int cim_flush(cim_client_t *c, int timeout_ms)
{
    int64_t deadline = deadline_of(timeout_ms);
    while (c->n_unacked > 0) {
        if (c->fd < 0)
            return CIM_ECLOSED;
        int64_t now = now_ms();
        int64_t next = INT64_MAX;
        for (unacked_t *u = c->un_head; u; u = u->next) {
            if (u->in_flight && now - u->sent_at < c->call_timeout_ms)
                continue; /* an answer may still come */
            if (u->retry_at <= now) {
                int rc = un_send(c, u, NULL);
                if (rc != 0 && rc != CIM_ECLOSED)
                    return rc;
            } else if (u->retry_at < next) {
                next = u->retry_at;
            }
        }
        int t = remaining(deadline);
        if (t == 0)
            return CIM_ETIMEDOUT;
        if (next != INT64_MAX && next - now < t)
            t = (int) (next - now);
        if (t > 200)
            t = 200;
        int rc = cim_poll(c, t);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- requests */

static int code_rc(uint32_t code)
{
    return code == 0 || code == CIM_RESULT_SUCCESS ? 0 : CIM_ERESULT;
}

int cim_sync_page(cim_client_t *c, uint64_t after_seq, uint32_t limit, CIM__Def__CIMSyncRsp **out,
                  uint32_t *result_code)
{
    if (result_code)
        *result_code = 0;
    *out = NULL;
    CIM__Def__CIMSyncReq req = CIM__DEF__CIMSYNC_REQ__INIT;
    req.user_id = c->uid;
    req.after_seq = after_seq;
    req.limit = limit;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_SYNC_REQ, &req.base, IM_CMD_SYNC_RSP,
                      &cim__def__cimsync_rsp__descriptor, &m, c->call_timeout_ms);
    if (rc != 0)
        return rc;
    CIM__Def__CIMSyncRsp *rsp = (CIM__Def__CIMSyncRsp *) m;
    if (result_code)
        *result_code = rsp->result_code;
    *out = rsp;
    return code_rc(rsp->result_code);
}

static int sync_pages(cim_client_t *c, uint64_t after_seq, uint32_t limit, cim_sync_cb cb, void *ud,
                      uint64_t *max_seq, size_t *count, uint32_t *result_code)
{
    size_t total = 0;
    if (max_seq)
        *max_seq = 0;
    for (;;) {
        CIM__Def__CIMSyncRsp *rsp = NULL;
        int rc = cim_sync_page(c, after_seq, limit, &rsp, result_code);
        if (rc != 0) {
            if (rsp)
                cim__def__cimsync_rsp__free_unpacked(rsp, NULL);
            if (count)
                *count = total;
            return rc;
        }
        if (max_seq)
            *max_seq = rsp->max_seq;
        for (size_t i = 0; i < rsp->n_msg_list; i++) {
            const CIM__Def__CIMMsgInfo *mi = rsp->msg_list[i];
            if (mi->seq > after_seq)
                after_seq = mi->seq;
            if (cb)
                cb(c, mi, ud); /* before the mark: the callback may ask seq_seen */
            seq_mark(c, mi->seq);
            total++;
        }
        int more = rsp->has_more && rsp->n_msg_list > 0;
        cim__def__cimsync_rsp__free_unpacked(rsp, NULL);
        if (!more)
            break;
    }
    if (count)
        *count = total;
    return 0;
}

int cim_sync(cim_client_t *c, uint64_t after_seq, uint32_t limit, cim_sync_cb cb, void *ud,
             uint64_t *max_seq, size_t *count, uint32_t *result_code)
{
    return sync_pages(c, after_seq, limit, cb, ud, max_seq, count, result_code);
}

/* The automatic sync: each entry not seen yet becomes a 0x0301 push. */
static void auto_sync_entry(cim_client_t *c, const CIM__Def__CIMMsgInfo *mi, void *ud)
{
    (void) ud;
    if (mi->seq && seq_seen(c, mi->seq))
        return;
    CIM__Def__CIMMsgData d = CIM__DEF__CIMMSG_DATA__INIT;
    d.from_user_id = mi->from_user_id;
    d.to_session_id = mi->to_session_id;
    d.client_msg_id = mi->client_msg_id;
    d.server_msg_id = mi->server_msg_id;
    d.create_time = (int32_t) mi->create_time;
    d.msg_type = mi->msg_type;
    d.session_type = mi->session_type;
    d.msg_data = mi->msg_data;
    d.seq = mi->seq;
    size_t n = cim__def__cimmsg_data__get_packed_size(&d);
    cim_packet_t *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->cmd = IM_CMD_MSG_DATA;
    p->body_len = n;
    if (n) {
        p->body = malloc(n);
        if (!p->body) {
            free(p);
            return;
        }
        cim__def__cimmsg_data__pack(&d, p->body);
    }
    if (c->push_cb) {
        c->push_cb(c, p, c->push_ud);
        cim_packet_free(p);
    } else {
        enqueue(c, p);
    }
}

static void auto_sync(cim_client_t *c)
{
    sync_pages(c, c->seen_upto, 0, auto_sync_entry, NULL, NULL, NULL, NULL);
}

int cim_history(cim_client_t *c, uint32_t session_type, uint64_t session_id, uint64_t end_msg_id,
                uint32_t limit, CIM__Def__CIMGetMsgListRsp **out, uint32_t *result_code)
{
    if (result_code)
        *result_code = 0;
    *out = NULL;
    CIM__Def__CIMGetMsgListReq req = CIM__DEF__CIMGET_MSG_LIST_REQ__INIT;
    req.user_id = c->uid;
    req.session_type = (CIM__Def__CIMSessionType) session_type;
    req.session_id = session_id;
    req.end_msg_id = end_msg_id;
    req.limit_count = limit;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_MSG_LIST_REQ, &req.base, IM_CMD_MSG_LIST_RSP,
                      &cim__def__cimget_msg_list_rsp__descriptor, &m, c->call_timeout_ms);
    if (rc != 0)
        return rc;
    *out = (CIM__Def__CIMGetMsgListRsp *) m;
    if (result_code)
        *result_code = (*out)->result_code;
    return code_rc((*out)->result_code);
}

int cim_sessions(cim_client_t *c, uint32_t since, CIM__Def__CIMRecentContactSessionRsp **out,
                 uint32_t *result_code)
{
    if (result_code)
        *result_code = 0;
    *out = NULL;
    CIM__Def__CIMRecentContactSessionReq req = CIM__DEF__CIMRECENT_CONTACT_SESSION_REQ__INIT;
    req.user_id = c->uid;
    req.latest_update_time = since;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_RECENT_SESSION_REQ, &req.base, IM_CMD_RECENT_SESSION_RSP,
                      &cim__def__cimrecent_contact_session_rsp__descriptor, &m, c->call_timeout_ms);
    if (rc != 0)
        return rc;
    *out = (CIM__Def__CIMRecentContactSessionRsp *) m;
    if (result_code)
        *result_code = (*out)->result_code;
    return code_rc((*out)->result_code);
}

int cim_read_ack(cim_client_t *c, uint32_t session_type, uint64_t session_id, uint64_t msg_id)
{
    CIM__Def__CIMMsgDataReadAck req = CIM__DEF__CIMMSG_DATA_READ_ACK__INIT;
    req.user_id = c->uid;
    req.session_type = (CIM__Def__CIMSessionType) session_type;
    req.session_id = session_id;
    req.msg_id = msg_id;
    return cim_send(c, IM_CMD_MSG_READ_ACK, cim_next_seq(c), &req.base);
}

int cim_recall(cim_client_t *c, uint32_t session_type, uint64_t session_id, uint64_t server_msg_id,
               uint32_t *result_code)
{
    if (result_code)
        *result_code = 0;
    CIM__Def__CIMMsgRecallReq req = CIM__DEF__CIMMSG_RECALL_REQ__INIT;
    req.user_id = c->uid;
    req.session_type = (CIM__Def__CIMSessionType) session_type;
    req.session_id = session_id;
    req.server_msg_id = server_msg_id;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_RECALL_REQ, &req.base, IM_CMD_RECALL_RSP,
                      &cim__def__cimmsg_recall_rsp__descriptor, &m, c->call_timeout_ms);
    if (rc != 0)
        return rc;
    uint32_t code = (uint32_t) ((CIM__Def__CIMMsgRecallRsp *) m)->result_code;
    protobuf_c_message_free_unpacked(m, NULL);
    if (result_code)
        *result_code = code;
    return code == CIM_RESULT_SUCCESS ? 0 : CIM_ERESULT;
}

int cim_latest_msg_id(cim_client_t *c, uint32_t session_type, uint64_t session_id, uint64_t *latest,
                      uint32_t *result_code)
{
    if (result_code)
        *result_code = 0;
    if (latest)
        *latest = 0;
    CIM__Def__CIMGetLatestMsgIdReq req = CIM__DEF__CIMGET_LATEST_MSG_ID_REQ__INIT;
    req.user_id = c->uid;
    req.session_type = (CIM__Def__CIMSessionType) session_type;
    req.session_id = session_id;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_LATEST_MSG_ID_REQ, &req.base, IM_CMD_LATEST_MSG_ID_RSP,
                      &cim__def__cimget_latest_msg_id_rsp__descriptor, &m, c->call_timeout_ms);
    if (rc != 0)
        return rc;
    CIM__Def__CIMGetLatestMsgIdRsp *rsp = (CIM__Def__CIMGetLatestMsgIdRsp *) m;
    uint32_t code = rsp->result_code;
    if (latest && rsp->latest_msg_id)
        *latest = strtoull(rsp->latest_msg_id, NULL, 10);
    protobuf_c_message_free_unpacked(m, NULL);
    if (result_code)
        *result_code = code;
    return code_rc(code);
}

int cim_msgs_by_id(cim_client_t *c, uint32_t session_type, uint64_t session_id, const uint64_t *ids,
                   size_t n, CIM__Def__CIMGetMsgByIdRsp **out, uint32_t *result_code)
{
    if (result_code)
        *result_code = 0;
    *out = NULL;
    char *strs = calloc(n ? n : 1, 24);
    char **list = calloc(n ? n : 1, sizeof(char *));
    if (!strs || !list) {
        free(strs);
        free(list);
        return CIM_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        list[i] = strs + i * 24;
        snprintf(list[i], 24, "%llu", (unsigned long long) ids[i]);
    }
    CIM__Def__CIMGetMsgByIdReq req = CIM__DEF__CIMGET_MSG_BY_ID_REQ__INIT;
    req.user_id = c->uid;
    req.session_type = (CIM__Def__CIMSessionType) session_type;
    req.session_id = session_id;
    req.n_msg_id_list = n;
    req.msg_id_list = list;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_MSG_BY_ID_REQ, &req.base, IM_CMD_MSG_BY_ID_RSP,
                      &cim__def__cimget_msg_by_id_rsp__descriptor, &m, c->call_timeout_ms);
    free(strs);
    free(list);
    if (rc != 0)
        return rc;
    *out = (CIM__Def__CIMGetMsgByIdRsp *) m;
    if (result_code)
        *result_code = (*out)->result_code;
    return code_rc((*out)->result_code);
}

/* ------------------------------------------------------------------ names */

const char *cim_strerror(int rc)
{
    switch (rc) {
    case CIM_OK:
        return "ok";
    case CIM_EINVAL:
        return "invalid argument";
    case CIM_ETIMEDOUT:
        return "timed out";
    case CIM_ECLOSED:
        return "connection closed by the server";
    case CIM_EPROTO:
        return "protocol error";
    case CIM_ENOMEM:
        return "out of memory";
    case CIM_ENOTCONN:
        return "not connected";
    case CIM_EIO:
        return "socket error";
    case CIM_ERESULT:
        return "refused by the server";
    case CIM_ENOTOKEN:
        return "no token to log in with";
    case CIM_ETLS:
        return "TLS handshake failed";
    default:
        break;
    }
    if (rc < 0 && rc > -4096)
        return strerror(-rc);
    return "unknown error";
}

const char *cim_result_name(uint32_t code)
{
    switch (code) {
    case 0:
        return "UNKNOWN";
    case IM_ERR_SUCCESS:
        return "SUCCESS";
    case IM_ERR_INTERNAL:
        return "INTERNAL_ERROR";
    case IM_ERR_LOGIN_DB_VALIDATE_FAILED:
        return "LOGIN_DB_VALIDATE_FAILED";
    case IM_ERR_LOGIN_VERSION_TOO_OLD:
        return "LOGIN_VERSION_TOO_OLD";
    case IM_ERR_LOGIN_INVALID_TOKEN:
        return "LOGIN_INVALID_USER_TOKEN";
    case IM_ERR_LOGIN_INVALID_USER_OR_PWD:
        return "LOGIN_INVALID_USER_OR_PWD";
    case IM_ERR_INVALID_PARAMETER:
        return "INVALID_PARAMETER";
    case IM_ERR_PERMISSION_DENIED:
        return "PERMISSION_DENIED";
    case IM_ERR_NOT_FOUND:
        return "NOT_FOUND";
    case IM_ERR_RATE_LIMITED:
        return "RATE_LIMITED";
    case IM_ERR_PAYLOAD_TOO_LARGE:
        return "PAYLOAD_TOO_LARGE";
    case IM_ERR_STORAGE_UNAVAILABLE:
        return "STORAGE_UNAVAILABLE";
    case IM_ERR_NOT_LOGGED_IN:
        return "NOT_LOGGED_IN";
    case IM_ERR_USER_ALREADY_EXIST:
        return "USER_ALREADY_EXIST";
    case IM_ERR_USER_INVALID_PARAMETER:
        return "USER_INVALID_PARAMETER";
    case IM_ERR_USER_NOT_EXIST:
        return "USER_NOT_EXIST";
    default:
        return "UNKNOWN";
    }
}

static const struct {
    uint16_t cmd;
    const char *name;
} cmd_names[] = {
    {IM_CMD_AUTH_TOKEN_REQ, "CIMAuthTokenReq"},
    {IM_CMD_AUTH_TOKEN_RSP, "CIMAuthTokenRsp"},
    {IM_CMD_LOGOUT_REQ, "CIMLogoutReq"},
    {IM_CMD_LOGOUT_RSP, "CIMLogoutRsp"},
    {IM_CMD_HEARTBEAT, "CIMHeartBeat"},
    {IM_CMD_AUTH_REQ, "CIMAuthReq"},
    {IM_CMD_AUTH_RSP, "CIMAuthRsp"},
    {IM_CMD_REGISTER_REQ, "CIMRegisterReq"},
    {IM_CMD_REGISTER_RSP, "CIMRegisterRsp"},
    {IM_CMD_KICKOUT_NOTIFY, "CIMKickoutNotify"},
    {IM_CMD_RECENT_SESSION_REQ, "CIMRecentContactSessionReq"},
    {IM_CMD_RECENT_SESSION_RSP, "CIMRecentContactSessionRsp"},
    {IM_CMD_MSG_LIST_REQ, "CIMGetMsgListReq"},
    {IM_CMD_MSG_LIST_RSP, "CIMGetMsgListRsp"},
    {IM_CMD_SYNC_REQ, "CIMSyncReq"},
    {IM_CMD_SYNC_RSP, "CIMSyncRsp"},
    {IM_CMD_MSG_DATA, "CIMMsgData"},
    {IM_CMD_MSG_DATA_ACK, "CIMMsgDataAck"},
    {IM_CMD_MSG_READ_ACK, "CIMMsgDataReadAck"},
    {IM_CMD_MSG_READ_NOTIFY, "CIMMsgDataReadNotify"},
    {IM_CMD_LATEST_MSG_ID_REQ, "CIMGetLatestMsgIdReq"},
    {IM_CMD_LATEST_MSG_ID_RSP, "CIMGetLatestMsgIdRsp"},
    {IM_CMD_MSG_BY_ID_REQ, "CIMGetMsgByIdReq"},
    {IM_CMD_MSG_BY_ID_RSP, "CIMGetMsgByIdRsp"},
    {IM_CMD_RECALL_REQ, "CIMMsgRecallReq"},
    {IM_CMD_RECALL_RSP, "CIMMsgRecallRsp"},
    {IM_CMD_RECALL_NOTIFY, "CIMMsgRecallNotify"},
    {IM_CMD_GROUP_CREATE_REQ, "CIMGroupCreateReq"},
    {IM_CMD_GROUP_CREATE_RSP, "CIMGroupCreateRsp"},
    {IM_CMD_GROUP_DISBAND_REQ, "CIMGroupDisbandingReq"},
    {IM_CMD_GROUP_DISBAND_RSP, "CIMGroupDisbandingRsp"},
    {IM_CMD_GROUP_EXIT_REQ, "CIMGroupExitReq"},
    {IM_CMD_GROUP_EXIT_RSP, "CIMGroupExitRsp"},
    {IM_CMD_GROUP_LIST_REQ, "CIMGroupListReq"},
    {IM_CMD_GROUP_LIST_RSP, "CIMGroupListRsp"},
    {IM_CMD_GROUP_INFO_REQ, "CIMGroupInfoReq"},
    {IM_CMD_GROUP_INFO_RSP, "CIMGroupInfoRsp"},
    {IM_CMD_GROUP_INVITE_REQ, "CIMGroupInviteMemberReq"},
    {IM_CMD_GROUP_INVITE_RSP, "CIMGroupInviteMemberRsp"},
    {IM_CMD_GROUP_KICK_REQ, "CIMGroupKickOutMemberReq"},
    {IM_CMD_GROUP_KICK_RSP, "CIMGroupKickOutMemberRsp"},
    {IM_CMD_GROUP_MEMBER_CHANGED, "CIMGroupMemberChangedNotify"},
    {IM_CMD_GROUP_MEMBER_LIST_REQ, "CIMGroupMemberListReq"},
    {IM_CMD_GROUP_MEMBER_LIST_RSP, "CIMGroupMemberListRsp"},
    {IM_CMD_GROUP_JOIN_REQ, "CIMGroupJoinReq"},
    {IM_CMD_GROUP_JOIN_RSP, "CIMGroupJoinRsp"},
    {IM_CMD_USER_LIST_REQ, "CIMQueryUserListReq"},
    {IM_CMD_USER_LIST_RSP, "CIMQueryUserListRsp"},
    {IM_CMD_ONLINE_LIST_REQ, "CIMOnlineUserListReq"},
    {IM_CMD_ONLINE_LIST_RSP, "CIMOnlineUserListRsp"},
    {IM_CMD_PRESENCE_NOTIFY, "CIMPresenceNotify"},
};

const char *cim_cmd_name(uint16_t cmd)
{
    for (size_t i = 0; i < sizeof(cmd_names) / sizeof(cmd_names[0]); i++)
        if (cmd_names[i].cmd == cmd)
            return cmd_names[i].name;
    return "unknown";
}
