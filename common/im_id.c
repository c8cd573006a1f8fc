/* im_id: time-ordered 64-bit ids: 41 bits ms since IM_ID_EPOCH_MS | 10 bits worker | 12 bits
 * counter. A generator is not thread-safe: use one per thread (or per event loop). */
#include "im_id.h"

#include <time.h>

#define ID_COUNTER_BITS 12
#define ID_WORKER_BITS  10
#define ID_COUNTER_MAX  ((1u << ID_COUNTER_BITS) - 1)
#define ID_TIME_MASK    ((1ULL << 41) - 1)

void im_idgen_init(im_idgen_t *g, uint32_t worker)
{
    g->worker = worker & IM_ID_WORKER_MAX;
    g->last_ms = 0;
    g->counter = 0;
}

uint64_t im_idgen_next(im_idgen_t *g, uint64_t now_ms)
{
    uint64_t ms = now_ms > IM_ID_EPOCH_MS ? now_ms - IM_ID_EPOCH_MS : 0;
    if (ms > g->last_ms) {
        g->last_ms = ms;
        g->counter = 0;
    } else if (g->counter > ID_COUNTER_MAX) {
        /* this millisecond is used up (or the clock went back and we are still in the
         * borrowed one): borrow the next */
        g->last_ms++;
        g->counter = 0;
    }
    uint64_t id = (g->last_ms & ID_TIME_MASK) << (ID_WORKER_BITS + ID_COUNTER_BITS) |
                  (uint64_t) g->worker << ID_COUNTER_BITS | g->counter;
    g->counter++;
    return id;
}

uint64_t im_id_time_ms(uint64_t id)
{
    return (id >> (ID_WORKER_BITS + ID_COUNTER_BITS)) + IM_ID_EPOCH_MS;
}

uint64_t im_id_floor(uint64_t unix_ms)
{
    return unix_ms > IM_ID_EPOCH_MS
               ? (unix_ms - IM_ID_EPOCH_MS) << (ID_WORKER_BITS + ID_COUNTER_BITS)
               : 0;
}

uint32_t im_id_worker(uint64_t id)
{
    return (uint32_t) (id >> ID_COUNTER_BITS) & IM_ID_WORKER_MAX;
}

static uint64_t clock_ms(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

uint64_t im_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

uint64_t im_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

uint64_t im_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}
