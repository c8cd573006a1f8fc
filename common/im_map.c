/* im_map: open addressing with linear probing over a power-of-two table.
 *
 * Slot states: live (keys[i] != 0), empty (keys[i] == 0, vals[i] == NULL) and tombstone
 * (keys[i] == 0, vals[i] == TOMB, a private sentinel address), so every key but 0 is usable.
 * The table grows (or is rebuilt without tombstones) when live + tombstones would pass 70%
 * of the capacity. Keys are spread with im_fmix64. Deleting the entry just returned by
 * im_map_next during an iteration is allowed; inserting is not. */
#include "im_map.h"

#include <stdlib.h>

#include "im_codec.h"
#include "im_shard.h"

#define MAP_MIN_CAP 16

static char tomb_sentinel;
#define TOMB ((void *) &tomb_sentinel)

void im_map_init(im_map_t *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = 0;
    m->len = 0;
    m->used = 0;
}

void im_map_free(im_map_t *m)
{
    free(m->keys);
    free(m->vals);
    im_map_init(m);
}

/* Slot of key, or (size_t) -1. */
static size_t find_slot(const im_map_t *m, uint64_t key)
{
    if (m->cap == 0 || key == 0)
        return (size_t) -1;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t) im_fmix64(key) & mask, n = 0; n < m->cap; i = (i + 1) & mask, n++) {
        if (m->keys[i] == key)
            return i;
        if (m->keys[i] == 0 && m->vals[i] != TOMB)
            return (size_t) -1;
    }
    return (size_t) -1;
}

static int rehash(im_map_t *m, size_t cap)
{
    uint64_t *keys = calloc(cap, sizeof(*keys));
    void **vals = calloc(cap, sizeof(*vals));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return IM_ERR_NOMEM;
    }
    size_t mask = cap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        if (m->keys[j] == 0)
            continue;
        size_t i = (size_t) im_fmix64(m->keys[j]) & mask;
        while (keys[i] != 0)
            i = (i + 1) & mask;
        keys[i] = m->keys[j];
        vals[i] = m->vals[j];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->used = m->len;
    return IM_OK;
}

int im_map_put(im_map_t *m, uint64_t key, void *val)
{
    size_t i = find_slot(m, key);
    if (i != (size_t) -1) {
        m->vals[i] = val;
        return IM_OK;
    }
    if (key == 0)
        return IM_ERR;
    if ((m->used + 1) * 10 > m->cap * 7) {
        /* rebuild at a size where the live entries fill at most 35%: grows when full of live
         * entries, stays (or shrinks) when full of tombstones */
        size_t cap = MAP_MIN_CAP;
        while ((m->len + 1) * 20 > cap * 7)
            cap *= 2;
        int rc = rehash(m, cap);
        if (rc != IM_OK)
            return rc;
    }
    size_t mask = m->cap - 1;
    for (i = (size_t) im_fmix64(key) & mask; m->keys[i] != 0; i = (i + 1) & mask)
        ;
    /* first free slot on the probe path: a tombstone is reused, an empty slot is taken */
    if (m->vals[i] != TOMB)
        m->used++;
    m->keys[i] = key;
    m->vals[i] = val;
    m->len++;
    return IM_OK;
}

void *im_map_get(const im_map_t *m, uint64_t key)
{
    size_t i = find_slot(m, key);
    return i == (size_t) -1 ? NULL : m->vals[i];
}

void *im_map_del(im_map_t *m, uint64_t key)
{
    size_t i = find_slot(m, key);
    if (i == (size_t) -1)
        return NULL;
    void *old = m->vals[i];
    m->keys[i] = 0;
    m->vals[i] = TOMB;
    m->len--;
    return old;
}

int im_map_next(const im_map_t *m, size_t *iter, uint64_t *key, void **val)
{
    for (size_t i = *iter; i < m->cap; i++) {
        if (m->keys[i] != 0) {
            *iter = i + 1;
            if (key)
                *key = m->keys[i];
            if (val)
                *val = m->vals[i];
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}
