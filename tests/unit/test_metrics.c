/* Unit tests for common/im_metrics. */
#include "../test.h"

#include <pthread.h>

#include "im_metrics.h"

static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    }
    return 0;
}

static int count_str(const char *text, const char *s)
{
    int c = 0;
    for (const char *p = text; (p = strstr(p, s)) != NULL; p++)
        c++;
    return c;
}

TEST(metrics_counter_gauge_render)
{
    im_metric_t *c = im_metrics_counter("cim_test_packets_total", "Packets seen");
    im_metric_t *g = im_metrics_gauge("cim_test_connections", "Open connections");
    CHECK(c != NULL && g != NULL);
    im_metric_add(c, 5);
    im_metric_add(c, 2);
    im_metric_set(g, 10);
    im_metric_add(g, -3);
    CHECK_EQ_INT(im_metric_get(c), 7);
    CHECK_EQ_INT(im_metric_get(g), 7);
    /* same name again: same handle */
    CHECK(im_metrics_counter("cim_test_packets_total", "Packets seen") == c);

    char *out = NULL;
    long n = im_metrics_render(&out);
    CHECK(n > 0 && out != NULL);
    CHECK_EQ_INT(n, strlen(out));
    CHECK(has_line(out, "# HELP cim_test_packets_total Packets seen"));
    CHECK(has_line(out, "# TYPE cim_test_packets_total counter"));
    CHECK(has_line(out, "cim_test_packets_total 7"));
    CHECK(has_line(out, "# HELP cim_test_connections Open connections"));
    CHECK(has_line(out, "# TYPE cim_test_connections gauge"));
    CHECK(has_line(out, "cim_test_connections 7"));
    CHECK(out[n - 1] == '\n');
    free(out);
}

TEST(metrics_labels_share_one_header)
{
    im_metric_t *web = im_metrics_gauge("cim_gate_connections{client_type=\"web\"}", "Conns");
    im_metric_t *other = im_metrics_counter("cim_other_total", NULL);
    im_metric_t *ios = im_metrics_gauge("cim_gate_connections{client_type=\"ios\"}", "Conns");
    im_metric_set(web, 3);
    im_metric_set(ios, 4);
    im_metric_add(other, 1);
    char *out = NULL;
    CHECK(im_metrics_render(&out) > 0);
    CHECK_EQ_INT(count_str(out, "# HELP cim_gate_connections "), 1);
    CHECK_EQ_INT(count_str(out, "# TYPE cim_gate_connections gauge\n"), 1);
    CHECK(has_line(out, "cim_gate_connections{client_type=\"web\"} 3"));
    CHECK(has_line(out, "cim_gate_connections{client_type=\"ios\"} 4"));
    /* the samples of one family are together, right after its header */
    const char *h = strstr(out, "# TYPE cim_gate_connections gauge\n");
    const char *a = strstr(out, "cim_gate_connections{client_type=\"web\"} 3");
    const char *b = strstr(out, "cim_gate_connections{client_type=\"ios\"} 4");
    const char *o = strstr(out, "# TYPE cim_other_total counter");
    CHECK(h && a && b && o);
    CHECK(h < a && a < b && (o < h || o > b));
    CHECK(has_line(out, "# TYPE cim_other_total counter"));
    CHECK(has_line(out, "cim_other_total 1"));
    free(out);
}

TEST(metrics_histogram)
{
    const double bounds[] = {0.001, 0.01, 0.1, 1};
    im_hist_t *h = im_metrics_hist("cim_test_latency_seconds", "Latency", bounds, 4);
    CHECK(h != NULL);
    im_hist_observe(h, 0.0005);
    im_hist_observe(h, 0.001); /* le is inclusive */
    im_hist_observe(h, 0.05);
    im_hist_observe(h, 5);
    im_hist_t *hl = im_metrics_hist("cim_test_op_seconds{op=\"send\"}", "Op latency", bounds, 4);
    im_hist_observe(hl, 0.02);
    char *out = NULL;
    CHECK(im_metrics_render(&out) > 0);
    CHECK(has_line(out, "# HELP cim_test_latency_seconds Latency"));
    CHECK(has_line(out, "# TYPE cim_test_latency_seconds histogram"));
    CHECK(has_line(out, "cim_test_latency_seconds_bucket{le=\"0.001\"} 2"));
    CHECK(has_line(out, "cim_test_latency_seconds_bucket{le=\"0.01\"} 2"));
    CHECK(has_line(out, "cim_test_latency_seconds_bucket{le=\"0.1\"} 3"));
    CHECK(has_line(out, "cim_test_latency_seconds_bucket{le=\"1\"} 3"));
    CHECK(has_line(out, "cim_test_latency_seconds_bucket{le=\"+Inf\"} 4"));
    CHECK(has_line(out, "cim_test_latency_seconds_count 4"));
    CHECK(strstr(out, "\ncim_test_latency_seconds_sum 5.0515") != NULL);
    CHECK(has_line(out, "# TYPE cim_test_op_seconds histogram"));
    CHECK(has_line(out, "cim_test_op_seconds_bucket{op=\"send\",le=\"0.01\"} 0"));
    CHECK(has_line(out, "cim_test_op_seconds_bucket{op=\"send\",le=\"0.1\"} 1"));
    CHECK(has_line(out, "cim_test_op_seconds_bucket{op=\"send\",le=\"+Inf\"} 1"));
    CHECK(has_line(out, "cim_test_op_seconds_count{op=\"send\"} 1"));
    CHECK(has_line(out, "cim_test_op_seconds_sum{op=\"send\"} 0.02"));
    free(out);
}

static im_metric_t *shared_counter;
static im_hist_t *shared_hist;

static void *adder(void *arg)
{
    (void) arg;
    for (int i = 0; i < 100000; i++) {
        im_metric_add(shared_counter, 1);
        if (i % 10 == 0)
            im_hist_observe(shared_hist, 0.5);
    }
    return NULL;
}

TEST(metrics_atomic_from_threads)
{
    const double bounds[] = {1};
    shared_counter = im_metrics_counter("cim_test_threads_total", "t");
    shared_hist = im_metrics_hist("cim_test_threads_seconds", "t", bounds, 1);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, adder, NULL) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(im_metric_get(shared_counter), 400000);
    char *out = NULL;
    CHECK(im_metrics_render(&out) > 0);
    CHECK(has_line(out, "cim_test_threads_total 400000"));
    CHECK(has_line(out, "cim_test_threads_seconds_count 40000"));
    CHECK(has_line(out, "cim_test_threads_seconds_sum 20000"));
    free(out);
}

TEST(metrics_many_render_large)
{
    char name[64];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "cim_test_many_total{i=\"%d\"}", i);
        im_metric_add(im_metrics_counter(name, "a long help text to make the output grow"), i);
    }
    char *out = NULL;
    long n = im_metrics_render(&out);
    CHECK(n > 4096);
    CHECK_EQ_INT(count_str(out, "# TYPE cim_test_many_total counter"), 1);
    CHECK(has_line(out, "cim_test_many_total{i=\"199\"} 199"));
    free(out);
}

TEST_MAIN()
