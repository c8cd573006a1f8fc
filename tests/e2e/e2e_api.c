/* End-to-end: the business HTTP API (DESIGN.md "Business HTTP API"): every endpoint, its
 * answers and its error statuses, with real clients on both gates observing the effects. */
#include "../test.h"
#include "e2e_api_util.h"

/* a user that exists but is offline: registered, never logged in */
static uint64_t offline_user(char *name)
{
    char nm[40];
    e2e_uniq(nm, sizeof(nm), "apioff");
    uint64_t uid = e2e_register("CIM_GATE1", nm, E2E_PWD);
    if (name)
        snprintf(name, 40, "%s", nm);
    return uid;
}

#define UNKNOWN_UID 9007199254000000ULL /* below 2^53, never allocated in a test run */

TEST(api_push_stored_online_and_offline)
{
    uint64_t a_id, b_id;
    char b_name[40], text[128], body[512];
    cim_client_t *a = au_user("CIM_GATE1", "apion", IM_CT_PC_WINDOWS, &a_id, NULL);
    b_id = offline_user(b_name);
    au_text(text, sizeof(text), "stored push");
    snprintf(body, sizeof(body), "{\"to_user_ids\":[%" PRIu64 ",%" PRIu64 "],\"msg_data\":\"%s\"}",
             a_id, b_id, text);
    e2e_http_rsp_t r;
    au_api("POST", "/api/v1/push", body, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK_EQ_INT(e2e_json_int(&r, "online", -1), 1);
    CHECK_EQ_INT(e2e_json_int(&r, "stored", -1), 2);
    e2e_http_rsp_free(&r);

    /* the online user gets it now, from the system account, with an inbox seq */
    uint64_t seq = 0, from = 99;
    CHECK(au_msg(a, text, 5000, &seq, &from));
    CHECK(seq > 0);
    CHECK_EQ_INT(from, 0);
    CHECK_EQ_INT(au_synced(a, text), seq);

    /* the offline one finds it at sync */
    cim_client_t *b = au_login_nosync("CIM_GATE2", b_name);
    uint64_t bseq = au_synced(b, text);
    CHECK(bseq > 0);

    /* msg_data_base64, and from_user_id given */
    snprintf(body, sizeof(body),
             "{\"to_user_ids\":[%" PRIu64 "],\"msg_data_base64\":\"aGVsbG8gYjY0\","
             "\"from_user_id\":%" PRIu64 "}",
             b_id, a_id);
    au_api("POST", "/api/v1/push", body, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK_EQ_INT(e2e_json_int(&r, "online", -1), 1);
    CHECK_EQ_INT(e2e_json_int(&r, "stored", -1), 1);
    e2e_http_rsp_free(&r);
    CHECK(au_msg(b, "hello b64", 5000, &seq, &from));
    CHECK_EQ_INT(seq, bseq + 1);
    CHECK_EQ_INT(from, a_id);
    cim_client_free(a);
    cim_client_free(b);
}

TEST(api_push_transient)
{
    uint64_t a_id, b_id;
    char b_name[40], text[128], body[512];
    cim_client_t *a = au_user("CIM_GATE2", "apitr", IM_CT_ANDROID, &a_id, NULL);
    b_id = offline_user(b_name);
    au_text(text, sizeof(text), "transient push");
    snprintf(body, sizeof(body),
             "{\"to_user_ids\":[%" PRIu64 ",%" PRIu64 "],\"msg_data\":\"%s\",\"transient\":true}",
             a_id, b_id, text);
    e2e_http_rsp_t r;
    au_api("POST", "/api/v1/push", body, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK_EQ_INT(e2e_json_int(&r, "online", -1), 1);
    CHECK_EQ_INT(e2e_json_int(&r, "stored", -1), 0);
    e2e_http_rsp_free(&r);
    uint64_t seq = 99, from = 99;
    CHECK(au_msg(a, text, 5000, &seq, &from));
    CHECK_EQ_INT(seq, 0);
    CHECK_EQ_INT(from, 0);
    CHECK_EQ_INT(au_synced(a, text), 0); /* not stored */

    cim_client_t *b = au_login_nosync("CIM_GATE1", b_name);
    CHECK_EQ_INT(au_synced(b, text), 0);
    CHECK(!au_msg(b, text, 1000, NULL, NULL));
    cim_client_free(a);
    cim_client_free(b);
}

TEST(api_push_all_two_gates)
{
    uint64_t a_id, b_id;
    char text[128], body[512];
    cim_client_t *a = au_user("CIM_GATE1", "apiall", IM_CT_PC_WINDOWS, &a_id, NULL);
    cim_client_t *b = au_user("CIM_GATE2", "apiall", IM_CT_WEB, &b_id, NULL);
    au_text(text, sizeof(text), "to everyone");
    snprintf(body, sizeof(body), "{\"all\":true,\"msg_data\":\"%s\"}", text);
    e2e_http_rsp_t r;
    au_api_on("CIM_API2", "POST", "/api/v1/push", body, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK(e2e_json_int(&r, "online", -1) >= 2);
    CHECK(e2e_json_int(&r, "stored", -1) >= 2);
    e2e_http_rsp_free(&r);
    uint64_t sa = 0, sb = 0;
    CHECK(au_msg(a, text, 5000, &sa, NULL));
    CHECK(au_msg(b, text, 5000, &sb, NULL));
    CHECK(sa > 0 && sb > 0);

    /* transient to all: pushed, not stored */
    au_text(text, sizeof(text), "everyone now");
    snprintf(body, sizeof(body), "{\"all\":true,\"msg_data\":\"%s\",\"transient\":true}", text);
    au_api("POST", "/api/v1/push", body, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK(e2e_json_int(&r, "online", -1) >= 2);
    CHECK_EQ_INT(e2e_json_int(&r, "stored", -1), 0);
    e2e_http_rsp_free(&r);
    CHECK(au_msg(a, text, 5000, &sa, NULL));
    CHECK(au_msg(b, text, 5000, &sb, NULL));
    CHECK_EQ_INT(sa, 0);
    CHECK_EQ_INT(sb, 0);
    cim_client_free(a);
    cim_client_free(b);
}

TEST(api_kick)
{
    uint64_t uid;
    char name[40], path[128];
    cim_client_t *a = au_user("CIM_GATE1", "apikick", IM_CT_PC_WINDOWS, &uid, name);
    cim_client_t *b = au_login("CIM_GATE2", name, IM_CT_ANDROID);
    e2e_http_rsp_t r;
    snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/kick", uid);
    au_api("POST", path, NULL, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK_EQ_INT(e2e_json_int(&r, "kicked", -1), 2);
    e2e_http_rsp_free(&r);
    cim_client_t *cs[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        cim_packet_t *p = NULL;
        CHECK_EQ_INT(cim_next_push(cs[i], IM_CMD_KICKOUT_NOTIFY, 5000, &p), 0);
        CIM__Def__CIMKickoutNotify *k = (CIM__Def__CIMKickoutNotify *) cim_packet_unpack(
            p, &cim__def__cimkickout_notify__descriptor);
        cim_packet_free(p);
        CHECK(k != NULL);
        CHECK_EQ_INT(k->reason, IM_KICK_API);
        CHECK_EQ_INT(k->user_id, uid);
        protobuf_c_message_free_unpacked(&k->base, NULL);
        CHECK_EQ_INT(cim_wait_closed(cs[i], 5000), 1);
    }
    /* the routes go when the gates report the closes */
    int64_t end = e2e_now_ms() + 5000;
    while (e2e_now_ms() < end && au_user_online(uid, NULL, NULL))
        e2e_sleep_ms(100);
    CHECK_EQ_INT(au_user_online(uid, NULL, NULL), 0);
    /* nobody to kick now */
    au_api("POST", path, "", &r);
    AU_EXPECT(&r, 200, 0);
    CHECK_EQ_INT(e2e_json_int(&r, "kicked", -1), 0);
    e2e_http_rsp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/users/%llu/kick", UNKNOWN_UID);
    au_api("POST", path, NULL, &r);
    AU_EXPECT(&r, 404, 9002);
    e2e_http_rsp_free(&r);
    cim_client_free(a);
    cim_client_free(b);
}

TEST(api_user_online)
{
    uint64_t uid;
    char name[40], path[128];
    cim_client_t *a = au_user("CIM_GATE1", "apionl", IM_CT_ANDROID, &uid, name);
    cim_client_t *b = au_login("CIM_GATE2", name, IM_CT_WEB);
    uint32_t types[8];
    size_t nt = 0;
    CHECK_EQ_INT(au_user_online(uid, types, &nt), 1);
    CHECK_EQ_INT(nt, 2);
    CHECK((types[0] == 1 && types[1] == 3) || (types[0] == 3 && types[1] == 1));
    /* the other logic answers the same */
    snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/online", uid);
    e2e_http_rsp_t r;
    au_api_on("CIM_API2", "GET", path, NULL, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK(json_is_true(json_object_get(r.json, "online")));
    e2e_http_rsp_free(&r);

    cim_client_free(b); /* the web device leaves */
    int64_t end = e2e_now_ms() + 5000;
    while (e2e_now_ms() < end) {
        au_user_online(uid, types, &nt);
        if (nt == 1)
            break;
        e2e_sleep_ms(100);
    }
    CHECK_EQ_INT(nt, 1);
    CHECK_EQ_INT(types[0], 1);
    uint32_t code = 0;
    CHECK_EQ_INT(cim_logout(a, &code), 0);
    cim_wait_closed(a, 3000);
    end = e2e_now_ms() + 5000;
    while (e2e_now_ms() < end && au_user_online(uid, NULL, NULL))
        e2e_sleep_ms(100);
    CHECK_EQ_INT(au_user_online(uid, NULL, &nt), 0);
    CHECK_EQ_INT(nt, 0);
    CHECK_EQ_INT(au_user_online(offline_user(NULL), NULL, NULL), 0);

    snprintf(path, sizeof(path), "/api/v1/users/%llu/online", UNKNOWN_UID);
    au_api("GET", path, NULL, &r);
    AU_EXPECT(&r, 404, 9002);
    e2e_http_rsp_free(&r);
    cim_client_free(a);
}

TEST(api_online_count)
{
    e2e_sleep_ms(1000); /* connections of the earlier cases are gone */
    long long c0 = 0, u0 = au_online_count(&c0);
    CHECK(c0 >= u0);
    uint64_t id;
    char name[40];
    cim_client_t *cs[4];
    cs[0] = au_user("CIM_GATE1", "apicnt", IM_CT_PC_WINDOWS, &id, name);
    cs[1] = au_login("CIM_GATE2", name, IM_CT_IOS); /* same user, second device */
    cs[2] = au_user("CIM_GATE2", "apicnt", IM_CT_PC_WINDOWS, NULL, NULL);
    cs[3] = au_user("CIM_GATE1", "apicnt", IM_CT_WEB, NULL, NULL);
    long long c1 = 0, u1 = au_online_count(&c1);
    CHECK_EQ_INT(u1 - u0, 3);
    CHECK_EQ_INT(c1 - c0, 4);
    /* the 0x0603 total agrees */
    CIM__Def__CIMOnlineUserListRsp *o = NULL;
    CHECK_EQ_INT(au_online(cs[2], 0, 1, 0, &o), 0);
    CHECK_EQ_INT(o->total_online, u1);
    au_online_free(o);
    for (int i = 0; i < 4; i++)
        cim_client_free(cs[i]);
    int64_t end = e2e_now_ms() + 5000;
    long long c2 = 0, u2 = 0;
    while (e2e_now_ms() < end) {
        u2 = au_online_count(&c2);
        if (u2 == u0 && c2 == c0)
            break;
        e2e_sleep_ms(100);
    }
    CHECK_EQ_INT(u2, u0);
    CHECK_EQ_INT(c2, c0);
}

TEST(api_users_and_tokens)
{
    char name[40], body[512], path[128];
    e2e_uniq(name, sizeof(name), "apiusr");
    /* register with a name */
    snprintf(body, sizeof(body),
             "{\"user_name\":\"%s\",\"password\":\"%s\",\"nick_name\":\"Api User\"}", name,
             E2E_PWD);
    e2e_http_rsp_t r;
    au_api("POST", "/api/v1/users", body, &r);
    AU_EXPECT(&r, 200, 0);
    uint64_t uid = (uint64_t) e2e_json_int(&r, "user_id", 0);
    CHECK(uid > 0);
    char token[512];
    CHECK(e2e_json_str(&r, "token") != NULL);
    snprintf(token, sizeof(token), "%s", e2e_json_str(&r, "token"));
    e2e_http_rsp_free(&r);
    cim_client_t *c = au_login("CIM_GATE1", name, IM_CT_PC_WINDOWS);
    CHECK_EQ_INT(cim_user_id(c), uid);
    cim_client_free(c);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", uid, token, IM_CT_WEB, NULL), 200);
    /* the same name again (case-insensitively) */
    for (char *p = name; *p; p++)
        *p = (char) (*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    snprintf(body, sizeof(body), "{\"user_name\":\"%s\",\"password\":\"%s\",\"nick_name\":\"x\"}",
             name, E2E_PWD);
    au_api("POST", "/api/v1/users", body, &r);
    AU_EXPECT(&r, 409, 9000);
    e2e_http_rsp_free(&r);

    /* import with an id: free id = a fresh one + a large offset */
    uint64_t imp = uid + 400000000ULL + (uint64_t) (e2e_now_ms() % 100000000);
    snprintf(body, sizeof(body), "{\"user_id\":%" PRIu64 ",\"nick_name\":\"Imported\"}", imp);
    au_api("POST", "/api/v1/users", body, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK_EQ_INT(e2e_json_int(&r, "user_id", 0), imp);
    e2e_http_rsp_free(&r);
    au_api("POST", "/api/v1/users", body, &r);
    AU_EXPECT(&r, 409, 9000);
    e2e_http_rsp_free(&r);

    /* GET token: a working token; POST token: rotation, the old one stops working */
    snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/token", imp);
    au_api("GET", path, NULL, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK_EQ_INT(e2e_json_int(&r, "user_id", 0), imp);
    snprintf(token, sizeof(token), "%s", e2e_json_str(&r, "token"));
    e2e_http_rsp_free(&r);
    cim_client_t *held = NULL;
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", imp, token, IM_CT_ANDROID, &held), 200);
    au_api("POST", path, NULL, &r);
    AU_EXPECT(&r, 200, 0);
    char token2[512];
    snprintf(token2, sizeof(token2), "%s", e2e_json_str(&r, "token"));
    e2e_http_rsp_free(&r);
    CHECK(strcmp(token, token2) != 0);
    /* the connection made with the old token is kicked (reason 2) */
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(held, IM_CMD_KICKOUT_NOTIFY, 5000, &p), 0);
    cim_packet_free(p);
    CHECK_EQ_INT(cim_kick_reason(held), IM_KICK_API);
    cim_client_free(held);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", imp, token, IM_CT_ANDROID, NULL), 2002);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", imp, token2, IM_CT_ANDROID, NULL), 200);

    snprintf(path, sizeof(path), "/api/v1/users/%llu/token", UNKNOWN_UID);
    au_api("GET", path, NULL, &r);
    AU_EXPECT(&r, 404, 9002);
    e2e_http_rsp_free(&r);
    au_api("POST", path, NULL, &r);
    AU_EXPECT(&r, 404, 9002);
    e2e_http_rsp_free(&r);

    /* field rules */
    const char *bad[] = {
        "{\"user_id\":\"12\",\"nick_name\":\"x\"}",
        "{\"user_id\":-5,\"nick_name\":\"x\"}",
        "{\"user_id\":9007199254740993,\"nick_name\":\"x\"}",
        "{\"user_name\":7,\"password\":\"secret-pw\",\"nick_name\":\"x\"}",
        "{\"user_name\":\"a b\",\"password\":\"secret-pw\",\"nick_name\":\"x\"}",
        "{\"user_name\":\"okname_x1\",\"password\":\"123\",\"nick_name\":\"x\"}",
        "{\"user_name\":\"okname_x2\",\"password\":\"secret-pw\",\"nick_name\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        au_api("POST", "/api/v1/users", bad[i], &r);
        if (r.status != 400)
            fprintf(stderr, "  body %s -> %d %s\n", bad[i], r.status, r.body);
        CHECK_EQ_INT(r.status, 400);
        long long code = e2e_json_int(&r, "error_code", -1);
        CHECK(code == 3001 || code == 9001);
        e2e_http_rsp_free(&r);
    }
}

/* 0x0509 of one group as seen by member c */
static CIM__Def__CIMGroupInfo *group_info(cim_client_t *c, uint64_t gid,
                                          CIM__Def__CIMGroupInfoRsp **hold)
{
    CIM__Def__CIMGroupVersionInfo v = CIM__DEF__CIMGROUP_VERSION_INFO__INIT, *vp = &v;
    v.group_id = gid;
    CIM__Def__CIMGroupInfoReq q = CIM__DEF__CIMGROUP_INFO_REQ__INIT;
    q.n_group_version_list = 1;
    q.group_version_list = &vp;
    CHECK_EQ_INT(cim_call(c, IM_CMD_GROUP_INFO_REQ, &q.base, IM_CMD_GROUP_INFO_RSP,
                          &cim__def__cimgroup_info_rsp__descriptor, (ProtobufCMessage **) hold,
                          E2E_CALL_MS),
                 0);
    CHECK_EQ_INT((*hold)->result_code, 200);
    CHECK_EQ_INT((*hold)->n_group_info_list, 1);
    return (*hold)->group_info_list[0];
}

static uint32_t group_join(cim_client_t *c, uint64_t gid)
{
    CIM__Def__CIMGroupJoinReq q = CIM__DEF__CIMGROUP_JOIN_REQ__INIT;
    q.group_id = gid;
    CIM__Def__CIMGroupJoinRsp *r = NULL;
    CHECK_EQ_INT(cim_call(c, IM_CMD_GROUP_JOIN_REQ, &q.base, IM_CMD_GROUP_JOIN_RSP,
                          &cim__def__cimgroup_join_rsp__descriptor, (ProtobufCMessage **) &r,
                          E2E_CALL_MS),
                 0);
    uint32_t code = r->result_code;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return code;
}

/* GET members -> sorted-insensitive membership test */
static int api_members(uint64_t gid, const uint64_t *want, size_t nwant)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/groups/%" PRIu64 "/members", gid);
    e2e_http_rsp_t r;
    au_api("GET", path, NULL, &r);
    AU_EXPECT(&r, 200, 0);
    json_t *ids = json_object_get(r.json, "user_ids");
    CHECK(json_is_array(ids));
    int ok = json_array_size(ids) == nwant;
    for (size_t i = 0; ok && i < nwant; i++) {
        int found = 0;
        for (size_t j = 0; j < json_array_size(ids); j++)
            if ((uint64_t) json_integer_value(json_array_get(ids, j)) == want[i])
                found = 1;
        ok = found;
    }
    if (!ok)
        fprintf(stderr, "  members of %" PRIu64 ": %s (want %zu)\n", gid, r.body, nwant);
    e2e_http_rsp_free(&r);
    return ok;
}

TEST(api_groups)
{
    uint64_t a, b, c, d;
    cim_client_t *ca = au_user("CIM_GATE1", "apigrp", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cd = au_user("CIM_GATE2", "apigrp", IM_CT_PC_WINDOWS, &d, NULL);
    b = offline_user(NULL);
    c = offline_user(NULL);
    char body[512], path[128];
    e2e_http_rsp_t r;
    snprintf(body, sizeof(body),
             "{\"owner_id\":%" PRIu64 ",\"group_name\":\"api group\",\"member_ids\":[%" PRIu64 "]}",
             a, b);
    au_api("POST", "/api/v1/groups", body, &r);
    AU_EXPECT(&r, 200, 0);
    uint64_t gid = (uint64_t) e2e_json_int(&r, "group_id", 0);
    CHECK(gid > 0);
    e2e_http_rsp_free(&r);
    uint64_t m1[] = {a, b};
    CHECK(api_members(gid, m1, 2));
    CIM__Def__CIMGroupInfoRsp *hold = NULL;
    CIM__Def__CIMGroupInfo *gi = group_info(ca, gid, &hold);
    CHECK_EQ_INT(gi->group_owner_id, a);
    CHECK_EQ_STR(gi->group_name, "api group");
    protobuf_c_message_free_unpacked(&hold->base, NULL);

    /* add c, remove b */
    snprintf(path, sizeof(path), "/api/v1/groups/%" PRIu64 "/members", gid);
    snprintf(body, sizeof(body), "{\"user_ids\":[%" PRIu64 "]}", c);
    au_api("POST", path, body, &r);
    AU_EXPECT(&r, 200, 0);
    e2e_http_rsp_free(&r);
    uint64_t m2[] = {a, b, c};
    CHECK(api_members(gid, m2, 3));
    snprintf(body, sizeof(body), "{\"user_ids\":[%" PRIu64 "]}", b);
    au_api("DELETE", path, body, &r);
    AU_EXPECT(&r, 200, 0);
    e2e_http_rsp_free(&r);
    uint64_t m3[] = {a, c};
    CHECK(api_members(gid, m3, 2));

    /* PATCH: join_model NEED_AUTH refuses 0x0518, DEFAULT lets d in */
    snprintf(path, sizeof(path), "/api/v1/groups/%" PRIu64, gid);
    au_api("PATCH", path, "{\"join_model\":1}", &r);
    AU_EXPECT(&r, 200, 0);
    e2e_http_rsp_free(&r);
    CHECK_EQ_INT(group_join(cd, gid), 3002);
    au_api("PATCH", path, "{\"join_model\":2}", &r);
    AU_EXPECT(&r, 200, 0);
    e2e_http_rsp_free(&r);
    CHECK_EQ_INT(group_join(cd, gid), 3002);
    au_api("PATCH", path,
           "{\"join_model\":0,\"mute_model\":1,\"group_name\":\"renamed\","
           "\"announcement\":\"read the rules\"}",
           &r);
    AU_EXPECT(&r, 200, 0);
    e2e_http_rsp_free(&r);
    CHECK_EQ_INT(group_join(cd, gid), 200);
    uint64_t m4[] = {a, c, d};
    CHECK(api_members(gid, m4, 3));
    gi = group_info(cd, gid, &hold);
    CHECK_EQ_STR(gi->group_name, "renamed");
    CHECK_EQ_STR(gi->announcement, "read the rules");
    CHECK_EQ_INT(gi->mute_model, 1);
    CHECK_EQ_INT(gi->join_model, 0);
    protobuf_c_message_free_unpacked(&hold->base, NULL);

    /* bad fields */
    const char *bad_patch[] = {"{\"join_model\":5}", "{\"mute_model\":\"all\"}",
                               "{\"group_name\":12}", "{\"announcement\":[1]}"};
    for (size_t i = 0; i < 4; i++) {
        au_api("PATCH", path, bad_patch[i], &r);
        AU_EXPECT(&r, 400, 3001);
        e2e_http_rsp_free(&r);
    }
    const char *bad_create[] = {
        "{\"owner_id\":\"1\",\"group_name\":\"x\",\"member_ids\":[]}",
        "{\"group_name\":\"x\",\"member_ids\":[]}",
        "{\"owner_id\":5,\"group_name\":7,\"member_ids\":[]}",
        "{\"owner_id\":5,\"group_name\":\"x\",\"member_ids\":\"1,2\"}",
        "{\"owner_id\":5,\"group_name\":\"x\",\"member_ids\":[\"1\"]}",
    };
    for (size_t i = 0; i < 5; i++) {
        au_api("POST", "/api/v1/groups", bad_create[i], &r);
        AU_EXPECT(&r, 400, 3001);
        e2e_http_rsp_free(&r);
    }
    snprintf(path, sizeof(path), "/api/v1/groups/%" PRIu64 "/members", gid);
    au_api("POST", path, "{\"user_ids\":[]}", &r);
    AU_EXPECT(&r, 400, 3001);
    e2e_http_rsp_free(&r);
    au_api("DELETE", path, "{\"user_ids\":\"x\"}", &r);
    AU_EXPECT(&r, 400, 3001);
    e2e_http_rsp_free(&r);
    /* an unknown member -> 404 for the whole request */
    snprintf(body, sizeof(body),
             "{\"owner_id\":%" PRIu64 ",\"group_name\":\"x\",\"member_ids\":[%llu]}", a,
             UNKNOWN_UID);
    au_api("POST", "/api/v1/groups", body, &r);
    CHECK_EQ_INT(r.status, 404);
    e2e_http_rsp_free(&r);
    snprintf(body, sizeof(body), "{\"user_ids\":[%llu]}", UNKNOWN_UID);
    au_api("POST", path, body, &r);
    CHECK_EQ_INT(r.status, 404);
    e2e_http_rsp_free(&r);
    CHECK(api_members(gid, m4, 3));

    /* unknown group: every group endpoint says 404 */
    uint64_t nog = 9007199254000001ULL;
    snprintf(path, sizeof(path), "/api/v1/groups/%" PRIu64 "/members", nog);
    au_api("GET", path, NULL, &r);
    AU_EXPECT(&r, 404, 3003);
    e2e_http_rsp_free(&r);
    snprintf(body, sizeof(body), "{\"user_ids\":[%" PRIu64 "]}", a);
    au_api("POST", path, body, &r);
    AU_EXPECT(&r, 404, 3003);
    e2e_http_rsp_free(&r);
    au_api("DELETE", path, body, &r);
    AU_EXPECT(&r, 404, 3003);
    e2e_http_rsp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/groups/%" PRIu64, nog);
    au_api("PATCH", path, "{\"group_name\":\"nobody\"}", &r);
    AU_EXPECT(&r, 404, 3003);
    e2e_http_rsp_free(&r);
    cim_client_free(ca);
    cim_client_free(cd);
}

TEST(api_errors)
{
    const char *api = e2e_env("CIM_API"), *key = e2e_env("CIM_API_KEY");
    e2e_http_rsp_t r;
    /* malformed JSON, and JSON that is not an object */
    const char *bodies[] = {"{\"to_user_ids\":[1", "not json", "[1,2]", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < 4; i++) {
        au_api("POST", "/api/v1/push", bodies[i], &r);
        AU_EXPECT(&r, 400, 3001);
        CHECK(e2e_json_str(&r, "error_msg") != NULL);
        e2e_http_rsp_free(&r);
    }
    au_api("POST", "/api/v1/users", "{", &r);
    AU_EXPECT(&r, 400, 3001);
    e2e_http_rsp_free(&r);
    /* unknown routes and methods */
    const char *routes[][2] = {
        {"GET", "/api/v1/nothing"},          {"GET", "/"},
        {"DELETE", "/api/v1/users"},         {"GET", "/api/v1/push"},
        {"GET", "/api/v1/users/abc/online"}, {"PUT", "/api/v1/online/count"},
        {"GET", "/api/v1/users/0/online"},   {"GET", "/api/v2/online/count"}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        au_api(routes[i][0], routes[i][1], NULL, &r);
        if (r.status != 404)
            fprintf(stderr, "  %s %s -> %d\n", routes[i][0], routes[i][1], r.status);
        AU_EXPECT(&r, 404, 3003);
        e2e_http_rsp_free(&r);
    }
    /* missing or wrong key */
    CHECK_EQ_INT(e2e_http(api, "GET", "/api/v1/online/count", NULL, NULL, &r), 0);
    AU_EXPECT(&r, 401, 3002);
    e2e_http_rsp_free(&r);
    CHECK_EQ_INT(e2e_http(api, "GET", "/api/v1/online/count", "wrong-key", NULL, &r), 0);
    AU_EXPECT(&r, 401, 3002);
    e2e_http_rsp_free(&r);
    char longer[600];
    snprintf(longer, sizeof(longer), "%sx", key);
    CHECK_EQ_INT(
        e2e_http(api, "POST", "/api/v1/push", longer, "{\"all\":true,\"msg_data\":\"x\"}", &r), 0);
    AU_EXPECT(&r, 401, 3002);
    e2e_http_rsp_free(&r);
    /* healthz and metrics need no key */
    CHECK_EQ_INT(e2e_http(api, "GET", "/healthz", NULL, NULL, &r), 0);
    CHECK_EQ_INT(r.status, 200);
    e2e_http_rsp_free(&r);
    CHECK_EQ_INT(e2e_http(api, "GET", "/metrics", NULL, NULL, &r), 0);
    CHECK_EQ_INT(r.status, 200);
    e2e_http_rsp_free(&r);

    /* a body over 1 MiB */
    size_t big = 1200 * 1000;
    char *b = malloc(big + 64);
    CHECK(b != NULL);
    int k = snprintf(b, 64, "{\"all\":true,\"msg_data\":\"");
    memset(b + k, 'x', big);
    strcpy(b + k + big, "\"}");
    au_api("POST", "/api/v1/push", b, &r);
    AU_EXPECT(&r, 413, 3005);
    e2e_http_rsp_free(&r);
    free(b);

    /* wrong types and values */
    const char *push_bad[] = {
        "{\"to_user_ids\":\"12\",\"msg_data\":\"x\"}",
        "{\"to_user_ids\":[\"12\"],\"msg_data\":\"x\"}",
        "{\"to_user_ids\":[12.5],\"msg_data\":\"x\"}",
        "{\"to_user_ids\":[],\"msg_data\":\"x\"}",
        "{\"to_user_ids\":[1],\"msg_data\":5}",
        "{\"to_user_ids\":[1]}",
        "{\"to_user_ids\":[1],\"msg_data\":\"x\",\"msg_data_base64\":\"eA==\"}",
        "{\"to_user_ids\":[1],\"msg_data_base64\":\"***\"}",
        "{\"to_user_ids\":[1],\"msg_data\":\"x\",\"transient\":\"yes\"}",
        "{\"all\":1,\"msg_data\":\"x\"}",
        "{\"to_user_ids\":[1],\"msg_data\":\"x\",\"msg_type\":\"1\"}",
        "{\"to_user_ids\":[1],\"msg_data\":\"x\",\"msg_type\":9}",
        "{\"to_user_ids\":[1],\"msg_data\":\"x\",\"from_user_id\":-1}",
        "{\"all\":false,\"msg_data\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof(push_bad) / sizeof(push_bad[0]); i++) {
        au_api("POST", "/api/v1/push", push_bad[i], &r);
        if (r.status != 400)
            fprintf(stderr, "  push %s -> %d %s\n", push_bad[i], r.status, r.body);
        AU_EXPECT(&r, 400, 3001);
        e2e_http_rsp_free(&r);
    }
    /* msg_data over 16 KiB */
    char *mid = malloc(20000);
    CHECK(mid != NULL);
    k = snprintf(mid, 64, "{\"to_user_ids\":[1],\"msg_data\":\"");
    memset(mid + k, 'y', 17000);
    strcpy(mid + k + 17000, "\"}");
    au_api("POST", "/api/v1/push", mid, &r);
    CHECK(r.status == 400 || r.status == 413);
    e2e_http_rsp_free(&r);
    free(mid);
}

TEST_MAIN()
