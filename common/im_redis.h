/* im_redis: one hiredis async connection on a libuv loop that reconnects by itself and gives
 * every command a deadline (hiredis 0.14 has none): when replies stop coming for timeout_ms
 * while commands are pending, the connection is dropped, every pending callback gets a NULL
 * reply, and a reconnect follows. Commands issued while disconnected fail at once (-1), so
 * callers answer "storage unavailable" instead of waiting. Literal IP addresses only. */
#ifndef IM_REDIS_H
#define IM_REDIS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

typedef struct im_redis_s im_redis_t;

/* reply is NULL when the connection failed or timed out; the reply is freed after return. */
typedef void (*im_redis_cb)(im_redis_t *r, redisReply *reply, void *ud);

/* addr "IP:PORT". Connection starts at once and is retried every 500 ms. */
im_redis_t *im_redis_new(uv_loop_t *loop, const char *addr, int timeout_ms);
/* Close and free (pending callbacks get NULL). */
void im_redis_free(im_redis_t *r);
int im_redis_connected(const im_redis_t *r);
/* Called (if set) every time a connection is established. */
void im_redis_on_connect(im_redis_t *r, void (*fn)(im_redis_t *r, void *ud), void *ud);

/* Queue a command (printf-style as redisAsyncCommand). cb may be NULL. 0 queued, -1 not
 * connected (cb is NOT called). */
int im_redis_cmd(im_redis_t *r, im_redis_cb cb, void *ud, const char *fmt, ...);
int im_redis_cmdargv(im_redis_t *r, im_redis_cb cb, void *ud, int argc, const char **argv,
                     const size_t *argvlen);

#endif
