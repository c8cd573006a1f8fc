/* im_id: time-ordered 64-bit server ids: 41 bits of milliseconds since 2024-01-01 UTC,
 * 10 bits of worker id (leased in MySQL, 0..1023), 12 bits of counter. Below 2^63. */
#ifndef IM_ID_H
#define IM_ID_H

#include <stdint.h>

#define IM_ID_EPOCH_MS   1704067200000ULL
#define IM_ID_WORKER_MAX 1023

typedef struct im_idgen_s {
    uint32_t worker;  /* 0..1023 */
    uint64_t last_ms; /* last millisecond used (relative to epoch) */
    uint32_t counter; /* next counter in last_ms */
} im_idgen_t;

void im_idgen_init(im_idgen_t *g, uint32_t worker);
/* Next id at wall time now_ms (unix ms). Strictly increasing for one generator even if the
 * clock goes back (it then keeps using last_ms) or 4096 ids are taken in one ms (it borrows the
 * next ms). */
uint64_t im_idgen_next(im_idgen_t *g, uint64_t now_ms);
uint64_t im_id_time_ms(uint64_t id); /* unix ms of an id */
/* the smallest id of unix millisecond unix_ms (0 before the epoch): ids below it are older */
uint64_t im_id_floor(uint64_t unix_ms);
uint32_t im_id_worker(uint64_t id);
uint64_t im_now_ms(void);  /* CLOCK_REALTIME in ms */
uint64_t im_mono_ms(void); /* CLOCK_MONOTONIC in ms */
uint64_t im_mono_us(void); /* CLOCK_MONOTONIC in us */

#endif
