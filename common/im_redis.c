/* im_redis: see im_redis.h. Carries its own libuv adapter for hiredis: the stock one ignores
 * poll errors, this one lets hiredis read (and so notice) the error. */
#include "im_redis.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "im_id.h"
#include "im_log.h"
#include "im_metrics.h"

struct im_redis_s {
    uv_loop_t *loop;
    redisAsyncContext *ac;
    int connected;
    int freeing;
    char host[64];
    int port;
    int timeout_ms;
    uv_timer_t timer; /* reconnect + deadline watch */
    uint64_t pending;
    uint64_t last_progress_ms;
    void (*on_connect)(im_redis_t *, void *);
    void *on_connect_ud;
    int logged_down;
};

typedef struct {
    im_redis_t *r;
    im_redis_cb cb;
    void *ud;
    uint64_t sent_us; /* latency metric */
} cmd_ctx_t;

static im_hist_t *g_latency;
static im_metric_t *g_errors;

static void metrics_once(void)
{
    static const double b[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                               0.01,   0.025,   0.05,   0.1,   0.5,    2};
    if (!g_latency) {
        g_latency = im_metrics_hist("cim_redis_command_seconds",
                                    "Redis command sent -> reply (pipelined)", b, 12);
        g_errors = im_metrics_counter("cim_redis_failed_commands_total",
                                      "Redis commands with no reply (disconnect, deadline)");
    }
}

/* ---------------------------------------------------------------- adapter */

/* hiredis asks for write readiness after every command it buffers. Polling for it costs two
 * epoll_ctl calls and a loop turn per command (uv_poll_start re-registers the fd each time).
 * Instead, while connected, the commands a loop turn buffered are written once, in a prepare
 * callback just before the loop polls again (as redis's beforeSleep writes its clients'
 * replies); only a write the socket could not take whole waits for UV_WRITABLE. */
typedef struct {
    redisAsyncContext *ac;
    uv_poll_t poll;
    uv_prepare_t flush;
    int events;   /* wanted from the poll handle */
    int polled;   /* what the poll handle was last started with */
    int flushing; /* inside the prepare callback's write: hiredis's requests go to the poll */
    int handles;  /* open uv handles; the last close frees this */
} ev_t;

static void ev_poll_cb(uv_poll_t *h, int status, int events)
{
    ev_t *e = h->data;
    if (!e->ac)
        return;
    if (status < 0) { /* let hiredis find the error on the socket */
        redisAsyncHandleRead(e->ac);
        return;
    }
    if (e->ac && (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
}

static void ev_update(ev_t *e)
{
    if (e->events == e->polled)
        return;
    e->polled = e->events;
    if (e->events)
        uv_poll_start(&e->poll, e->events, ev_poll_cb);
    else
        uv_poll_stop(&e->poll);
}

static void ev_flush_cb(uv_prepare_t *h)
{
    ev_t *e = h->data;
    uv_prepare_stop(h); /* active = commands buffered, until written */
    if (!e->ac)
        return;
    e->flushing = 1;
    redisAsyncHandleWrite(e->ac); /* may free ac (a write error): e stays until its close */
    e->flushing = 0;
}

static void ev_add_read(void *p)
{
    ev_t *e = p;
    e->events |= UV_READABLE;
    ev_update(e);
}

static void ev_del_read(void *p)
{
    ev_t *e = p;
    e->events &= ~UV_READABLE;
    ev_update(e);
}

static void ev_add_write(void *p)
{
    ev_t *e = p;
    if (e->events & UV_WRITABLE)
        return; /* a short write waits for the socket already */
    if (!e->flushing && (e->ac->c.flags & REDIS_CONNECTED)) {
        uv_prepare_start(&e->flush, ev_flush_cb); /* no-op when already started */
        return;
    }
    /* connecting (hiredis learns the outcome from writability), or a short write */
    e->events |= UV_WRITABLE;
    ev_update(e);
}

static void ev_del_write(void *p)
{
    ev_t *e = p;
    uv_prepare_stop(&e->flush); /* everything is written */
    e->events &= ~UV_WRITABLE;
    ev_update(e);
}

static void ev_closed(uv_handle_t *h)
{
    ev_t *e = h->data;
    if (--e->handles == 0)
        free(e);
}

static void ev_cleanup(void *p)
{
    ev_t *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *) &e->poll, ev_closed);
    uv_close((uv_handle_t *) &e->flush, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    ev_t *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    e->ac = ac;
    if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return -1;
    }
    uv_prepare_init(loop, &e->flush);
    e->poll.data = e;
    e->flush.data = e;
    e->handles = 2;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    ac->ev.data = e;
    return 0;
}

/* ---------------------------------------------------------------- connection */

static void connect_cb(const redisAsyncContext *ac, int status)
{
    im_redis_t *r = ac->data;
    if (status != REDIS_OK) {
        if (!r->logged_down++)
            log_warn("redis %s:%d: connect failed: %s", r->host, r->port, ac->errstr);
        if (r->ac == ac)
            r->ac = NULL; /* hiredis frees the context (a dropped one is no longer r->ac) */
        return;
    }
    r->connected = 1;
    r->last_progress_ms = im_mono_ms();
    log_info("redis %s:%d: connected", r->host, r->port);
    r->logged_down = 0;
    if (r->on_connect)
        r->on_connect(r, r->on_connect_ud);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    im_redis_t *r = ac->data;
    if (status != REDIS_OK && !r->freeing)
        log_warn("redis %s:%d: disconnected: %s", r->host, r->port, ac->errstr);
    if (r->ac == ac) {
        r->connected = 0;
        r->ac = NULL;
    }
}

static void do_connect(im_redis_t *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac)
        return;
    if (ac->err) {
        if (!r->logged_down++)
            log_warn("redis %s:%d: %s", r->host, r->port, ac->errstr);
        redisAsyncFree(ac);
        return;
    }
    ac->data = r;
    if (ev_attach(ac, r->loop) != 0) {
        redisAsyncFree(ac);
        return;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    r->ac = ac;
    r->last_progress_ms = im_mono_ms();
}

static void timer_cb(uv_timer_t *t)
{
    im_redis_t *r = t->data;
    if (!r->ac) {
        do_connect(r);
        return;
    }
    uint64_t now = im_mono_ms();
    if (now - r->last_progress_ms > (uint64_t) r->timeout_ms && (r->pending || !r->connected)) {
        log_warn("redis %s:%d: no answer for %d ms (%llu pending): reconnecting", r->host, r->port,
                 r->timeout_ms, (unsigned long long) r->pending);
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        r->connected = 0;
        /* Free, not redisAsyncDisconnect: that one waits for every pending reply, which a
         * frozen server never sends, and would keep the old socket (and the loop) alive with
         * all its callbacks. Freeing hands each pending callback NULL now. */
        redisAsyncFree(ac);
    }
}

im_redis_t *im_redis_new(uv_loop_t *loop, const char *addr, int timeout_ms)
{
    im_redis_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t) (colon - addr) : strlen(addr);
    if (hl == 0 || hl >= sizeof(r->host)) {
        free(r);
        return NULL;
    }
    memcpy(r->host, addr, hl);
    r->port = colon ? atoi(colon + 1) : 6379;
    metrics_once();
    r->loop = loop;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 2000;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, timer_cb, 500, 500);
    do_connect(r);
    return r;
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void im_redis_free(im_redis_t *r)
{
    if (!r)
        return;
    r->freeing = 1;
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac);
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *) &r->timer, timer_closed);
}

int im_redis_connected(const im_redis_t *r)
{
    return r->connected && r->ac;
}

void im_redis_on_connect(im_redis_t *r, void (*fn)(im_redis_t *r, void *ud), void *ud)
{
    r->on_connect = fn;
    r->on_connect_ud = ud;
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    cmd_ctx_t *c = priv;
    im_redis_t *r = c->r;
    (void) ac;
    r->pending--;
    r->last_progress_ms = im_mono_ms();
    if (reply)
        im_hist_observe(g_latency, (double) (im_mono_us() - c->sent_us) / 1e6);
    else
        im_metric_add(g_errors, 1);
    if (c->cb && !r->freeing)
        c->cb(r, reply, c->ud);
    else if (c->cb && r->freeing)
        c->cb(r, NULL, c->ud);
    free(c);
}

int im_redis_cmdargv(im_redis_t *r, im_redis_cb cb, void *ud, int argc, const char **argv,
                     const size_t *argvlen)
{
    if (!im_redis_connected(r))
        return -1;
    cmd_ctx_t *c = malloc(sizeof(*c));
    if (!c)
        return -1;
    c->r = r;
    c->cb = cb;
    c->ud = ud;
    c->sent_us = im_mono_us();
    if (r->pending == 0)
        r->last_progress_ms = im_mono_ms();
    if (redisAsyncCommandArgv(r->ac, reply_cb, c, argc, argv, argvlen) != REDIS_OK) {
        free(c);
        return -1;
    }
    r->pending++;
    return 0;
}

int im_redis_cmd(im_redis_t *r, im_redis_cb cb, void *ud, const char *fmt, ...)
{
    if (!im_redis_connected(r))
        return -1;
    cmd_ctx_t *c = malloc(sizeof(*c));
    if (!c)
        return -1;
    c->r = r;
    c->cb = cb;
    c->ud = ud;
    c->sent_us = im_mono_us();
    if (r->pending == 0)
        r->last_progress_ms = im_mono_ms();
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAsyncCommand(r->ac, reply_cb, c, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        free(c);
        return -1;
    }
    r->pending++;
    return 0;
}
