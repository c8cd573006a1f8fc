/* logic_auth: register, password and token login, logout, connection close, kicks, routes.
 *
 * Routes: Redis hash cim:rt:{uid}, field = client type, value = "GATEID:CONNID". Setting a
 * route returns the previous one atomically (Lua), and that connection is kicked (0x010B,
 * reason 1) through whichever gate holds it: one connection per (user, client type) across
 * all gates. A route is removed only while it still names the closing connection. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "im_cmd.h"
#include "im_log.h"
#include "im_shard.h"
#include "logic.h"
#include "logic_msg.h"
#include "logic_presence.h"
#include "logic_user.h"
#include "proto/cim.pb-c.h"
#include "proto/internal.pb-c.h"

/* ---------------------------------------------------------------- password hashing */

typedef struct pwhash_s {
    uv_work_t w;
    char *pwd;
    char *hash; /* sodium_malloc'd, NULL on failure */
    int verify;
    const char *stored;
    int ok;
    void (*cb)(void *ud, char *hash);
    void (*vcb)(void *ud, int ok);
    void *ud;
} pwhash_t;

static void pw_limits(unsigned long long *ops, size_t *mem)
{
    switch (g_logic.cfg.pwhash_level) {
    case 0:
        *ops = crypto_pwhash_OPSLIMIT_MIN;
        *mem = crypto_pwhash_MEMLIMIT_MIN;
        break;
    case 2:
        *ops = crypto_pwhash_OPSLIMIT_MODERATE;
        *mem = crypto_pwhash_MEMLIMIT_MODERATE;
        break;
    default:
        *ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
        *mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    }
}

static void pw_work(uv_work_t *w)
{
    pwhash_t *p = w->data;
    if (p->verify) {
        p->ok = crypto_pwhash_str_verify(p->stored, p->pwd, strlen(p->pwd)) == 0;
        return;
    }
    unsigned long long ops;
    size_t mem;
    pw_limits(&ops, &mem);
    p->hash = sodium_malloc(crypto_pwhash_STRBYTES);
    if (p->hash && crypto_pwhash_str_alg(p->hash, p->pwd, strlen(p->pwd), ops, mem,
                                         crypto_pwhash_ALG_ARGON2ID13) != 0) {
        sodium_free(p->hash);
        p->hash = NULL;
    }
}

static void pw_done(uv_work_t *w, int status)
{
    pwhash_t *p = w->data;
    (void) status;
    sodium_memzero(p->pwd, strlen(p->pwd));
    free(p->pwd);
    if (p->verify)
        p->vcb(p->ud, p->ok);
    else
        p->cb(p->ud, p->hash);
    free(p);
}

void logic_pwhash(const char *pwd, void (*cb)(void *ud, char *hash), void *ud)
{
    pwhash_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->pwd = strdup(pwd))) {
        free(p);
        cb(ud, NULL);
        return;
    }
    p->w.data = p;
    p->cb = cb;
    p->ud = ud;
    uv_queue_work(g_logic.loop, &p->w, pw_work, pw_done);
}

/* stored must stay valid until vcb runs */
static void pwverify(const char *pwd, const char *stored, void (*vcb)(void *ud, int ok), void *ud)
{
    pwhash_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->pwd = strdup(pwd))) {
        free(p);
        vcb(ud, 0);
        return;
    }
    p->w.data = p;
    p->verify = 1;
    p->stored = stored;
    p->vcb = vcb;
    p->ud = ud;
    uv_queue_work(g_logic.loop, &p->w, pw_work, pw_done);
}

/* ---------------------------------------------------------------- replies */

static void reply_register(const logic_req_t *r, uint32_t code, const char *msg, uint64_t uid,
                           const char *nick)
{
    CIM__Def__CIMRegisterRsp rsp = CIM__DEF__CIMREGISTER_RSP__INIT;
    CIM__Def__CIMUserInfo ui = CIM__DEF__CIMUSER_INFO__INIT;
    rsp.result_code = (CIM__Def__CIMErrorCode) code;
    rsp.result_string = (char *) msg;
    if (uid) {
        ui.user_id = uid;
        ui.nick_name = (char *) nick;
        rsp.user_info = &ui;
    }
    logic_reply(r, IM_CMD_REGISTER_RSP, &rsp);
}

/* Auth failure: a plain packet; the gate sees an auth response and lets the client retry. */
static void reply_auth_fail(const logic_req_t *r, uint32_t code, const char *msg)
{
    CIM__Def__CIMAuthRsp rsp = CIM__DEF__CIMAUTH_RSP__INIT;
    rsp.server_time = (uint32_t) time(NULL);
    rsp.result_code = (CIM__Def__CIMErrorCode) code;
    rsp.result_string = (char *) msg;
    im_metric_add(g_logic.m.logins_fail, 1);
    /* CIMAuthTokenRsp has the same fields 1-4 */
    logic_reply(r, r->cmd == IM_CMD_AUTH_REQ ? IM_CMD_AUTH_RSP : IM_CMD_AUTH_TOKEN_RSP, &rsp);
}

/* ---------------------------------------------------------------- register */

typedef struct reg_s {
    logic_req_t req;
    char nick[513]; /* 128 characters of UTF-8 */
} reg_t;

static void register_done(void *ud, int result, uint64_t uid, uint32_t ver)
{
    reg_t *rg = ud;
    (void) ver;
    if (result == IM_ERR_SUCCESS) {
        im_metric_add(g_logic.m.registers, 1);
        log_info("conn %llu peer %s: registered user %llu", (unsigned long long) rg->req.conn_id,
                 rg->req.peer, (unsigned long long) uid);
        reply_register(&rg->req, IM_ERR_SUCCESS, "ok", uid, rg->nick);
    } else {
        reply_register(&rg->req, (uint32_t) result,
                       result == IM_ERR_USER_ALREADY_EXIST ? "user name taken"
                                                           : "storage unavailable, try later",
                       0, NULL);
    }
    free(rg);
}

void logic_auth_register(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMRegisterReq *q = cim__def__cimregister_req__unpack(NULL, len, body);
    if (!q) {
        reply_register(r, IM_ERR_USER_INVALID_PARAMETER, "malformed request", 0, NULL);
        return;
    }
    size_t nick_cps = 0;
    if (!logic_user_name_valid(q->user_name) ||
        !logic_user_pwd_valid(q->user_pwd, strlen(q->user_pwd)) ||
        !logic_utf8_valid(q->nick_name, &nick_cps) || nick_cps > 128 ||
        strlen(q->nick_name) > 512) {
        reply_register(r, IM_ERR_USER_INVALID_PARAMETER,
                       "user name: 3-32 of [A-Za-z0-9_.-]; password: 6-128 bytes; nick: up to "
                       "128 characters of UTF-8",
                       0, NULL);
        sodium_memzero(q->user_pwd, strlen(q->user_pwd));
        cim__def__cimregister_req__free_unpacked(q, NULL);
        return;
    }
    reg_t *rg = calloc(1, sizeof(*rg));
    if (rg) {
        rg->req = *r;
        snprintf(rg->nick, sizeof(rg->nick), "%s", *q->nick_name ? q->nick_name : q->user_name);
        logic_user_create(0, q->user_name, rg->nick, NULL, q->user_pwd, register_done, rg);
    }
    sodium_memzero(q->user_pwd, strlen(q->user_pwd));
    cim__def__cimregister_req__free_unpacked(q, NULL);
}

/* ---------------------------------------------------------------- login */

typedef struct login_s {
    logic_req_t req;
    char name_lc[33];
    char ip[48];
    uint32_t client_type;
    char pwd[129];
    uint32_t token_ver; /* from a token */
    logic_user_t u;
} login_t;

static void login_free(login_t *lg)
{
    sodium_memzero(lg, sizeof(*lg));
    free(lg);
}

static void route_set_done(void *ud, int rc, uint64_t og, uint64_t oc)
{
    login_t *lg = ud;
    const logic_req_t *r = &lg->req;
    if (rc < 0) {
        reply_auth_fail(r, IM_ERR_STORAGE_UNAVAILABLE, "route store unavailable, try later");
        login_free(lg);
        return;
    }
    if (og && (og != r->gate_id || oc != r->conn_id)) {
        /* the connection this login replaces, wherever it is */
        logic_down(og, CIM__INTERNAL__DOWNSTREAM__KIND__CLOSE, oc, lg->u.user_id, lg->client_type,
                   IM_CMD_KICKOUT_NOTIFY, IM_KICK_SAME_TYPE, NULL, 0);
        im_metric_add(g_logic.m.kicks, 1);
    }
    /* token for later token logins */
    char token[IM_TOKEN_MAX];
    im_token_mint(g_logic.token_key, lg->u.user_id, lg->u.token_ver,
                  (uint64_t) time(NULL) + (uint64_t) g_logic.cfg.token_ttl, token);
    CIM__Def__CIMAuthRsp rsp = CIM__DEF__CIMAUTH_RSP__INIT;
    CIM__Def__CIMUserInfo ui = CIM__DEF__CIMUSER_INFO__INIT;
    ui.user_id = lg->u.user_id;
    ui.nick_name = lg->u.nick;
    ui.avatar_url = lg->u.avatar;
    rsp.server_time = (uint32_t) time(NULL);
    rsp.result_code = CIM__DEF__CIMERROR_CODE__kCIM_ERR_SUCCSSE;
    rsp.result_string = (char *) "ok";
    rsp.user_info = &ui;
    uint16_t rsp_cmd = IM_CMD_AUTH_TOKEN_RSP;
    if (r->cmd == IM_CMD_AUTH_REQ) {
        rsp.user_token = token;
        rsp_cmd = IM_CMD_AUTH_RSP;
    }
    size_t n = cim__def__cimauth_rsp__get_packed_size(&rsp);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) {
        cim__def__cimauth_rsp__pack(&rsp, buf);
        logic_down(r->gate_id, CIM__INTERNAL__DOWNSTREAM__KIND__AUTH_OK, r->conn_id, lg->u.user_id,
                   lg->client_type, rsp_cmd, r->seq, buf, n);
        free(buf);
    }
    im_metric_add(g_logic.m.logins_ok, 1);
    logic_nick_set(lg->u.user_id, lg->u.nick);
    log_info("conn %llu peer %s: user %llu type %u logged in (%s)", (unsigned long long) r->conn_id,
             r->peer, (unsigned long long) lg->u.user_id, lg->client_type,
             r->cmd == IM_CMD_AUTH_REQ ? "password" : "token");
    sodium_memzero(token, sizeof(token));
    login_free(lg);
}

static void login_accept(login_t *lg)
{
    logic_route_set(lg->u.user_id, lg->client_type, lg->req.gate_id, lg->req.conn_id, 0,
                    route_set_done, lg);
}

/* failed password logins per user name and per address, in Redis with a 60 s window */
static void count_failure(const login_t *lg)
{
    im_redis_cmd(g_logic.redis, NULL, NULL, "EVAL %s 2 cim:lf:n:%s cim:lf:a:%s 60",
                 "for i = 1, 2 do if redis.call('INCR', KEYS[i]) == 1 then "
                 "redis.call('EXPIRE', KEYS[i], ARGV[1]) end end return 0",
                 lg->name_lc, lg->ip);
}

static void pw_verified(void *ud, int ok)
{
    login_t *lg = ud;
    if (!ok || !lg->u.user_id) {
        count_failure(lg);
        log_info("conn %llu peer %s: password login refused", (unsigned long long) lg->req.conn_id,
                 lg->req.peer);
        reply_auth_fail(&lg->req, IM_ERR_LOGIN_INVALID_USER_OR_PWD, "invalid user or password");
        login_free(lg);
        return;
    }
    if (lg->u.status != 0) {
        reply_auth_fail(&lg->req, IM_ERR_LOGIN_DB_VALIDATE_FAILED, "account disabled");
        login_free(lg);
        return;
    }
    login_accept(lg);
}

static void login_user_found(void *ud, int rc, const logic_user_t *u)
{
    login_t *lg = ud;
    if (rc < 0) {
        reply_auth_fail(&lg->req, IM_ERR_STORAGE_UNAVAILABLE, "storage unavailable, try later");
        login_free(lg);
        return;
    }
    if (rc == 1)
        lg->u = *u;
    else
        lg->u.user_id = 0;
    /* unknown users and users without a password are verified against a dummy hash, so
     * the answer takes the same time as for a wrong password */
    const char *stored = (rc == 1 && lg->u.pwd_hash[0]) ? lg->u.pwd_hash : g_logic.dummy_hash;
    if (rc == 1 && !lg->u.pwd_hash[0])
        lg->u.user_id = 0;
    pwverify(lg->pwd, stored, pw_verified, lg);
    sodium_memzero(lg->pwd, sizeof(lg->pwd));
}

static void login_limits(im_redis_t *rd, redisReply *reply, void *ud)
{
    login_t *lg = ud;
    (void) rd;
    long long by_name = 0, by_addr = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        if (reply->element[0]->type == REDIS_REPLY_STRING)
            by_name = strtoll(reply->element[0]->str, NULL, 10);
        if (reply->element[1]->type == REDIS_REPLY_STRING)
            by_addr = strtoll(reply->element[1]->str, NULL, 10);
    }
    if (by_name >= g_logic.cfg.login_fail_max_user || by_addr >= g_logic.cfg.login_fail_max_ip) {
        log_warn("conn %llu peer %s: password login refused: too many failures (%lld for the "
                 "name, %lld for the address in 60 s)",
                 (unsigned long long) lg->req.conn_id, lg->req.peer, by_name, by_addr);
        reply_auth_fail(&lg->req, IM_ERR_RATE_LIMITED, "too many failed logins, try later");
        login_free(lg);
        return;
    }
    logic_user_get(0, lg->name_lc, login_user_found, lg);
}

void logic_auth_login(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMAuthReq *q = cim__def__cimauth_req__unpack(NULL, len, body);
    if (!q) {
        reply_auth_fail(r, IM_ERR_INVALID_PARAMETER, "malformed request");
        return;
    }
    size_t plen = strlen(q->user_pwd);
    if (!logic_user_name_valid(q->user_name) || plen > 128 || plen == 0) {
        reply_auth_fail(r, IM_ERR_LOGIN_INVALID_USER_OR_PWD, "invalid user or password");
        sodium_memzero(q->user_pwd, plen);
        cim__def__cimauth_req__free_unpacked(q, NULL);
        return;
    }
    login_t *lg = calloc(1, sizeof(*lg));
    if (lg) {
        lg->req = *r;
        lg->client_type = (uint32_t) q->client_type <= IM_CT_MAX ? (uint32_t) q->client_type : 0;
        memcpy(lg->pwd, q->user_pwd, plen + 1);
        logic_lower(lg->name_lc, q->user_name, sizeof(lg->name_lc));
        snprintf(lg->ip, sizeof(lg->ip), "%s", r->peer);
        char *colon = strrchr(lg->ip, ':');
        if (colon)
            *colon = 0;
        if (!lg->ip[0])
            snprintf(lg->ip, sizeof(lg->ip), "unknown");
        /* brute force: too many recent failures for this name or this address -> refused */
        if (im_redis_cmd(g_logic.redis, login_limits, lg, "MGET cim:lf:n:%s cim:lf:a:%s",
                         lg->name_lc, lg->ip) != 0)
            logic_user_get(0, lg->name_lc, login_user_found, lg); /* Redis away: fail open */
    }
    sodium_memzero(q->user_pwd, plen);
    cim__def__cimauth_req__free_unpacked(q, NULL);
}

static void token_user_found(void *ud, int rc, const logic_user_t *u)
{
    login_t *lg = ud;
    if (rc < 0) {
        reply_auth_fail(&lg->req, IM_ERR_STORAGE_UNAVAILABLE, "storage unavailable, try later");
    } else if (rc == 0 || u->token_ver != lg->token_ver) {
        log_info("conn %llu peer %s: token login for user %llu refused (%s)",
                 (unsigned long long) lg->req.conn_id, lg->req.peer,
                 (unsigned long long) lg->u.user_id, rc == 0 ? "no such user" : "token rotated");
        reply_auth_fail(&lg->req, IM_ERR_LOGIN_INVALID_TOKEN, "invalid token");
    } else if (u->status != 0) {
        reply_auth_fail(&lg->req, IM_ERR_LOGIN_DB_VALIDATE_FAILED, "account disabled");
    } else {
        lg->u = *u;
        sodium_memzero(lg->u.pwd_hash, sizeof(lg->u.pwd_hash));
        login_accept(lg);
        return;
    }
    login_free(lg);
}

void logic_auth_token(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMAuthTokenReq *q = cim__def__cimauth_token_req__unpack(NULL, len, body);
    if (!q) {
        reply_auth_fail(r, IM_ERR_INVALID_PARAMETER, "malformed request");
        return;
    }
    uint64_t uid = 0, exp = 0;
    uint32_t ver = 0;
    int rc =
        im_token_verify(g_logic.token_key, q->user_token, (uint64_t) time(NULL), &uid, &ver, &exp);
    if (rc != 0 || (q->user_id != 0 && q->user_id != uid)) {
        log_info("conn %llu peer %s: token login refused (%s)", (unsigned long long) r->conn_id,
                 r->peer,
                 rc == -2 ? "expired"
                 : rc     ? "bad token"
                          : "token of another user");
        reply_auth_fail(r, IM_ERR_LOGIN_INVALID_TOKEN,
                        rc == -2 ? "token expired" : "invalid token");
        cim__def__cimauth_token_req__free_unpacked(q, NULL);
        return;
    }
    login_t *lg = calloc(1, sizeof(*lg));
    if (lg) {
        lg->req = *r;
        lg->client_type = (uint32_t) q->client_type <= IM_CT_MAX ? (uint32_t) q->client_type : 0;
        lg->token_ver = ver;
        lg->u.user_id = uid;
        logic_user_get(uid, NULL, token_user_found, lg);
    }
    cim__def__cimauth_token_req__free_unpacked(q, NULL);
}

/* ---------------------------------------------------------------- logout and close */

void logic_auth_logout(const logic_req_t *r, const uint8_t *body, size_t len)
{
    CIM__Def__CIMLogoutReq *q = cim__def__cimlogout_req__unpack(NULL, len, body);
    CIM__Def__CIMLogoutRsp rsp = CIM__DEF__CIMLOGOUT_RSP__INIT;
    if (q && q->user_id != 0 && q->user_id != r->user_id) {
        rsp.result_code = IM_ERR_PERMISSION_DENIED; /* identity is the connection's */
        logic_reply(r, IM_CMD_LOGOUT_RSP, &rsp);
        cim__def__cimlogout_req__free_unpacked(q, NULL);
        return;
    }
    if (q)
        cim__def__cimlogout_req__free_unpacked(q, NULL);
    logic_route_del(r->user_id, r->client_type, r->gate_id, r->conn_id);
    rsp.result_code = IM_ERR_SUCCESS;
    uint8_t buf[16];
    size_t n = cim__def__cimlogout_rsp__pack(&rsp, buf);
    logic_down(r->gate_id, CIM__INTERNAL__DOWNSTREAM__KIND__CLOSE, r->conn_id, r->user_id,
               r->client_type, IM_CMD_LOGOUT_RSP, r->seq, buf, n);
    im_metric_add(g_logic.m.logouts, 1);
    log_info("conn %llu user %llu: logged out", (unsigned long long) r->conn_id,
             (unsigned long long) r->user_id);
}

void logic_auth_closed(const logic_req_t *r)
{
    if (r->user_id)
        logic_route_del(r->user_id, r->client_type, r->gate_id, r->conn_id);
    logic_presence_conn_closed(r->gate_id, r->conn_id);
}

/* a gate re-announces a connection after Redis lost its routes */
void logic_auth_reroute(const logic_req_t *r)
{
    if (r->user_id)
        logic_route_set(r->user_id, r->client_type, r->gate_id, r->conn_id, 1, NULL, NULL);
}

/* ---------------------------------------------------------------- kick a user everywhere */

typedef struct kick_s {
    uint64_t uid;
    uint32_t reason;
    void (*done)(void *ud, int kicked);
    void *ud;
} kick_t;

static void kick_routes(im_redis_t *rd, redisReply *reply, void *ud)
{
    kick_t *k = ud;
    (void) rd;
    int kicked = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            unsigned long long og = 0, oc = 0;
            const redisReply *f = reply->element[i], *v = reply->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (sscanf(v->str, "%llu:%llu", &og, &oc) != 2)
                continue;
            if (logic_down(og, CIM__INTERNAL__DOWNSTREAM__KIND__CLOSE, oc, k->uid,
                           (uint32_t) atoi(f->str), IM_CMD_KICKOUT_NOTIFY, (uint16_t) k->reason,
                           NULL, 0) == 0)
                kicked++;
        }
    } else {
        kicked = -1;
    }
    im_metric_add(g_logic.m.kicks, kicked > 0 ? kicked : 0);
    if (k->done)
        k->done(k->ud, kicked);
    free(k);
}

void logic_auth_kick_user(uint64_t user_id, uint32_t reason, void (*done)(void *ud, int kicked),
                          void *ud)
{
    kick_t *k = calloc(1, sizeof(*k));
    if (!k) {
        if (done)
            done(ud, -1);
        return;
    }
    k->uid = user_id;
    k->reason = reason;
    k->done = done;
    k->ud = ud;
    if (im_redis_cmd(g_logic.redis, kick_routes, k, "HGETALL cim:rt:%llu",
                     (unsigned long long) user_id) != 0)
        kick_routes(g_logic.redis, NULL, k);
}

/* ---------------------------------------------------------------- worker-id lease */

#define LEASE_MS 60000

typedef struct lease_s {
    logic_job_t job;
    int worker; /* result */
    int renew;
    uint64_t now;
} lease_t;

static lease_t g_lease;
static uv_timer_t g_lease_timer;

static void lease_work(logic_job_t *job, logic_dbc_t *c)
{
    lease_t *ls = (lease_t *) job;
    uint64_t exp = ls->now + LEASE_MS;
    if (ls->renew && ls->worker >= 0) {
        long n = db_exec(c, "UPDATE im_worker SET expires = ? WHERE worker_id = ? AND owner = ?",
                         "Uus", "", exp, (uint32_t) ls->worker, g_logic.owner);
        if (n < 0)
            job->rc = (int) n;
        else if (n == 0)
            ls->worker = -1; /* lost it (we were away past the lease): take a new one */
        if (n != 0)
            return;
    }
    uint32_t start = randombytes_uniform(1024);
    for (uint32_t i = 0; i < 1024; i++) {
        uint32_t w = (start + i) % 1024;
        long n = db_exec(c,
                         "INSERT IGNORE INTO im_worker (worker_id, owner, expires) VALUES "
                         "(?, '', 0)",
                         "u", "", w);
        if (n >= 0)
            n = db_exec(c,
                        "UPDATE im_worker SET owner = ?, expires = ? WHERE worker_id = ? AND "
                        "(expires < ? OR owner = ?)",
                        "sUuUs", "", g_logic.owner, exp, w, ls->now, g_logic.owner);
        if (n < 0) {
            job->rc = (int) n;
            return;
        }
        if (n == 1) {
            ls->worker = (int) w;
            return;
        }
    }
    ls->worker = -1;
}

static uint64_t g_lease_ok_ms; /* last time MySQL confirmed our lease */

static void lease_done(logic_job_t *job)
{
    lease_t *ls = (lease_t *) job;
    if (job->rc == DB_OK && ls->worker >= 0)
        g_lease_ok_ms = im_mono_ms();
    if (ls->worker >= 0 && g_logic.worker_id != ls->worker) {
        g_logic.worker_id = ls->worker;
        im_idgen_init(&g_logic.idgen, (uint32_t) ls->worker);
        log_info("server_msg_id worker id %d leased", ls->worker);
    } else if (ls->worker < 0) {
        if (g_logic.worker_id >= 0)
            log_error("worker id lease lost or unavailable: message ids paused until renewed");
        g_logic.worker_id = -1;
    }
    ls->renew = 0;
}

static void lease_tick(uv_timer_t *t)
{
    (void) t;
    /* an unconfirmed lease may be taken over by another logic once it expires: stop using the
     * worker id well before that (sends get ERROR and are retried by the clients) */
    if (g_logic.worker_id >= 0 && im_mono_ms() - g_lease_ok_ms > LEASE_MS - 20000) {
        log_error("worker id %d: lease not renewed for %llu s: message ids paused",
                  g_logic.worker_id, (unsigned long long) (im_mono_ms() - g_lease_ok_ms) / 1000);
        g_logic.worker_id = -1;
    }
    if (g_lease.renew) /* a job is in flight */
        return;
    g_lease.renew = 1;
    g_lease.worker = g_logic.worker_id;
    g_lease.now = im_now_ms();
    g_lease.job.work = lease_work;
    g_lease.job.done = lease_done;
    logic_db_submit_first(0, 0, &g_lease.job); /* not behind a backlog of messages */
}

int logic_worker_lease_start(logic_t *l)
{
    l->worker_id = -1;
    uv_timer_init(l->loop, &g_lease_timer);
    uv_timer_start(&g_lease_timer, lease_tick, 0, 10000);
    return 0;
}

void logic_worker_lease_stop(void)
{
    uv_timer_stop(&g_lease_timer);
    uv_close((uv_handle_t *) &g_lease_timer, NULL);
}
