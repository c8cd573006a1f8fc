/* logic_read: what a user reads back: sync by seq (0x0207), history (0x0205), latest id
 * (0x0305), messages by id (0x0307), recent sessions with unread counts (0x0201); and what
 * changes read state: read acks (0x0303) and recalls (0x0310).
 *
 * A user's inbox is on shard(user): im_message_recv rows (lean: no body) plus the user's own
 * outbox rows (im_message_send.from_seq). Bodies of received messages are in their authors'
 * outboxes on shard(author): a read first collects entries on the user's shard, then fetches
 * the bodies ("hydrates") with one job per author shard, then answers. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "im_cmd.h"
#include "im_log.h"
#include "im_shard.h"
#include "logic_msg.h"
#include "proto/cim.pb-c.h"
#include "proto/internal.pb-c.h"

#define PAGE_BYTES_MAX (900 * 1024) /* server->client packets stay under 1 MiB */
#define SESSIONS_MAX   100
#define RECALL_WINDOW  120

enum { RD_SYNC, RD_HIST, RD_LATEST, RD_BYID, RD_SESSIONS };

typedef struct entry_s {
    uint64_t seq, server_msg_id, from_id, to_id, session_id;
    uint32_t session_type, msg_type, status, created, client_type;
    uint32_t recv_status;
    int own; /* an outbox row: body already here */
    char cmid[65];
    uint8_t *data;
    size_t len;
} entry_t;

typedef struct rd_s rd_t;

typedef struct hyd_s {
    logic_job_t job;
    rd_t *rd;
    entry_t **e;
    size_t n;
} hyd_t;

struct rd_s {
    logic_job_t job;
    logic_req_t req;
    int kind;
    uint64_t uid;
    /* parameters */
    uint64_t after_seq, end_id, sid;
    uint32_t st, limit, since;
    uint64_t ids[20];
    int nids;
    /* results */
    entry_t *e;
    size_t n, cap;
    uint64_t max_seq;
    int pending;
    int failed;
    /* sessions: (type, id, last id) before their last entries are fetched */
    struct ses_s {
        uint32_t st;
        uint64_t sid, last;
        int own;
    } * ses;
    size_t nses, capses;
    /* row scratch */
    entry_t row;
    uint8_t data[LOGIC_MSG_DATA_MAX];
    struct ses_s srow;
};

static void rd_free(rd_t *rd)
{
    for (size_t i = 0; i < rd->n; i++)
        free(rd->e[i].data);
    free(rd->e);
    free(rd->ses);
    free(rd);
}

static entry_t *rd_push(rd_t *rd)
{
    if (rd->n == rd->cap) {
        size_t cap = rd->cap ? rd->cap * 2 : 32;
        entry_t *ne = realloc(rd->e, cap * sizeof(*ne));
        if (!ne)
            return NULL;
        rd->e = ne;
        rd->cap = cap;
    }
    entry_t *e = &rd->e[rd->n++];
    memset(e, 0, sizeof(*e));
    return e;
}

/* row callbacks: the scratch row holds the columns */
static void row_recv(void *ud)
{
    rd_t *rd = ud;
    entry_t *e = rd_push(rd);
    if (!e)
        return;
    *e = rd->row;
    e->data = NULL;
    e->len = 0;
    e->own = 0;
    e->status = 0;
    e->cmid[0] = 0;
    e->client_type = 0;
    /* the original "to": the reader for 1:1, the group for groups */
    e->to_id = e->session_type == 2 ? e->session_id : rd->uid;
}

static void row_send(void *ud)
{
    rd_t *rd = ud;
    entry_t *e = rd_push(rd);
    if (!e)
        return;
    *e = rd->row;
    e->own = 1;
    e->recv_status = 0;
    e->from_id = rd->uid;
    e->session_id = e->to_id;
    e->data = malloc(rd->row.len ? rd->row.len : 1);
    if (e->data && rd->row.len)
        memcpy(e->data, rd->data, rd->row.len);
}

#define RECV_COLS "seq, server_msg_id, from_id, session_type, session_id, msg_type, status, created"
#define SEND_COLS                                                                                  \
    "from_seq, server_msg_id, to_id, session_type, msg_type, status, created, client_msg_id, "     \
    "client_type, msg_data"
#define RECV_OUT "UUUuUuuu"
#define SEND_OUT "UUUuuuusub"
#define RECV_PTRS(rd)                                                                              \
    &(rd)->row.seq, &(rd)->row.server_msg_id, &(rd)->row.from_id, &(rd)->row.session_type,         \
        &(rd)->row.session_id, &(rd)->row.msg_type, &(rd)->row.recv_status, &(rd)->row.created
#define SEND_PTRS(rd)                                                                              \
    &(rd)->row.seq, &(rd)->row.server_msg_id, &(rd)->row.to_id, &(rd)->row.session_type,           \
        &(rd)->row.msg_type, &(rd)->row.status, &(rd)->row.created, (rd)->row.cmid,                \
        sizeof((rd)->row.cmid), &(rd)->row.client_type, (rd)->data, sizeof((rd)->data),            \
        &(rd)->row.len

static int cmp_seq(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_id_desc(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    return x->server_msg_id > y->server_msg_id ? -1 : x->server_msg_id < y->server_msg_id;
}

static void truncate_to(rd_t *rd, size_t n)
{
    for (size_t i = n; i < rd->n; i++)
        free(rd->e[i].data);
    if (rd->n > n)
        rd->n = n;
}

static void ses_row(void *ud)
{
    rd_t *rd = ud;
    for (size_t i = 0; i < rd->nses; i++) {
        if (rd->ses[i].st == rd->srow.st && rd->ses[i].sid == rd->srow.sid) {
            if (rd->srow.last > rd->ses[i].last) {
                rd->ses[i].last = rd->srow.last;
                rd->ses[i].own = rd->srow.own;
            }
            return;
        }
    }
    if (rd->nses == rd->capses) {
        size_t cap = rd->capses ? rd->capses * 2 : 64;
        struct ses_s *ns = realloc(rd->ses, cap * sizeof(*ns));
        if (!ns)
            return;
        rd->ses = ns;
        rd->capses = cap;
    }
    rd->ses[rd->nses++] = rd->srow;
}

static int cmp_ses(const void *a, const void *b)
{
    const struct ses_s *x = a, *y = b;
    return x->last > y->last ? -1 : x->last < y->last;
}

static void rd_work(logic_job_t *job, logic_dbc_t *c)
{
    rd_t *rd = (rd_t *) job;
    long r = 0;
    switch (rd->kind) {
    case RD_SYNC:
        if (db_begin_snapshot(c) != DB_OK)
            goto fail;
        r = db_exec(c, "SELECT max_seq FROM im_user WHERE user_id = ?", "U", "U", rd->uid,
                    &rd->max_seq);
        if (r >= 0)
            r = db_query(c,
                         "SELECT " RECV_COLS " FROM im_message_recv WHERE user_id = ? AND "
                         "seq > ? ORDER BY seq LIMIT ?",
                         row_recv, rd, "UUu", RECV_OUT, rd->uid, rd->after_seq, rd->limit,
                         RECV_PTRS(rd));
        if (r >= 0)
            r = db_query(c,
                         "SELECT " SEND_COLS " FROM im_message_send WHERE from_id = ? AND "
                         "from_seq > ? ORDER BY from_seq LIMIT ?",
                         row_send, rd, "UUu", SEND_OUT, rd->uid, rd->after_seq, rd->limit,
                         SEND_PTRS(rd));
        if (r < 0) {
            db_rollback(c);
            goto fail;
        }
        db_commit(c);
        if (rd->n)
            qsort(rd->e, rd->n, sizeof(entry_t), cmp_seq);
        truncate_to(rd, rd->limit);
        break;
    case RD_HIST:
    case RD_LATEST:
        r = db_query(c,
                     "SELECT " RECV_COLS " FROM im_message_recv WHERE user_id = ? AND "
                     "session_type = ? AND session_id = ? AND server_msg_id < ? ORDER BY "
                     "server_msg_id DESC LIMIT ?",
                     row_recv, rd, "UuUUu", RECV_OUT, rd->uid, rd->st, rd->sid, rd->end_id,
                     rd->limit, RECV_PTRS(rd));
        if (r >= 0)
            r = db_query(c,
                         "SELECT " SEND_COLS " FROM im_message_send WHERE from_id = ? AND "
                         "session_type = ? AND to_id = ? AND server_msg_id < ? AND from_seq > 0 "
                         "ORDER BY server_msg_id DESC LIMIT ?",
                         row_send, rd, "UuUUu", SEND_OUT, rd->uid, rd->st, rd->sid, rd->end_id,
                         rd->limit, SEND_PTRS(rd));
        if (r < 0)
            goto fail;
        if (rd->n)
            qsort(rd->e, rd->n, sizeof(entry_t), cmp_id_desc);
        truncate_to(rd, rd->limit);
        break;
    case RD_BYID:
        for (int i = 0; i < rd->nids && r >= 0; i++) {
            r = db_query(c,
                         "SELECT " RECV_COLS " FROM im_message_recv WHERE user_id = ? AND "
                         "server_msg_id = ?",
                         row_recv, rd, "UU", RECV_OUT, rd->uid, rd->ids[i], RECV_PTRS(rd));
            if (r == 0)
                r = db_query(c,
                             "SELECT " SEND_COLS " FROM im_message_send WHERE from_id = ? AND "
                             "server_msg_id = ?",
                             row_send, rd, "UU", SEND_OUT, rd->uid, rd->ids[i], SEND_PTRS(rd));
        }
        if (r < 0)
            goto fail;
        break;
    case RD_SESSIONS:
        rd->srow.own = 0;
        r = db_query(c,
                     "SELECT session_type, session_id, MAX(server_msg_id) FROM im_message_recv "
                     "WHERE user_id = ? GROUP BY session_type, session_id",
                     ses_row, rd, "U", "uUU", rd->uid, &rd->srow.st, &rd->srow.sid, &rd->srow.last);
        if (r >= 0) {
            rd->srow.own = 1;
            r = db_query(c,
                         "SELECT session_type, to_id, MAX(server_msg_id) FROM im_message_send "
                         "WHERE from_id = ? AND from_seq > 0 GROUP BY session_type, to_id",
                         ses_row, rd, "U", "uUU", rd->uid, &rd->srow.st, &rd->srow.sid,
                         &rd->srow.last);
        }
        if (r < 0)
            goto fail;
        if (rd->nses)
            qsort(rd->ses, rd->nses, sizeof(*rd->ses), cmp_ses);
        if (rd->nses > SESSIONS_MAX)
            rd->nses = SESSIONS_MAX;
        for (size_t i = 0; i < rd->nses && r >= 0; i++) {
            if (rd->ses[i].own)
                r = db_query(c,
                             "SELECT " SEND_COLS " FROM im_message_send WHERE from_id = ? AND "
                             "server_msg_id = ?",
                             row_send, rd, "UU", SEND_OUT, rd->uid, rd->ses[i].last, SEND_PTRS(rd));
            else
                r = db_query(c,
                             "SELECT " RECV_COLS " FROM im_message_recv WHERE user_id = ? AND "
                             "server_msg_id = ?",
                             row_recv, rd, "UU", RECV_OUT, rd->uid, rd->ses[i].last, RECV_PTRS(rd));
        }
        if (r < 0)
            goto fail;
        break;
    }
    return;
fail:
    job->rc = r < 0 ? (int) r : DB_ECONN;
}

/* ---------------------------------------------------------------- hydrate */

static void rd_answer(rd_t *rd);

/* The bodies of a page's entries, from their authors' outbox rows: 64 per statement, the IN list
 * padded with its last pair. FORCE INDEX and the spelled-out one-pair form: see mark_update in
 * logic_msg.c (MariaDB's plans for row-constructor IN lists). */
static db_tpl_t body_select = {
    "SELECT from_id, server_msg_id, client_msg_id, client_type, status, msg_data FROM "
    "im_message_send FORCE INDEX (PRIMARY) WHERE (from_id, server_msg_id) IN (",
    "(?, ?)",
    ")",
    {[1] = "SELECT from_id, server_msg_id, client_msg_id, client_type, status, msg_data FROM "
           "im_message_send WHERE from_id = ? AND server_msg_id = ?"}};

typedef struct {
    entry_t **e; /* the statement's entries */
    size_t n;
    uint64_t from_id, sid;
    char cmid[65];
    uint32_t ct, status;
    uint8_t data[LOGIC_MSG_DATA_MAX];
    size_t len;
} body_row_t;

static void body_row(void *ud)
{
    body_row_t *b = ud;
    for (size_t i = 0; i < b->n; i++) {
        entry_t *e = b->e[i];
        if (e->from_id != b->from_id || e->server_msg_id != b->sid || e->data)
            continue;
        memcpy(e->cmid, b->cmid, sizeof(e->cmid));
        e->client_type = b->ct;
        e->status = b->status;
        e->data = malloc(b->len ? b->len : 1);
        if (e->data && b->len)
            memcpy(e->data, b->data, b->len);
        e->len = e->data ? b->len : 0;
    }
}

static void hyd_work(logic_job_t *job, logic_dbc_t *c)
{
    hyd_t *h = (hyd_t *) job;
    body_row_t *b = malloc(sizeof(*b));
    if (!b) {
        job->rc = DB_ERR;
        return;
    }
    for (size_t off = 0; off < h->n;) {
        int k = h->n - off < DB_ROWS_MAX ? (int) (h->n - off) : DB_ROWS_MAX, sz = db_pad(k);
        db_binds_t *p = db_conn_binds(c);
        if (!p) {
            job->rc = DB_ERR;
            break;
        }
        for (int i = 0; i < sz; i++) {
            const entry_t *e = h->e[off + (size_t) (i < k ? i : k - 1)];
            dbb_u64(p, e->from_id);
            dbb_u64(p, e->server_msg_id);
        }
        b->e = h->e + off;
        b->n = (size_t) k;
        long r = db_exec_binds(c, db_tpl_sql(&body_select, sz), p, body_row, b, "UUsuub",
                               &b->from_id, &b->sid, b->cmid, sizeof(b->cmid), &b->ct, &b->status,
                               b->data, sizeof(b->data), &b->len);
        if (r < 0) {
            job->rc = (int) r;
            break;
        }
        off += (size_t) k;
    }
    free(b);
}

static void hyd_done(logic_job_t *job)
{
    hyd_t *h = (hyd_t *) job;
    rd_t *rd = h->rd;
    if (job->rc != DB_OK)
        rd->failed = 1;
    free(h->e);
    free(h);
    if (--rd->pending == 0)
        rd_answer(rd);
}

static void rd_done(logic_job_t *job)
{
    rd_t *rd = (rd_t *) job;
    if (job->rc != DB_OK) {
        logic_reply_error(&rd->req, IM_ERR_STORAGE_UNAVAILABLE);
        rd_free(rd);
        return;
    }
    /* one hydrate job per author shard */
    hyd_t *h[IM_SHARD_COUNT] = {0};
    for (size_t i = 0; i < rd->n; i++) {
        entry_t *e = &rd->e[i];
        if (e->own)
            continue;
        unsigned s = im_shard_of(e->from_id, IM_SHARD_COUNT);
        if (!h[s]) {
            h[s] = calloc(1, sizeof(hyd_t));
            if (h[s])
                h[s]->e = malloc(rd->n * sizeof(entry_t *));
            if (!h[s] || !h[s]->e) {
                free(h[s]);
                h[s] = NULL;
                rd->failed = 1;
                continue;
            }
            h[s]->rd = rd;
            h[s]->job.work = hyd_work;
            h[s]->job.done = hyd_done;
        }
        h[s]->e[h[s]->n++] = e;
    }
    rd->pending = 1;
    for (unsigned s = 0; s < IM_SHARD_COUNT; s++) {
        if (h[s]) {
            rd->pending++;
            logic_db_submit(s, rd->uid, &h[s]->job);
        }
    }
    if (--rd->pending == 0)
        rd_answer(rd);
}

/* ---------------------------------------------------------------- answers */

static void fill_info(CIM__Def__CIMMsgInfo *mi, const entry_t *e)
{
    cim__def__cimmsg_info__init(mi);
    mi->client_msg_id = (char *) e->cmid;
    mi->server_msg_id = e->server_msg_id;
    mi->msg_res_code = CIM__DEF__CIMRES_CODE__kCIM_RES_CODE_OK;
    mi->session_type = (CIM__Def__CIMSessionType) e->session_type;
    mi->from_user_id = e->from_id;
    mi->to_session_id = e->to_id;
    mi->create_time = e->created;
    mi->msg_type = (CIM__Def__CIMMsgType) e->msg_type;
    if (e->status == LOGIC_RECALLED)
        mi->msg_status = CIM__DEF__CIMMSG_STATUS__kCIM_MSG_STATUS_RECALLED;
    else if (e->own)
        mi->msg_status = CIM__DEF__CIMMSG_STATUS__kCIM_MSG_STATUS_SENT;
    else
        mi->msg_status = e->recv_status ? CIM__DEF__CIMMSG_STATUS__kCIM_MSG_STATUS_RECEIPT
                                        : CIM__DEF__CIMMSG_STATUS__kCIM_MSG_STATUS_UNREAD;
    if (e->status != LOGIC_RECALLED) {
        mi->msg_data.data = e->data;
        mi->msg_data.len = e->data ? e->len : 0;
    }
    mi->sender_client_type = (CIM__Def__CIMClientType) e->client_type;
    mi->seq = e->seq;
}

/* Fill infos[] for entries while the packed total stays under the page cap; returns count. */
static size_t fill_page(rd_t *rd, CIM__Def__CIMMsgInfo *infos, CIM__Def__CIMMsgInfo **ptrs)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < rd->n; i++) {
        fill_info(&infos[k], &rd->e[i]);
        size_t sz = cim__def__cimmsg_info__get_packed_size(&infos[k]) + 8;
        if (k > 0 && total + sz > PAGE_BYTES_MAX)
            break;
        total += sz;
        ptrs[k] = &infos[k];
        k++;
    }
    return k;
}

static void rd_answer_sessions(rd_t *rd);

static void rd_answer(rd_t *rd)
{
    const logic_req_t *r = &rd->req;
    if (rd->failed) {
        logic_reply_error(r, IM_ERR_STORAGE_UNAVAILABLE);
        rd_free(rd);
        return;
    }
    if (rd->kind == RD_SESSIONS) {
        rd_answer_sessions(rd);
        return;
    }
    CIM__Def__CIMMsgInfo *infos = calloc(rd->n ? rd->n : 1, sizeof(*infos));
    CIM__Def__CIMMsgInfo **ptrs = calloc(rd->n ? rd->n : 1, sizeof(*ptrs));
    if (!infos || !ptrs) {
        free(infos);
        free(ptrs);
        logic_reply_error(r, IM_ERR_INTERNAL);
        rd_free(rd);
        return;
    }
    size_t k = fill_page(rd, infos, ptrs);
    switch (rd->kind) {
    case RD_SYNC: {
        CIM__Def__CIMSyncRsp rsp = CIM__DEF__CIMSYNC_RSP__INIT;
        rsp.user_id = rd->uid;
        rsp.n_msg_list = k;
        rsp.msg_list = ptrs;
        rsp.max_seq = rd->max_seq;
        uint64_t last = k ? rd->e[k - 1].seq : rd->after_seq;
        rsp.has_more = last < rd->max_seq;
        rsp.result_code = IM_ERR_SUCCESS;
        logic_reply(r, IM_CMD_SYNC_RSP, &rsp);
        break;
    }
    case RD_HIST: {
        CIM__Def__CIMGetMsgListRsp rsp = CIM__DEF__CIMGET_MSG_LIST_RSP__INIT;
        rsp.user_id = rd->uid;
        rsp.session_type = (CIM__Def__CIMSessionType) rd->st;
        rsp.session_id = rd->sid;
        rsp.end_msg_id = k ? rd->e[k - 1].server_msg_id : 0;
        rsp.n_msg_list = k;
        rsp.msg_list = ptrs;
        rsp.result_code = IM_ERR_SUCCESS;
        logic_reply(r, IM_CMD_MSG_LIST_RSP, &rsp);
        break;
    }
    case RD_LATEST: {
        CIM__Def__CIMGetLatestMsgIdRsp rsp = CIM__DEF__CIMGET_LATEST_MSG_ID_RSP__INIT;
        char idbuf[24] = "";
        rsp.user_id = rd->uid;
        rsp.session_type = (CIM__Def__CIMSessionType) rd->st;
        rsp.session_id = rd->sid;
        if (rd->n)
            snprintf(idbuf, sizeof(idbuf), "%llu", (unsigned long long) rd->e[0].server_msg_id);
        rsp.latest_msg_id = idbuf;
        rsp.result_code = IM_ERR_SUCCESS;
        logic_reply(r, IM_CMD_LATEST_MSG_ID_RSP, &rsp);
        break;
    }
    case RD_BYID: {
        /* only messages of the asked session */
        size_t j = 0;
        for (size_t i = 0; i < k; i++)
            if (rd->e[i].session_type == rd->st && rd->e[i].session_id == rd->sid)
                ptrs[j++] = ptrs[i];
        CIM__Def__CIMGetMsgByIdRsp rsp = CIM__DEF__CIMGET_MSG_BY_ID_RSP__INIT;
        rsp.user_id = rd->uid;
        rsp.session_type = (CIM__Def__CIMSessionType) rd->st;
        rsp.session_id = rd->sid;
        rsp.n_msg_list = j;
        rsp.msg_list = ptrs;
        rsp.result_code = IM_ERR_SUCCESS;
        logic_reply(r, IM_CMD_MSG_BY_ID_RSP, &rsp);
        break;
    }
    }
    free(infos);
    free(ptrs);
    rd_free(rd);
}

/* ---------------------------------------------------------------- unread counts */

typedef struct unr_s {
    logic_job_t job;
    rd_t *rd; /* the sessions request waiting for counts (may be NULL) */
    uint64_t uid;
    /* rebuilt counts */
    struct {
        uint32_t st;
        uint64_t sid;
        uint32_t cnt;
    } * c;
    size_t n, cap;
    uint32_t st, cnt;
    uint64_t sid;
} unr_t;

static void unr_row(void *ud)
{
    unr_t *u = ud;
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 32;
        void *nc = realloc(u->c, cap * sizeof(*u->c));
        if (!nc)
            return;
        u->c = nc;
        u->cap = cap;
    }
    u->c[u->n].st = u->st;
    u->c[u->n].sid = u->sid;
    u->c[u->n].cnt = u->cnt;
    u->n++;
}

static void unr_work(logic_job_t *job, logic_dbc_t *c)
{
    unr_t *u = (unr_t *) job;
    long r = db_query(c,
                      "SELECT r.session_type, r.session_id, COUNT(*) FROM im_message_recv r "
                      "LEFT JOIN im_session_read s ON s.user_id = r.user_id AND "
                      "s.session_type = r.session_type AND s.session_id = r.session_id "
                      "WHERE r.user_id = ? AND r.msg_type <> 9 AND r.server_msg_id > "
                      "IFNULL(s.read_msg_id, 0) GROUP BY r.session_type, r.session_id",
                      unr_row, u, "U", "uUu", u->uid, &u->st, &u->sid, &u->cnt);
    job->rc = r < 0 ? (int) r : DB_OK;
}

static uint32_t unread_of(redisReply *h, uint32_t st, uint64_t sid)
{
    char field[48];
    int n = snprintf(field, sizeof(field), "%u:%llu", st, (unsigned long long) sid);
    if (!h || h->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && (int) h->element[i]->len == n &&
            memcmp(h->element[i]->str, field, (size_t) n) == 0)
            return (uint32_t) strtoul(h->element[i + 1]->str, NULL, 10);
    return 0;
}

static void sessions_reply(rd_t *rd, redisReply *counts, unr_t *rebuilt)
{
    size_t n = rd->n;
    CIM__Def__CIMContactSessionInfo *si = calloc(n ? n : 1, sizeof(*si));
    CIM__Def__CIMContactSessionInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (!si || !ptrs) {
        free(si);
        free(ptrs);
        logic_reply_error(&rd->req, IM_ERR_INTERNAL);
        return;
    }
    uint32_t total = 0;
    size_t k = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const entry_t *e = &rd->e[i];
        if (e->created < rd->since)
            continue;
        CIM__Def__CIMContactSessionInfo *s = &si[k];
        cim__def__cimcontact_session_info__init(s);
        s->session_id = e->session_id;
        s->session_type = (CIM__Def__CIMSessionType) e->session_type;
        s->session_status = CIM__DEF__CIMSESSION_STATUS_TYPE__kCIM_SESSION_STATUS_OK;
        uint32_t unread = 0;
        if (rebuilt) {
            for (size_t j = 0; j < rebuilt->n; j++)
                if (rebuilt->c[j].st == e->session_type && rebuilt->c[j].sid == e->session_id)
                    unread = rebuilt->c[j].cnt;
        } else {
            unread = unread_of(counts, e->session_type, e->session_id);
        }
        s->unread_cnt = unread;
        total += unread;
        s->updated_time = e->created;
        s->msg_id = (char *) e->cmid;
        s->server_msg_id = e->server_msg_id;
        s->msg_time_stamp = e->created;
        if (e->status != LOGIC_RECALLED) {
            s->msg_data.data = e->data;
            s->msg_data.len = e->data ? e->len : 0;
        }
        s->msg_type = (CIM__Def__CIMMsgType) e->msg_type;
        s->msg_from_user_id = e->from_id;
        s->msg_status = e->status == LOGIC_RECALLED
                            ? CIM__DEF__CIMMSG_STATUS__kCIM_MSG_STATUS_RECALLED
                            : (e->own ? CIM__DEF__CIMMSG_STATUS__kCIM_MSG_STATUS_SENT
                                      : CIM__DEF__CIMMSG_STATUS__kCIM_MSG_STATUS_UNREAD);
        bytes += cim__def__cimcontact_session_info__get_packed_size(s) + 8;
        if (bytes > PAGE_BYTES_MAX)
            break;
        ptrs[k++] = s;
    }
    CIM__Def__CIMRecentContactSessionRsp rsp = CIM__DEF__CIMRECENT_CONTACT_SESSION_RSP__INIT;
    rsp.user_id = rd->uid;
    rsp.unread_counts = total;
    rsp.n_contact_session_list = k;
    rsp.contact_session_list = ptrs;
    rsp.result_code = IM_ERR_SUCCESS;
    logic_reply(&rd->req, IM_CMD_RECENT_SESSION_RSP, &rsp);
    free(si);
    free(ptrs);
}

static void unr_done(logic_job_t *job)
{
    unr_t *u = (unr_t *) job;
    rd_t *rd = u->rd;
    if (job->rc != DB_OK) {
        if (rd)
            logic_reply_error(&rd->req, IM_ERR_STORAGE_UNAVAILABLE);
    } else {
        /* write the rebuilt cache back, with its marker */
        char key[40];
        snprintf(key, sizeof(key), "cim:unr:%llu", (unsigned long long) u->uid);
        im_redis_cmd(g_logic.redis, NULL, NULL, "DEL %s", key);
        for (size_t i = 0; i < u->n; i++)
            im_redis_cmd(g_logic.redis, NULL, NULL, "HSET %s %u:%llu %u", key, u->c[i].st,
                         (unsigned long long) u->c[i].sid, u->c[i].cnt);
        im_redis_cmd(g_logic.redis, NULL, NULL, "HSET %s _ 1", key);
        if (rd)
            sessions_reply(rd, NULL, u);
    }
    if (rd)
        rd_free(rd);
    free(u->c);
    free(u);
}

static void unread_rebuild(uint64_t uid, rd_t *rd)
{
    unr_t *u = calloc(1, sizeof(*u));
    if (!u) {
        if (rd) {
            logic_reply_error(&rd->req, IM_ERR_INTERNAL);
            rd_free(rd);
        }
        return;
    }
    u->uid = uid;
    u->rd = rd;
    u->job.work = unr_work;
    u->job.done = unr_done;
    logic_db_submit(im_shard_of(uid, IM_SHARD_COUNT), uid, &u->job);
}

static void unread_got(im_redis_t *r, redisReply *reply, void *ud)
{
    rd_t *rd = ud;
    (void) r;
    int built = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < reply->elements; i += 2)
            if (reply->element[i]->type == REDIS_REPLY_STRING && reply->element[i]->len == 1 &&
                reply->element[i]->str[0] == '_')
                built = 1;
    if (!built) {
        unread_rebuild(rd->uid, rd); /* Redis lost it (or never had it): count in MySQL */
        return;
    }
    sessions_reply(rd, reply, NULL);
    rd_free(rd);
}

static void rd_answer_sessions(rd_t *rd)
{
    if (im_redis_cmd(g_logic.redis, unread_got, rd, "HGETALL cim:unr:%llu",
                     (unsigned long long) rd->uid) != 0)
        unread_rebuild(rd->uid, rd);
}

/* ---------------------------------------------------------------- requests */

static int identity_ok(const logic_req_t *r, uint64_t claimed)
{
    if (claimed == 0 || claimed == r->user_id)
        return 1;
    log_info("conn %llu user %llu: request 0x%04x names user %llu: refused",
             (unsigned long long) r->conn_id, (unsigned long long) r->user_id, r->cmd,
             (unsigned long long) claimed);
    logic_reply_error(r, IM_ERR_PERMISSION_DENIED);
    return 0;
}

static rd_t *rd_new(const logic_req_t *r, int kind)
{
    rd_t *rd = calloc(1, sizeof(*rd));
    if (!rd) {
        logic_reply_error(r, IM_ERR_INTERNAL);
        return NULL;
    }
    rd->req = *r;
    rd->kind = kind;
    rd->uid = r->user_id;
    rd->job.work = rd_work;
    rd->job.done = rd_done;
    return rd;
}

static void rd_submit(rd_t *rd)
{
    logic_db_submit(im_shard_of(rd->uid, IM_SHARD_COUNT), rd->uid, &rd->job);
}

static int session_ok(uint32_t st, uint64_t sid)
{
    return (st == 1 || st == 2) && sid > 0 && sid < (1ULL << 53);
}

void logic_read_sync(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_sync(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMSyncReq *q = cim__def__cimsync_req__unpack(NULL, len, body);
    if (!q) {
        logic_reply_error(r, IM_ERR_INVALID_PARAMETER);
        return;
    }
    if (identity_ok(r, q->user_id)) {
        rd_t *rd = rd_new(r, RD_SYNC);
        if (rd) {
            rd->after_seq = q->after_seq;
            rd->limit = q->limit == 0 ? 100 : q->limit > 500 ? 500 : q->limit;
            rd_submit(rd);
        }
    }
    cim__def__cimsync_req__free_unpacked(q, NULL);
}

void logic_read_history(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_history(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMGetMsgListReq *q = cim__def__cimget_msg_list_req__unpack(NULL, len, body);
    if (!q || !session_ok((uint32_t) q->session_type, q->session_id)) {
        logic_reply_error(r, IM_ERR_INVALID_PARAMETER);
        if (q)
            cim__def__cimget_msg_list_req__free_unpacked(q, NULL);
        return;
    }
    if (identity_ok(r, q->user_id)) {
        rd_t *rd = rd_new(r, RD_HIST);
        if (rd) {
            rd->st = (uint32_t) q->session_type;
            rd->sid = q->session_id;
            rd->end_id = q->end_msg_id ? q->end_msg_id : UINT64_MAX;
            rd->limit = q->limit_count == 0 ? 20 : q->limit_count > 100 ? 100 : q->limit_count;
            rd_submit(rd);
        }
    }
    cim__def__cimget_msg_list_req__free_unpacked(q, NULL);
}

void logic_read_latest(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_latest(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMGetLatestMsgIdReq *q = cim__def__cimget_latest_msg_id_req__unpack(NULL, len, body);
    if (!q || !session_ok((uint32_t) q->session_type, q->session_id)) {
        logic_reply_error(r, IM_ERR_INVALID_PARAMETER);
        if (q)
            cim__def__cimget_latest_msg_id_req__free_unpacked(q, NULL);
        return;
    }
    if (identity_ok(r, q->user_id)) {
        rd_t *rd = rd_new(r, RD_LATEST);
        if (rd) {
            rd->st = (uint32_t) q->session_type;
            rd->sid = q->session_id;
            rd->end_id = UINT64_MAX;
            rd->limit = 1;
            rd_submit(rd);
        }
    }
    cim__def__cimget_latest_msg_id_req__free_unpacked(q, NULL);
}

void logic_read_by_id(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_by_id(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMGetMsgByIdReq *q = cim__def__cimget_msg_by_id_req__unpack(NULL, len, body);
    if (!q || !session_ok((uint32_t) q->session_type, q->session_id) || q->n_msg_id_list > 20) {
        logic_reply_error(r, IM_ERR_INVALID_PARAMETER);
        if (q)
            cim__def__cimget_msg_by_id_req__free_unpacked(q, NULL);
        return;
    }
    if (identity_ok(r, q->user_id)) {
        rd_t *rd = rd_new(r, RD_BYID);
        if (rd) {
            rd->st = (uint32_t) q->session_type;
            rd->sid = q->session_id;
            for (size_t i = 0; i < q->n_msg_id_list; i++) {
                char *end = NULL;
                unsigned long long v = strtoull(q->msg_id_list[i], &end, 10);
                if (end && *end == 0 && v)
                    rd->ids[rd->nids++] = v; /* unknown or malformed ids are left out */
            }
            rd_submit(rd);
        }
    }
    cim__def__cimget_msg_by_id_req__free_unpacked(q, NULL);
}

void logic_read_sessions(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_sessions(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMRecentContactSessionReq *q =
        cim__def__cimrecent_contact_session_req__unpack(NULL, len, body);
    if (!q) {
        logic_reply_error(r, IM_ERR_INVALID_PARAMETER);
        return;
    }
    if (identity_ok(r, q->user_id)) {
        rd_t *rd = rd_new(r, RD_SESSIONS);
        if (rd) {
            rd->since = q->latest_update_time;
            rd_submit(rd);
        }
    }
    cim__def__cimrecent_contact_session_req__free_unpacked(q, NULL);
}

/* ---------------------------------------------------------------- read ack */

typedef struct rack_s {
    logic_job_t job;
    logic_req_t req;
    uint32_t st;
    uint64_t sid, msg_id, read_to;
    uint32_t unread;
} rack_t;

static void rack_work(logic_job_t *job, logic_dbc_t *c)
{
    rack_t *k = (rack_t *) job;
    long r = db_exec(c,
                     "INSERT INTO im_session_read (user_id, session_type, session_id, "
                     "read_msg_id, updated) VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE "
                     "read_msg_id = GREATEST(read_msg_id, VALUES(read_msg_id)), "
                     "updated = VALUES(updated)",
                     "UuUUu", "", k->req.user_id, k->st, k->sid, k->msg_id, (uint32_t) time(NULL));
    if (r >= 0)
        r = db_exec(c,
                    "SELECT read_msg_id FROM im_session_read WHERE user_id = ? AND "
                    "session_type = ? AND session_id = ?",
                    "UuU", "U", k->req.user_id, k->st, k->sid, &k->read_to);
    if (r >= 0)
        r = db_exec(c,
                    "SELECT COUNT(*) FROM im_message_recv WHERE user_id = ? AND session_type = ? "
                    "AND session_id = ? AND server_msg_id > ? AND msg_type <> 9",
                    "UuUU", "u", k->req.user_id, k->st, k->sid, k->read_to, &k->unread);
    job->rc = r < 0 ? (int) r : DB_OK;
}

static const char *UNREAD_SET_LUA = "if redis.call('HEXISTS', KEYS[1], '_') == 1 then "
                                    "return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end "
                                    "return 0";

static void rack_done(logic_job_t *job)
{
    rack_t *k = (rack_t *) job;
    const logic_req_t *r = &k->req;
    if (job->rc == DB_OK) {
        char key[40], field[48], val[16];
        snprintf(key, sizeof(key), "cim:unr:%llu", (unsigned long long) r->user_id);
        snprintf(field, sizeof(field), "%u:%llu", k->st, (unsigned long long) k->sid);
        snprintf(val, sizeof(val), "%u", k->unread);
        im_redis_cmd(g_logic.redis, NULL, NULL, "EVAL %s 1 %s %s %s", UNREAD_SET_LUA, key, field,
                     val);
        CIM__Def__CIMMsgDataReadNotify n = CIM__DEF__CIMMSG_DATA_READ_NOTIFY__INIT;
        uint8_t buf[64];
        n.user_id = r->user_id;
        n.msg_id = k->msg_id;
        n.session_type = (CIM__Def__CIMSessionType) k->st;
        if (k->st == 1) { /* the peer sees the reader as the session */
            n.session_id = r->user_id;
            size_t len = cim__def__cimmsg_data_read_notify__pack(&n, buf);
            logic_push_user(k->sid, 0, 0, IM_CMD_MSG_READ_NOTIFY, buf, len);
        }
        n.session_id = k->sid; /* the reader's other devices */
        size_t len = cim__def__cimmsg_data_read_notify__pack(&n, buf);
        logic_push_user(r->user_id, r->gate_id, r->conn_id, IM_CMD_MSG_READ_NOTIFY, buf, len);
    } else {
        log_warn("user %llu: read ack not stored (storage unavailable)",
                 (unsigned long long) r->user_id);
    }
    free(k);
}

void logic_read_ack(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_ack(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMMsgDataReadAck *q = cim__def__cimmsg_data_read_ack__unpack(NULL, len, body);
    if (!q)
        return; /* no response to 0x0303 */
    if (q->user_id != 0 && q->user_id != r->user_id) {
        log_info("conn %llu user %llu: read ack names user %llu: ignored",
                 (unsigned long long) r->conn_id, (unsigned long long) r->user_id,
                 (unsigned long long) q->user_id);
    } else if (session_ok((uint32_t) q->session_type, q->session_id) && q->msg_id) {
        rack_t *k = calloc(1, sizeof(*k));
        if (k) {
            k->req = *r;
            k->st = (uint32_t) q->session_type;
            k->sid = q->session_id;
            k->msg_id = q->msg_id;
            k->job.work = rack_work;
            k->job.done = rack_done;
            logic_db_submit(im_shard_of(r->user_id, IM_SHARD_COUNT), r->user_id, &k->job);
        }
    }
    cim__def__cimmsg_data_read_ack__free_unpacked(q, NULL);
}

/* ---------------------------------------------------------------- recall */

typedef struct recall_s {
    logic_job_t job;
    logic_req_t req;
    uint32_t st;
    uint64_t sid, msg_id;
    int result;
    uint32_t created, status, mst;
    uint64_t to_id;
    int found;
} recall_t;

static void recall_work(logic_job_t *job, logic_dbc_t *c)
{
    recall_t *k = (recall_t *) job;
    long r = db_exec(c,
                     "SELECT created, status, to_id, session_type FROM im_message_send WHERE "
                     "from_id = ? AND server_msg_id = ? AND from_seq > 0",
                     "UU", "uuUu", k->req.user_id, k->msg_id, &k->created, &k->status, &k->to_id,
                     &k->mst);
    if (r < 0) {
        job->rc = (int) r;
        return;
    }
    k->found = r == 1;
    if (!k->found || k->to_id != k->sid || k->mst != k->st) {
        k->result = IM_ERR_NOT_FOUND;
        return;
    }
    if (k->status == LOGIC_RECALLED) {
        k->result = IM_ERR_SUCCESS; /* already: the same answer again */
        k->found = 2;
        return;
    }
    if ((uint64_t) time(NULL) > (uint64_t) k->created + RECALL_WINDOW) {
        k->result = IM_ERR_PERMISSION_DENIED;
        return;
    }
    r = db_exec(c,
                "UPDATE im_message_send SET status = 11, msg_data = '' WHERE from_id = ? AND "
                "server_msg_id = ?",
                "UU", "", k->req.user_id, k->msg_id);
    job->rc = r < 0 ? (int) r : DB_OK;
    k->result = IM_ERR_SUCCESS;
}

typedef void (*recall_rcpt_fn)(uint64_t group_id, uint64_t author,
                               void (*cont)(void *ud, uint64_t *rcpt, size_t n), void *ud);
static recall_rcpt_fn g_group_rcpt;

void logic_read_set_group_rcpt(recall_rcpt_fn fn);
void logic_read_set_group_rcpt(recall_rcpt_fn fn)
{
    g_group_rcpt = fn;
}

static void recall_notify(void *ud, uint64_t *rcpt, size_t n)
{
    recall_t *k = ud;
    const logic_req_t *r = &k->req;
    char json[160], cmid[40];
    snprintf(json, sizeof(json),
             "{\"type\":\"recall\",\"server_msg_id\":\"%llu\",\"session_type\":%u,"
             "\"session_id\":\"%llu\"}",
             (unsigned long long) k->msg_id, k->st, (unsigned long long) k->sid);
    snprintf(cmid, sizeof(cmid), "recall:%llu", (unsigned long long) k->msg_id);
    /* a NOTIFICATION entry in every inbox holding the message, so offline devices learn */
    logic_msg_post(r->user_id, k->sid, k->st, LOGIC_NOTIFICATION, cmid, (const uint8_t *) json,
                   strlen(json), rcpt, n, 1, 1, NULL, NULL);
    CIM__Def__CIMMsgRecallNotify nt = CIM__DEF__CIMMSG_RECALL_NOTIFY__INIT;
    uint8_t buf[64];
    nt.from_user_id = r->user_id;
    nt.session_type = (CIM__Def__CIMSessionType) k->st;
    nt.server_msg_id = k->msg_id;
    for (size_t i = 0; i < n; i++) {
        nt.session_id = k->st == 1 ? r->user_id : k->sid;
        size_t len = cim__def__cimmsg_recall_notify__pack(&nt, buf);
        logic_push_user(rcpt[i], 0, 0, IM_CMD_RECALL_NOTIFY, buf, len);
    }
    nt.session_id = k->sid;
    size_t len = cim__def__cimmsg_recall_notify__pack(&nt, buf);
    logic_push_user(r->user_id, r->gate_id, r->conn_id, IM_CMD_RECALL_NOTIFY, buf, len);
    free(rcpt);
    free(k);
}

static void recall_reply(const recall_t *k, uint32_t code)
{
    CIM__Def__CIMMsgRecallRsp rsp = CIM__DEF__CIMMSG_RECALL_RSP__INIT;
    rsp.user_id = k->req.user_id;
    rsp.session_type = (CIM__Def__CIMSessionType) k->st;
    rsp.session_id = k->sid;
    rsp.server_msg_id = k->msg_id;
    rsp.result_code = (CIM__Def__CIMErrorCode) code;
    logic_reply(&k->req, IM_CMD_RECALL_RSP, &rsp);
}

static void recall_done(logic_job_t *job)
{
    recall_t *k = (recall_t *) job;
    if (job->rc != DB_OK) {
        recall_reply(k, IM_ERR_STORAGE_UNAVAILABLE);
        free(k);
        return;
    }
    recall_reply(k, (uint32_t) k->result);
    if (k->result != IM_ERR_SUCCESS || k->found == 2) {
        free(k);
        return;
    }
    log_info("user %llu recalled message %llu", (unsigned long long) k->req.user_id,
             (unsigned long long) k->msg_id);
    if (k->st == 1) {
        uint64_t *rcpt = malloc(sizeof(uint64_t));
        if (rcpt)
            rcpt[0] = k->sid;
        recall_notify(k, rcpt, rcpt ? 1 : 0);
    } else if (g_group_rcpt) {
        g_group_rcpt(k->sid, k->req.user_id, recall_notify, k);
    } else {
        recall_notify(k, NULL, 0);
    }
}

void logic_read_recall(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_recall(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMMsgRecallReq *q = cim__def__cimmsg_recall_req__unpack(NULL, len, body);
    if (!q) {
        logic_reply_error(r, IM_ERR_INVALID_PARAMETER);
        return;
    }
    recall_t *k = calloc(1, sizeof(*k));
    if (k) {
        k->req = *r;
        k->st = (uint32_t) q->session_type;
        k->sid = q->session_id;
        k->msg_id = q->server_msg_id;
        if (q->user_id != 0 && q->user_id != r->user_id) {
            recall_reply(k, IM_ERR_PERMISSION_DENIED);
            free(k);
        } else if (!session_ok(k->st, k->sid) || !k->msg_id) {
            recall_reply(k, IM_ERR_INVALID_PARAMETER);
            free(k);
        } else {
            k->job.work = recall_work;
            k->job.done = recall_done;
            logic_db_submit(im_shard_of(r->user_id, IM_SHARD_COUNT), r->user_id, &k->job);
        }
    }
    cim__def__cimmsg_recall_req__free_unpacked(q, NULL);
}
