/* msg_gate: terminates client TCP connections (PROTOCOL.md) and forwards packets to msg_logic
 * over nanomsg; deliveries come back on the gate's own nanomsg endpoint. One libuv loop. */
#include <signal.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate.h"
#include "im_codec.h"
#include "im_config.h"
#include "im_http.h"
#include "im_id.h"
#include "im_log.h"
#include "im_stop.h"

gate_t g_gate;

#define OPT(n, t, f, mn, mx, d, h)                                                                 \
    {                                                                                              \
        n, t, offsetof(gate_config_t, f), mn, mx, d, h                                             \
    }
static const im_cfg_opt_t gate_opts[] = {
    OPT("gate_id", IM_CFG_INT, gate_id, 0, 9007199254740991LL, "0", "gate id (0 = random)"),
    OPT("gate_host", IM_CFG_STR, gate_host, 0, 0, "0.0.0.0", "address for client TCP"),
    OPT("gate_port", IM_CFG_INT, gate_port, 1, 65535, "8000", "client TCP port"),
    OPT("gate_ws_port", IM_CFG_INT, gate_ws_port, 0, 65535, "8001", "WebSocket port (0 = off)"),
    OPT("gate_tls_port", IM_CFG_INT, gate_tls_port, 0, 65535, "0",
        "client port with TLS, same packets as gate_port (0 = off; needs gate_tls_cert/key)"),
    OPT("gate_wss_port", IM_CFG_INT, gate_wss_port, 0, 65535, "0",
        "WebSocket + web page over TLS (0 = off; needs gate_tls_cert/key)"),
    OPT("gate_tls_cert", IM_CFG_STR, gate_tls_cert, 0, 0, "",
        "PEM certificate chain for the TLS ports (leaf first)"),
    OPT("gate_tls_key", IM_CFG_STR, gate_tls_key, 0, 0, "",
        "PEM private key (unencrypted) for the TLS ports"),
    OPT("gate_nn_addr", IM_CFG_STR, gate_nn_addr, 0, 0, "tcp://127.0.0.1:7100",
        "nanomsg endpoint for deliveries from logics (literal IP; advertised in Redis)"),
    OPT("gate_metrics_port", IM_CFG_INT, gate_metrics_port, 0, 65535, "9100",
        "HTTP /metrics and /healthz (0 = off)"),
    OPT("redis_addr", IM_CFG_STR, redis_addr, 0, 0, "127.0.0.1:6379", "Redis IP:port"),
    OPT("registry_ttl", IM_CFG_INT, registry_ttl, 2, 3600, "5",
        "seconds a registration lives without refresh"),
    OPT("gate_auth_timeout", IM_CFG_INT, gate_auth_timeout, 1, 3600, "15",
        "seconds from connect to login"),
    OPT("gate_idle_timeout", IM_CFG_INT, gate_idle_timeout, 1, 86400, "60",
        "seconds without any packet before close"),
    OPT("max_packet", IM_CFG_INT, max_packet, 64, 16777216, "65536",
        "largest client packet in bytes"),
    OPT("gate_max_conns", IM_CFG_INT, gate_max_conns, 1, 10000000, "200000",
        "client connections at most"),
    OPT("gate_write_queue_max", IM_CFG_INT, gate_write_queue_max, 65536, 1073741824, "4194304",
        "bytes queued to a client that does not read before it is closed"),
    OPT("gate_reuseport", IM_CFG_BOOL, gate_reuseport, 0, 1, "0",
        "SO_REUSEPORT on the client port (several gates on one port)"),
    OPT("gate_web_root", IM_CFG_STR, gate_web_root, 0, 0, "web",
        "directory of the web page served on gate_ws_port (empty = none)"),
    OPT("gate_rate", IM_CFG_INT, gate_rate, 0, 1000000, "50",
        "requests per second per connection (0 = no limit); heartbeats are free"),
    OPT("gate_burst", IM_CFG_INT, gate_burst, 1, 1000000, "200",
        "requests a connection may send at once before the rate applies"),
    OPT("gate_ip_conn_rate", IM_CFG_INT, gate_ip_conn_rate, 0, 10000000, "1000",
        "new connections per second per source address (0 = no limit)"),
    OPT("gate_ip_conn_burst", IM_CFG_INT, gate_ip_conn_burst, 1, 10000000, "5000",
        "connections a source address may open at once"),
    OPT("log_level", IM_CFG_STR, log_level, 0, 0, "info", "debug, info, warn, error"),
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static struct MHD_Daemon *g_http;
static uv_timer_t g_shutdown_timer;
static uint64_t g_shutdown_started;

static im_mhd_result http_cb(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_size, void **con_cls)
{
    (void) cls;
    (void) version;
    (void) upload;
    (void) con_cls;
    if (*upload_size)
        *upload_size = 0;
    if (strcmp(method, "GET") != 0)
        return im_http_reply(conn, 405, "application/json", "{\"error\":\"method\"}\n", 19);
    if (strcmp(url, "/metrics") == 0)
        return im_http_metrics(conn);
    if (strcmp(url, "/healthz") == 0) {
        char body[160];
        int ok = !g_gate.draining;
        int n =
            snprintf(body, sizeof(body),
                     "{\"status\":\"%s\",\"redis\":%s,\"logics\":%d,\"connections\":%ld}\n",
                     ok ? "ok" : "draining", im_redis_connected(g_gate.redis) ? "true" : "false",
                     g_gate.nlogics, g_gate.nconns);
        return im_http_reply(conn, ok ? 200 : 503, "application/json", body, (size_t) n);
    }
    return im_http_reply(conn, 404, "application/json", "{\"error\":\"not found\"}\n", 22);
}

static void metrics_init(gate_t *g)
{
    struct gate_metrics_s *m = &g->m;
    m->conns = im_metrics_gauge("cim_gate_connections", "open client connections");
    m->authed = im_metrics_gauge("cim_gate_connections_authed", "logged-in client connections");
    static const char *types[] = {"default",  "android",    "ios",    "web",
                                  "rest_api", "pc_windows", "mac_os", "other"};
    for (int i = 0; i < 8; i++) {
        char name[96];
        snprintf(name, sizeof(name), "cim_gate_connections_by_type{client_type=\"%s\"}", types[i]);
        m->by_type[i] = im_metrics_gauge(name, "logged-in connections by client type");
    }
    m->accepted = im_metrics_counter("cim_gate_accepted_total", "connections accepted");
    m->closed = im_metrics_counter("cim_gate_closed_total", "connections closed");
    m->pkts_in = im_metrics_counter("cim_gate_packets_in_total", "packets from clients");
    m->pkts_out = im_metrics_counter("cim_gate_packets_out_total", "packets to clients");
    m->bytes_in = im_metrics_counter("cim_gate_bytes_in_total", "bytes from clients");
    m->bytes_out = im_metrics_counter("cim_gate_bytes_out_total", "bytes to clients");
    m->proto_errors =
        im_metrics_counter("cim_gate_protocol_errors_total", "connections closed for bad frames");
    m->unknown_cmds = im_metrics_counter("cim_gate_unknown_commands_total",
                                         "unknown command ids from logged-in clients");
    m->kicks = im_metrics_counter("cim_gate_kicks_total", "connections kicked (0x010B)");
    m->accept_errors = im_metrics_counter("cim_gate_accept_errors_total",
                                          "accept failures (EMFILE...) and refused connections");
    m->auth_timeouts = im_metrics_counter("cim_gate_auth_timeouts_total", "no login in time");
    m->idle_timeouts =
        im_metrics_counter("cim_gate_idle_timeouts_total", "idle connections closed");
    m->slow_closes =
        im_metrics_counter("cim_gate_slow_client_closes_total", "clients closed for not reading");
    m->up_dropped = im_metrics_counter("cim_gate_upstream_dropped_total",
                                       "packets that could not be queued to a logic");
    m->no_logic =
        im_metrics_counter("cim_gate_no_logic_total", "requests refused because no logic was live");
    m->logics = im_metrics_gauge("cim_gate_logics", "live logics known from the registry");
    m->ws_conns = im_metrics_gauge("cim_gate_ws_connections", "open WebSocket connections");
    m->up_queued = im_metrics_gauge("cim_gate_nanomsg_queued_bytes",
                                    "bytes waiting for logics that cannot take them yet");
    m->rate_limited = im_metrics_counter("cim_gate_rate_limited_total",
                                         "requests or connections refused by a rate limit");
    m->tls_conns = im_metrics_gauge("cim_gate_tls_connections",
                                    "open connections on gate_tls_port and gate_wss_port");
    m->tls_failures = im_metrics_counter("cim_gate_tls_handshake_failures_total",
                                         "TLS connections closed for a failed handshake or a TLS "
                                         "error");
}

static void sweep_cb(uv_timer_t *t)
{
    gate_conn_sweep(t->data);
}

static void registry_cb(uv_timer_t *t)
{
    gate_link_registry_tick(t->data);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish_shutdown(gate_t *g)
{
    uv_timer_stop(&g_shutdown_timer);
    close_handle((uv_handle_t *) &g_shutdown_timer);
    close_handle((uv_handle_t *) &g->sweep_timer);
    close_handle((uv_handle_t *) &g->registry_timer);
    close_handle((uv_handle_t *) &g->sigterm);
    close_handle((uv_handle_t *) &g->sigint);
    /* connections still flushing after the grace period are cut */
    for (int pass = 0; pass < 2; pass++)
        gate_conn_close_all(g);
    gate_link_stop(g);
    im_redis_free(g->redis);
    g->redis = NULL;
}

static void shutdown_tick(uv_timer_t *t)
{
    gate_t *g = t->data;
    if (g->nconns == 0 || im_mono_ms() - g_shutdown_started > 2000)
        finish_shutdown(g);
}

static void on_signal(uv_signal_t *s, int signum)
{
    gate_t *g = s->data;
    if (g->draining)
        return;
    log_info("signal %d: draining %ld connections", signum, g->nconns);
    g->draining = 1;
    g_shutdown_started = im_mono_ms();
    gate_conn_stop_accepting(g);
    gate_conn_close_all(g); /* graceful: responses in flight are flushed */
    /* deregister now so logics stop routing here; the connection-closed items go out too */
    char member[256];
    snprintf(member, sizeof(member), "%llu|%s", (unsigned long long) g->id, g->cfg.gate_nn_addr);
    im_redis_cmd(g->redis, NULL, NULL, "ZREM cim:gates %s", member);
    uv_timer_init(g->loop, &g_shutdown_timer);
    g_shutdown_timer.data = g;
    uv_timer_start(&g_shutdown_timer, shutdown_tick, 50, 50);
    im_stop_watchdog_start(g->loop);
}

int main(int argc, char **argv)
{
    gate_t *g = &g_gate;
    signal(SIGPIPE, SIG_IGN);
    im_log_init("msg_gate", IM_LOG_INFO);
    int rc = im_config_load(gate_opts, &g->cfg, argc, argv, "msg_gate");
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    int lvl = im_log_parse_level(g->cfg.log_level);
    if (lvl < 0) {
        fprintf(stderr, "msg_gate: bad log_level %s\n", g->cfg.log_level);
        return 2;
    }
    im_log_level = lvl;
    if (strncmp(g->cfg.gate_nn_addr, "tcp://", 6) != 0) {
        log_error("gate_nn_addr must be tcp://IP:PORT (literal IP), got %s", g->cfg.gate_nn_addr);
        return 2;
    }
    if (gate_tls_init(g) < 0)
        return 2;
    if (sodium_init() < 0)
        return 1;
    g->id = g->cfg.gate_id ? (uint64_t) g->cfg.gate_id
                           : (((uint64_t) randombytes_random() << 21) ^ randombytes_random()) |
                                 1; /* below 2^53, never 0 */
    g->loop = uv_default_loop();
    im_map_init(&g->conns);
    im_map_init(&g->users);
    im_map_init(&g->ip_buckets);
    g->rbuf_size = 64 * 1024;
    g->rbuf = malloc(g->rbuf_size);
    metrics_init(g);

    g->redis = im_redis_new(g->loop, g->cfg.redis_addr, 2000);
    if (!g->redis) {
        log_error("bad redis_addr %s", g->cfg.redis_addr);
        return 2;
    }
    if (gate_link_start(g) < 0 || gate_conn_listen(g) < 0)
        return 1;
    if (g->cfg.gate_metrics_port) {
        g_http = im_http_start(NULL, (int) g->cfg.gate_metrics_port, http_cb, g, NULL, 0);
        if (!g_http)
            return 1;
    }
    uv_timer_init(g->loop, &g->sweep_timer);
    g->sweep_timer.data = g;
    uv_timer_start(&g->sweep_timer, sweep_cb, 200, 200);
    uv_timer_init(g->loop, &g->registry_timer);
    g->registry_timer.data = g;
    uv_timer_start(&g->registry_timer, registry_cb, 100, 1000);
    uv_signal_init(g->loop, &g->sigterm);
    g->sigterm.data = g;
    uv_signal_start(&g->sigterm, on_signal, SIGTERM);
    uv_signal_init(g->loop, &g->sigint);
    g->sigint.data = g;
    uv_signal_start(&g->sigint, on_signal, SIGINT);
    log_info("gate %llu up: clients %s:%lld (TLS %lld, WebSocket %lld, WebSocket TLS %lld), max "
             "packet %lld, auth timeout %lld s, idle %lld s",
             (unsigned long long) g->id, g->cfg.gate_host, g->cfg.gate_port, g->cfg.gate_tls_port,
             g->cfg.gate_ws_port, g->cfg.gate_wss_port, g->cfg.max_packet, g->cfg.gate_auth_timeout,
             g->cfg.gate_idle_timeout);

    uv_run(g->loop, UV_RUN_DEFAULT);
    im_stop_watchdog_end(g->loop);

    if (g_http)
        MHD_stop_daemon(g_http);
    uv_loop_close(g->loop);
    im_map_free(&g->conns);
    im_map_free(&g->users);
    {
        uint64_t k;
        void *v;
        for (size_t it = 0; im_map_next(&g->ip_buckets, &it, &k, &v);)
            free(v);
        im_map_free(&g->ip_buckets);
    }
    free(g->rbuf);
    gate_tls_cleanup(g);
    log_info("gate %llu stopped", (unsigned long long) g->id);
    im_config_free(gate_opts, &g->cfg);
    return 0;
}
