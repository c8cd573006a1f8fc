/* im_token: login tokens. A token is not stored: it is
 *   "<user_id>.<token_ver>.<expires_unix>.<base64url(HMAC-SHA256(secret,
 * "<user_id>.<token_ver>.<expires_unix>"))>" (base64url without padding, libsodium's
 * sodium_bin2base64 URLSAFE_NO_PADDING: 43 chars). Verification recomputes the MAC and compares in
 * constant time (crypto_auth_hmacsha256_verify). */
#ifndef IM_TOKEN_H
#define IM_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define IM_TOKEN_MAX      128 /* buffer size that always fits a token + NUL */
#define IM_TOKEN_KEYBYTES 32

/* Derive the 32-byte HMAC key from a secret string of any length (crypto_generichash). */
void im_token_key(uint8_t key[IM_TOKEN_KEYBYTES], const char *secret);

/* Write a NUL-terminated token into out (at least IM_TOKEN_MAX bytes). Returns its length. */
int im_token_mint(const uint8_t key[IM_TOKEN_KEYBYTES], uint64_t user_id, uint32_t ver,
                  uint64_t expires, char *out);

/* Check a token: well-formed, MAC valid (constant time), not expired at now. On success 0 and
 * *user_id, *ver, *expires set. -1 malformed or bad MAC, -2 expired. The caller still compares
 * *ver with the user's current token version and *user_id with the claimed id. */
int im_token_verify(const uint8_t key[IM_TOKEN_KEYBYTES], const char *token, uint64_t now,
                    uint64_t *user_id, uint32_t *ver, uint64_t *expires);

#endif
