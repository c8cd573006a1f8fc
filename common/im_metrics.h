/* im_metrics: a small registry of counters and gauges, rendered in Prometheus text format.
 * Updates are atomic (safe from any thread). Metrics are registered at start-up. */
#ifndef IM_METRICS_H
#define IM_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct im_metric_s im_metric_t;

/* name may carry labels: "cim_gate_connections{client_type=\"web\"}". help may be NULL.
 * Returns a handle that lives until exit (never NULL; aborts when the registry is full). */
im_metric_t *im_metrics_counter(const char *name, const char *help);
im_metric_t *im_metrics_gauge(const char *name, const char *help);

void im_metric_add(im_metric_t *m, int64_t v);
void im_metric_set(im_metric_t *m, int64_t v);
int64_t im_metric_get(const im_metric_t *m);

/* Render all metrics into a malloc'd NUL-terminated string (*out); returns its length, or
 * -1 on allocation failure. Caller frees. */
long im_metrics_render(char **out);

/* Histogram with fixed bucket bounds (seconds). */
typedef struct im_hist_s im_hist_t;
im_hist_t *im_metrics_hist(const char *name, const char *help, const double *bounds, int n);
void im_hist_observe(im_hist_t *h, double v);

#endif
