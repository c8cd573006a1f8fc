/* Unit tests for common/im_cmd. */
#include "../test.h"

#include "im_cmd.h"
#include "proto/cim.pb-c.h"

TEST(cmd_lookup)
{
    const im_cmd_info_t *ci = im_cmd_info(IM_CMD_AUTH_TOKEN_REQ);
    CHECK(ci != NULL);
    CHECK_EQ_STR(ci->name, "CIMAuthTokenReq");
    CHECK_EQ_INT(ci->rsp_cmd, IM_CMD_AUTH_TOKEN_RSP);
    CHECK_EQ_INT(ci->rsp_field, 2);
    CHECK_EQ_INT(ci->rsp_is_res, 0);
    CHECK_EQ_INT(ci->client_req, 1);

    ci = im_cmd_info(IM_CMD_MSG_DATA);
    CHECK(ci && ci->rsp_cmd == IM_CMD_MSG_DATA_ACK && ci->rsp_field == 5 && ci->rsp_is_res == 1);
    CHECK(ci->client_req);

    ci = im_cmd_info(IM_CMD_HEARTBEAT);
    CHECK(ci && ci->client_req == 1 && ci->rsp_cmd == 0 && ci->rsp_field == 0);
    ci = im_cmd_info(IM_CMD_MSG_DATA_ACK);
    CHECK(ci && ci->client_req == 1 && ci->rsp_cmd == 0);
    ci = im_cmd_info(IM_CMD_MSG_READ_ACK);
    CHECK(ci && ci->client_req == 1 && ci->rsp_cmd == 0);

    CHECK_EQ_STR(im_cmd_name(IM_CMD_GROUP_INFO_RSP), "CIMGroupInfoRsp");
    CHECK_EQ_STR(im_cmd_name(IM_CMD_PRESENCE_NOTIFY), "CIMPresenceNotify");
    CHECK_EQ_STR(im_cmd_name(0x0106), "unknown");
    CHECK_EQ_STR(im_cmd_name(0), "unknown");
    CHECK_EQ_STR(im_cmd_name(0xFFFF), "unknown");
    CHECK(im_cmd_info(0x0520) == NULL);
    CHECK(im_cmd_info(0x0309) == NULL);
}

/* The whole request -> response table of PROTOCOL.md section 3. */
static const struct {
    uint16_t req, rsp;
    uint8_t field;
} pairs[] = {
    {0x0101, 0x0102, 2},  {0x0107, 0x0108, 2},  {0x0109, 0x010A, 1},  {0x0103, 0x0104, 1},
    {0x0201, 0x0202, 15}, {0x0205, 0x0206, 15}, {0x0207, 0x0208, 15}, {0x0301, 0x0302, 5},
    {0x0305, 0x0306, 15}, {0x0307, 0x0308, 15}, {0x0310, 0x0311, 5},  {0x0501, 0x0502, 2},
    {0x0503, 0x0504, 3},  {0x0505, 0x0506, 3},  {0x0507, 0x0508, 15}, {0x0509, 0x0510, 2},
    {0x0511, 0x0512, 3},  {0x0513, 0x0514, 3},  {0x0516, 0x0517, 15}, {0x0518, 0x0519, 3},
    {0x0601, 0x0602, 15}, {0x0603, 0x0604, 15},
};

static const uint16_t server_only[] = {0x0102, 0x0104, 0x0108, 0x010A, 0x010B, 0x0202, 0x0206,
                                       0x0208, 0x0304, 0x0306, 0x0308, 0x0311, 0x0312, 0x0502,
                                       0x0504, 0x0506, 0x0508, 0x0510, 0x0512, 0x0514, 0x0515,
                                       0x0517, 0x0519, 0x0602, 0x0604, 0x0605};

TEST(cmd_table_complete)
{
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        const im_cmd_info_t *ci = im_cmd_info(pairs[i].req);
        CHECK(ci != NULL);
        CHECK_EQ_INT(ci->cmd, pairs[i].req);
        CHECK_EQ_INT(ci->rsp_cmd, pairs[i].rsp);
        CHECK_EQ_INT(ci->rsp_field, pairs[i].field);
        CHECK_EQ_INT(ci->client_req, 1);
        CHECK_EQ_INT(ci->rsp_is_res, pairs[i].req == 0x0301);
        const im_cmd_info_t *ri = im_cmd_info(pairs[i].rsp);
        CHECK(ri != NULL);
        CHECK_EQ_INT(ri->rsp_cmd, 0);
    }
    for (size_t i = 0; i < sizeof(server_only) / sizeof(server_only[0]); i++) {
        const im_cmd_info_t *ci = im_cmd_info(server_only[i]);
        CHECK(ci != NULL);
        CHECK_EQ_INT(ci->cmd, server_only[i]);
        CHECK_EQ_INT(ci->client_req, server_only[i] == 0x0302);
        CHECK(ci->name && strncmp(ci->name, "CIM", 3) == 0);
    }
    /* 0x0302 is in both lists: a response and a client's delivery confirmation */
    CHECK_EQ_INT(im_cmd_info(0x0302)->client_req, 1);
}

TEST(cmd_every_id_consistent)
{
    int known = 0;
    for (unsigned c = 0; c <= 0xFFFF; c++) {
        const im_cmd_info_t *ci = im_cmd_info((uint16_t) c);
        if (!ci) {
            CHECK_EQ_STR(im_cmd_name((uint16_t) c), "unknown");
            continue;
        }
        known++;
        CHECK_EQ_INT(ci->cmd, c);
        CHECK_EQ_STR(im_cmd_name((uint16_t) c), ci->name);
        if (ci->rsp_cmd)
            CHECK(im_cmd_info(ci->rsp_cmd) != NULL);
        CHECK(ci->rsp_field == 0 || ci->rsp_cmd != 0);
    }
    CHECK_EQ_INT(known, 51);
}

TEST(cmd_error_body_bytes)
{
    uint8_t out[12];
    uint16_t rsp = 0;
    /* field 2, 3003 = 0xBBB -> varint BB 17 */
    CHECK_EQ_INT(im_cmd_error_body(IM_CMD_GROUP_CREATE_REQ, 3003, out, &rsp), 3);
    CHECK_EQ_INT(rsp, IM_CMD_GROUP_CREATE_RSP);
    CHECK_EQ_INT(out[0], 0x10);
    CHECK_EQ_INT(out[1], 0xBB);
    CHECK_EQ_INT(out[2], 0x17);
    /* field 15 -> tag 0x78 */
    CHECK_EQ_INT(im_cmd_error_body(IM_CMD_SYNC_REQ, 1, out, &rsp), 2);
    CHECK_EQ_INT(rsp, IM_CMD_SYNC_RSP);
    CHECK_EQ_INT(out[0], 0x78);
    CHECK_EQ_INT(out[1], 1);
    /* largest code fits in 12 bytes */
    CHECK_EQ_INT(im_cmd_error_body(IM_CMD_SYNC_REQ, UINT32_MAX, out, &rsp), 6);
    /* no response / no result field / unknown */
    rsp = 1;
    CHECK_EQ_INT(im_cmd_error_body(IM_CMD_HEARTBEAT, 201, out, &rsp), -1);
    CHECK_EQ_INT(rsp, 0);
    CHECK_EQ_INT(im_cmd_error_body(IM_CMD_MSG_READ_ACK, 201, out, &rsp), -1);
    CHECK_EQ_INT(im_cmd_error_body(IM_CMD_MSG_DATA_ACK, 201, out, &rsp), -1);
    CHECK_EQ_INT(im_cmd_error_body(IM_CMD_AUTH_RSP, 201, out, &rsp), -1);
    CHECK_EQ_INT(im_cmd_error_body(0x7777, 201, out, &rsp), -1);
}

TEST(cmd_error_body_decodes)
{
    uint8_t out[12];
    uint16_t rsp;
    int n;

    n = im_cmd_error_body(IM_CMD_GROUP_CREATE_REQ, IM_ERR_NOT_FOUND, out, &rsp);
    CHECK(n > 0);
    CIM__Def__CIMGroupCreateRsp *gc = cim__def__cimgroup_create_rsp__unpack(NULL, (size_t) n, out);
    CHECK(gc != NULL);
    CHECK_EQ_INT(gc->result_code, IM_ERR_NOT_FOUND);
    CHECK_EQ_INT(gc->user_id, 0);
    cim__def__cimgroup_create_rsp__free_unpacked(gc, NULL);

    n = im_cmd_error_body(IM_CMD_AUTH_TOKEN_REQ, IM_ERR_LOGIN_INVALID_TOKEN, out, &rsp);
    CIM__Def__CIMAuthTokenRsp *at = cim__def__cimauth_token_rsp__unpack(NULL, (size_t) n, out);
    CHECK(at != NULL);
    CHECK_EQ_INT(at->result_code, IM_ERR_LOGIN_INVALID_TOKEN);
    cim__def__cimauth_token_rsp__free_unpacked(at, NULL);

    n = im_cmd_error_body(IM_CMD_AUTH_REQ, IM_ERR_NOT_LOGGED_IN, out, &rsp);
    CHECK_EQ_INT(rsp, IM_CMD_AUTH_RSP);
    CIM__Def__CIMAuthRsp *ar = cim__def__cimauth_rsp__unpack(NULL, (size_t) n, out);
    CHECK(ar != NULL);
    CHECK_EQ_INT(ar->result_code, IM_ERR_NOT_LOGGED_IN);
    cim__def__cimauth_rsp__free_unpacked(ar, NULL);

    n = im_cmd_error_body(IM_CMD_LOGOUT_REQ, IM_ERR_INTERNAL, out, &rsp);
    CIM__Def__CIMLogoutRsp *lo = cim__def__cimlogout_rsp__unpack(NULL, (size_t) n, out);
    CHECK(lo != NULL);
    CHECK_EQ_INT(lo->result_code, IM_ERR_INTERNAL);
    cim__def__cimlogout_rsp__free_unpacked(lo, NULL);

    n = im_cmd_error_body(IM_CMD_MSG_DATA, IM_RES_RATE_LIMITED, out, &rsp);
    CHECK_EQ_INT(rsp, IM_CMD_MSG_DATA_ACK);
    CIM__Def__CIMMsgDataAck *ack = cim__def__cimmsg_data_ack__unpack(NULL, (size_t) n, out);
    CHECK(ack != NULL);
    CHECK_EQ_INT(ack->res_code, IM_RES_RATE_LIMITED);
    cim__def__cimmsg_data_ack__free_unpacked(ack, NULL);

    n = im_cmd_error_body(IM_CMD_RECALL_REQ, IM_ERR_PERMISSION_DENIED, out, &rsp);
    CIM__Def__CIMMsgRecallRsp *rr = cim__def__cimmsg_recall_rsp__unpack(NULL, (size_t) n, out);
    CHECK(rr != NULL);
    CHECK_EQ_INT(rr->result_code, IM_ERR_PERMISSION_DENIED);
    cim__def__cimmsg_recall_rsp__free_unpacked(rr, NULL);

    n = im_cmd_error_body(IM_CMD_SYNC_REQ, IM_ERR_STORAGE_UNAVAILABLE, out, &rsp);
    CIM__Def__CIMSyncRsp *sy = cim__def__cimsync_rsp__unpack(NULL, (size_t) n, out);
    CHECK(sy != NULL);
    CHECK_EQ_INT(sy->result_code, IM_ERR_STORAGE_UNAVAILABLE);
    CHECK_EQ_INT(sy->n_msg_list, 0);
    cim__def__cimsync_rsp__free_unpacked(sy, NULL);

    n = im_cmd_error_body(IM_CMD_GROUP_JOIN_REQ, IM_ERR_PERMISSION_DENIED, out, &rsp);
    CIM__Def__CIMGroupJoinRsp *gj = cim__def__cimgroup_join_rsp__unpack(NULL, (size_t) n, out);
    CHECK(gj != NULL);
    CHECK_EQ_INT(gj->result_code, IM_ERR_PERMISSION_DENIED);
    cim__def__cimgroup_join_rsp__free_unpacked(gj, NULL);

    n = im_cmd_error_body(IM_CMD_GROUP_INFO_REQ, IM_ERR_NOT_FOUND, out, &rsp);
    CIM__Def__CIMGroupInfoRsp *gi = cim__def__cimgroup_info_rsp__unpack(NULL, (size_t) n, out);
    CHECK(gi != NULL);
    CHECK_EQ_INT(gi->result_code, IM_ERR_NOT_FOUND);
    cim__def__cimgroup_info_rsp__free_unpacked(gi, NULL);

    n = im_cmd_error_body(IM_CMD_REGISTER_REQ, IM_ERR_USER_ALREADY_EXIST, out, &rsp);
    CIM__Def__CIMRegisterRsp *rg = cim__def__cimregister_rsp__unpack(NULL, (size_t) n, out);
    CHECK(rg != NULL);
    CHECK_EQ_INT(rg->result_code, IM_ERR_USER_ALREADY_EXIST);
    cim__def__cimregister_rsp__free_unpacked(rg, NULL);

    n = im_cmd_error_body(IM_CMD_ONLINE_LIST_REQ, IM_ERR_RATE_LIMITED, out, &rsp);
    CIM__Def__CIMOnlineUserListRsp *ol =
        cim__def__cimonline_user_list_rsp__unpack(NULL, (size_t) n, out);
    CHECK(ol != NULL);
    CHECK_EQ_INT(ol->result_code, IM_ERR_RATE_LIMITED);
    cim__def__cimonline_user_list_rsp__free_unpacked(ol, NULL);
}

TEST_MAIN()
