/* Unit tests for common/im_id. */
#include "../test.h"

#include "im_id.h"

#define T0 1763877600123ULL /* 2025-11-23T06:00:00.123Z */

TEST(id_layout_and_extraction)
{
    im_idgen_t g;
    im_idgen_init(&g, 5);
    uint64_t id = im_idgen_next(&g, T0);
    CHECK_EQ_INT(im_id_time_ms(id), T0);
    CHECK_EQ_INT(im_id_worker(id), 5);
    CHECK(id == (((T0 - IM_ID_EPOCH_MS) << 22) | (5ULL << 12) | 0));
    CHECK(id < (1ULL << 63));
    uint64_t id2 = im_idgen_next(&g, T0);
    CHECK(id2 == id + 1);

    im_idgen_t w;
    im_idgen_init(&w, IM_ID_WORKER_MAX);
    uint64_t idw = im_idgen_next(&w, T0 + 10);
    CHECK_EQ_INT(im_id_worker(idw), IM_ID_WORKER_MAX);
    CHECK_EQ_INT(im_id_time_ms(idw), T0 + 10);

    /* far future still below 2^63: 41 bits of ms is ~69 years */
    /* the floor of a millisecond: below every id of that ms, above every id of the one before */
    CHECK(im_id_floor(T0) == ((T0 - IM_ID_EPOCH_MS) << 22));
    CHECK(im_id_floor(T0) <= id && im_id_floor(T0 + 1) > id2);
    CHECK_EQ_INT(im_id_time_ms(im_id_floor(T0 + 10)), T0 + 10);
    CHECK(im_id_floor(T0 + 10) <= idw && idw < im_id_floor(T0 + 11));
    CHECK_EQ_INT(im_id_floor(IM_ID_EPOCH_MS - 5), 0);

    im_idgen_t f;
    im_idgen_init(&f, 1);
    uint64_t idf = im_idgen_next(&f, IM_ID_EPOCH_MS + (1ULL << 41) - 1);
    CHECK(idf < (1ULL << 63));
    CHECK_EQ_INT(im_id_worker(idf), 1);
}

TEST(id_monotonic_same_ms)
{
    im_idgen_t g;
    im_idgen_init(&g, 7);
    uint64_t prev = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t id = im_idgen_next(&g, T0);
        CHECK(id > prev);
        CHECK_EQ_INT(im_id_time_ms(id), T0);
        CHECK_EQ_INT(im_id_worker(id), 7);
        prev = id;
    }
    /* a new millisecond restarts the counter */
    uint64_t id = im_idgen_next(&g, T0 + 1);
    CHECK(id > prev);
    CHECK((id & 0xFFF) == 0);
}

TEST(id_clock_goes_back)
{
    im_idgen_t g;
    im_idgen_init(&g, 3);
    uint64_t a = im_idgen_next(&g, T0);
    uint64_t b = im_idgen_next(&g, T0 - 5000); /* NTP step backwards */
    CHECK(b > a);
    CHECK_EQ_INT(im_id_time_ms(b), T0);
    uint64_t prev = b;
    for (uint64_t t = T0 - 4999; t < T0 + 3; t++) {
        uint64_t id = im_idgen_next(&g, t);
        CHECK(id > prev);
        CHECK_EQ_INT(im_id_worker(id), 3);
        prev = id;
    }
    CHECK_EQ_INT(im_id_time_ms(prev), T0 + 2);
    /* before the epoch: still increasing */
    uint64_t c = im_idgen_next(&g, 0);
    CHECK(c > prev);
}

TEST(id_more_than_4096_per_ms)
{
    im_idgen_t g;
    im_idgen_init(&g, 9);
    uint64_t prev = 0;
    for (int i = 0; i < 3 * 4096 + 5; i++) {
        uint64_t id = im_idgen_next(&g, T0);
        CHECK(id > prev);
        CHECK_EQ_INT(im_id_worker(id), 9);
        prev = id;
    }
    /* borrowed two following milliseconds */
    CHECK_EQ_INT(im_id_time_ms(prev), T0 + 3);
    CHECK_EQ_INT(prev & 0xFFF, 4);
    /* the wall clock catching up to a borrowed ms keeps counting there */
    uint64_t id = im_idgen_next(&g, T0 + 3);
    CHECK(id == prev + 1);
    id = im_idgen_next(&g, T0 + 4);
    CHECK(id > prev + 1);
    CHECK_EQ_INT(id & 0xFFF, 0);
}

TEST(id_workers_never_collide)
{
    im_idgen_t a, b;
    im_idgen_init(&a, 1);
    im_idgen_init(&b, 2);
    for (int i = 0; i < 10000; i++) {
        uint64_t t = T0 + (uint64_t) (i / 7);
        CHECK(im_idgen_next(&a, t) != im_idgen_next(&b, t));
    }
}

TEST(id_clocks)
{
    uint64_t now = im_now_ms();
    CHECK(now > T0 - 86400000ULL * 365); /* sane wall clock */
    uint64_t m1 = im_mono_ms();
    usleep(20000);
    uint64_t m2 = im_mono_ms();
    CHECK(m2 >= m1 + 15);
    CHECK(m2 < m1 + 5000);
    im_idgen_t g;
    im_idgen_init(&g, 0);
    uint64_t id = im_idgen_next(&g, now);
    CHECK_EQ_INT(im_id_time_ms(id), now);
}

TEST_MAIN()
