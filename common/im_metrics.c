/* im_metrics: fixed registry of counters, gauges and histograms, Prometheus text output.
 *
 * Registration takes a mutex (start-up code, any thread); updates are lock-free __atomic
 * operations; rendering reads a consistent-enough snapshot (each value atomically). Registering
 * a name twice returns the first handle. Samples that share a base name (the name up to '{')
 * are rendered together under one "# HELP" / "# TYPE" pair, in registration order. */
#include "im_metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MAX  256
#define HISTS_MAX    64
#define HIST_BUCKETS 32
#define NAME_MAX_LEN 160
#define HELP_MAX_LEN 256

enum { KIND_COUNTER, KIND_GAUGE };

struct im_metric_s {
    char name[NAME_MAX_LEN];
    char help[HELP_MAX_LEN];
    int kind;
    int64_t value;
};

struct im_hist_s {
    char name[NAME_MAX_LEN];
    char help[HELP_MAX_LEN];
    int n;
    double bounds[HIST_BUCKETS];
    uint64_t counts[HIST_BUCKETS + 1]; /* per bucket (not cumulative); last is +Inf */
    uint64_t sum_bits;                 /* double, updated with compare-and-swap */
    uint64_t count;
};

static struct im_metric_s metrics[METRICS_MAX];
static int metric_count;
static struct im_hist_s hists[HISTS_MAX];
static int hist_count;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

static im_metric_t *metric_new(const char *name, const char *help, int kind)
{
    pthread_mutex_lock(&reg_lock);
    int count = __atomic_load_n(&metric_count, __ATOMIC_ACQUIRE);
    for (int i = 0; i < count; i++) {
        if (strcmp(metrics[i].name, name) == 0) {
            pthread_mutex_unlock(&reg_lock);
            return &metrics[i];
        }
    }
    if (count >= METRICS_MAX || strlen(name) >= NAME_MAX_LEN) {
        fprintf(stderr, "im_metrics: cannot register %s (registry full or name too long)\n", name);
        abort();
    }
    struct im_metric_s *m = &metrics[count];
    copy_str(m->name, sizeof(m->name), name);
    copy_str(m->help, sizeof(m->help), help);
    m->kind = kind;
    m->value = 0;
    __atomic_store_n(&metric_count, count + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&reg_lock);
    return m;
}

im_metric_t *im_metrics_counter(const char *name, const char *help)
{
    return metric_new(name, help, KIND_COUNTER);
}

im_metric_t *im_metrics_gauge(const char *name, const char *help)
{
    return metric_new(name, help, KIND_GAUGE);
}

void im_metric_add(im_metric_t *m, int64_t v)
{
    __atomic_fetch_add(&m->value, v, __ATOMIC_RELAXED);
}

void im_metric_set(im_metric_t *m, int64_t v)
{
    __atomic_store_n(&m->value, v, __ATOMIC_RELAXED);
}

int64_t im_metric_get(const im_metric_t *m)
{
    return __atomic_load_n(&m->value, __ATOMIC_RELAXED);
}

im_hist_t *im_metrics_hist(const char *name, const char *help, const double *bounds, int n)
{
    pthread_mutex_lock(&reg_lock);
    int count = __atomic_load_n(&hist_count, __ATOMIC_ACQUIRE);
    for (int i = 0; i < count; i++) {
        if (strcmp(hists[i].name, name) == 0) {
            pthread_mutex_unlock(&reg_lock);
            return &hists[i];
        }
    }
    if (count >= HISTS_MAX || strlen(name) >= NAME_MAX_LEN || n < 0 || n > HIST_BUCKETS) {
        fprintf(stderr, "im_metrics: cannot register histogram %s\n", name);
        abort();
    }
    struct im_hist_s *h = &hists[count];
    memset(h, 0, sizeof(*h));
    copy_str(h->name, sizeof(h->name), name);
    copy_str(h->help, sizeof(h->help), help);
    h->n = n;
    for (int i = 0; i < n; i++)
        h->bounds[i] = bounds[i];
    __atomic_store_n(&hist_count, count + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&reg_lock);
    return h;
}

void im_hist_observe(im_hist_t *h, double v)
{
    int b = 0;
    while (b < h->n && v > h->bounds[b])
        b++;
    __atomic_fetch_add(&h->counts[b], 1, __ATOMIC_RELAXED);
    uint64_t old = __atomic_load_n(&h->sum_bits, __ATOMIC_RELAXED), upd;
    do {
        double s;
        memcpy(&s, &old, sizeof(s));
        s += v;
        memcpy(&upd, &s, sizeof(upd));
    } while (!__atomic_compare_exchange_n(&h->sum_bits, &old, upd, 1, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
}

/* ---- rendering ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_printf(sbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf_t *sb, const char *fmt, ...)
{
    if (sb->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->oom = 1;
            return;
        }
        if ((size_t) n < sb->cap - sb->len) {
            sb->len += (size_t) n;
            return;
        }
        size_t cap = sb->cap * 2;
        while (cap - sb->len <= (size_t) n)
            cap *= 2;
        char *nb = realloc(sb->buf, cap);
        if (!nb) {
            sb->oom = 1;
            return;
        }
        sb->buf = nb;
        sb->cap = cap;
    }
}

static size_t base_len(const char *name)
{
    const char *b = strchr(name, '{');
    return b ? (size_t) (b - name) : strlen(name);
}

static int same_base(const char *a, const char *b)
{
    size_t la = base_len(a), lb = base_len(b);
    return la == lb && memcmp(a, b, la) == 0;
}

static void render_head(sbuf_t *sb, const char *name, const char *help, const char *type)
{
    int bl = (int) base_len(name);
    sb_printf(sb, "# HELP %.*s ", bl, name);
    if (!*help) /* Prometheus wants some text: fall back to the name */
        sb_printf(sb, "%.*s", bl, name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            sb_printf(sb, "\\\\");
        else if (*p == '\n')
            sb_printf(sb, "\\n");
        else
            sb_printf(sb, "%c", *p);
    }
    sb_printf(sb, "\n# TYPE %.*s %s\n", bl, name, type);
}

/* labels of a name without the braces ("" when none) */
static void split_labels(const char *name, int *base, const char **labels, int *labels_len)
{
    size_t bl = base_len(name);
    *base = (int) bl;
    *labels = "";
    *labels_len = 0;
    if (name[bl] == '{') {
        const char *end = strrchr(name, '}');
        if (end && end > name + bl + 1) {
            *labels = name + bl + 1;
            *labels_len = (int) (end - (name + bl + 1));
        }
    }
}

static void render_hist(sbuf_t *sb, const struct im_hist_s *h)
{
    int bl, ll;
    const char *labels;
    split_labels(h->name, &bl, &labels, &ll);
    const char *sep = ll ? "," : "";
    uint64_t cum = 0;
    for (int b = 0; b <= h->n; b++) {
        cum += __atomic_load_n(&h->counts[b], __ATOMIC_RELAXED);
        char le[64];
        if (b < h->n)
            snprintf(le, sizeof(le), "%g", h->bounds[b]);
        else
            snprintf(le, sizeof(le), "+Inf");
        sb_printf(sb, "%.*s_bucket{%.*s%sle=\"%s\"} %" PRIu64 "\n", bl, h->name, ll, labels, sep,
                  le, cum);
    }
    uint64_t bits = __atomic_load_n(&h->sum_bits, __ATOMIC_RELAXED);
    double sum;
    memcpy(&sum, &bits, sizeof(sum));
    if (ll) {
        sb_printf(sb, "%.*s_sum{%.*s} %.15g\n", bl, h->name, ll, labels, sum);
        sb_printf(sb, "%.*s_count{%.*s} %" PRIu64 "\n", bl, h->name, ll, labels,
                  __atomic_load_n(&h->count, __ATOMIC_RELAXED));
    } else {
        sb_printf(sb, "%.*s_sum %.15g\n", bl, h->name, sum);
        sb_printf(sb, "%.*s_count %" PRIu64 "\n", bl, h->name,
                  __atomic_load_n(&h->count, __ATOMIC_RELAXED));
    }
}

long im_metrics_render(char **out)
{
    sbuf_t sb = {malloc(4096), 0, 4096, 0};
    *out = NULL;
    if (!sb.buf)
        return -1;
    sb.buf[0] = '\0';

    int mc = __atomic_load_n(&metric_count, __ATOMIC_ACQUIRE);
    for (int i = 0; i < mc; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = same_base(metrics[j].name, metrics[i].name);
        if (seen)
            continue;
        render_head(&sb, metrics[i].name, metrics[i].help,
                    metrics[i].kind == KIND_COUNTER ? "counter" : "gauge");
        for (int j = i; j < mc; j++) {
            if (same_base(metrics[j].name, metrics[i].name))
                sb_printf(&sb, "%s %" PRId64 "\n", metrics[j].name, im_metric_get(&metrics[j]));
        }
    }

    int hc = __atomic_load_n(&hist_count, __ATOMIC_ACQUIRE);
    for (int i = 0; i < hc; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = same_base(hists[j].name, hists[i].name);
        if (seen)
            continue;
        render_head(&sb, hists[i].name, hists[i].help, "histogram");
        for (int j = i; j < hc; j++) {
            if (same_base(hists[j].name, hists[i].name))
                render_hist(&sb, &hists[j]);
        }
    }

    if (sb.oom) {
        free(sb.buf);
        return -1;
    }
    *out = sb.buf;
    return (long) sb.len;
}
