/* im_token: stateless login tokens "<uid>.<ver>.<expires>.<base64url(HMAC-SHA256)>". */
#include "im_token.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define TOKEN_MAC_B64_LEN 43 /* 32 bytes, base64url without padding */

static void sodium_once(void)
{
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        if (sodium_init() < 0)
            abort();
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
}

void im_token_key(uint8_t key[IM_TOKEN_KEYBYTES], const char *secret)
{
    sodium_once();
    crypto_generichash(key, IM_TOKEN_KEYBYTES, (const unsigned char *) secret,
                       secret ? strlen(secret) : 0, NULL, 0);
}

int im_token_mint(const uint8_t key[IM_TOKEN_KEYBYTES], uint64_t user_id, uint32_t ver,
                  uint64_t expires, char *out)
{
    sodium_once();
    int n =
        snprintf(out, IM_TOKEN_MAX, "%" PRIu64 ".%" PRIu32 ".%" PRIu64 ".", user_id, ver, expires);
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, (const unsigned char *) out, (unsigned long long) n - 1, key);
    sodium_bin2base64(out + n, IM_TOKEN_MAX - (size_t) n, mac, sizeof(mac),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return n + TOKEN_MAC_B64_LEN;
}

/* Parse a decimal number of 1..20 digits ending at `end`: no sign, no leading zero, no
 * overflow past max. */
static int parse_u64(const char *s, const char *end, uint64_t max, uint64_t *out)
{
    if (s == end || end - s > 20 || (s[0] == '0' && end - s > 1))
        return -1;
    uint64_t v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned) (*p - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int im_token_verify(const uint8_t key[IM_TOKEN_KEYBYTES], const char *token, uint64_t now,
                    uint64_t *user_id, uint32_t *ver, uint64_t *expires)
{
    if (!token)
        return -1;
    size_t len = strnlen(token, IM_TOKEN_MAX);
    if (len == 0 || len >= IM_TOKEN_MAX)
        return -1;
    const char *d1 = memchr(token, '.', len);
    if (!d1)
        return -1;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t) (d1 + 1 - token));
    if (!d2)
        return -1;
    const char *d3 = memchr(d2 + 1, '.', len - (size_t) (d2 + 1 - token));
    if (!d3)
        return -1;
    const char *mac_b64 = d3 + 1;
    size_t mac_len = len - (size_t) (mac_b64 - token);
    if (mac_len != TOKEN_MAC_B64_LEN)
        return -1;

    uint64_t uid, v, exp;
    if (parse_u64(token, d1, UINT64_MAX, &uid) < 0 || parse_u64(d1 + 1, d2, UINT32_MAX, &v) < 0 ||
        parse_u64(d2 + 1, d3, UINT64_MAX, &exp) < 0)
        return -1;

    sodium_once();
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    size_t bin_len = 0;
    const char *b64_end = NULL;
    if (sodium_base642bin(mac, sizeof(mac), mac_b64, mac_len, NULL, &bin_len, &b64_end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        bin_len != sizeof(mac) || b64_end != mac_b64 + mac_len)
        return -1;
    /* the MAC must be in canonical form too: re-encoding gives the same text */
    char canon[TOKEN_MAC_B64_LEN + 1];
    sodium_bin2base64(canon, sizeof(canon), mac, sizeof(mac),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (memcmp(canon, mac_b64, TOKEN_MAC_B64_LEN) != 0)
        return -1;
    if (crypto_auth_hmacsha256_verify(mac, (const unsigned char *) token,
                                      (unsigned long long) (d3 - token), key) != 0)
        return -1;
    if (exp <= now)
        return -2;
    *user_id = uid;
    *ver = (uint32_t) v;
    *expires = exp;
    return 0;
}
