/* gate_ws: browser clients on gate_ws_port.
 *
 * A connection starts as HTTP: a WebSocket upgrade (RFC 6455) switches it to wslay framing on
 * the same libuv stream; any other GET is answered from gate_web_root (the web page) and the
 * connection closed. Each binary message carries exactly one packet of PROTOCOL.md and goes
 * through the same packet handler as TCP clients (same auth rules, limits, kicks, metrics).
 * Close codes: 1002 protocol error (bad packet, text frame, unmasked frame), 1009 message too
 * big, 1008 policy (auth deadline, kick, not logged in, slow reader), 1000 otherwise.
 *
 * wslay is fed from the read callback (its recv callback hands out the bytes just read) and
 * writes through gate_conn_write_raw. Sends and closes requested while wslay is inside
 * wslay_event_recv are queued and flushed, or carried out, when it returns. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "gate.h"
#include "im_log.h"

#define HTTP_HEAD_MAX (8 * 1024)
#define WEB_FILE_MAX  (8 * 1024 * 1024)

enum { WS_HTTP = 0, WS_OPEN, WS_DONE };

struct gate_ws_s {
    int state;
    wslay_event_context_ptr ctx;
    char *head; /* HTTP request head while reading it */
    size_t head_len;
    const uint8_t *in; /* bytes being fed to wslay */
    size_t in_len;
    int in_recv;        /* inside wslay_event_recv */
    int deferred_close; /* a close asked for inside wslay_event_recv (reason), 0 none */
    int deferred_graceful;
    int close_queued;
};

static uint16_t close_code(int reason)
{
    switch (reason) {
    case CLOSE_PROTOCOL:
        return 1002;
    case CLOSE_KICKED:
    case CLOSE_AUTH_TIMEOUT:
    case CLOSE_NOT_AUTHED:
    case CLOSE_SLOW:
    case CLOSE_ABUSE:
        return 1008;
    case CLOSE_SHUTDOWN:
        return 1001;
    default:
        return 1000;
    }
}

/* ---------------------------------------------------------------- wslay callbacks */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    gate_conn_t *c = ud;
    gate_ws_t *ws = gate_conn_ws(c);
    (void) flags;
    if (!ws->in_len) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t) n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    gate_conn_t *c = ud;
    (void) flags;
    if (gate_conn_write_raw(c, data, len, NULL, 0) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t) len;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    gate_conn_t *c = ud;
    gate_t *g = gate_conn_gate(c);
    gate_ws_t *ws = gate_conn_ws(c);
    char peer[48];
    (void) ctx;
    if (ws->deferred_close || gate_conn_is_closing(c) || wslay_is_ctrl_frame(arg->opcode))
        return; /* pings are answered by wslay; a close is answered below */
    if (arg->opcode != WSLAY_BINARY_FRAME) {
        im_metric_add(g->m.proto_errors, 1);
        log_warn("ws conn peer %s: non-binary message: closed",
                 gate_conn_peer(c, peer, sizeof(peer)));
        gate_conn_close(c, CLOSE_PROTOCOL, 1);
        return;
    }
    im_packet_t p;
    size_t used = 0;
    int rc = im_codec_decode(arg->msg, arg->msg_length, (size_t) g->cfg.max_packet, &p, &used);
    if (rc != IM_OK || used != arg->msg_length) {
        im_metric_add(g->m.proto_errors, 1);
        log_warn("ws conn peer %s: message is not exactly one packet (%s): closed",
                 gate_conn_peer(c, peer, sizeof(peer)),
                 rc == IM_OK      ? "extra bytes"
                 : rc == IM_AGAIN ? "truncated"
                                  : im_codec_strerror(rc));
        gate_conn_close(c, CLOSE_PROTOCOL, 1);
        return;
    }
    gate_conn_handle_packet(c, &p);
}

static const struct wslay_event_callbacks callbacks = {
    recv_cb, send_cb, NULL, NULL, NULL, NULL, on_msg,
};

/* ---------------------------------------------------------------- HTTP */

static int http_reply(gate_conn_t *c, int status, const char *reason, const char *ctype,
                      const uint8_t *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason, ctype, len);
    return gate_conn_write_raw(c, (const uint8_t *) head, (size_t) n, body, len);
}

static const char *mime(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot)
        return "application/octet-stream";
    if (!strcmp(dot, ".html"))
        return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js") || !strcmp(dot, ".mjs"))
        return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css"))
        return "text/css; charset=utf-8";
    if (!strcmp(dot, ".png"))
        return "image/png";
    if (!strcmp(dot, ".svg"))
        return "image/svg+xml";
    if (!strcmp(dot, ".ico"))
        return "image/x-icon";
    if (!strcmp(dot, ".json"))
        return "application/json";
    if (!strcmp(dot, ".proto"))
        return "text/plain; charset=utf-8";
    return "application/octet-stream";
}

static void serve_file(gate_conn_t *c, const char *path)
{
    gate_t *g = gate_conn_gate(c);
    const char *root = g->cfg.gate_web_root;
    static const char nf[] = "not found\n";
    char clean[256];
    snprintf(clean, sizeof(clean), "%s", path);
    clean[strcspn(clean, "?#")] = 0; /* the query and fragment are the page's business */
    path = clean;
    if (!root || !*root || path[0] != '/' || strstr(path, "..") || strlen(path) > 200) {
        http_reply(c, 404, "Not Found", "text/plain", (const uint8_t *) nf, sizeof(nf) - 1);
        return;
    }
    for (const char *p = path; *p; p++)
        if (!isalnum((unsigned char) *p) && !strchr("/._-", *p)) {
            http_reply(c, 404, "Not Found", "text/plain", (const uint8_t *) nf, sizeof(nf) - 1);
            return;
        }
    char file[512];
    snprintf(file, sizeof(file), "%s%s", root, strcmp(path, "/") == 0 ? "/index.html" : path);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > WEB_FILE_MAX) {
        if (fd >= 0)
            close(fd);
        http_reply(c, 404, "Not Found", "text/plain", (const uint8_t *) nf, sizeof(nf) - 1);
        return;
    }
    uint8_t *buf = malloc((size_t) st.st_size + 1);
    ssize_t n = buf ? read(fd, buf, (size_t) st.st_size) : -1;
    close(fd);
    if (n != st.st_size) {
        free(buf);
        http_reply(c, 500, "Internal Server Error", "text/plain", NULL, 0);
        return;
    }
    http_reply(c, 200, "OK", mime(file), buf, (size_t) n);
    free(buf);
}

/* header value (case-insensitive name), copied into out; 0 when missing */
static int header(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *end = strstr(v, "\r\n");
            size_t len = end ? (size_t) (end - v) : strlen(v);
            if (len >= cap)
                len = cap - 1;
            memcpy(out, v, len);
            out[len] = 0;
            return 1;
        }
    }
    return 0;
}

static int contains_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    for (const char *p = v; *p; p++)
        if (strncasecmp(p, tok, tl) == 0)
            return 1;
    return 0;
}

/* returns bytes of data consumed by the head, or -1 when the connection is being closed */
static long handshake(gate_conn_t *c, gate_ws_t *ws, const uint8_t *data, size_t len)
{
    char peer[48];
    size_t room = HTTP_HEAD_MAX - ws->head_len;
    size_t take = len < room ? len : room;
    if (!ws->head && !(ws->head = malloc(HTTP_HEAD_MAX + 1)))
        return -1;
    memcpy(ws->head + ws->head_len, data, take);
    size_t old = ws->head_len;
    ws->head_len += take;
    ws->head[ws->head_len] = 0;
    char *end = strstr(ws->head, "\r\n\r\n");
    if (!end) {
        if (ws->head_len >= HTTP_HEAD_MAX) {
            log_warn("ws conn peer %s: HTTP head over %d bytes: closed",
                     gate_conn_peer(c, peer, sizeof(peer)), HTTP_HEAD_MAX);
            http_reply(c, 431, "Request Header Fields Too Large", "text/plain", NULL, 0);
            gate_conn_close(c, CLOSE_PROTOCOL, 1);
            return -1;
        }
        return (long) len;
    }
    size_t head_len = (size_t) (end - ws->head) + 4;
    long consumed = (long) (head_len - old);
    end[2] = 0; /* keep the last header's \r\n for header() */
    char method[8] = "", path[256] = "";
    if (sscanf(ws->head, "%7s %255s", method, path) != 2) {
        http_reply(c, 400, "Bad Request", "text/plain", NULL, 0);
        gate_conn_close(c, CLOSE_PROTOCOL, 1);
        return -1;
    }
    char upgrade[64] = "", conn[128] = "", key[64] = "", version[8] = "";
    header(ws->head, "Upgrade", upgrade, sizeof(upgrade));
    header(ws->head, "Connection", conn, sizeof(conn));
    header(ws->head, "Sec-WebSocket-Key", key, sizeof(key));
    header(ws->head, "Sec-WebSocket-Version", version, sizeof(version));
    free(ws->head);
    ws->head = NULL;
    if (strcmp(method, "GET") != 0) {
        http_reply(c, 405, "Method Not Allowed", "text/plain", NULL, 0);
        gate_conn_close(c, CLOSE_CLIENT, 1);
        return -1;
    }
    if (!contains_token(upgrade, "websocket")) {
        serve_file(c, path);
        gate_conn_close(c, CLOSE_CLIENT, 1);
        return -1;
    }
    if (!contains_token(conn, "upgrade") || strcmp(version, "13") != 0 || strlen(key) < 16) {
        http_reply(c, 400, "Bad Request", "text/plain", NULL, 0);
        gate_conn_close(c, CLOSE_PROTOCOL, 1);
        return -1;
    }
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    char src[128];
    unsigned char sha[SHA_DIGEST_LENGTH];
    char accept[64];
    snprintf(src, sizeof(src), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    SHA1((const unsigned char *) src, strlen(src), sha);
    sodium_bin2base64(accept, sizeof(accept), sha, sizeof(sha), sodium_base64_VARIANT_ORIGINAL);
    char rsp[256];
    int n = snprintf(rsp, sizeof(rsp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (wslay_event_context_server_init(&ws->ctx, &callbacks, c) != 0)
        return -1;
    gate_t *g = gate_conn_gate(c);
    wslay_event_config_set_max_recv_msg_length(ws->ctx, (uint64_t) g->cfg.max_packet);
    ws->state = WS_OPEN;
    im_metric_add(g->m.ws_conns, 1);
    if (gate_conn_write_raw(c, (const uint8_t *) rsp, (size_t) n, NULL, 0) < 0)
        return -1;
    return consumed;
}

/* ---------------------------------------------------------------- API */

gate_ws_t *gate_ws_new(gate_conn_t *c)
{
    (void) c;
    return calloc(1, sizeof(gate_ws_t));
}

void gate_ws_free(gate_ws_t *ws)
{
    if (!ws)
        return;
    if (ws->ctx)
        wslay_event_context_free(ws->ctx);
    free(ws->head);
    free(ws);
}

static void flush(gate_conn_t *c, gate_ws_t *ws)
{
    if (ws->ctx && wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0)
        gate_conn_close(c, CLOSE_CLIENT, 0);
}

void gate_ws_on_data(gate_conn_t *c, const uint8_t *data, size_t len)
{
    gate_ws_t *ws = gate_conn_ws(c);
    gate_t *g = gate_conn_gate(c);
    if (ws->state == WS_HTTP) {
        long used = handshake(c, ws, data, len);
        if (used < 0 || ws->state != WS_OPEN)
            return;
        data += used;
        len -= (size_t) used;
        if (!len)
            return;
    }
    if (ws->state != WS_OPEN)
        return;
    ws->in = data;
    ws->in_len = len;
    ws->in_recv = 1;
    int rc = wslay_event_recv(ws->ctx);
    ws->in_recv = 0;
    ws->in = NULL;
    ws->in_len = 0;
    if (ws->deferred_close) {
        int reason = ws->deferred_close;
        ws->deferred_close = 0;
        gate_conn_close(c, reason, ws->deferred_graceful);
        return;
    }
    if (rc != 0) {
        char peer[48];
        im_metric_add(g->m.proto_errors, 1);
        log_warn("ws conn %s: framing error (%d): closed", gate_conn_peer(c, peer, sizeof(peer)),
                 rc);
        gate_conn_close(c, CLOSE_PROTOCOL, 0);
        return;
    }
    /* wslay answers pings and protocol violations itself (1002 unmasked, 1009 too big) */
    flush(c, ws);
    if (!gate_conn_is_closing(c) && !wslay_event_want_read(ws->ctx) &&
        !wslay_event_want_write(ws->ctx))
        gate_conn_close(c, CLOSE_CLIENT, 1); /* the close handshake is done */
}

void gate_ws_send_packet(gate_conn_t *c, const uint8_t *hdr, const uint8_t *body, size_t len)
{
    gate_ws_t *ws = gate_conn_ws(c);
    if (ws->state != WS_OPEN || ws->close_queued)
        return;
    uint8_t *msg = malloc(IM_HEADER_LEN + len);
    if (!msg)
        return;
    memcpy(msg, hdr, IM_HEADER_LEN);
    if (len)
        memcpy(msg + IM_HEADER_LEN, body, len);
    struct wslay_event_msg m = {WSLAY_BINARY_FRAME, msg, IM_HEADER_LEN + len};
    int rc = wslay_event_queue_msg(ws->ctx, &m); /* wslay copies the message */
    free(msg);
    if (rc != 0)
        return;
    if (!ws->in_recv)
        flush(c, ws);
}

int gate_ws_defer_close(gate_conn_t *c, int reason, int graceful)
{
    gate_ws_t *ws = gate_conn_ws(c);
    if (!ws->in_recv)
        return 0;
    if (!ws->deferred_close) {
        ws->deferred_close = reason;
        ws->deferred_graceful = graceful;
    }
    return 1;
}

int gate_ws_close(gate_conn_t *c, int reason)
{
    gate_ws_t *ws = gate_conn_ws(c);
    if (ws->state != WS_OPEN) {
        ws->state = WS_DONE;
        return 0;
    }
    ws->state = WS_DONE;
    im_metric_add(gate_conn_gate(c)->m.ws_conns, -1);
    /* data first: wslay sends control frames ahead of queued messages */
    if (wslay_event_want_write(ws->ctx))
        wslay_event_send(ws->ctx);
    if (!ws->close_queued && reason != CLOSE_CLIENT) {
        ws->close_queued = 1;
        static const char why[] = "bye";
        if (wslay_event_queue_close(ws->ctx, close_code(reason), (const uint8_t *) why,
                                    sizeof(why) - 1) == 0 &&
            wslay_event_want_write(ws->ctx))
            wslay_event_send(ws->ctx);
    }
    return 1;
}
