/* im_stop: the shutdown watchdog of msg_gate and msg_logic.
 *
 * An orderly stop closes every handle and uv_run returns. If something still holds the loop
 * open IM_STOP_FORCE_MS after the signal (a module's timer re-armed by a callback that failed
 * during teardown, a poll handle nobody closes), the watchdog names what is left, closes it and
 * lets the loop end. Its timer is unreferenced: it never keeps the loop alive by itself. If the
 * loop itself is stuck (no callback runs), SIGALRM ends the process IM_STOP_ALARM_S after the
 * signal. */
#ifndef IM_STOP_H
#define IM_STOP_H

#include <uv.h>

#define IM_STOP_FORCE_MS 15000
#define IM_STOP_ALARM_S  30

/* at the stop signal */
void im_stop_watchdog_start(uv_loop_t *loop);
/* after uv_run returned: disarms the alarm and closes the watchdog's timer */
void im_stop_watchdog_end(uv_loop_t *loop);

#endif
