/* logic_http: the business HTTP API (DESIGN.md "Business HTTP API").
 *
 * libmicrohttpd runs a thread per connection. A request is read and checked there (size, API
 * key), then handed to the loop through a uv_async, and that thread waits for the answer; the
 * loop does the work (MySQL jobs, Redis), stores the JSON answer and signals. (MHD 0.9.75's
 * suspend/resume lost wake-ups when the loop answered before the access handler had returned;
 * a blocked connection thread has no such race.) /healthz and /metrics are answered on the
 * connection's thread directly. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "im_cmd.h"
#include "im_http.h"
#include "im_log.h"
#include "im_shard.h"
#include "logic.h"
#include "logic_group.h"
#include "logic_msg.h"
#include "logic_presence.h"
#include "logic_user.h"
#include "proto/cim.pb-c.h"

enum { HR_RECEIVING, HR_PENDING, HR_DONE };

typedef struct http_req_s {
    struct http_req_s *next;
    struct MHD_Connection *conn;
    char method[8];
    char url[256];
    char *body;
    size_t len, cap;
    int too_large;
    int state;
    unsigned status;
    char *resp;
    uint64_t start_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sync_init;
} http_req_t;

static struct {
    struct MHD_Daemon *d;
    uv_async_t async;
    pthread_mutex_t mu;
    http_req_t *head, *tail;
    int inflight; /* loop-side count of suspended requests */
    uint8_t key_hash[32];
    int stopping;
    int closed; /* set before MHD_stop_daemon: connection threads stop waiting for the loop */
} H;

/* ---------------------------------------------------------------- answers (loop thread) */

static int code_for_status(unsigned st)
{
    switch (st) {
    case 200:
        return 0;
    case 400:
        return IM_ERR_INVALID_PARAMETER;
    case 401:
        return IM_ERR_PERMISSION_DENIED;
    case 404:
        return IM_ERR_NOT_FOUND;
    case 409:
        return IM_ERR_USER_ALREADY_EXIST;
    case 413:
        return IM_ERR_PAYLOAD_TOO_LARGE;
    case 429:
        return IM_ERR_RATE_LIMITED;
    case 503:
        return IM_ERR_STORAGE_UNAVAILABLE;
    default:
        return IM_ERR_INTERNAL;
    }
}

/* Build the answer text: obj (stolen, may be NULL) + error_code + error_msg. */
static char *answer_text(unsigned status, int error_code, const char *msg, json_t *obj)
{
    if (!obj)
        obj = json_object();
    json_object_set_new(obj, "error_code",
                        json_integer(error_code >= 0 ? error_code : code_for_status(status)));
    json_object_set_new(obj, "error_msg", json_string(msg ? msg : status == 200 ? "ok" : "error"));
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return s;
}

/* Finish a suspended request from the loop: MHD's thread sends it. */
static void http_finish(http_req_t *r, unsigned status, int error_code, const char *msg,
                        json_t *obj)
{
    char *text = answer_text(status, error_code, msg, obj);
    H.inflight--;
    im_metric_add(g_logic.m.http_requests, 1);
    if (status >= 400)
        im_metric_add(g_logic.m.http_errors, 1);
    pthread_mutex_lock(&r->mu);
    r->status = status;
    r->resp = text;
    r->state = HR_DONE;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---------------------------------------------------------------- endpoints */

static json_t *token_obj(uint64_t uid, uint32_t ver)
{
    char token[IM_TOKEN_MAX];
    im_token_mint(g_logic.token_key, uid, ver,
                  (uint64_t) time(NULL) + (uint64_t) g_logic.cfg.token_ttl, token);
    json_t *o = json_object();
    json_object_set_new(o, "user_id", json_integer((json_int_t) uid));
    json_object_set_new(o, "token", json_string(token));
    sodium_memzero(token, sizeof(token));
    return o;
}

static void users_created(void *ud, int result, uint64_t uid, uint32_t ver)
{
    http_req_t *r = ud;
    if (result == IM_ERR_SUCCESS) {
        log_info("api: user %llu created", (unsigned long long) uid);
        http_finish(r, 200, 0, "ok", token_obj(uid, ver));
    } else if (result == IM_ERR_USER_ALREADY_EXIST) {
        http_finish(r, 409, IM_ERR_USER_ALREADY_EXIST, "user_id or user_name exists", NULL);
    } else if (result == IM_ERR_STORAGE_UNAVAILABLE) {
        http_finish(r, 503, -1, "storage unavailable, try later", NULL);
    } else {
        http_finish(r, 500, -1, "internal error", NULL);
    }
}

static int json_id(json_t *v, uint64_t *out)
{
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
        json_integer_value(v) >= 9007199254740992LL)
        return -1;
    *out = (uint64_t) json_integer_value(v);
    return 1;
}

static const char *json_str(json_t *o, const char *k, int *bad)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

static void api_users_post(http_req_t *r, json_t *body)
{
    uint64_t uid = 0;
    int bad = 0;
    if (json_id(json_object_get(body, "user_id"), &uid) < 0)
        return http_finish(r, 400, -1, "user_id must be a positive integer below 2^53", NULL);
    const char *name = json_str(body, "user_name", &bad);
    const char *nick = json_str(body, "nick_name", &bad);
    const char *avatar = json_str(body, "avatar_url", &bad);
    const char *pwd = json_str(body, "password", &bad);
    if (bad)
        return http_finish(r, 400, -1, "user_name, nick_name, avatar_url, password: strings", NULL);
    if (name && !logic_user_name_valid(name))
        return http_finish(r, 400, IM_ERR_USER_INVALID_PARAMETER,
                           "user_name: 3-32 characters of [A-Za-z0-9_.-]", NULL);
    if (pwd && !logic_user_pwd_valid(pwd, strlen(pwd)))
        return http_finish(r, 400, IM_ERR_USER_INVALID_PARAMETER, "password: 6-128 bytes", NULL);
    size_t cps = 0;
    if ((nick && (strlen(nick) > 512 || !logic_utf8_valid(nick, &cps) || cps > 128)) ||
        (avatar && strlen(avatar) > 512))
        return http_finish(r, 400, IM_ERR_USER_INVALID_PARAMETER,
                           "nick_name: up to 128 characters; avatar_url <= 512 bytes", NULL);
    logic_user_create(uid, name, nick, avatar, pwd, users_created, r);
}

static void token_user_found(void *ud, int rc, const logic_user_t *u)
{
    http_req_t *r = ud;
    if (rc < 0)
        return http_finish(r, 503, -1, "storage unavailable, try later", NULL);
    if (rc == 0)
        return http_finish(r, 404, IM_ERR_USER_NOT_EXIST, "no such user", NULL);
    http_finish(r, 200, 0, "ok", token_obj(u->user_id, u->token_ver));
}

typedef struct {
    http_req_t *r;
    uint64_t uid;
    uint32_t ver;
} rotate_t;

static void rotate_kicked(void *ud, int kicked)
{
    rotate_t *rt = ud;
    json_t *o = token_obj(rt->uid, rt->ver);
    json_object_set_new(o, "kicked", json_integer(kicked > 0 ? kicked : 0));
    log_info("api: token of user %llu rotated (version %u), %d connection(s) kicked",
             (unsigned long long) rt->uid, rt->ver, kicked > 0 ? kicked : 0);
    http_finish(rt->r, 200, 0, "ok", o);
    free(rt);
}

static void token_bumped(void *ud, int rc, uint32_t ver)
{
    rotate_t *rt = ud;
    if (rc <= 0) {
        http_finish(rt->r, rc < 0 ? 503 : 404, rc < 0 ? -1 : IM_ERR_USER_NOT_EXIST,
                    rc < 0 ? "storage unavailable, try later" : "no such user", NULL);
        free(rt);
        return;
    }
    rt->ver = ver;
    /* older tokens stop working now; connections made with them are closed (reason 2) */
    logic_auth_kick_user(rt->uid, IM_KICK_API, rotate_kicked, rt);
}

/* ---------------------------------------------------------------- push */

#define PUSH_USERS_MAX 100000

typedef struct apush_s {
    http_req_t *r;
    uint64_t from;
    uint32_t msg_type;
    int transient;
    uint8_t *data;
    size_t len;
    uint64_t *uids;
    size_t n, cap;
    size_t pending;
    long online;
    uint32_t page;
} apush_t;

static void apush_free(apush_t *p)
{
    free(p->data);
    free(p->uids);
    free(p);
}

static void apush_stored(void *ud, int rc, uint64_t server_msg_id, uint64_t rows)
{
    apush_t *p = ud;
    (void) server_msg_id;
    if (rc != 0) {
        http_finish(p->r, 503, -1, "storage unavailable, try later", NULL);
    } else {
        json_t *o = json_object();
        json_object_set_new(o, "online", json_integer(p->online));
        json_object_set_new(o, "stored", json_integer((json_int_t) rows));
        http_finish(p->r, 200, 0, "ok", o);
    }
    apush_free(p);
}

static void apush_deliver(apush_t *p)
{
    if (p->transient) {
        /* not stored: pushed to the devices online now, with no seq */
        CIM__Def__CIMMsgData d = CIM__DEF__CIMMSG_DATA__INIT;
        char cmid[40];
        snprintf(cmid, sizeof(cmid), "api:%08x%08x", randombytes_random(), randombytes_random());
        d.from_user_id = p->from;
        d.from_nick_name = (char *) logic_nick_get(p->from);
        d.client_msg_id = cmid;
        d.server_msg_id = g_logic.worker_id >= 0 ? im_idgen_next(&g_logic.idgen, im_now_ms()) : 0;
        d.create_time = (int32_t) time(NULL);
        d.msg_type = (CIM__Def__CIMMsgType) p->msg_type;
        d.session_type = CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_SINGLE;
        d.msg_data.data = p->data;
        d.msg_data.len = p->len;
        for (size_t i = 0; i < p->n; i++) {
            d.to_session_id = p->uids[i];
            size_t len = cim__def__cimmsg_data__get_packed_size(&d);
            uint8_t *buf = malloc(len ? len : 1);
            if (!buf)
                continue;
            cim__def__cimmsg_data__pack(&d, buf);
            logic_push_user(p->uids[i], 0, 0, IM_CMD_MSG_DATA, buf, len);
            free(buf);
        }
        json_t *o = json_object();
        json_object_set_new(o, "online", json_integer(p->online));
        json_object_set_new(o, "stored", json_integer(0));
        http_finish(p->r, 200, 0, "ok", o);
        apush_free(p);
        return;
    }
    if (p->n == 0) {
        apush_stored(p, 0, 0, 0);
        return;
    }
    char cmid[40];
    snprintf(cmid, sizeof(cmid), "api:%08x%08x%08x", randombytes_random(), randombytes_random(),
             randombytes_random());
    logic_msg_post_counted(p->from, p->n == 1 ? p->uids[0] : 0, 1, p->msg_type, cmid, p->data,
                           p->len, p->uids, p->n, 0, 1, apush_stored, p);
}

static void apush_online_one(im_redis_t *rd, redisReply *reply, void *ud)
{
    apush_t *p = ud;
    (void) rd;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        p->online++;
    if (--p->pending == 0)
        apush_deliver(p);
}

static void apush_count_online(apush_t *p)
{
    p->pending = 1;
    for (size_t i = 0; i < p->n; i++) {
        p->pending++;
        if (im_redis_cmd(g_logic.redis, apush_online_one, p, "EXISTS cim:rt:%llu",
                         (unsigned long long) p->uids[i]) != 0)
            p->pending--;
    }
    if (--p->pending == 0)
        apush_deliver(p);
}

/* "all": walk the online set in pages */
static void apush_page(im_redis_t *rd, redisReply *reply, void *ud)
{
    apush_t *p = ud;
    (void) rd;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        http_finish(p->r, 503, -1, "online set unavailable", NULL);
        apush_free(p);
        return;
    }
    for (size_t i = 0; i < reply->elements && p->n < PUSH_USERS_MAX; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING)
            continue;
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 1024;
            uint64_t *nu = realloc(p->uids, cap * sizeof(uint64_t));
            if (!nu)
                break;
            p->uids = nu;
            p->cap = cap;
        }
        p->uids[p->n++] = strtoull(reply->element[i]->str, NULL, 10);
    }
    if (reply->elements == 1000 && p->n < PUSH_USERS_MAX) {
        p->page++;
        if (im_redis_cmd(g_logic.redis, apush_page, p, "ZRANGE cim:online %u %u", p->page * 1000,
                         p->page * 1000 + 999) == 0)
            return;
    }
    p->online = (long) p->n; /* everyone here was online a moment ago */
    apush_deliver(p);
}

static void api_push(http_req_t *r, json_t *body)
{
    apush_t *p = calloc(1, sizeof(*p));
    if (!p)
        return http_finish(r, 500, -1, "out of memory", NULL);
    p->r = r;
    json_t *all = json_object_get(body, "all");
    json_t *to = json_object_get(body, "to_user_ids");
    json_t *from = json_object_get(body, "from_user_id");
    json_t *mt = json_object_get(body, "msg_type");
    json_t *tr = json_object_get(body, "transient");
    const char *text = json_string_value(json_object_get(body, "msg_data"));
    const char *b64 = json_string_value(json_object_get(body, "msg_data_base64"));
    int is_all = all && json_is_true(all);
    const char *err = NULL;
    if ((all && !json_is_boolean(all)) || (tr && !json_is_boolean(tr)))
        err = "all and transient are booleans";
    else if (!is_all && (!to || !json_is_array(to) || json_array_size(to) == 0 ||
                         json_array_size(to) > PUSH_USERS_MAX))
        err = "to_user_ids (a non-empty array of user ids) or \"all\": true";
    else if (from && json_id(from, &p->from) < 0)
        err = "from_user_id must be a user id";
    else if (mt && (!json_is_integer(mt) || json_integer_value(mt) < 0 ||
                    json_integer_value(mt) > 10 || json_integer_value(mt) == 9))
        err = "msg_type must be 0-10 (not 9, NOTIFICATION)";
    else if (!text == !b64)
        err = "exactly one of msg_data, msg_data_base64";
    if (!err) {
        p->transient = tr && json_is_true(tr);
        p->msg_type = mt ? (uint32_t) json_integer_value(mt) : 1;
        size_t cap = text ? strlen(text) : strlen(b64);
        p->data = malloc(cap + 1);
        if (!p->data) {
            err = "out of memory";
        } else if (text) {
            memcpy(p->data, text, cap);
            p->len = cap;
        } else if (sodium_base642bin(p->data, cap + 1, b64, strlen(b64), NULL, &p->len, NULL,
                                     sodium_base64_VARIANT_ORIGINAL) != 0) {
            err = "msg_data_base64 is not base64";
        }
        if (!err && p->len > LOGIC_MSG_DATA_MAX)
            err = "message larger than 16 KiB";
    }
    if (!err && !is_all) {
        p->uids = malloc(json_array_size(to) * sizeof(uint64_t));
        if (!p->uids)
            err = "out of memory";
        for (size_t i = 0; !err && i < json_array_size(to); i++) {
            uint64_t u = 0;
            if (json_id(json_array_get(to, i), &u) <= 0)
                err = "to_user_ids must hold user ids";
            else
                p->uids[p->n++] = u;
        }
    }
    if (err) {
        apush_free(p);
        return http_finish(r, 400, -1, err, NULL);
    }
    if (g_logic.worker_id < 0) {
        apush_free(p);
        return http_finish(r, 503, -1, "message ids unavailable (no worker lease), try later",
                           NULL);
    }
    if (is_all) {
        if (im_redis_cmd(g_logic.redis, apush_page, p, "ZRANGE cim:online 0 999") != 0) {
            apush_free(p);
            http_finish(r, 503, -1, "online set unavailable", NULL);
        }
        return;
    }
    apush_count_online(p);
}

/* ---------------------------------------------------------------- kick, online, count */

typedef struct auser_s {
    http_req_t *r;
    uint64_t uid;
    int what; /* 0 kick, 1 online */
} auser_t;

static void kicked(void *ud, int n)
{
    auser_t *a = ud;
    if (n < 0) {
        http_finish(a->r, 503, -1, "route store unavailable", NULL);
    } else {
        json_t *o = json_object();
        json_object_set_new(o, "kicked", json_integer(n));
        log_info("api: user %llu kicked (%d connection(s))", (unsigned long long) a->uid, n);
        http_finish(a->r, 200, 0, "ok", o);
    }
    free(a);
}

static void online_types(void *ud, int rc, const uint32_t *types, size_t n, long long x,
                         long long y)
{
    auser_t *a = ud;
    (void) x;
    (void) y;
    if (rc < 0) {
        http_finish(a->r, 503, -1, "route store unavailable", NULL);
    } else {
        json_t *o = json_object(), *t = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(t, json_integer(types[i]));
        json_object_set_new(o, "user_id", json_integer((json_int_t) a->uid));
        json_object_set_new(o, "online", json_boolean(n > 0));
        json_object_set_new(o, "client_types", t);
        http_finish(a->r, 200, 0, "ok", o);
    }
    free(a);
}

static void auser_found(void *ud, int rc, const logic_user_t *u)
{
    auser_t *a = ud;
    (void) u;
    if (rc < 0) {
        http_finish(a->r, 503, -1, "storage unavailable, try later", NULL);
        free(a);
    } else if (rc == 0) {
        http_finish(a->r, 404, IM_ERR_USER_NOT_EXIST, "no such user", NULL);
        free(a);
    } else if (a->what == 0) {
        logic_auth_kick_user(a->uid, IM_KICK_API, kicked, a);
    } else {
        logic_presence_user(a->uid, online_types, a);
    }
}

static void count_done(void *ud, int rc, const uint32_t *types, size_t n, long long users,
                       long long conns)
{
    http_req_t *r = ud;
    (void) types;
    (void) n;
    if (rc < 0)
        return http_finish(r, 503, -1, "online set unavailable", NULL);
    json_t *o = json_object();
    json_object_set_new(o, "online_users", json_integer(users));
    json_object_set_new(o, "connections", json_integer(conns));
    http_finish(r, 200, 0, "ok", o);
}

/* ---------------------------------------------------------------- groups */

static unsigned status_of(int code)
{
    switch (code) {
    case IM_ERR_SUCCESS:
        return 200;
    case IM_ERR_NOT_FOUND:
    case IM_ERR_USER_NOT_EXIST:
        return 404;
    case IM_ERR_INVALID_PARAMETER:
    case IM_ERR_PERMISSION_DENIED:
        return 400;
    case IM_ERR_STORAGE_UNAVAILABLE:
        return 503;
    default:
        return 500;
    }
}

static void group_done(void *ud, int result, uint64_t gid)
{
    http_req_t *r = ud;
    json_t *o = NULL;
    if (result == IM_ERR_SUCCESS && gid) {
        o = json_object();
        json_object_set_new(o, "group_id", json_integer((json_int_t) gid));
    }
    http_finish(r, status_of(result), result == IM_ERR_SUCCESS ? 0 : result,
                result == IM_ERR_SUCCESS     ? "ok"
                : result == IM_ERR_NOT_FOUND ? "no such group or user"
                                             : "refused",
                o);
}

static void group_members_done(void *ud, int result, uint64_t *ids, size_t n)
{
    http_req_t *r = ud;
    if (result != IM_ERR_SUCCESS)
        return http_finish(r, status_of(result), result, "no such group", NULL);
    json_t *o = json_object(), *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((json_int_t) ids[i]));
    json_object_set_new(o, "user_ids", a);
    free(ids);
    http_finish(r, 200, 0, "ok", o);
}

/* user ids from a JSON array; NULL + *bad on error */
static uint64_t *id_array(json_t *a, size_t *n, int *bad)
{
    *n = 0;
    if (!a || !json_is_array(a) || json_array_size(a) > LOGIC_GROUP_MAX_MEMBERS) {
        *bad = 1;
        return NULL;
    }
    uint64_t *v = malloc((json_array_size(a) + 1) * sizeof(uint64_t));
    if (!v) {
        *bad = 1;
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        uint64_t u = 0;
        if (json_id(json_array_get(a, i), &u) <= 0) {
            free(v);
            *bad = 1;
            return NULL;
        }
        v[(*n)++] = u;
    }
    return v;
}

static void api_groups(http_req_t *r, json_t *body, uint64_t gid, const char *rest)
{
    int bad = 0;
    size_t n = 0;
    if (!gid) { /* POST /api/v1/groups */
        uint64_t owner = 0;
        const char *name = json_str(body, "group_name", &bad);
        uint64_t *ids = id_array(json_object_get(body, "member_ids"), &n, &bad);
        if (json_id(json_object_get(body, "owner_id"), &owner) <= 0 || !name || bad) {
            free(ids);
            return http_finish(r, 400, -1, "owner_id, group_name, member_ids expected", NULL);
        }
        logic_group_api_create(owner, name, ids, n, group_done, r);
        free(ids);
        return;
    }
    if (!*rest) { /* PATCH /api/v1/groups/{gid} */
        const char *name = json_str(body, "group_name", &bad);
        const char *ann = json_str(body, "announcement", &bad);
        json_t *jm = json_object_get(body, "join_model"), *mm = json_object_get(body, "mute_model");
        if (bad ||
            (jm &&
             (!json_is_integer(jm) || json_integer_value(jm) < 0 || json_integer_value(jm) > 2)) ||
            (mm &&
             (!json_is_integer(mm) || json_integer_value(mm) < 0 || json_integer_value(mm) > 1)))
            return http_finish(r, 400, -1,
                               "group_name, announcement: strings; join_model 0-2; "
                               "mute_model 0-1",
                               NULL);
        logic_group_api_update(gid, name, ann, jm ? (int) json_integer_value(jm) : -1,
                               mm ? (int) json_integer_value(mm) : -1, group_done, r);
        return;
    }
    if (strcmp(r->method, "GET") == 0) {
        logic_group_api_list_members(gid, group_members_done, r);
        return;
    }
    uint64_t *ids = id_array(body ? json_object_get(body, "user_ids") : NULL, &n, &bad);
    if (bad || n == 0) {
        free(ids);
        return http_finish(r, 400, -1, "user_ids expected", NULL);
    }
    logic_group_api_members(gid, strcmp(r->method, "POST") == 0, ids, n, group_done, r);
    free(ids);
}

/* "/api/v1/users/123/token" -> 123 with rest "token" */
static int parse_uid_path(const char *url, const char *prefix, uint64_t *uid, const char **rest)
{
    size_t pl = strlen(prefix);
    if (strncmp(url, prefix, pl) != 0)
        return 0;
    const char *p = url + pl;
    uint64_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > 900719925474099ULL)
            return 0;
        v = v * 10 + (uint64_t) (*p - '0');
        p++;
        digits++;
    }
    if (!digits || !v || (*p && *p != '/'))
        return 0;
    *uid = v;
    *rest = *p ? p + 1 : p;
    return 1;
}

static void route(http_req_t *r)
{
    int is_get = strcmp(r->method, "GET") == 0, is_post = strcmp(r->method, "POST") == 0;
    int is_patch = strcmp(r->method, "PATCH") == 0, is_del = strcmp(r->method, "DELETE") == 0;
    json_t *body = NULL;
    if ((is_post || is_patch || is_del) && r->len) {
        json_error_t err;
        body = json_loadb(r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &err);
        if (!body || !json_is_object(body)) {
            json_decref(body);
            return http_finish(r, 400, -1, "malformed JSON (an object is expected)", NULL);
        }
    }
    uint64_t uid = 0;
    const char *rest = NULL;
    if (strcmp(r->url, "/api/v1/users") == 0 && is_post) {
        if (!body)
            http_finish(r, 400, -1, "JSON body expected", NULL);
        else
            api_users_post(r, body);
    } else if (parse_uid_path(r->url, "/api/v1/users/", &uid, &rest) &&
               strcmp(rest, "token") == 0 && (is_get || is_post)) {
        if (is_get) {
            logic_user_get(uid, NULL, token_user_found, r);
        } else {
            rotate_t *rt = calloc(1, sizeof(*rt));
            if (!rt) {
                http_finish(r, 500, -1, "out of memory", NULL);
            } else {
                rt->r = r;
                rt->uid = uid;
                logic_user_bump_token(uid, token_bumped, rt);
            }
        }
    } else if (parse_uid_path(r->url, "/api/v1/users/", &uid, &rest) &&
               ((strcmp(rest, "kick") == 0 && is_post) ||
                (strcmp(rest, "online") == 0 && is_get))) {
        auser_t *a = calloc(1, sizeof(*a));
        if (!a) {
            http_finish(r, 500, -1, "out of memory", NULL);
        } else {
            a->r = r;
            a->uid = uid;
            a->what = is_get;
            logic_user_get(uid, NULL, auser_found, a);
        }
    } else if (strcmp(r->url, "/api/v1/online/count") == 0 && is_get) {
        logic_presence_count(count_done, r);
    } else if (strcmp(r->url, "/api/v1/push") == 0 && is_post) {
        if (!body)
            http_finish(r, 400, -1, "JSON body expected", NULL);
        else
            api_push(r, body);
    } else if (strcmp(r->url, "/api/v1/groups") == 0 && is_post) {
        if (!body)
            http_finish(r, 400, -1, "JSON body expected", NULL);
        else
            api_groups(r, body, 0, "");
    } else if (parse_uid_path(r->url, "/api/v1/groups/", &uid, &rest) &&
               ((!*rest && is_patch && body) ||
                (strcmp(rest, "members") == 0 && (is_get || is_post || is_del)))) {
        api_groups(r, body, uid, rest);
    } else {
        http_finish(r, 404, IM_ERR_NOT_FOUND, "no such endpoint", NULL);
    }
    json_decref(body);
}

static void on_async(uv_async_t *a)
{
    (void) a;
    pthread_mutex_lock(&H.mu);
    http_req_t *r = H.head;
    H.head = H.tail = NULL;
    pthread_mutex_unlock(&H.mu);
    while (r) {
        http_req_t *next = r->next;
        H.inflight++;
        if (H.stopping)
            http_finish(r, 503, -1, "shutting down", NULL);
        else
            route(r);
        r = next;
    }
}

/* ---------------------------------------------------------------- MHD thread */

static int key_ok(struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0)
        return 0;
    uint8_t got[32];
    crypto_generichash(got, sizeof(got), (const uint8_t *) h + 7, strlen(h + 7), NULL, 0);
    return sodium_memcmp(got, H.key_hash, sizeof(got)) == 0;
}

/* one token bucket for the key (MHD runs a thread per connection: under a mutex) */
static int rate_ok(void)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static double tokens = -1;
    static uint64_t last;
    double rate = (double) g_logic.cfg.api_rate, burst = (double) g_logic.cfg.api_burst;
    if (rate <= 0)
        return 1;
    pthread_mutex_lock(&mu);
    uint64_t now = im_mono_us();
    if (tokens < 0)
        tokens = burst;
    else
        tokens += (double) (now - last) / 1e6 * rate;
    last = now;
    if (tokens > burst)
        tokens = burst;
    int ok = tokens >= 1;
    if (ok)
        tokens -= 1;
    pthread_mutex_unlock(&mu);
    return ok;
}

static im_mhd_result direct(http_req_t *r, unsigned status, const char *msg)
{
    char *s = answer_text(status, -1, msg, NULL);
    r->status = status;
    im_metric_add(g_logic.m.http_requests, 1);
    if (status >= 400)
        im_metric_add(g_logic.m.http_errors, 1);
    im_mhd_result ret = im_http_reply(r->conn, status, "application/json", s, strlen(s));
    free(s);
    return ret;
}

static im_mhd_result access_cb(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void) cls;
    (void) version;
    http_req_t *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        r->conn = c;
        snprintf(r->method, sizeof(r->method), "%s", method);
        snprintf(r->url, sizeof(r->url), "%s", url);
        r->start_ms = im_mono_ms();
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_large || r->len + n > (size_t) g_logic.cfg.max_body) {
            r->too_large = 1;
            return MHD_YES; /* read and drop the rest, then answer 413 */
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 1024;
            while (cap < r->len + n + 1)
                cap *= 2;
            char *nb = realloc(r->body, cap);
            if (!nb)
                return MHD_NO;
            r->body = nb;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload, n);
        r->len += n;
        return MHD_YES;
    }
    if (strcmp(url, "/healthz") == 0) {
        char body[256];
        int ok = im_redis_connected(g_logic.redis) && g_logic.worker_id >= 0;
        for (unsigned i = 0; i < logic_db_shards(); i++)
            ok &= logic_db_shard_ok(i);
        int n =
            snprintf(body, sizeof(body), "{\"status\":\"%s\",\"redis\":%s,\"mysql\":[",
                     ok ? "ok" : "degraded", im_redis_connected(g_logic.redis) ? "true" : "false");
        for (unsigned i = 0; i < logic_db_shards(); i++) {
            int sok = logic_db_shard_ok(i);
            n += snprintf(body + n, sizeof(body) - (size_t) n, "%s%s", i ? "," : "",
                          sok ? "true" : "false");
        }
        n += snprintf(body + n, sizeof(body) - (size_t) n, "],\"worker_id\":%d}\n",
                      g_logic.worker_id);
        r->status = ok ? 200 : 503;
        return im_http_reply(c, r->status, "application/json", body, (size_t) n);
    }
    if (strcmp(url, "/metrics") == 0) {
        r->status = 200;
        return im_http_metrics(c);
    }
    if (!key_ok(c))
        return direct(r, 401, "missing or wrong API key");
    if (!rate_ok())
        return direct(r, 429, "over the API request rate, try later");
    if (r->too_large)
        return direct(r, 413, "body over the limit");
    /* hand it to the loop and wait for the answer (this is the connection's own thread) */
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->sync_init = 1;
    r->state = HR_PENDING;
    pthread_mutex_lock(&H.mu);
    if (H.tail)
        H.tail->next = r;
    else
        H.head = r;
    H.tail = r;
    pthread_mutex_unlock(&H.mu);
    uv_async_send(&H.async);
    pthread_mutex_lock(&r->mu);
    while (r->state != HR_DONE && !__atomic_load_n(&H.closed, __ATOMIC_ACQUIRE)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    int done = r->state == HR_DONE;
    pthread_mutex_unlock(&r->mu);
    if (!done) /* the loop is gone: shutting down */
        return im_http_reply(c, 503, "application/json",
                             "{\"error_code\":3006,\"error_msg\":\"shutting down\"}", 47);
    return im_http_reply(c, r->status, "application/json", r->resp, strlen(r->resp));
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void) cls;
    (void) c;
    (void) toe;
    http_req_t *r = *con_cls;
    if (!r)
        return;
    if (strcmp(r->url, "/healthz") != 0 && strcmp(r->url, "/metrics") != 0)
        log_info("http %s %s -> %u (%llu ms)", r->method, r->url, r->status,
                 (unsigned long long) (im_mono_ms() - r->start_ms));
    if (r->sync_init) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
    }
    free(r->body);
    free(r->resp);
    free(r);
    *con_cls = NULL;
}

int logic_http_start(logic_t *l)
{
    if (!l->cfg.logic_http_port)
        return 0;
    crypto_generichash(H.key_hash, sizeof(H.key_hash), (const uint8_t *) l->api_key,
                       strlen(l->api_key), NULL, 0);
    pthread_mutex_init(&H.mu, NULL);
    uv_async_init(l->loop, &H.async, on_async);
    H.d = im_http_start(l->cfg.logic_http_host, (int) l->cfg.logic_http_port, access_cb, l,
                        completed_cb, 1 /* a thread per connection */);
    if (!H.d)
        return -1;
    log_info("HTTP API on %s:%lld", l->cfg.logic_http_host, l->cfg.logic_http_port);
    return 0;
}

int logic_http_busy(void)
{
    return H.inflight;
}

void logic_http_stop(void)
{
    if (!H.d)
        return;
    H.stopping = 1;
    on_async(&H.async); /* answer what is queued */
    MHD_quiesce_daemon(H.d);
}

void logic_http_close(void)
{
    if (!H.d)
        return;
    __atomic_store_n(&H.closed, 1, __ATOMIC_RELEASE);
    MHD_stop_daemon(H.d);
    H.d = NULL;
    uv_close((uv_handle_t *) &H.async, NULL);
}
