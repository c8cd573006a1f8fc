/* im_map: open-addressing hash map from uint64_t key (any value but 0) to void *. */
#ifndef IM_MAP_H
#define IM_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct im_map_s {
    uint64_t *keys; /* 0 = empty, 1 = tombstone marker stored in vals as NULL... see .c */
    void **vals;
    size_t cap;  /* power of two */
    size_t len;  /* live entries */
    size_t used; /* live + tombstones */
} im_map_t;

void im_map_init(im_map_t *m);
void im_map_free(im_map_t *m);
/* Insert or replace. key must not be 0. 0 ok, IM_ERR_NOMEM. */
int im_map_put(im_map_t *m, uint64_t key, void *val);
void *im_map_get(const im_map_t *m, uint64_t key);
/* Remove; returns the old value or NULL. */
void *im_map_del(im_map_t *m, uint64_t key);
/* Iterate: for (size_t i = 0; im_map_next(m, &i, &k, &v);) */
int im_map_next(const im_map_t *m, size_t *iter, uint64_t *key, void **val);

#endif
