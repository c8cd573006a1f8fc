/* logic_user: users in MySQL: id allocation, creation (register and API import), name rules.
 *
 * Placement: a user's row lives in im_user on shard(user_id); the name index im_user_name and
 * the id allocator im_id_alloc live in im_0 (the directory shard). Creation touches two shards
 * and so is a short saga: the uniqueness claim goes first and is undone if the second write
 * fails, so no half-created user can log in. */
#include <ctype.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "im_cmd.h"
#include "im_log.h"
#include "im_shard.h"
#include "logic.h"
#include "logic_user.h"

#define ID_BLOCK 64

static pthread_mutex_t alloc_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint64_t next, end;
} blocks[2]; /* 0 user, 1 group */

uint64_t logic_user_alloc_id(logic_dbc_t *c, const char *name)
{
    int k = strcmp(name, "group") == 0;
    uint64_t id = 0;
    pthread_mutex_lock(&alloc_mu);
    if (blocks[k].next >= blocks[k].end) {
        /* LAST_INSERT_ID(expr) makes the new value readable on this connection only */
        long n = db_exec(c,
                         "UPDATE im_id_alloc SET next_id = LAST_INSERT_ID(next_id + 64) "
                         "WHERE name = ?",
                         "s", "", name);
        if (n == 1) {
            uint64_t end = db_insert_id(c);
            blocks[k].next = end - ID_BLOCK;
            blocks[k].end = end;
        }
    }
    if (blocks[k].next < blocks[k].end)
        id = blocks[k].next++;
    pthread_mutex_unlock(&alloc_mu);
    return id;
}

int logic_user_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 3 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) name[i];
        if (!isalnum(ch) && ch != '_' && ch != '.' && ch != '-')
            return 0;
    }
    return 1;
}

int logic_user_pwd_valid(const char *pwd, size_t len)
{
    (void) pwd;
    return len >= 6 && len <= 128;
}

/* strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF); *cps = code points */
int logic_utf8_valid(const char *s, size_t *cps)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t n = 0;
    while (*p) {
        unsigned c = *p;
        unsigned cp;
        int len;
        if (c < 0x80) {
            len = 1;
            cp = c;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (int i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += len;
        n++;
    }
    *cps = n;
    return 1;
}

void logic_lower(char *dst, const char *src, size_t cap)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++)
        dst[i] = (char) tolower((unsigned char) src[i]);
    dst[i] = 0;
}

/* ---------------------------------------------------------------- creation saga */

enum { ST_CLAIM_NAME, ST_INSERT_USER, ST_UNDO_NAME, ST_ALLOC, ST_CLAIM_NAME_FOR_UID, ST_UNDO_USER };

typedef struct create_s {
    logic_job_t job;
    int step;
    int result; /* CIMErrorCode */
    uint64_t uid;
    int explicit_uid;
    char name[33], name_lc[33];
    int has_name;
    char nick[513]; /* 128 characters of UTF-8 */
    char avatar[513];
    char *hash;
    logic_user_created_cb cb;
    void *ud;
} create_t;

static void create_next(create_t *cr);

static void create_finish(create_t *cr, int result)
{
    cr->cb(cr->ud, result, result == IM_ERR_SUCCESS ? cr->uid : 0, 1);
    if (cr->hash)
        sodium_free(cr->hash);
    free(cr);
}

static void create_work(logic_job_t *job, logic_dbc_t *c)
{
    create_t *cr = (create_t *) job;
    long n;
    switch (cr->step) {
    case ST_ALLOC:
        cr->uid = logic_user_alloc_id(c, "user");
        job->rc = cr->uid ? DB_OK : DB_ERR;
        break;
    case ST_CLAIM_NAME:
        cr->uid = logic_user_alloc_id(c, "user");
        if (!cr->uid) {
            job->rc = DB_ERR;
            break;
        }
        /* fallthrough */
    case ST_CLAIM_NAME_FOR_UID:
        n = db_exec(c, "INSERT INTO im_user_name (name_lc, user_id) VALUES (?, ?)", "sU", "",
                    cr->name_lc, cr->uid);
        job->rc = n < 0 ? (int) n : DB_OK;
        break;
    case ST_INSERT_USER:
        n = db_exec(c,
                    "INSERT INTO im_user (user_id, user_name, nick_name, avatar_url, pwd_hash, "
                    "token_ver, status, max_seq, created) VALUES (?, ?, ?, ?, ?, 1, 0, 0, ?)",
                    "Ussssu", "", cr->uid, cr->has_name ? cr->name : NULL, cr->nick, cr->avatar,
                    cr->hash, (uint32_t) time(NULL));
        job->rc = n < 0 ? (int) n : DB_OK;
        break;
    case ST_UNDO_NAME:
        n = db_exec(c, "DELETE FROM im_user_name WHERE name_lc = ? AND user_id = ?", "sU", "",
                    cr->name_lc, cr->uid);
        job->rc = n < 0 ? (int) n : DB_OK;
        break;
    case ST_UNDO_USER:
        n = db_exec(c, "DELETE FROM im_user WHERE user_id = ?", "U", "", cr->uid);
        job->rc = n < 0 ? (int) n : DB_OK;
        break;
    }
}

static void submit(create_t *cr, int step, unsigned shard)
{
    cr->step = step;
    logic_db_submit(shard, cr->uid, &cr->job);
}

static void create_done(logic_job_t *job)
{
    create_t *cr = (create_t *) job;
    int rc = job->rc;
    switch (cr->step) {
    case ST_ALLOC:
        if (rc != DB_OK)
            return create_finish(cr, IM_ERR_STORAGE_UNAVAILABLE);
        return submit(cr, ST_INSERT_USER, im_shard_of(cr->uid, IM_SHARD_COUNT));
    case ST_CLAIM_NAME:
        if (rc == DB_EDUP)
            return create_finish(cr, IM_ERR_USER_ALREADY_EXIST);
        if (rc != DB_OK)
            return create_finish(cr, IM_ERR_STORAGE_UNAVAILABLE);
        return submit(cr, ST_INSERT_USER, im_shard_of(cr->uid, IM_SHARD_COUNT));
    case ST_INSERT_USER:
        if (rc == DB_OK) {
            if (cr->explicit_uid && cr->has_name)
                return submit(cr, ST_CLAIM_NAME_FOR_UID, 0);
            return create_finish(cr, IM_ERR_SUCCESS);
        }
        if (cr->explicit_uid)
            return create_finish(cr, rc == DB_EDUP ? IM_ERR_USER_ALREADY_EXIST
                                                   : IM_ERR_STORAGE_UNAVAILABLE);
        if (rc == DB_EDUP) {
            /* an imported user took this id: claim the name again with a fresh id */
            log_info("user id %llu already taken (imported?); allocating another",
                     (unsigned long long) cr->uid);
            if (cr->has_name) {
                cr->result = -1; /* retry after undo */
                return submit(cr, ST_UNDO_NAME, 0);
            }
            return submit(cr, ST_ALLOC, 0);
        }
        if (cr->has_name) {
            cr->result = IM_ERR_STORAGE_UNAVAILABLE;
            return submit(cr, ST_UNDO_NAME, 0);
        }
        return create_finish(cr, IM_ERR_STORAGE_UNAVAILABLE);
    case ST_UNDO_NAME:
        if (rc != DB_OK)
            log_error("could not release user name claim %s (uid %llu): login by name will "
                      "fail for it until removed from im_0.im_user_name",
                      cr->name_lc, (unsigned long long) cr->uid);
        if (cr->result == -1 && rc == DB_OK)
            return submit(cr, ST_CLAIM_NAME, 0);
        return create_finish(cr, cr->result == -1 ? IM_ERR_STORAGE_UNAVAILABLE : cr->result);
    case ST_CLAIM_NAME_FOR_UID:
        if (rc == DB_OK)
            return create_finish(cr, IM_ERR_SUCCESS);
        cr->result = rc == DB_EDUP ? IM_ERR_USER_ALREADY_EXIST : IM_ERR_STORAGE_UNAVAILABLE;
        return submit(cr, ST_UNDO_USER, im_shard_of(cr->uid, IM_SHARD_COUNT));
    case ST_UNDO_USER:
        return create_finish(cr, cr->result);
    }
}

static void create_hashed(void *ud, char *hash)
{
    create_t *cr = ud;
    if (!hash)
        return create_finish(cr, IM_ERR_INTERNAL);
    cr->hash = hash;
    create_next(cr);
}

static void create_next(create_t *cr)
{
    if (cr->explicit_uid)
        submit(cr, ST_INSERT_USER, im_shard_of(cr->uid, IM_SHARD_COUNT));
    else if (cr->has_name)
        submit(cr, ST_CLAIM_NAME, 0);
    else
        submit(cr, ST_ALLOC, 0);
}

void logic_user_create(uint64_t uid, const char *name, const char *nick, const char *avatar,
                       const char *pwd, logic_user_created_cb cb, void *ud)
{
    create_t *cr = calloc(1, sizeof(*cr));
    if (!cr) {
        cb(ud, IM_ERR_INTERNAL, 0, 0);
        return;
    }
    cr->job.work = create_work;
    cr->job.done = create_done;
    cr->uid = uid;
    cr->explicit_uid = uid != 0;
    cr->cb = cb;
    cr->ud = ud;
    if (name && *name) {
        snprintf(cr->name, sizeof(cr->name), "%s", name);
        logic_lower(cr->name_lc, name, sizeof(cr->name_lc));
        cr->has_name = 1;
    }
    snprintf(cr->nick, sizeof(cr->nick), "%s", nick && *nick ? nick : (name ? name : ""));
    snprintf(cr->avatar, sizeof(cr->avatar), "%s", avatar ? avatar : "");
    if (pwd)
        logic_pwhash(pwd, create_hashed, cr);
    else
        create_next(cr);
}

/* ---------------------------------------------------------------- lookups */

typedef struct lookup_s {
    logic_job_t job;
    int by_name;
    char name_lc[33];
    logic_user_t u;
    int found;
    logic_user_found_cb cb;
    void *ud;
} lookup_t;

static void lookup_work(logic_job_t *job, logic_dbc_t *c)
{
    lookup_t *lk = (lookup_t *) job;
    long n;
    if (lk->by_name) {
        n = db_exec(c, "SELECT user_id FROM im_user_name WHERE name_lc = ?", "s", "U", lk->name_lc,
                    &lk->u.user_id);
    } else {
        n = db_exec(c,
                    "SELECT IFNULL(user_name, ''), nick_name, avatar_url, IFNULL(pwd_hash, ''), "
                    "token_ver, status FROM im_user WHERE user_id = ?",
                    "U", "ssssuu", lk->u.user_id, lk->u.user_name, sizeof(lk->u.user_name),
                    lk->u.nick, sizeof(lk->u.nick), lk->u.avatar, sizeof(lk->u.avatar),
                    lk->u.pwd_hash, sizeof(lk->u.pwd_hash), &lk->u.token_ver, &lk->u.status);
    }
    job->rc = n < 0 ? (int) n : DB_OK;
    lk->found = n == 1;
}

/* By-id lookups queued together on a shard worker (a login storm) run as one SELECT ... IN per
 * 64 users instead of a round trip each. */
static db_tpl_t lookup_select = {"SELECT user_id, IFNULL(user_name, ''), nick_name, avatar_url, "
                                 "IFNULL(pwd_hash, ''), token_ver, status FROM im_user WHERE "
                                 "user_id IN (",
                                 "?",
                                 ")",
                                 {0}};

typedef struct lookup_rows_s {
    lookup_t **lk;
    int n;
    logic_user_t row;
} lookup_rows_t;

static void lookup_row(void *ud)
{
    lookup_rows_t *r = ud;
    for (int i = 0; i < r->n; i++)
        if (r->lk[i]->u.user_id == r->row.user_id && !r->lk[i]->found) {
            uint64_t uid = r->lk[i]->u.user_id;
            r->lk[i]->u = r->row;
            r->lk[i]->u.user_id = uid;
            r->lk[i]->found = 1;
        }
}

static void lookup_batch(logic_job_t **jobs, int n, logic_dbc_t *c)
{
    lookup_rows_t r;
    memset(&r, 0, sizeof(r));
    int rc = DB_OK;
    for (int i = 0; i < n && rc == DB_OK;) {
        int k = n - i < DB_ROWS_MAX ? n - i : DB_ROWS_MAX;
        /* the statement sizes are 64, 16, 4, 1: pad with the last id */
        int sz = db_pad(k);
        db_binds_t *b = db_conn_binds(c);
        if (!b) {
            rc = DB_ERR;
            break;
        }
        for (int j = 0; j < sz; j++)
            dbb_u64(b, ((lookup_t *) jobs[i + (j < k ? j : k - 1)])->u.user_id);
        r.lk = (lookup_t **) (jobs + i);
        r.n = k;
        logic_user_t *u = &r.row;
        long got = db_exec_binds(c, db_tpl_sql(&lookup_select, sz), b, lookup_row, &r, "Ussssuu",
                                 &u->user_id, u->user_name, sizeof(u->user_name), u->nick,
                                 sizeof(u->nick), u->avatar, sizeof(u->avatar), u->pwd_hash,
                                 sizeof(u->pwd_hash), &u->token_ver, &u->status);
        if (got < 0)
            rc = (int) got;
        i += k;
    }
    sodium_memzero(r.row.pwd_hash, sizeof(r.row.pwd_hash));
    for (int i = 0; i < n; i++)
        jobs[i]->rc = rc;
}

static void lookup_done(logic_job_t *job)
{
    lookup_t *lk = (lookup_t *) job;
    if (lk->by_name && job->rc == DB_OK && lk->found) {
        /* second hop: the user's own shard */
        lk->by_name = 0;
        lk->found = 0;
        lk->job.batch = lookup_batch;
        logic_db_submit(im_shard_of(lk->u.user_id, IM_SHARD_COUNT), lk->u.user_id, &lk->job);
        return;
    }
    int rc = job->rc != DB_OK ? -1 : lk->found ? 1 : 0;
    lk->cb(lk->ud, rc, &lk->u);
    sodium_memzero(lk->u.pwd_hash, sizeof(lk->u.pwd_hash));
    free(lk);
}

void logic_user_get(uint64_t uid, const char *name, logic_user_found_cb cb, void *ud)
{
    lookup_t *lk = calloc(1, sizeof(*lk));
    if (!lk) {
        cb(ud, -1, NULL);
        return;
    }
    lk->job.work = lookup_work;
    lk->job.done = lookup_done;
    lk->cb = cb;
    lk->ud = ud;
    if (name) {
        lk->by_name = 1;
        logic_lower(lk->name_lc, name, sizeof(lk->name_lc));
        logic_db_submit(0, 0, &lk->job);
    } else {
        lk->u.user_id = uid;
        lk->job.batch = lookup_batch;
        logic_db_submit(im_shard_of(uid, IM_SHARD_COUNT), uid, &lk->job);
    }
}

/* ---------------------------------------------------------------- token version */

typedef struct bump_s {
    logic_job_t job;
    uint64_t uid;
    uint32_t ver;
    int found;
    void (*cb)(void *ud, int rc, uint32_t ver);
    void *ud;
} bump_t;

static void bump_work(logic_job_t *job, logic_dbc_t *c)
{
    bump_t *b = (bump_t *) job;
    if (db_begin(c) != DB_OK) {
        job->rc = DB_ECONN;
        return;
    }
    long n = db_exec(c, "UPDATE im_user SET token_ver = token_ver + 1 WHERE user_id = ?", "U", "",
                     b->uid);
    if (n >= 0)
        n = db_exec(c, "SELECT token_ver FROM im_user WHERE user_id = ?", "U", "u", b->uid,
                    &b->ver);
    if (n < 0) {
        db_rollback(c);
        job->rc = (int) n;
        return;
    }
    b->found = n == 1;
    job->rc = db_commit(c);
}

static void bump_done(logic_job_t *job)
{
    bump_t *b = (bump_t *) job;
    b->cb(b->ud, job->rc != DB_OK ? -1 : b->found ? 1 : 0, b->ver);
    free(b);
}

void logic_user_bump_token(uint64_t uid, void (*cb)(void *ud, int rc, uint32_t ver), void *ud)
{
    bump_t *b = calloc(1, sizeof(*b));
    if (!b) {
        cb(ud, -1, 0);
        return;
    }
    b->job.work = bump_work;
    b->job.done = bump_done;
    b->uid = uid;
    b->cb = cb;
    b->ud = ud;
    logic_db_submit(im_shard_of(uid, IM_SHARD_COUNT), uid, &b->job);
}

/* ---------------------------------------------------------------- nick names of many users */

typedef struct nicks_s nicks_t;

typedef struct nicks_part_s {
    logic_job_t job;
    nicks_t *all;
    unsigned shard;
    uint64_t row_uid; /* row scratch: one per job (the shards' jobs run at once) */
    char row_nick[513];
} nicks_part_t;

struct nicks_s {
    const uint64_t *ids;
    size_t n;
    char **nicks;
    int pending, failed;
    void (*cb)(void *ud, int rc, char **nicks);
    void *ud;
};

static db_tpl_t nick_select = {
    "SELECT user_id, nick_name FROM im_user WHERE user_id IN (", "?", ")", {0}};

static void nick_row(void *ud)
{
    nicks_part_t *p = ud;
    nicks_t *a = p->all;
    for (size_t i = 0; i < a->n; i++) /* only this shard's users: no other job writes them */
        if (a->ids[i] == p->row_uid && !a->nicks[i])
            a->nicks[i] = strdup(p->row_nick);
}

static void nicks_work(logic_job_t *job, logic_dbc_t *c)
{
    nicks_part_t *p = (nicks_part_t *) job;
    nicks_t *a = p->all;
    uint64_t ids[DB_ROWS_MAX];
    size_t i = 0;
    while (i < a->n) {
        int k = 0;
        for (; i < a->n && k < DB_ROWS_MAX; i++)
            if (im_shard_of(a->ids[i], IM_SHARD_COUNT) == p->shard)
                ids[k++] = a->ids[i];
        if (!k)
            break;
        /* the statement sizes are 64, 16, 4, 1: pad with the last id */
        int sz = db_pad(k);
        db_binds_t *b = db_conn_binds(c);
        if (!b) {
            job->rc = DB_ERR;
            return;
        }
        for (int j = 0; j < sz; j++)
            dbb_u64(b, ids[j < k ? j : k - 1]);
        long r = db_exec_binds(c, db_tpl_sql(&nick_select, sz), b, nick_row, p, "Us", &p->row_uid,
                               p->row_nick, sizeof(p->row_nick));
        if (r < 0) {
            job->rc = (int) r;
            return;
        }
    }
}

static void nicks_finish(nicks_t *a)
{
    a->cb(a->ud, a->failed ? -1 : 0, a->nicks);
    for (size_t i = 0; i < a->n; i++)
        free(a->nicks[i]);
    free(a->nicks);
    free(a);
}

static void nicks_done(logic_job_t *job)
{
    nicks_part_t *p = (nicks_part_t *) job;
    nicks_t *a = p->all;
    if (job->rc != DB_OK)
        a->failed = 1;
    free(p);
    if (--a->pending == 0)
        nicks_finish(a);
}

void logic_user_nicks(const uint64_t *ids, size_t n, void (*cb)(void *ud, int rc, char **nicks),
                      void *ud)
{
    nicks_t *a = calloc(1, sizeof(*a));
    if (a)
        a->nicks = calloc(n ? n : 1, sizeof(char *));
    if (!a || !a->nicks) {
        free(a);
        cb(ud, -1, NULL);
        return;
    }
    a->ids = ids;
    a->n = n;
    a->cb = cb;
    a->ud = ud;
    a->pending = 1;
    for (unsigned s = 0; s < IM_SHARD_COUNT; s++) {
        int any = 0;
        for (size_t i = 0; i < n && !any; i++)
            any = im_shard_of(ids[i], IM_SHARD_COUNT) == s;
        if (!any)
            continue;
        nicks_part_t *p = calloc(1, sizeof(*p));
        if (!p) {
            a->failed = 1;
            continue;
        }
        p->all = a;
        p->shard = s;
        p->job.work = nicks_work;
        p->job.done = nicks_done;
        a->pending++;
        logic_db_submit(s, 0, &p->job);
    }
    if (--a->pending == 0) /* the starting reference: nothing was submitted */
        nicks_finish(a);
}
