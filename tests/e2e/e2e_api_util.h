/* e2e_api_util: helpers shared by e2e_api, e2e_presence, e2e_webhook and e2e_console_groups
 * (header-only; include after ../test.h): business API calls with the harness key, 0x0603
 * pages, waiting for a given push. */
#ifndef CIM_E2E_API_UTIL_H
#define CIM_E2E_API_UTIL_H

#include "e2e_common.h"
#include "e2e_http.h"

#define AU_HB_MS 1000 /* heartbeat well inside the test stack's 3 s idle timeout */

/* A business API call on CIM_API (or api_env) with the harness key; the test fails when the
 * server cannot be reached. */
static inline void au_api_on(const char *api_env, const char *method, const char *path,
                             const char *body, e2e_http_rsp_t *r)
{
    int rc = e2e_http(e2e_env(api_env), method, path, e2e_env("CIM_API_KEY"), body, r);
    if (rc != 0)
        fprintf(stderr, "  %s %s on %s: no HTTP answer\n", method, path, api_env);
    CHECK_EQ_INT(rc, 0);
}

static inline void au_api(const char *method, const char *path, const char *body, e2e_http_rsp_t *r)
{
    au_api_on("CIM_API", method, path, body, r);
}

/* Status and error_code of an answer, checked; the answer body is printed on a mismatch. */
#define AU_EXPECT(r, st, code)                                                                     \
    do {                                                                                           \
        if ((r)->status != (st) || e2e_json_int((r), "error_code", -1) != (code))                  \
            fprintf(stderr, "  answer: HTTP %d %s\n", (r)->status,                                 \
                    (r)->body ? (r)->body : "(none)");                                             \
        CHECK_EQ_INT((r)->status, (st));                                                           \
        CHECK_EQ_INT(e2e_json_int((r), "error_code", -1), (code));                                 \
    } while (0)

/* Log in with a heartbeat that keeps the connection open in the test stack. */
static inline cim_client_t *au_user(const char *gate_env, const char *tag, uint32_t ct,
                                    uint64_t *uid, char *name)
{
    cim_client_t *c = e2e_new_user(gate_env, tag, ct, uid, name);
    cim_set_heartbeat_interval(c, AU_HB_MS);
    return c;
}

static inline cim_client_t *au_login(const char *gate_env, const char *name, uint32_t ct)
{
    cim_client_t *c = e2e_login(gate_env, name, E2E_PWD, ct);
    cim_set_heartbeat_interval(c, AU_HB_MS);
    return c;
}

/* 0x0603: 0 and *out (caller frees), or the cim_call error / CIM_ERESULT. */
static inline int au_online(cim_client_t *c, uint32_t offset, uint32_t limit, uint32_t subscribe,
                            CIM__Def__CIMOnlineUserListRsp **out)
{
    CIM__Def__CIMOnlineUserListReq q = CIM__DEF__CIMONLINE_USER_LIST_REQ__INIT;
    q.offset = offset;
    q.limit = limit;
    q.subscribe = subscribe;
    *out = NULL;
    int rc = cim_call(c, IM_CMD_ONLINE_LIST_REQ, &q.base, IM_CMD_ONLINE_LIST_RSP,
                      &cim__def__cimonline_user_list_rsp__descriptor, (ProtobufCMessage **) out,
                      E2E_CALL_MS);
    if (rc == 0 && (*out)->result_code != 0 && (*out)->result_code != 200) {
        fprintf(stderr, "  0x0603 result_code %u\n", (*out)->result_code);
        rc = CIM_ERESULT;
    }
    return rc;
}

static inline void au_online_free(CIM__Def__CIMOnlineUserListRsp *r)
{
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Wait for a 0x0605 about uid (others are dropped): 1 with *online / *ct, or 0 on timeout. */
static inline int au_presence(cim_client_t *c, uint64_t uid, int timeout_ms, int *online,
                              uint32_t *ct)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        int left = (int) (end - e2e_now_ms());
        if (left <= 0)
            return 0;
        cim_packet_t *p = NULL;
        int rc = cim_next_push(c, IM_CMD_PRESENCE_NOTIFY, left, &p);
        /* only a timeout means "no event": a closed subscriber would pass every wait for none */
        CHECK(rc == 0 || rc == CIM_ETIMEDOUT);
        if (rc != 0)
            return 0;
        CIM__Def__CIMPresenceNotify *n = (CIM__Def__CIMPresenceNotify *) cim_packet_unpack(
            p, &cim__def__cimpresence_notify__descriptor);
        cim_packet_free(p);
        CHECK(n != NULL);
        int mine = n->user_id == uid;
        if (mine) {
            if (online)
                *online = n->online;
            if (ct)
                *ct = (uint32_t) n->client_type;
        }
        protobuf_c_message_free_unpacked(&n->base, NULL);
        if (mine)
            return 1;
    }
}

/* Wait for a 0x0301 whose msg_data is text: 1 with *seq / *from, or 0 on timeout. */
static inline int au_msg(cim_client_t *c, const char *text, int timeout_ms, uint64_t *seq,
                         uint64_t *from)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        int left = (int) (end - e2e_now_ms());
        if (left <= 0)
            return 0;
        cim_packet_t *p = NULL;
        if (cim_next_push(c, IM_CMD_MSG_DATA, left, &p) != 0)
            return 0;
        CIM__Def__CIMMsgData *d =
            (CIM__Def__CIMMsgData *) cim_packet_unpack(p, &cim__def__cimmsg_data__descriptor);
        cim_packet_free(p);
        CHECK(d != NULL);
        int hit = d->msg_data.len == strlen(text) && !memcmp(d->msg_data.data, text, strlen(text));
        if (hit) {
            if (seq)
                *seq = d->seq;
            if (from)
                *from = d->from_user_id;
        }
        protobuf_c_message_free_unpacked(&d->base, NULL);
        if (hit)
            return 1;
    }
}

/* The entry with this text in the user's inbox (sync from 0): its seq, or 0 when absent. */
static inline uint64_t au_synced(cim_client_t *c, const char *text)
{
    CIM__Def__CIMSyncRsp *r = NULL;
    uint32_t code = 0;
    uint64_t after = 0, found = 0;
    for (int page = 0; page < 100; page++) {
        CHECK_EQ_INT(cim_sync_page(c, after, 500, &r, &code), 0);
        for (size_t i = 0; i < r->n_msg_list; i++) {
            const CIM__Def__CIMMsgInfo *m = r->msg_list[i];
            if (m->msg_data.len == strlen(text) && !memcmp(m->msg_data.data, text, strlen(text)))
                found = m->seq;
            after = m->seq;
        }
        int more = r->has_more && r->n_msg_list;
        cim__def__cimsync_rsp__free_unpacked(r, NULL);
        if (!more)
            break;
    }
    return found;
}

/* Log in without the automatic sync (the test syncs itself). */
static inline cim_client_t *au_login_nosync(const char *gate_env, const char *name)
{
    cim_client_t *c = e2e_connect(gate_env);
    cim_set_auto_sync(c, 0);
    cim_set_heartbeat_interval(c, AU_HB_MS);
    uint32_t code = 0;
    int rc = cim_login_password(c, name, E2E_PWD, IM_CT_PC_WINDOWS, &code);
    if (rc != 0)
        fprintf(stderr, "  login %s: %s, code %u\n", name, cim_strerror(rc), code);
    CHECK_EQ_INT(rc, 0);
    return c;
}

/* A unique text for a test message. */
static inline void au_text(char *out, size_t n, const char *what)
{
    char u[40];
    e2e_uniq(u, sizeof(u), "t");
    snprintf(out, n, "%s %s", what, u);
}

/* GET /api/v1/online/count -> online_users (and *conns). */
static inline long long au_online_count(long long *conns)
{
    e2e_http_rsp_t r;
    au_api("GET", "/api/v1/online/count", NULL, &r);
    AU_EXPECT(&r, 200, 0);
    long long u = e2e_json_int(&r, "online_users", -1);
    if (conns)
        *conns = e2e_json_int(&r, "connections", -1);
    e2e_http_rsp_free(&r);
    CHECK(u >= 0);
    return u;
}

/* GET /api/v1/users/{uid}/online -> 1 online, 0 offline; client types into types[8] (*nt). */
static inline int au_user_online(uint64_t uid, uint32_t *types, size_t *nt)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/online", uid);
    e2e_http_rsp_t r;
    au_api("GET", path, NULL, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK_EQ_INT(e2e_json_int(&r, "user_id", 0), uid);
    json_t *on = json_object_get(r.json, "online");
    json_t *ct = json_object_get(r.json, "client_types");
    CHECK(json_is_boolean(on));
    CHECK(json_is_array(ct));
    size_t k = 0;
    for (size_t i = 0; i < json_array_size(ct) && k < 8; i++)
        if (types)
            types[k++] = (uint32_t) json_integer_value(json_array_get(ct, i));
    if (nt)
        *nt = json_array_size(ct);
    int v = json_is_true(on);
    CHECK_EQ_INT(v, json_array_size(ct) > 0);
    e2e_http_rsp_free(&r);
    return v;
}

#endif
