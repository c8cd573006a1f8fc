/* im_nn: see im_nn.h. */
#include "im_nn.h"

#include <errno.h>
#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <stdlib.h>
#include <string.h>

#include "im_log.h"

struct im_nn_in_s {
    uv_poll_t poll;
    int sock;
    im_nn_recv_cb cb;
    void *ud;
};

typedef struct nn_batch_s {
    struct nn_batch_s *next;
    size_t len;
    uint8_t data[];
} nn_batch_t;

struct im_nn_out_s {
    uv_loop_t *loop;
    uv_check_t check;
    uv_poll_t poll;
    int sock;
    int polling;
    int closing;
    char *ep;
    uint8_t *prefix;
    size_t prefix_len;
    uint8_t *buf; /* current batch */
    size_t len, cap;
    nn_batch_t *qhead, *qtail; /* batches nanomsg could not take yet */
    size_t queued, queue_max;
    uint64_t dropped;
    int handles_open;
};

/* ---------------------------------------------------------------- protobuf helpers */

size_t im_pb_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t) v;
    return n;
}

size_t im_pb_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t im_pb_put_varint_field(uint8_t *out, uint32_t field, uint64_t v)
{
    size_t n = im_pb_varint(out, (uint64_t) field << 3);
    return n + im_pb_varint(out + n, v);
}

size_t im_pb_put_bytes_field(uint8_t *out, uint32_t field, const void *data, size_t len)
{
    size_t n = im_pb_varint(out, ((uint64_t) field << 3) | 2);
    n += im_pb_varint(out + n, len);
    if (len)
        memcpy(out + n, data, len);
    return n + len;
}

/* ---------------------------------------------------------------- in */

static void in_poll_cb(uv_poll_t *h, int status, int events)
{
    im_nn_in_t *in = h->data;
    (void) status;
    (void) events;
    /* drain: the fd signals "messages waiting"; a bounded loop keeps the loop fair */
    for (int i = 0; i < 256; i++) {
        void *msg = NULL;
        int n = nn_recv(in->sock, &msg, NN_MSG, NN_DONTWAIT);
        if (n < 0) {
            if (nn_errno() != EAGAIN && nn_errno() != EINTR)
                log_warn("nn_recv: %s", nn_strerror(nn_errno()));
            return;
        }
        in->cb(in->ud, msg, (size_t) n);
        nn_freemsg(msg);
    }
}

im_nn_in_t *im_nn_in_bind(uv_loop_t *loop, const char *addr, im_nn_recv_cb cb, void *ud)
{
    im_nn_in_t *in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    in->sock = nn_socket(AF_SP, NN_PULL);
    if (in->sock < 0)
        goto fail;
    int max = IM_NN_RCVMAX;
    nn_setsockopt(in->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof(max));
    int rcvbuf = 4 * 1024 * 1024;
    nn_setsockopt(in->sock, NN_SOL_SOCKET, NN_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (nn_bind(in->sock, addr) < 0) {
        log_error("nanomsg bind %s: %s", addr, nn_strerror(nn_errno()));
        goto fail;
    }
    int fd = -1;
    size_t sz = sizeof(fd);
    if (nn_getsockopt(in->sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz) < 0)
        goto fail;
    in->cb = cb;
    in->ud = ud;
    uv_poll_init(loop, &in->poll, fd);
    in->poll.data = in;
    uv_poll_start(&in->poll, UV_READABLE, in_poll_cb);
    return in;
fail:
    if (in->sock >= 0)
        nn_close(in->sock);
    free(in);
    return NULL;
}

static void in_closed(uv_handle_t *h)
{
    im_nn_in_t *in = h->data;
    nn_close(in->sock);
    free(in);
}

void im_nn_in_close(im_nn_in_t *in)
{
    if (!in)
        return;
    uv_poll_stop(&in->poll);
    uv_close((uv_handle_t *) &in->poll, in_closed);
}

/* ---------------------------------------------------------------- out */

static void out_poll_cb(uv_poll_t *h, int status, int events);

static int out_try_send(im_nn_out_t *out, const uint8_t *data, size_t len)
{
    int n = nn_send(out->sock, data, len, NN_DONTWAIT);
    return n < 0 ? -1 : 0;
}

static void out_watch(im_nn_out_t *out, int on)
{
    if (on && !out->polling) {
        uv_poll_start(&out->poll, UV_READABLE, out_poll_cb);
        out->polling = 1;
    } else if (!on && out->polling) {
        uv_poll_stop(&out->poll);
        out->polling = 0;
    }
}

static void out_drain_queue(im_nn_out_t *out)
{
    while (out->qhead) {
        nn_batch_t *b = out->qhead;
        if (out_try_send(out, b->data, b->len) < 0)
            break;
        out->qhead = b->next;
        if (!out->qhead)
            out->qtail = NULL;
        out->queued -= b->len;
        free(b);
    }
    out_watch(out, out->qhead != NULL && !out->closing);
}

static void out_poll_cb(uv_poll_t *h, int status, int events)
{
    (void) status;
    (void) events;
    out_drain_queue(h->data);
}

static void out_queue(im_nn_out_t *out, const uint8_t *data, size_t len)
{
    if (out->queued + len > out->queue_max) {
        if (out->dropped++ % 1000 == 0)
            log_warn("nanomsg %s: queue full (%zu bytes), batch dropped (%llu so far)", out->ep,
                     out->queued, (unsigned long long) out->dropped);
        return;
    }
    nn_batch_t *b = malloc(sizeof(*b) + len);
    if (!b) {
        out->dropped++;
        return;
    }
    b->next = NULL;
    b->len = len;
    memcpy(b->data, data, len);
    if (out->qtail)
        out->qtail->next = b;
    else
        out->qhead = b;
    out->qtail = b;
    out->queued += len;
    out_watch(out, 1);
}

void im_nn_out_flush(im_nn_out_t *out)
{
    if (out->len <= out->prefix_len)
        return;
    if (out->qhead || out_try_send(out, out->buf, out->len) < 0)
        out_queue(out, out->buf, out->len);
    out->len = 0;
    uv_check_stop(&out->check);
}

static void out_check_cb(uv_check_t *h)
{
    im_nn_out_flush(h->data);
}

im_nn_out_t *im_nn_out_connect(uv_loop_t *loop, const char *ep, const uint8_t *prefix,
                               size_t prefix_len, size_t queue_max)
{
    im_nn_out_t *out = calloc(1, sizeof(*out));
    if (!out)
        return NULL;
    out->loop = loop;
    out->sock = -1;
    out->ep = strdup(ep);
    out->prefix = malloc(prefix_len ? prefix_len : 1);
    if (!out->ep || !out->prefix)
        goto fail;
    memcpy(out->prefix, prefix, prefix_len);
    out->prefix_len = prefix_len;
    out->queue_max = queue_max;
    out->sock = nn_socket(AF_SP, NN_PUSH);
    if (out->sock < 0)
        goto fail;
    int sndbuf = 4 * 1024 * 1024;
    nn_setsockopt(out->sock, NN_SOL_SOCKET, NN_SNDBUF, &sndbuf, sizeof(sndbuf));
    int ivl = 100; /* reconnect quickly after a peer restart */
    nn_setsockopt(out->sock, NN_SOL_SOCKET, NN_RECONNECT_IVL, &ivl, sizeof(ivl));
    int ivlmax = 1000;
    nn_setsockopt(out->sock, NN_SOL_SOCKET, NN_RECONNECT_IVL_MAX, &ivlmax, sizeof(ivlmax));
    if (nn_connect(out->sock, ep) < 0) {
        log_error("nanomsg connect %s: %s", ep, nn_strerror(nn_errno()));
        goto fail;
    }
    int fd = -1;
    size_t sz = sizeof(fd);
    if (nn_getsockopt(out->sock, NN_SOL_SOCKET, NN_SNDFD, &fd, &sz) < 0)
        goto fail;
    uv_check_init(loop, &out->check);
    out->check.data = out;
    uv_poll_init(loop, &out->poll, fd);
    out->poll.data = out;
    return out;
fail:
    if (out->sock >= 0)
        nn_close(out->sock);
    free(out->ep);
    free(out->prefix);
    free(out);
    return NULL;
}

uint8_t *im_nn_out_reserve(im_nn_out_t *out, uint32_t field, size_t len)
{
    if (len > IM_NN_RCVMAX / 2 || out->closing)
        return NULL;
    size_t need = 20 + len;
    if (out->len > out->prefix_len && out->len + need > IM_NN_BATCH_MAX)
        im_nn_out_flush(out);
    size_t want = (out->len ? out->len : out->prefix_len) + need;
    if (want > out->cap) {
        size_t cap = out->cap ? out->cap : 4096;
        while (cap < want)
            cap *= 2;
        uint8_t *nb = realloc(out->buf, cap);
        if (!nb)
            return NULL;
        out->buf = nb;
        out->cap = cap;
    }
    if (out->len == 0) {
        memcpy(out->buf, out->prefix, out->prefix_len);
        out->len = out->prefix_len;
        uv_check_start(&out->check, out_check_cb);
    }
    out->len += im_pb_varint(out->buf + out->len, ((uint64_t) field << 3) | 2);
    out->len += im_pb_varint(out->buf + out->len, len);
    uint8_t *p = out->buf + out->len;
    out->len += len;
    return p;
}

const char *im_nn_out_endpoint(const im_nn_out_t *out)
{
    return out->ep;
}

uint64_t im_nn_out_dropped(const im_nn_out_t *out)
{
    return out->dropped;
}

size_t im_nn_out_queued(const im_nn_out_t *out)
{
    return out->queued;
}

static void out_handle_closed(uv_handle_t *h)
{
    im_nn_out_t *out = h->data;
    if (--out->handles_open > 0)
        return;
    nn_close(out->sock);
    while (out->qhead) {
        nn_batch_t *b = out->qhead;
        out->qhead = b->next;
        free(b);
    }
    free(out->buf);
    free(out->prefix);
    free(out->ep);
    free(out);
}

void im_nn_out_close(im_nn_out_t *out)
{
    if (!out || out->closing)
        return;
    im_nn_out_flush(out);
    out_drain_queue(out);
    out->closing = 1;
    out_watch(out, 0);
    uv_check_stop(&out->check);
    out->handles_open = 2;
    uv_close((uv_handle_t *) &out->check, out_handle_closed);
    uv_close((uv_handle_t *) &out->poll, out_handle_closed);
}
