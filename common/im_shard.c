/* im_shard: data placement (DESIGN.md "Data placement"). */
#include "im_shard.h"

uint64_t im_fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

unsigned im_shard_of(uint64_t id, unsigned n)
{
    return (unsigned) (im_fmix64(id) % n);
}

int im_rendezvous(uint64_t key, const uint64_t *node_ids, int n)
{
    int best = -1;
    uint64_t best_w = 0;
    for (int i = 0; i < n; i++) {
        uint64_t w = im_fmix64(key ^ im_fmix64(node_ids[i]));
        /* ties (practically impossible) go to the smaller node id, so the order of the list
         * does not matter */
        if (best < 0 || w > best_w || (w == best_w && node_ids[i] < node_ids[best])) {
            best = i;
            best_w = w;
        }
    }
    return best;
}
