/* e2e_group_util: helpers for the group end-to-end tests (header-only; include after ../test.h,
 * e2e_common.h and e2e_http.h).
 *
 * - users made through the business API (POST /api/v1/users) and token-logged-in libcim
 *   clients that are kept alive (the test stack closes connections idle for 3 s) while a test
 *   waits on another client;
 * - the group requests 0x0501..0x0519 with their checks;
 * - a "fleet": many raw connections on one epoll (thousands of members online at once) that
 *   keeps them alive, reads what arrives and records deliveries of one message, for the
 *   large-group cases. */
#ifndef CIM_E2E_GROUP_UTIL_H
#define CIM_E2E_GROUP_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <jansson.h>

#define GU_HB_MS    1000
#define GU_WAIT_MS  5000
#define GU_QUIET_MS 800
#define GU_NOTIF    9 /* CIMMsgType NOTIFICATION */
#define GU_ADD      1
#define GU_DEL      2

/* ------------------------------------------------------------------ users */

typedef struct gu_user_s {
    uint64_t uid;
    char token[512];
} gu_user_t;

/* One user made through the business API (api_env: CIM_API or CIM_API2). */
static inline int gu_api_user_on(const char *api_env, gu_user_t *u)
{
    static unsigned n;
    char body[128];
    snprintf(body, sizeof(body), "{\"nick_name\":\"g%u_%u\"}", (unsigned) getpid(), n++);
    e2e_http_rsp_t r;
    if (e2e_http(e2e_env(api_env), "POST", "/api/v1/users", e2e_env("CIM_API_KEY"), body, &r) != 0)
        return -1;
    const char *tok = e2e_json_str(&r, "token");
    long long uid = e2e_json_int(&r, "user_id", 0);
    int ok = r.status == 200 && tok && uid > 0;
    if (ok) {
        u->uid = (uint64_t) uid;
        snprintf(u->token, sizeof(u->token), "%s", tok);
    } else {
        fprintf(stderr, "  POST /api/v1/users: %d %s\n", r.status, r.body ? r.body : "");
    }
    e2e_http_rsp_free(&r);
    return ok ? 0 : -1;
}

static inline gu_user_t gu_api_user(void)
{
    gu_user_t u;
    memset(&u, 0, sizeof(u));
    CHECK_EQ_INT(gu_api_user_on("CIM_API", &u), 0);
    return u;
}

typedef struct gu_mk_s {
    gu_user_t *out;
    size_t from, to;
    const char *api;
    int failed;
} gu_mk_t;

static inline void *gu_mk_thread(void *arg)
{
    gu_mk_t *m = arg;
    for (size_t i = m->from; i < m->to; i++)
        for (int tries = 0;; tries++) {
            if (gu_api_user_on(m->api, &m->out[i]) == 0)
                break;
            if (tries == 5) {
                m->failed = 1;
                return NULL;
            }
            e2e_sleep_ms(100);
        }
    return NULL;
}

/* n users made through both logics' APIs by a few threads; ordered by creation within each
 * thread's slice only. */
static inline void gu_api_users(gu_user_t *out, size_t n)
{
    enum { T = 8 };
    pthread_t th[T];
    gu_mk_t mk[T];
    for (int t = 0; t < T; t++) {
        mk[t].out = out;
        mk[t].from = n * (size_t) t / T;
        mk[t].to = n * (size_t) (t + 1) / T;
        mk[t].api = (t & 1) && getenv("CIM_API2") ? "CIM_API2" : "CIM_API";
        mk[t].failed = 0;
        CHECK_EQ_INT(pthread_create(&th[t], NULL, gu_mk_thread, &mk[t]), 0);
    }
    int failed = 0;
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        failed |= mk[t].failed;
    }
    CHECK(!failed);
}

/* ------------------------------------------------------------------ libcim members */

typedef struct gu_m_s {
    gu_user_t u;
    cim_client_t *c;
    uint64_t seq; /* the highest inbox seq this test has seen for the user */
} gu_m_t;

#define GU_MAX_LIVE 64
static cim_client_t *gu_live_[GU_MAX_LIVE];
static int gu_nlive_;

/* Read on every live client (queueing pushes, sending due heartbeats). */
static inline void gu_keepalive(void)
{
    for (int i = 0; i < gu_nlive_; i++)
        if (gu_live_[i] && cim_is_connected(gu_live_[i]))
            cim_poll(gu_live_[i], 0);
}

static inline void gu_idle(int ms)
{
    int64_t until = e2e_now_ms() + ms;
    while (e2e_now_ms() < until) {
        gu_keepalive();
        e2e_sleep_ms(20);
    }
}

/* A token-logged-in client for u on gate_env, kept alive by gu_keepalive. */
static inline cim_client_t *gu_login(const char *gate_env, const gu_user_t *u, int auto_sync)
{
    cim_client_t *c = e2e_connect(gate_env);
    cim_set_heartbeat_interval(c, GU_HB_MS);
    cim_set_auto_sync(c, auto_sync);
    uint32_t code = 0;
    int rc = cim_login_token(c, u->uid, u->token, IM_CT_PC_WINDOWS, &code);
    if (rc != 0)
        fprintf(stderr, "  token login %" PRIu64 ": %s, code %u\n", u->uid, cim_strerror(rc), code);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(code, 200);
    CHECK(gu_nlive_ < GU_MAX_LIVE);
    gu_live_[gu_nlive_++] = c;
    return c;
}

/* A new API user logged in on gate_env (members alternate gates in the tests). */
static inline gu_m_t gu_member(const char *gate_env)
{
    gu_m_t m;
    memset(&m, 0, sizeof(m));
    m.u = gu_api_user();
    m.c = gu_login(gate_env, &m.u, 0);
    return m;
}

/* The next push with cmd on c within timeout_ms, keeping the others alive; NULL if none. */
static inline cim_packet_t *gu_wait(cim_client_t *c, uint16_t cmd, int timeout_ms)
{
    int64_t until = e2e_now_ms() + timeout_ms;
    for (;;) {
        int left = (int) (until - e2e_now_ms());
        cim_packet_t *p = NULL;
        int rc = cim_next_push(c, cmd, left < 0 ? 0 : (left > 100 ? 100 : left), &p);
        if (rc == 0)
            return p;
        if (rc == CIM_ECLOSED || left <= 0)
            return NULL;
        gu_keepalive();
    }
}

/* The next 0x0301 on c (unpacked, caller frees) or NULL. */
static inline CIM__Def__CIMMsgData *gu_next_msg(cim_client_t *c, int timeout_ms)
{
    cim_packet_t *p = gu_wait(c, IM_CMD_MSG_DATA, timeout_ms);
    if (!p)
        return NULL;
    CIM__Def__CIMMsgData *d =
        (CIM__Def__CIMMsgData *) cim_packet_unpack(p, &cim__def__cimmsg_data__descriptor);
    cim_packet_free(p);
    return d;
}

/* Number of pushes with cmd (0 = any) that arrive on c within ms, counting what is already
 * there or queued (consumed). */
static inline int gu_count(cim_client_t *c, uint16_t cmd, int ms)
{
    int n = 0;
    int64_t until = e2e_now_ms() + ms;
    for (;;) {
        if (cim_is_connected(c))
            cim_poll(c, 0);
        cim_packet_t *p = NULL;
        while (cim_next_push(c, cmd, 0, &p) == 0) {
            n++;
            cim_packet_free(p);
            p = NULL;
        }
        int left = (int) (until - e2e_now_ms());
        if (left <= 0)
            break;
        gu_keepalive();
        e2e_sleep_ms(left < 20 ? left : 20);
    }
    return n;
}

/* Drop every queued push of c (after reading for ms). */
static inline void gu_drain(cim_client_t *c, int ms)
{
    gu_count(c, 0, ms);
}

/* Require the next seq of m's inbox. */
static inline void gu_seq_next(gu_m_t *m, uint64_t seq)
{
    if (seq != m->seq + 1)
        fprintf(stderr, "  user %" PRIu64 ": seq %" PRIu64 ", expected %" PRIu64 "\n", m->u.uid,
                seq, m->seq + 1);
    CHECK_EQ_INT(seq, m->seq + 1);
    m->seq = seq;
}

/* JSON string member that must hold the decimal id v. */
static inline void gu_json_id(json_t *j, const char *key, uint64_t v)
{
    json_t *s = json_object_get(j, key);
    char want[24];
    snprintf(want, sizeof(want), "%" PRIu64, v);
    if (!json_is_string(s))
        fprintf(stderr, "  JSON \"%s\" is not a string (ids are decimal strings)\n", key);
    CHECK(json_is_string(s));
    CHECK_EQ_STR(json_string_value(s), want);
}

/* 1 if the JSON array of decimal-string ids under key holds v. */
static inline int gu_json_has_id(json_t *j, const char *key, uint64_t v)
{
    json_t *a = json_object_get(j, key);
    char want[24];
    snprintf(want, sizeof(want), "%" PRIu64, v);
    for (size_t i = 0; json_is_array(a) && i < json_array_size(a); i++) {
        json_t *s = json_array_get(a, i);
        if (json_is_string(s) && !strcmp(json_string_value(s), want))
            return 1;
    }
    return 0;
}

/* The next 0x0301 of m must be the group NOTIFICATION entry of `type` for gid, with the next
 * seq; its JSON (caller json_decref's). */
static inline json_t *gu_expect_notif(gu_m_t *m, uint64_t gid, const char *type)
{
    CIM__Def__CIMMsgData *d = gu_next_msg(m->c, GU_WAIT_MS);
    if (!d)
        fprintf(stderr, "  user %" PRIu64 ": no NOTIFICATION entry (%s)\n", m->u.uid, type);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->msg_type, GU_NOTIF);
    CHECK_EQ_INT(d->session_type, CIM_SESSION_GROUP);
    CHECK_EQ_INT(d->to_session_id, gid);
    gu_seq_next(m, d->seq);
    json_error_t err;
    json_t *j = json_loadb((const char *) d->msg_data.data, d->msg_data.len, 0, &err);
    if (!j)
        fprintf(stderr, "  NOTIFICATION body is not JSON: %.*s\n", (int) d->msg_data.len,
                (const char *) d->msg_data.data);
    CHECK(j != NULL);
    json_t *t = json_object_get(j, "type");
    CHECK(json_is_string(t));
    CHECK_EQ_STR(json_string_value(t), type);
    gu_json_id(j, "group_id", gid);
    cim__def__cimmsg_data__free_unpacked(d, NULL);
    return j;
}

/* The next 0x0515 of c for gid (others are skipped); caller frees. */
static inline CIM__Def__CIMGroupMemberChangedNotify *gu_expect_changed(cim_client_t *c,
                                                                       uint64_t gid)
{
    for (;;) {
        cim_packet_t *p = gu_wait(c, IM_CMD_GROUP_MEMBER_CHANGED, GU_WAIT_MS);
        if (!p)
            fprintf(stderr, "  user %" PRIu64 ": no 0x0515 for group %" PRIu64 "\n", cim_user_id(c),
                    gid);
        CHECK(p != NULL);
        CIM__Def__CIMGroupMemberChangedNotify *n =
            (CIM__Def__CIMGroupMemberChangedNotify *) cim_packet_unpack(
                p, &cim__def__cimgroup_member_changed_notify__descriptor);
        cim_packet_free(p);
        CHECK(n != NULL);
        if (n->group_id == gid)
            return n;
        cim__def__cimgroup_member_changed_notify__free_unpacked(n, NULL);
    }
}

/* The type of uid in a changed_list, 0 if absent. */
static inline int gu_changed_type(const CIM__Def__CIMGroupMemberChangedNotify *n, uint64_t uid)
{
    for (size_t i = 0; i < n->n_changed_list; i++)
        if (n->changed_list[i]->user_id == uid)
            return (int) n->changed_list[i]->type;
    return 0;
}

/* m must get 0x0515 for gid naming exactly `who` (n of them) with type, acted by actor. */
static inline void gu_expect_change(gu_m_t *m, uint64_t gid, uint64_t actor, const uint64_t *who,
                                    size_t n, int type)
{
    CIM__Def__CIMGroupMemberChangedNotify *nt = gu_expect_changed(m->c, gid);
    CHECK_EQ_INT(nt->user_id, actor);
    CHECK_EQ_INT(nt->n_changed_list, n);
    for (size_t i = 0; i < n; i++) {
        if (gu_changed_type(nt, who[i]) != type)
            fprintf(stderr, "  user %" PRIu64 ": 0x0515 lacks %" PRIu64 " with type %d\n", m->u.uid,
                    who[i], type);
        CHECK_EQ_INT(gu_changed_type(nt, who[i]), type);
    }
    cim__def__cimgroup_member_changed_notify__free_unpacked(nt, NULL);
}

/* ------------------------------------------------------------------ group requests */

static inline ProtobufCMessage *gu_call(cim_client_t *c, uint16_t cmd, const void *req,
                                        uint16_t rsp_cmd, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *rsp = NULL;
    int rc = cim_call(c, cmd, (const ProtobufCMessage *) req, rsp_cmd, d, &rsp, GU_WAIT_MS * 2);
    if (rc != 0)
        fprintf(stderr, "  0x%04x: %s\n", cmd, cim_strerror(rc));
    CHECK_EQ_INT(rc, 0);
    CHECK(rsp != NULL);
    return rsp;
}

static inline CIM__Def__CIMGroupCreateRsp *
gu_create_req(cim_client_t *c, uint64_t as, const char *name, const uint64_t *ids, size_t n)
{
    CIM__Def__CIMGroupCreateReq q = CIM__DEF__CIMGROUP_CREATE_REQ__INIT;
    q.user_id = as;
    q.group_name = (char *) name;
    q.n_member_id_list = n;
    q.member_id_list = (uint64_t *) ids;
    return (CIM__Def__CIMGroupCreateRsp *) gu_call(c, IM_CMD_GROUP_CREATE_REQ, &q,
                                                   IM_CMD_GROUP_CREATE_RSP,
                                                   &cim__def__cimgroup_create_rsp__descriptor);
}

static inline uint32_t gu_create_code(cim_client_t *c, uint64_t as, const char *name,
                                      const uint64_t *ids, size_t n)
{
    CIM__Def__CIMGroupCreateRsp *r = gu_create_req(c, as, name, ids, n);
    uint32_t code = r->result_code;
    cim__def__cimgroup_create_rsp__free_unpacked(r, NULL);
    return code;
}

/* Create (must succeed); returns the group id. */
static inline uint64_t gu_create(cim_client_t *c, const char *name, const uint64_t *ids, size_t n)
{
    CIM__Def__CIMGroupCreateRsp *r = gu_create_req(c, 0, name, ids, n);
    if (r->result_code != 200)
        fprintf(stderr, "  create: result_code %u\n", r->result_code);
    CHECK_EQ_INT(r->result_code, 200);
    CHECK(r->group_info != NULL);
    uint64_t gid = r->group_info->group_id;
    CHECK(gid > 0);
    cim__def__cimgroup_create_rsp__free_unpacked(r, NULL);
    return gid;
}

/* Disband/exit/join (same shapes): the result code. */
static inline uint32_t gu_simple(cim_client_t *c, uint16_t cmd, uint64_t as, uint64_t gid)
{
    uint32_t code;
    if (cmd == IM_CMD_GROUP_JOIN_REQ) {
        CIM__Def__CIMGroupJoinReq q = CIM__DEF__CIMGROUP_JOIN_REQ__INIT;
        q.user_id = as;
        q.group_id = gid;
        CIM__Def__CIMGroupJoinRsp *r = (CIM__Def__CIMGroupJoinRsp *) gu_call(
            c, cmd, &q, IM_CMD_GROUP_JOIN_RSP, &cim__def__cimgroup_join_rsp__descriptor);
        CHECK_EQ_INT(r->group_id, gid);
        code = r->result_code;
        cim__def__cimgroup_join_rsp__free_unpacked(r, NULL);
    } else if (cmd == IM_CMD_GROUP_EXIT_REQ) {
        CIM__Def__CIMGroupExitReq q = CIM__DEF__CIMGROUP_EXIT_REQ__INIT;
        q.user_id = as;
        q.group_id = gid;
        CIM__Def__CIMGroupExitRsp *r = (CIM__Def__CIMGroupExitRsp *) gu_call(
            c, cmd, &q, IM_CMD_GROUP_EXIT_RSP, &cim__def__cimgroup_exit_rsp__descriptor);
        CHECK_EQ_INT(r->group_id, gid);
        code = r->result_code;
        cim__def__cimgroup_exit_rsp__free_unpacked(r, NULL);
    } else {
        CIM__Def__CIMGroupDisbandingReq q = CIM__DEF__CIMGROUP_DISBANDING_REQ__INIT;
        q.user_id = as;
        q.group_id = gid;
        CIM__Def__CIMGroupDisbandingRsp *r = (CIM__Def__CIMGroupDisbandingRsp *) gu_call(
            c, IM_CMD_GROUP_DISBAND_REQ, &q, IM_CMD_GROUP_DISBAND_RSP,
            &cim__def__cimgroup_disbanding_rsp__descriptor);
        CHECK_EQ_INT(r->group_id, gid);
        code = r->result_code;
        cim__def__cimgroup_disbanding_rsp__free_unpacked(r, NULL);
    }
    return code;
}

/* Kick (0x0513) or invite (0x0511): the result code. */
static inline uint32_t gu_members_op(cim_client_t *c, uint16_t cmd, uint64_t as, uint64_t gid,
                                     const uint64_t *ids, size_t n)
{
    CIM__Def__CIMGroupKickOutMemberReq q = CIM__DEF__CIMGROUP_KICK_OUT_MEMBER_REQ__INIT;
    q.user_id = as;
    q.group_id = gid;
    q.n_member_id_list = n;
    q.member_id_list = (uint64_t *) ids;
    CIM__Def__CIMGroupKickOutMemberRsp *r = (CIM__Def__CIMGroupKickOutMemberRsp *) gu_call(
        c, cmd, &q, (uint16_t) (cmd + 1), &cim__def__cimgroup_kick_out_member_rsp__descriptor);
    uint32_t code = r->result_code;
    cim__def__cimgroup_kick_out_member_rsp__free_unpacked(r, NULL);
    return code;
}

/* 0x0516: result code (0 counts as 200) and the members (sorted copy, caller frees). */
static inline uint32_t gu_member_list(cim_client_t *c, uint64_t as, uint64_t gid, uint64_t **ids,
                                      size_t *n)
{
    CIM__Def__CIMGroupMemberListReq q = CIM__DEF__CIMGROUP_MEMBER_LIST_REQ__INIT;
    q.user_id = as;
    q.group_id = gid;
    CIM__Def__CIMGroupMemberListRsp *r = (CIM__Def__CIMGroupMemberListRsp *) gu_call(
        c, IM_CMD_GROUP_MEMBER_LIST_REQ, &q, IM_CMD_GROUP_MEMBER_LIST_RSP,
        &cim__def__cimgroup_member_list_rsp__descriptor);
    uint32_t code = r->result_code ? r->result_code : 200;
    if (ids) {
        *ids = calloc(r->n_member_id_list + 1, sizeof(uint64_t));
        CHECK(*ids != NULL);
        if (r->n_member_id_list)
            memcpy(*ids, r->member_id_list, r->n_member_id_list * sizeof(uint64_t));
        *n = r->n_member_id_list;
    }
    cim__def__cimgroup_member_list_rsp__free_unpacked(r, NULL);
    return code;
}

static inline int gu_has(const uint64_t *v, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

/* 0x0507: the version of gid in my list (0 when absent); *code gets the result code. */
static inline uint32_t gu_list_version(cim_client_t *c, uint64_t as, uint64_t gid, uint32_t *code)
{
    CIM__Def__CIMGroupListReq q = CIM__DEF__CIMGROUP_LIST_REQ__INIT;
    q.user_id = as;
    CIM__Def__CIMGroupListRsp *r =
        (CIM__Def__CIMGroupListRsp *) gu_call(c, IM_CMD_GROUP_LIST_REQ, &q, IM_CMD_GROUP_LIST_RSP,
                                              &cim__def__cimgroup_list_rsp__descriptor);
    uint32_t v = 0;
    for (size_t i = 0; i < r->n_group_version_list; i++)
        if (r->group_version_list[i]->group_id == gid)
            v = r->group_version_list[i]->group_version;
    if (code)
        *code = r->result_code ? r->result_code : 200;
    cim__def__cimgroup_list_rsp__free_unpacked(r, NULL);
    return v;
}

/* 0x0509 for one group at version `have`: the response (caller frees). */
static inline CIM__Def__CIMGroupInfoRsp *gu_info(cim_client_t *c, uint64_t as, uint64_t gid,
                                                 uint32_t have)
{
    CIM__Def__CIMGroupInfoReq q = CIM__DEF__CIMGROUP_INFO_REQ__INIT;
    CIM__Def__CIMGroupVersionInfo v = CIM__DEF__CIMGROUP_VERSION_INFO__INIT;
    CIM__Def__CIMGroupVersionInfo *vp = &v;
    v.group_id = gid;
    v.group_version = have;
    q.user_id = as;
    q.n_group_version_list = 1;
    q.group_version_list = &vp;
    return (CIM__Def__CIMGroupInfoRsp *) gu_call(c, IM_CMD_GROUP_INFO_REQ, &q,
                                                 IM_CMD_GROUP_INFO_RSP,
                                                 &cim__def__cimgroup_info_rsp__descriptor);
}

/* The owner per 0x0509 (version 0: always returned). */
static inline uint64_t gu_owner(cim_client_t *c, uint64_t gid)
{
    CIM__Def__CIMGroupInfoRsp *r = gu_info(c, 0, gid, 0);
    CHECK_EQ_INT(r->result_code, 200);
    CHECK_EQ_INT(r->n_group_info_list, 1);
    uint64_t o = r->group_info_list[0]->group_owner_id;
    cim__def__cimgroup_info_rsp__free_unpacked(r, NULL);
    return o;
}

/* Send a group text; the ack (res_code 0 when none came). */
static inline cim_ack_t gu_send(cim_client_t *c, uint64_t gid, const char *text,
                                uint64_t from_user_id)
{
    cim_msg_out_t m;
    memset(&m, 0, sizeof(m));
    m.to = gid;
    m.session_type = CIM_SESSION_GROUP;
    m.msg_type = CIM_MSG_TEXT;
    m.data = text;
    m.len = strlen(text);
    m.from_user_id = from_user_id;
    cim_ack_t a;
    memset(&a, 0, sizeof(a));
    int rc = cim_send_msg(c, &m, &a);
    CHECK(rc == 0 || rc == CIM_ERESULT);
    if (rc == CIM_ERESULT || a.res_code != CIM_RES_OK)
        cim_drop_unacked(c); /* a refused message must not be resent by the library */
    return a;
}

/* Send a group text that must be acked OK with m's next seq; the server_msg_id. */
static inline uint64_t gu_send_ok(gu_m_t *m, uint64_t gid, const char *text)
{
    cim_ack_t a = gu_send(m->c, gid, text, 0);
    if (a.res_code != CIM_RES_OK)
        fprintf(stderr, "  group send by %" PRIu64 ": res_code %u\n", m->u.uid, a.res_code);
    CHECK_EQ_INT(a.res_code, CIM_RES_OK);
    CHECK(a.server_msg_id > 0);
    gu_seq_next(m, a.seq);
    return a.server_msg_id;
}

/* m must receive the group text (from, smid) as its next entry. */
static inline void gu_expect_text(gu_m_t *m, uint64_t gid, uint64_t from, uint64_t smid,
                                  const char *text)
{
    CIM__Def__CIMMsgData *d = gu_next_msg(m->c, GU_WAIT_MS);
    if (!d)
        fprintf(stderr, "  user %" PRIu64 ": group message %" PRIu64 " not delivered\n", m->u.uid,
                smid);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->msg_type, CIM_MSG_TEXT);
    CHECK_EQ_INT(d->session_type, CIM_SESSION_GROUP);
    CHECK_EQ_INT(d->to_session_id, gid);
    CHECK_EQ_INT(d->from_user_id, from);
    CHECK_EQ_INT(d->server_msg_id, smid);
    CHECK(d->msg_data.len == strlen(text) && !memcmp(d->msg_data.data, text, d->msg_data.len));
    gu_seq_next(m, d->seq);
    cim__def__cimmsg_data__free_unpacked(d, NULL);
}

/* ------------------------------------------------------------------ fleet (raw connections) */

typedef struct gf_conn_s {
    int fd;
    uint64_t uid;
    const char *token;
    int state; /* 0 connecting/login sent, 1 logged in, -1 failed/closed */
    uint8_t *buf;
    size_t len, cap;
    int64_t last_send;
    uint16_t seq;
    uint64_t max_seq; /* highest 0x0301 seq seen */
    uint32_t gaps;    /* 0x0301 whose seq was not max_seq + 1 */
    uint32_t n_msg, n_changed;
    int64_t got_ms; /* arrival of the watched message */
    uint64_t got_seq;
    uint8_t *rsp; /* last response body matching want_cmd/want_seq */
    size_t rsp_len;
    uint16_t want_cmd, want_seq;
    int have_rsp;
} gf_conn_t;

typedef struct gf_s {
    gf_conn_t *c;
    int n;
    int ep;
    int hb_ms;
    int confirm;         /* send 0x0302 delivery confirmations */
    char watch_cmid[72]; /* the message being timed */
    uint32_t watch_got;  /* connections that received it */
    int64_t ack_ms;      /* its ack */
    uint32_t ack_res;
    uint64_t ack_seq;
    uint64_t watch_gid;
} gf_t;

static inline void gf_hdr(uint8_t *h, uint32_t len, uint16_t cmd, uint16_t seq)
{
    h[0] = (uint8_t) (len >> 24);
    h[1] = (uint8_t) (len >> 16);
    h[2] = (uint8_t) (len >> 8);
    h[3] = (uint8_t) len;
    h[4] = 0;
    h[5] = 1;
    h[6] = h[7] = h[8] = h[9] = 0;
    h[10] = (uint8_t) (cmd >> 8);
    h[11] = (uint8_t) cmd;
    h[12] = (uint8_t) (seq >> 8);
    h[13] = (uint8_t) seq;
    h[14] = h[15] = 0;
}

/* Write one packet (blocking until written; packets are small). 0 or -1. */
static inline int gf_send(gf_t *f, int i, uint16_t cmd, uint16_t seq, const ProtobufCMessage *m)
{
    gf_conn_t *k = &f->c[i];
    if (k->fd < 0)
        return -1;
    size_t bl = m ? protobuf_c_message_get_packed_size(m) : 0;
    uint8_t stackbuf[512];
    uint8_t *b = 16 + bl <= sizeof(stackbuf) ? stackbuf : malloc(16 + bl);
    if (!b)
        return -1;
    gf_hdr(b, (uint32_t) (16 + bl), cmd, seq);
    if (m)
        protobuf_c_message_pack(m, b + 16);
    size_t off = 0;
    int64_t until = e2e_now_ms() + 10000;
    while (off < 16 + bl) {
        ssize_t w = send(k->fd, b + off, 16 + bl - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t) w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR) && e2e_now_ms() < until) {
            struct pollfd pf = {k->fd, POLLOUT, 0};
            poll(&pf, 1, 10);
        } else {
            break;
        }
    }
    if (b != stackbuf)
        free(b);
    k->last_send = e2e_now_ms();
    return off == 16 + bl ? 0 : -1;
}

static inline void gf_close(gf_t *f, int i)
{
    gf_conn_t *k = &f->c[i];
    if (k->fd >= 0) {
        epoll_ctl(f->ep, EPOLL_CTL_DEL, k->fd, NULL);
        close(k->fd);
    }
    k->fd = -1;
    k->state = -1;
}

static inline void gf_packet(gf_t *f, int i, uint16_t cmd, uint16_t seq, const uint8_t *body,
                             size_t bl)
{
    gf_conn_t *k = &f->c[i];
    if (k->want_cmd && cmd == k->want_cmd && seq == k->want_seq) {
        free(k->rsp);
        k->rsp = malloc(bl ? bl : 1);
        if (k->rsp && bl)
            memcpy(k->rsp, body, bl);
        k->rsp_len = bl;
        k->have_rsp = 1;
    }
    switch (cmd) {
    case IM_CMD_AUTH_TOKEN_RSP: {
        CIM__Def__CIMAuthTokenRsp *r = cim__def__cimauth_token_rsp__unpack(NULL, bl, body);
        k->state = r && r->result_code == 200 ? 1 : -1;
        if (r)
            cim__def__cimauth_token_rsp__free_unpacked(r, NULL);
        break;
    }
    case IM_CMD_MSG_DATA: {
        CIM__Def__CIMMsgData *d = cim__def__cimmsg_data__unpack(NULL, bl, body);
        if (!d)
            break;
        k->n_msg++;
        if (d->seq != k->max_seq + 1)
            k->gaps++;
        if (d->seq > k->max_seq)
            k->max_seq = d->seq;
        if (f->watch_cmid[0] && !strcmp(d->client_msg_id, f->watch_cmid) && !k->got_ms) {
            k->got_ms = e2e_now_ms();
            k->got_seq = d->seq;
            f->watch_got++;
        }
        if (f->confirm && d->from_user_id != k->uid) {
            CIM__Def__CIMMsgDataAck a = CIM__DEF__CIMMSG_DATA_ACK__INIT;
            a.from_user_id = d->from_user_id;
            a.to_session_id = d->to_session_id;
            a.client_msg_id = d->client_msg_id;
            a.server_msg_id = d->server_msg_id;
            a.session_type = d->session_type;
            gf_send(f, i, IM_CMD_MSG_DATA_ACK, 0, (const ProtobufCMessage *) &a);
        }
        cim__def__cimmsg_data__free_unpacked(d, NULL);
        break;
    }
    case IM_CMD_MSG_DATA_ACK: {
        CIM__Def__CIMMsgDataAck *a = cim__def__cimmsg_data_ack__unpack(NULL, bl, body);
        if (a && f->watch_cmid[0] && !strcmp(a->client_msg_id, f->watch_cmid)) {
            f->ack_ms = e2e_now_ms();
            f->ack_res = a->res_code;
            f->ack_seq = a->seq;
        }
        if (a)
            cim__def__cimmsg_data_ack__free_unpacked(a, NULL);
        break;
    }
    case IM_CMD_GROUP_MEMBER_CHANGED:
        k->n_changed++;
        break;
    default:
        break;
    }
}

static inline void gf_read(gf_t *f, int i)
{
    gf_conn_t *k = &f->c[i];
    for (;;) {
        if (k->cap - k->len < 65536) {
            size_t nc = k->cap ? k->cap * 2 : 131072;
            uint8_t *nb = realloc(k->buf, nc);
            if (!nb) {
                gf_close(f, i);
                return;
            }
            k->buf = nb;
            k->cap = nc;
        }
        ssize_t r = recv(k->fd, k->buf + k->len, k->cap - k->len, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            gf_close(f, i);
            return;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        k->len += (size_t) r;
        size_t off = 0;
        while (k->len - off >= 16) {
            const uint8_t *h = k->buf + off;
            uint32_t pl =
                (uint32_t) h[0] << 24 | (uint32_t) h[1] << 16 | (uint32_t) h[2] << 8 | h[3];
            if (pl < 16 || pl > 16 * 1024 * 1024) {
                gf_close(f, i);
                return;
            }
            if (k->len - off < pl)
                break;
            uint16_t cmd = (uint16_t) (h[10] << 8 | h[11]), seq = (uint16_t) (h[12] << 8 | h[13]);
            gf_packet(f, i, cmd, seq, h + 16, pl - 16);
            if (k->fd < 0)
                return;
            off += pl;
        }
        if (off) {
            memmove(k->buf, k->buf + off, k->len - off);
            k->len -= off;
        }
    }
}

/* Read for ms: dispatch what arrives, send due heartbeats. */
static inline void gf_pump(gf_t *f, int ms)
{
    int64_t until = e2e_now_ms() + ms;
    struct epoll_event ev[256];
    for (;;) {
        int64_t now = e2e_now_ms();
        for (int i = 0; i < f->n; i++)
            if (f->c[i].fd >= 0 && now - f->c[i].last_send >= f->hb_ms)
                gf_send(f, i, IM_CMD_HEARTBEAT, 0, NULL);
        int left = (int) (until - now);
        int n = epoll_wait(f->ep, ev, 256, left <= 0 ? 0 : (left > 50 ? 50 : left));
        for (int j = 0; j < n; j++) {
            int i = (int) ev[j].data.u32;
            if (f->c[i].fd >= 0)
                gf_read(f, i);
        }
        if (left <= 0 && n < 256)
            break;
    }
}

/* Connect and token-login users (gate chosen alternately between CIM_GATE1 and CIM_GATE2);
 * 0 when all are logged in. */
static inline int gf_login_all(gf_t *f, const gu_user_t *users, int n, int hb_ms)
{
    memset(f, 0, sizeof(*f));
    f->c = calloc((size_t) n, sizeof(gf_conn_t));
    CHECK(f->c != NULL);
    f->n = n;
    f->hb_ms = hb_ms;
    f->confirm = 1;
    f->ep = epoll_create1(0);
    CHECK(f->ep >= 0);
    struct sockaddr_in addr[2];
    const char *envs[2] = {"CIM_GATE1", "CIM_GATE2"};
    for (int g = 0; g < 2; g++) {
        char host[64];
        snprintf(host, sizeof(host), "%s", e2e_env(envs[g]));
        char *colon = strrchr(host, ':');
        CHECK(colon != NULL);
        *colon = '\0';
        memset(&addr[g], 0, sizeof(addr[g]));
        addr[g].sin_family = AF_INET;
        addr[g].sin_port = htons((uint16_t) atoi(colon + 1));
        CHECK_EQ_INT(inet_pton(AF_INET, host, &addr[g].sin_addr), 1);
    }
    for (int i = 0; i < n; i++)
        f->c[i].fd = -1;
    enum { BATCH = 200 };
    for (int from = 0; from < n; from += BATCH) {
        int to = from + BATCH < n ? from + BATCH : n;
        for (int i = from; i < to; i++) {
            gf_conn_t *k = &f->c[i];
            k->uid = users[i].uid;
            k->token = users[i].token;
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                fprintf(stderr, "  socket: %s (connection %d)\n", strerror(errno), i);
                return -1;
            }
            if (connect(fd, (struct sockaddr *) &addr[i & 1], sizeof(addr[0])) != 0) {
                fprintf(stderr, "  connect: %s (connection %d)\n", strerror(errno), i);
                close(fd);
                return -1;
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            k->fd = fd;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t) i};
            CHECK_EQ_INT(epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &ev), 0);
            CIM__Def__CIMAuthTokenReq q = CIM__DEF__CIMAUTH_TOKEN_REQ__INIT;
            q.user_id = k->uid;
            q.user_token = (char *) k->token;
            q.client_type = CIM__DEF__CIMCLIENT_TYPE__kCIM_CLIENT_TYPE_PC_WINDOWS;
            q.client_version = (char *) "e2e_group";
            gf_send(f, i, IM_CMD_AUTH_TOKEN_REQ, 1, (const ProtobufCMessage *) &q);
        }
        int64_t until = e2e_now_ms() + 10000;
        for (;;) {
            int pending = 0, failed = 0;
            for (int i = from; i < to; i++) {
                pending += f->c[i].state == 0;
                failed += f->c[i].state < 0;
            }
            if (failed) {
                fprintf(stderr, "  %d token login(s) failed or closed\n", failed);
                return -1;
            }
            if (!pending)
                break;
            if (e2e_now_ms() > until) {
                fprintf(stderr, "  %d token login(s) unanswered after 10 s\n", pending);
                return -1;
            }
            gf_pump(f, 5);
        }
    }
    return 0;
}

/* Request on connection i; waits (pumping everything) for rsp_cmd with the same seq. The
 * unpacked response (caller frees) or NULL. */
static inline ProtobufCMessage *gf_call(gf_t *f, int i, uint16_t cmd, const ProtobufCMessage *req,
                                        uint16_t rsp_cmd, const ProtobufCMessageDescriptor *d,
                                        int timeout_ms)
{
    gf_conn_t *k = &f->c[i];
    k->seq = (uint16_t) (k->seq % 60000 + 2);
    k->want_cmd = rsp_cmd;
    k->want_seq = k->seq;
    k->have_rsp = 0;
    if (gf_send(f, i, cmd, k->seq, req) != 0)
        return NULL;
    int64_t until = e2e_now_ms() + timeout_ms;
    while (!k->have_rsp && e2e_now_ms() < until && k->fd >= 0)
        gf_pump(f, 5);
    k->want_cmd = 0;
    if (!k->have_rsp)
        return NULL;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, k->rsp_len, k->rsp);
    free(k->rsp);
    k->rsp = NULL;
    return m;
}

/* Connections still open. */
static inline int gf_open(const gf_t *f)
{
    int n = 0;
    for (int i = 0; i < f->n; i++)
        n += f->c[i].fd >= 0;
    return n;
}

/* Pump until every open connection has max_seq >= want (or timeout); the number short. */
static inline int gf_wait_seq(gf_t *f, uint64_t want, int timeout_ms)
{
    int64_t until = e2e_now_ms() + timeout_ms;
    for (;;) {
        int short_ = 0;
        for (int i = 0; i < f->n; i++)
            short_ += f->c[i].fd >= 0 && f->c[i].max_seq < want;
        if (!short_ || e2e_now_ms() > until)
            return short_;
        gf_pump(f, 10);
    }
}

/* Time one group message sent by connection `from`: fills *ack_ms and *last_ms (relative to the
 * send; -1 when missing) and returns the number of other members that got it. */
static inline uint32_t gf_time_message(gf_t *f, int from, uint64_t gid, int timeout_ms,
                                       int64_t *ack_ms, int64_t *last_ms)
{
    static unsigned serial;
    for (int i = 0; i < f->n; i++)
        f->c[i].got_ms = 0;
    f->watch_got = 0;
    f->ack_ms = 0;
    f->ack_res = 0;
    snprintf(f->watch_cmid, sizeof(f->watch_cmid), "gbig-%d-%u-%lld", (int) getpid(), serial++,
             (long long) e2e_now_ms());
    f->watch_gid = gid;
    CIM__Def__CIMMsgData d = CIM__DEF__CIMMSG_DATA__INIT;
    d.to_session_id = gid;
    d.client_msg_id = f->watch_cmid;
    d.msg_type = CIM__DEF__CIMMSG_TYPE__kCIM_MSG_TYPE_TEXT;
    d.session_type = CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_GROUP;
    d.msg_data.data = (uint8_t *) "fan-out timing";
    d.msg_data.len = 14;
    int64_t t0 = e2e_now_ms();
    f->c[from].seq = (uint16_t) (f->c[from].seq % 60000 + 2);
    CHECK_EQ_INT(gf_send(f, from, IM_CMD_MSG_DATA, f->c[from].seq, (const ProtobufCMessage *) &d),
                 0);
    uint32_t want = 0;
    for (int i = 0; i < f->n; i++)
        want += i != from && f->c[i].fd >= 0;
    int64_t until = t0 + timeout_ms;
    while ((f->watch_got < want || !f->ack_ms) && e2e_now_ms() < until)
        gf_pump(f, 2);
    *ack_ms = f->ack_ms ? f->ack_ms - t0 : -1;
    int64_t last = -1;
    for (int i = 0; i < f->n; i++)
        if (f->c[i].got_ms && f->c[i].got_ms - t0 > last)
            last = f->c[i].got_ms - t0;
    *last_ms = f->watch_got == want ? last : -1;
    return f->watch_got;
}

static inline void gf_free(gf_t *f)
{
    for (int i = 0; i < f->n; i++) {
        if (f->c[i].fd >= 0)
            close(f->c[i].fd);
        free(f->c[i].buf);
        free(f->c[i].rsp);
    }
    free(f->c);
    if (f->ep >= 0)
        close(f->ep);
    memset(f, 0, sizeof(*f));
    f->ep = -1;
}

/* The heartbeat interval for the gates' idle timeout (gate_idle_timeout in gate1.conf; the
 * last setting wins): a third of it, at most 20 s. */
static inline int gf_hb_ms(void)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/gate1.conf", e2e_env("CIM_TEST_DIR"));
    FILE *fp = fopen(path, "r");
    int idle = 3;
    if (fp) {
        char line[512];
        while (fgets(line, sizeof(line), fp)) {
            int v;
            if (sscanf(line, " gate_idle_timeout = %d", &v) == 1)
                idle = v;
        }
        fclose(fp);
    }
    int hb = idle * 1000 / 3;
    return hb > 20000 ? 20000 : (hb < 500 ? 500 : hb);
}

/* Create a group from fleet connection `owner` with every other fleet member (0 on failure). */
static inline uint64_t gf_create_group(gf_t *f, int owner, const char *name)
{
    uint64_t *ids = malloc((size_t) f->n * sizeof(uint64_t));
    CHECK(ids != NULL);
    size_t n = 0;
    for (int i = 0; i < f->n; i++)
        if (i != owner)
            ids[n++] = f->c[i].uid;
    CIM__Def__CIMGroupCreateReq q = CIM__DEF__CIMGROUP_CREATE_REQ__INIT;
    q.group_name = (char *) name;
    q.n_member_id_list = n;
    q.member_id_list = ids;
    CIM__Def__CIMGroupCreateRsp *r = (CIM__Def__CIMGroupCreateRsp *) gf_call(
        f, owner, IM_CMD_GROUP_CREATE_REQ, (const ProtobufCMessage *) &q, IM_CMD_GROUP_CREATE_RSP,
        &cim__def__cimgroup_create_rsp__descriptor, 60000);
    free(ids);
    if (!r) {
        fprintf(stderr, "  create of a %d-member group: no answer\n", f->n);
        return 0;
    }
    uint64_t gid = 0;
    if (r->result_code == 200 && r->group_info && r->n_member_id_list == (size_t) f->n)
        gid = r->group_info->group_id;
    else
        fprintf(stderr, "  create of a %d-member group: result %u, %zu members\n", f->n,
                r->result_code, r->n_member_id_list);
    cim__def__cimgroup_create_rsp__free_unpacked(r, NULL);
    return gid;
}

#endif
