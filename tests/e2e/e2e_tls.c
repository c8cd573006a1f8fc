/* End-to-end TLS on the gate (gate_tls_port, gate_wss_port) and in libcim / the console.
 *
 * Each case generates a self-signed certificate (EC P-256, CN=localhost, subjectAltName
 * DNS:localhost and IP:127.0.0.1, 1 day) with the openssl command in $CIM_TEST_DIR, starts a
 * private msg_gate with TLS ports on free ports (e2e_pgate.h; its log is
 * $CIM_TEST_DIR/log/gate-tls-PORT.log, under valgrind with VALGRIND=1) and checks: login by
 * token and a 1:1 chat with a plain-TCP client of the stack's gate; heartbeats and packets
 * bigger than a TLS record both ways; plain bytes on the TLS ports closed while the gate keeps
 * serving; connections without a (complete) handshake closed after the auth timeout; a bad
 * frame inside TLS closed like on TCP; close_notify on graceful closes; a client checking
 * against the wrong CA (or name) failing cleanly; a gate with a bad certificate or key not
 * starting; the console's --tls options. Every private gate must exit 0 on SIGTERM with a
 * clean log. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "../test.h"
#include "e2e_common.h"
#include "e2e_msg_common.h"
#include "e2e_pgate.h"
#include "im_codec.h"

static char g_dir[512];  /* this case's certificate directory */
static char g_cert[600]; /* the gate's certificate (also the CA to check against) */
static char g_key[600];
static char g_other[600]; /* another self-signed certificate: the "wrong CA" */
static char g_other_key[600];

/* ------------------------------------------------------------------ setup */

static void gen_cert(const char *cert, const char *key, const char *cn, const char *san)
{
    char cmd[2400];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
             "-subj '/CN=%s' -addext 'subjectAltName=%s' -keyout '%s' -out '%s' "
             ">'%s/openssl.out' 2>&1",
             cn, san, key, cert, g_dir);
    int st = system(cmd);
    if (st != 0)
        fprintf(stderr, "  %s: exit status %d (see %s/openssl.out)\n", cmd, st, g_dir);
    CHECK_EQ_INT(st, 0);
}

/* certificates in $CIM_TEST_DIR/tls-PID (one directory per case) */
static void tls_setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_dir, sizeof(g_dir), "%s/tls-%d", e2e_env("CIM_TEST_DIR"), (int) getpid());
    CHECK(mkdir(g_dir, 0700) == 0 || errno == EEXIST);
    snprintf(g_cert, sizeof(g_cert), "%s/cert.pem", g_dir);
    snprintf(g_key, sizeof(g_key), "%s/key.pem", g_dir);
    snprintf(g_other, sizeof(g_other), "%s/other.pem", g_dir);
    snprintf(g_other_key, sizeof(g_other_key), "%s/other-key.pem", g_dir);
    gen_cert(g_cert, g_key, "localhost", "DNS:localhost,IP:127.0.0.1");
    gen_cert(g_other, g_other_key, "localhost", "DNS:localhost,IP:127.0.0.1");
}

typedef struct tgate_s {
    pgate_t g;
    int tls_port, wss_port;
    char tls_addr[64], wss_addr[64];
} tgate_t;

/* a private gate with both TLS ports on g_cert/g_key, plus extra flags. Its login deadline is
 * 30 s (unauthenticated clients do several things here; under valgrind a handshake alone can
 * take a second or two); the case about the deadline sets its own. */
static void tgate_start(tgate_t *t, const char *const *extra)
{
    memset(t, 0, sizeof(*t));
    t->tls_port = pgate_free_port();
    t->wss_port = pgate_free_port();
    snprintf(t->tls_addr, sizeof(t->tls_addr), "127.0.0.1:%d", t->tls_port);
    snprintf(t->wss_addr, sizeof(t->wss_addr), "127.0.0.1:%d", t->wss_port);
    char a_tls[64], a_wss[64], a_cert[700], a_key[700];
    snprintf(a_tls, sizeof(a_tls), "--gate_tls_port=%d", t->tls_port);
    snprintf(a_wss, sizeof(a_wss), "--gate_wss_port=%d", t->wss_port);
    snprintf(a_cert, sizeof(a_cert), "--gate_tls_cert=%s", g_cert);
    snprintf(a_key, sizeof(a_key), "--gate_tls_key=%s", g_key);
    const char *flags[32] = {a_tls, a_wss, a_cert, a_key, "--gate_auth_timeout=30"};
    int n = 5;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        flags[n++] = extra[i];
    flags[n] = NULL;
    pgate_spawn(&t->g, "gate-tls", 1, flags);
    const char *pfx = getenv("STACK_PREFIX");
    int wait = pfx && *pfx ? 180000 : 60000;
    pgate_wait_ready(&t->g, wait);
    pgate_wait_known(&t->g, wait); /* deliveries to its users go through */
}

/* occurrences of needle in the gate's log */
static int log_count(const pgate_t *g, const char *needle)
{
    FILE *f = fopen(g->log, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

/* wait up to ms for the log to show needle at least `want` times; the count */
static int log_wait(const pgate_t *g, const char *needle, int want, int ms)
{
    int64_t until = e2e_now_ms() + ms;
    int n;
    while ((n = log_count(g, needle)) < want && e2e_now_ms() < until)
        e2e_sleep_ms(100);
    return n;
}

/* SIGTERM: the gate must exit 0 without a sanitizer report */
static void tgate_stop(tgate_t *t)
{
    int rc = pgate_stop(&t->g);
    if (rc != 0)
        fprintf(stderr, "  private gate exit status %d (see %s)\n", rc, t->g.log);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(log_count(&t->g, "Sanitizer"), 0);
    CHECK_EQ_INT(log_count(&t->g, "runtime error"), 0);
}

/* a gauge or counter from the gate's /metrics (-1 when missing) */
static long long metric(const pgate_t *g, const char *name)
{
    e2e_http_rsp_t r;
    CHECK_EQ_INT(e2e_http(g->maddr, "GET", "/metrics", NULL, NULL, &r), 0);
    long long v = -1;
    size_t nl = strlen(name);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, nl) && p[nl] == ' ') {
            v = atoll(p + nl + 1);
            break;
        }
    e2e_http_rsp_free(&r);
    return v;
}

/* a libcim client on a TLS port; connect result in *rc (NULL: must succeed) */
static cim_client_t *tls_client_rc(const char *host, int port, int mode, const char *ca, int *rc)
{
    cim_client_t *c = cim_client_new();
    CHECK(c != NULL);
    CHECK_EQ_INT(cim_set_tls(c, mode, ca), 0);
    cim_set_call_timeout(c, E2E_CALL_MS);
    cim_set_heartbeat_interval(c, 0);
    int r = cim_connect(c, host, port, 10000);
    if (rc)
        *rc = r;
    else {
        if (r != 0)
            fprintf(stderr, "  TLS connect %s:%d: %s (%s)\n", host, port, cim_strerror(r),
                    cim_tls_error(c));
        CHECK_EQ_INT(r, 0);
        CHECK(cim_is_tls(c));
    }
    return c;
}

static cim_client_t *tls_client(const tgate_t *t)
{
    return tls_client_rc("127.0.0.1", t->tls_port, CIM_TLS_VERIFY, g_cert, NULL);
}

/* a new user through the business API: id, token (>= 256 bytes) and name (>= 40 bytes) */
static uint64_t api_user(const char *tag, char *token, char *name)
{
    char nm[40], body[256];
    e2e_uniq(nm, sizeof(nm), tag);
    snprintf(body, sizeof(body), "{\"user_name\":\"%s\",\"nick_name\":\"%s\",\"password\":\"%s\"}",
             nm, nm, E2E_PWD);
    e2e_http_rsp_t r;
    CHECK_EQ_INT(
        e2e_http(e2e_env("CIM_API"), "POST", "/api/v1/users", e2e_env("CIM_API_KEY"), body, &r), 0);
    if (r.status != 200)
        fprintf(stderr, "  POST /api/v1/users: %d %s\n", r.status, r.body ? r.body : "");
    CHECK_EQ_INT(r.status, 200);
    long long uid = e2e_json_int(&r, "user_id", 0);
    const char *tok = e2e_json_str(&r, "token");
    CHECK(uid > 0);
    CHECK(tok && *tok && strlen(tok) < 256);
    snprintf(token, 256, "%s", tok);
    if (name)
        snprintf(name, 40, "%s", nm);
    e2e_http_rsp_free(&r);
    return (uint64_t) uid;
}

/* ------------------------------------------------------------------ a raw OpenSSL client
 * (blocking socket): to see what libcim hides, such as close_notify */

typedef struct rtls_s {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
} rtls_t;

/* handshake with no certificate check; max_version 0 = any. 0 or -1 */
static int rtls_connect(rtls_t *t, const char *addr, int max_version)
{
    memset(t, 0, sizeof(*t));
    t->fd = raw_connect(addr);
    CHECK(t->fd >= 0);
    struct timeval tv = {10, 0};
    setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(t->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    t->ctx = SSL_CTX_new(TLS_client_method());
    CHECK(t->ctx != NULL);
    if (max_version)
        SSL_CTX_set_max_proto_version(t->ctx, max_version);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
    t->ssl = SSL_new(t->ctx);
    CHECK(t->ssl != NULL);
    SSL_set_fd(t->ssl, t->fd);
    return SSL_connect(t->ssl) == 1 ? 0 : -1;
}

static void rtls_free(rtls_t *t)
{
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    if (t->fd >= 0)
        close(t->fd);
    ERR_clear_error();
    memset(t, 0, sizeof(*t));
    t->fd = -1;
}

static void rtls_write(rtls_t *t, const void *p, size_t n)
{
    CHECK_EQ_INT(SSL_write(t->ssl, p, (int) n), (int) n);
}

/* exactly n bytes: n, or the SSL_get_error code negated when the stream ended first */
static int rtls_read_n(rtls_t *t, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        int r = SSL_read(t->ssl, buf + got, (int) (n - got));
        if (r <= 0)
            return -SSL_get_error(t->ssl, r);
        got += (size_t) r;
    }
    return (int) n;
}

/* one packet: its command, *seq; or the negated SSL error */
static int rtls_read_packet(rtls_t *t, uint16_t *seq)
{
    uint8_t h[IM_HEADER_LEN], body[65536];
    int r = rtls_read_n(t, h, sizeof(h));
    if (r < 0)
        return r;
    uint32_t len = (uint32_t) h[0] << 24 | (uint32_t) h[1] << 16 | (uint32_t) h[2] << 8 | h[3];
    CHECK(len >= IM_HEADER_LEN && len - IM_HEADER_LEN <= sizeof(body));
    if (len > IM_HEADER_LEN && (r = rtls_read_n(t, body, len - IM_HEADER_LEN)) < 0)
        return r;
    if (seq)
        *seq = (uint16_t) (h[12] << 8 | h[13]);
    return h[10] << 8 | h[11];
}

/* ------------------------------------------------------------------ (a) (b) */

TEST(tls_token_login_chat_and_heartbeat)
{
    tls_setup();
    tgate_t t;
    tgate_start(&t, NULL);
    char token[256];
    uint64_t auid = api_user("tlsa", token, NULL);
    cim_client_t *a = tls_client(&t);
    uint32_t code = 0;
    int rc = cim_login_token(a, auid, token, IM_CT_PC_WINDOWS, &code);
    if (rc != 0)
        fprintf(stderr, "  token login over TLS: %s, code %u\n", cim_strerror(rc), code);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(code, 200);
    CHECK_EQ_INT(cim_user_id(a), auid);
    cim_set_heartbeat_interval(a, MSG_HB_MS);

    /* a plain-TCP user on the stack's gate */
    uint64_t buid;
    cim_client_t *b = msg_user("CIM_GATE1", "tlsb", IM_CT_PC_WINDOWS, &buid, NULL);

    cim_ack_t ack;
    uint64_t id = msg_send_ok(a, buid, "hello from TLS", &ack);
    CIM__Def__CIMMsgData *d = msg_next(b, 15000);
    CHECK(d != NULL);
    CHECK(msg_body_is(d, "hello from TLS"));
    CHECK_EQ_INT(d->from_user_id, auid);
    CHECK_EQ_INT(d->server_msg_id, id);
    cim__def__cimmsg_data__free_unpacked(d, NULL);

    id = msg_send_ok(b, auid, "hello back over plain TCP", NULL);
    d = msg_next(a, 15000);
    CHECK(d != NULL);
    CHECK(msg_body_is(d, "hello back over plain TCP"));
    CHECK_EQ_INT(d->from_user_id, buid);
    CHECK_EQ_INT(d->server_msg_id, id);
    cim__def__cimmsg_data__free_unpacked(d, NULL);

    /* (b) heartbeat echo over TLS */
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(cim_heartbeat(a, 5000), 0);

    /* packets bigger than one TLS record, both ways: a 60 KB heartbeat (the gate reassembles
     * it from four records) and 3 x 16 KB messages read back in one sync page (~48 KB) */
    cim_set_heartbeat_interval(a, 0);
    static uint8_t big[IM_HEADER_LEN + 60000];
    im_codec_write_header(big, IM_CMD_HEARTBEAT, 60001, 60000);
    memset(big + IM_HEADER_LEN, 'h', 60000);
    CHECK_EQ_INT(cim_send_raw(a, big, sizeof(big)), 0);
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(a, IM_CMD_HEARTBEAT, 10000, &p), 0);
    CHECK_EQ_INT(p->seq, 60001);
    cim_packet_free(p);
    cim_set_heartbeat_interval(a, MSG_HB_MS);

    static char text[16000];
    memset(text, 'x', sizeof(text));
    for (int i = 0; i < 3; i++) {
        text[0] = (char) ('0' + i);
        cim_msg_out_t m = {.to = auid, .data = text, .len = sizeof(text)};
        CHECK_EQ_INT(cim_send_msg(b, &m, &ack), 0);
        d = msg_next(a, 15000);
        CHECK(d != NULL);
        CHECK_EQ_INT(d->msg_data.len, sizeof(text));
        CHECK_EQ_INT(d->msg_data.data[0], '0' + i);
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    /* and from the TLS side: one 16 KB message (two records from libcim) */
    cim_msg_out_t m = {.to = buid, .data = text, .len = sizeof(text)};
    CHECK_EQ_INT(cim_send_msg(a, &m, &ack), 0);
    CHECK_EQ_INT(ack.res_code, CIM_RES_OK);
    CHECK(msg_wait_push(b, ack.server_msg_id, 15000));

    CIM__Def__CIMSyncRsp *s = NULL;
    CHECK_EQ_INT(cim_sync_page(a, 0, 0, &s, &code), 0);
    size_t bytes = 0;
    for (size_t i = 0; i < s->n_msg_list; i++)
        bytes += s->msg_list[i]->msg_data.len;
    fprintf(stderr, "  sync over TLS: %zu messages, %zu bytes of text\n", s->n_msg_list, bytes);
    CHECK(s->n_msg_list >= 5);
    CHECK(bytes >= 4 * sizeof(text));
    cim__def__cimsync_rsp__free_unpacked(s, NULL);

    CHECK(metric(&t.g, "cim_gate_tls_connections") >= 1);
    CHECK_EQ_INT(metric(&t.g, "cim_gate_tls_handshake_failures_total"), 0);

    /* logout: the gate answers, then closes gracefully */
    CHECK_EQ_INT(cim_logout(a, &code), 0);
    CHECK(cim_wait_closed(a, 10000));
    cim_client_free(a);
    cim_client_free(b);
    tgate_stop(&t);
}

/* a graceful close (command before login: error reply, then close) ends with close_notify;
 * TLS 1.2 works and gets an ECDHE AEAD suite */
TEST(tls_close_notify_and_tls12)
{
    tls_setup();
    tgate_t t;
    tgate_start(&t, NULL);
    rtls_t r;
    CHECK_EQ_INT(rtls_connect(&r, t.tls_addr, 0), 0);
    fprintf(stderr, "  default: %s %s\n", SSL_get_version(r.ssl), SSL_get_cipher_name(r.ssl));
    CHECK(SSL_version(r.ssl) >= TLS1_2_VERSION);
    uint8_t h[IM_HEADER_LEN];
    im_codec_write_header(h, IM_CMD_HEARTBEAT, 7, 0);
    rtls_write(&r, h, sizeof(h));
    uint16_t seq = 0;
    CHECK_EQ_INT(rtls_read_packet(&r, &seq), IM_CMD_HEARTBEAT);
    CHECK_EQ_INT(seq, 7);
    im_codec_write_header(h, IM_CMD_RECENT_SESSION_REQ, 8, 0); /* not allowed before login */
    rtls_write(&r, h, sizeof(h));
    CHECK_EQ_INT(rtls_read_packet(&r, &seq), IM_CMD_RECENT_SESSION_RSP);
    CHECK_EQ_INT(seq, 8);
    int end = rtls_read_packet(&r, NULL);
    fprintf(stderr, "  after the error reply: SSL_get_error %d\n", -end);
    CHECK_EQ_INT(end, -SSL_ERROR_ZERO_RETURN); /* close_notify */
    rtls_free(&r);

    CHECK_EQ_INT(rtls_connect(&r, t.tls_addr, TLS1_2_VERSION), 0);
    const char *cipher = SSL_get_cipher_name(r.ssl);
    fprintf(stderr, "  TLS 1.2 client: %s %s\n", SSL_get_version(r.ssl), cipher);
    CHECK_EQ_INT(SSL_version(r.ssl), TLS1_2_VERSION);
    CHECK(!strncmp(cipher, "ECDHE-", 6));
    CHECK(strstr(cipher, "GCM") || strstr(cipher, "CHACHA20"));
    im_codec_write_header(h, IM_CMD_HEARTBEAT, 9, 0);
    rtls_write(&r, h, sizeof(h));
    CHECK_EQ_INT(rtls_read_packet(&r, &seq), IM_CMD_HEARTBEAT);
    CHECK_EQ_INT(seq, 9);
    rtls_free(&r);
    tgate_stop(&t);
}

/* ------------------------------------------------------------------ (c) */

TEST(tls_port_plain_bytes_closed)
{
    tls_setup();
    tgate_t t;
    tgate_start(&t, NULL);
    /* a binary heartbeat, an HTTP request, a plain WebSocket upgrade: not TLS */
    uint8_t h[IM_HEADER_LEN];
    im_codec_write_header(h, IM_CMD_HEARTBEAT, 1, 0);
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char upg[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
                              "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n";
    struct {
        const char *addr;
        const void *bytes;
        size_t len;
    } cases[] = {{t.tls_addr, h, sizeof(h)},
                 {t.tls_addr, http, sizeof(http) - 1},
                 {t.wss_addr, upg, sizeof(upg) - 1},
                 {t.wss_addr, h, sizeof(h)}};
    int n = (int) (sizeof(cases) / sizeof(cases[0]));
    for (int i = 0; i < n; i++) {
        int fd = raw_connect(cases[i].addr);
        CHECK(fd >= 0);
        CHECK_EQ_INT(send(fd, cases[i].bytes, cases[i].len, MSG_NOSIGNAL), (ssize_t) cases[i].len);
        int64_t t0 = e2e_now_ms();
        CHECK(raw_closed_within(fd, 5000));
        fprintf(stderr, "  plain bytes #%d: closed after %lld ms\n", i,
                (long long) (e2e_now_ms() - t0));
        close(fd);
    }
    CHECK(log_wait(&t.g, "TLS handshake failed", n, 5000) >= n);
    CHECK_EQ_INT(metric(&t.g, "cim_gate_tls_handshake_failures_total"), n);
    /* the gate still serves: TLS and plain */
    cim_client_t *c = tls_client(&t);
    CHECK_EQ_INT(cim_heartbeat(c, 5000), 0);
    cim_client_free(c);
    c = cim_client_new();
    CHECK_EQ_INT(cim_connect_addr(c, t.g.addr, E2E_CONNECT_MS), 0);
    CHECK_EQ_INT(cim_heartbeat(c, 5000), 0);
    cim_client_free(c);
    tgate_stop(&t);
}

/* ------------------------------------------------------------------ (d) */

TEST(tls_no_handshake_closed_after_auth_timeout)
{
    tls_setup();
    tgate_t t;
    const char *deadline[] = {"--gate_auth_timeout=4", NULL};
    tgate_start(&t, deadline);
    int64_t t0 = e2e_now_ms();
    int silent = raw_connect(t.tls_addr);
    CHECK(silent >= 0);
    int slow = raw_connect(t.tls_addr);
    CHECK(slow >= 0);
    /* a handshake that completes but no login (a handshake slower than the deadline, as under
     * valgrind on a busy machine, is closed just the same) */
    int rc;
    cim_client_t *idle = tls_client_rc("127.0.0.1", t.tls_port, CIM_TLS_VERIFY, g_cert, &rc);
    if (rc != 0)
        fprintf(stderr, "  handshake-only client: %s (%s)\n", cim_strerror(rc),
                cim_tls_error(idle));
    CHECK(rc == 0 || rc == CIM_ECLOSED);
    /* a TLS handshake record header announcing 512 bytes, then a byte at a time */
    static const uint8_t rec[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03};
    int closed = 0, sent = 0;
    while (!closed && e2e_now_ms() - t0 < 30000) {
        uint8_t b = sent < (int) sizeof(rec) ? rec[sent] : 0x42;
        if (send(slow, &b, 1, MSG_NOSIGNAL) != 1) {
            closed = 1;
            break;
        }
        sent++;
        closed = raw_closed_within(slow, 250);
    }
    double secs = (double) (e2e_now_ms() - t0) / 1000.0;
    fprintf(stderr, "  byte-at-a-time handshake: %d bytes, closed %d after %.1f s\n", sent, closed,
            secs);
    CHECK(closed);
    CHECK(secs >= 3.5 && secs < 30.0);
    CHECK(raw_closed_within(silent, 15000));
    CHECK(cim_wait_closed(idle, 15000));
    secs = (double) (e2e_now_ms() - t0) / 1000.0;
    fprintf(stderr, "  silent and handshake-only connections closed by %.1f s\n", secs);
    close(silent);
    close(slow);
    cim_client_free(idle);
    CHECK(log_wait(&t.g, "no login within 4 s", 3, 5000) >= 3);
    CHECK(metric(&t.g, "cim_gate_auth_timeouts_total") >= 3);
    CHECK_EQ_INT(metric(&t.g, "cim_gate_tls_connections"), 0);
    tgate_stop(&t);
}

/* ------------------------------------------------------------------ (e) */

TEST(tls_bad_frame_after_handshake)
{
    tls_setup();
    tgate_t t;
    tgate_start(&t, NULL);
    char token[256];
    uint64_t uid = api_user("tlse", token, NULL);
    cim_client_t *ok = tls_client(&t);
    uint32_t code = 0;
    CHECK_EQ_INT(cim_login_token(ok, uid, token, IM_CT_PC_WINDOWS, &code), 0);

    /* version 2 header, before login */
    cim_client_t *c = tls_client(&t);
    CHECK_EQ_INT(cim_heartbeat(c, 5000), 0);
    uint8_t h[IM_HEADER_LEN];
    im_codec_write_header(h, IM_CMD_HEARTBEAT, 3, 0);
    h[5] = 2;
    CHECK_EQ_INT(cim_send_raw(c, h, sizeof(h)), 0);
    CHECK(cim_wait_closed(c, 5000));
    cim_client_free(c);
    /* length below the header size, from a logged-in client (another device type) */
    c = tls_client(&t);
    CHECK_EQ_INT(cim_login_token(c, uid, token, IM_CT_ANDROID, &code), 0);
    im_codec_write_header(h, IM_CMD_HEARTBEAT, 4, 0);
    h[3] = 8;
    CHECK_EQ_INT(cim_send_raw(c, h, sizeof(h)), 0);
    CHECK(cim_wait_closed(c, 5000));
    cim_client_free(c);

    CHECK(log_wait(&t.g, "protocol error", 2, 5000) >= 2);
    CHECK_EQ_INT(metric(&t.g, "cim_gate_protocol_errors_total"), 2);
    CHECK_EQ_INT(metric(&t.g, "cim_gate_tls_handshake_failures_total"), 0);
    /* the other TLS client is untouched */
    CHECK_EQ_INT(cim_heartbeat(ok, 5000), 0);
    CHECK(cim_logged_in(ok));
    cim_client_free(ok);
    tgate_stop(&t);
}

/* ------------------------------------------------------------------ (f) */

TEST(tls_client_wrong_ca_or_name)
{
    tls_setup();
    tgate_t t;
    tgate_start(&t, NULL);
    int rc;
    /* another self-signed certificate as the CA */
    cim_client_t *c = tls_client_rc("127.0.0.1", t.tls_port, CIM_TLS_VERIFY, g_other, &rc);
    fprintf(stderr, "  wrong CA: %s (%s)\n", cim_strerror(rc), cim_tls_error(c));
    CHECK_EQ_INT(rc, CIM_ETLS);
    CHECK(strstr(cim_tls_error(c), "certificate verify failed") != NULL);
    CHECK(!cim_is_connected(c));
    CHECK_EQ_INT(cim_heartbeat(c, 1000), CIM_ENOTCONN);
    cim_client_free(c);
    /* the system CAs do not know it either */
    c = tls_client_rc("127.0.0.1", t.tls_port, CIM_TLS_VERIFY, NULL, &rc);
    CHECK_EQ_INT(rc, CIM_ETLS);
    cim_client_free(c);
    /* the right CA but a name the certificate does not hold ("127.1" is 127.0.0.1 to the
     * resolver, a host name to the check) */
    c = tls_client_rc("127.1", t.tls_port, CIM_TLS_VERIFY, g_cert, &rc);
    fprintf(stderr, "  wrong name: %s (%s)\n", cim_strerror(rc), cim_tls_error(c));
    CHECK_EQ_INT(rc, CIM_ETLS);
    CHECK(strstr(cim_tls_error(c), "certificate verify failed") != NULL);
    cim_client_free(c);
    /* the right name (SNI + DNS name check) */
    c = tls_client_rc("localhost", t.tls_port, CIM_TLS_VERIFY, g_cert, NULL);
    CHECK_EQ_INT(cim_heartbeat(c, 5000), 0);
    cim_client_free(c);
    /* a CA file that is not there */
    c = cim_client_new();
    CHECK_EQ_INT(cim_set_tls(c, CIM_TLS_VERIFY, "/nonexistent/ca.pem"), CIM_EINVAL);
    CHECK(strstr(cim_tls_error(c), "/nonexistent/ca.pem") != NULL);
    cim_client_free(c);
    /* TLS to a plain port: the gate takes the ClientHello for a bad frame and closes */
    c = tls_client_rc("127.0.0.1", t.g.port, CIM_TLS_INSECURE, NULL, &rc);
    fprintf(stderr, "  TLS to the plain port: %s (%s)\n", cim_strerror(rc), cim_tls_error(c));
    CHECK(rc == CIM_ECLOSED || rc == CIM_ETLS);
    cim_client_free(c);
    /* insecure mode connects whatever the certificate */
    c = tls_client_rc("127.0.0.1", t.tls_port, CIM_TLS_INSECURE, g_other, NULL);
    CHECK_EQ_INT(cim_heartbeat(c, 5000), 0);
    cim_client_free(c);
    /* the gate saw the refusals (the clients' alerts) and serves on */
    CHECK(log_wait(&t.g, "TLS handshake failed", 3, 5000) >= 3);
    CHECK(metric(&t.g, "cim_gate_tls_handshake_failures_total") >= 3);
    c = tls_client(&t);
    CHECK_EQ_INT(cim_heartbeat(c, 5000), 0);
    cim_client_free(c);
    tgate_stop(&t);
}

/* ------------------------------------------------------------------ (g) */

/* start a gate that must not start: its exit status; *out gets its log */
static int bad_gate(const char *const *flags, char *out, size_t cap)
{
    pgate_t g;
    pgate_spawn(&g, "gate-tlsbad", 1, flags);
    int64_t until = e2e_now_ms() + (g.stop_wait_ms > 10000 ? 120000 : 30000);
    int st = 0, rc = -1;
    while (e2e_now_ms() < until) {
        pid_t w = waitpid(g.pid, &st, WNOHANG);
        if (w == g.pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            break;
        }
        e2e_sleep_ms(50);
    }
    if (rc == -1) {
        fprintf(stderr, "  the gate did not exit (see %s)\n", g.log);
        pgate_stop(&g);
    } else {
        pgate_forget(&g);
    }
    out[0] = '\0';
    FILE *f = fopen(g.log, "r");
    if (f) {
        size_t n = fread(out, 1, cap - 1, f);
        out[n] = '\0';
        fclose(f);
    }
    return rc;
}

TEST(tls_gate_bad_cert_or_key_exits)
{
    tls_setup();
    char a_port[64], a_cert[700], a_key[700], a_other_cert[700], a_bad[700], a_nocert[700];

    snprintf(a_port, sizeof(a_port), "--gate_tls_port=%d", pgate_free_port());
    snprintf(a_cert, sizeof(a_cert), "--gate_tls_cert=%s", g_cert);
    snprintf(a_key, sizeof(a_key), "--gate_tls_key=%s", g_key);
    snprintf(a_other_cert, sizeof(a_other_cert), "--gate_tls_cert=%s", g_other);
    snprintf(a_nocert, sizeof(a_nocert), "--gate_tls_cert=%s/missing.pem", g_dir);
    char junk[600];
    snprintf(junk, sizeof(junk), "%s/junk.pem", g_dir);
    FILE *f = fopen(junk, "w");
    CHECK(f != NULL);
    fputs("this is not a certificate\n", f);
    fclose(f);
    snprintf(a_bad, sizeof(a_bad), "--gate_tls_cert=%s", junk);
    /* the right key with a passphrase: refused without a prompt */
    char cmd[2000], a_enc[700];
    snprintf(cmd, sizeof(cmd),
             "openssl pkey -in '%s' -aes256 -passout pass:secret -out '%s/enc-key.pem' 2>/dev/null",
             g_key, g_dir);
    CHECK_EQ_INT(system(cmd), 0);
    snprintf(a_enc, sizeof(a_enc), "--gate_tls_key=%s/enc-key.pem", g_dir);
    struct {
        const char *what, *flags[4], *want;
    } cases[] = {
        {"missing certificate file", {a_port, a_nocert, a_key, NULL}, "No such file"},
        {"not a certificate", {a_port, a_bad, a_key, NULL}, "not a usable PEM certificate"},
        {"key of another certificate", {a_port, a_other_cert, a_key, NULL}, "does not match"},
        {"encrypted key",
         {a_port, a_cert, a_enc, NULL},
         "not a usable unencrypted PEM private key"},
        {"TLS port without certificate", {a_port, NULL}, "need gate_tls_cert and gate_tls_key"},
    };
    static char out[65536];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = bad_gate(cases[i].flags, out, sizeof(out));
        const char *line = strstr(out, "ERROR");
        fprintf(stderr, "  %s: exit %d: %.*s\n", cases[i].what, rc,
                line ? (int) strcspn(line, "\n") : 0, line ? line : "");
        CHECK(rc > 0);
        CHECK(strstr(out, cases[i].want) != NULL);
        CHECK(strstr(out, "Sanitizer") == NULL);
    }
    /* the same files in order: the gate starts */
    const char *good[] = {a_port, a_cert, a_key, NULL};
    tgate_t t;
    memset(&t, 0, sizeof(t));
    pgate_spawn(&t.g, "gate-tls", 1, good);
    const char *pfx = getenv("STACK_PREFIX");
    pgate_wait_ready(&t.g, pfx && *pfx ? 180000 : 60000);
    tgate_stop(&t);
}

/* ------------------------------------------------------------------ the console */

typedef struct run_s {
    char out[16384];
    int status;
} run_t;

static void console(const char *script, const char *args, run_t *r)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "printf '%%s' '%s' | '%s/cim' %s 2>&1", script, e2e_env("CIM_BIN"),
             args);
    fflush(stdout);
    fflush(stderr);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    size_t n = fread(r->out, 1, sizeof(r->out) - 1, f);
    r->out[n] = '\0';
    int st = pclose(f);
    r->status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
}

TEST(tls_console)
{
    tls_setup();
    tgate_t t;
    tgate_start(&t, NULL);
    char token[256], name[40], script[256], args[1024];
    uint64_t uid = api_user("tlscon", token, name);
    snprintf(script, sizeof(script), "login %s %s\nping\nwhoami\n", name, E2E_PWD);
    run_t r;
    snprintf(args, sizeof(args), "--gate %s --tls --tls-ca '%s'", t.tls_addr, g_cert);
    console(script, args, &r);
    fprintf(stderr, "  --tls --tls-ca: exit %d\n%s", r.status, r.out);
    CHECK_EQ_INT(r.status, 0);
    char want[128];
    snprintf(want, sizeof(want), "logged in as %s (uid %llu)", name, (unsigned long long) uid);
    CHECK(strstr(r.out, want) != NULL);
    CHECK(strstr(r.out, "pong from") != NULL);

    snprintf(args, sizeof(args), "--gate %s --tls-insecure", t.tls_addr);
    console(script, args, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(strstr(r.out, "pong from") != NULL);

    snprintf(args, sizeof(args), "--gate %s --tls", t.tls_addr); /* the system's CAs */
    console(script, args, &r);
    fprintf(stderr, "  --tls (system CAs): exit %d\n%s", r.status, r.out);
    CHECK_EQ_INT(r.status, 1);
    CHECK(strstr(r.out, "certificate verify failed") != NULL);

    snprintf(args, sizeof(args), "--gate %s --tls-ca /nonexistent.pem", t.tls_addr);
    console(script, args, &r);
    CHECK_EQ_INT(r.status, 2);
    tgate_stop(&t);
}

TEST_MAIN()
