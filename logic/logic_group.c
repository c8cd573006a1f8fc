/* logic_group: see logic_group.h.
 *
 * Every membership change is one transaction on shard(group_id) that locks the group row,
 * checks the rules (owner-only kick and disband, join model, member limit), applies the change,
 * bumps the version and reads the member list back; then each affected user's group list is
 * rewritten on that user's shard, the Redis member cache is dropped, and the members are told
 * (0x0515 plus a NOTIFICATION entry in their inboxes). The member list of a group message comes
 * from the Redis cache (cim:gm:{gid}: a packed blob of status, owner and sorted member ids),
 * loaded from shard(group_id) on a miss. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "im_cmd.h"
#include "im_log.h"
#include "im_shard.h"
#include "logic_group.h"
#include "logic_msg.h"
#include "logic_user.h"
#include "proto/cim.pb-c.h"

#define CACHE_TTL_S 3600

enum {
    OP_CREATE,
    OP_INVITE,
    OP_KICK,
    OP_JOIN,
    OP_EXIT,
    OP_DISBAND,
    OP_UPDATE,
    OP_API_ADD,
    OP_API_DEL
};

typedef struct group_row_s {
    uint64_t group_id, owner_id;
    char name[513]; /* 128 characters of UTF-8 */
    char announcement[1025];
    char intro[513];
    char avatar[513];
    uint32_t type, join_model, invite_model, mute_model, version, status, count, created, updated;
} group_row_t;

typedef struct gop_s gop_t;
struct gop_s {
    logic_job_t job;
    logic_req_t req; /* gate_id 0: from the business API */
    int op;
    int step;
    uint64_t actor, gid;
    char name[513]; /* 128 characters of UTF-8 */
    char announcement[1025];
    int set_name, set_announcement;
    int join_model, mute_model; /* -1 = unchanged */
    uint64_t *ids;              /* requested users (sorted, unique) */
    size_t nids;
    /* results */
    int result;
    group_row_t g;
    uint64_t *members; /* after the change (for disband: before) */
    size_t nmembers, capmembers;
    uint64_t *changed; /* users actually added or removed */
    size_t nchanged;
    uint64_t new_owner;
    int pending;
    int failed;
    uint64_t row_uid; /* scratch */
    logic_group_api_cb api_cb;
    void *api_ud;
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static size_t sort_unique(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] && (k == 0 || v[k - 1] != v[i]))
            v[k++] = v[i];
    return k;
}

static int contains(const uint64_t *v, size_t n, uint64_t x)
{
    return n && bsearch(&x, v, n, sizeof(*v), cmp_u64) != NULL;
}

static void gop_free(gop_t *o)
{
    free(o->ids);
    free(o->members);
    free(o->changed);
    free(o);
}

/* ---------------------------------------------------------------- answers */

static void group_info_fill(CIM__Def__CIMGroupInfo *gi, const group_row_t *g)
{
    cim__def__cimgroup_info__init(gi);
    gi->group_id = g->group_id;
    gi->group_name = (char *) g->name;
    gi->group_type = (CIM__Def__CIMGroupType) g->type;
    gi->join_model = (CIM__Def__CIMGroupJoinModel) g->join_model;
    gi->be_invite_model = (CIM__Def__CIMGroupBeInviteMode) g->invite_model;
    gi->mute_model = (CIM__Def__CIMGroupMuteModel) g->mute_model;
    gi->group_owner_id = g->owner_id;
    gi->create_time = g->created;
    gi->update_time = g->updated;
    gi->group_intro = (char *) g->intro;
    gi->announcement = (char *) g->announcement;
    gi->group_avatar = (char *) g->avatar;
}

static void answer(gop_t *o)
{
    const logic_req_t *r = &o->req;
    if (!r->gate_id) {
        if (o->api_cb)
            o->api_cb(o->api_ud, o->result, o->gid);
        return;
    }
    uint32_t code = (uint32_t) o->result;
    switch (o->op) {
    case OP_CREATE: {
        CIM__Def__CIMGroupCreateRsp rsp = CIM__DEF__CIMGROUP_CREATE_RSP__INIT;
        CIM__Def__CIMGroupInfo gi;
        rsp.user_id = r->user_id;
        rsp.result_code = code;
        if (code == IM_ERR_SUCCESS) {
            group_info_fill(&gi, &o->g);
            rsp.group_info = &gi;
            rsp.n_member_id_list = o->nmembers;
            rsp.member_id_list = o->members;
        }
        logic_reply(r, IM_CMD_GROUP_CREATE_RSP, &rsp);
        break;
    }
    case OP_DISBAND:
    case OP_EXIT: {
        /* DisbandingRsp and ExitRsp have the same fields */
        CIM__Def__CIMGroupExitRsp rsp = CIM__DEF__CIMGROUP_EXIT_RSP__INIT;
        rsp.user_id = r->user_id;
        rsp.group_id = o->gid;
        rsp.result_code = code;
        logic_reply(r, o->op == OP_EXIT ? IM_CMD_GROUP_EXIT_RSP : IM_CMD_GROUP_DISBAND_RSP, &rsp);
        break;
    }
    case OP_INVITE:
    case OP_KICK: {
        CIM__Def__CIMGroupInviteMemberRsp rsp = CIM__DEF__CIMGROUP_INVITE_MEMBER_RSP__INIT;
        rsp.user_id = r->user_id;
        rsp.group_id = o->gid;
        rsp.result_code = code;
        logic_reply(r, o->op == OP_INVITE ? IM_CMD_GROUP_INVITE_RSP : IM_CMD_GROUP_KICK_RSP, &rsp);
        break;
    }
    case OP_JOIN: {
        CIM__Def__CIMGroupJoinRsp rsp = CIM__DEF__CIMGROUP_JOIN_RSP__INIT;
        rsp.user_id = r->user_id;
        rsp.group_id = o->gid;
        rsp.result_code = code;
        logic_reply(r, IM_CMD_GROUP_JOIN_RSP, &rsp);
        break;
    }
    }
}

/* ---------------------------------------------------------------- notifications */

static json_t *id_str(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%llu", (unsigned long long) v);
    return json_string(b);
}

static json_t *id_list(const uint64_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n && i < 100; i++)
        json_array_append_new(a, id_str(v[i]));
    return a;
}

static void notify(gop_t *o)
{
    const group_row_t *g = &o->g;
    /* who hears of it: every member old and new, or in large groups only those affected and
     * the owner (the rest see it through group_version) */
    size_t cap = o->nmembers + o->nchanged + 2;
    uint64_t *to = malloc(cap * sizeof(uint64_t));
    if (!to)
        return;
    size_t n = 0;
    int all = o->nmembers + o->nchanged <= LOGIC_NOTIFY_ALL_MAX || o->op == OP_DISBAND;
    if (all)
        for (size_t i = 0; i < o->nmembers; i++)
            to[n++] = o->members[i];
    for (size_t i = 0; i < o->nchanged; i++)
        to[n++] = o->changed[i];
    to[n++] = g->owner_id;
    n = sort_unique(to, n);

    /* 0x0515 */
    CIM__Def__CIMGroupMemberChangedNotify nt = CIM__DEF__CIMGROUP_MEMBER_CHANGED_NOTIFY__INIT;
    size_t nc = o->nchanged;
    CIM__Def__CIMGroupMemberChangedInfo *ci = calloc(nc ? nc : 1, sizeof(*ci));
    CIM__Def__CIMGroupMemberChangedInfo **cp = calloc(nc ? nc : 1, sizeof(*cp));
    if (ci && cp) {
        int del =
            o->op == OP_KICK || o->op == OP_EXIT || o->op == OP_DISBAND || o->op == OP_API_DEL;
        for (size_t i = 0; i < nc; i++) {
            cim__def__cimgroup_member_changed_info__init(&ci[i]);
            ci[i].user_id = o->changed[i];
            ci[i].type =
                del ? CIM__DEF__CIMGROUP_MEMBER_CHANGED_TYPE__kCIM_GROUP_MEMBER_CHANGED_TYPE_DEL
                    : CIM__DEF__CIMGROUP_MEMBER_CHANGED_TYPE__kCIM_GROUP_MEMBER_CHANGED_TYPE_ADD;
            cp[i] = &ci[i];
        }
        nt.user_id = o->actor;
        nt.group_id = o->gid;
        nt.n_changed_list = nc;
        nt.changed_list = cp;
        size_t len = cim__def__cimgroup_member_changed_notify__get_packed_size(&nt);
        uint8_t *buf = malloc(len ? len : 1);
        if (buf) {
            cim__def__cimgroup_member_changed_notify__pack(&nt, buf);
            if (nc <= LOGIC_NOTIFY_ALL_MAX) {
                for (size_t i = 0; i < n; i++)
                    logic_push_user(to[i], 0, 0, IM_CMD_GROUP_MEMBER_CHANGED, buf, len);
            } else {
                /* a large change: the whole list to the owner and the actor, and each affected
                 * member its own entry (not 10,000 x 60 KB) */
                logic_push_user(g->owner_id, 0, 0, IM_CMD_GROUP_MEMBER_CHANGED, buf, len);
                if (o->actor && o->actor != g->owner_id)
                    logic_push_user(o->actor, 0, 0, IM_CMD_GROUP_MEMBER_CHANGED, buf, len);
                uint8_t one[64];
                nt.n_changed_list = 1;
                for (size_t i = 0; i < nc; i++) {
                    if (ci[i].user_id == g->owner_id || ci[i].user_id == o->actor)
                        continue;
                    nt.changed_list = &cp[i];
                    size_t l1 = cim__def__cimgroup_member_changed_notify__pack(&nt, one);
                    logic_push_user(ci[i].user_id, 0, 0, IM_CMD_GROUP_MEMBER_CHANGED, one, l1);
                }
            }
            free(buf);
        }
    }
    free(ci);
    free(cp);

    /* the NOTIFICATION entry: in every notified inbox (the actor's own through its outbox) */
    json_t *j = json_object();
    const char *type = "group_update";
    switch (o->op) {
    case OP_CREATE:
        type = "group_create";
        json_object_set_new(j, "group_name", json_string(g->name));
        json_object_set_new(j, "owner_id", id_str(g->owner_id));
        json_object_set_new(j, "member_ids", id_list(o->members, o->nmembers));
        json_object_set_new(j, "member_count", json_integer((json_int_t) o->nmembers));
        break;
    case OP_INVITE:
    case OP_API_ADD:
    case OP_KICK:
    case OP_API_DEL:
        type = (o->op == OP_INVITE || o->op == OP_API_ADD) ? "group_invite" : "group_kick";
        json_object_set_new(j, "by", id_str(o->actor));
        json_object_set_new(j, "member_ids", id_list(o->changed, o->nchanged));
        json_object_set_new(j, "member_count", json_integer((json_int_t) o->nchanged));
        break;
    case OP_JOIN:
        type = "group_join";
        json_object_set_new(j, "user_id", id_str(o->actor));
        break;
    case OP_EXIT:
        type = "group_exit";
        json_object_set_new(j, "user_id", id_str(o->actor));
        if (o->new_owner)
            json_object_set_new(j, "new_owner_id", id_str(o->new_owner));
        break;
    case OP_DISBAND:
        type = "group_disband";
        json_object_set_new(j, "by", id_str(o->actor));
        break;
    case OP_UPDATE: {
        json_t *f = json_array();
        if (o->set_name)
            json_array_append_new(f, json_string("group_name"));
        if (o->set_announcement)
            json_array_append_new(f, json_string("announcement"));
        if (o->join_model >= 0)
            json_array_append_new(f, json_string("join_model"));
        if (o->mute_model >= 0)
            json_array_append_new(f, json_string("mute_model"));
        json_object_set_new(j, "fields", f);
        break;
    }
    }
    json_object_set_new(j, "type", json_string(type));
    json_object_set_new(j, "group_id", id_str(o->gid));
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (text) {
        /* inboxes: everyone notified but the actor (the actor's entry is its own outbox row) */
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (to[i] != o->actor)
                to[k++] = to[i];
        char cmid[64];
        snprintf(cmid, sizeof(cmid), "g:%llu:%u:%d", (unsigned long long) o->gid, g->version,
                 o->op);
        logic_msg_post(o->actor, o->gid, 2, LOGIC_NOTIFICATION, cmid, (const uint8_t *) text,
                       strlen(text), to, k, o->actor != 0, 1, NULL, NULL);
        free(text);
    }
    free(to);
}

/* ---------------------------------------------------------------- the user-side index */

typedef struct idx_s {
    logic_job_t job;
    gop_t *o;
    unsigned shard;
    int add;
    uint64_t *uids;
    size_t n;
} idx_t;

static void idx_work(logic_job_t *job, logic_dbc_t *c)
{
    idx_t *x = (idx_t *) job;
    uint64_t now = im_now_ms();
    if (db_begin(c) != DB_OK) {
        job->rc = DB_ECONN;
        return;
    }
    for (size_t i = 0; i < x->n; i++) {
        long r = x->add ? db_exec(c,
                                  "INSERT IGNORE INTO im_user_group (user_id, group_id, joined) "
                                  "VALUES (?, ?, ?)",
                                  "UUU", "", x->uids[i], x->o->gid, now)
                        : db_exec(c, "DELETE FROM im_user_group WHERE user_id = ? AND group_id = ?",
                                  "UU", "", x->uids[i], x->o->gid);
        if (r < 0) {
            db_rollback(c);
            job->rc = (int) r;
            return;
        }
    }
    job->rc = db_commit(c);
}

static void finish(gop_t *o);

static void idx_done(logic_job_t *job)
{
    idx_t *x = (idx_t *) job;
    gop_t *o = x->o;
    if (job->rc != DB_OK) {
        /* the members table (shard of the group) is the truth; the index is repaired on the
         * next change of this user's membership */
        log_warn("group %llu: user group list not updated on shard %u (%d users)",
                 (unsigned long long) o->gid, x->shard, (int) x->n);
    }
    free(x->uids);
    free(x);
    if (--o->pending == 0)
        finish(o);
}

static void index_update(gop_t *o)
{
    int add = !(o->op == OP_KICK || o->op == OP_EXIT || o->op == OP_DISBAND || o->op == OP_API_DEL);
    const uint64_t *u = o->op == OP_DISBAND ? o->members : o->changed;
    size_t n = o->op == OP_DISBAND ? o->nmembers : o->nchanged;
    o->pending = 1;
    for (unsigned s = 0; s < IM_SHARD_COUNT; s++) {
        idx_t *x = calloc(1, sizeof(*x));
        if (!x)
            continue;
        x->uids = malloc((n ? n : 1) * sizeof(uint64_t));
        if (!x->uids) {
            free(x);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (im_shard_of(u[i], IM_SHARD_COUNT) == s)
                x->uids[x->n++] = u[i];
        if (!x->n) {
            free(x->uids);
            free(x);
            continue;
        }
        x->o = o;
        x->shard = s;
        x->add = add;
        x->job.work = idx_work;
        x->job.done = idx_done;
        o->pending++;
        logic_db_submit(s, o->gid, &x->job);
    }
    if (--o->pending == 0)
        finish(o);
}

static void finish(gop_t *o)
{
    char key[40];
    snprintf(key, sizeof(key), "cim:gm:%llu", (unsigned long long) o->gid);
    im_redis_cmd(g_logic.redis, NULL, NULL, "DEL %s", key);
    answer(o);
    if (o->nchanged || o->op == OP_UPDATE || o->op == OP_CREATE)
        notify(o);
    log_info("group %llu: op %d by %llu: %d member(s) changed, %d now", (unsigned long long) o->gid,
             o->op, (unsigned long long) o->actor, (int) o->nchanged, (int) o->nmembers);
    gop_free(o);
}

/* ---------------------------------------------------------------- the change (shard of the group)
 */

static void member_row(void *ud)
{
    gop_t *o = ud;
    if (o->nmembers == o->capmembers) {
        size_t cap = o->capmembers ? o->capmembers * 2 : 64;
        uint64_t *nm = realloc(o->members, cap * sizeof(uint64_t));
        if (!nm)
            return;
        o->members = nm;
        o->capmembers = cap;
    }
    o->members[o->nmembers++] = o->row_uid;
}

#define GROUP_COLS                                                                                 \
    "group_id, group_name, group_type, join_model, be_invite_model, mute_model, owner_id, "        \
    "intro, announcement, avatar, version, status, member_count, created, updated"
#define GROUP_OUT "UsuuuuUsssuuuuu"
#define GROUP_PTRS(g)                                                                              \
    &(g)->group_id, (g)->name, sizeof((g)->name), &(g)->type, &(g)->join_model,                    \
        &(g)->invite_model, &(g)->mute_model, &(g)->owner_id, (g)->intro, sizeof((g)->intro),      \
        (g)->announcement, sizeof((g)->announcement), (g)->avatar, sizeof((g)->avatar),            \
        &(g)->version, &(g)->status, &(g)->count, &(g)->created, &(g)->updated

static long load_members(logic_dbc_t *c, gop_t *o)
{
    o->nmembers = 0;
    return db_query(c, "SELECT user_id FROM im_group_member WHERE group_id = ? ORDER BY user_id",
                    member_row, o, "U", "U", o->gid, &o->row_uid);
}

static int change_work_inner(gop_t *o, logic_dbc_t *c)
{
    uint64_t now_ms = im_now_ms();
    uint32_t now = (uint32_t) time(NULL);
    group_row_t *g = &o->g;
    long r;
    o->nchanged = 0;
    if (o->op == OP_CREATE) {
        r = db_exec(c,
                    "INSERT INTO im_group (group_id, group_name, group_type, owner_id, version, "
                    "status, member_count, created, updated) VALUES (?, ?, 1, ?, 1, 0, ?, ?, ?)",
                    "UsUuuu", "", o->gid, o->name, o->actor, (uint32_t) o->nids, now, now);
        if (r < 0)
            return (int) r;
        for (size_t i = 0; i < o->nids; i++) {
            r = db_exec(c,
                        "INSERT INTO im_group_member (group_id, user_id, joined) VALUES (?, ?, ?)",
                        "UUU", "", o->gid, o->ids[i], now_ms + (o->ids[i] == o->actor ? 0 : 1));
            if (r < 0)
                return (int) r;
            o->changed[o->nchanged++] = o->ids[i];
        }
        r = db_exec(c, "SELECT " GROUP_COLS " FROM im_group WHERE group_id = ?", "U", GROUP_OUT,
                    o->gid, GROUP_PTRS(g));
        if (r < 0)
            return (int) r;
        r = load_members(c, o);
        o->result = IM_ERR_SUCCESS;
        return r < 0 ? (int) r : DB_OK;
    }
    r = db_exec(c, "SELECT " GROUP_COLS " FROM im_group WHERE group_id = ? FOR UPDATE", "U",
                GROUP_OUT, o->gid, GROUP_PTRS(g));
    if (r < 0)
        return (int) r;
    if (r == 0 || g->status != 0) {
        o->result = IM_ERR_NOT_FOUND;
        return DB_OK;
    }
    r = load_members(c, o);
    if (r < 0)
        return (int) r;
    int is_member = o->actor && contains(o->members, o->nmembers, o->actor);
    int is_owner = o->actor == 0 || o->actor == g->owner_id; /* the API acts as an owner */
    switch (o->op) {
    case OP_INVITE:
        if (!is_member)
            goto denied;
        /* fallthrough */
    case OP_API_ADD:
        if (o->op == OP_INVITE && g->invite_model != 0 && !is_owner)
            goto denied;
        for (size_t i = 0; i < o->nids; i++)
            if (!contains(o->members, o->nmembers, o->ids[i]))
                o->changed[o->nchanged++] = o->ids[i];
        break;
    case OP_JOIN:
        if (is_member) {
            o->result = IM_ERR_SUCCESS; /* already in: nothing to do */
            return DB_OK;
        }
        if (g->join_model != 0)
            goto denied;
        o->changed[o->nchanged++] = o->actor;
        break;
    case OP_KICK:
        if (!is_owner)
            goto denied;
        /* fallthrough */
    case OP_API_DEL:
        for (size_t i = 0; i < o->nids; i++)
            if (contains(o->members, o->nmembers, o->ids[i]) && o->ids[i] != g->owner_id)
                o->changed[o->nchanged++] = o->ids[i];
        break;
    case OP_EXIT:
        if (!is_member) {
            o->result = IM_ERR_NOT_FOUND;
            return DB_OK;
        }
        o->changed[o->nchanged++] = o->actor;
        break;
    case OP_DISBAND:
        if (!is_owner)
            goto denied;
        for (size_t i = 0; i < o->nmembers; i++)
            o->changed[o->nchanged++] = o->members[i];
        break;
    case OP_UPDATE:
        break;
    }
    size_t after = o->nmembers;
    int add = o->op == OP_INVITE || o->op == OP_API_ADD || o->op == OP_JOIN;
    if (add && o->nmembers + o->nchanged > LOGIC_GROUP_MAX_MEMBERS) {
        o->result = IM_ERR_PERMISSION_DENIED;
        o->nchanged = 0;
        return DB_OK;
    }
    for (size_t i = 0; i < o->nchanged; i++) {
        if (add)
            r = db_exec(c,
                        "INSERT INTO im_group_member (group_id, user_id, joined) VALUES (?, ?, ?)",
                        "UUU", "", o->gid, o->changed[i], now_ms);
        else
            r = db_exec(c, "DELETE FROM im_group_member WHERE group_id = ? AND user_id = ?", "UU",
                        "", o->gid, o->changed[i]);
        if (r < 0)
            return (int) r;
        after += add ? 1 : (size_t) -1;
    }
    if (o->op == OP_EXIT && o->actor == g->owner_id) {
        /* hand over to the earliest joined remaining member, ties by the smallest id */
        uint64_t next = 0;
        r = db_exec(c,
                    "SELECT user_id FROM im_group_member WHERE group_id = ? ORDER BY joined, "
                    "user_id LIMIT 1",
                    "U", "U", o->gid, &next);
        if (r < 0)
            return (int) r;
        if (r == 1) {
            o->new_owner = next;
            g->owner_id = next;
        } else {
            o->op = OP_DISBAND; /* the last member left: nothing remains */
        }
    }
    if (o->op == OP_UPDATE) {
        if (o->set_name)
            snprintf(g->name, sizeof(g->name), "%s", o->name);
        if (o->set_announcement)
            snprintf(g->announcement, sizeof(g->announcement), "%s", o->announcement);
        if (o->join_model >= 0)
            g->join_model = (uint32_t) o->join_model;
        if (o->mute_model >= 0)
            g->mute_model = (uint32_t) o->mute_model;
    }
    if (o->op == OP_DISBAND) {
        r = db_exec(c, "DELETE FROM im_group_member WHERE group_id = ?", "U", "", o->gid);
        if (r < 0)
            return (int) r;
        g->status = 1;
        after = 0;
    }
    g->version++;
    g->updated = now;
    g->count = (uint32_t) after;
    r = db_exec(c,
                "UPDATE im_group SET group_name = ?, announcement = ?, join_model = ?, "
                "mute_model = ?, owner_id = ?, version = ?, status = ?, member_count = ?, "
                "updated = ? WHERE group_id = ?",
                "ssuuUuuuuU", "", g->name, g->announcement, g->join_model, g->mute_model,
                g->owner_id, g->version, g->status, g->count, g->updated, o->gid);
    if (r < 0)
        return (int) r;
    if (o->op != OP_DISBAND) {
        r = load_members(c, o);
        if (r < 0)
            return (int) r;
    }
    o->result = IM_ERR_SUCCESS;
    return DB_OK;
denied:
    o->result = IM_ERR_PERMISSION_DENIED;
    return DB_OK;
}

static void change_work(logic_job_t *job, logic_dbc_t *c)
{
    gop_t *o = (gop_t *) job;
    o->changed = malloc((o->nids + LOGIC_GROUP_MAX_MEMBERS + 1) * sizeof(uint64_t));
    if (!o->changed) {
        job->rc = DB_ERR;
        return;
    }
    if (db_begin(c) != DB_OK) {
        job->rc = DB_ECONN;
        return;
    }
    int rc = change_work_inner(o, c);
    if (rc != DB_OK || o->result != IM_ERR_SUCCESS) {
        db_rollback(c);
        job->rc = rc;
        return;
    }
    job->rc = db_commit(c);
}

static void change_done(logic_job_t *job)
{
    gop_t *o = (gop_t *) job;
    if (job->rc != DB_OK) {
        o->result = IM_ERR_STORAGE_UNAVAILABLE;
        o->nchanged = 0;
    }
    if (o->result != IM_ERR_SUCCESS ||
        (o->nchanged == 0 && o->op != OP_UPDATE && o->op != OP_CREATE)) {
        answer(o);
        gop_free(o);
        return;
    }
    if (o->op == OP_DISBAND) {
        /* everyone who was a member hears of it */
        free(o->members);
        o->members = malloc((o->nchanged ? o->nchanged : 1) * sizeof(uint64_t));
        if (o->members)
            memcpy(o->members, o->changed, o->nchanged * sizeof(uint64_t));
        o->nmembers = o->members ? o->nchanged : 0;
    }
    if (o->op == OP_UPDATE) {
        finish(o);
        return;
    }
    index_update(o);
}

static void change_submit(gop_t *o)
{
    o->job.work = change_work;
    o->job.done = change_done;
    logic_db_submit(im_shard_of(o->gid, IM_SHARD_COUNT), o->gid, &o->job);
}

/* ---------------------------------------------------------------- users must exist */

typedef struct ex_s {
    logic_job_t job;
    gop_t *o;
    uint64_t *uids;
    size_t n;
    int missing;
} ex_t;

static void ex_work(logic_job_t *job, logic_dbc_t *c)
{
    ex_t *x = (ex_t *) job;
    for (size_t i = 0; i < x->n; i++) {
        uint32_t one = 0;
        long r = db_exec(c, "SELECT 1 FROM im_user WHERE user_id = ?", "U", "u", x->uids[i], &one);
        if (r < 0) {
            job->rc = (int) r;
            return;
        }
        if (r == 0) {
            x->missing = 1;
            return;
        }
    }
}

static void after_exists(gop_t *o);
static void alloc_gid(gop_t *o);

static void ex_done(logic_job_t *job)
{
    ex_t *x = (ex_t *) job;
    gop_t *o = x->o;
    if (job->rc != DB_OK)
        o->failed = 1;
    else if (x->missing)
        o->result = IM_ERR_NOT_FOUND;
    else
        for (size_t i = 0; i < x->n; i++)
            logic_user_mark_known(x->uids[i]);
    free(x->uids);
    free(x);
    if (--o->pending == 0)
        after_exists(o);
}

static void check_exist(gop_t *o)
{
    o->pending = 1;
    o->result = IM_ERR_SUCCESS;
    for (unsigned s = 0; s < IM_SHARD_COUNT; s++) {
        ex_t *x = calloc(1, sizeof(*x));
        if (!x || !(x->uids = malloc((o->nids ? o->nids : 1) * sizeof(uint64_t)))) {
            free(x);
            o->failed = 1;
            continue;
        }
        for (size_t i = 0; i < o->nids; i++)
            if (im_shard_of(o->ids[i], IM_SHARD_COUNT) == s && !logic_user_known(o->ids[i]))
                x->uids[x->n++] = o->ids[i];
        if (!x->n) {
            free(x->uids);
            free(x);
            continue;
        }
        x->o = o;
        x->job.work = ex_work;
        x->job.done = ex_done;
        o->pending++;
        logic_db_submit(s, 0, &x->job);
    }
    if (--o->pending == 0)
        after_exists(o);
}

static void after_exists(gop_t *o)
{
    if (o->failed || o->result != IM_ERR_SUCCESS) {
        if (o->failed)
            o->result = IM_ERR_STORAGE_UNAVAILABLE;
        answer(o);
        gop_free(o);
        return;
    }
    if (o->op == OP_CREATE)
        alloc_gid(o);
    else
        change_submit(o);
}

/* ---------------------------------------------------------------- group ids */

static void alloc_work(logic_job_t *job, logic_dbc_t *c)
{
    gop_t *o = (gop_t *) job;
    o->gid = logic_user_alloc_id(c, "group");
    job->rc = o->gid ? DB_OK : DB_ECONN;
}

static void alloc_done(logic_job_t *job)
{
    gop_t *o = (gop_t *) job;
    if (job->rc != DB_OK) {
        o->result = IM_ERR_STORAGE_UNAVAILABLE;
        answer(o);
        gop_free(o);
        return;
    }
    change_submit(o);
}

static void alloc_gid(gop_t *o)
{
    o->job.work = alloc_work;
    o->job.done = alloc_done;
    logic_db_submit(0, 0, &o->job);
}

/* ---------------------------------------------------------------- starting operations */

static gop_t *gop_new(const logic_req_t *r, int op, uint64_t gid)
{
    gop_t *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    if (r)
        o->req = *r;
    o->op = op;
    o->actor = r ? r->user_id : 0;
    o->gid = gid;
    o->join_model = o->mute_model = -1;
    return o;
}

static int take_ids(gop_t *o, const uint64_t *ids, size_t n, int add_actor)
{
    o->ids = malloc((n + 1) * sizeof(uint64_t));
    if (!o->ids)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!ids[i] || ids[i] >= (1ULL << 53)) {
            free(o->ids);
            o->ids = NULL;
            return 1; /* no such user */
        }
        o->ids[i] = ids[i];
    }
    if (add_actor)
        o->ids[n++] = o->actor;
    o->nids = sort_unique(o->ids, n);
    return 0;
}

static int name_ok(const char *name)
{
    size_t cps = 0;
    return name && *name && strlen(name) <= 512 && logic_utf8_valid(name, &cps) && cps <= 128;
}

static int identity_ok(const logic_req_t *r, uint64_t claimed, uint16_t rsp_cmd)
{
    (void) rsp_cmd;
    if (claimed == 0 || claimed == r->user_id)
        return 1;
    log_info("conn %llu user %llu: group request names user %llu: refused",
             (unsigned long long) r->conn_id, (unsigned long long) r->user_id,
             (unsigned long long) claimed);
    return 0;
}

static void reply_code(const logic_req_t *r, int op, uint64_t gid, int code)
{
    gop_t o;
    memset(&o, 0, sizeof(o));
    o.req = *r;
    o.op = op;
    o.gid = gid;
    o.result = code;
    answer(&o);
}

void logic_group_create(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMGroupCreateReq *q = cim__def__cimgroup_create_req__unpack(NULL, len, body);
    if (!q) {
        reply_code(r, OP_CREATE, 0, IM_ERR_INVALID_PARAMETER);
        return;
    }
    if (!identity_ok(r, q->user_id, 0))
        reply_code(r, OP_CREATE, 0, IM_ERR_PERMISSION_DENIED);
    else if (!name_ok(q->group_name))
        reply_code(r, OP_CREATE, 0, IM_ERR_INVALID_PARAMETER);
    else if (q->n_member_id_list + 1 > LOGIC_GROUP_MAX_MEMBERS)
        reply_code(r, OP_CREATE, 0, IM_ERR_PERMISSION_DENIED);
    else {
        gop_t *o = gop_new(r, OP_CREATE, 0);
        int t = o ? take_ids(o, q->member_id_list, q->n_member_id_list, 1) : -1;
        if (t != 0) {
            if (o)
                gop_free(o);
            reply_code(r, OP_CREATE, 0, t > 0 ? IM_ERR_NOT_FOUND : IM_ERR_INTERNAL);
        } else {
            snprintf(o->name, sizeof(o->name), "%s", q->group_name);
            check_exist(o);
        }
    }
    cim__def__cimgroup_create_req__free_unpacked(q, NULL);
}

static void simple_op(const logic_req_t *r, int op, uint64_t claimed, uint64_t gid)
{
    if (!identity_ok(r, claimed, 0)) {
        reply_code(r, op, gid, IM_ERR_PERMISSION_DENIED);
        return;
    }
    if (!gid || gid >= (1ULL << 53)) {
        reply_code(r, op, gid, IM_ERR_NOT_FOUND);
        return;
    }
    gop_t *o = gop_new(r, op, gid);
    if (!o) {
        reply_code(r, op, gid, IM_ERR_INTERNAL);
        return;
    }
    change_submit(o);
}

void logic_group_disband(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMGroupDisbandingReq *q = cim__def__cimgroup_disbanding_req__unpack(NULL, len, body);
    if (!q) {
        reply_code(r, OP_DISBAND, 0, IM_ERR_INVALID_PARAMETER);
        return;
    }
    simple_op(r, OP_DISBAND, q->user_id, q->group_id);
    cim__def__cimgroup_disbanding_req__free_unpacked(q, NULL);
}

void logic_group_exit(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMGroupExitReq *q = cim__def__cimgroup_exit_req__unpack(NULL, len, body);
    if (!q) {
        reply_code(r, OP_EXIT, 0, IM_ERR_INVALID_PARAMETER);
        return;
    }
    simple_op(r, OP_EXIT, q->user_id, q->group_id);
    cim__def__cimgroup_exit_req__free_unpacked(q, NULL);
}

void logic_group_join(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMGroupJoinReq *q = cim__def__cimgroup_join_req__unpack(NULL, len, body);
    if (!q) {
        reply_code(r, OP_JOIN, 0, IM_ERR_INVALID_PARAMETER);
        return;
    }
    simple_op(r, OP_JOIN, q->user_id, q->group_id);
    cim__def__cimgroup_join_req__free_unpacked(q, NULL);
}

static void members_op(const logic_req_t *r, int op, const uint8_t *body, size_t len)
{
    /* InviteMemberReq and KickOutMemberReq have the same fields */
    CIM__Def__CIMGroupInviteMemberReq *q =
        cim__def__cimgroup_invite_member_req__unpack(NULL, len, body);
    if (!q) {
        reply_code(r, op, 0, IM_ERR_INVALID_PARAMETER);
        return;
    }
    if (!identity_ok(r, q->user_id, 0)) {
        reply_code(r, op, q->group_id, IM_ERR_PERMISSION_DENIED);
    } else if (!q->group_id || q->group_id >= (1ULL << 53)) {
        reply_code(r, op, q->group_id, IM_ERR_NOT_FOUND);
    } else if (q->n_member_id_list == 0 || q->n_member_id_list > LOGIC_GROUP_MAX_MEMBERS) {
        reply_code(r, op, q->group_id, IM_ERR_INVALID_PARAMETER);
    } else {
        gop_t *o = gop_new(r, op, q->group_id);
        int t = o ? take_ids(o, q->member_id_list, q->n_member_id_list, 0) : -1;
        if (t != 0) {
            if (o)
                gop_free(o);
            reply_code(r, op, q->group_id, t > 0 ? IM_ERR_NOT_FOUND : IM_ERR_INTERNAL);
        } else if (op == OP_INVITE) {
            check_exist(o);
        } else {
            change_submit(o);
        }
    }
    cim__def__cimgroup_invite_member_req__free_unpacked(q, NULL);
}

void logic_group_invite(const logic_req_t *r, const uint8_t *body, size_t len)
{
    members_op(r, OP_INVITE, body, len);
}

void logic_group_kick(const logic_req_t *r, const uint8_t *body, size_t len)
{
    members_op(r, OP_KICK, body, len);
}

/* ---------------------------------------------------------------- reads */

typedef struct gread_s {
    logic_job_t job;
    logic_req_t req;
    int kind; /* 0 list, 1 info, 2 members */
    uint64_t uid;
    uint64_t *gids;
    uint32_t *versions; /* info: what the client has; list: what we found */
    size_t n;
    uint64_t row_gid;
    group_row_t *rows;
    int *ok;
    int member;
    gop_t members; /* member list holder */
    int pending;
    int failed;
} gread_t;

static void gread_free(gread_t *g)
{
    free(g->gids);
    free(g->versions);
    free(g->rows);
    free(g->ok);
    free(g->members.members);
    free(g);
}

static void gid_row(void *ud)
{
    gread_t *g = ud;
    uint64_t *ng = realloc(g->gids, (g->n + 1) * sizeof(uint64_t));
    if (!ng)
        return;
    g->gids = ng;
    g->gids[g->n++] = g->row_gid;
}

static void glist_user_work(logic_job_t *job, logic_dbc_t *c)
{
    gread_t *g = (gread_t *) job;
    long r = db_query(c, "SELECT group_id FROM im_user_group WHERE user_id = ? ORDER BY group_id",
                      gid_row, g, "U", "U", g->uid, &g->row_gid);
    job->rc = r < 0 ? (int) r : DB_OK;
}

/* per group shard: the row and whether uid is a member */
typedef struct gpart_s {
    logic_job_t job;
    gread_t *g;
    unsigned shard;
} gpart_t;

static void gpart_work(logic_job_t *job, logic_dbc_t *c)
{
    gpart_t *p = (gpart_t *) job;
    gread_t *g = p->g;
    for (size_t i = 0; i < g->n; i++) {
        if (im_shard_of(g->gids[i], IM_SHARD_COUNT) != p->shard)
            continue;
        group_row_t *row = &g->rows[i];
        long r = db_exec(c, "SELECT " GROUP_COLS " FROM im_group WHERE group_id = ?", "U",
                         GROUP_OUT, g->gids[i], GROUP_PTRS(row));
        uint32_t one = 0;
        long m = r == 1 ? db_exec(c,
                                  "SELECT 1 FROM im_group_member WHERE group_id = ? AND "
                                  "user_id = ?",
                                  "UU", "u", g->gids[i], g->uid, &one)
                        : 0;
        if (r < 0 || m < 0) {
            job->rc = r < 0 ? (int) r : (int) m;
            return;
        }
        g->ok[i] = r == 1 && row->status == 0 && m == 1;
    }
}

static void gread_answer(gread_t *g);

static void gpart_done(logic_job_t *job)
{
    gpart_t *p = (gpart_t *) job;
    gread_t *g = p->g;
    if (job->rc != DB_OK)
        g->failed = 1;
    free(p);
    if (--g->pending == 0)
        gread_answer(g);
}

static void gread_fetch_rows(gread_t *g)
{
    g->rows = calloc(g->n ? g->n : 1, sizeof(group_row_t));
    g->ok = calloc(g->n ? g->n : 1, sizeof(int));
    if (!g->rows || !g->ok) {
        g->failed = 1;
        gread_answer(g);
        return;
    }
    g->pending = 1;
    for (unsigned s = 0; s < IM_SHARD_COUNT; s++) {
        int any = 0;
        for (size_t i = 0; i < g->n; i++)
            any |= im_shard_of(g->gids[i], IM_SHARD_COUNT) == s;
        if (!any)
            continue;
        gpart_t *p = calloc(1, sizeof(*p));
        if (!p) {
            g->failed = 1;
            continue;
        }
        p->g = g;
        p->shard = s;
        p->job.work = gpart_work;
        p->job.done = gpart_done;
        g->pending++;
        logic_db_submit(s, g->uid, &p->job);
    }
    if (--g->pending == 0)
        gread_answer(g);
}

static void glist_user_done(logic_job_t *job)
{
    gread_t *g = (gread_t *) job;
    if (job->rc != DB_OK) {
        logic_reply_error(&g->req, IM_ERR_STORAGE_UNAVAILABLE);
        gread_free(g);
        return;
    }
    gread_fetch_rows(g);
}

static void gread_answer(gread_t *g)
{
    const logic_req_t *r = &g->req;
    if (g->failed) {
        logic_reply_error(r, IM_ERR_STORAGE_UNAVAILABLE);
        gread_free(g);
        return;
    }
    size_t n = g->n;
    if (g->kind == 0) {
        CIM__Def__CIMGroupVersionInfo *vi = calloc(n ? n : 1, sizeof(*vi));
        CIM__Def__CIMGroupVersionInfo **vp = calloc(n ? n : 1, sizeof(*vp));
        size_t k = 0;
        if (vi && vp)
            for (size_t i = 0; i < n; i++) {
                if (!g->ok[i])
                    continue;
                cim__def__cimgroup_version_info__init(&vi[k]);
                vi[k].group_id = g->gids[i];
                vi[k].group_version = g->rows[i].version;
                vp[k] = &vi[k];
                k++;
            }
        CIM__Def__CIMGroupListRsp rsp = CIM__DEF__CIMGROUP_LIST_RSP__INIT;
        rsp.user_id = g->uid;
        rsp.n_group_version_list = k;
        rsp.group_version_list = vp;
        rsp.result_code = IM_ERR_SUCCESS;
        logic_reply(r, IM_CMD_GROUP_LIST_RSP, &rsp);
        free(vi);
        free(vp);
    } else {
        CIM__Def__CIMGroupInfo *gi = calloc(n ? n : 1, sizeof(*gi));
        CIM__Def__CIMGroupInfo **gp = calloc(n ? n : 1, sizeof(*gp));
        size_t k = 0;
        if (gi && gp)
            for (size_t i = 0; i < n; i++) {
                if (!g->ok[i] || (g->versions[i] && g->versions[i] == g->rows[i].version))
                    continue;
                group_info_fill(&gi[k], &g->rows[i]);
                gp[k] = &gi[k];
                k++;
            }
        CIM__Def__CIMGroupInfoRsp rsp = CIM__DEF__CIMGROUP_INFO_RSP__INIT;
        rsp.user_id = g->uid;
        rsp.result_code = IM_ERR_SUCCESS;
        rsp.n_group_info_list = k;
        rsp.group_info_list = gp;
        logic_reply(r, IM_CMD_GROUP_INFO_RSP, &rsp);
        free(gi);
        free(gp);
    }
    gread_free(g);
}

void logic_group_list(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMGroupListReq *q = cim__def__cimgroup_list_req__unpack(NULL, len, body);
    if (!q || !identity_ok(r, q->user_id, 0)) {
        logic_reply_error(r, q ? IM_ERR_PERMISSION_DENIED : IM_ERR_INVALID_PARAMETER);
        if (q)
            cim__def__cimgroup_list_req__free_unpacked(q, NULL);
        return;
    }
    cim__def__cimgroup_list_req__free_unpacked(q, NULL);
    gread_t *g = calloc(1, sizeof(*g));
    if (!g) {
        logic_reply_error(r, IM_ERR_INTERNAL);
        return;
    }
    g->req = *r;
    g->uid = r->user_id;
    g->job.work = glist_user_work;
    g->job.done = glist_user_done;
    logic_db_submit(im_shard_of(g->uid, IM_SHARD_COUNT), g->uid, &g->job);
}

void logic_group_info(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMGroupInfoReq *q = cim__def__cimgroup_info_req__unpack(NULL, len, body);
    if (!q || !identity_ok(r, q->user_id, 0) || q->n_group_version_list > 500) {
        logic_reply_error(r, q && q->n_group_version_list <= 500 ? IM_ERR_PERMISSION_DENIED
                                                                 : IM_ERR_INVALID_PARAMETER);
        if (q)
            cim__def__cimgroup_info_req__free_unpacked(q, NULL);
        return;
    }
    gread_t *g = calloc(1, sizeof(*g));
    size_t n = q->n_group_version_list;
    if (g) {
        g->gids = calloc(n ? n : 1, sizeof(uint64_t));
        g->versions = calloc(n ? n : 1, sizeof(uint32_t));
    }
    if (!g || !g->gids || !g->versions) {
        if (g)
            gread_free(g);
        logic_reply_error(r, IM_ERR_INTERNAL);
    } else {
        g->req = *r;
        g->uid = r->user_id;
        g->kind = 1;
        for (size_t i = 0; i < n; i++) {
            g->gids[i] = q->group_version_list[i]->group_id;
            g->versions[i] = q->group_version_list[i]->group_version;
        }
        g->n = n;
        gread_fetch_rows(g);
    }
    cim__def__cimgroup_info_req__free_unpacked(q, NULL);
}

/* members: only for members */
static void gmem_work(logic_job_t *job, logic_dbc_t *c)
{
    gread_t *g = (gread_t *) job;
    group_row_t row;
    long r = db_exec(c, "SELECT " GROUP_COLS " FROM im_group WHERE group_id = ?", "U", GROUP_OUT,
                     g->members.gid, GROUP_PTRS(&row));
    if (r >= 0 && r == 1 && row.status == 0)
        r = load_members(c, &g->members);
    else if (r >= 0)
        g->members.nmembers = 0;
    job->rc = r < 0 ? (int) r : DB_OK;
}

static void gmem_done(logic_job_t *job)
{
    gread_t *g = (gread_t *) job;
    const logic_req_t *r = &g->req;
    CIM__Def__CIMGroupMemberListRsp rsp = CIM__DEF__CIMGROUP_MEMBER_LIST_RSP__INIT;
    rsp.user_id = g->uid;
    rsp.group_id = g->members.gid;
    if (job->rc != DB_OK) {
        rsp.result_code = IM_ERR_STORAGE_UNAVAILABLE;
    } else if (!contains(g->members.members, g->members.nmembers, g->uid)) {
        rsp.result_code = g->members.nmembers ? IM_ERR_PERMISSION_DENIED : IM_ERR_NOT_FOUND;
    } else {
        rsp.result_code = IM_ERR_SUCCESS;
        rsp.n_member_id_list = g->members.nmembers;
        rsp.member_id_list = g->members.members;
    }
    logic_reply(r, IM_CMD_GROUP_MEMBER_LIST_RSP, &rsp);
    gread_free(g);
}

void logic_group_members(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMGroupMemberListReq *q =
        cim__def__cimgroup_member_list_req__unpack(NULL, len, body);
    if (!q || !identity_ok(r, q->user_id, 0)) {
        logic_reply_error(r, q ? IM_ERR_PERMISSION_DENIED : IM_ERR_INVALID_PARAMETER);
        if (q)
            cim__def__cimgroup_member_list_req__free_unpacked(q, NULL);
        return;
    }
    gread_t *g = calloc(1, sizeof(*g));
    if (!g) {
        logic_reply_error(r, IM_ERR_INTERNAL);
    } else {
        g->req = *r;
        g->uid = r->user_id;
        g->kind = 2;
        g->members.gid = q->group_id;
        g->job.work = gmem_work;
        g->job.done = gmem_done;
        logic_db_submit(im_shard_of(q->group_id, IM_SHARD_COUNT), q->group_id, &g->job);
    }
    cim__def__cimgroup_member_list_req__free_unpacked(q, NULL);
}

/* ---------------------------------------------------------------- member cache (sending) */

typedef struct gm_s {
    logic_job_t job;
    uint64_t gid;
    gop_t holder; /* members */
    group_row_t row;
    int found;
    void (*cb)(void *ud, int rc, const group_row_t *g, const uint64_t *m, size_t n);
    void *ud;
} gm_t;

static void gm_free(gm_t *x)
{
    free(x->holder.members);
    free(x);
}

static void gm_work(logic_job_t *job, logic_dbc_t *c)
{
    gm_t *x = (gm_t *) job;
    long r = db_exec(c, "SELECT " GROUP_COLS " FROM im_group WHERE group_id = ?", "U", GROUP_OUT,
                     x->gid, GROUP_PTRS(&x->row));
    x->found = r == 1 && x->row.status == 0;
    if (r >= 0 && x->found) {
        x->holder.gid = x->gid;
        r = load_members(c, &x->holder);
    }
    job->rc = r < 0 ? (int) r : DB_OK;
}

static void gm_done(logic_job_t *job)
{
    gm_t *x = (gm_t *) job;
    if (job->rc != DB_OK) {
        x->cb(x->ud, -1, NULL, NULL, 0);
    } else if (!x->found) {
        x->cb(x->ud, 0, NULL, NULL, 0);
    } else {
        /* cache: "G1" status mute owner n ids... */
        size_t n = x->holder.nmembers;
        size_t blen = 2 + 1 + 1 + 8 + 4 + n * 8;
        uint8_t *b = malloc(blen);
        if (b) {
            b[0] = 'G';
            b[1] = '1';
            b[2] = (uint8_t) x->row.status;
            b[3] = (uint8_t) x->row.mute_model;
            memcpy(b + 4, &x->row.owner_id, 8);
            uint32_t n32 = (uint32_t) n;
            memcpy(b + 12, &n32, 4);
            if (n)
                memcpy(b + 16, x->holder.members, n * 8);
            char key[40];
            snprintf(key, sizeof(key), "cim:gm:%llu", (unsigned long long) x->gid);
            im_redis_cmd(g_logic.redis, NULL, NULL, "SET %s %b EX %d", key, b, blen, CACHE_TTL_S);
            free(b);
        }
        x->cb(x->ud, 1, &x->row, x->holder.members, n);
    }
    gm_free(x);
}

static void gm_cache_got(im_redis_t *rd, redisReply *reply, void *ud)
{
    gm_t *x = ud;
    (void) rd;
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len >= 16 && reply->str[0] == 'G' &&
        reply->str[1] == '1') {
        uint32_t n32;
        memcpy(&n32, reply->str + 12, 4);
        if ((size_t) reply->len == 16 + (size_t) n32 * 8) {
            x->row.status = (uint8_t) reply->str[2];
            x->row.mute_model = (uint8_t) reply->str[3];
            memcpy(&x->row.owner_id, reply->str + 4, 8);
            x->row.group_id = x->gid;
            uint64_t *m = malloc((n32 ? n32 : 1) * sizeof(uint64_t));
            if (m) {
                if (n32)
                    memcpy(m, reply->str + 16, (size_t) n32 * 8);
                x->cb(x->ud, 1, &x->row, m, n32);
                free(m);
                gm_free(x);
                return;
            }
        }
    }
    x->job.work = gm_work; /* miss: the shard of the group */
    x->job.done = gm_done;
    logic_db_submit(im_shard_of(x->gid, IM_SHARD_COUNT), x->gid, &x->job);
}

static void members_get(uint64_t gid,
                        void (*cb)(void *ud, int rc, const group_row_t *g, const uint64_t *m,
                                   size_t n),
                        void *ud)
{
    gm_t *x = calloc(1, sizeof(*x));
    if (!x) {
        cb(ud, -1, NULL, NULL, 0);
        return;
    }
    x->gid = gid;
    x->cb = cb;
    x->ud = ud;
    if (im_redis_cmd(g_logic.redis, gm_cache_got, x, "GET cim:gm:%llu", (unsigned long long) gid) !=
        0)
        gm_cache_got(g_logic.redis, NULL, x);
}

/* everyone but the author */
static uint64_t *others(const uint64_t *m, size_t n, uint64_t author, size_t *out)
{
    uint64_t *r = malloc((n ? n : 1) * sizeof(uint64_t));
    size_t k = 0;
    if (!r)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (m[i] != author)
            r[k++] = m[i];
    *out = k;
    return r;
}

static void send_members(void *ud, int rc, const group_row_t *g, const uint64_t *m, size_t n)
{
    logic_msg_t *msg = ud;
    uint64_t author = logic_msg_author(msg);
    if (rc < 0) {
        logic_msg_store_to(msg, NULL, 0, IM_RES_ERROR);
        return;
    }
    if (rc == 0 || !contains(m, n, author) || (g->mute_model == 1 && author != g->owner_id)) {
        logic_msg_store_to(msg, NULL, 0, IM_RES_REFUSED); /* not a member, no such group, muted */
        return;
    }
    size_t k = 0;
    uint64_t *rcpt = others(m, n, author, &k);
    if (!rcpt) {
        logic_msg_store_to(msg, NULL, 0, IM_RES_ERROR);
        return;
    }
    logic_msg_store_to(msg, rcpt, k, IM_RES_ERROR);
}

static void group_send(logic_msg_t *m, const logic_req_t *r)
{
    (void) r;
    members_get(logic_msg_session(m), send_members, m);
}

/* sweeper: recipients of an interrupted group message */
typedef struct sw_s {
    logic_msg_t *m;
    void (*cont)(logic_msg_t *m, uint64_t *rcpt, size_t n);
} sw_t;

static void sweep_members(void *ud, int rc, const group_row_t *g, const uint64_t *mem, size_t n)
{
    sw_t *s = ud;
    (void) g;
    if (rc < 0) {
        s->cont(s->m, NULL, (size_t) -1);
    } else if (rc == 0) {
        s->cont(s->m, NULL, 0); /* the group is gone: nothing left to deliver */
    } else {
        size_t k = 0;
        uint64_t *rcpt = others(mem, n, logic_msg_author(s->m), &k);
        s->cont(s->m, rcpt, rcpt ? k : (size_t) -1);
    }
    free(s);
}

static void group_members_for_sweep(logic_msg_t *m,
                                    void (*cont)(logic_msg_t *m, uint64_t *rcpt, size_t n))
{
    sw_t *s = malloc(sizeof(*s));
    if (!s) {
        cont(m, NULL, (size_t) -1);
        return;
    }
    s->m = m;
    s->cont = cont;
    members_get(logic_msg_session(m), sweep_members, s);
}

/* recall in a group: every member but the author */
typedef struct rc_s {
    uint64_t author;
    void (*cont)(void *ud, uint64_t *rcpt, size_t n);
    void *ud;
} rc_t;

static void recall_members(void *ud, int rc, const group_row_t *g, const uint64_t *mem, size_t n)
{
    rc_t *x = ud;
    (void) g;
    size_t k = 0;
    uint64_t *rcpt = rc == 1 ? others(mem, n, x->author, &k) : NULL;
    x->cont(x->ud, rcpt, rcpt ? k : 0);
    free(x);
}

void logic_read_set_group_rcpt(void (*fn)(uint64_t group_id, uint64_t author,
                                          void (*cont)(void *ud, uint64_t *rcpt, size_t n),
                                          void *ud));

static void group_rcpt(uint64_t gid, uint64_t author,
                       void (*cont)(void *ud, uint64_t *rcpt, size_t n), void *ud)
{
    rc_t *x = malloc(sizeof(*x));
    if (!x) {
        cont(ud, NULL, 0);
        return;
    }
    x->author = author;
    x->cont = cont;
    x->ud = ud;
    members_get(gid, recall_members, x);
}

/* ---------------------------------------------------------------- business API */

void logic_group_api_create(uint64_t owner, const char *name, const uint64_t *ids, size_t n,
                            logic_group_api_cb done, void *ud)
{
    if (!owner || !name_ok(name) || n + 1 > LOGIC_GROUP_MAX_MEMBERS) {
        done(ud, IM_ERR_INVALID_PARAMETER, 0);
        return;
    }
    logic_req_t r;
    memset(&r, 0, sizeof(r));
    r.user_id = owner;
    gop_t *o = gop_new(&r, OP_CREATE, 0);
    int t = o ? take_ids(o, ids, n, 1) : -1;
    if (t != 0) {
        if (o)
            gop_free(o);
        done(ud, t > 0 ? IM_ERR_NOT_FOUND : IM_ERR_INTERNAL, 0);
        return;
    }
    o->api_cb = done;
    o->api_ud = ud;
    snprintf(o->name, sizeof(o->name), "%s", name);
    check_exist(o);
}

void logic_group_api_members(uint64_t gid, int add, const uint64_t *ids, size_t n,
                             logic_group_api_cb done, void *ud)
{
    gop_t *o = gop_new(NULL, add ? OP_API_ADD : OP_API_DEL, gid);
    int t = o ? take_ids(o, ids, n, 0) : -1;
    if (t != 0) {
        if (o)
            gop_free(o);
        done(ud, t > 0 ? IM_ERR_NOT_FOUND : IM_ERR_INTERNAL, gid);
        return;
    }
    o->api_cb = done;
    o->api_ud = ud;
    if (add)
        check_exist(o);
    else
        change_submit(o);
}

void logic_group_api_update(uint64_t gid, const char *name, const char *announcement,
                            int join_model, int mute_model, logic_group_api_cb done, void *ud)
{
    if ((name && !name_ok(name)) || (announcement && strlen(announcement) > 1024)) {
        done(ud, IM_ERR_INVALID_PARAMETER, gid);
        return;
    }
    gop_t *o = gop_new(NULL, OP_UPDATE, gid);
    if (!o) {
        done(ud, IM_ERR_INTERNAL, gid);
        return;
    }
    if (name) {
        o->set_name = 1;
        snprintf(o->name, sizeof(o->name), "%s", name);
    }
    if (announcement) {
        o->set_announcement = 1;
        snprintf(o->announcement, sizeof(o->announcement), "%s", announcement);
    }
    o->join_model = join_model;
    o->mute_model = mute_model;
    o->api_cb = done;
    o->api_ud = ud;
    change_submit(o);
}

typedef struct apim_s {
    void (*cb)(void *ud, int result, uint64_t *ids, size_t n);
    void *ud;
} apim_t;

static void api_members_got(void *ud, int rc, const group_row_t *g, const uint64_t *m, size_t n)
{
    apim_t *a = ud;
    (void) g;
    if (rc < 0) {
        a->cb(a->ud, IM_ERR_STORAGE_UNAVAILABLE, NULL, 0);
    } else if (rc == 0) {
        a->cb(a->ud, IM_ERR_NOT_FOUND, NULL, 0);
    } else {
        uint64_t *ids = malloc((n ? n : 1) * sizeof(uint64_t));
        if (ids && n)
            memcpy(ids, m, n * sizeof(uint64_t));
        a->cb(a->ud, ids ? IM_ERR_SUCCESS : IM_ERR_INTERNAL, ids, ids ? n : 0);
    }
    free(a);
}

void logic_group_api_list_members(uint64_t gid,
                                  void (*cb)(void *ud, int result, uint64_t *ids, size_t n),
                                  void *ud)
{
    apim_t *a = malloc(sizeof(*a));
    if (!a) {
        cb(ud, IM_ERR_INTERNAL, NULL, 0);
        return;
    }
    a->cb = cb;
    a->ud = ud;
    members_get(gid, api_members_got, a);
}

int logic_group_start(logic_t *l)
{
    (void) l;
    logic_msg_set_group_sender(group_send);
    logic_msg_set_group_members(group_members_for_sweep);
    logic_read_set_group_rcpt(group_rcpt);
    return 0;
}
