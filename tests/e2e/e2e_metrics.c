/* /metrics during traffic: the series operators watch move (issue: metrics and dashboards).
 * Scrapes both gates and both logics before and after logins, 1:1 and group messages, and
 * checks the counters and histograms the dashboard uses went up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "e2e_common.h"
#include "e2e_http.h"
#include "im_cmd.h"
#include "../../client/libcim.h"

/* sum of every sample whose name (up to '{' or ' ') is `name`, over the given endpoints */
static double scrape(const char *const *addrs, int n, const char *name)
{
    double sum = 0;
    size_t nl = strlen(name);
    for (int i = 0; i < n; i++) {
        e2e_http_rsp_t r;
        if (e2e_http(addrs[i], "GET", "/metrics", NULL, NULL, &r) != 0)
            continue;
        for (char *line = r.body; line && *line;) {
            char *next = strchr(line, '\n');
            if (next)
                *next++ = 0;
            if (line[0] != '#' && strncmp(line, name, nl) == 0 &&
                (line[nl] == ' ' || line[nl] == '{')) {
                const char *v = strrchr(line, ' ');
                if (v)
                    sum += strtod(v + 1, NULL);
            }
            line = next;
        }
        e2e_http_rsp_free(&r);
    }
    return sum;
}

TEST(metrics_move_with_traffic)
{
    const char *gates[2] = {e2e_env("CIM_GATE1_METRICS"), e2e_env("CIM_GATE2_METRICS")};
    const char *logics[2] = {e2e_env("CIM_API"), e2e_env("CIM_API2")};
    static const char *gate_series[] = {"cim_gate_packets_in_total", "cim_gate_packets_out_total",
                                        "cim_gate_bytes_in_total", "cim_gate_accepted_total"};
    static const char *logic_series[] = {"cim_logic_logins_total",
                                         "cim_logic_msgs_received_total",
                                         "cim_logic_msgs_acked_total",
                                         "cim_logic_fanout_rows_total",
                                         "cim_logic_pushes_total",
                                         "cim_logic_ack_latency_seconds_count",
                                         "cim_logic_mysql_job_seconds_count",
                                         "cim_logic_delivery_confirms_total"};
    enum {
        NG = sizeof(gate_series) / sizeof(gate_series[0]),
        NL = sizeof(logic_series) / sizeof(logic_series[0])
    };
    double g0[NG], l0[NL];
    for (int i = 0; i < NG; i++)
        g0[i] = scrape(gates, 2, gate_series[i]);
    for (int i = 0; i < NL; i++)
        l0[i] = scrape(logics, 2, logic_series[i]);
    double authed0 = scrape(gates, 2, "cim_gate_connections_authed");

    uint64_t a, b, c;
    cim_client_t *ca = e2e_new_user("CIM_GATE1", "mA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = e2e_new_user("CIM_GATE2", "mB", IM_CT_ANDROID, &b, NULL);
    cim_client_t *cc = e2e_new_user("CIM_GATE2", "mC", IM_CT_WEB, &c, NULL);
    /* logged-in connections are a gauge: up by three while they are open */
    CHECK(scrape(gates, 2, "cim_gate_connections_authed") >= authed0 + 3);
    for (int i = 0; i < 20; i++) {
        char t[16];
        cim_ack_t ack;
        snprintf(t, sizeof(t), "m%d", i);
        CHECK_EQ_INT(cim_send_text(ca, i % 2 ? b : c, t, &ack), 0);
    }
    for (int i = 0; i < 30; i++) { /* deliveries reach B and C, which confirm them */
        cim_poll(cb, 50);
        cim_poll(cc, 50);
    }
    e2e_sleep_ms(500);
    for (int i = 0; i < NG; i++) {
        double v = scrape(gates, 2, gate_series[i]);
        if (!(v > g0[i]))
            fprintf(stderr, "  %s did not move (%.0f -> %.0f)\n", gate_series[i], g0[i], v);
        CHECK(v > g0[i]);
    }
    for (int i = 0; i < NL; i++) {
        double v = scrape(logics, 2, logic_series[i]);
        if (!(v > l0[i]))
            fprintf(stderr, "  %s did not move (%.0f -> %.0f)\n", logic_series[i], l0[i], v);
        CHECK(v > l0[i]);
    }
    /* exact counts where traffic is ours alone: 20 messages acked, 20 inbox rows written */
    CHECK(scrape(logics, 2, "cim_logic_msgs_acked_total") >= l0[2] + 20);
    CHECK(scrape(logics, 2, "cim_logic_fanout_rows_total") >= l0[3] + 20);
    cim_client_free(ca);
    cim_client_free(cb);
    cim_client_free(cc);
}

TEST_MAIN()
