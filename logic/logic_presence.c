/* logic_presence: routes, the online set and presence (PROTOCOL.md 0x0603-0x0605).
 *
 * Redis keys (all rebuildable):
 *   cim:rt:{uid}     hash  client type -> "GATEID:CONNID" (one connection per user and type)
 *   cim:online       zset  online users, score = user id (stable paging)
 *   cim:gr:{gateid}  set   "UID:TYPE" routed through that gate (cleanup when the gate dies)
 *   cim:conns        int   authenticated connections
 *   cim:psub         set   "GATEID:CONNID" subscribed to presence
 * Route changes are Lua scripts, so the online transition (first device in, last device out)
 * is decided atomically whichever logic handles the connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "im_cmd.h"
#include "im_log.h"
#include "logic.h"
#include "logic_msg.h"
#include "logic_presence.h"
#include "logic_user.h"
#include "proto/cim.pb-c.h"
#include "proto/internal.pb-c.h"

#define PSUB_MAX 1000

/* KEYS: rt, online, gr(new gate); ARGV: type, route, uid, new gate id. Returns {old, came} */
static const char *SET_LUA =
    "local old = redis.call('HGET', KEYS[1], ARGV[1]) "
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) "
    "redis.call('SADD', KEYS[3], ARGV[3] .. ':' .. ARGV[1]) "
    "if old then "
    "  local og = string.match(old, '^(%d+):') "
    "  if og and og ~= ARGV[4] then redis.call('SREM', 'cim:gr:' .. og, ARGV[3] .. ':' .. ARGV[1]) "
    "end "
    "else redis.call('INCR', 'cim:conns') end "
    "local came = redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[3]) "
    "return {old or '', came}";

/* only if missing (a gate re-announcing its connections after Redis lost them) */
static const char *SETNX_LUA =
    "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {'', 0} end "
    "redis.call('SADD', KEYS[3], ARGV[3] .. ':' .. ARGV[1]) "
    "redis.call('INCR', 'cim:conns') "
    "local came = redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[3]) "
    "return {'', came}";

/* KEYS: rt, online, gr; ARGV: type, route (exact) or prefix "GATEID:" (ARGV[4] = 1), uid.
 * Returns 0 not ours, 1 removed, 2 removed and the user went offline */
static const char *DEL_LUA =
    "local v = redis.call('HGET', KEYS[1], ARGV[1]) "
    "if not v then return 0 end "
    "if ARGV[4] == '1' then if string.sub(v, 1, #ARGV[2]) ~= ARGV[2] then return 0 end "
    "elseif v ~= ARGV[2] then return 0 end "
    "redis.call('HDEL', KEYS[1], ARGV[1]) "
    "redis.call('SREM', KEYS[3], ARGV[3] .. ':' .. ARGV[1]) "
    "redis.call('DECR', 'cim:conns') "
    "if redis.call('HLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[3]) return 2 end "
    "return 1";

/* ---------------------------------------------------------------- presence notifications */

typedef struct pres_s {
    uint64_t uid;
    uint32_t ct;
    int online;
} pres_t;

static void psub_got(im_redis_t *r, redisReply *reply, void *ud)
{
    pres_t *p = ud;
    (void) r;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements) {
        CIM__Def__CIMPresenceNotify n = CIM__DEF__CIMPRESENCE_NOTIFY__INIT;
        uint8_t buf[32];
        n.user_id = p->uid;
        n.online = p->online;
        n.client_type = (CIM__Def__CIMClientType) p->ct;
        size_t len = cim__def__cimpresence_notify__pack(&n, buf);
        for (size_t i = 0; i < reply->elements; i++) {
            unsigned long long g = 0, c = 0;
            if (reply->element[i]->type == REDIS_REPLY_STRING &&
                sscanf(reply->element[i]->str, "%llu:%llu", &g, &c) == 2)
                logic_down(g, CIM__INTERNAL__DOWNSTREAM__KIND__PACKET, c, 0, 0,
                           IM_CMD_PRESENCE_NOTIFY, 0, buf, len);
        }
    }
    free(p);
}

static void presence_changed(uint64_t uid, uint32_t ct, int online)
{
    pres_t *p = malloc(sizeof(*p));
    if (!p)
        return;
    p->uid = uid;
    p->ct = ct;
    p->online = online;
    log_debug("user %llu %s", (unsigned long long) uid, online ? "online" : "offline");
    if (im_redis_cmd(g_logic.redis, psub_got, p, "SMEMBERS cim:psub") != 0)
        free(p);
}

/* ---------------------------------------------------------------- routes */

typedef struct rset_s {
    uint64_t uid;
    uint32_t ct;
    logic_route_cb cb;
    void *ud;
} rset_t;

static void rset_done(im_redis_t *r, redisReply *reply, void *ud)
{
    rset_t *s = ud;
    (void) r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        im_metric_add(g_logic.m.redis_errors, 1);
        if (s->cb)
            s->cb(s->ud, -1, 0, 0);
        free(s);
        return;
    }
    unsigned long long og = 0, oc = 0;
    const redisReply *old = reply->element[0], *came = reply->element[1];
    if (old->type == REDIS_REPLY_STRING && old->len)
        sscanf(old->str, "%llu:%llu", &og, &oc);
    if (came->type == REDIS_REPLY_INTEGER && came->integer == 1)
        presence_changed(s->uid, s->ct, 1);
    if (s->cb)
        s->cb(s->ud, 0, og, oc);
    free(s);
}

static int route_eval(const char *script, uint64_t uid, uint32_t ct, uint64_t gid, uint64_t cid,
                      const char *extra, im_redis_cb cb, void *ud)
{
    char rt[40], gr[40], type[8], route[64], u[24], g[24];
    snprintf(rt, sizeof(rt), "cim:rt:%llu", (unsigned long long) uid);
    snprintf(gr, sizeof(gr), "cim:gr:%llu", (unsigned long long) gid);
    snprintf(type, sizeof(type), "%u", ct);
    if (cid)
        snprintf(route, sizeof(route), "%llu:%llu", (unsigned long long) gid,
                 (unsigned long long) cid);
    else
        snprintf(route, sizeof(route), "%llu:", (unsigned long long) gid);
    snprintf(u, sizeof(u), "%llu", (unsigned long long) uid);
    snprintf(g, sizeof(g), "%llu", (unsigned long long) gid);
    return im_redis_cmd(g_logic.redis, cb, ud, "EVAL %s 3 %s cim:online %s %s %s %s %s", script, rt,
                        gr, type, route, u, extra ? extra : g);
}

void logic_route_set(uint64_t uid, uint32_t ct, uint64_t gid, uint64_t cid, int only_if_missing,
                     logic_route_cb cb, void *ud)
{
    rset_t *s = malloc(sizeof(*s));
    if (!s) {
        if (cb)
            cb(ud, -1, 0, 0);
        return;
    }
    s->uid = uid;
    s->ct = ct;
    s->cb = cb;
    s->ud = ud;
    if (route_eval(only_if_missing ? SETNX_LUA : SET_LUA, uid, ct, gid, cid, NULL, rset_done, s) !=
        0)
        rset_done(g_logic.redis, NULL, s);
}

typedef struct rdel_s {
    uint64_t uid;
    uint32_t ct;
} rdel_t;

static void rdel_done(im_redis_t *r, redisReply *reply, void *ud)
{
    rdel_t *d = ud;
    (void) r;
    if (!reply)
        im_metric_add(g_logic.m.redis_errors, 1);
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 2)
        presence_changed(d->uid, d->ct, 0);
    free(d);
}

void logic_route_del(uint64_t uid, uint32_t ct, uint64_t gid, uint64_t cid)
{
    rdel_t *d = malloc(sizeof(*d));
    if (!d)
        return;
    d->uid = uid;
    d->ct = ct;
    if (route_eval(DEL_LUA, uid, ct, gid, cid, "0", rdel_done, d) != 0) {
        im_metric_add(g_logic.m.redis_errors, 1);
        free(d);
    }
}

void logic_presence_conn_closed(uint64_t gid, uint64_t cid)
{
    im_redis_cmd(g_logic.redis, NULL, NULL, "SREM cim:psub %llu:%llu", (unsigned long long) gid,
                 (unsigned long long) cid);
}

/* ---------------------------------------------------------------- a dead gate's routes */

typedef struct gclean_s {
    uint64_t gid;
} gclean_t;

static void gclean_members(im_redis_t *r, redisReply *reply, void *ud)
{
    gclean_t *g = ud;
    (void) r;
    int n = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            unsigned long long uid = 0;
            unsigned ct = 0;
            if (reply->element[i]->type != REDIS_REPLY_STRING ||
                sscanf(reply->element[i]->str, "%llu:%u", &uid, &ct) != 2)
                continue;
            rdel_t *d = malloc(sizeof(*d));
            if (!d)
                continue;
            d->uid = uid;
            d->ct = ct;
            if (route_eval(DEL_LUA, uid, ct, g->gid, 0, "1", rdel_done, d) != 0)
                free(d);
            n++;
        }
        im_redis_cmd(g_logic.redis, NULL, NULL, "DEL cim:gr:%llu", (unsigned long long) g->gid);
    }
    if (n)
        log_info("gate %llu is gone: %d route(s) removed", (unsigned long long) g->gid, n);
    free(g);
}

static void gclean_claimed(im_redis_t *r, redisReply *reply, void *ud)
{
    gclean_t *g = ud;
    (void) r;
    /* one logic cleans (SET NX); the others see nil */
    if (reply && reply->type == REDIS_REPLY_STATUS) {
        /* if the gate was only slow, losing its marker makes it announce its connections again */
        im_redis_cmd(g_logic.redis, NULL, NULL, "DEL cim:gmark:%llu", (unsigned long long) g->gid);
        if (im_redis_cmd(g_logic.redis, gclean_members, g, "SMEMBERS cim:gr:%llu",
                         (unsigned long long) g->gid) == 0)
            return;
    }
    free(g);
}

void logic_presence_gate_gone(uint64_t gid)
{
    gclean_t *g = malloc(sizeof(*g));
    if (!g)
        return;
    g->gid = gid;
    if (im_redis_cmd(g_logic.redis, gclean_claimed, g, "SET cim:gclean:%llu 1 NX EX 120",
                     (unsigned long long) gid) != 0)
        free(g);
}

/* ---------------------------------------------------------------- 0x0603 */

typedef struct ol_s {
    logic_req_t req;
    uint32_t offset, limit;
    long long total;
    uint64_t *uids;
    size_t n;
} ol_t;

static void ol_answer(void *ud, int rc, char **nicks)
{
    ol_t *o = ud;
    size_t n = o->n;
    CIM__Def__CIMUserInfo *ui = calloc(n ? n : 1, sizeof(*ui));
    CIM__Def__CIMUserInfo **up = calloc(n ? n : 1, sizeof(*up));
    if (ui && up)
        for (size_t i = 0; i < n; i++) {
            cim__def__cimuser_info__init(&ui[i]);
            ui[i].user_id = o->uids[i];
            /* names from MySQL; the local cache when the shard did not answer */
            ui[i].nick_name =
                rc == 0 && nicks && nicks[i] ? nicks[i] : (char *) logic_nick_get(o->uids[i]);
            up[i] = &ui[i];
        }
    CIM__Def__CIMOnlineUserListRsp rsp = CIM__DEF__CIMONLINE_USER_LIST_RSP__INIT;
    rsp.user_id = o->req.user_id;
    rsp.total_online = (uint32_t) o->total;
    rsp.n_user_list = ui && up ? n : 0;
    rsp.user_list = up;
    rsp.next_offset =
        (uint64_t) o->offset + n < (uint64_t) o->total && n ? o->offset + (uint32_t) n : 0;
    rsp.result_code = IM_ERR_SUCCESS;
    logic_reply(&o->req, IM_CMD_ONLINE_LIST_RSP, &rsp);
    free(ui);
    free(up);
    free(o->uids);
    free(o);
}

static void ol_page(im_redis_t *r, redisReply *reply, void *ud)
{
    ol_t *o = ud;
    (void) r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        logic_reply_error(&o->req, IM_ERR_STORAGE_UNAVAILABLE);
        free(o);
        return;
    }
    o->uids = calloc(reply->elements ? reply->elements : 1, sizeof(uint64_t));
    if (!o->uids) {
        logic_reply_error(&o->req, IM_ERR_INTERNAL);
        free(o);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++)
        if (reply->element[i]->type == REDIS_REPLY_STRING)
            o->uids[o->n++] = strtoull(reply->element[i]->str, NULL, 10);
    logic_user_nicks(o->uids, o->n, ol_answer, o);
}

static void ol_count(im_redis_t *r, redisReply *reply, void *ud)
{
    ol_t *o = ud;
    (void) r;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        logic_reply_error(&o->req, IM_ERR_STORAGE_UNAVAILABLE);
        free(o);
        return;
    }
    o->total = reply->integer;
    if (im_redis_cmd(g_logic.redis, ol_page, o, "ZRANGE cim:online %u %u", o->offset,
                     o->offset + o->limit - 1) != 0)
        ol_page(g_logic.redis, NULL, o);
}

typedef struct sub_s {
    ol_t *o;
} sub_t;

static void sub_card(im_redis_t *r, redisReply *reply, void *ud)
{
    ol_t *o = ud;
    (void) r;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer < PSUB_MAX)
        im_redis_cmd(g_logic.redis, NULL, NULL, "SADD cim:psub %llu:%llu",
                     (unsigned long long) o->req.gate_id, (unsigned long long) o->req.conn_id);
    else if (reply)
        log_warn("presence subscribers at the cap (%d): conn %llu not subscribed", PSUB_MAX,
                 (unsigned long long) o->req.conn_id);
    if (im_redis_cmd(g_logic.redis, ol_count, o, "ZCARD cim:online") != 0)
        ol_count(g_logic.redis, NULL, o);
}

void logic_presence_online_list(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMOnlineUserListReq *q = cim__def__cimonline_user_list_req__unpack(NULL, len, body);
    if (!q) {
        logic_reply_error(r, IM_ERR_INVALID_PARAMETER);
        return;
    }
    if (q->user_id && q->user_id != r->user_id) {
        logic_reply_error(r, IM_ERR_PERMISSION_DENIED);
        cim__def__cimonline_user_list_req__free_unpacked(q, NULL);
        return;
    }
    ol_t *o = calloc(1, sizeof(*o));
    if (!o) {
        logic_reply_error(r, IM_ERR_INTERNAL);
        cim__def__cimonline_user_list_req__free_unpacked(q, NULL);
        return;
    }
    o->req = *r;
    o->offset = q->offset;
    o->limit = q->limit == 0 ? 50 : q->limit > 200 ? 200 : q->limit;
    uint32_t sub = q->subscribe;
    cim__def__cimonline_user_list_req__free_unpacked(q, NULL);
    if (sub == 2)
        logic_presence_conn_closed(r->gate_id, r->conn_id);
    int rc = sub == 1 ? im_redis_cmd(g_logic.redis, sub_card, o, "SCARD cim:psub")
                      : im_redis_cmd(g_logic.redis, ol_count, o, "ZCARD cim:online");
    if (rc != 0)
        ol_count(g_logic.redis, NULL, o);
}

/* ---------------------------------------------------------------- business API */

typedef struct q_s {
    void (*cb)(void *ud, int rc, const uint32_t *types, size_t n, long long a, long long b);
    void *ud;
    long long a;
} q_t;

static void user_types(im_redis_t *r, redisReply *reply, void *ud)
{
    q_t *q = ud;
    (void) r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        q->cb(q->ud, -1, NULL, 0, 0, 0);
    } else {
        uint32_t types[16];
        size_t n = 0;
        for (size_t i = 0; i < reply->elements && n < 16; i++)
            if (reply->element[i]->type == REDIS_REPLY_STRING)
                types[n++] = (uint32_t) strtoul(reply->element[i]->str, NULL, 10);
        q->cb(q->ud, 0, types, n, 0, 0);
    }
    free(q);
}

void logic_presence_user(uint64_t uid,
                         void (*cb)(void *ud, int rc, const uint32_t *types, size_t n, long long a,
                                    long long b),
                         void *ud)
{
    q_t *q = malloc(sizeof(*q));
    if (!q) {
        cb(ud, -1, NULL, 0, 0, 0);
        return;
    }
    q->cb = cb;
    q->ud = ud;
    if (im_redis_cmd(g_logic.redis, user_types, q, "HKEYS cim:rt:%llu", (unsigned long long) uid) !=
        0)
        user_types(g_logic.redis, NULL, q);
}

static void count_conns(im_redis_t *r, redisReply *reply, void *ud)
{
    q_t *q = ud;
    (void) r;
    long long conns = 0;
    if (reply && reply->type == REDIS_REPLY_STRING)
        conns = strtoll(reply->str, NULL, 10);
    if (!reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL))
        q->cb(q->ud, -1, NULL, 0, 0, 0);
    else
        q->cb(q->ud, 0, NULL, 0, q->a, conns < 0 ? 0 : conns);
    free(q);
}

static void count_users(im_redis_t *r, redisReply *reply, void *ud)
{
    q_t *q = ud;
    (void) r;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        q->cb(q->ud, -1, NULL, 0, 0, 0);
        free(q);
        return;
    }
    q->a = reply->integer;
    if (im_redis_cmd(g_logic.redis, count_conns, q, "GET cim:conns") != 0)
        count_conns(g_logic.redis, NULL, q);
}

void logic_presence_count(void (*cb)(void *ud, int rc, const uint32_t *types, size_t n,
                                     long long users, long long conns),
                          void *ud)
{
    q_t *q = calloc(1, sizeof(*q));
    if (!q) {
        cb(ud, -1, NULL, 0, 0, 0);
        return;
    }
    q->cb = cb;
    q->ud = ud;
    if (im_redis_cmd(g_logic.redis, count_users, q, "ZCARD cim:online") != 0)
        count_users(g_logic.redis, NULL, q);
}
