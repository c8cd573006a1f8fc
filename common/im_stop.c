/* im_stop: the shutdown watchdog (im_stop.h). */
#include "im_stop.h"

#include <unistd.h>

#include "im_log.h"

static uv_timer_t g_force_timer;
static int g_armed;

static void force_close_one(uv_handle_t *h, void *arg)
{
    int *n = arg;
    if (uv_is_closing(h))
        return;
    log_warn("shutdown: a %s handle (%s) still open after %d s: closed",
             uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h) ? "active" : "idle",
             IM_STOP_FORCE_MS / 1000);
    uv_close(h, NULL);
    (*n)++;
}

static void stop_force(uv_timer_t *t)
{
    int n = 0;
    uv_walk(t->loop, force_close_one, &n);
    log_warn("shutdown: %d handle(s) forced closed", n);
}

void im_stop_watchdog_start(uv_loop_t *loop)
{
    if (g_armed)
        return;
    g_armed = 1;
    uv_timer_init(loop, &g_force_timer);
    uv_timer_start(&g_force_timer, stop_force, IM_STOP_FORCE_MS, 0);
    uv_unref((uv_handle_t *) &g_force_timer);
    alarm(IM_STOP_ALARM_S);
}

void im_stop_watchdog_end(uv_loop_t *loop)
{
    alarm(0);
    if (g_armed && !uv_is_closing((uv_handle_t *) &g_force_timer)) {
        uv_close((uv_handle_t *) &g_force_timer, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
    }
    g_armed = 0;
}
