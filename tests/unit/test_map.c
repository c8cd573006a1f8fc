/* Unit tests for common/im_map. */
#include "../test.h"

#include "im_map.h"

#define VAL(k) ((void *) (uintptr_t) ((k) *2 + 1))

TEST(map_empty)
{
    im_map_t m;
    im_map_init(&m);
    CHECK(im_map_get(&m, 1) == NULL);
    CHECK(im_map_del(&m, 1) == NULL);
    size_t it = 0;
    uint64_t k;
    void *v;
    CHECK_EQ_INT(im_map_next(&m, &it, &k, &v), 0);
    CHECK(im_map_put(&m, 0, VAL(0)) != 0); /* key 0 is reserved */
    CHECK_EQ_INT(m.len, 0);
    im_map_free(&m);
    im_map_free(&m);
}

TEST(map_put_get_replace_del)
{
    im_map_t m;
    im_map_init(&m);
    CHECK_EQ_INT(im_map_put(&m, 42, VAL(42)), 0);
    CHECK_EQ_INT(im_map_put(&m, UINT64_MAX, VAL(7)), 0); /* every key but 0 is valid */
    CHECK_EQ_INT(im_map_put(&m, 1, NULL), 0);            /* NULL values are stored too */
    CHECK_EQ_INT(m.len, 3);
    CHECK(im_map_get(&m, 42) == VAL(42));
    CHECK(im_map_get(&m, UINT64_MAX) == VAL(7));
    CHECK(im_map_get(&m, 1) == NULL);
    CHECK(im_map_get(&m, 43) == NULL);
    CHECK_EQ_INT(im_map_put(&m, 42, VAL(100)), 0);
    CHECK_EQ_INT(m.len, 3);
    CHECK(im_map_get(&m, 42) == VAL(100));
    CHECK(im_map_del(&m, 42) == VAL(100));
    CHECK(im_map_get(&m, 42) == NULL);
    CHECK(im_map_del(&m, 42) == NULL);
    CHECK_EQ_INT(m.len, 2);
    CHECK(im_map_del(&m, UINT64_MAX) == VAL(7));
    CHECK_EQ_INT(m.len, 1);
    im_map_free(&m);
}

TEST(map_100k_grow_iterate)
{
    im_map_t m;
    im_map_init(&m);
    const uint64_t n = 100000;
    for (uint64_t i = 1; i <= n; i++) {
        uint64_t k = i * 0x9E3779B97F4A7C15ULL; /* spread, includes huge keys */
        if (k == 0)
            continue;
        CHECK_EQ_INT(im_map_put(&m, k, VAL(i)), 0);
        CHECK(m.used * 10 <= m.cap * 7);
        CHECK((m.cap & (m.cap - 1)) == 0);
    }
    CHECK_EQ_INT(m.len, n);
    for (uint64_t i = 1; i <= n; i++)
        CHECK(im_map_get(&m, i * 0x9E3779B97F4A7C15ULL) == VAL(i));
    /* sequential keys too */
    for (uint64_t i = 1; i <= n; i++)
        CHECK(im_map_get(&m, i) == NULL || i * 0x9E3779B97F4A7C15ULL == i);

    /* iterate: every key once */
    char *seen = calloc(n + 1, 1);
    CHECK(seen != NULL);
    size_t it = 0, count = 0;
    uint64_t k;
    void *v;
    while (im_map_next(&m, &it, &k, &v)) {
        uint64_t i = ((uintptr_t) v - 1) / 2;
        CHECK(i >= 1 && i <= n);
        CHECK(k == i * 0x9E3779B97F4A7C15ULL);
        CHECK(!seen[i]);
        seen[i] = 1;
        count++;
    }
    CHECK_EQ_INT(count, n);
    free(seen);

    /* delete every other key while iterating (deleting the current entry is allowed) */
    it = 0;
    while (im_map_next(&m, &it, &k, &v)) {
        uint64_t i = ((uintptr_t) v - 1) / 2;
        if (i % 2 == 0)
            CHECK(im_map_del(&m, k) == v);
    }
    CHECK_EQ_INT(m.len, n / 2);
    for (uint64_t i = 1; i <= n; i++) {
        void *g = im_map_get(&m, i * 0x9E3779B97F4A7C15ULL);
        CHECK(g == (i % 2 ? VAL(i) : NULL));
    }
    im_map_free(&m);
    CHECK(m.cap == 0 && m.len == 0 && m.keys == NULL);
}

TEST(map_sequential_keys)
{
    im_map_t m;
    im_map_init(&m);
    for (uint64_t i = 1; i <= 100000; i++)
        CHECK_EQ_INT(im_map_put(&m, i, VAL(i)), 0);
    for (uint64_t i = 1; i <= 100000; i++)
        CHECK(im_map_get(&m, i) == VAL(i));
    for (uint64_t i = 1; i <= 100000; i++)
        CHECK(im_map_del(&m, i) == VAL(i));
    CHECK_EQ_INT(m.len, 0);
    size_t it = 0;
    CHECK_EQ_INT(im_map_next(&m, &it, NULL, NULL), 0);
    im_map_free(&m);
}

TEST(map_tombstone_reuse)
{
    im_map_t m;
    im_map_init(&m);
    for (uint64_t i = 1; i <= 8; i++)
        CHECK_EQ_INT(im_map_put(&m, i, VAL(i)), 0);
    size_t cap = m.cap;
    CHECK_EQ_INT(m.used, 8);
    /* delete + reinsert the same key: the tombstone on its probe path is reused */
    for (int round = 0; round < 1000; round++) {
        CHECK(im_map_del(&m, 3) == VAL(3));
        CHECK_EQ_INT(m.used, 8); /* tombstone counts */
        CHECK_EQ_INT(m.len, 7);
        CHECK_EQ_INT(im_map_put(&m, 3, VAL(3)), 0);
        CHECK_EQ_INT(m.used, 8);
        CHECK_EQ_INT(m.len, 8);
    }
    CHECK_EQ_INT(m.cap, cap);

    /* churn with ever new keys: tombstones are cleaned by rebuilds, the table stays small */
    for (uint64_t i = 1000; i < 200000; i++) {
        CHECK_EQ_INT(im_map_put(&m, i, VAL(i)), 0);
        CHECK(im_map_del(&m, i) == VAL(i));
        CHECK(m.used * 10 <= m.cap * 7);
    }
    CHECK_EQ_INT(m.len, 8);
    CHECK(m.cap <= 64);
    for (uint64_t i = 1; i <= 8; i++)
        CHECK(im_map_get(&m, i) == VAL(i));
    im_map_free(&m);
}

TEST(map_lookup_past_tombstones)
{
    im_map_t m;
    im_map_init(&m);
    for (uint64_t i = 1; i <= 10; i++)
        CHECK_EQ_INT(im_map_put(&m, i, VAL(i)), 0);
    /* delete half; the others must still be found even when their probe path crosses a
     * tombstone, and a reinsert must not create a duplicate */
    for (uint64_t i = 1; i <= 10; i += 2)
        im_map_del(&m, i);
    for (uint64_t i = 2; i <= 10; i += 2) {
        CHECK(im_map_get(&m, i) == VAL(i));
        CHECK_EQ_INT(im_map_put(&m, i, VAL(i + 100)), 0);
    }
    CHECK_EQ_INT(m.len, 5);
    size_t it = 0, count = 0;
    while (im_map_next(&m, &it, NULL, NULL))
        count++;
    CHECK_EQ_INT(count, 5);
    im_map_free(&m);
}

TEST_MAIN()
