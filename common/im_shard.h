/* im_shard: data placement. shard(uid) = fmix64(uid) % shard_count (DESIGN.md). */
#ifndef IM_SHARD_H
#define IM_SHARD_H

#include <stdint.h>

#define IM_SHARD_COUNT 4

/* MurmurHash3's 64-bit finalizer. */
uint64_t im_fmix64(uint64_t k);
/* fmix64(id) % n (n > 0). */
unsigned im_shard_of(uint64_t id, unsigned n);
/* Rendezvous (highest random weight) choice: index in [0, n) of the node whose
 * fmix64(key ^ fmix64(node_ids[i])) is highest; -1 when n == 0. */
int im_rendezvous(uint64_t key, const uint64_t *node_ids, int n);

#endif
