/* logic_user: user records (see logic_user.c). Callbacks run on the loop. */
#ifndef LOGIC_USER_H
#define LOGIC_USER_H

#include <stdint.h>

typedef struct logic_user_s {
    uint64_t user_id;
    char user_name[33];
    char nick[513]; /* 128 characters of UTF-8 */
    char avatar[513];
    char pwd_hash[129]; /* "" when the user has no password */
    uint32_t token_ver;
    uint32_t status; /* 0 active, 1 disabled */
} logic_user_t;

/* result: a CIMErrorCode (200 ok, 9000 exists, 3006 storage, 201 internal). */
typedef void (*logic_user_created_cb)(void *ud, int result, uint64_t uid, uint32_t token_ver);
/* rc: 1 found (u valid during the call), 0 no such user, -1 storage unavailable. */
typedef void (*logic_user_found_cb)(void *ud, int rc, const logic_user_t *u);

/* Create a user: uid 0 = allocate; name NULL = none (API import); pwd NULL = no password
 * (hashed with argon2id off the loop otherwise). */
void logic_user_create(uint64_t uid, const char *name, const char *nick, const char *avatar,
                       const char *pwd, logic_user_created_cb cb, void *ud);
/* Look a user up by id (name NULL) or by name (case-insensitive). */
void logic_user_get(uint64_t uid, const char *name, logic_user_found_cb cb, void *ud);
/* token_ver += 1; cb rc 1 ok (ver = the new version), 0 no such user, -1 storage. */
void logic_user_bump_token(uint64_t uid, void (*cb)(void *ud, int rc, uint32_t ver), void *ud);

/* Nick names of ids[0..n) (ids must stay valid until cb): cb gets nicks[i] (NULL when
 * unknown; owned by the call) or rc -1. */
void logic_user_nicks(const uint64_t *ids, size_t n, void (*cb)(void *ud, int rc, char **nicks),
                      void *ud);

#endif
