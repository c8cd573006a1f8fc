/* logic_msg: see logic_msg.h for the path of a message. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "im_cmd.h"
#include "im_log.h"
#include "im_shard.h"
#include "logic_msg.h"
#include "logic_webhook.h"
#include "proto/cim.pb-c.h"
#include "proto/internal.pb-c.h"

#define SWEEP_MS        5000
#define SWEEP_AGE_MS    10000 /* a fan-out older than this with no "done" mark is redone */
#define SWEEP_LIMIT     200
#define RETRY_MIN_MS    200
#define RETRY_MAX_MS    5000
#define KNOWN_USERS_MAX 1000000

struct logic_msg_s {
    logic_job_t job; /* the store job on shard(from) */
    logic_req_t req; /* the sending connection; gate_id 0 = internal */
    uint64_t server_msg_id, from_id, to_id, from_seq;
    uint32_t session_type, msg_type, client_type, created;
    int in_author_inbox;
    int push;    /* push to online devices after fan-out */
    int checked; /* store: look for an earlier copy first (resend, retry) */
    int dup;     /* store: a resend; ids are the stored ones */
    int fanout_done;
    char cmid[65];
    uint8_t *data;
    size_t len;
    uint64_t *rcpt; /* recipients */
    size_t nrcpt;
    uint64_t rcpt_session; /* session id the recipients see (0: the author, for 1:1) */
    int refs;              /* the store job, then one per fan-out job in flight */
    int ack_after_fanout;  /* a resend of a message whose fan-out was cut short */
    int fan_failed;        /* some recipient could not be written: keep "done" unmarked */
    int swept;             /* found by the sweeper: shard + 1 */
    logic_msg_done_cb cb;
    void *ud;
    int cb_after_fanout; /* cb gets the inbox rows written, once fan-out is done */
    uint64_t rows;
    /* per-sender order: messages wait in their sender's queue until checked and at its head */
    struct logic_msg_s *q_next;
    int ready;        /* checks done */
    int ready_res;    /* 0 store it, else the CIMResCode to answer */
    int need_nick;    /* the store looks up the author's nick (not in this logic's cache) */
    uint64_t recv_us; /* when the request arrived (ack latency) */
    char nick[513];   /* 128 characters of UTF-8 */
};

typedef struct sender_q_s {
    logic_msg_t *head, *tail;
} sender_q_t;

typedef struct fan_s {
    logic_job_t job;
    logic_msg_t *m;
    uint64_t user_id;
    uint64_t seq;
    int checked; /* look for an existing row first */
    int exists;  /* the row was already there (seq is the stored one) */
    int nouser;  /* the recipient does not exist */
    int tries;
    uint64_t retry_at;
    struct fan_s *next_retry;
} fan_t;

/* A job that updates one row found by a pair of ids: a fan-out done mark (from_id,
 * server_msg_id) or a delivery confirmation (user_id, server_msg_id). */
typedef struct pair_job_s {
    logic_job_t job;
    uint64_t a, b;
} pair_job_t;

/* Done marks and delivery confirmations are not urgent: nobody waits for them (the sweeper
 * looks at fan-outs only after SWEEP_AGE_MS). They wait up to PAIR_LINGER_MS, or until a full
 * statement's worth is queued, and go to the shard's worker together: on a light load one
 * UPDATE then covers many messages instead of one statement, commit and two thread hand-offs
 * each. */
#define PAIR_LINGER_MS 20
enum { PAIR_MARK, PAIR_CONFIRM, PAIR_KINDS };

typedef struct {
    logic_job_t *head, *tail;
    int n;
} pair_q_t;

static struct {
    logic_t *l;
    im_map_t known;   /* uid -> (void *) 1: users known to exist */
    im_map_t nicks;   /* uid -> strdup(nick) */
    im_map_t senders; /* uid -> sender_q_t: messages between arrival and store, in order */
    uv_timer_t sweep_timer, retry_timer, linger_timer;
    pair_q_t pairs[PAIR_KINDS][IM_SHARD_COUNT];
    int stopped;
    im_map_t held; /* uid -> held_t: fan-out jobs waiting for a retry, in order */
    int sweeping[IM_SHARD_COUNT];
    /* sweeper paging: a full page sets sweep_after to its last id (0: start over at the next
     * tick) and the next page follows as soon as most of this one is done, so a backlog left by
     * a crash under load drains at fan-out speed, with at most ~1.5 pages per shard in flight */
    uint64_t sweep_after[IM_SHARD_COUNT];
    int sweep_live[IM_SHARD_COUNT];
    im_metric_t *sent, *acked, *dups, *refused, *errors, *fan_rows, *fan_retries, *pushes, *swept,
        *confirms;
} M;

static void sweep_shard(unsigned shard);

static void msg_unref(logic_msg_t *m)
{
    if (--m->refs > 0)
        return;
    if (m->swept) {
        unsigned sh = (unsigned) m->swept - 1;
        M.sweep_live[sh]--;
        if (M.sweep_after[sh])
            sweep_shard(sh);
    }
    free(m->data);
    free(m->rcpt);
    free(m);
}

/* ---------------------------------------------------------------- nick cache */

void logic_nick_set(uint64_t uid, const char *nick)
{
    char *old = im_map_get(&M.nicks, uid);
    if (old && strcmp(old, nick) == 0)
        return;
    char *n = strdup(nick);
    if (!n)
        return;
    if (M.nicks.len > KNOWN_USERS_MAX) {
        uint64_t k;
        void *v;
        for (size_t it = 0; im_map_next(&M.nicks, &it, &k, &v);)
            free(v);
        im_map_free(&M.nicks);
        im_map_init(&M.nicks);
        old = NULL;
    }
    free(old);
    im_map_put(&M.nicks, uid, n);
    im_map_put(&M.known, uid, (void *) 1);
}

const char *logic_nick_get(uint64_t uid)
{
    const char *n = im_map_get(&M.nicks, uid);
    return n ? n : "";
}

/* ---------------------------------------------------------------- pushes */

typedef struct push_s {
    uint64_t uid, skip_gate, skip_conn;
    uint16_t cmd;
    size_t len;
    uint8_t body[];
} push_t;

static void push_routes(im_redis_t *rd, redisReply *reply, void *ud)
{
    push_t *p = ud;
    (void) rd;
    if (reply && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            const redisReply *f = reply->element[i], *v = reply->element[i + 1];
            unsigned long long gid = 0, cid = 0;
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                sscanf(v->str, "%llu:%llu", &gid, &cid) != 2)
                continue;
            if (gid == p->skip_gate && cid == p->skip_conn)
                continue;
            if (logic_down(gid, CIM__INTERNAL__DOWNSTREAM__KIND__PACKET, cid, p->uid,
                           (uint32_t) atoi(f->str), p->cmd, 0, p->body, p->len) == 0)
                im_metric_add(M.pushes, 1);
        }
    }
    free(p);
}

void logic_push_user(uint64_t uid, uint64_t skip_gate, uint64_t skip_conn, uint16_t cmd,
                     const uint8_t *body, size_t len)
{
    push_t *p = malloc(sizeof(*p) + len);
    if (!p)
        return;
    p->uid = uid;
    p->skip_gate = skip_gate;
    p->skip_conn = skip_conn;
    p->cmd = cmd;
    p->len = len;
    if (len)
        memcpy(p->body, body, len);
    if (im_redis_cmd(g_logic.redis, push_routes, p, "HGETALL cim:rt:%llu",
                     (unsigned long long) uid) != 0)
        free(p); /* no routes known: the device gets it at its next sync */
}

/* 0x0301 for one inbox entry of owner (seq: the owner's) */
static void push_entry(const logic_msg_t *m, uint64_t owner, uint64_t seq, uint64_t skip_gate,
                       uint64_t skip_conn)
{
    CIM__Def__CIMMsgData d = CIM__DEF__CIMMSG_DATA__INIT;
    d.from_user_id = m->from_id;
    d.from_nick_name = m->nick[0] ? (char *) m->nick : (char *) logic_nick_get(m->from_id);
    /* 1:1 (and API pushes to many): the recipient's own id; the author's copy: the peer */
    d.to_session_id = m->session_type == 1 && owner != m->from_id ? owner : m->to_id;
    d.client_msg_id = (char *) m->cmid;
    d.server_msg_id = m->server_msg_id;
    d.create_time = (int32_t) m->created;
    d.msg_type = (CIM__Def__CIMMsgType) m->msg_type;
    d.session_type = (CIM__Def__CIMSessionType) m->session_type;
    d.msg_data.data = m->data;
    d.msg_data.len = m->len;
    d.seq = seq;
    size_t n = cim__def__cimmsg_data__get_packed_size(&d);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    cim__def__cimmsg_data__pack(&d, buf);
    logic_push_user(owner, skip_gate, skip_conn, IM_CMD_MSG_DATA, buf, n);
    free(buf);
}

/* ---------------------------------------------------------------- unread (Redis cache) */

/* Incremented only while the user's cache is built (marker field "_"): a cache rebuilt from
 * MySQL later counts what was missed. */
static const char *UNREAD_INCR_LUA =
    "if redis.call('HEXISTS', KEYS[1], '_') == 1 then "
    "return redis.call('HINCRBY', KEYS[1], ARGV[1], 1) end return 0";

static void unread_incr(uint64_t uid, uint32_t st, uint64_t sid)
{
    char key[40], field[48];
    snprintf(key, sizeof(key), "cim:unr:%llu", (unsigned long long) uid);
    snprintf(field, sizeof(field), "%u:%llu", st, (unsigned long long) sid);
    im_redis_cmd(g_logic.redis, NULL, NULL, "EVAL %s 1 %s %s", UNREAD_INCR_LUA, key, field);
}

/* ---------------------------------------------------------------- fan-out */

static void fan_submit(fan_t *f);
static void fan_submit_now(fan_t *f);
static void mark_done(logic_msg_t *m);
static void fanout_finished(logic_msg_t *m);
static void ack(const logic_msg_t *m, int res);

static db_tpl_t recv_insert = {
    "INSERT INTO im_message_recv (user_id, seq, server_msg_id, from_id, session_type, "
    "session_id, msg_type, status, created) VALUES ",
    "(?, ?, ?, ?, ?, ?, ?, 0, ?)",
    "",
    {0}};

/* distinct users of a batch with how many rows each gets, sorted by id */
typedef struct seq_need_s {
    uint64_t uid[LOGIC_DB_BATCH_MAX], add[LOGIC_DB_BATCH_MAX], end[LOGIC_DB_BATCH_MAX];
    size_t n;
} seq_need_t;

static int cmp_u64p(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static void need_add(seq_need_t *s, uint64_t uid)
{
    s->uid[s->n] = uid;
    s->add[s->n++] = 1;
}

/* sort, merge duplicates (add counts) */
static void need_finish(seq_need_t *s)
{
    qsort(s->uid, s->n, sizeof(uint64_t), cmp_u64p);
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (k && s->uid[k - 1] == s->uid[i]) {
            s->add[k - 1]++;
        } else {
            s->uid[k] = s->uid[i];
            s->add[k++] = 1;
        }
    }
    s->n = k;
}

/* next seq for uid out of the allocated range (in call order); 0 when the user is missing */
static uint64_t need_take(seq_need_t *s, uint64_t uid)
{
    const uint64_t *p = bsearch(&uid, s->uid, s->n, sizeof(uint64_t), cmp_u64p);
    if (!p)
        return 0;
    size_t i = (size_t) (p - s->uid);
    if (!s->end[i])
        return 0;
    return s->end[i] - --s->add[i];
}

/* users a batch found missing (db_seq_alloc's DB_ENOUSER): it runs again without them */
typedef struct gone_s {
    uint64_t uid[LOGIC_DB_BATCH_MAX];
    size_t n;
} gone_t;

static int gone_has(const gone_t *g, uint64_t uid)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->uid[i] == uid)
            return 1;
    return 0;
}

/* note the users db_seq_alloc found missing; 0 when none was new (then do not run again) */
static int gone_note(gone_t *g, const seq_need_t *s)
{
    int added = 0;
    for (size_t i = 0; i < s->n; i++)
        if (!s->end[i] && !gone_has(g, s->uid[i]) && g->n < LOGIC_DB_BATCH_MAX) {
            g->uid[g->n++] = s->uid[i];
            added++;
        }
    return added;
}

static void fan_batch(logic_job_t **jobs, int n, logic_dbc_t *c)
{
    static __thread seq_need_t need;
    static __thread gone_t gone;
    int all = 0, tries = 0; /* all: every job looks first (a duplicate row surprised us) */
    long r = 0;
    gone.n = 0;
again:
    for (int i = 0; i < n; i++) {
        fan_t *f = (fan_t *) jobs[i];
        f->exists = f->nouser = 0;
        f->seq = 0;
    }
    if (db_begin(c) != DB_OK)
        goto fail;
    /* only the jobs that may have a row already look for it: one retried or swept job must not
     * cost the rest of the batch a SELECT each */
    for (int i = 0; i < n; i++) {
        fan_t *f = (fan_t *) jobs[i];
        if (all || f->checked) {
            int twin = 0; /* the same inbox row twice in this batch (a retry met the sweeper) */
            for (int j = 0; j < i && !twin; j++) {
                fan_t *o = (fan_t *) jobs[j];
                twin = o->user_id == f->user_id && o->m->server_msg_id == f->m->server_msg_id;
            }
            if (twin) {
                f->exists = 1;
                continue;
            }
            r = db_exec(c,
                        "SELECT seq FROM im_message_recv WHERE user_id = ? AND "
                        "server_msg_id = ?",
                        "UU", "U", f->user_id, f->m->server_msg_id, &f->seq);
            if (r < 0)
                goto fail_rb;
            f->exists = r == 1;
        }
    }
    /* seqs: every recipient's counter advanced once, in job order within the user */
    need.n = 0;
    for (int i = 0; i < n; i++) {
        fan_t *f = (fan_t *) jobs[i];
        if (f->exists)
            continue;
        if (gone_has(&gone, f->user_id))
            f->nouser = 1, f->seq = 1; /* no such user: nothing to write */
        else
            need_add(&need, f->user_id);
    }
    need_finish(&need);
    if (need.n && (r = db_seq_alloc(c, need.uid, need.add, need.end, need.n)) != DB_OK) {
        if (r == DB_ENOUSER && gone_note(&gone, &need)) {
            db_rollback(c); /* the counter rows it made for them go too */
            goto again;
        }
        goto fail_rb;
    }
    for (int i = 0; i < n; i++) {
        fan_t *f = (fan_t *) jobs[i];
        if (f->exists || f->nouser)
            continue;
        f->seq = need_take(&need, f->user_id);
        if (!f->seq)
            f->nouser = 1, f->seq = 1; /* no such user: nothing to write */
    }
    /* the rows, up to 64 per statement */
    int i = 0;
    while (i < n) {
        int left = 0;
        for (int j = i; j < n; j++) {
            fan_t *f = (fan_t *) jobs[j];
            left += !(f->exists || f->nouser);
        }
        if (!left)
            break;
        int k = db_chunk(left);
        db_binds_t *p = db_conn_binds(c);
        if (!p)
            goto fail_rb;
        for (int taken = 0; taken < k; i++) {
            fan_t *f = (fan_t *) jobs[i];
            if (f->exists || f->nouser)
                continue;
            const logic_msg_t *m = f->m;
            dbb_u64(p, f->user_id);
            dbb_u64(p, f->seq);
            dbb_u64(p, m->server_msg_id);
            dbb_u64(p, m->from_id);
            dbb_u64(p, m->session_type);
            dbb_u64(p, m->rcpt_session ? m->rcpt_session : m->from_id);
            dbb_u64(p, m->msg_type);
            dbb_u64(p, m->created);
            taken++;
        }
        r = db_exec_binds(c, db_tpl_sql(&recv_insert, k), p, NULL, NULL, "");
        if (r == DB_EDUP && !all) {
            db_rollback(c);
            all = 1;
            goto again;
        }
        if (r < 0)
            goto fail_rb;
    }
    if (db_commit(c) != DB_OK)
        goto fail;
    for (int j = 0; j < n; j++)
        jobs[j]->rc = DB_OK;
    return;
fail_rb:
    db_rollback(c);
    if (r == DB_ELOCK && ++tries < 5)
        goto again; /* rolled back as a whole: counters included */
fail:
    for (int j = 0; j < n; j++) {
        fan_t *f = (fan_t *) jobs[j];
        f->job.rc = DB_ECONN;
        f->checked = 1; /* the commit may have happened: look first next time */
    }
}

typedef struct held_s {
    fan_t *head, *tail;
    uint64_t retry_at;
} held_t;

/* A recipient whose inbox write failed: its jobs wait (in order) and go again together, and
 * new jobs for it queue behind them, so a shard outage does not reorder its inbox. */
static void hold(fan_t *f, uint64_t retry_at)
{
    held_t *h = im_map_get(&M.held, f->user_id);
    if (!h) {
        h = calloc(1, sizeof(*h));
        if (!h) {
            f->checked = 1;
            fan_submit_now(f);
            return;
        }
        h->retry_at = retry_at;
        im_map_put(&M.held, f->user_id, h);
    }
    f->next_retry = NULL;
    if (h->tail)
        h->tail->next_retry = f;
    else
        h->head = f;
    h->tail = f;
}

static void fan_retry_later(fan_t *f)
{
    f->tries++;
    uint64_t delay = RETRY_MIN_MS << (f->tries < 5 ? f->tries : 5);
    if (delay > RETRY_MAX_MS)
        delay = RETRY_MAX_MS;
    f->retry_at = im_mono_ms() + delay;
    hold(f, f->retry_at);
    im_metric_add(M.fan_retries, 1);
}

static void fan_done(logic_job_t *job)
{
    fan_t *f = (fan_t *) job;
    logic_msg_t *m = f->m;
    if (job->rc != DB_OK) {
        if (g_logic.stopping) {
            m->fan_failed = 1; /* the sweeper of a live logic finishes it */
        } else {
            fan_retry_later(f);
            return;
        }
    } else if (f->nouser) {
        log_warn("message %llu: recipient %llu does not exist: skipped",
                 (unsigned long long) m->server_msg_id, (unsigned long long) f->user_id);
    } else {
        im_metric_add(M.fan_rows, f->exists ? 0 : 1);
        m->rows++;
        if (!f->exists) {
            if (m->push)
                push_entry(m, f->user_id, f->seq, 0, 0);
            if (m->msg_type != LOGIC_NOTIFICATION) {
                uint64_t sid = m->rcpt_session ? m->rcpt_session : m->from_id;
                unread_incr(f->user_id, m->session_type, sid);
                if (logic_webhook_enabled() &&
                    (m->session_type == 1 || m->nrcpt + 1 <= (size_t) logic_webhook_group_max()))
                    logic_webhook_schedule(f->user_id, m->from_id, m->session_type, sid,
                                           m->server_msg_id, m->msg_type, m->data, m->len,
                                           m->created);
            }
        }
    }
    free(f);
    if (m->refs == 1) /* the last fan-out job */
        fanout_finished(m);
    msg_unref(m);
}

static void fan_submit_now(fan_t *f)
{
    f->job.batch = fan_batch;
    f->job.done = fan_done;
    logic_db_submit(im_shard_of(f->user_id, IM_SHARD_COUNT), f->user_id, &f->job);
}

static void fan_submit(fan_t *f)
{
    if (im_map_get(&M.held, f->user_id)) {
        f->checked = 1;
        hold(f, 0); /* behind the ones waiting for a retry */
        return;
    }
    fan_submit_now(f);
}

static void fanout_start(logic_msg_t *m, int checked)
{
    /* the store's reference passes to the fan-out jobs: the last one to finish frees m */
    for (size_t i = 0; i < m->nrcpt; i++) {
        fan_t *f = calloc(1, sizeof(*f));
        if (!f) {
            m->fan_failed = 1;
            continue;
        }
        f->m = m;
        f->user_id = m->rcpt[i];
        f->checked = checked;
        m->refs++;
        fan_submit(f);
    }
    if (m->refs == 1) /* nothing to fan out */
        fanout_finished(m);
    msg_unref(m);
}

static void retry_tick(uv_timer_t *t)
{
    (void) t;
    uint64_t now = im_mono_ms(), uid;
    void *v;
    for (size_t it = 0; im_map_next(&M.held, &it, &uid, &v);) {
        held_t *h = v;
        if (h->retry_at > now)
            continue;
        im_map_del(&M.held, uid);
        for (fan_t *f = h->head; f;) {
            fan_t *next = f->next_retry;
            f->next_retry = NULL;
            f->checked = 1;
            fan_submit_now(f);
            f = next;
        }
        free(h);
    }
}

/* every recipient's inbox row is written (or the message has none) */
static void fanout_finished(logic_msg_t *m)
{
    if (!m->fan_failed)
        mark_done(m);
    if (m->cb_after_fanout && m->cb) {
        m->cb(m->ud, m->fan_failed ? IM_RES_ERROR : 0, m->server_msg_id, m->rows);
        m->cb = NULL;
    }
    if (m->ack_after_fanout) {
        m->ack_after_fanout = 0;
        im_metric_add(M.acked, 1);
        ack(m, m->fan_failed ? IM_RES_ERROR : IM_RES_OK);
        if (m->cb)
            m->cb(m->ud, m->fan_failed ? IM_RES_ERROR : 0, m->server_msg_id, m->from_seq);
    }
}

/* ---------------------------------------------------------------- done marks */

/* MariaDB 10.11 plans "(a, b) IN ((?, ?))" with one pair as a full table scan (measured:
 * ~42,000 rows examined per statement); the one-row form is spelled out. With several pairs
 * the range optimizer builds trees for every index that starts with from_id (most of the
 * statement's CPU in perf): FORCE INDEX leaves it the one that matches. */
static db_tpl_t mark_update = {
    "UPDATE im_message_send FORCE INDEX (PRIMARY) SET fanout = 1 WHERE (from_id, server_msg_id) IN "
    "(",
    "(?, ?)",
    ")",
    {[1] = "UPDATE im_message_send SET fanout = 1 WHERE from_id = ? AND server_msg_id = ?"}};

/* Run tpl over the pairs of jobs[0..n), up to DB_ROWS_MAX per statement (padded IN). One
 * statement commits on its own (autocommit): START TRANSACTION and COMMIT would be two more
 * round trips, and each costs more than the statement on a light load; more than one run in a
 * transaction. 0, or -1 (rolled back). */
static int update_pairs(logic_job_t **jobs, int n, logic_dbc_t *c, db_tpl_t *tpl)
{
    int txn = n > DB_ROWS_MAX;
    if (txn && db_begin(c) != DB_OK)
        return -1;
    for (int i = 0; i < n;) {
        int k = n - i < DB_ROWS_MAX ? n - i : DB_ROWS_MAX, sz = db_pad(k);
        db_binds_t *p = db_conn_binds(c);
        if (!p)
            goto fail;
        for (int j = 0; j < sz; j++) { /* padded with the last pair: IN ignores repeats */
            pair_job_t *x = (pair_job_t *) jobs[i + (j < k ? j : k - 1)];
            dbb_u64(p, x->a);
            dbb_u64(p, x->b);
        }
        i += k;
        if (db_exec_binds(c, db_tpl_sql(tpl, sz), p, NULL, NULL, "") < 0)
            goto fail;
    }
    if (!txn || db_commit(c) == DB_OK)
        return 0;
    return -1;
fail:
    if (txn)
        db_rollback(c);
    return -1;
}

static void pair_flush(int kind, unsigned shard)
{
    pair_q_t *q = &M.pairs[kind][shard];
    if (!q->head)
        return;
    /* one worker per queue: the first pair's key picks it (these jobs need no order) */
    uint64_t key = ((pair_job_t *) q->head)->a;
    logic_job_t *head = q->head;
    q->head = q->tail = NULL;
    q->n = 0;
    logic_db_submit_chain(shard, key, head);
}

static void pair_flush_all(void)
{
    for (int k = 0; k < PAIR_KINDS; k++)
        for (unsigned s = 0; s < IM_SHARD_COUNT; s++)
            pair_flush(k, s);
}

static void linger_tick(uv_timer_t *t)
{
    (void) t;
    pair_flush_all();
}

static void pair_queue(int kind, unsigned shard, pair_job_t *k)
{
    if (M.stopped) { /* shutting down: straight to the worker, which runs its queue out */
        logic_db_submit(shard, k->a, &k->job);
        return;
    }
    pair_q_t *q = &M.pairs[kind][shard];
    k->job.next = NULL;
    if (q->tail)
        q->tail->next = &k->job;
    else
        q->head = &k->job;
    q->tail = &k->job;
    if (++q->n >= DB_ROWS_MAX) {
        pair_flush(kind, shard);
    } else if (!uv_is_active((uv_handle_t *) &M.linger_timer)) {
        uv_timer_start(&M.linger_timer, linger_tick, PAIR_LINGER_MS, 0);
    }
}

static void mark_batch(logic_job_t **jobs, int n, logic_dbc_t *c)
{
    if (update_pairs(jobs, n, c, &mark_update) == 0)
        return;
    for (int i = 0; i < n; i++)
        jobs[i]->rc = DB_ECONN; /* the sweeper will find them and mark them */
}

static void pair_job_free(logic_job_t *job)
{
    free(job);
}

static void mark_done(logic_msg_t *m)
{
    if (m->fanout_done)
        return;
    m->fanout_done = 1;
    pair_job_t *k = calloc(1, sizeof(*k));
    if (!k)
        return;
    k->a = m->from_id;
    k->b = m->server_msg_id;
    k->job.batch = mark_batch;
    k->job.done = pair_job_free;
    pair_queue(PAIR_MARK, im_shard_of(m->from_id, IM_SHARD_COUNT), k);
}

/* ---------------------------------------------------------------- store (shard of the author) */

static db_tpl_t send_insert = {
    "INSERT INTO im_message_send (from_id, server_msg_id, client_msg_id, to_id, session_type, "
    "msg_type, from_seq, client_type, status, fanout, created, msg_data) VALUES ",
    "(?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
    "",
    {0}};

static void store_batch(logic_job_t **jobs, int n, logic_dbc_t *c)
{
    static __thread seq_need_t need;
    static __thread gone_t gone;
    int all = 0, tries = 0; /* all: every job looks first (a duplicate row surprised us) */
    long r = 0;
    gone.n = 0;
again:
    for (int i = 0; i < n; i++) {
        logic_msg_t *m = (logic_msg_t *) jobs[i];
        m->dup = 0;
        m->from_seq = 0;
    }
    if (db_begin(c) != DB_OK)
        goto fail;
    /* resends and retries look for their earlier copy; the rest of the batch does not */
    for (int i = 0; i < n; i++) {
        logic_msg_t *m = (logic_msg_t *) jobs[i];
        if (all || m->checked) {
            /* the same message twice in this batch: the later one is a resend */
            for (int j = 0; j < i && !m->dup; j++) {
                logic_msg_t *o = (logic_msg_t *) jobs[j];
                if (o->from_id == m->from_id && !o->dup && strcmp(o->cmid, m->cmid) == 0)
                    m->dup = -1 - j;
            }
            if (m->dup)
                continue;
            uint64_t sid = 0, seq = 0;
            uint32_t done = 0, created = 0;
            r = db_exec(c,
                        "SELECT server_msg_id, from_seq, fanout, created FROM "
                        "im_message_send WHERE from_id = ? AND client_msg_id = ?",
                        "Us", "UUuu", m->from_id, m->cmid, &sid, &seq, &done, &created);
            if (r < 0)
                goto fail_rb;
            if (r == 1) {
                m->dup = 1;
                m->server_msg_id = sid;
                m->from_seq = seq;
                m->fanout_done = (int) done;
                m->created = created;
            }
        }
    }
    /* authors' inbox seqs: one counter update per author, in job order within the author */
    need.n = 0;
    for (int i = 0; i < n; i++) {
        logic_msg_t *m = (logic_msg_t *) jobs[i];
        if (!m->dup && m->in_author_inbox && !gone_has(&gone, m->from_id))
            need_add(&need, m->from_id); /* a gone author gets no seq below: DB_ERR */
    }
    need_finish(&need);
    if (need.n && (r = db_seq_alloc(c, need.uid, need.add, need.end, need.n)) != DB_OK) {
        if (r == DB_ENOUSER && gone_note(&gone, &need)) {
            db_rollback(c); /* the counter rows it made for them go too */
            goto again;
        }
        goto fail_rb;
    }
    for (int i = 0; i < n; i++) {
        logic_msg_t *m = (logic_msg_t *) jobs[i];
        if (m->dup || !m->in_author_inbox)
            continue;
        m->from_seq = need_take(&need, m->from_id);
        if (!m->from_seq)
            m->job.rc = DB_ERR; /* no such author (not for a logged-in user) */
    }
    for (int i = 0; i < n; i++) {
        logic_msg_t *m = (logic_msg_t *) jobs[i];
        if (m->need_nick && !m->nick[0]) {
            r = db_exec(c, "SELECT nick_name FROM im_user WHERE user_id = ?", "U", "s", m->from_id,
                        m->nick, sizeof(m->nick));
            if (r < 0)
                goto fail_rb;
            for (int j = i + 1; j < n; j++) { /* the same author later in the batch */
                logic_msg_t *o = (logic_msg_t *) jobs[j];
                if (o->from_id == m->from_id)
                    memcpy(o->nick, m->nick, sizeof(o->nick));
            }
        }
    }
    /* the outbox rows, up to 64 per statement */
    int row = 0;
    while (row < n) {
        int left = 0;
        for (int j = row; j < n; j++) {
            logic_msg_t *m = (logic_msg_t *) jobs[j];
            left += !m->dup && m->job.rc == DB_OK;
        }
        if (!left)
            break;
        int k = db_chunk(left);
        db_binds_t *p = db_conn_binds(c);
        if (!p)
            goto fail_rb;
        for (int taken = 0; taken < k; row++) {
            logic_msg_t *m = (logic_msg_t *) jobs[row];
            if (m->dup || m->job.rc != DB_OK)
                continue;
            dbb_u64(p, m->from_id);
            dbb_u64(p, m->server_msg_id);
            dbb_str(p, m->cmid, strlen(m->cmid));
            dbb_u64(p, m->to_id);
            dbb_u64(p, m->session_type);
            dbb_u64(p, m->msg_type);
            dbb_u64(p, m->from_seq);
            dbb_u64(p, m->client_type);
            dbb_u64(p, m->nrcpt == 0);
            dbb_u64(p, m->created);
            dbb_str(p, m->data, m->len);
            taken++;
        }
        r = db_exec_binds(c, db_tpl_sql(&send_insert, k), p, NULL, NULL, "");
        if (r == DB_EDUP && !all) {
            db_rollback(c);
            all = 1;
            goto again;
        }
        if (r < 0)
            goto fail_rb;
    }
    if (db_commit(c) != DB_OK)
        goto fail;
    /* resends inside the batch take the ids of their first copy */
    for (int i = 0; i < n; i++) {
        logic_msg_t *m = (logic_msg_t *) jobs[i];
        if (m->dup < 0) {
            logic_msg_t *o = (logic_msg_t *) jobs[-1 - m->dup];
            m->server_msg_id = o->server_msg_id;
            m->from_seq = o->from_seq;
            m->created = o->created;
            m->fanout_done = 1; /* the first copy fans out */
            m->dup = 1;
        }
    }
    return;
fail_rb:
    db_rollback(c);
    if (r == DB_ELOCK && ++tries < 5) {
        for (int i = 0; i < n; i++)
            jobs[i]->rc = DB_OK;
        goto again;
    }
fail:
    for (int i = 0; i < n; i++) {
        logic_msg_t *m = (logic_msg_t *) jobs[i];
        m->job.rc = DB_ECONN;
        m->checked = 1; /* the commit may have happened: a retry looks first */
    }
}

static void ack(const logic_msg_t *m, int res)
{
    if (!m->req.gate_id)
        return;
    if (res == IM_RES_OK)
        im_hist_observe(g_logic.m.ack_latency, (double) (im_mono_us() - m->recv_us) / 1e6);
    CIM__Def__CIMMsgDataAck a = CIM__DEF__CIMMSG_DATA_ACK__INIT;
    a.from_user_id = m->from_id;
    a.to_session_id = m->to_id;
    a.client_msg_id = (char *) m->cmid;
    a.res_code = (CIM__Def__CIMResCode) res;
    a.session_type = (CIM__Def__CIMSessionType) m->session_type;
    if (res == IM_RES_OK) {
        a.server_msg_id = m->server_msg_id;
        a.create_time = (int32_t) m->created;
        a.seq = m->from_seq;
    }
    logic_reply(&m->req, IM_CMD_MSG_DATA_ACK, &a);
}

static void store_done(logic_job_t *job)
{
    logic_msg_t *m = (logic_msg_t *) job;
    if (job->rc != DB_OK) {
        im_metric_add(M.errors, 1);
        ack(m, IM_RES_ERROR); /* "retry the same client_msg_id later" */
        if (m->cb)
            m->cb(m->ud, IM_RES_ERROR, 0, 0);
        msg_unref(m);
        return;
    }
    if (m->dup && !m->fanout_done) {
        /* Guarantee 2: a resend of a message whose fan-out was cut short completes it first */
        im_metric_add(M.dups, 1);
        m->ack_after_fanout = 1;
        fanout_start(m, 1);
        return;
    }
    if (m->nick[0] && m->need_nick)
        logic_nick_set(m->from_id, m->nick);
    im_metric_add(M.acked, 1);
    ack(m, IM_RES_OK);
    if (m->cb && !m->cb_after_fanout)
        m->cb(m->ud, 0, m->server_msg_id, m->from_seq);
    if (m->dup) {
        im_metric_add(M.dups, 1);
        msg_unref(m);
        return;
    }
    /* the author's other devices see what it sent */
    if (m->from_seq && m->push)
        push_entry(m, m->from_id, m->from_seq, m->req.gate_id, m->req.conn_id);
    fanout_start(m, m->checked);
}

static logic_msg_t *msg_new(uint64_t from_id, uint64_t to_id, uint32_t session_type,
                            uint32_t msg_type, const char *cmid, const uint8_t *data, size_t len)
{
    logic_msg_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->data = malloc(len ? len : 1);
    if (!m->data) {
        free(m);
        return NULL;
    }
    if (len)
        memcpy(m->data, data, len);
    m->len = len;
    m->from_id = from_id;
    m->to_id = to_id;
    m->session_type = session_type;
    m->msg_type = msg_type;
    snprintf(m->cmid, sizeof(m->cmid), "%s", cmid);
    m->created = (uint32_t) time(NULL);
    m->recv_us = im_mono_us();
    m->refs = 1;
    m->job.batch = store_batch;
    m->job.done = store_done;
    return m;
}

static void store_submit(logic_msg_t *m)
{
    m->need_nick = m->from_id && !im_map_get(&M.nicks, m->from_id);
    m->server_msg_id = im_idgen_next(&g_logic.idgen, im_now_ms());
    im_metric_add(M.sent, 1);
    logic_db_submit(im_shard_of(m->from_id, IM_SHARD_COUNT), m->from_id, &m->job);
}

/* ---------------------------------------------------------------- per-sender order */

/* Checks before the store (does the recipient exist, who is in the group) take different
 * times; a sender's messages must still be stored, acked and delivered in the order sent. */
static void sender_enqueue(logic_msg_t *m)
{
    sender_q_t *q = im_map_get(&M.senders, m->from_id);
    if (!q) {
        q = calloc(1, sizeof(*q));
        if (!q) {
            m->ready = 1; /* no memory for ordering: go alone */
            return;
        }
        im_map_put(&M.senders, m->from_id, q);
    }
    m->q_next = NULL;
    if (q->tail)
        q->tail->q_next = m;
    else
        q->head = m;
    q->tail = m;
}

static void sender_drain(uint64_t from)
{
    sender_q_t *q = im_map_get(&M.senders, from);
    if (!q)
        return;
    while (q->head && q->head->ready) {
        logic_msg_t *m = q->head;
        q->head = m->q_next;
        if (!q->head)
            q->tail = NULL;
        if (m->ready_res == 0) {
            store_submit(m);
        } else {
            ack(m, m->ready_res);
            im_metric_add(m->ready_res == IM_RES_REFUSED ? M.refused : M.errors, 1);
            msg_unref(m);
        }
    }
    if (!q->head) {
        im_map_del(&M.senders, from);
        free(q);
    }
}

static void mark_ready(logic_msg_t *m, int res)
{
    m->ready = 1;
    m->ready_res = res;
    if (!im_map_get(&M.senders, m->from_id)) { /* was not queued */
        if (res == 0) {
            store_submit(m);
        } else {
            ack(m, res);
            msg_unref(m);
        }
        return;
    }
    sender_drain(m->from_id);
}

/* ---------------------------------------------------------------- recipient check */

typedef struct exists_s {
    logic_job_t job;
    uint64_t uid;
    int found;
    logic_msg_t *m;
} exists_t;

static void exists_work(logic_job_t *job, logic_dbc_t *c)
{
    exists_t *e = (exists_t *) job;
    uint32_t one = 0;
    long r = db_exec(c, "SELECT 1 FROM im_user WHERE user_id = ?", "U", "u", e->uid, &one);
    job->rc = r < 0 ? (int) r : DB_OK;
    e->found = r == 1;
}

static void exists_done(logic_job_t *job)
{
    exists_t *e = (exists_t *) job;
    logic_msg_t *m = e->m;
    if (job->rc != DB_OK) {
        mark_ready(m, IM_RES_ERROR);
    } else if (!e->found) {
        log_info("conn %llu user %llu: message to unknown user %llu refused",
                 (unsigned long long) m->req.conn_id, (unsigned long long) m->from_id,
                 (unsigned long long) e->uid);
        mark_ready(m, IM_RES_REFUSED);
    } else {
        logic_user_mark_known(e->uid);
        mark_ready(m, 0);
    }
    free(e);
}

/* ---------------------------------------------------------------- client send */

static void refuse(const logic_req_t *r, const CIM__Def__CIMMsgData *d, int res, const char *why)
{
    CIM__Def__CIMMsgDataAck a = CIM__DEF__CIMMSG_DATA_ACK__INIT;
    a.from_user_id = r->user_id;
    a.to_session_id = d ? d->to_session_id : 0;
    a.client_msg_id = d ? d->client_msg_id : (char *) "";
    a.res_code = (CIM__Def__CIMResCode) res;
    a.session_type = d ? d->session_type : CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_Invalid;
    logic_reply(r, IM_CMD_MSG_DATA_ACK, &a);
    if (res == IM_RES_REFUSED)
        im_metric_add(M.refused, 1);
    else
        im_metric_add(M.errors, 1);
    log_debug("conn %llu user %llu: message refused (%s)", (unsigned long long) r->conn_id,
              (unsigned long long) r->user_id, why);
}

static logic_group_send_fn g_group_send;

void logic_msg_set_group_sender(logic_group_send_fn fn)
{
    g_group_send = fn;
}

uint64_t logic_msg_author(const logic_msg_t *m)
{
    return m->from_id;
}

uint64_t logic_msg_session(const logic_msg_t *m)
{
    return m->to_id;
}

int logic_user_known(uint64_t uid)
{
    return im_map_get(&M.known, uid) != NULL;
}

void logic_user_mark_known(uint64_t uid)
{
    if (M.known.len > KNOWN_USERS_MAX) {
        im_map_free(&M.known);
        im_map_init(&M.known);
    }
    im_map_put(&M.known, uid, (void *) 1);
}

void logic_msg_send(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMMsgData *d = cim__def__cimmsg_data__unpack(NULL, len, body);
    if (!d) {
        refuse(r, NULL, IM_RES_REFUSED, "malformed body");
        return;
    }
    size_t cl = strlen(d->client_msg_id);
    if (d->from_user_id != 0 && d->from_user_id != r->user_id)
        refuse(r, d, IM_RES_REFUSED, "from_user_id is not the connection's user");
    else if (cl == 0 || cl > 64)
        refuse(r, d, IM_RES_REFUSED, "client_msg_id must be 1-64 bytes");
    else if (d->msg_data.len > LOGIC_MSG_DATA_MAX)
        refuse(r, d, IM_RES_REFUSED, "msg_data too large");
    else if (d->to_session_id == 0 || d->to_session_id >= (1ULL << 53))
        refuse(r, d, IM_RES_REFUSED, "no such session");
    else if (d->session_type != CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_SINGLE &&
             !(d->session_type == CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_GROUP &&
               g_group_send))
        refuse(r, d, IM_RES_REFUSED, "unsupported session type");
    else if (d->session_type == CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_SINGLE &&
             d->to_session_id == r->user_id)
        refuse(r, d, IM_RES_REFUSED, "message to oneself");
    else if ((uint32_t) d->msg_type == LOGIC_NOTIFICATION)
        refuse(r, d, IM_RES_REFUSED, "clients cannot send notifications");
    else if ((uint32_t) d->msg_type > 10)
        refuse(r, d, IM_RES_REFUSED, "msg_type out of range (0-10)");
    else if (g_logic.worker_id < 0)
        refuse(r, d, IM_RES_ERROR, "no message id worker leased yet");
    else {
        logic_msg_t *m =
            msg_new(r->user_id, d->to_session_id, (uint32_t) d->session_type,
                    (uint32_t) d->msg_type, d->client_msg_id, d->msg_data.data, d->msg_data.len);
        if (!m) {
            refuse(r, d, IM_RES_ERROR, "out of memory");
        } else {
            m->req = *r;
            m->client_type = r->client_type;
            m->in_author_inbox = 1;
            m->push = 1;
            sender_enqueue(m);
            if (m->session_type == CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_GROUP) {
                g_group_send(m, r); /* resolves members, then logic_msg_store_to() */
            } else {
                m->rcpt = malloc(sizeof(uint64_t));
                if (!m->rcpt) {
                    mark_ready(m, IM_RES_ERROR);
                } else {
                    m->rcpt[0] = m->to_id;
                    m->nrcpt = 1;
                    m->rcpt_session = 0; /* the recipient sees the author as the session */
                    if (im_map_get(&M.known, m->to_id)) {
                        mark_ready(m, 0);
                    } else {
                        exists_t *e = calloc(1, sizeof(*e));
                        if (!e) {
                            mark_ready(m, IM_RES_ERROR);
                        } else {
                            e->uid = m->to_id;
                            e->m = m;
                            e->job.work = exists_work;
                            e->job.done = exists_done;
                            logic_db_submit(im_shard_of(e->uid, IM_SHARD_COUNT), e->uid, &e->job);
                        }
                    }
                }
            }
        }
    }
    cim__def__cimmsg_data__free_unpacked(d, NULL);
}

void logic_msg_store_to(logic_msg_t *m, uint64_t *rcpt, size_t n, int res_if_refused)
{
    if (!rcpt) {
        mark_ready(m, res_if_refused);
        return;
    }
    m->rcpt = rcpt;
    m->nrcpt = n;
    m->rcpt_session = m->to_id;
    mark_ready(m, 0);
}

/* ---------------------------------------------------------------- internal posts */

static int post_mode_counted;

void logic_msg_post(uint64_t from_id, uint64_t to_id, uint32_t session_type, uint32_t msg_type,
                    const char *client_msg_id, const uint8_t *data, size_t len,
                    const uint64_t *rcpt, size_t nrcpt, int in_author_inbox, int push,
                    logic_msg_done_cb cb, void *ud)
{
    logic_msg_t *m = msg_new(from_id, to_id, session_type, msg_type, client_msg_id, data, len);
    if (m && nrcpt) {
        m->rcpt = malloc(nrcpt * sizeof(uint64_t));
        if (!m->rcpt) {
            msg_unref(m);
            m = NULL;
        } else {
            memcpy(m->rcpt, rcpt, nrcpt * sizeof(uint64_t));
        }
    }
    if (!m || g_logic.worker_id < 0) {
        if (m)
            msg_unref(m);
        if (cb)
            cb(ud, IM_RES_ERROR, 0, 0);
        return;
    }
    m->nrcpt = nrcpt;
    m->rcpt_session =
        session_type == CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_GROUP ? to_id : 0;
    m->in_author_inbox = in_author_inbox && from_id != 0;
    m->push = push;
    m->checked = 1; /* internal ids may repeat after a restart: dedupe against the store */
    m->cb = cb;
    m->ud = ud;
    m->cb_after_fanout = post_mode_counted;
    store_submit(m);
}

void logic_msg_post_counted(uint64_t from_id, uint64_t to_id, uint32_t session_type,
                            uint32_t msg_type, const char *client_msg_id, const uint8_t *data,
                            size_t len, const uint64_t *rcpt, size_t nrcpt, int in_author_inbox,
                            int push, logic_msg_done_cb cb, void *ud)
{
    post_mode_counted = 1;
    logic_msg_post(from_id, to_id, session_type, msg_type, client_msg_id, data, len, rcpt, nrcpt,
                   in_author_inbox, push, cb, ud);
    post_mode_counted = 0;
}

/* ---------------------------------------------------------------- delivery confirmations */

static db_tpl_t confirm_update = {
    "UPDATE im_message_recv FORCE INDEX (uk_msg) SET status = 1 WHERE status = 0 AND "
    "(user_id, server_msg_id) IN (",
    "(?, ?)",
    ")",
    {[1] = "UPDATE im_message_recv SET status = 1 WHERE status = 0 AND user_id = ? AND "
           "server_msg_id = ?"}};

static void confirm_batch(logic_job_t **jobs, int n, logic_dbc_t *c)
{
    update_pairs(jobs, n, c, &confirm_update); /* on failure the rows stay status 0 */
}

void logic_msg_confirm(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMMsgDataAck *a = cim__def__cimmsg_data_ack__unpack(NULL, len, body);
    if (!a)
        return;
    if (r->user_id && a->server_msg_id) {
        pair_job_t *k = calloc(1, sizeof(*k));
        if (k) {
            /* only the confirming user's own inbox row can change */
            k->a = r->user_id;
            k->b = a->server_msg_id;
            k->job.batch = confirm_batch;
            k->job.done = pair_job_free;
            im_metric_add(M.confirms, 1);
            pair_queue(PAIR_CONFIRM, im_shard_of(r->user_id, IM_SHARD_COUNT), k);
        }
    }
    cim__def__cimmsg_data_ack__free_unpacked(a, NULL);
}

/* ---------------------------------------------------------------- sweeper */

typedef struct sweep_s {
    logic_job_t job;
    unsigned shard;
    uint64_t before_id, after_id;
    logic_msg_t *found[SWEEP_LIMIT];
    int n;
    /* row buffers */
    uint64_t from_id, sid, to_id, from_seq;
    uint32_t st, mt, ct, created;
    char cmid[65];
    uint8_t data[LOGIC_MSG_DATA_MAX];
    size_t len;
} sweep_t;

static logic_group_members_fn g_group_members;

void logic_msg_set_group_members(logic_group_members_fn fn)
{
    g_group_members = fn;
}

static void sweep_row(void *ud)
{
    sweep_t *s = ud;
    if (s->n >= SWEEP_LIMIT)
        return;
    logic_msg_t *m = msg_new(s->from_id, s->to_id, s->st, s->mt, s->cmid, s->data, s->len);
    if (!m)
        return;
    m->server_msg_id = s->sid;
    m->from_seq = s->from_seq;
    m->client_type = s->ct;
    m->created = s->created;
    m->push = 1;
    s->found[s->n++] = m;
}

static void sweep_work(logic_job_t *job, logic_dbc_t *c)
{
    sweep_t *s = (sweep_t *) job;
    long r = db_query(c,
                      "SELECT from_id, server_msg_id, client_msg_id, to_id, session_type, "
                      "msg_type, from_seq, client_type, created, msg_data FROM im_message_send "
                      "WHERE fanout = 0 AND server_msg_id > ? AND server_msg_id < ? ORDER BY "
                      "server_msg_id LIMIT 200",
                      sweep_row, s, "UU", "UUsUuuUuub", s->after_id, s->before_id, &s->from_id,
                      &s->sid, s->cmid, sizeof(s->cmid), &s->to_id, &s->st, &s->mt, &s->from_seq,
                      &s->ct, &s->created, s->data, sizeof(s->data), &s->len);
    job->rc = r < 0 ? (int) r : DB_OK;
}

static void sweep_resolved(logic_msg_t *m, uint64_t *rcpt, size_t n)
{
    if (!rcpt && n == (size_t) -1) { /* could not resolve now: next sweep */
        msg_unref(m);
        return;
    }
    m->rcpt = rcpt;
    m->nrcpt = n;
    m->rcpt_session = m->to_id;
    fanout_start(m, 1);
}

static void sweep_done(logic_job_t *job)
{
    sweep_t *s = (sweep_t *) job;
    unsigned sh = s->shard;
    M.sweeping[sh] = 0;
    if (s->n)
        log_info("sweeper: shard %u: finishing %d interrupted fan-out(s)", sh, s->n);
    /* a full page: the next one starts after it; a short one: the next pass starts over */
    M.sweep_after[sh] =
        job->rc == DB_OK && s->n == SWEEP_LIMIT ? s->found[s->n - 1]->server_msg_id : 0;
    for (int i = 0; i < s->n; i++) { /* all counted before any can finish */
        s->found[i]->swept = (int) sh + 1;
        M.sweep_live[sh]++;
    }
    for (int i = 0; i < s->n; i++) {
        logic_msg_t *m = s->found[i];
        im_metric_add(M.swept, 1);
        if (m->session_type == CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_GROUP) {
            if (g_group_members)
                g_group_members(m, sweep_resolved);
            else
                msg_unref(m);
            continue;
        }
        m->rcpt = malloc(sizeof(uint64_t));
        if (!m->rcpt) {
            msg_unref(m);
            continue;
        }
        m->rcpt[0] = m->to_id;
        m->nrcpt = 1;
        m->rcpt_session = 0;
        fanout_start(m, 1);
    }
    free(s);
}

/* look for the next page of one shard, unless a page is being read or most of the last one
 * is still being fanned out */
static void sweep_shard(unsigned shard)
{
    if (g_logic.stopping || M.sweeping[shard] || M.sweep_live[shard] > SWEEP_LIMIT / 2)
        return;
    sweep_t *s = calloc(1, sizeof(*s));
    if (!s)
        return;
    s->shard = shard;
    s->before_id = im_id_floor(im_now_ms() - SWEEP_AGE_MS);
    s->after_id = M.sweep_after[shard];
    s->job.work = sweep_work;
    s->job.done = sweep_done;
    M.sweeping[shard] = 1;
    logic_db_submit(shard, 0, &s->job);
}

static void sweep_tick(uv_timer_t *t)
{
    (void) t;
    for (unsigned i = 0; i < IM_SHARD_COUNT; i++)
        sweep_shard(i);
}

/* ---------------------------------------------------------------- start / stop */

int logic_msg_start(logic_t *l)
{
    M.l = l;
    im_map_init(&M.known);
    im_map_init(&M.nicks);
    im_map_init(&M.senders);
    im_map_init(&M.held);
    M.sent = im_metrics_counter("cim_logic_msgs_received_total", "messages taken for storing");
    M.acked = im_metrics_counter("cim_logic_msgs_acked_total", "messages acked after commit");
    M.dups = im_metrics_counter("cim_logic_msgs_duplicate_total",
                                "resends answered with the stored message");
    M.refused = im_metrics_counter("cim_logic_msgs_refused_total", "messages refused");
    M.errors = im_metrics_counter("cim_logic_msgs_failed_total",
                                  "messages answered ERROR (storage unavailable)");
    M.fan_rows = im_metrics_counter("cim_logic_fanout_rows_total", "inbox rows written");
    M.fan_retries = im_metrics_counter("cim_logic_fanout_retries_total",
                                       "inbox writes retried (shard unavailable)");
    M.pushes = im_metrics_counter("cim_logic_pushes_total", "packets pushed to devices");
    M.swept = im_metrics_counter("cim_logic_sweeper_fanouts_total",
                                 "interrupted fan-outs finished by the sweeper");
    M.confirms = im_metrics_counter("cim_logic_delivery_confirms_total",
                                    "delivery confirmations (0x0302) from devices");
    uv_timer_init(l->loop, &M.sweep_timer);
    uv_timer_start(&M.sweep_timer, sweep_tick, SWEEP_MS, SWEEP_MS);
    uv_timer_init(l->loop, &M.retry_timer);
    uv_timer_start(&M.retry_timer, retry_tick, 100, 100);
    uv_timer_init(l->loop, &M.linger_timer);
    return 0;
}

void logic_msg_stop(void)
{
    uv_timer_stop(&M.sweep_timer);
    uv_close((uv_handle_t *) &M.sweep_timer, NULL);
    uv_timer_stop(&M.retry_timer);
    uv_close((uv_handle_t *) &M.retry_timer, NULL);
    /* queued marks and confirmations go now; later ones go straight to the workers */
    M.stopped = 1;
    uv_timer_stop(&M.linger_timer);
    uv_close((uv_handle_t *) &M.linger_timer, NULL);
    pair_flush_all();
    /* retries still waiting: the sweeper of a live logic finishes them */
    uint64_t hk;
    void *hv;
    for (size_t it = 0; im_map_next(&M.held, &it, &hk, &hv);) {
        held_t *h = hv;
        for (fan_t *f = h->head; f;) {
            fan_t *next = f->next_retry;
            f->m->fan_failed = 1;
            logic_msg_t *m = f->m;
            free(f);
            msg_unref(m);
            f = next;
        }
        free(h);
    }
    im_map_free(&M.held);
    uint64_t k;
    void *v;
    for (size_t it = 0; im_map_next(&M.nicks, &it, &k, &v);)
        free(v);
    im_map_free(&M.nicks);
    im_map_free(&M.known);
    for (size_t it = 0; im_map_next(&M.senders, &it, &k, &v);) {
        sender_q_t *q = v;
        while (q->head) {
            logic_msg_t *m = q->head;
            q->head = m->q_next;
            msg_unref(m);
        }
        free(q);
    }
    im_map_free(&M.senders);
}
