/* logic_db: MySQL shards served by worker threads.
 *
 * Each shard has mysql_pool workers; each worker owns one MySQL connection, its prepared
 * statements, and a FIFO of jobs (a job's key picks the worker, so jobs with one key run in
 * order). Finished jobs go back to the loop through one uv_async. A worker whose connection
 * failed fails its jobs fast (DB_ECONN) for a short back-off before it tries again, so a dead
 * shard answers "storage unavailable" at once instead of stalling requests. */
#include <errno.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <errmsg.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "im_log.h"
#include "logic.h"

#define DB_SCAN_MAX 4096 /* queued jobs looked at for one batch */
#define MAX_SHARDS  16
#define MAX_WORKERS 16
#define MAX_STMTS   96
#define RETRY_MS    500

typedef struct {
    const char *sql;
    MYSQL_STMT *stmt;
} stmt_slot_t;

struct logic_dbc_s {
    MYSQL *my;
    stmt_slot_t stmts[MAX_STMTS];
    int nstmts;
    int broken;        /* set by db_exec on a connection error */
    MYSQL_STMT *last;  /* the statement run last (for its insert id) */
    db_binds_t *binds; /* scratch for multi-row statements (db_conn_binds) */
};

typedef struct worker_s {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    logic_job_t *head, *tail;
    int stop;
    unsigned shard;
    logic_dbc_t conn;
    uint64_t retry_after_ms;
    uint64_t used_ms; /* last job run on the connection */
} worker_t;

typedef struct shard_s {
    char host[128];
    unsigned port;
    char db[64];
    worker_t workers[MAX_WORKERS];
    int nworkers;
    volatile int ok;
} shard_t;

static struct {
    logic_t *l;
    shard_t shards[MAX_SHARDS];
    unsigned nshards;
    char *user, *password, *socket;
    uv_async_t async;
    pthread_mutex_t done_mu;
    logic_job_t *done_head, *done_tail;
} D;

/* ---------------------------------------------------------------- connection */

static void conn_reset(logic_dbc_t *c)
{
    for (int i = 0; i < c->nstmts; i++)
        mysql_stmt_close(c->stmts[i].stmt);
    c->nstmts = 0;
    c->last = NULL;
    if (c->my)
        mysql_close(c->my);
    c->my = NULL;
    c->broken = 0;
}

static int conn_open(worker_t *w)
{
    shard_t *s = &D.shards[w->shard];
    MYSQL *my = mysql_init(NULL);
    if (!my)
        return -1;
    unsigned timeout = 3, rw = 10;
    my_bool off = 0;
    mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(my, MYSQL_OPT_READ_TIMEOUT, &rw);
    mysql_options(my, MYSQL_OPT_WRITE_TIMEOUT, &rw);
    mysql_options(my, MYSQL_OPT_RECONNECT, &off);
    mysql_options(my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    /* "localhost" means the Unix socket to the client library: no TCP stack on each round trip */
    const char *sock = strcmp(s->host, "localhost") == 0 && D.socket && *D.socket ? D.socket : NULL;
    if (!mysql_real_connect(my, s->host, D.user, D.password, s->db, s->port, sock, 0)) {
        if (s->ok || !w->retry_after_ms)
            log_warn("mysql shard %u (%s:%u/%s): connect: %s", w->shard, s->host, s->port, s->db,
                     mysql_error(my));
        mysql_close(my);
        return -1;
    }
    /* READ COMMITTED: no gap locks, so batches of inserts and of status updates by different
     * logics do not deadlock each other on index ranges */
    if (mysql_query(my, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED") != 0) {
        log_warn("mysql shard %u: cannot set READ COMMITTED: %s", w->shard, mysql_error(my));
        mysql_close(my);
        return -1;
    }
    if (!s->ok)
        log_info("mysql shard %u (%s:%u/%s): connected", w->shard, s->host, s->port, s->db);
    w->conn.my = my;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static int is_conn_error(unsigned e)
{
    return (e >= 2000 && e < 3000) || e == ER_SERVER_SHUTDOWN || e == ER_CON_COUNT_ERROR ||
           e == 1927 /* ER_CONNECTION_KILLED */ || e == 4031 /* client idle disconnect */;
}

/* ---------------------------------------------------------------- statements */

static MYSQL_STMT *stmt_get(logic_dbc_t *c, const char *sql)
{
    for (int i = 0; i < c->nstmts; i++)
        if (c->stmts[i].sql == sql)
            return c->stmts[i].stmt;
    MYSQL_STMT *st = mysql_stmt_init(c->my);
    if (!st)
        return NULL;
    if (mysql_stmt_prepare(st, sql, strlen(sql)) != 0) {
        unsigned e = mysql_stmt_errno(st);
        log_error("mysql prepare failed (%u %s): %.80s", e, mysql_stmt_error(st), sql);
        if (is_conn_error(e))
            c->broken = 1;
        mysql_stmt_close(st);
        return NULL;
    }
    if (c->nstmts < MAX_STMTS) {
        c->stmts[c->nstmts].sql = sql;
        c->stmts[c->nstmts].stmt = st;
        c->nstmts++;
    }
    return st;
}

typedef struct {
    unsigned long long u64;
    unsigned u32;
    int i32;
    unsigned long len;
    my_bool is_null, err;
    size_t *outlen;
} cell_t;

static long db_run(logic_dbc_t *c, const char *sql, const char *in, MYSQL_BIND *pre, size_t npre,
                   const char *out, void (*row)(void *ud), void *ud, va_list ap)
{
    if (!c->my)
        return DB_ECONN;
    size_t nin = pre ? 0 : strlen(in), nout = strlen(out);
    if (nin > 32 || nout > 32)
        return DB_ERR;
    MYSQL_STMT *st = stmt_get(c, sql);
    if (!st)
        return c->broken ? DB_ECONN : DB_ERR;
    MYSQL_BIND pb[32], rb[32];
    cell_t pc[32], rc_[32];
    memset(pb, 0, sizeof(MYSQL_BIND) * (nin ? nin : 1));
    memset(rb, 0, sizeof(MYSQL_BIND) * (nout ? nout : 1));
    memset(pc, 0, sizeof(cell_t) * (nin ? nin : 1));
    memset(rc_, 0, sizeof(cell_t) * (nout ? nout : 1));
    for (size_t i = 0; i < nin; i++) {
        MYSQL_BIND *b = &pb[i];
        switch (in[i]) {
        case 'U':
            pc[i].u64 = va_arg(ap, uint64_t);
            b->buffer_type = MYSQL_TYPE_LONGLONG;
            b->buffer = &pc[i].u64;
            b->is_unsigned = 1;
            break;
        case 'u':
            pc[i].u32 = va_arg(ap, uint32_t);
            b->buffer_type = MYSQL_TYPE_LONG;
            b->buffer = &pc[i].u32;
            b->is_unsigned = 1;
            break;
        case 'i':
            pc[i].i32 = va_arg(ap, int);
            b->buffer_type = MYSQL_TYPE_LONG;
            b->buffer = &pc[i].i32;
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            b->buffer_type = MYSQL_TYPE_STRING;
            if (!s) {
                pc[i].is_null = 1;
                b->is_null = &pc[i].is_null;
            } else {
                b->buffer = (void *) s;
                b->buffer_length = strlen(s);
                pc[i].len = b->buffer_length;
                b->length = &pc[i].len;
            }
            break;
        }
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            b->buffer_type = MYSQL_TYPE_BLOB;
            b->buffer = (void *) p;
            b->buffer_length = n;
            pc[i].len = n;
            b->length = &pc[i].len;
            break;
        }
        default:
            return DB_ERR;
        }
    }
    for (size_t i = 0; i < nout; i++) {
        MYSQL_BIND *b = &rb[i];
        b->is_null = &rc_[i].is_null;
        b->error = &rc_[i].err;
        b->length = &rc_[i].len;
        switch (out[i]) {
        case 'U':
            b->buffer_type = MYSQL_TYPE_LONGLONG;
            b->buffer = va_arg(ap, uint64_t *);
            b->is_unsigned = 1;
            *(uint64_t *) b->buffer = 0;
            break;
        case 'u':
            b->buffer_type = MYSQL_TYPE_LONG;
            b->buffer = va_arg(ap, uint32_t *);
            b->is_unsigned = 1;
            *(uint32_t *) b->buffer = 0;
            break;
        case 'i':
            b->buffer_type = MYSQL_TYPE_LONG;
            b->buffer = va_arg(ap, int *);
            *(int *) b->buffer = 0;
            break;
        case 's': {
            char *buf = va_arg(ap, char *);
            size_t cap = va_arg(ap, size_t);
            b->buffer_type = MYSQL_TYPE_STRING;
            b->buffer = buf;
            b->buffer_length = cap ? cap - 1 : 0;
            if (cap)
                buf[0] = 0;
            break;
        }
        case 'b': {
            b->buffer_type = MYSQL_TYPE_BLOB;
            b->buffer = va_arg(ap, void *);
            b->buffer_length = va_arg(ap, size_t);
            rc_[i].outlen = va_arg(ap, size_t *);
            *rc_[i].outlen = 0;
            break;
        }
        default:
            return DB_ERR;
        }
    }

    long ret = 0;
    c->last = st;
    MYSQL_BIND *params = pre ? pre : pb;
    if (pre)
        nin = npre;
    if ((nin && mysql_stmt_bind_param(st, params) != 0) || mysql_stmt_execute(st) != 0)
        goto err;
    if (!nout) {
        my_ulonglong n = mysql_stmt_affected_rows(st);
        return n == (my_ulonglong) -1 ? 0 : (long) n;
    }
    if (mysql_stmt_bind_result(st, rb) != 0)
        goto err;
    for (;;) {
        int f = mysql_stmt_fetch(st);
        if (f == 1) {
            mysql_stmt_free_result(st);
            goto err;
        }
        if (f == MYSQL_NO_DATA)
            break;
        for (size_t i = 0; i < nout; i++) {
            if (out[i] == 's') {
                size_t cap = rb[i].buffer_length;
                size_t n = rc_[i].len < cap ? rc_[i].len : cap;
                ((char *) rb[i].buffer)[rc_[i].is_null ? 0 : n] = 0;
            } else if (out[i] == 'b') {
                size_t n = rc_[i].len < rb[i].buffer_length ? rc_[i].len : rb[i].buffer_length;
                *rc_[i].outlen = rc_[i].is_null ? 0 : n;
            }
        }
        ret++;
        if (!row)
            break; /* first row only */
        row(ud);
    }
    mysql_stmt_free_result(st); /* client side only: mysql_stmt_reset would be a round trip */
    return ret;
err : {
    unsigned e = mysql_stmt_errno(st);
    if (e == ER_DUP_ENTRY)
        return DB_EDUP;
    if (e == ER_LOCK_DEADLOCK || e == ER_LOCK_WAIT_TIMEOUT) {
        log_info("mysql (%u) %s: retrying", e, mysql_stmt_error(st));
        mysql_stmt_reset(st);
        return DB_ELOCK;
    }
    log_warn("mysql (%u) %s: %.80s", e, mysql_stmt_error(st), sql);
    if (is_conn_error(e)) {
        c->broken = 1;
        return DB_ECONN;
    }
    mysql_stmt_reset(st);
    return DB_ERR;
}
}

long db_exec(logic_dbc_t *c, const char *sql, const char *in, const char *out, ...)
{
    va_list ap;
    va_start(ap, out);
    long n = db_run(c, sql, in, NULL, 0, out, NULL, NULL, ap);
    va_end(ap);
    return n;
}

long db_query(logic_dbc_t *c, const char *sql, void (*row)(void *ud), void *ud, const char *in,
              const char *out, ...)
{
    va_list ap;
    va_start(ap, out);
    long n = db_run(c, sql, in, NULL, 0, out, row, ud, ap);
    va_end(ap);
    return n;
}

long db_exec_binds(logic_dbc_t *c, const char *sql, db_binds_t *p, void (*row)(void *ud), void *ud,
                   const char *out, ...)
{
    va_list ap;
    va_start(ap, out);
    long n = db_run(c, sql, "", p->b, (size_t) p->n, out, row, ud, ap);
    va_end(ap);
    return n;
}

db_binds_t *db_binds_new(void)
{
    db_binds_t *p = calloc(1, sizeof(*p));
    if (p && !(p->b = calloc(DB_ROWS_MAX * DB_COLS_MAX, sizeof(MYSQL_BIND)))) {
        free(p);
        return NULL;
    }
    return p;
}

void db_binds_free(db_binds_t *p)
{
    if (p) {
        free(p->b);
        free(p);
    }
}

void dbb_reset(db_binds_t *p)
{
    p->n = 0;
}

static MYSQL_BIND *dbb_next(db_binds_t *p)
{
    MYSQL_BIND *b = &p->b[p->n];
    memset(b, 0, sizeof(*b));
    return b;
}

void dbb_u64(db_binds_t *p, uint64_t v)
{
    MYSQL_BIND *b = dbb_next(p);
    p->v[p->n] = v;
    b->buffer_type = MYSQL_TYPE_LONGLONG;
    b->buffer = &p->v[p->n];
    b->is_unsigned = 1;
    p->n++;
}

void dbb_str(db_binds_t *p, const void *s, size_t len)
{
    MYSQL_BIND *b = dbb_next(p);
    p->len[p->n] = len;
    b->buffer_type = MYSQL_TYPE_BLOB;
    b->buffer = (void *) (s ? s : "");
    b->buffer_length = len;
    b->length = &p->len[p->n];
    p->n++;
}

const char *db_tpl_sql(db_tpl_t *t, int n)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    if (n < 1 || n > DB_ROWS_MAX)
        return NULL;
    pthread_mutex_lock(&mu);
    if (!t->sql[n]) {
        size_t pl = strlen(t->prefix), rl = strlen(t->row), sl = strlen(t->suffix);
        char *q = malloc(pl + (size_t) n * (rl + 1) + sl + 1);
        if (q) {
            char *w = q;
            memcpy(w, t->prefix, pl);
            w += pl;
            for (int i = 0; i < n; i++) {
                if (i)
                    *w++ = ',';
                memcpy(w, t->row, rl);
                w += rl;
            }
            memcpy(w, t->suffix, sl + 1);
            t->sql[n] = q; /* kept for the life of the process: statements cache by address */
        }
    }
    const char *sql = t->sql[n];
    pthread_mutex_unlock(&mu);
    return sql;
}

db_binds_t *db_conn_binds(logic_dbc_t *c)
{
    if (!c->binds)
        c->binds = db_binds_new();
    if (c->binds)
        dbb_reset(c->binds);
    return c->binds;
}

/* One statement per 64 users adds to the counters and returns the new values (MariaDB's
 * INSERT ... RETURNING gives the row as updated). A row that comes back with created = 0 may
 * have been inserted here (users are made with created > 0; logic_user): the user is taken as
 * missing and the caller rolls the transaction back, so nothing is ever deleted on a guess.
 * Padding repeats the last user with 0 to add, which changes nothing. */
static db_tpl_t seq_upsert = {
    "INSERT INTO im_user (user_id, max_seq, created) VALUES ",
    "(?, ?, 0)",
    " ON DUPLICATE KEY UPDATE max_seq = max_seq + VALUES(max_seq) RETURNING user_id, max_seq, "
    "created",
    {0}};

typedef struct {
    const uint64_t *uids;
    uint64_t *end;
    size_t n;
    uint64_t row_uid, row_max;
    uint32_t row_created;
} seq_rows_t;

static void seq_row(void *ud)
{
    seq_rows_t *s = ud;
    const uint64_t *p = bsearch(&s->row_uid, s->uids, s->n, sizeof(uint64_t), cmp_u64);
    if (!p)
        return;
    s->end[p - s->uids] = s->row_created ? s->row_max : 0; /* 0: made here, no such user */
}

int db_seq_alloc(logic_dbc_t *c, const uint64_t *uids, const uint64_t *add, uint64_t *end, size_t n)
{
    seq_rows_t sr = {uids, end, n, 0, 0, 0};
    for (size_t i = 0; i < n; i++)
        end[i] = UINT64_MAX; /* set by the returned row */
    for (size_t off = 0; off < n;) {
        int k = n - off < DB_ROWS_MAX ? (int) (n - off) : DB_ROWS_MAX, sz = db_pad(k);
        db_binds_t *p = db_conn_binds(c);
        if (!p)
            return DB_ERR;
        for (int i = 0; i < sz; i++) {
            size_t at = off + (size_t) (i < k ? i : k - 1);
            dbb_u64(p, uids[at]);
            dbb_u64(p, i < k ? add[at] : 0);
        }
        long r = db_exec_binds(c, db_tpl_sql(&seq_upsert, sz), p, seq_row, &sr, "UUu", &sr.row_uid,
                               &sr.row_max, &sr.row_created);
        if (r < 0)
            return (int) r;
        off += (size_t) k;
    }
    int missing = 0;
    for (size_t i = 0; i < n; i++) {
        if (end[i] == UINT64_MAX) {
            log_warn("mysql: seq counter of user %llu not returned", (unsigned long long) uids[i]);
            return DB_ERR;
        }
        missing |= end[i] == 0;
    }
    return missing ? DB_ENOUSER : DB_OK;
}

int db_pad(int k)
{
    return k > 16 ? 64 : k > 4 ? 16 : k > 1 ? 4 : 1;
}

int db_chunk(int left)
{
    return left >= 64 ? 64 : left >= 16 ? 16 : left >= 4 ? 4 : 1;
}

static int simple_query(logic_dbc_t *c, const char *q)
{
    if (!c->my)
        return DB_ECONN;
    if (mysql_query(c->my, q) != 0) {
        unsigned e = mysql_errno(c->my);
        log_warn("mysql %s: (%u) %s", q, e, mysql_error(c->my));
        if (is_conn_error(e))
            c->broken = 1;
        return is_conn_error(e) ? DB_ECONN : DB_ERR;
    }
    return DB_OK;
}

int db_begin(logic_dbc_t *c)
{
    return simple_query(c, "START TRANSACTION");
}

int db_begin_snapshot(logic_dbc_t *c)
{
    return simple_query(c, "START TRANSACTION WITH CONSISTENT SNAPSHOT");
}

int db_commit(logic_dbc_t *c)
{
    return simple_query(c, "COMMIT");
}

void db_rollback(logic_dbc_t *c)
{
    if (c->my && !c->broken)
        simple_query(c, "ROLLBACK");
}

uint64_t db_insert_id(logic_dbc_t *c)
{
    return c->last ? (uint64_t) mysql_stmt_insert_id(c->last) : 0;
}

/* ---------------------------------------------------------------- workers */

static void post_done_list(logic_job_t **jobs, int n)
{
    for (int i = 0; i < n; i++)
        jobs[i]->next = i + 1 < n ? jobs[i + 1] : NULL;
    pthread_mutex_lock(&D.done_mu);
    if (D.done_tail)
        D.done_tail->next = jobs[0];
    else
        D.done_head = jobs[0];
    D.done_tail = jobs[n - 1];
    pthread_mutex_unlock(&D.done_mu);
    uv_async_send(&D.async);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    shard_t *s = &D.shards[w->shard];
    mysql_thread_init();
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->head && !w->stop) {
            if (!w->conn.my) {
                /* keep (re)connecting in the background, so /healthz tells the truth and the
                 * first request after an outage does not wait for the connect */
                pthread_mutex_unlock(&w->mu);
                uint64_t now = im_mono_ms();
                if (now >= w->retry_after_ms) {
                    s->ok = conn_open(w) == 0;
                    w->retry_after_ms = s->ok ? 0 : now + RETRY_MS;
                }
                pthread_mutex_lock(&w->mu);
                if (w->head || w->stop)
                    break;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                pthread_cond_timedwait(&w->cv, &w->mu, &ts);
            } else {
                pthread_cond_wait(&w->cv, &w->mu);
            }
        }
        if (!w->head && w->stop) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        logic_job_t *job = w->head, *batch[LOGIC_DB_BATCH_MAX];
        int n = 0;
        batch[n++] = job;
        w->head = job->next;
        if (!w->head)
            w->tail = NULL;
        if (job->batch) {
            /* queued jobs of the same kind join the batch, in queue order (kinds interleave in
             * a worker's queue; jobs of one kind keep their order). The scan is bounded: under
             * overload the queue holds hundreds of thousands of jobs, and the loop thread
             * waits for this mutex to queue more. */
            logic_job_t **pp = &w->head, *prev = NULL;
            for (int seen = 0; *pp && n < LOGIC_DB_BATCH_MAX && seen < DB_SCAN_MAX; seen++) {
                if ((*pp)->batch == job->batch) {
                    batch[n++] = *pp;
                    if (w->tail == *pp)
                        w->tail = prev;
                    *pp = (*pp)->next;
                } else {
                    prev = *pp;
                    pp = &(*pp)->next;
                }
            }
        }
        pthread_mutex_unlock(&w->mu);

        if (w->conn.my && im_mono_ms() - w->used_ms > 1000 && mysql_ping(w->conn.my) != 0) {
            /* idle connections may have been cut (server restart, timeout): find out before the
             * job does, so a restarted shard costs no failed request */
            log_warn("mysql shard %u: idle connection lost (%s); reconnecting", w->shard,
                     mysql_error(w->conn.my));
            conn_reset(&w->conn);
            w->retry_after_ms = 0;
        }
        if (!w->conn.my) {
            uint64_t now = im_mono_ms();
            if (now >= w->retry_after_ms) {
                if (conn_open(w) == 0) {
                    s->ok = 1;
                    w->retry_after_ms = 0;
                } else {
                    s->ok = 0;
                    w->retry_after_ms = now + RETRY_MS;
                }
            }
        }
        for (int i = 0; i < n; i++)
            batch[i]->rc = w->conn.my ? DB_OK : DB_ECONN;
        if (w->conn.my) {
            if (job->batch)
                job->batch(batch, n, &w->conn);
            else
                job->work(job, &w->conn);
            if (w->conn.broken) {
                log_warn("mysql shard %u: connection lost; will reconnect", w->shard);
                conn_reset(&w->conn);
                s->ok = 0;
                if (!job->batch && job->rc == DB_OK)
                    job->rc = DB_ECONN;
            }
        }
        w->used_ms = im_mono_ms();
        post_done_list(batch, n);
    }
    conn_reset(&w->conn);
    db_binds_free(w->conn.binds);
    mysql_thread_end();
    return NULL;
}

static void on_async(uv_async_t *a)
{
    (void) a;
    pthread_mutex_lock(&D.done_mu);
    logic_job_t *job = D.done_head;
    D.done_head = D.done_tail = NULL;
    pthread_mutex_unlock(&D.done_mu);
    uint64_t now = im_mono_us();
    while (job) {
        logic_job_t *next = job->next;
        if (job->rc == DB_ECONN)
            im_metric_add(D.l->m.db_errors, 1);
        im_hist_observe(D.l->m.db_latency, (double) (now - job->submit_us) / 1e6);
        job->done(job);
        job = next;
    }
}

/* Queue a chain of jobs (linked by ->next, NULL-terminated) on the worker that key picks: at
 * the tail, or (first) ahead of everything queued. One lock and one wake-up for the chain. */
static void submit(unsigned shard, uint64_t key, logic_job_t *head, int first)
{
    shard_t *s = &D.shards[shard % D.nshards];
    worker_t *w = &s->workers[key % (uint64_t) s->nworkers];
    uint64_t now = im_mono_us();
    logic_job_t *last = head;
    for (logic_job_t *j = head; j; j = j->next) {
        j->rc = DB_OK;
        j->submit_us = now;
        last = j;
    }
    pthread_mutex_lock(&w->mu);
    if (first) {
        last->next = w->head;
        w->head = head;
        if (!w->tail)
            w->tail = last;
    } else {
        if (w->tail)
            w->tail->next = head;
        else
            w->head = head;
        w->tail = last;
    }
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void logic_db_submit_chain(unsigned shard, uint64_t key, logic_job_t *head)
{
    if (head)
        submit(shard, key, head, 0);
}

void logic_db_submit(unsigned shard, uint64_t key, logic_job_t *job)
{
    job->next = NULL;
    submit(shard, key, job, 0);
}

void logic_db_submit_first(unsigned shard, uint64_t key, logic_job_t *job)
{
    job->next = NULL;
    submit(shard, key, job, 1);
}

unsigned logic_db_shards(void)
{
    return D.nshards;
}

int logic_db_shard_ok(unsigned shard)
{
    return shard < D.nshards && D.shards[shard].ok;
}

static int parse_shard(shard_t *s, const char *spec, size_t len)
{
    char buf[256];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, spec, len);
    buf[len] = 0;
    char *slash = strchr(buf, '/');
    if (!slash || !slash[1])
        return -1;
    *slash = 0;
    char *colon = strrchr(buf, ':');
    s->port = 3306;
    if (colon) {
        *colon = 0;
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p <= 0 || p > 65535)
            return -1;
        s->port = (unsigned) p;
    }
    if (strlen(buf) >= sizeof(s->host) || strlen(slash + 1) >= sizeof(s->db))
        return -1;
    strcpy(s->host, buf);
    strcpy(s->db, slash + 1);
    return 0;
}

int logic_db_start(logic_t *l)
{
    D.l = l;
    D.user = l->cfg.mysql_user;
    D.password = l->cfg.mysql_password;
    D.socket = l->cfg.mysql_socket;
    const char *p = l->cfg.mysql_shards;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen(p);
        if (D.nshards == MAX_SHARDS || parse_shard(&D.shards[D.nshards], p, len) < 0) {
            log_error("mysql_shards: bad entry \"%.*s\" (want host:port/db)", (int) len, p);
            return -1;
        }
        D.nshards++;
        p += len + (comma ? 1 : 0);
    }
    if (D.nshards != 4) {
        log_error("mysql_shards: %u entries; the data placement needs exactly 4 (im_0..im_3)",
                  D.nshards);
        return -1;
    }
    if (mysql_library_init(0, NULL, NULL) != 0)
        return -1;
    pthread_mutex_init(&D.done_mu, NULL);
    uv_async_init(l->loop, &D.async, on_async);
    for (unsigned i = 0; i < D.nshards; i++) {
        shard_t *s = &D.shards[i];
        s->nworkers = (int) l->cfg.mysql_pool;
        for (int k = 0; k < s->nworkers; k++) {
            worker_t *w = &s->workers[k];
            w->shard = i;
            pthread_mutex_init(&w->mu, NULL);
            pthread_cond_init(&w->cv, NULL);
            if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                log_error("pthread_create: %s", strerror(errno));
                return -1;
            }
        }
    }
    return 0;
}

void logic_db_stop(void)
{
    for (unsigned i = 0; i < D.nshards; i++) {
        shard_t *s = &D.shards[i];
        for (int k = 0; k < s->nworkers; k++) {
            worker_t *w = &s->workers[k];
            pthread_mutex_lock(&w->mu);
            w->stop = 1;
            pthread_cond_signal(&w->cv);
            pthread_mutex_unlock(&w->mu);
        }
        for (int k = 0; k < s->nworkers; k++)
            pthread_join(s->workers[k].thread, NULL);
    }
    if (D.nshards) {
        on_async(&D.async); /* run what finished meanwhile */
        uv_close((uv_handle_t *) &D.async, NULL);
    }
    mysql_library_end();
}
