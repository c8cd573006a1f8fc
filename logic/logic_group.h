/* logic_group: groups (PROTOCOL.md 0x0501-0x0519), stored on shard(group_id), with each
 * user's group list on shard(user_id), member lists cached in Redis, and group messages fanned
 * out on write through logic_msg. */
#ifndef LOGIC_GROUP_H
#define LOGIC_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "logic.h"

#define LOGIC_GROUP_MAX_MEMBERS 10000
#define LOGIC_NOTIFY_ALL_MAX    500

/* client handlers */
void logic_group_create(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_group_disband(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_group_exit(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_group_list(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_group_info(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_group_invite(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_group_kick(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_group_members(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_group_join(const logic_req_t *r, const uint8_t *body, size_t len);

/* For the business API: the same operations on behalf of `actor` (0 = the API itself, which
 * may do what an owner may). done gets a CIMErrorCode and, for create, the new group id. */
typedef void (*logic_group_api_cb)(void *ud, int result, uint64_t group_id);
void logic_group_api_create(uint64_t owner, const char *name, const uint64_t *ids, size_t n,
                            logic_group_api_cb done, void *ud);
void logic_group_api_members(uint64_t gid, int add, const uint64_t *ids, size_t n,
                             logic_group_api_cb done, void *ud);
/* fields: NULL/-1 = unchanged */
void logic_group_api_update(uint64_t gid, const char *name, const char *announcement,
                            int join_model, int mute_model, logic_group_api_cb done, void *ud);
/* members: cb gets a malloc'd array (caller frees) or NULL with result != 200 */
void logic_group_api_list_members(uint64_t gid,
                                  void (*cb)(void *ud, int result, uint64_t *ids, size_t n),
                                  void *ud);

int logic_group_start(logic_t *l);

#endif
