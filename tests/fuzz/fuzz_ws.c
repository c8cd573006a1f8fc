/* fuzz_ws: the gate's WebSocket path (gate/gate_ws.c, compiled in unchanged) fed arbitrary
 * bytes (libFuzzer).
 *
 * gate_ws.c only talks to the rest of the gate through gate_conn_* (gate.h); this file stubs
 * those with the same contracts as gate_conn.c: a close inside wslay_event_recv is deferred
 * through gate_ws_defer_close, gate_conn_close calls gate_ws_close, a heartbeat is echoed
 * through gate_ws_send_packet from inside the receive loop, logout closes gracefully.
 *
 * Input: byte 0 flags (bit 0: the input starts with its own HTTP head instead of a valid
 * upgrade; bit 1: the first write fails; bits 2-3: max_packet), byte 1 seeds the split points;
 * the rest is fed to gate_ws_on_data in pieces (as TCP reads would split it) until the
 * connection closes. Then the gate closes it (shutdown) and frees it. Every decoded packet
 * must lie inside wslay's message; nothing may leak (LeakSanitizer). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "im_cmd.h"
#include "im_log.h"

/* the code under test */
#include "../../gate/gate_ws.c"

struct gate_conn_s {
    gate_t *g;
    gate_ws_t *ws;
    int state;
    int fail_writes; /* write_raw fails from now on */
    size_t written;
    unsigned pkts;
};

gate_t g_gate;
int im_log_level = IM_LOG_DEBUG;
static char logbuf[1024];
static im_metric_t *dummy_metric;

void im_log_write(int level, const char *fmt, ...)
{
    va_list ap;
    (void) level;
    va_start(ap, fmt);
    vsnprintf(logbuf, sizeof(logbuf), fmt, ap); /* format everything, print nothing */
    va_end(ap);
}

void im_metric_add(im_metric_t *m, int64_t v)
{
    (void) m;
    (void) v;
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

const char *gate_conn_peer(const gate_conn_t *c, char *buf, size_t len)
{
    (void) c;
    snprintf(buf, len, "127.0.0.1:1");
    return buf;
}

int gate_conn_write_raw(gate_conn_t *c, const uint8_t *a, size_t alen, const uint8_t *b,
                        size_t blen)
{
    if (c->fail_writes)
        return -1;
    /* read every byte handed over, as the kernel would */
    volatile uint8_t x = 0;
    for (size_t i = 0; i < alen; i++)
        x ^= a[i];
    for (size_t i = 0; i < blen; i++)
        x ^= b[i];
    (void) x;
    c->written += alen + blen;
    return 0;
}

/* gate_conn.c's close, minus the socket */
void gate_conn_close(gate_conn_t *c, int reason, int graceful)
{
    if (c->ws && c->state != CONN_CLOSING && gate_ws_defer_close(c, reason, graceful))
        return;
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    if (c->ws)
        gate_ws_close(c, reason);
}

int gate_conn_handle_packet(gate_conn_t *c, const im_packet_t *p)
{
    if (c->state == CONN_CLOSING)
        abort(); /* no packet after a close */
    /* the body is readable to its end */
    volatile uint8_t x = 0;
    for (size_t i = 0; i < p->body_len; i++)
        x ^= p->body[i];
    (void) x;
    c->pkts++;
    uint8_t hdr[IM_HEADER_LEN];
    switch (p->hdr.cmd) {
    case IM_CMD_HEARTBEAT: /* echoed from inside the receive loop */
        im_codec_write_header(hdr, IM_CMD_HEARTBEAT, p->hdr.seq, 0);
        gate_ws_send_packet(c, hdr, NULL, 0);
        return 0;
    case IM_CMD_LOGOUT_REQ:
        im_codec_write_header(hdr, IM_CMD_LOGOUT_RSP, p->hdr.seq, p->body_len);
        gate_ws_send_packet(c, hdr, p->body, p->body_len);
        gate_conn_close(c, CLOSE_LOGOUT, 1);
        return -1;
    case IM_CMD_AUTH_REQ:
        return 0;
    case IM_CMD_MSG_DATA_ACK: /* an abuse close, not graceful */
        gate_conn_close(c, CLOSE_ABUSE, 0);
        return -1;
    default:
        if (!im_cmd_info(p->hdr.cmd)) {
            gate_conn_close(c, CLOSE_NOT_AUTHED, 1);
            return -1;
        }
        /* an answer as large as the request */
        im_codec_write_header(hdr, (uint16_t) (p->hdr.cmd + 1), p->hdr.seq, p->body_len);
        gate_ws_send_packet(c, hdr, p->body, p->body_len);
        return 0;
    }
}

static const char ws_upgrade[] =
    "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

static char web_dir[64];

static void cleanup(void)
{
    char path[96];
    snprintf(path, sizeof(path), "%s/index.html", web_dir);
    unlink(path);
    rmdir(web_dir);
}

static void setup(void)
{
    char dir[] = "/tmp/cim-fuzz-ws-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    char path[64];
    snprintf(path, sizeof(path), "%s/index.html", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("<html>fuzz</html>\n", f);
        fclose(f);
    }
    g_gate.cfg.gate_web_root = strdup(dir);
    snprintf(web_dir, sizeof(web_dir), "%s", dir);
    atexit(cleanup);
    (void) dummy_metric;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 2)
        return 0;
    static const long long maxes[] = {IM_MAX_PACKET_DEF, 16, 64, 1024};
    g_gate.cfg.max_packet = maxes[(data[0] >> 2) & 3];
    int own_head = data[0] & 1;
    unsigned rnd = data[1] * 2654435761u + 7;

    gate_conn_t c = {&g_gate, NULL, CONN_NEW, 0, 0, 0};
    c.ws = gate_ws_new(&c);
    if (!c.ws)
        return 0;
    if (data[0] & 2)
        c.fail_writes = 1;
    if (!own_head)
        gate_ws_on_data(&c, (const uint8_t *) ws_upgrade, sizeof(ws_upgrade) - 1);

    const uint8_t *p = data + 2;
    size_t left = size - 2;
    while (left && c.state != CONN_CLOSING) {
        rnd = rnd * 1103515245u + 12345u;
        size_t piece = (rnd >> 16) % 4 == 0 ? left : 1 + (rnd >> 8) % 200;
        if (piece > left)
            piece = left;
        /* an exact-size heap copy of this read (ASan sees reads past it) */
        uint8_t *rd = malloc(piece);
        memcpy(rd, p, piece);
        gate_ws_on_data(&c, rd, piece);
        free(rd);
        p += piece;
        left -= piece;
        c.fail_writes = 0;
    }
    if (c.state != CONN_CLOSING) {
        /* a push from the gate, then a shutdown close */
        uint8_t hdr[IM_HEADER_LEN];
        im_codec_write_header(hdr, IM_CMD_MSG_DATA, 1, 3);
        gate_ws_send_packet(&c, hdr, (const uint8_t *) "abc", 3);
        gate_conn_close(&c, CLOSE_SHUTDOWN, 1);
    }
    /* after the close, the gate may still try to send (a late logic reply) */
    uint8_t hdr[IM_HEADER_LEN];
    im_codec_write_header(hdr, IM_CMD_MSG_DATA, 2, 0);
    gate_ws_send_packet(&c, hdr, NULL, 0);
    gate_ws_free(c.ws);
    return 0;
}
