/* Unit tests for common/im_token. */
#include "../test.h"

#include "im_token.h"

#define NOW 1763877600ULL

static uint8_t key[IM_TOKEN_KEYBYTES];

static void setup(void)
{
    im_token_key(key, "test secret");
}

TEST(token_roundtrip)
{
    setup();
    char tok[IM_TOKEN_MAX];
    int n = im_token_mint(key, 1234567, 3, NOW + 3600, tok);
    CHECK_EQ_INT(n, strlen(tok));
    CHECK(strncmp(tok, "1234567.3.1763881200.", 21) == 0);
    CHECK_EQ_INT(strlen(tok + 21), 43);
    for (const char *p = tok + 21; *p; p++)
        CHECK((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_');
    uint64_t uid = 0, exp = 0;
    uint32_t ver = 0;
    CHECK_EQ_INT(im_token_verify(key, tok, NOW, &uid, &ver, &exp), 0);
    CHECK_EQ_INT(uid, 1234567);
    CHECK_EQ_INT(ver, 3);
    CHECK_EQ_INT(exp, NOW + 3600);

    /* extremes fit in IM_TOKEN_MAX */
    n = im_token_mint(key, UINT64_MAX, UINT32_MAX, UINT64_MAX, tok);
    CHECK(n < IM_TOKEN_MAX);
    CHECK_EQ_INT(n, 20 + 1 + 10 + 1 + 20 + 1 + 43);
    CHECK_EQ_INT(im_token_verify(key, tok, NOW, &uid, &ver, &exp), 0);
    CHECK(uid == UINT64_MAX && ver == UINT32_MAX && exp == UINT64_MAX);
    n = im_token_mint(key, 0, 0, NOW + 1, tok);
    CHECK_EQ_INT(im_token_verify(key, tok, NOW, &uid, &ver, &exp), 0);
    CHECK(uid == 0 && ver == 0);

    /* deterministic */
    char tok2[IM_TOKEN_MAX];
    im_token_mint(key, 0, 0, NOW + 1, tok2);
    CHECK_EQ_STR(tok, tok2);
}

TEST(token_key_derivation)
{
    uint8_t k1[IM_TOKEN_KEYBYTES], k2[IM_TOKEN_KEYBYTES], k3[IM_TOKEN_KEYBYTES];
    im_token_key(k1, "a");
    im_token_key(k2, "a");
    im_token_key(k3, "b");
    CHECK(memcmp(k1, k2, sizeof(k1)) == 0);
    CHECK(memcmp(k1, k3, sizeof(k1)) != 0);
    char longsecret[1000];
    memset(longsecret, 'x', sizeof(longsecret) - 1);
    longsecret[sizeof(longsecret) - 1] = '\0';
    im_token_key(k3, longsecret);
    im_token_key(k2, "");
}

TEST(token_tampered_mac)
{
    setup();
    char tok[IM_TOKEN_MAX];
    int n = im_token_mint(key, 42, 1, NOW + 60, tok);
    uint64_t uid, exp;
    uint32_t ver;
    for (int i = n - 43; i < n; i++) {
        char t[IM_TOKEN_MAX];
        strcpy(t, tok);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), -1);
    }
    /* MAC one char short / one char long */
    char t[IM_TOKEN_MAX];
    strcpy(t, tok);
    t[n - 1] = '\0';
    CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), -1);
    strcpy(t, tok);
    strcat(t, "A");
    CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), -1);
    /* padding or standard-alphabet characters are not accepted */
    strcpy(t, tok);
    t[n - 1] = '=';
    CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), -1);
    strcpy(t, tok);
    t[n - 1] = '+';
    CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), -1);
}

TEST(token_tampered_fields)
{
    setup();
    char tok[IM_TOKEN_MAX], t[IM_TOKEN_MAX];
    im_token_mint(key, 42, 1, NOW + 60, tok);
    uint64_t uid, exp;
    uint32_t ver;
    const char *mac = strrchr(tok, '.') + 1;
    snprintf(t, sizeof(t), "43.1.%llu.%s", NOW + 60, mac); /* other user */
    CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), -1);
    snprintf(t, sizeof(t), "42.2.%llu.%s", NOW + 60, mac); /* other version */
    CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), -1);
    snprintf(t, sizeof(t), "42.1.%llu.%s", NOW + 6000, mac); /* extended expiry */
    CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), -1);
    snprintf(t, sizeof(t), "042.1.%llu.%s", NOW + 60, mac); /* leading zero */
    CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), -1);
    snprintf(t, sizeof(t), "42.1.%llu.%s", NOW + 60, mac); /* control: untouched */
    CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), 0);
}

TEST(token_expired)
{
    setup();
    char tok[IM_TOKEN_MAX];
    im_token_mint(key, 42, 1, NOW, tok);
    uint64_t uid, exp;
    uint32_t ver;
    CHECK_EQ_INT(im_token_verify(key, tok, NOW - 1, &uid, &ver, &exp), 0);
    CHECK_EQ_INT(im_token_verify(key, tok, NOW, &uid, &ver, &exp), -2);
    CHECK_EQ_INT(im_token_verify(key, tok, NOW + 100000, &uid, &ver, &exp), -2);
    im_token_mint(key, 42, 1, 0, tok);
    CHECK_EQ_INT(im_token_verify(key, tok, NOW, &uid, &ver, &exp), -2);
}

TEST(token_wrong_key)
{
    setup();
    uint8_t other[IM_TOKEN_KEYBYTES];
    im_token_key(other, "another secret");
    char tok[IM_TOKEN_MAX];
    im_token_mint(key, 42, 1, NOW + 60, tok);
    uint64_t uid, exp;
    uint32_t ver;
    CHECK_EQ_INT(im_token_verify(other, tok, NOW, &uid, &ver, &exp), -1);
    CHECK_EQ_INT(im_token_verify(key, tok, NOW, &uid, &ver, &exp), 0);
}

TEST(token_malformed)
{
    setup();
    char good[IM_TOKEN_MAX];
    im_token_mint(key, 42, 1, NOW + 60, good);
    const char *mac = strrchr(good, '.') + 1;
    char big[512];
    memset(big, '9', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char t[9][IM_TOKEN_MAX + 64];
    snprintf(t[0], sizeof(t[0]), "18446744073709551616.1.%llu.%s", NOW + 60, mac); /* 2^64 */
    snprintf(t[1], sizeof(t[1]), "42.4294967296.%llu.%s", NOW + 60, mac);          /* 2^32 */
    snprintf(t[2], sizeof(t[2]), "42.1.99999999999999999999.%s", mac);
    snprintf(t[3], sizeof(t[3]), "-42.1.%llu.%s", NOW + 60, mac);
    snprintf(t[4], sizeof(t[4]), "+42.1.%llu.%s", NOW + 60, mac);
    snprintf(t[5], sizeof(t[5]), " 42.1.%llu.%s", NOW + 60, mac);
    snprintf(t[6], sizeof(t[6]), "42.1.%llu.%s.", NOW + 60, mac);
    snprintf(t[7], sizeof(t[7]), "42..%llu.%s", NOW + 60, mac);
    snprintf(t[8], sizeof(t[8]), "0x2a.1.%llu.%s", NOW + 60, mac);
    const char *bad[] = {"",
                         ".",
                         "...",
                         "abc",
                         "42",
                         "42.1",
                         "42.1.1763877660",
                         "42.1.1763877660.",
                         "a.b.c.d",
                         "42.1.1763877660.!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
                         "42.1.1763877660.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                         "4 2.1.1763877660.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                         big,
                         t[0],
                         t[1],
                         t[2],
                         t[3],
                         t[4],
                         t[5],
                         t[6],
                         t[7],
                         t[8]};
    uint64_t uid = 77, exp = 77;
    uint32_t ver = 77;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = im_token_verify(key, bad[i], NOW, &uid, &ver, &exp);
        if (rc != -1)
            fprintf(stderr, "  accepted: '%s'\n", bad[i]);
        CHECK_EQ_INT(rc, -1);
    }
    CHECK_EQ_INT(im_token_verify(key, NULL, NOW, &uid, &ver, &exp), -1);
    CHECK(uid == 77 && ver == 77 && exp == 77); /* outputs untouched on failure */
}

TEST(token_random_garbage)
{
    setup();
    unsigned seed = 99;
    char t[IM_TOKEN_MAX + 8];
    const char alphabet[] = "0123456789.AZaz-_+/=";
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t) (rand_r(&seed) % (IM_TOKEN_MAX + 4));
        for (size_t i = 0; i < len; i++)
            t[i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
        t[len] = '\0';
        uint64_t uid, exp;
        uint32_t ver;
        CHECK_EQ_INT(im_token_verify(key, t, NOW, &uid, &ver, &exp), -1);
    }
}

TEST_MAIN()
