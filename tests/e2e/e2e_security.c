/* End-to-end security (issue 8): identity spoofing in every command that carries a user id,
 * SQL injection in every string field (protocol and HTTP API), token replay after rotation,
 * reading other users' data, the HTTP API key, and secrets in the logs.
 *
 * Every case writes the passwords and tokens it used to a file shared by the cases of this
 * run; the last case greps the stack's logs for them and for the API key. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <glob.h>

#include "../test.h"
#include "e2e_common.h"
#include "e2e_msg_common.h"

#define ST CIM_SESSION_SINGLE
#define GT CIM_SESSION_GROUP

/* ------------------------------------------------------------------ secrets of this run */

static void secrets_path(char *out, size_t n)
{
    /* the cases are forked children of the test binary: its pid names the run */
    snprintf(out, n, "/tmp/cim-e2e-security-%d.secrets", (int) getppid());
}

static void secret_note(const char *s)
{
    if (!s || strlen(s) < 6)
        return;
    char p[128];
    secrets_path(p, sizeof(p));
    FILE *f = fopen(p, "a");
    CHECK(f != NULL);
    fprintf(f, "%s\n", s);
    fclose(f);
}

/* ------------------------------------------------------------------ helpers */

typedef struct who_s {
    cim_client_t *c;
    uint64_t uid;
    char name[40];
} who_t;

static who_t sec_user(const char *gate_env, const char *tag)
{
    who_t w;
    memset(&w, 0, sizeof(w));
    w.c = msg_user(gate_env, tag, IM_CT_PC_WINDOWS, &w.uid, w.name);
    secret_note(cim_token(w.c));
    return w;
}

/* request -> response (owned by the caller) or NULL when there was no answer */
static ProtobufCMessage *sec_call(cim_client_t *c, uint16_t cmd, const void *req, uint16_t rsp,
                                  const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, cmd, (const ProtobufCMessage *) req, rsp, desc, &m, E2E_CALL_MS);
    if (rc != 0) {
        fprintf(stderr, "  call 0x%04x: %s\n", cmd, cim_strerror(rc));
        return NULL;
    }
    return m;
}

static int ok_code(uint32_t code)
{
    return code == 0 || code == 200;
}

/* the connection still works (heartbeat round trip) */
static int alive(cim_client_t *c)
{
    return cim_is_connected(c) && cim_heartbeat(c, 5000) == 0;
}

static uint64_t group_create(cim_client_t *c, uint64_t as, const char *name, const uint64_t *ids,
                             size_t n, uint32_t *code, uint64_t *owner)
{
    CIM__Def__CIMGroupCreateReq req = CIM__DEF__CIMGROUP_CREATE_REQ__INIT;
    req.user_id = as;
    req.group_name = (char *) name;
    req.member_id_list = (uint64_t *) ids;
    req.n_member_id_list = n;
    CIM__Def__CIMGroupCreateRsp *r = (CIM__Def__CIMGroupCreateRsp *) sec_call(
        c, IM_CMD_GROUP_CREATE_REQ, &req, IM_CMD_GROUP_CREATE_RSP,
        &cim__def__cimgroup_create_rsp__descriptor);
    CHECK(r != NULL);
    uint64_t gid = r->group_info ? r->group_info->group_id : 0;
    if (owner)
        *owner = r->group_info ? r->group_info->group_owner_id : 0;
    if (code)
        *code = r->result_code;
    cim__def__cimgroup_create_rsp__free_unpacked(r, NULL);
    return gid;
}

/* the members of gid as seen by c (a member): count, and whether uid is one */
static int group_has(cim_client_t *c, uint64_t gid, uint64_t uid, size_t *count)
{
    CIM__Def__CIMGroupMemberListReq req = CIM__DEF__CIMGROUP_MEMBER_LIST_REQ__INIT;
    req.group_id = gid;
    CIM__Def__CIMGroupMemberListRsp *r = (CIM__Def__CIMGroupMemberListRsp *) sec_call(
        c, IM_CMD_GROUP_MEMBER_LIST_REQ, &req, IM_CMD_GROUP_MEMBER_LIST_RSP,
        &cim__def__cimgroup_member_list_rsp__descriptor);
    CHECK(r != NULL);
    int has = 0;
    for (size_t i = 0; i < r->n_member_id_list; i++)
        if (r->member_id_list[i] == uid)
            has = 1;
    if (count)
        *count = r->n_member_id_list;
    cim__def__cimgroup_member_list_rsp__free_unpacked(r, NULL);
    return has;
}

/* unread count of V's session with peer (0x0201 as V) */
static uint32_t unread_of(cim_client_t *c, uint64_t peer)
{
    CIM__Def__CIMRecentContactSessionRsp *r = NULL;
    CHECK_EQ_INT(cim_sessions(c, 0, &r, NULL), 0);
    uint32_t n = 0;
    for (size_t i = 0; i < r->n_contact_session_list; i++)
        if (r->contact_session_list[i]->session_id == peer)
            n = r->contact_session_list[i]->unread_cnt;
    cim__def__cimrecent_contact_session_rsp__free_unpacked(r, NULL);
    return n;
}

/* a history page of (st, sid) as c: number of messages, and whether msg_data of one equals
 * text */
static size_t history_of(cim_client_t *c, uint32_t st, uint64_t sid, const char *text, int *found)
{
    CIM__Def__CIMGetMsgListRsp *r = NULL;
    uint32_t code = 0;
    int rc = cim_history(c, st, sid, 0, 100, &r, &code);
    CHECK(rc == 0);
    size_t n = r->n_msg_list;
    if (found) {
        *found = 0;
        for (size_t i = 0; i < n; i++) {
            const CIM__Def__CIMMsgInfo *m = r->msg_list[i];
            if (m->msg_data.len == strlen(text) && !memcmp(m->msg_data.data, text, m->msg_data.len))
                *found = 1;
        }
    }
    cim__def__cimget_msg_list_rsp__free_unpacked(r, NULL);
    return n;
}

/* read pushes for ms; the number of 0x0301 whose msg_data is text */
static int text_count(cim_client_t *c, int ms, const char *text)
{
    int n = 0;
    int64_t until = e2e_now_ms() + ms;
    for (;;) {
        int left = (int) (until - e2e_now_ms());
        if (left <= 0)
            break;
        CIM__Def__CIMMsgData *d = msg_next(c, left);
        if (!d) {
            if (!cim_is_connected(c))
                break;
            continue;
        }
        n += msg_body_is(d, text);
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    return n;
}

/* ------------------------------------------------------------------ identity spoofing */

/* A (attacker) names V (victim) in every command; V and C talk, V owns group G with X. */
TEST(spoof_every_command)
{
    who_t a = sec_user("CIM_GATE1", "spA"), v = sec_user("CIM_GATE2", "spV");
    who_t cc = sec_user("CIM_GATE1", "spC"), x = sec_user("CIM_GATE2", "spX");
    const char *secret = "v-to-c secret text";
    cim_ack_t vack;
    msg_send_ok(v.c, cc.uid, secret, &vack);
    msg_send_ok(cc.c, v.uid, "c to v 1", NULL);
    uint64_t last = msg_send_ok(cc.c, v.uid, "c to v 2", NULL);
    CHECK(msg_wait_push(v.c, last, 5000)); /* V's inbox row and unread follow C's ack */
    uint32_t unread0 = unread_of(v.c, cc.uid);
    CHECK_EQ_INT(unread0, 2);
    uint64_t gid = group_create(v.c, 0, "victim group", &x.uid, 1, NULL, NULL);
    CHECK(gid > 0);
    uint64_t gid2 = group_create(x.c, 0, "open group", NULL, 0, NULL, NULL);
    CHECK(gid2 > 0);

    /* 0x0201 sessions as V: refused, or A's own (A has none with C) */
    {
        CIM__Def__CIMRecentContactSessionReq req = CIM__DEF__CIMRECENT_CONTACT_SESSION_REQ__INIT;
        req.user_id = v.uid;
        CIM__Def__CIMRecentContactSessionRsp *r = (CIM__Def__CIMRecentContactSessionRsp *) sec_call(
            a.c, IM_CMD_RECENT_SESSION_REQ, &req, IM_CMD_RECENT_SESSION_RSP,
            &cim__def__cimrecent_contact_session_rsp__descriptor);
        CHECK(r != NULL);
        if (ok_code(r->result_code)) {
            CHECK(r->user_id != v.uid);
            for (size_t i = 0; i < r->n_contact_session_list; i++)
                CHECK(r->contact_session_list[i]->session_id != cc.uid);
        }
        cim__def__cimrecent_contact_session_rsp__free_unpacked(r, NULL);
    }
    /* 0x0205 history of V's session with C */
    {
        CIM__Def__CIMGetMsgListReq req = CIM__DEF__CIMGET_MSG_LIST_REQ__INIT;
        req.user_id = v.uid;
        req.session_type = ST;
        req.session_id = cc.uid;
        req.limit_count = 100;
        CIM__Def__CIMGetMsgListRsp *r = (CIM__Def__CIMGetMsgListRsp *) sec_call(
            a.c, IM_CMD_MSG_LIST_REQ, &req, IM_CMD_MSG_LIST_RSP,
            &cim__def__cimget_msg_list_rsp__descriptor);
        CHECK(r != NULL);
        CHECK_EQ_INT(r->n_msg_list, 0);
        if (ok_code(r->result_code))
            CHECK(r->user_id != v.uid);
        cim__def__cimget_msg_list_rsp__free_unpacked(r, NULL);
    }
    /* 0x0207 sync of V's inbox */
    {
        CIM__Def__CIMSyncReq req = CIM__DEF__CIMSYNC_REQ__INIT;
        req.user_id = v.uid;
        CIM__Def__CIMSyncRsp *r = (CIM__Def__CIMSyncRsp *) sec_call(
            a.c, IM_CMD_SYNC_REQ, &req, IM_CMD_SYNC_RSP, &cim__def__cimsync_rsp__descriptor);
        CHECK(r != NULL);
        for (size_t i = 0; i < r->n_msg_list; i++) {
            const CIM__Def__CIMMsgInfo *m = r->msg_list[i];
            CHECK(m->from_user_id != cc.uid && m->from_user_id != v.uid);
            CHECK(strcmp(m->client_msg_id, vack.client_msg_id) != 0);
        }
        if (ok_code(r->result_code))
            CHECK(r->user_id != v.uid);
        cim__def__cimsync_rsp__free_unpacked(r, NULL);
    }
    /* 0x0301 as V: REFUSED, nothing reaches C */
    {
        cim_msg_out_t m = {.to = cc.uid, .data = "forged", .len = 6, .from_user_id = v.uid};
        cim_ack_t ack;
        int rc = cim_send_msg(a.c, &m, &ack);
        CHECK(rc != 0);
        CHECK_EQ_INT(ack.res_code, CIM_RES_REFUSED);
        cim_drop_unacked(a.c);
        CHECK_EQ_INT(text_count(cc.c, 800, "forged"), 0);
    }
    /* 0x0303 read ack as V: V's unread count is untouched */
    {
        CIM__Def__CIMMsgDataReadAck req = CIM__DEF__CIMMSG_DATA_READ_ACK__INIT;
        req.user_id = v.uid;
        req.session_id = cc.uid;
        req.session_type = ST;
        req.msg_id = last;
        CHECK_EQ_INT(cim_send(a.c, IM_CMD_MSG_READ_ACK, cim_next_seq(a.c), &req.base), 0);
        CHECK(alive(a.c) || !cim_is_connected(a.c));
        e2e_sleep_ms(300);
        CHECK_EQ_INT(unread_of(v.c, cc.uid), unread0);
        if (!cim_is_connected(a.c))
            CHECK_EQ_INT(cim_reconnect(a.c, E2E_CONNECT_MS), 0);
    }
    /* 0x0305 latest id of V's session */
    {
        CIM__Def__CIMGetLatestMsgIdReq req = CIM__DEF__CIMGET_LATEST_MSG_ID_REQ__INIT;
        req.user_id = v.uid;
        req.session_type = ST;
        req.session_id = cc.uid;
        CIM__Def__CIMGetLatestMsgIdRsp *r = (CIM__Def__CIMGetLatestMsgIdRsp *) sec_call(
            a.c, IM_CMD_LATEST_MSG_ID_REQ, &req, IM_CMD_LATEST_MSG_ID_RSP,
            &cim__def__cimget_latest_msg_id_rsp__descriptor);
        CHECK(r != NULL);
        CHECK(!r->latest_msg_id || !r->latest_msg_id[0] || !strcmp(r->latest_msg_id, "0"));
        cim__def__cimget_latest_msg_id_rsp__free_unpacked(r, NULL);
    }
    /* 0x0307 V's message by id */
    {
        char idbuf[32];
        char *ids[1] = {idbuf};
        snprintf(idbuf, sizeof(idbuf), "%" PRIu64, vack.server_msg_id);
        CIM__Def__CIMGetMsgByIdReq req = CIM__DEF__CIMGET_MSG_BY_ID_REQ__INIT;
        req.user_id = v.uid;
        req.session_type = ST;
        req.session_id = cc.uid;
        req.msg_id_list = ids;
        req.n_msg_id_list = 1;
        CIM__Def__CIMGetMsgByIdRsp *r = (CIM__Def__CIMGetMsgByIdRsp *) sec_call(
            a.c, IM_CMD_MSG_BY_ID_REQ, &req, IM_CMD_MSG_BY_ID_RSP,
            &cim__def__cimget_msg_by_id_rsp__descriptor);
        CHECK(r != NULL);
        CHECK_EQ_INT(r->n_msg_list, 0);
        cim__def__cimget_msg_by_id_rsp__free_unpacked(r, NULL);
    }
    /* 0x0310 recall of V's message: refused, C's copy intact */
    {
        CIM__Def__CIMMsgRecallReq req = CIM__DEF__CIMMSG_RECALL_REQ__INIT;
        req.user_id = v.uid;
        req.session_type = ST;
        req.session_id = cc.uid;
        req.server_msg_id = vack.server_msg_id;
        CIM__Def__CIMMsgRecallRsp *r =
            (CIM__Def__CIMMsgRecallRsp *) sec_call(a.c, IM_CMD_RECALL_REQ, &req, IM_CMD_RECALL_RSP,
                                                   &cim__def__cimmsg_recall_rsp__descriptor);
        CHECK(r != NULL);
        CHECK(!ok_code(r->result_code));
        cim__def__cimmsg_recall_rsp__free_unpacked(r, NULL);
        int found = 0;
        history_of(cc.c, ST, v.uid, secret, &found);
        CHECK(found);
    }
    /* 0x0501 create as V: refused, or A owns it */
    {
        uint32_t code = 0;
        uint64_t owner = 0;
        uint64_t g = group_create(a.c, v.uid, "spoofed", NULL, 0, &code, &owner);
        if (ok_code(code)) {
            CHECK(g > 0);
            CHECK_EQ_INT(owner, a.uid);
            CHECK(!group_has(a.c, g, v.uid, NULL));
        }
    }
    /* 0x0503 disband / 0x0505 exit of V's group: refused, the group and V stay */
    for (int k = 0; k < 2; k++) {
        CIM__Def__CIMGroupDisbandingReq req = CIM__DEF__CIMGROUP_DISBANDING_REQ__INIT;
        req.user_id = v.uid;
        req.group_id = gid;
        CIM__Def__CIMGroupDisbandingRsp *r = (CIM__Def__CIMGroupDisbandingRsp *) sec_call(
            a.c, k ? IM_CMD_GROUP_EXIT_REQ : IM_CMD_GROUP_DISBAND_REQ, &req,
            k ? IM_CMD_GROUP_EXIT_RSP : IM_CMD_GROUP_DISBAND_RSP,
            &cim__def__cimgroup_disbanding_rsp__descriptor);
        CHECK(r != NULL);
        CHECK(!ok_code(r->result_code));
        cim__def__cimgroup_disbanding_rsp__free_unpacked(r, NULL);
        size_t n = 0;
        CHECK(group_has(v.c, gid, v.uid, &n));
        CHECK_EQ_INT(n, 2);
    }
    /* 0x0507 V's group list */
    {
        CIM__Def__CIMGroupListReq req = CIM__DEF__CIMGROUP_LIST_REQ__INIT;
        req.user_id = v.uid;
        CIM__Def__CIMGroupListRsp *r = (CIM__Def__CIMGroupListRsp *) sec_call(
            a.c, IM_CMD_GROUP_LIST_REQ, &req, IM_CMD_GROUP_LIST_RSP,
            &cim__def__cimgroup_list_rsp__descriptor);
        CHECK(r != NULL);
        for (size_t i = 0; i < r->n_group_version_list; i++)
            CHECK(r->group_version_list[i]->group_id != gid);
        cim__def__cimgroup_list_rsp__free_unpacked(r, NULL);
    }
    /* 0x0509 info of V's group, as V */
    {
        CIM__Def__CIMGroupVersionInfo gv = CIM__DEF__CIMGROUP_VERSION_INFO__INIT;
        CIM__Def__CIMGroupVersionInfo *gvs[1] = {&gv};
        gv.group_id = gid;
        CIM__Def__CIMGroupInfoReq req = CIM__DEF__CIMGROUP_INFO_REQ__INIT;
        req.user_id = v.uid;
        req.group_version_list = gvs;
        req.n_group_version_list = 1;
        CIM__Def__CIMGroupInfoRsp *r = (CIM__Def__CIMGroupInfoRsp *) sec_call(
            a.c, IM_CMD_GROUP_INFO_REQ, &req, IM_CMD_GROUP_INFO_RSP,
            &cim__def__cimgroup_info_rsp__descriptor);
        CHECK(r != NULL);
        if (ok_code(r->result_code))
            CHECK(r->user_id != v.uid);
        cim__def__cimgroup_info_rsp__free_unpacked(r, NULL);
    }
    /* 0x0511 invite A into V's group as V; 0x0513 kick X as V */
    for (int k = 0; k < 2; k++) {
        uint64_t who = k ? x.uid : a.uid;
        CIM__Def__CIMGroupInviteMemberReq req = CIM__DEF__CIMGROUP_INVITE_MEMBER_REQ__INIT;
        req.user_id = v.uid;
        req.group_id = gid;
        req.member_id_list = &who;
        req.n_member_id_list = 1;
        CIM__Def__CIMGroupInviteMemberRsp *r = (CIM__Def__CIMGroupInviteMemberRsp *) sec_call(
            a.c, k ? IM_CMD_GROUP_KICK_REQ : IM_CMD_GROUP_INVITE_REQ, &req,
            k ? IM_CMD_GROUP_KICK_RSP : IM_CMD_GROUP_INVITE_RSP,
            &cim__def__cimgroup_invite_member_rsp__descriptor);
        CHECK(r != NULL);
        CHECK(!ok_code(r->result_code));
        cim__def__cimgroup_invite_member_rsp__free_unpacked(r, NULL);
        size_t n = 0;
        CHECK(!group_has(v.c, gid, a.uid, &n));
        CHECK(group_has(v.c, gid, x.uid, NULL));
        CHECK_EQ_INT(n, 2);
    }
    /* 0x0516 members of V's group */
    {
        CIM__Def__CIMGroupMemberListReq req = CIM__DEF__CIMGROUP_MEMBER_LIST_REQ__INIT;
        req.user_id = v.uid;
        req.group_id = gid;
        CIM__Def__CIMGroupMemberListRsp *r = (CIM__Def__CIMGroupMemberListRsp *) sec_call(
            a.c, IM_CMD_GROUP_MEMBER_LIST_REQ, &req, IM_CMD_GROUP_MEMBER_LIST_RSP,
            &cim__def__cimgroup_member_list_rsp__descriptor);
        CHECK(r != NULL);
        CHECK_EQ_INT(r->n_member_id_list, 0);
        cim__def__cimgroup_member_list_rsp__free_unpacked(r, NULL);
    }
    /* 0x0518 join X's open group as V: refused, or A joins; V never */
    {
        CIM__Def__CIMGroupJoinReq req = CIM__DEF__CIMGROUP_JOIN_REQ__INIT;
        req.user_id = v.uid;
        req.group_id = gid2;
        CIM__Def__CIMGroupJoinRsp *r = (CIM__Def__CIMGroupJoinRsp *) sec_call(
            a.c, IM_CMD_GROUP_JOIN_REQ, &req, IM_CMD_GROUP_JOIN_RSP,
            &cim__def__cimgroup_join_rsp__descriptor);
        CHECK(r != NULL);
        cim__def__cimgroup_join_rsp__free_unpacked(r, NULL);
        CHECK(!group_has(x.c, gid2, v.uid, NULL));
    }
    /* 0x0603 online list as V */
    {
        CIM__Def__CIMOnlineUserListReq req = CIM__DEF__CIMONLINE_USER_LIST_REQ__INIT;
        req.user_id = v.uid;
        CIM__Def__CIMOnlineUserListRsp *r = (CIM__Def__CIMOnlineUserListRsp *) sec_call(
            a.c, IM_CMD_ONLINE_LIST_REQ, &req, IM_CMD_ONLINE_LIST_RSP,
            &cim__def__cimonline_user_list_rsp__descriptor);
        CHECK(r != NULL);
        if (ok_code(r->result_code))
            CHECK(r->user_id != v.uid);
        cim__def__cimonline_user_list_rsp__free_unpacked(r, NULL);
    }
    /* 0x0103 logout as V: V stays online */
    {
        CIM__Def__CIMLogoutReq req = CIM__DEF__CIMLOGOUT_REQ__INIT;
        req.user_id = v.uid;
        req.client_type = CIM__DEF__CIMCLIENT_TYPE__kCIM_CLIENT_TYPE_PC_WINDOWS;
        ProtobufCMessage *r = NULL;
        cim_call(a.c, IM_CMD_LOGOUT_REQ, &req.base, IM_CMD_LOGOUT_RSP,
                 &cim__def__cimlogout_rsp__descriptor, &r, E2E_CALL_MS);
        if (r)
            protobuf_c_message_free_unpacked(r, NULL);
        e2e_sleep_ms(300);
        CHECK(alive(v.c));
        msg_send_ok(cc.c, v.uid, "still there", NULL);
        CIM__Def__CIMMsgData *d = NULL;
        for (int i = 0; i < 5 && !msg_body_is(d, "still there"); i++) {
            if (d)
                cim__def__cimmsg_data__free_unpacked(d, NULL);
            d = msg_next(v.c, 3000);
        }
        CHECK(msg_body_is(d, "still there"));
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    /* everything V owns is as it was */
    CHECK_EQ_INT(unread_of(v.c, cc.uid), unread0 + 1);
    int found = 0;
    CHECK_EQ_INT(history_of(v.c, ST, cc.uid, secret, &found), 4);
    CHECK(found);
    cim_client_free(a.c);
    cim_client_free(v.c);
    cim_client_free(cc.c);
    cim_client_free(x.c);
}

/* reading other users' data with one's own id (user_id 0): nothing, or 3002 */
TEST(read_others_data)
{
    who_t a = sec_user("CIM_GATE1", "rdA"), v = sec_user("CIM_GATE2", "rdV");
    who_t cc = sec_user("CIM_GATE1", "rdC");
    cim_ack_t ack;
    msg_send_ok(v.c, cc.uid, "private v-c", &ack);
    uint64_t gid = group_create(v.c, 0, "private group", &cc.uid, 1, NULL, NULL);
    CHECK(gid > 0);
    CHECK_EQ_INT(history_of(a.c, ST, cc.uid, "", NULL), 0);
    CHECK_EQ_INT(history_of(a.c, GT, gid, "", NULL), 0);
    uint32_t code = 0;
    CIM__Def__CIMGetMsgByIdRsp *r = NULL;
    int rc = cim_msgs_by_id(a.c, ST, cc.uid, &ack.server_msg_id, 1, &r, &code);
    if (rc == 0) {
        CHECK_EQ_INT(r->n_msg_list, 0);
        cim__def__cimget_msg_by_id_rsp__free_unpacked(r, NULL);
    }
    rc = cim_msgs_by_id(a.c, GT, gid, &ack.server_msg_id, 1, &r, &code);
    if (rc == 0) {
        CHECK_EQ_INT(r->n_msg_list, 0);
        cim__def__cimget_msg_by_id_rsp__free_unpacked(r, NULL);
    }
    CIM__Def__CIMGroupMemberListReq req = CIM__DEF__CIMGROUP_MEMBER_LIST_REQ__INIT;
    req.group_id = gid;
    CIM__Def__CIMGroupMemberListRsp *m = (CIM__Def__CIMGroupMemberListRsp *) sec_call(
        a.c, IM_CMD_GROUP_MEMBER_LIST_REQ, &req, IM_CMD_GROUP_MEMBER_LIST_RSP,
        &cim__def__cimgroup_member_list_rsp__descriptor);
    CHECK(m != NULL);
    CHECK_EQ_INT(m->n_member_id_list, 0);
    CHECK(m->result_code == 3002 || ok_code(m->result_code));
    cim__def__cimgroup_member_list_rsp__free_unpacked(m, NULL);
    /* A's own sessions do not show V's conversation */
    CHECK_EQ_INT(unread_of(a.c, cc.uid), 0);
    /* a group message from a non-member is refused */
    cim_msg_out_t o = {.to = gid, .session_type = GT, .data = "x", .len = 1};
    CHECK(cim_send_msg(a.c, &o, &ack) != 0);
    CHECK_EQ_INT(ack.res_code, CIM_RES_REFUSED);
    cim_drop_unacked(a.c);
    cim_client_free(a.c);
    cim_client_free(v.c);
    cim_client_free(cc.c);
}

/* ------------------------------------------------------------------ SQL injection */

static const char *const INJ[] = {
    "x' OR '1'='1",
    "'; DROP TABLE im_user; --",
    "\"); DELETE FROM im_message_recv; --",
    "\\'; UPDATE im_user SET nick_name='pwn' WHERE 1=1; #",
    "1; SELECT SLEEP(5)",
    "Robert'); DROP TABLE im_group;--",
    "%' UNION SELECT user_name, password FROM im_user --",
    "\xe4\xbd\xa0\xe5\xa5\xbd' /* */ OR 1 -- \\",
};
#define NINJ (sizeof(INJ) / sizeof(INJ[0]))

static long long table_rows(const char *table)
{
    long long total = 0;
    for (int s = 0; s < 4; s++) {
        char q[256];
        snprintf(q, sizeof(q), "SELECT COUNT(*) FROM im_%d.%s", s, table);
        long long n = msg_sql_num(q);
        CHECK(n >= 0);
        total += n;
    }
    return total;
}

static void tables_intact(void)
{
    static const char *const tables[] = {"im_user",         "im_user_name", "im_message_send",
                                         "im_message_recv", "im_group",     "im_group_member"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
        CHECK(table_rows(tables[i]) >= 0);
    CHECK(table_rows("im_user") > 0);
}

TEST(sql_injection_protocol)
{
    tables_intact();
    long long users0 = table_rows("im_user");
    for (size_t i = 0; i < NINJ; i++) {
        /* user name: refused (9001) */
        cim_client_t *c = e2e_connect("CIM_GATE1");
        uint32_t code = 0;
        CHECK(cim_register(c, INJ[i], "password1", "nick", &code, NULL) != 0);
        CHECK_EQ_INT(code, 9001);
        /* login with an injected name or password: refused, never a login */
        CHECK(cim_login_password(c, INJ[i], INJ[i], IM_CT_PC_WINDOWS, &code) != 0);
        CHECK(code == 2003 || code == 9001 || code == 3004);
        cim_client_free(c);
    }
    /* passwords and nick names with injections: stored verbatim */
    for (size_t i = 0; i < NINJ; i++) {
        char name[40];
        e2e_uniq(name, sizeof(name), "sqli");
        char pwd[160];
        snprintf(pwd, sizeof(pwd), "%s%zu", INJ[i], i);
        secret_note(pwd);
        cim_client_t *c = e2e_connect("CIM_GATE2");
        uint32_t code = 0;
        uint64_t uid = 0;
        CHECK_EQ_INT(cim_register(c, name, pwd, INJ[i], &code, &uid), 0);
        CHECK(uid > 0);
        cim_client_free(c);
        /* the exact password works; a variant does not */
        c = e2e_connect("CIM_GATE2");
        char bad[170];
        snprintf(bad, sizeof(bad), "%s'", pwd);
        CHECK(cim_login_password(c, name, bad, IM_CT_PC_WINDOWS, &code) != 0);
        CHECK_EQ_INT(code, 2003);
        cim_client_free(c);
        c = e2e_login("CIM_GATE2", name, pwd, IM_CT_PC_WINDOWS);
        secret_note(cim_token(c));
        /* the nick comes back verbatim on a delivery */
        uint64_t peer;
        cim_client_t *p = msg_user("CIM_GATE1", "sqlp", IM_CT_PC_WINDOWS, &peer, NULL);
        secret_note(cim_token(p));
        cim_set_heartbeat_interval(c, MSG_HB_MS);
        /* client_msg_id and msg_data with injections */
        char cmid[65];
        snprintf(cmid, sizeof(cmid), "%.60s%zu", INJ[i], i);
        cim_msg_out_t m = {
            .to = peer, .data = INJ[i], .len = strlen(INJ[i]) + 1, .client_msg_id = cmid};
        cim_ack_t ack;
        CHECK_EQ_INT(cim_send_msg(c, &m, &ack), 0);
        CIM__Def__CIMMsgData *d = msg_next(p, 5000);
        CHECK(d != NULL);
        CHECK_EQ_STR(d->client_msg_id, cmid);
        CHECK_EQ_STR(d->from_nick_name, INJ[i]);
        CHECK_EQ_INT(d->msg_data.len, strlen(INJ[i]) + 1);
        CHECK(!memcmp(d->msg_data.data, INJ[i], d->msg_data.len));
        cim__def__cimmsg_data__free_unpacked(d, NULL);
        /* a group name with an injection */
        uint32_t gcode = 0;
        uint64_t gid = group_create(c, 0, INJ[i], &peer, 1, &gcode, NULL);
        CHECK(ok_code(gcode));
        CIM__Def__CIMGroupVersionInfo gv = CIM__DEF__CIMGROUP_VERSION_INFO__INIT;
        CIM__Def__CIMGroupVersionInfo *gvs[1] = {&gv};
        gv.group_id = gid;
        CIM__Def__CIMGroupInfoReq req = CIM__DEF__CIMGROUP_INFO_REQ__INIT;
        req.group_version_list = gvs;
        req.n_group_version_list = 1;
        CIM__Def__CIMGroupInfoRsp *r = (CIM__Def__CIMGroupInfoRsp *) sec_call(
            p, IM_CMD_GROUP_INFO_REQ, &req, IM_CMD_GROUP_INFO_RSP,
            &cim__def__cimgroup_info_rsp__descriptor);
        CHECK(r != NULL);
        CHECK_EQ_INT(r->n_group_info_list, 1);
        CHECK_EQ_STR(r->group_info_list[0]->group_name, INJ[i]);
        cim__def__cimgroup_info_rsp__free_unpacked(r, NULL);
        /* a group message with an injection, then history holds it verbatim */
        cim_msg_out_t gm = {.to = gid, .session_type = GT, .data = INJ[i], .len = strlen(INJ[i])};
        CHECK_EQ_INT(cim_send_msg(c, &gm, &ack), 0);
        int found = 0;
        for (int t = 0; t < 30 && !found; t++) {
            history_of(p, GT, gid, INJ[i], &found);
            if (!found)
                e2e_sleep_ms(100);
        }
        if (!found)
            fprintf(stderr, "  group history lacks injection %zu\n", i);
        CHECK(found);
        /* a token with an injection */
        CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", uid, INJ[i], IM_CT_ANDROID, NULL), 2002);
        cim_client_free(c);
        cim_client_free(p);
    }
    tables_intact();
    CHECK(table_rows("im_user") >= users0 + (long long) NINJ);
}

TEST(sql_injection_api)
{
    const char *api = e2e_env("CIM_API"), *key = e2e_env("CIM_API_KEY");
    tables_intact();
    for (size_t i = 0; i < NINJ; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "user_name", json_string(INJ[i]));
        json_object_set_new(o, "nick_name", json_string("n"));
        json_object_set_new(o, "password", json_string("password1"));
        char *body = json_dumps(o, JSON_COMPACT);
        e2e_http_rsp_t r;
        CHECK_EQ_INT(e2e_http(api, "POST", "/api/v1/users", key, body, &r), 0);
        CHECK_EQ_INT(r.status, 400);
        e2e_http_rsp_free(&r);
        free(body);
        json_decref(o);

        /* nick, avatar and password with injections: stored */
        char name[40];
        e2e_uniq(name, sizeof(name), "sqlapi");
        char pwd[160];
        snprintf(pwd, sizeof(pwd), "%s-api%zu", INJ[i], i);
        secret_note(pwd);
        o = json_object();
        json_object_set_new(o, "user_name", json_string(name));
        json_object_set_new(o, "nick_name", json_string(INJ[i]));
        json_object_set_new(o, "avatar_url", json_string(INJ[i]));
        json_object_set_new(o, "password", json_string(pwd));
        body = json_dumps(o, JSON_COMPACT);
        CHECK_EQ_INT(e2e_http(api, "POST", "/api/v1/users", key, body, &r), 0);
        CHECK_EQ_INT(r.status, 200);
        long long uid = e2e_json_int(&r, "user_id", 0);
        CHECK(uid > 0);
        const char *tok = e2e_json_str(&r, "token");
        CHECK(tok != NULL);
        secret_note(tok);
        e2e_http_rsp_free(&r);
        free(body);
        json_decref(o);
        cim_client_t *c = e2e_login("CIM_GATE1", name, pwd, IM_CT_PC_WINDOWS);
        secret_note(cim_token(c));
        cim_set_heartbeat_interval(c, MSG_HB_MS);

        /* a push with injected text; a group with an injected name */
        o = json_pack("{s:[I],s:s}", "to_user_ids", (json_int_t) uid, "msg_data", INJ[i]);
        body = json_dumps(o, JSON_COMPACT);
        CHECK_EQ_INT(e2e_http(api, "POST", "/api/v1/push", key, body, &r), 0);
        CHECK_EQ_INT(r.status, 200);
        e2e_http_rsp_free(&r);
        free(body);
        json_decref(o);
        CIM__Def__CIMMsgData *d = msg_next(c, 5000);
        CHECK(msg_body_is(d, INJ[i]));
        cim__def__cimmsg_data__free_unpacked(d, NULL);

        o = json_pack("{s:I,s:s,s:[]}", "owner_id", (json_int_t) uid, "group_name", INJ[i],
                      "member_ids");
        body = json_dumps(o, JSON_COMPACT);
        CHECK_EQ_INT(e2e_http(api, "POST", "/api/v1/groups", key, body, &r), 0);
        CHECK_EQ_INT(r.status, 200);
        long long gid = e2e_json_int(&r, "group_id", 0);
        CHECK(gid > 0);
        e2e_http_rsp_free(&r);
        free(body);
        json_decref(o);
        o = json_pack("{s:s}", "announcement", INJ[i]);
        body = json_dumps(o, JSON_COMPACT);
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/groups/%lld", gid);
        CHECK_EQ_INT(e2e_http(api, "PATCH", path, key, body, &r), 0);
        CHECK_EQ_INT(r.status, 200);
        e2e_http_rsp_free(&r);
        free(body);
        json_decref(o);
        /* injected text in a path */
        snprintf(path, sizeof(path), "/api/v1/users/1%%27%%20OR%%201%%3D1/token");
        CHECK_EQ_INT(e2e_http(api, "GET", path, key, NULL, &r), 0);
        CHECK(r.status == 400 || r.status == 404);
        e2e_http_rsp_free(&r);
        cim_client_free(c);
    }
    tables_intact();
}

/* ------------------------------------------------------------------ tokens and the API key */

TEST(token_replay_after_rotation)
{
    const char *api = e2e_env("CIM_API"), *key = e2e_env("CIM_API_KEY");
    who_t u = sec_user("CIM_GATE1", "rot");
    char old[256];
    snprintf(old, sizeof(old), "%s", cim_token(u.c));
    CHECK(old[0]);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", u.uid, old, IM_CT_ANDROID, NULL), 200);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/token", u.uid);
    e2e_http_rsp_t r;
    CHECK_EQ_INT(e2e_http(api, "POST", path, key, "{}", &r), 0);
    CHECK_EQ_INT(r.status, 200);
    const char *nt = e2e_json_str(&r, "token");
    CHECK(nt && *nt && strcmp(nt, old) != 0);
    char fresh[256];
    snprintf(fresh, sizeof(fresh), "%s", nt);
    secret_note(fresh);
    e2e_http_rsp_free(&r);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", u.uid, old, IM_CT_ANDROID, NULL), 2002);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", u.uid, old, IM_CT_WEB, NULL), 2002);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", u.uid, fresh, IM_CT_WEB, NULL), 200);
    /* a token is bound to its user */
    who_t o = sec_user("CIM_GATE2", "rot2");
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", o.uid, fresh, IM_CT_WEB, NULL), 2002);
    /* GET gives the current token, not the old one */
    CHECK_EQ_INT(e2e_http(api, "GET", path, key, NULL, &r), 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(e2e_json_str(&r, "token") && strcmp(e2e_json_str(&r, "token"), old) != 0);
    e2e_http_rsp_free(&r);
    cim_client_free(u.c);
    cim_client_free(o.c);
}

TEST(api_key_required)
{
    const char *api = e2e_env("CIM_API"), *key = e2e_env("CIM_API_KEY");
    char wrong[128];
    snprintf(wrong, sizeof(wrong), "%s", key);
    wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
    static const char *const routes[][3] = {
        {"GET", "/api/v1/users/1/token", NULL},
        {"POST", "/api/v1/users/1/token", "{}"},
        {"POST", "/api/v1/users", "{\"nick_name\":\"x\"}"},
        {"POST", "/api/v1/push", "{\"all\":true,\"msg_data\":\"x\"}"},
        {"POST", "/api/v1/users/1/kick", "{}"},
        {"GET", "/api/v1/online/count", NULL},
        {"POST", "/api/v1/groups", "{\"owner_id\":1,\"group_name\":\"g\",\"member_ids\":[]}"},
        {"GET", "/api/v1/groups/1/members", NULL},
    };
    const char *keys[] = {NULL, wrong, "", "Bearer", "x' OR '1'='1"};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            e2e_http_rsp_t r;
            CHECK_EQ_INT(e2e_http(api, routes[i][0], routes[i][1], keys[k], routes[i][2], &r), 0);
            if (r.status != 401)
                fprintf(stderr, "  %s %s key %zu: %d\n", routes[i][0], routes[i][1], k, r.status);
            CHECK_EQ_INT(r.status, 401);
            e2e_http_rsp_free(&r);
        }
    }
    /* the key itself works */
    e2e_http_rsp_t r;
    CHECK_EQ_INT(e2e_http(api, "GET", "/api/v1/online/count", key, NULL, &r), 0);
    CHECK_EQ_INT(r.status, 200);
    e2e_http_rsp_free(&r);
}

/* ------------------------------------------------------------------ secrets never logged */

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t cap = 1 << 20, len = 0, nl = strlen(needle);
    char *buf = malloc(cap + 1);
    CHECK(buf != NULL);
    int found = 0;
    for (;;) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        buf[len] = 0;
        if (memmem(buf, len, needle, nl)) {
            found = 1;
            break;
        }
        if (got == 0)
            break;
        /* keep the tail that could start a match */
        if (len > nl) {
            memmove(buf, buf + len - nl, nl);
            len = nl;
        }
    }
    free(buf);
    fclose(f);
    return found;
}

TEST(secrets_not_logged)
{
    /* a few more secrets through every path: wrong passwords, token logins, rotation */
    char name[40], pwd[64];
    e2e_uniq(name, sizeof(name), "logsec");
    snprintf(pwd, sizeof(pwd), "Pw-%s-unique", name);
    secret_note(pwd);
    e2e_register("CIM_GATE1", name, pwd);
    cim_client_t *c = e2e_login("CIM_GATE2", name, pwd, IM_CT_PC_WINDOWS);
    char tok[256];
    snprintf(tok, sizeof(tok), "%s", cim_token(c));
    secret_note(tok);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", cim_user_id(c), tok, IM_CT_WEB, NULL), 200);
    char wrongpw[80];
    snprintf(wrongpw, sizeof(wrongpw), "Wrong-%s-pw", name);
    secret_note(wrongpw);
    cim_client_t *w = e2e_connect("CIM_GATE1");
    uint32_t code = 0;
    CHECK(cim_login_password(w, name, wrongpw, IM_CT_WEB, &code) != 0);
    cim_client_free(w);
    char badtok[80];
    snprintf(badtok, sizeof(badtok), "BadToken%sXYZ", name);
    secret_note(badtok);
    e2e_token_login_code("CIM_GATE2", cim_user_id(c), badtok, IM_CT_WEB, NULL);
    cim_client_free(c);
    secret_note(e2e_env("CIM_API_KEY"));
    e2e_sleep_ms(1500); /* let the servers write their logs */

    char sp[128];
    secrets_path(sp, sizeof(sp));
    FILE *f = fopen(sp, "r");
    CHECK(f != NULL);
    char *secrets[512];
    size_t ns = 0;
    char line[512];
    while (ns < 512 && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        if (strlen(line) >= 6)
            secrets[ns++] = strdup(line);
    }
    fclose(f);
    unlink(sp);
    CHECK(ns >= 5);

    const char *dir = e2e_env("CIM_TEST_DIR");
    char pat[3][512];
    snprintf(pat[0], sizeof(pat[0]), "%s/log/*", dir);
    snprintf(pat[1], sizeof(pat[1]), "%s/redis/*.log", dir);
    snprintf(pat[2], sizeof(pat[2]), "%s/mysql/*.log", dir);
    glob_t g;
    memset(&g, 0, sizeof(g));
    for (int i = 0; i < 3; i++)
        glob(pat[i], i ? GLOB_APPEND : 0, NULL, &g);
    CHECK(g.gl_pathc >= 4);
    int leaks = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        for (size_t s = 0; s < ns; s++) {
            if (file_has(g.gl_pathv[i], secrets[s])) {
                fprintf(stderr, "  secret \"%.12s...\" (%zu bytes) appears in %s\n", secrets[s],
                        strlen(secrets[s]), g.gl_pathv[i]);
                leaks++;
            }
        }
    }
    fprintf(stderr, "  %zu secrets, %zu log files checked\n", ns, g.gl_pathc);
    globfree(&g);
    for (size_t s = 0; s < ns; s++)
        free(secrets[s]);
    CHECK_EQ_INT(leaks, 0);
}

TEST_MAIN()
