/* fuzz_desc: command id -> protobuf-c message descriptor (by the message's short name, which
 * im_cmd_name returns), shared by the fuzz targets and the seed generator. Header-only. */
#ifndef FUZZ_DESC_H
#define FUZZ_DESC_H

#include <protobuf-c/protobuf-c.h>
#include <string.h>

#include "im_cmd.h"
#include "proto/cim.pb-c.h"

static const ProtobufCMessageDescriptor *all_desc[] = {
    &cim__def__cimauth_token_req__descriptor,
    &cim__def__cimauth_token_rsp__descriptor,
    &cim__def__cimauth_req__descriptor,
    &cim__def__cimauth_rsp__descriptor,
    &cim__def__cimlogout_req__descriptor,
    &cim__def__cimlogout_rsp__descriptor,
    &cim__def__cimheart_beat__descriptor,
    &cim__def__cimregister_req__descriptor,
    &cim__def__cimregister_rsp__descriptor,
    &cim__def__cimkickout_notify__descriptor,
    &cim__def__cimrecent_contact_session_req__descriptor,
    &cim__def__cimrecent_contact_session_rsp__descriptor,
    &cim__def__cimget_msg_list_req__descriptor,
    &cim__def__cimget_msg_list_rsp__descriptor,
    &cim__def__cimsync_req__descriptor,
    &cim__def__cimsync_rsp__descriptor,
    &cim__def__cimmsg_data__descriptor,
    &cim__def__cimmsg_data_ack__descriptor,
    &cim__def__cimmsg_data_read_ack__descriptor,
    &cim__def__cimmsg_data_read_notify__descriptor,
    &cim__def__cimget_latest_msg_id_req__descriptor,
    &cim__def__cimget_latest_msg_id_rsp__descriptor,
    &cim__def__cimget_msg_by_id_req__descriptor,
    &cim__def__cimget_msg_by_id_rsp__descriptor,
    &cim__def__cimmsg_recall_req__descriptor,
    &cim__def__cimmsg_recall_rsp__descriptor,
    &cim__def__cimmsg_recall_notify__descriptor,
    &cim__def__cimgroup_create_req__descriptor,
    &cim__def__cimgroup_create_rsp__descriptor,
    &cim__def__cimgroup_disbanding_req__descriptor,
    &cim__def__cimgroup_disbanding_rsp__descriptor,
    &cim__def__cimgroup_exit_req__descriptor,
    &cim__def__cimgroup_exit_rsp__descriptor,
    &cim__def__cimgroup_list_req__descriptor,
    &cim__def__cimgroup_list_rsp__descriptor,
    &cim__def__cimgroup_info_req__descriptor,
    &cim__def__cimgroup_info_rsp__descriptor,
    &cim__def__cimgroup_invite_member_req__descriptor,
    &cim__def__cimgroup_invite_member_rsp__descriptor,
    &cim__def__cimgroup_kick_out_member_req__descriptor,
    &cim__def__cimgroup_kick_out_member_rsp__descriptor,
    &cim__def__cimgroup_member_list_req__descriptor,
    &cim__def__cimgroup_member_list_rsp__descriptor,
    &cim__def__cimgroup_member_changed_notify__descriptor,
    &cim__def__cimgroup_join_req__descriptor,
    &cim__def__cimgroup_join_rsp__descriptor,
    &cim__def__cimquery_user_list_req__descriptor,
    &cim__def__cimquery_user_list_rsp__descriptor,
    &cim__def__cimonline_user_list_req__descriptor,
    &cim__def__cimonline_user_list_rsp__descriptor,
    &cim__def__cimpresence_notify__descriptor,
};
#define NDESC (sizeof(all_desc) / sizeof(all_desc[0]))

/* command id -> descriptor by name (im_cmd_name is the message's short name) */
static inline const ProtobufCMessageDescriptor *fuzz_desc_for(uint16_t cmd)
{
    const char *name = im_cmd_name(cmd);
    for (size_t i = 0; i < NDESC; i++)
        if (strcmp(all_desc[i]->short_name, name) == 0)
            return all_desc[i];
    return NULL;
}

#endif
