/* logic_webhook: offline-push webhook (see logic_webhook.c). */
#ifndef LOGIC_WEBHOOK_H
#define LOGIC_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "logic.h"

int logic_webhook_start(logic_t *l);
void logic_webhook_stop(void);
int logic_webhook_enabled(void);
int logic_webhook_group_max(void);
/* An inbox row was written: post it unless a device confirms it within the delay. */
void logic_webhook_schedule(uint64_t user_id, uint64_t from_id, uint32_t session_type,
                            uint64_t session_id, uint64_t server_msg_id, uint32_t msg_type,
                            const uint8_t *data, size_t len, uint32_t created);

#endif
