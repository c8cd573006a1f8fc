/* im_cmd: the command table of PROTOCOL.md section 3. */
#include "im_cmd.h"

/* Sorted by cmd (im_cmd_info does a binary search). */
static const im_cmd_info_t cmd_table[] = {
    /* cmd, name, rsp_cmd, rsp_field, rsp_is_res, client_req */
    {IM_CMD_AUTH_TOKEN_REQ, "CIMAuthTokenReq", IM_CMD_AUTH_TOKEN_RSP, 2, 0, 1},
    {IM_CMD_AUTH_TOKEN_RSP, "CIMAuthTokenRsp", 0, 0, 0, 0},
    {IM_CMD_LOGOUT_REQ, "CIMLogoutReq", IM_CMD_LOGOUT_RSP, 1, 0, 1},
    {IM_CMD_LOGOUT_RSP, "CIMLogoutRsp", 0, 0, 0, 0},
    {IM_CMD_HEARTBEAT, "CIMHeartBeat", 0, 0, 0, 1},
    {IM_CMD_AUTH_REQ, "CIMAuthReq", IM_CMD_AUTH_RSP, 2, 0, 1},
    {IM_CMD_AUTH_RSP, "CIMAuthRsp", 0, 0, 0, 0},
    {IM_CMD_REGISTER_REQ, "CIMRegisterReq", IM_CMD_REGISTER_RSP, 1, 0, 1},
    {IM_CMD_REGISTER_RSP, "CIMRegisterRsp", 0, 0, 0, 0},
    {IM_CMD_KICKOUT_NOTIFY, "CIMKickoutNotify", 0, 0, 0, 0},
    {IM_CMD_RECENT_SESSION_REQ, "CIMRecentContactSessionReq", IM_CMD_RECENT_SESSION_RSP, 15, 0, 1},
    {IM_CMD_RECENT_SESSION_RSP, "CIMRecentContactSessionRsp", 0, 0, 0, 0},
    {IM_CMD_MSG_LIST_REQ, "CIMGetMsgListReq", IM_CMD_MSG_LIST_RSP, 15, 0, 1},
    {IM_CMD_MSG_LIST_RSP, "CIMGetMsgListRsp", 0, 0, 0, 0},
    {IM_CMD_SYNC_REQ, "CIMSyncReq", IM_CMD_SYNC_RSP, 15, 0, 1},
    {IM_CMD_SYNC_RSP, "CIMSyncRsp", 0, 0, 0, 0},
    {IM_CMD_MSG_DATA, "CIMMsgData", IM_CMD_MSG_DATA_ACK, 5, 1, 1},
    {IM_CMD_MSG_DATA_ACK, "CIMMsgDataAck", 0, 0, 0, 1},
    {IM_CMD_MSG_READ_ACK, "CIMMsgDataReadAck", 0, 0, 0, 1},
    {IM_CMD_MSG_READ_NOTIFY, "CIMMsgDataReadNotify", 0, 0, 0, 0},
    {IM_CMD_LATEST_MSG_ID_REQ, "CIMGetLatestMsgIdReq", IM_CMD_LATEST_MSG_ID_RSP, 15, 0, 1},
    {IM_CMD_LATEST_MSG_ID_RSP, "CIMGetLatestMsgIdRsp", 0, 0, 0, 0},
    {IM_CMD_MSG_BY_ID_REQ, "CIMGetMsgByIdReq", IM_CMD_MSG_BY_ID_RSP, 15, 0, 1},
    {IM_CMD_MSG_BY_ID_RSP, "CIMGetMsgByIdRsp", 0, 0, 0, 0},
    {IM_CMD_RECALL_REQ, "CIMMsgRecallReq", IM_CMD_RECALL_RSP, 5, 0, 1},
    {IM_CMD_RECALL_RSP, "CIMMsgRecallRsp", 0, 0, 0, 0},
    {IM_CMD_RECALL_NOTIFY, "CIMMsgRecallNotify", 0, 0, 0, 0},
    {IM_CMD_GROUP_CREATE_REQ, "CIMGroupCreateReq", IM_CMD_GROUP_CREATE_RSP, 2, 0, 1},
    {IM_CMD_GROUP_CREATE_RSP, "CIMGroupCreateRsp", 0, 0, 0, 0},
    {IM_CMD_GROUP_DISBAND_REQ, "CIMGroupDisbandingReq", IM_CMD_GROUP_DISBAND_RSP, 3, 0, 1},
    {IM_CMD_GROUP_DISBAND_RSP, "CIMGroupDisbandingRsp", 0, 0, 0, 0},
    {IM_CMD_GROUP_EXIT_REQ, "CIMGroupExitReq", IM_CMD_GROUP_EXIT_RSP, 3, 0, 1},
    {IM_CMD_GROUP_EXIT_RSP, "CIMGroupExitRsp", 0, 0, 0, 0},
    {IM_CMD_GROUP_LIST_REQ, "CIMGroupListReq", IM_CMD_GROUP_LIST_RSP, 15, 0, 1},
    {IM_CMD_GROUP_LIST_RSP, "CIMGroupListRsp", 0, 0, 0, 0},
    {IM_CMD_GROUP_INFO_REQ, "CIMGroupInfoReq", IM_CMD_GROUP_INFO_RSP, 2, 0, 1},
    {IM_CMD_GROUP_INFO_RSP, "CIMGroupInfoRsp", 0, 0, 0, 0},
    {IM_CMD_GROUP_INVITE_REQ, "CIMGroupInviteMemberReq", IM_CMD_GROUP_INVITE_RSP, 3, 0, 1},
    {IM_CMD_GROUP_INVITE_RSP, "CIMGroupInviteMemberRsp", 0, 0, 0, 0},
    {IM_CMD_GROUP_KICK_REQ, "CIMGroupKickOutMemberReq", IM_CMD_GROUP_KICK_RSP, 3, 0, 1},
    {IM_CMD_GROUP_KICK_RSP, "CIMGroupKickOutMemberRsp", 0, 0, 0, 0},
    {IM_CMD_GROUP_MEMBER_CHANGED, "CIMGroupMemberChangedNotify", 0, 0, 0, 0},
    {IM_CMD_GROUP_MEMBER_LIST_REQ, "CIMGroupMemberListReq", IM_CMD_GROUP_MEMBER_LIST_RSP, 15, 0, 1},
    {IM_CMD_GROUP_MEMBER_LIST_RSP, "CIMGroupMemberListRsp", 0, 0, 0, 0},
    {IM_CMD_GROUP_JOIN_REQ, "CIMGroupJoinReq", IM_CMD_GROUP_JOIN_RSP, 3, 0, 1},
    {IM_CMD_GROUP_JOIN_RSP, "CIMGroupJoinRsp", 0, 0, 0, 0},
    {IM_CMD_USER_LIST_REQ, "CIMQueryUserListReq", IM_CMD_USER_LIST_RSP, 15, 0, 1},
    {IM_CMD_USER_LIST_RSP, "CIMQueryUserListRsp", 0, 0, 0, 0},
    {IM_CMD_ONLINE_LIST_REQ, "CIMOnlineUserListReq", IM_CMD_ONLINE_LIST_RSP, 15, 0, 1},
    {IM_CMD_ONLINE_LIST_RSP, "CIMOnlineUserListRsp", 0, 0, 0, 0},
    {IM_CMD_PRESENCE_NOTIFY, "CIMPresenceNotify", 0, 0, 0, 0},
};

#define CMD_COUNT (sizeof(cmd_table) / sizeof(cmd_table[0]))

const im_cmd_info_t *im_cmd_info(uint16_t cmd)
{
    size_t lo = 0, hi = CMD_COUNT;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmd_table[mid].cmd == cmd)
            return &cmd_table[mid];
        if (cmd_table[mid].cmd < cmd)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *im_cmd_name(uint16_t cmd)
{
    const im_cmd_info_t *ci = im_cmd_info(cmd);
    return ci ? ci->name : "unknown";
}

static int put_varint(uint8_t *out, uint32_t v)
{
    int n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t) v;
    return n;
}

int im_cmd_error_body(uint16_t cmd, uint32_t code, uint8_t *out, uint16_t *rsp_cmd)
{
    const im_cmd_info_t *ci = im_cmd_info(cmd);
    *rsp_cmd = ci ? ci->rsp_cmd : 0;
    if (!ci || !ci->rsp_cmd || !ci->rsp_field)
        return -1;
    int n = put_varint(out, (uint32_t) ci->rsp_field << 3); /* wire type 0: varint */
    n += put_varint(out + n, code);
    return n;
}
