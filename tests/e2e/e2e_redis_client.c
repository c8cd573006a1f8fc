/* End-to-end: common/im_redis (our hiredis adapter on libuv) against the stack's real Redis.
 * Commands a loop turn buffers are written together from a prepare callback; only a write the
 * socket cannot take whole waits for writability. These cases drive both paths, commands
 * issued from inside reply callbacks, and a free with commands still unwritten. */
#include "../test.h"
#include "e2e_common.h"

#include "im_redis.h"

static char g_prefix[48];

static im_redis_t *connect_redis(uv_loop_t *loop)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%s", e2e_env("CIM_REDIS_PORT"));
    e2e_uniq(g_prefix, sizeof(g_prefix), "rc");
    im_redis_t *r = im_redis_new(loop, addr, 10000);
    CHECK(r != NULL);
    int64_t end = e2e_now_ms() + 5000;
    while (!im_redis_connected(r) && e2e_now_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
    CHECK(im_redis_connected(r));
    return r;
}

/* run the loop until *done reaches want or the deadline passes */
static void run_until(uv_loop_t *loop, const int *done, int want, int ms)
{
    int64_t end = e2e_now_ms() + ms;
    while (*done < want && e2e_now_ms() < end)
        uv_run(loop, UV_RUN_NOWAIT);
}

static void close_loop(uv_loop_t *loop, im_redis_t *r)
{
    im_redis_free(r);
    uv_run(loop, UV_RUN_DEFAULT); /* returns once every handle is closed */
    CHECK_EQ_INT(uv_loop_close(loop), 0);
}

typedef struct {
    int replies, in_order, ok, nulls;
    long long integer;
    size_t len;
    char first;
} count_t;

static void count_cb(im_redis_t *r, redisReply *reply, void *ud)
{
    (void) r;
    count_t *c = ud;
    if (!reply) {
        c->nulls++;
    } else if (reply->type == REDIS_REPLY_STATUS) {
        c->ok += strcmp(reply->str, "OK") == 0;
    } else if (reply->type == REDIS_REPLY_INTEGER) {
        c->integer = reply->integer;
    } else if (reply->type == REDIS_REPLY_STRING) {
        c->len = reply->len;
        c->first = reply->len ? reply->str[0] : 0;
    }
    c->replies++;
}

typedef struct {
    count_t *c;
    int i;
} seq_t;

static void seq_cb(im_redis_t *r, redisReply *reply, void *ud)
{
    seq_t *s = ud;
    s->c->in_order += s->i == s->c->replies; /* replies come in the order sent */
    count_cb(r, reply, s->c);
}

/* 16 MB of SETs in one loop turn: far more than the socket takes at once, so the first write is
 * short and the rest waits for writability; every reply comes, in order, and the values read
 * back are the ones sent */
TEST(redis_client_pipeline_short_writes)
{
    enum { N = 2000, VLEN = 8192 };
    uv_loop_t loop;
    uv_loop_init(&loop);
    im_redis_t *r = connect_redis(&loop);
    static char val[VLEN];
    memset(val, 'v', sizeof(val));
    static seq_t seqs[N];
    count_t c = {0};
    char key[96];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "%s:%d", g_prefix, i);
        val[0] = (char) ('a' + i % 26);
        seqs[i].c = &c;
        seqs[i].i = i;
        CHECK_EQ_INT(im_redis_cmd(r, seq_cb, &seqs[i], "SET %s %b", key, val, (size_t) VLEN), 0);
    }
    run_until(&loop, &c.replies, N, 60000);
    CHECK_EQ_INT(c.replies, N);
    CHECK_EQ_INT(c.ok, N);
    CHECK_EQ_INT(c.in_order, N);
    CHECK_EQ_INT(c.nulls, 0);

    const int probe[2] = {0, N - 1};
    for (int k = 0; k < 2; k++) {
        count_t g = {0};
        snprintf(key, sizeof(key), "%s:%d", g_prefix, probe[k]);
        CHECK_EQ_INT(im_redis_cmd(r, count_cb, &g, "GET %s", key), 0);
        run_until(&loop, &g.replies, 1, 10000);
        CHECK_EQ_INT(g.len, VLEN);
        CHECK_EQ_INT(g.first, 'a' + probe[k] % 26);
    }
    count_t d = {0};
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "%s:%d", g_prefix, i);
        CHECK_EQ_INT(im_redis_cmd(r, count_cb, &d, "DEL %s", key), 0);
    }
    run_until(&loop, &d.replies, N, 30000);
    CHECK_EQ_INT(d.replies, N);
    close_loop(&loop, r);
}

/* each reply's callback sends the next command: what a callback queues goes out in the same
 * loop turn's flush (or the next), never waits for an unrelated event */
typedef struct {
    int left, replies;
    long long last;
    char key[96];
} chain_t;

static void chain_cb(im_redis_t *r, redisReply *reply, void *ud)
{
    chain_t *c = ud;
    c->replies++;
    if (!reply || reply->type != REDIS_REPLY_INTEGER)
        return;
    c->last = reply->integer;
    if (--c->left > 0)
        CHECK_EQ_INT(im_redis_cmd(r, chain_cb, c, "INCR %s", c->key), 0);
}

TEST(redis_client_commands_from_callbacks)
{
    enum { N = 3000 };
    uv_loop_t loop;
    uv_loop_init(&loop);
    im_redis_t *r = connect_redis(&loop);
    static chain_t c;
    c.left = N;
    snprintf(c.key, sizeof(c.key), "%s:chain", g_prefix);
    int64_t t0 = e2e_now_ms();
    CHECK_EQ_INT(im_redis_cmd(r, chain_cb, &c, "INCR %s", c.key), 0);
    run_until(&loop, &c.replies, N, 60000);
    CHECK_EQ_INT(c.replies, N);
    CHECK_EQ_INT(c.last, N);
    fprintf(stderr, "    %d chained round trips in %lld ms\n", N, (long long) (e2e_now_ms() - t0));
    count_t d = {0};
    CHECK_EQ_INT(im_redis_cmd(r, count_cb, &d, "DEL %s", c.key), 0);
    run_until(&loop, &d.replies, 1, 10000);
    CHECK_EQ_INT(d.integer, 1);
    close_loop(&loop, r);
}

/* freed with commands queued and not yet written: each callback gets NULL once, the loop's
 * handles (poll and prepare) all close, nothing leaks (valgrind runs this binary) */
TEST(redis_client_free_with_unwritten_commands)
{
    enum { N = 100 };
    uv_loop_t loop;
    uv_loop_init(&loop);
    im_redis_t *r = connect_redis(&loop);
    count_t c = {0};
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(im_redis_cmd(r, count_cb, &c, "PING"), 0);
    close_loop(&loop, r);
    CHECK_EQ_INT(c.replies, N);
    CHECK_EQ_INT(c.nulls, N);
}

TEST_MAIN()
