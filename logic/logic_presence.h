/* logic_presence: routes, the online set, presence notifications (see logic_presence.c). */
#ifndef LOGIC_PRESENCE_H
#define LOGIC_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "logic.h"

/* rc 0 ok (og/oc: the connection this route replaced, 0 if none), -1 Redis unavailable */
typedef void (*logic_route_cb)(void *ud, int rc, uint64_t old_gate, uint64_t old_conn);

/* Route (uid, type) to gate:conn; only_if_missing keeps a newer route (gate re-announcing). */
void logic_route_set(uint64_t uid, uint32_t ct, uint64_t gid, uint64_t cid, int only_if_missing,
                     logic_route_cb cb, void *ud);
/* Remove the route only while it still names gate:conn. */
void logic_route_del(uint64_t uid, uint32_t ct, uint64_t gid, uint64_t cid);
/* A connection closed: its presence subscription ends. */
void logic_presence_conn_closed(uint64_t gid, uint64_t cid);
/* A gate left the registry for good: remove the routes through it (one logic does it). */
void logic_presence_gate_gone(uint64_t gid);
/* 0x0603 */
void logic_presence_online_list(const logic_req_t *r, const uint8_t *body, size_t len);
/* API: the client types online for uid (rc -1: Redis unavailable) */
void logic_presence_user(uint64_t uid,
                         void (*cb)(void *ud, int rc, const uint32_t *types, size_t n, long long a,
                                    long long b),
                         void *ud);
/* API: online users and authenticated connections */
void logic_presence_count(void (*cb)(void *ud, int rc, const uint32_t *types, size_t n,
                                     long long users, long long conns),
                          void *ud);

#endif
