/* logic_msg: the message path (PROTOCOL.md section 5, DESIGN.md "Guarantees").
 *
 *   send (0x0301) -> checks -> server_msg_id -> store on shard(sender): outbox row + the
 *   sender's inbox seq, many messages per transaction -> ack (after commit) -> fan-out: one
 *   inbox row per recipient on shard(recipient), each with that user's next seq, many per
 *   transaction -> push to the recipients' online devices (and the sender's other devices)
 *   -> mark the outbox row done. A sweeper finishes fan-outs interrupted by a crash or an
 *   unavailable shard; inbox rows are unique on (user_id, server_msg_id) and a retry checks
 *   first, so nothing is stored twice and no seq is skipped. */
#ifndef LOGIC_MSG_H
#define LOGIC_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "logic.h"

#define LOGIC_MSG_DATA_MAX (16 * 1024)
#define LOGIC_NOTIFICATION 9  /* CIMMsgType NOTIFICATION */
#define LOGIC_RECALLED     11 /* CIMMsgStatus RECALLED */

typedef struct logic_msg_s logic_msg_t;

/* What an internal sender (API push, notifications, recall) gets back. rc: 0 stored, else a
 * CIMResCode (2 ERROR, 3 REFUSED). */
typedef void (*logic_msg_done_cb)(void *ud, int rc, uint64_t server_msg_id, uint64_t from_seq);

/* Client handlers (identity from r). */
void logic_msg_send(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_msg_confirm(const logic_req_t *r, const uint8_t *body, size_t len);

/* Store and deliver a message on behalf of the server: from_id (0 = system), to recipients
 * (session as each recipient sees it: session_id, or the author for 1:1 when session_id is 0).
 * in_author_inbox: the author's inbox gets the entry too (notifications by a user). */
void logic_msg_post(uint64_t from_id, uint64_t to_id, uint32_t session_type, uint32_t msg_type,
                    const char *client_msg_id, const uint8_t *data, size_t len,
                    const uint64_t *rcpt, size_t nrcpt, int in_author_inbox, int push,
                    logic_msg_done_cb cb, void *ud);

/* As logic_msg_post, but cb runs once the fan-out is done, with the number of inbox rows
 * written in place of from_seq (API pushes report what was stored). */
void logic_msg_post_counted(uint64_t from_id, uint64_t to_id, uint32_t session_type,
                            uint32_t msg_type, const char *client_msg_id, const uint8_t *data,
                            size_t len, const uint64_t *rcpt, size_t nrcpt, int in_author_inbox,
                            int push, logic_msg_done_cb cb, void *ud);

/* Push a packet to every online device of uid except (skip_gate, skip_conn). */
void logic_push_user(uint64_t uid, uint64_t skip_gate, uint64_t skip_conn, uint16_t cmd,
                     const uint8_t *body, size_t len);

/* Remember a user's nick (login) for from_nick_name. */
void logic_nick_set(uint64_t uid, const char *nick);
const char *logic_nick_get(uint64_t uid);

/* Users known to exist (a cache of im_user lookups). */
int logic_user_known(uint64_t uid);
void logic_user_mark_known(uint64_t uid);

/* Hooks the group module installs: resolve a group message's recipients (the members but the
 * author) and check the author may send; cont gets rcpt (taken) or NULL with a CIMResCode. */
typedef void (*logic_group_send_fn)(logic_msg_t *m, const logic_req_t *r);
void logic_msg_set_group_sender(logic_group_send_fn fn);
/* For the group module, after the checks: store m for rcpt (taken), or refuse with res. */
void logic_msg_store_to(logic_msg_t *m, uint64_t *rcpt, size_t n, int res_if_refused);
uint64_t logic_msg_author(const logic_msg_t *m);
uint64_t logic_msg_session(const logic_msg_t *m);
/* Sweeper: the recipients of an interrupted group message; cont(m, rcpt taken, n), or
 * cont(m, NULL, (size_t) -1) to try again at the next sweep. */
typedef void (*logic_group_members_fn)(logic_msg_t *m,
                                       void (*cont)(logic_msg_t *m, uint64_t *rcpt, size_t n));
void logic_msg_set_group_members(logic_group_members_fn fn);

int logic_msg_start(logic_t *l);
void logic_msg_stop(void);

#endif
