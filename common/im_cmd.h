/* im_cmd: command ids of PROTOCOL.md section 3 and facts about them. */
#ifndef IM_CMD_H
#define IM_CMD_H

#include <stddef.h>
#include <stdint.h>

enum {
    IM_CMD_AUTH_TOKEN_REQ = 0x0101,
    IM_CMD_AUTH_TOKEN_RSP = 0x0102,
    IM_CMD_LOGOUT_REQ = 0x0103,
    IM_CMD_LOGOUT_RSP = 0x0104,
    IM_CMD_HEARTBEAT = 0x0105,
    IM_CMD_AUTH_REQ = 0x0107,
    IM_CMD_AUTH_RSP = 0x0108,
    IM_CMD_REGISTER_REQ = 0x0109,
    IM_CMD_REGISTER_RSP = 0x010A,
    IM_CMD_KICKOUT_NOTIFY = 0x010B,
    IM_CMD_RECENT_SESSION_REQ = 0x0201,
    IM_CMD_RECENT_SESSION_RSP = 0x0202,
    IM_CMD_MSG_LIST_REQ = 0x0205,
    IM_CMD_MSG_LIST_RSP = 0x0206,
    IM_CMD_SYNC_REQ = 0x0207,
    IM_CMD_SYNC_RSP = 0x0208,
    IM_CMD_MSG_DATA = 0x0301,
    IM_CMD_MSG_DATA_ACK = 0x0302,
    IM_CMD_MSG_READ_ACK = 0x0303,
    IM_CMD_MSG_READ_NOTIFY = 0x0304,
    IM_CMD_LATEST_MSG_ID_REQ = 0x0305,
    IM_CMD_LATEST_MSG_ID_RSP = 0x0306,
    IM_CMD_MSG_BY_ID_REQ = 0x0307,
    IM_CMD_MSG_BY_ID_RSP = 0x0308,
    IM_CMD_RECALL_REQ = 0x0310,
    IM_CMD_RECALL_RSP = 0x0311,
    IM_CMD_RECALL_NOTIFY = 0x0312,
    IM_CMD_GROUP_CREATE_REQ = 0x0501,
    IM_CMD_GROUP_CREATE_RSP = 0x0502,
    IM_CMD_GROUP_DISBAND_REQ = 0x0503,
    IM_CMD_GROUP_DISBAND_RSP = 0x0504,
    IM_CMD_GROUP_EXIT_REQ = 0x0505,
    IM_CMD_GROUP_EXIT_RSP = 0x0506,
    IM_CMD_GROUP_LIST_REQ = 0x0507,
    IM_CMD_GROUP_LIST_RSP = 0x0508,
    IM_CMD_GROUP_INFO_REQ = 0x0509,
    IM_CMD_GROUP_INFO_RSP = 0x0510,
    IM_CMD_GROUP_INVITE_REQ = 0x0511,
    IM_CMD_GROUP_INVITE_RSP = 0x0512,
    IM_CMD_GROUP_KICK_REQ = 0x0513,
    IM_CMD_GROUP_KICK_RSP = 0x0514,
    IM_CMD_GROUP_MEMBER_CHANGED = 0x0515,
    IM_CMD_GROUP_MEMBER_LIST_REQ = 0x0516,
    IM_CMD_GROUP_MEMBER_LIST_RSP = 0x0517,
    IM_CMD_GROUP_JOIN_REQ = 0x0518,
    IM_CMD_GROUP_JOIN_RSP = 0x0519,
    IM_CMD_USER_LIST_REQ = 0x0601,
    IM_CMD_USER_LIST_RSP = 0x0602,
    IM_CMD_ONLINE_LIST_REQ = 0x0603,
    IM_CMD_ONLINE_LIST_RSP = 0x0604,
    IM_CMD_PRESENCE_NOTIFY = 0x0605,
};

/* CIMErrorCode values (PROTOCOL.md section 4). */
enum {
    IM_ERR_SUCCESS = 200,
    IM_ERR_INTERNAL = 201,
    IM_ERR_LOGIN_DB_VALIDATE_FAILED = 2000,
    IM_ERR_LOGIN_VERSION_TOO_OLD = 2001,
    IM_ERR_LOGIN_INVALID_TOKEN = 2002,
    IM_ERR_LOGIN_INVALID_USER_OR_PWD = 2003,
    IM_ERR_INVALID_PARAMETER = 3001,
    IM_ERR_PERMISSION_DENIED = 3002,
    IM_ERR_NOT_FOUND = 3003,
    IM_ERR_RATE_LIMITED = 3004,
    IM_ERR_PAYLOAD_TOO_LARGE = 3005,
    IM_ERR_STORAGE_UNAVAILABLE = 3006,
    IM_ERR_NOT_LOGGED_IN = 3007,
    IM_ERR_USER_ALREADY_EXIST = 9000,
    IM_ERR_USER_INVALID_PARAMETER = 9001,
    IM_ERR_USER_NOT_EXIST = 9002,
};

/* CIMResCode */
enum {
    IM_RES_UNKNOWN = 0,
    IM_RES_OK = 1,
    IM_RES_ERROR = 2,
    IM_RES_REFUSED = 3,
    IM_RES_RATE_LIMITED = 4
};

/* CIMClientType */
enum {
    IM_CT_DEFAULT = 0,
    IM_CT_ANDROID = 1,
    IM_CT_IOS = 2,
    IM_CT_WEB = 3,
    IM_CT_REST_API = 4,
    IM_CT_PC_WINDOWS = 5,
    IM_CT_MAC_OS = 6,
    IM_CT_MAX = 6
};

/* Kickout reasons (CIMKickoutNotify.reason). */
enum { IM_KICK_SAME_TYPE = 1, IM_KICK_API = 2, IM_KICK_DISABLED = 3 };

typedef struct im_cmd_info_s {
    uint16_t cmd;
    const char *name;
    uint16_t rsp_cmd;   /* response command, 0 when the request has none */
    uint8_t rsp_field;  /* field number of the response's result code, 0 when none */
    uint8_t rsp_is_res; /* 1: that field is a CIMResCode (0x0302), else a CIMErrorCode */
    uint8_t client_req; /* 1: a client may send it (C->S) */
} im_cmd_info_t;

/* Facts about a command id, or NULL for an unknown one. */
const im_cmd_info_t *im_cmd_info(uint16_t cmd);

/* Name of a command ("CIMAuthTokenReq"), or "unknown". */
const char *im_cmd_name(uint16_t cmd);

/* Encode the smallest response body to request `cmd` that carries result `code` in the
 * response's result field (a one-field protobuf). Writes at most 12 bytes to out. Returns the
 * body length, or -1 when the request has no response or no result field. *rsp_cmd is set. */
int im_cmd_error_body(uint16_t cmd, uint32_t code, uint8_t *out, uint16_t *rsp_cmd);

#endif
