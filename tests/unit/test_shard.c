/* Unit tests for common/im_shard. Expected values were computed independently with python3:
 *   M = 2**64 - 1
 *   def fmix(k):
 *       k ^= k >> 33; k = (k * 0xff51afd7ed558ccd) & M; k ^= k >> 33
 *       k = (k * 0xc4ceb9fe1a85ec53) & M; k ^= k >> 33; return k
 *   rv = lambda key, nodes: max(range(len(nodes)), key=lambda i: fmix(key ^ fmix(nodes[i]))) */
#include "../test.h"

#include "im_shard.h"

TEST(shard_fmix64_known_values)
{
    CHECK(im_fmix64(0) == 0);
    CHECK(im_fmix64(1) == 0xb456bcfc34c2cb2cULL);
    CHECK(im_fmix64(2) == 0x3abf2a20650683e7ULL);
    CHECK(im_fmix64(12345) == 0x17d2abfbf90baef9ULL);
    CHECK(im_fmix64(10000) == 0x4029022dfd04b16fULL);
    CHECK(im_fmix64(1ULL << 53) == 0x0b94f08fb8685d83ULL);
    CHECK(im_fmix64(UINT64_MAX) == 0x64b5720b4b825f21ULL);
}

TEST(shard_of_known_values)
{
    CHECK_EQ_INT(im_shard_of(0, IM_SHARD_COUNT), 0);
    CHECK_EQ_INT(im_shard_of(1, IM_SHARD_COUNT), 0);
    CHECK_EQ_INT(im_shard_of(2, IM_SHARD_COUNT), 3);
    CHECK_EQ_INT(im_shard_of(12345, IM_SHARD_COUNT), 1);
    CHECK_EQ_INT(im_shard_of(10000, IM_SHARD_COUNT), 3);
    CHECK_EQ_INT(im_shard_of(1ULL << 53, IM_SHARD_COUNT), 3);
    CHECK_EQ_INT(im_shard_of(UINT64_MAX, IM_SHARD_COUNT), 1);
    CHECK_EQ_INT(im_shard_of(12345, 1), 0);
}

TEST(shard_distribution_even)
{
    /* python3: [25125, 24979, 25032, 24864] for ids 1..100000 */
    int count[IM_SHARD_COUNT] = {0};
    for (uint64_t id = 1; id <= 100000; id++) {
        unsigned s = im_shard_of(id, IM_SHARD_COUNT);
        CHECK(s < IM_SHARD_COUNT);
        count[s]++;
    }
    CHECK_EQ_INT(count[0], 25125);
    CHECK_EQ_INT(count[1], 24979);
    CHECK_EQ_INT(count[2], 25032);
    CHECK_EQ_INT(count[3], 24864);
    for (int i = 0; i < IM_SHARD_COUNT; i++)
        CHECK(count[i] > 24000 && count[i] < 26000);

    /* ids allocated in blocks far apart spread too */
    int c2[IM_SHARD_COUNT] = {0};
    for (uint64_t id = 0; id < 100000; id++)
        c2[im_shard_of((1ULL << 40) + id * 1024, IM_SHARD_COUNT)]++;
    for (int i = 0; i < IM_SHARD_COUNT; i++)
        CHECK(c2[i] > 24000 && c2[i] < 26000);
}

TEST(shard_rendezvous_known_values)
{
    const uint64_t nodes[] = {101, 202, 303};
    const int want[] = {1, 1, 0, 2, 2, 2, 1, 0, 2, 2}; /* keys 1..10 */
    for (int k = 1; k <= 10; k++)
        CHECK_EQ_INT(im_rendezvous((uint64_t) k, nodes, 3), want[k - 1]);
    CHECK_EQ_INT(im_rendezvous(1, nodes, 0), -1);
    CHECK_EQ_INT(im_rendezvous(1, NULL, 0), -1);
    CHECK_EQ_INT(im_rendezvous(7, nodes, 1), 0);
}

TEST(shard_rendezvous_stable_and_minimal_moves)
{
    const uint64_t n3[] = {101, 202, 303};
    const uint64_t n3_perm[] = {303, 101, 202};
    const uint64_t n4[] = {101, 202, 303, 404};
    int moved = 0, per_node[4] = {0};
    for (uint64_t key = 1; key <= 100000; key++) {
        int a = im_rendezvous(key, n3, 3);
        CHECK(a >= 0 && a < 3);
        CHECK_EQ_INT(im_rendezvous(key, n3, 3), a); /* deterministic */
        /* the choice is a node, not a position: order of the list does not matter */
        CHECK(n3_perm[im_rendezvous(key, n3_perm, 3)] == n3[a]);
        int b = im_rendezvous(key, n4, 4);
        per_node[b]++;
        if (n4[b] != n3[a]) {
            moved++;
            CHECK(n4[b] == 404); /* a key only ever moves to the new node */
        }
    }
    /* python3: 24850 keys move when the 4th node is added (about 1/4) */
    CHECK_EQ_INT(moved, 24850);
    CHECK_EQ_INT(per_node[3], moved);
    for (int i = 0; i < 4; i++)
        CHECK(per_node[i] > 23500 && per_node[i] < 26500);

    /* removing a node moves only that node's keys */
    const uint64_t n2[] = {101, 303};
    for (uint64_t key = 1; key <= 20000; key++) {
        uint64_t before = n3[im_rendezvous(key, n3, 3)];
        uint64_t after = n2[im_rendezvous(key, n2, 2)];
        if (before != 202)
            CHECK(before == after);
    }
}

TEST_MAIN()
