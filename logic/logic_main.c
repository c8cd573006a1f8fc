/* msg_logic: authenticates users, stores and routes messages; serves any number of gates
 * (nanomsg) and the business HTTP API. Several logics run side by side: gates spread users
 * over the live ones (Redis registry, zset cim:logics). */
#include <signal.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "im_cmd.h"
#include "im_config.h"
#include "im_log.h"
#include "im_stop.h"
#include "logic.h"
#include "logic_group.h"
#include "logic_msg.h"
#include "logic_presence.h"
#include "logic_webhook.h"
#include "proto/internal.pb-c.h"

logic_t g_logic;

#define GATE_QUEUE_MAX (64u * 1024 * 1024)
#define GATE_FORGET_MS 60000

#define OPT(n, t, f, mn, mx, d, h)                                                                 \
    {                                                                                              \
        n, t, offsetof(logic_config_t, f), mn, mx, d, h                                            \
    }
static const im_cfg_opt_t logic_opts[] = {
    OPT("logic_id", IM_CFG_INT, logic_id, 0, 9007199254740991LL, "0", "logic id (0 = random)"),
    OPT("logic_nn_addr", IM_CFG_STR, logic_nn_addr, 0, 0, "tcp://127.0.0.1:7000",
        "nanomsg endpoint for packets from gates (literal IP; advertised in Redis)"),
    OPT("logic_http_host", IM_CFG_STR, logic_http_host, 0, 0, "0.0.0.0", "HTTP API address"),
    OPT("logic_http_port", IM_CFG_INT, logic_http_port, 0, 65535, "8080",
        "HTTP API port (0 = off)"),
    OPT("redis_addr", IM_CFG_STR, redis_addr, 0, 0, "127.0.0.1:6379", "Redis IP:port"),
    OPT("mysql_shards", IM_CFG_STR, mysql_shards, 0, 0,
        "127.0.0.1:3306/im_0,127.0.0.1:3306/im_1,127.0.0.1:3306/im_2,127.0.0.1:3306/im_3",
        "the 4 shard databases, host:port/db, comma separated, shard 0 first"),
    OPT("mysql_socket", IM_CFG_STR, mysql_socket, 0, 0, "",
        "Unix socket for the shards whose host is localhost (empty = the client's default)"),
    OPT("mysql_user", IM_CFG_STR, mysql_user, 0, 0, "root", "MySQL user"),
    OPT("mysql_password", IM_CFG_STR, mysql_password, 0, 0, "", "MySQL password"),
    OPT("mysql_password_file", IM_CFG_STR, mysql_password_file, 0, 0, "",
        "file holding the MySQL password (wins over mysql_password)"),
    OPT("mysql_pool", IM_CFG_INT, mysql_pool, 1, 16, "2", "connections (threads) per shard"),
    OPT("api_key", IM_CFG_STR, api_key, 0, 0, "", "business API key (Bearer)"),
    OPT("api_key_file", IM_CFG_STR, api_key_file, 0, 0, "", "file holding the API key"),
    OPT("token_secret", IM_CFG_STR, token_secret, 0, 0, "",
        "HMAC secret for login tokens (same on every logic)"),
    OPT("token_secret_file", IM_CFG_STR, token_secret_file, 0, 0, "",
        "file holding the token secret"),
    OPT("token_ttl", IM_CFG_INT, token_ttl, 60, 315360000, "2592000", "token lifetime, seconds"),
    OPT("pwhash_level", IM_CFG_INT, pwhash_level, 0, 2, "1",
        "argon2id cost: 0 minimum (tests only), 1 interactive, 2 moderate"),
    OPT("registry_ttl", IM_CFG_INT, registry_ttl, 2, 3600, "5",
        "seconds a registration lives without refresh"),
    OPT("api_rate", IM_CFG_INT, api_rate, 0, 10000000, "5000",
        "business API requests per second for the key (0 = no limit); over it: 429"),
    OPT("api_burst", IM_CFG_INT, api_burst, 1, 10000000, "10000",
        "business API requests allowed at once before api_rate applies"),
    OPT("max_body", IM_CFG_INT, max_body, 1024, 67108864, "1048576", "HTTP body limit, bytes"),
    OPT("login_fail_max_user", IM_CFG_INT, login_fail_max_user, 1, 1000000, "10",
        "failed password logins per user name per minute before logins are refused"),
    OPT("login_fail_max_ip", IM_CFG_INT, login_fail_max_ip, 1, 1000000, "100",
        "failed password logins per source address per minute"),
    OPT("offline_push_url", IM_CFG_STR, offline_push_url, 0, 0, "",
        "webhook for messages no device confirmed in time (empty = off)"),
    OPT("offline_push_delay", IM_CFG_INT, offline_push_delay, 1, 86400, "5",
        "seconds before an unconfirmed message is posted to the webhook"),
    OPT("offline_push_group_max", IM_CFG_INT, offline_push_group_max, 0, 100000, "500",
        "group messages get offline pushes only in groups up to this size"),
    OPT("log_level", IM_CFG_STR, log_level, 0, 0, "info", "debug, info, warn, error"),
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* ---------------------------------------------------------------- gates */

logic_gate_t *logic_gate_get(uint64_t gate_id, const char *ep)
{
    logic_gate_t *gt = im_map_get(&g_logic.gates, gate_id);
    if (gt && ep && strcmp(im_nn_out_endpoint(gt->out), ep) != 0) {
        /* the same id at a new address */
        im_nn_out_close(gt->out);
        gt->out = NULL;
    }
    if (gt && gt->out) {
        if (ep) /* the registry or the gate itself said it is alive */
            gt->seen_ms = im_mono_ms();
        return gt;
    }
    if (!ep || strncmp(ep, "tcp://", 6) != 0)
        return NULL;
    if (!gt) {
        gt = calloc(1, sizeof(*gt));
        if (!gt)
            return NULL;
        gt->id = gate_id;
        im_map_put(&g_logic.gates, gate_id, gt);
        im_metric_add(g_logic.m.gates, 1);
    }
    gt->out = im_nn_out_connect(g_logic.loop, ep, g_logic.nn_prefix, g_logic.nn_prefix_len,
                                GATE_QUEUE_MAX);
    if (!gt->out) {
        im_map_del(&g_logic.gates, gate_id);
        im_metric_add(g_logic.m.gates, -1);
        free(gt);
        return NULL;
    }
    gt->seen_ms = im_mono_ms();
    log_info("gate %llu at %s", (unsigned long long) gate_id, ep);
    return gt;
}

int logic_down(uint64_t gate_id, int kind, uint64_t conn_id, uint64_t user_id, uint32_t client_type,
               uint16_t cmd, uint16_t seq, const uint8_t *body, size_t len)
{
    logic_gate_t *gt = logic_gate_get(gate_id, NULL);
    if (!gt) {
        im_metric_add(g_logic.m.drop_down, 1);
        return -1;
    }
    Cim__Internal__Downstream d = CIM__INTERNAL__DOWNSTREAM__INIT;
    d.kind = (Cim__Internal__Downstream__Kind) kind;
    d.conn_id = conn_id;
    d.user_id = user_id;
    d.client_type = client_type;
    d.cmd = cmd;
    d.seq = seq;
    d.body.data = (uint8_t *) body;
    d.body.len = len;
    size_t n = cim__internal__downstream__get_packed_size(&d);
    uint8_t *p = im_nn_out_reserve(gt->out, 2, n);
    if (!p) {
        im_metric_add(g_logic.m.drop_down, 1);
        return -1;
    }
    cim__internal__downstream__pack(&d, p);
    return 0;
}

void logic_reply(const logic_req_t *r, uint16_t cmd, const void *pbmsg)
{
    const ProtobufCMessage *m = pbmsg;
    uint8_t stackbuf[512];
    size_t n = m ? protobuf_c_message_get_packed_size(m) : 0;
    uint8_t *buf = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
    if (!buf)
        return;
    if (m)
        protobuf_c_message_pack(m, buf);
    logic_down(r->gate_id, CIM__INTERNAL__DOWNSTREAM__KIND__PACKET, r->conn_id, r->user_id,
               r->client_type, cmd, r->seq, n ? buf : NULL, n);
    if (buf != stackbuf)
        free(buf);
}

void logic_reply_error(const logic_req_t *r, uint32_t code)
{
    uint8_t body[16];
    uint16_t rsp = 0;
    int n = im_cmd_error_body(r->cmd, code, body, &rsp);
    if (n >= 0)
        logic_down(r->gate_id, CIM__INTERNAL__DOWNSTREAM__KIND__PACKET, r->conn_id, r->user_id,
                   r->client_type, rsp, r->seq, body, (size_t) n);
}

/* ---------------------------------------------------------------- dispatch */

typedef void (*handler_fn)(const logic_req_t *r, const uint8_t *body, size_t len);

typedef struct {
    uint16_t cmd;
    int need_auth;
    handler_fn fn;
} route_t;

void logic_read_sync(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_history(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_latest(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_by_id(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_sessions(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_ack(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_read_recall(const logic_req_t *r, const uint8_t *body, size_t len);

/* the dispatch table: command -> handler (need_auth: identity must be set by the gate) */
static const route_t routes[] = {
    {IM_CMD_REGISTER_REQ, 0, logic_auth_register},
    {IM_CMD_AUTH_REQ, 0, logic_auth_login},
    {IM_CMD_AUTH_TOKEN_REQ, 0, logic_auth_token},
    {IM_CMD_LOGOUT_REQ, 1, logic_auth_logout},
    {IM_CMD_MSG_DATA, 1, logic_msg_send},
    {IM_CMD_SYNC_REQ, 1, logic_read_sync},
    {IM_CMD_MSG_LIST_REQ, 1, logic_read_history},
    {IM_CMD_LATEST_MSG_ID_REQ, 1, logic_read_latest},
    {IM_CMD_MSG_BY_ID_REQ, 1, logic_read_by_id},
    {IM_CMD_RECENT_SESSION_REQ, 1, logic_read_sessions},
    {IM_CMD_MSG_READ_ACK, 1, logic_read_ack},
    {IM_CMD_RECALL_REQ, 1, logic_read_recall},
    {IM_CMD_GROUP_CREATE_REQ, 1, logic_group_create},
    {IM_CMD_GROUP_DISBAND_REQ, 1, logic_group_disband},
    {IM_CMD_GROUP_EXIT_REQ, 1, logic_group_exit},
    {IM_CMD_GROUP_LIST_REQ, 1, logic_group_list},
    {IM_CMD_GROUP_INFO_REQ, 1, logic_group_info},
    {IM_CMD_GROUP_INVITE_REQ, 1, logic_group_invite},
    {IM_CMD_GROUP_KICK_REQ, 1, logic_group_kick},
    {IM_CMD_GROUP_MEMBER_LIST_REQ, 1, logic_group_members},
    {IM_CMD_GROUP_JOIN_REQ, 1, logic_group_join},
    {IM_CMD_ONLINE_LIST_REQ, 1, logic_presence_online_list},
};

static void dispatch(const logic_req_t *r, const uint8_t *body, size_t len)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (routes[i].cmd != r->cmd)
            continue;
        if (routes[i].need_auth && !r->user_id) {
            logic_reply_error(r, IM_ERR_NOT_LOGGED_IN);
            return;
        }
        routes[i].fn(r, body, len);
        return;
    }
    /* known to the gate but not served here (yet): answer if the command has an answer */
    im_metric_add(g_logic.m.unknown_cmds, 1);
    log_debug("conn %llu user %llu: command 0x%04x not served", (unsigned long long) r->conn_id,
              (unsigned long long) r->user_id, r->cmd);
}

static void on_up(void *ud, const uint8_t *msg, size_t len)
{
    (void) ud;
    Cim__Internal__GateMsg *m = cim__internal__gate_msg__unpack(NULL, len, msg);
    if (!m) {
        log_warn("undecodable message of %zu bytes from a gate: dropped", len);
        return;
    }
    im_metric_add(g_logic.m.batches_in, 1);
    if (!logic_gate_get(m->gate_id, m->gate_ep)) {
        log_warn("gate %llu: bad endpoint \"%s\": its batch is dropped",
                 (unsigned long long) m->gate_id, m->gate_ep);
        cim__internal__gate_msg__free_unpacked(m, NULL);
        return;
    }
    for (size_t i = 0; i < m->n_items; i++) {
        const Cim__Internal__Upstream *u = m->items[i];
        logic_req_t r;
        memset(&r, 0, sizeof(r));
        r.gate_id = m->gate_id;
        r.conn_id = u->conn_id;
        r.user_id = u->user_id;
        r.client_type = u->client_type;
        r.cmd = (uint16_t) u->cmd;
        r.seq = (uint16_t) u->seq;
        snprintf(r.peer, sizeof(r.peer), "%s", u->peer ? u->peer : "");
        im_metric_add(g_logic.m.pkts_in, 1);
        switch (u->kind) {
        case CIM__INTERNAL__UPSTREAM__KIND__PACKET:
            dispatch(&r, u->body.data, u->body.len);
            break;
        case CIM__INTERNAL__UPSTREAM__KIND__CONN_CLOSED:
            logic_auth_closed(&r);
            break;
        case CIM__INTERNAL__UPSTREAM__KIND__ROUTE:
            logic_auth_reroute(&r);
            break;
        case CIM__INTERNAL__UPSTREAM__KIND__CONFIRM:
            if (r.user_id)
                logic_msg_confirm(&r, u->body.data, u->body.len);
            break;
        default:
            break;
        }
    }
    cim__internal__gate_msg__free_unpacked(m, NULL);
}

/* ---------------------------------------------------------------- registry */

static void on_gates(im_redis_t *r, redisReply *reply, void *ud)
{
    (void) r;
    (void) ud;
    uint64_t k0;
    void *v0;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    uint64_t now_wall = im_now_ms(), now = im_mono_ms();
    uint64_t ttl_ms = (uint64_t) g_logic.cfg.registry_ttl * 1000;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *mem = reply->element[i], *sc = reply->element[i + 1];
        if (mem->type != REDIS_REPLY_STRING || mem->len > 200 || sc->type != REDIS_REPLY_STRING)
            continue;
        char buf[201];
        memcpy(buf, mem->str, mem->len);
        buf[mem->len] = 0;
        char *bar = strchr(buf, '|');
        if (!bar)
            continue;
        *bar = 0;
        uint64_t id = strtoull(buf, NULL, 10), expires = strtoull(sc->str, NULL, 10);
        if (!id)
            continue;
        if (expires >= now_wall) {
            logic_gate_t *gt = logic_gate_get(id, bar + 1);
            if (gt)
                gt->listed_ms = now;
            continue;
        }
        /* its registration expired (it did not refresh for a TTL): dead, unless it spoke to us
         * lately; its routes go (one logic does it: the claim is in Redis) */
        logic_gate_t *gt = im_map_get(&g_logic.gates, id);
        if (!gt || (now - gt->seen_ms > ttl_ms && now - gt->listed_ms > ttl_ms))
            logic_presence_gate_gone(id);
    }
    int64_t queued = 0;
    for (size_t it = 0; im_map_next(&g_logic.gates, &it, &k0, &v0);)
        queued += (int64_t) im_nn_out_queued(((logic_gate_t *) v0)->out);
    im_metric_set(g_logic.m.nn_queue, queued);
    /* forget gates nobody has mentioned for a minute */
    uint64_t k;
    void *v;
    now = im_mono_ms(); /* after the updates above: seen_ms may be newer than the first now */
    for (size_t it = 0; im_map_next(&g_logic.gates, &it, &k, &v);) {
        logic_gate_t *gt = v;
        if (now - gt->seen_ms > GATE_FORGET_MS) {
            log_info("gate %llu gone", (unsigned long long) gt->id);
            im_nn_out_close(gt->out);
            im_map_del(&g_logic.gates, k);
            im_metric_add(g_logic.m.gates, -1);
            free(gt);
        }
    }
}

static void registry_tick(uv_timer_t *t)
{
    logic_t *l = t->data;
    uint64_t now = im_now_ms();
    char member[256], score[32], nowbuf[32];
    snprintf(member, sizeof(member), "%llu|%s", (unsigned long long) l->id, l->cfg.logic_nn_addr);
    snprintf(score, sizeof(score), "%llu",
             (unsigned long long) (now + (uint64_t) l->cfg.registry_ttl * 1000));
    snprintf(nowbuf, sizeof(nowbuf), "%llu", (unsigned long long) now);
    if (!l->stopping)
        im_redis_cmd(l->redis, NULL, NULL, "ZADD cim:logics %s %s", score, member);
    im_redis_cmd(l->redis, NULL, NULL, "ZREMRANGEBYSCORE cim:logics -inf %s", nowbuf);
    char oldbuf[32];
    snprintf(oldbuf, sizeof(oldbuf), "%llu", (unsigned long long) (now - 60000));
    im_redis_cmd(l->redis, on_gates, l, "ZRANGEBYSCORE cim:gates %s +inf WITHSCORES", oldbuf);
}

/* ---------------------------------------------------------------- start / stop */

static void metrics_init(logic_t *l)
{
    struct logic_metrics_s *m = &l->m;
    m->pkts_in = im_metrics_counter("cim_logic_items_in_total", "items received from gates");
    m->batches_in = im_metrics_counter("cim_logic_batches_in_total", "batches from gates");
    m->logins_ok = im_metrics_counter("cim_logic_logins_total", "successful logins");
    m->logins_fail = im_metrics_counter("cim_logic_login_failures_total", "refused logins");
    m->registers = im_metrics_counter("cim_logic_registers_total", "users registered");
    m->logouts = im_metrics_counter("cim_logic_logouts_total", "logouts");
    m->kicks = im_metrics_counter("cim_logic_kicks_total", "connections kicked");
    m->db_errors = im_metrics_counter("cim_logic_mysql_errors_total",
                                      "MySQL jobs failed for an unavailable shard");
    m->redis_errors = im_metrics_counter("cim_logic_redis_errors_total", "Redis commands failed");
    m->gates = im_metrics_gauge("cim_logic_gates", "gates known");
    m->http_requests = im_metrics_counter("cim_logic_http_requests_total", "HTTP API requests");
    m->http_errors =
        im_metrics_counter("cim_logic_http_errors_total", "HTTP API answers with status >= 400");
    m->drop_down = im_metrics_counter("cim_logic_down_dropped_total",
                                      "items for unknown gates or full queues");
    static const double lat[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5};
    m->ack_latency = im_metrics_hist("cim_logic_ack_latency_seconds",
                                     "message received -> ack sent (after commit)", lat, 13);
    m->db_latency = im_metrics_hist("cim_logic_mysql_job_seconds",
                                    "MySQL job queued -> done (queueing included)", lat, 13);
    m->nn_queue = im_metrics_gauge("cim_logic_nanomsg_queued_bytes",
                                   "bytes waiting for gates that cannot take them yet");
    m->unknown_cmds = im_metrics_counter("cim_logic_unserved_commands_total",
                                         "requests for commands this logic does not serve");
}

static char *read_secret_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = 0;
    char *s = strdup(buf);
    sodium_memzero(buf, sizeof(buf));
    return s;
}

static int load_secret(const char *value, const char *file, const char *what, char **out)
{
    if (file && *file) {
        *out = read_secret_file(file);
        if (!*out) {
            log_error("cannot read %s file %s", what, file);
            return -1;
        }
    } else {
        *out = strdup(value ? value : "");
    }
    if (!*out || strlen(*out) < 16) {
        log_error("%s missing or shorter than 16 characters (set %s or %s_file)", what, what, what);
        return -1;
    }
    return 0;
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static uv_timer_t g_stop_timer;

static void stop_final(uv_timer_t *t)
{
    logic_t *l = t->data;
    static int waited;
    if (logic_http_busy() > 0 && waited++ < 10) {
        uv_timer_start(t, stop_final, 200, 0); /* API requests still in flight */
        return;
    }
    close_handle((uv_handle_t *) t);
    logic_http_close();
    logic_db_stop(); /* joins the workers; finished jobs run their callbacks */
    uint64_t k;
    void *v;
    for (size_t it = 0; im_map_next(&l->gates, &it, &k, &v);) {
        logic_gate_t *gt = v;
        im_nn_out_close(gt->out);
        free(gt);
    }
    im_map_free(&l->gates);
    im_map_init(&l->gates);
    logic_webhook_stop();
    im_redis_free(l->redis);
    l->redis = NULL;
}

static void on_signal(uv_signal_t *s, int signum)
{
    logic_t *l = s->data;
    if (l->stopping)
        return;
    l->stopping = 1;
    log_info("signal %d: stopping", signum);
    char member[256];
    snprintf(member, sizeof(member), "%llu|%s", (unsigned long long) l->id, l->cfg.logic_nn_addr);
    im_redis_cmd(l->redis, NULL, NULL, "ZREM cim:logics %s", member);
    /* stop taking work; what is in flight gets a moment to answer */
    im_nn_in_close(l->nn_in);
    l->nn_in = NULL;
    logic_http_stop();
    uv_timer_stop(&l->registry_timer);
    close_handle((uv_handle_t *) &l->registry_timer);
    close_handle((uv_handle_t *) &l->sigterm);
    close_handle((uv_handle_t *) &l->sigint);
    logic_worker_lease_stop();
    logic_msg_stop();
    uv_timer_init(l->loop, &g_stop_timer);
    g_stop_timer.data = l;
    uv_timer_start(&g_stop_timer, stop_final, 500, 0);
    im_stop_watchdog_start(l->loop);
}

int main(int argc, char **argv)
{
    logic_t *l = &g_logic;
    signal(SIGPIPE, SIG_IGN);
    im_log_init("msg_logic", IM_LOG_INFO);
    int rc = im_config_load(logic_opts, &l->cfg, argc, argv, "msg_logic");
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    int lvl = im_log_parse_level(l->cfg.log_level);
    if (lvl < 0) {
        fprintf(stderr, "msg_logic: bad log_level %s\n", l->cfg.log_level);
        return 2;
    }
    im_log_level = lvl;
    if (sodium_init() < 0)
        return 1;
    if (strncmp(l->cfg.logic_nn_addr, "tcp://", 6) != 0) {
        log_error("logic_nn_addr must be tcp://IP:PORT (literal IP), got %s", l->cfg.logic_nn_addr);
        return 2;
    }
    char *secret = NULL;
    if (load_secret(l->cfg.api_key, l->cfg.api_key_file, "api_key", &l->api_key) < 0 ||
        load_secret(l->cfg.token_secret, l->cfg.token_secret_file, "token_secret", &secret) < 0)
        return 2;
    im_token_key(l->token_key, secret);
    sodium_memzero(secret, strlen(secret));
    free(secret);
    if (l->cfg.mysql_password_file && *l->cfg.mysql_password_file) {
        char *pw = read_secret_file(l->cfg.mysql_password_file);
        if (!pw) {
            log_error("cannot read mysql_password_file %s", l->cfg.mysql_password_file);
            return 2;
        }
        free(l->cfg.mysql_password);
        l->cfg.mysql_password = pw;
    }
    l->id = l->cfg.logic_id ? (uint64_t) l->cfg.logic_id
                            : (((uint64_t) randombytes_random() << 21) ^ randombytes_random()) | 1;
    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(l->owner, sizeof(l->owner), "%.40s:%d:%08x", host, (int) getpid(),
             randombytes_random());
    /* the dummy hash: same cost as real ones */
    {
        unsigned long long ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
        size_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
        if (l->cfg.pwhash_level == 0) {
            ops = crypto_pwhash_OPSLIMIT_MIN;
            mem = crypto_pwhash_MEMLIMIT_MIN;
        } else if (l->cfg.pwhash_level == 2) {
            ops = crypto_pwhash_OPSLIMIT_MODERATE;
            mem = crypto_pwhash_MEMLIMIT_MODERATE;
        }
        char rnd[33];
        uint8_t b[16];
        randombytes_buf(b, sizeof(b));
        sodium_bin2hex(rnd, sizeof(rnd), b, sizeof(b));
        l->dummy_hash = malloc(crypto_pwhash_STRBYTES);
        if (!l->dummy_hash || crypto_pwhash_str_alg(l->dummy_hash, rnd, strlen(rnd), ops, mem,
                                                    crypto_pwhash_ALG_ARGON2ID13) != 0)
            return 1;
    }
    l->loop = uv_default_loop();
    im_map_init(&l->gates);
    metrics_init(l);
    l->nn_prefix_len = im_pb_put_varint_field(l->nn_prefix, 1, l->id);

    if (logic_db_start(l) < 0)
        return 2;
    l->redis = im_redis_new(l->loop, l->cfg.redis_addr, 5000);
    if (!l->redis) {
        log_error("bad redis_addr %s", l->cfg.redis_addr);
        return 2;
    }
    l->nn_in = im_nn_in_bind(l->loop, l->cfg.logic_nn_addr, on_up, l);
    if (!l->nn_in)
        return 1;
    if (logic_http_start(l) < 0)
        return 1;
    logic_worker_lease_start(l);
    logic_msg_start(l);
    logic_group_start(l);
    if (logic_webhook_start(l) < 0)
        return 2;
    uv_timer_init(l->loop, &l->registry_timer);
    l->registry_timer.data = l;
    uv_timer_start(&l->registry_timer, registry_tick, 100, 1000);
    uv_signal_init(l->loop, &l->sigterm);
    l->sigterm.data = l;
    uv_signal_start(&l->sigterm, on_signal, SIGTERM);
    uv_signal_init(l->loop, &l->sigint);
    l->sigint.data = l;
    uv_signal_start(&l->sigint, on_signal, SIGINT);
    log_info("logic %llu up: gates -> %s, API on %s:%lld, %u shards", (unsigned long long) l->id,
             l->cfg.logic_nn_addr, l->cfg.logic_http_host, l->cfg.logic_http_port,
             logic_db_shards());

    uv_run(l->loop, UV_RUN_DEFAULT);
    im_stop_watchdog_end(l->loop);

    uv_loop_close(l->loop);
    im_map_free(&l->gates);
    free(l->dummy_hash);
    sodium_memzero(l->api_key, strlen(l->api_key));
    free(l->api_key);
    im_config_free(logic_opts, &l->cfg);
    log_info("logic stopped");
    return 0;
}
