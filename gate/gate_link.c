/* gate_link: the gate's side of gate <-> logic.
 *
 * Up: one NN_PUSH per live logic (found in the Redis registry, zset cim:logics, member
 * "ID|ENDPOINT", score = expiry in unix ms); a user's packets go to the logic picked by
 * rendezvous hashing of the user id (connection id before login), so one sender's packets stay
 * in order through one logic. Items of one loop iteration travel in one GateMsg batch.
 * Down: one NN_PULL bound on gate_nn_addr; each LogicMsg holds a batch of Downstream items.
 * The gate registers itself in zset cim:gates the same way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate.h"
#include "im_cmd.h"
#include "im_id.h"
#include "im_log.h"
#include "im_shard.h"
#include "proto/internal.pb-c.h"

#define NN_QUEUE_MAX (64u * 1024 * 1024)

int gate_link_up(gate_t *g, uint64_t key, uint32_t kind, uint64_t conn_id, uint64_t user_id,
                 uint32_t client_type, uint16_t cmd, uint16_t seq, const uint8_t *body, size_t len,
                 const char *peer, uint32_t close_reason)
{
    uint64_t ids[GATE_MAX_LOGICS];
    for (int i = 0; i < g->nlogics; i++)
        ids[i] = g->logics[i].id;
    int li = im_rendezvous(key, ids, g->nlogics);
    if (li < 0)
        return -1;
    Cim__Internal__Upstream u = CIM__INTERNAL__UPSTREAM__INIT;
    u.kind = (Cim__Internal__Upstream__Kind) kind;
    u.conn_id = conn_id;
    u.user_id = user_id;
    u.client_type = client_type;
    u.cmd = cmd;
    u.seq = seq;
    u.body.data = (uint8_t *) body;
    u.body.len = len;
    u.peer = (char *) (peer ? peer : "");
    u.close_reason = close_reason;
    size_t n = cim__internal__upstream__get_packed_size(&u);
    uint8_t *p = im_nn_out_reserve(g->logics[li].out, 3, n);
    if (!p) {
        im_metric_add(g->m.up_dropped, 1);
        return -1;
    }
    cim__internal__upstream__pack(&u, p);
    return 0;
}

/* ---------------------------------------------------------------- down */

static void deliver_user(gate_t *g, const Cim__Internal__Downstream *d)
{
    for (gate_conn_t *c = gate_conn_user_first(g, d->user_id); c;) {
        gate_conn_t *next = gate_conn_user_next(c);
        if (gate_conn_id(c) != d->conn_id)
            gate_conn_send(c, (uint16_t) d->cmd, 0, d->body.data, d->body.len);
        c = next;
    }
}

static void kick_user(gate_t *g, const Cim__Internal__Downstream *d)
{
    for (gate_conn_t *c = gate_conn_user_first(g, d->user_id); c;) {
        gate_conn_t *next = gate_conn_user_next(c);
        if (d->any_client_type || gate_conn_client_type(c) == d->client_type)
            gate_conn_kick(c, d->seq ? d->seq : IM_KICK_API);
        c = next;
    }
}

static void handle_down(gate_t *g, const Cim__Internal__Downstream *d)
{
    gate_conn_t *c;
    switch (d->kind) {
    case CIM__INTERNAL__DOWNSTREAM__KIND__PACKET:
        if ((c = gate_conn_find(g, d->conn_id))) {
            if (d->cmd == IM_CMD_AUTH_RSP || d->cmd == IM_CMD_AUTH_TOKEN_RSP)
                gate_conn_auth_failed(c); /* a plain auth answer is a refusal: may retry */
            gate_conn_send(c, (uint16_t) d->cmd, (uint16_t) d->seq, d->body.data, d->body.len);
        }
        break;
    case CIM__INTERNAL__DOWNSTREAM__KIND__AUTH_OK:
        c = gate_conn_find(g, d->conn_id);
        if (!c) {
            /* the client left while the logic set its route: have the route removed */
            gate_link_up(g, d->user_id, CIM__INTERNAL__UPSTREAM__KIND__CONN_CLOSED, d->conn_id,
                         d->user_id, d->client_type, 0, 0, NULL, 0, NULL, 1);
            break;
        }
        gate_conn_auth_ok(c, d->user_id, d->client_type);
        if (d->cmd)
            gate_conn_send(c, (uint16_t) d->cmd, (uint16_t) d->seq, d->body.data, d->body.len);
        break;
    case CIM__INTERNAL__DOWNSTREAM__KIND__CLOSE:
        if ((c = gate_conn_find(g, d->conn_id))) {
            if (d->cmd == IM_CMD_KICKOUT_NOTIFY) {
                gate_conn_kick(c, d->seq ? d->seq : IM_KICK_SAME_TYPE);
                break;
            }
            if (d->cmd)
                gate_conn_send(c, (uint16_t) d->cmd, (uint16_t) d->seq, d->body.data, d->body.len);
            gate_conn_close(c, CLOSE_LOGOUT, 1);
        }
        break;
    case CIM__INTERNAL__DOWNSTREAM__KIND__KICK_USER:
        kick_user(g, d);
        break;
    case CIM__INTERNAL__DOWNSTREAM__KIND__USER_PACKET:
        deliver_user(g, d);
        break;
    default:
        log_warn("logic sent an unknown item kind %d", d->kind);
    }
}

static void on_down(void *ud, const uint8_t *msg, size_t len)
{
    gate_t *g = ud;
    Cim__Internal__LogicMsg *m = cim__internal__logic_msg__unpack(NULL, len, msg);
    if (!m) {
        log_warn("undecodable message of %zu bytes from a logic: dropped", len);
        return;
    }
    for (size_t i = 0; i < m->n_items; i++)
        handle_down(g, m->items[i]);
    cim__internal__logic_msg__free_unpacked(m, NULL);
}

/* ---------------------------------------------------------------- registry */

static void logic_remove(gate_t *g, int i)
{
    log_info("logic %llu (%s) left", (unsigned long long) g->logics[i].id,
             im_nn_out_endpoint(g->logics[i].out));
    im_nn_out_close(g->logics[i].out);
    g->logics[i] = g->logics[--g->nlogics];
}

static void on_marker(im_redis_t *r, redisReply *reply, void *ud);

static void on_logics(im_redis_t *r, redisReply *reply, void *ud)
{
    gate_t *g = ud;
    (void) r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return; /* keep what we know while Redis is away */
    uint64_t seen[GATE_MAX_LOGICS];
    int nseen = 0;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *mem = reply->element[i], *score = reply->element[i + 1];
        if (mem->type != REDIS_REPLY_STRING || score->type != REDIS_REPLY_STRING)
            continue;
        char *bar = memchr(mem->str, '|', mem->len);
        if (!bar || mem->len > 200)
            continue;
        char ep[201];
        size_t eplen = mem->len - (size_t) (bar + 1 - mem->str);
        memcpy(ep, bar + 1, eplen);
        ep[eplen] = 0;
        uint64_t id = strtoull(mem->str, NULL, 10);
        if (!id || strncmp(ep, "tcp://", 6) != 0)
            continue;
        int k;
        for (k = 0; k < g->nlogics; k++)
            if (g->logics[k].id == id)
                break;
        if (k < g->nlogics && strcmp(im_nn_out_endpoint(g->logics[k].out), ep) != 0) {
            logic_remove(g, k); /* same id, new address: a restart elsewhere */
            k = g->nlogics;
        }
        if (k == g->nlogics) {
            if (g->nlogics == GATE_MAX_LOGICS)
                continue;
            im_nn_out_t *out =
                im_nn_out_connect(g->loop, ep, g->nn_prefix, g->nn_prefix_len, NN_QUEUE_MAX);
            if (!out)
                continue;
            g->logics[k].id = id;
            g->logics[k].out = out;
            g->nlogics++;
            log_info("logic %llu at %s joined", (unsigned long long) id, ep);
        }
        g->logics[k].expires_ms = (uint64_t) strtoull(score->str, NULL, 10);
        if (nseen < GATE_MAX_LOGICS)
            seen[nseen++] = id;
    }
    /* a logic missing from the list left (it deregisters when it stops) */
    uint64_t now = im_now_ms();
    for (int k = g->nlogics - 1; k >= 0; k--) {
        int found = 0;
        for (int j = 0; j < nseen; j++)
            found |= seen[j] == g->logics[k].id;
        /* an empty list after Redis lost its data: keep the logics we know until their
         * registrations would have expired (they register again within a second) */
        if (!found && (nseen > 0 || g->logics[k].expires_ms < now))
            logic_remove(g, k);
    }
    im_metric_set(g->m.logics, g->nlogics);
    /* Check our marker only against a fresh, non-empty logic list: a logic listed in this
     * Redis has re-registered, so its own Redis link is up and the routes we announce get
     * written. Checked earlier (right after Redis came back, with the logics we remembered),
     * the announce reached logics still reconnecting and the routes were dropped. */
    if (!g->draining && nseen > 0 && g->nlogics)
        im_redis_cmd(g->redis, on_marker, g, "SET cim:gmark:%llu 1 NX", (unsigned long long) g->id);
    int64_t queued = 0;
    for (int k = 0; k < g->nlogics; k++)
        queued += (int64_t) im_nn_out_queued(g->logics[k].out);
    im_metric_set(g->m.up_queued, queued);
}

static void on_marker(im_redis_t *r, redisReply *reply, void *ud)
{
    gate_t *g = ud;
    (void) r;
    /* our marker was missing: Redis lost its data (or this is our first tick), so the routes of
     * our logged-in connections are gone too: announce them again */
    if (reply && reply->type == REDIS_REPLY_STATUS) {
        int n = gate_conn_reannounce(g);
        if (n)
            log_warn("Redis lost this gate's routes: %d connection(s) announced again", n);
    }
}

void gate_link_registry_tick(gate_t *g)
{
    uint64_t now = im_now_ms();
    char member[256], score[32], nowbuf[32], oldbuf[32];
    snprintf(member, sizeof(member), "%llu|%s", (unsigned long long) g->id, g->cfg.gate_nn_addr);
    snprintf(score, sizeof(score), "%llu",
             (unsigned long long) (now + (uint64_t) g->cfg.registry_ttl * 1000));
    snprintf(nowbuf, sizeof(nowbuf), "%llu", (unsigned long long) now);
    snprintf(oldbuf, sizeof(oldbuf), "%llu", (unsigned long long) (now - 60000));
    if (!g->draining)
        im_redis_cmd(g->redis, NULL, NULL, "ZADD cim:gates %s %s", score, member);
    /* expired gates stay listed a minute, so logics see them expire and clean their routes */
    im_redis_cmd(g->redis, NULL, NULL, "ZREMRANGEBYSCORE cim:gates -inf %s", oldbuf);
    im_redis_cmd(g->redis, on_logics, g, "ZRANGEBYSCORE cim:logics %s +inf WITHSCORES", nowbuf);
}

int gate_link_start(gate_t *g)
{
    /* the start of every upstream batch: GateMsg.gate_id (1), GateMsg.gate_ep (2) */
    size_t n = im_pb_put_varint_field(g->nn_prefix, 1, g->id);
    size_t eplen = strlen(g->cfg.gate_nn_addr);
    if (eplen > sizeof(g->nn_prefix) - n - 12) {
        log_error("gate_nn_addr too long");
        return -1;
    }
    n += im_pb_put_bytes_field(g->nn_prefix + n, 2, g->cfg.gate_nn_addr, eplen);
    g->nn_prefix_len = n;
    g->nn_in = im_nn_in_bind(g->loop, g->cfg.gate_nn_addr, on_down, g);
    if (!g->nn_in)
        return -1;
    log_info("deliveries from logics on %s", g->cfg.gate_nn_addr);
    return 0;
}

void gate_link_stop(gate_t *g)
{
    char member[256];
    snprintf(member, sizeof(member), "%llu|%s", (unsigned long long) g->id, g->cfg.gate_nn_addr);
    im_redis_cmd(g->redis, NULL, NULL, "ZREM cim:gates %s", member);
    im_redis_cmd(g->redis, NULL, NULL, "DEL cim:gmark:%llu", (unsigned long long) g->id);
    for (int i = 0; i < g->nlogics; i++)
        im_nn_out_close(g->logics[i].out);
    g->nlogics = 0;
    im_nn_in_close(g->nn_in);
    g->nn_in = NULL;
}
