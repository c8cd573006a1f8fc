/* mh_agent: one "client host" of the multi-host test (tests/multihost/run.sh).
 *
 * It logs in a few users (uid:token pairs made through the business API), resolves the gate
 * name itself (one name, several A records: the order the host's resolver gives is the order
 * tried; a reconnect moves on to the next address), and then, until the file DIR/stop exists,
 * sends 1:1 messages to the other users and messages to the group, round robin, while it
 * reads the pushes. A connection that closes or stops answering is replaced: cim_reconnect
 * logs in again with the token, syncs by seq and resends what was not acked.
 *
 * After DIR/stop it flushes every unacked message, writes the client_msg_ids that were acked
 * OK to DIR/acked.AGENT and creates DIR/done.AGENT; once every agent of the run is done
 * (DIR/done.* count == --agents), each user syncs its whole inbox from seq 0 and checks:
 * seqs 1..max without gaps, no client_msg_id twice, and every message any agent had acked
 * for this user (1:1 to it, or to the group) is there. Result lines go to stdout:
 *   agent NAME user UID gate HOST:PORT ...        (connection changes)
 *   result NAME user UID sent N inbox N expected N missing N dup N gaps N pushes N reconnects N
 *   summary NAME ok|FAIL ...
 *
 * usage: mh_agent --name NAME --dir DIR --gate NAME:PORT --agents N --group GID
 *                 --users uid:token,uid:token... --peers uid,uid,... [--rate MSGS_PER_S]
 *                 [--timeout S] [--start K]
 * Gate choice: the resolver's order is not round robin (glibc sorts A records by RFC 3484
 * rules, so every host would pick the same gate), so, like clients that pick one of the A
 * records at random, user i of this agent starts at address (K + i) % n of the resolved list
 * and goes on from there in order, wrapping; a reconnect starts at the address after the last
 * one it used.
 * --peers: every user of the run (the 1:1 targets are the peers that are not this agent's). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "libcim.h"

#define MAXU    16
#define MAXP    64
#define MAXSEEN 200000

typedef struct {
    uint64_t uid;
    char token[512];
    cim_client_t *c;
    uint64_t nsent, pushes, reconnects;
    int down; /* connection lost, reconnect pending */
    char last_gate[80];
} user_t;

static const char *g_name, *g_dir;
static int g_agents;
static uint64_t g_gid;
static user_t g_u[MAXU];
static int g_nu;
static uint64_t g_peers[MAXP];
static int g_np;
static FILE *g_acked;
static uint64_t g_msgno;
static int g_start;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int exists(const char *what)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", g_dir, what);
    return access(p, F_OK) == 0;
}

static int count_done(void)
{
    DIR *d = opendir(g_dir);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "done.", 5))
            n++;
    closedir(d);
    return n;
}

static void record_ack(const cim_ack_t *ack)
{
    if (ack->res_code == CIM_RES_OK) {
        fprintf(g_acked, "%s\n", ack->client_msg_id);
        fflush(g_acked);
    }
}

static void ack_cb(cim_client_t *c, const cim_ack_t *ack, void *ud)
{
    (void) c;
    (void) ud;
    record_ack(ack);
}

static void push_cb(cim_client_t *c, const cim_packet_t *pkt, void *ud)
{
    (void) c;
    user_t *u = ud;
    if (pkt->cmd == 0x0301)
        u->pushes++;
}

/* resolve "name:port" into "ip:port,ip:port..." in the resolver's order */
static int resolve_gates(const char *gate, char *out, size_t outlen)
{
    char host[256];
    const char *colon = strrchr(gate, ':');
    if (!colon || (size_t) (colon - gate) >= sizeof(host))
        return -1;
    memcpy(host, gate, (size_t) (colon - gate));
    host[colon - gate] = 0;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
        return -1;
    out[0] = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char ip[64];
        inet_ntop(AF_INET, &((struct sockaddr_in *) ai->ai_addr)->sin_addr, ip, sizeof(ip));
        size_t l = strlen(out);
        snprintf(out + l, outlen - l, "%s%s:%s", l ? "," : "", ip, colon + 1);
    }
    freeaddrinfo(res);
    return 0;
}

static void note_gate(user_t *u)
{
    const char *g = cim_gate(u->c);
    if (strcmp(g, u->last_gate) != 0) {
        printf("agent %s user %" PRIu64 " gate %s%s\n", g_name, u->uid, g,
               u->last_gate[0] ? " (moved)" : "");
        fflush(stdout);
        snprintf(u->last_gate, sizeof(u->last_gate), "%s", g);
    }
}

static void try_reconnect(user_t *u)
{
    int rc = cim_reconnect(u->c, 3000);
    if (rc == 0) {
        u->down = 0;
        u->reconnects++;
        note_gate(u);
    } else if (rc == CIM_ERESULT || rc == CIM_ENOTOKEN) {
        printf("agent %s user %" PRIu64 " token refused on reconnect\n", g_name, u->uid);
        fflush(stdout);
    }
}

static void lost(user_t *u, const char *why, int rc)
{
    printf("agent %s user %" PRIu64 " lost gate %s: %s (%s)\n", g_name, u->uid, cim_gate(u->c), why,
           cim_strerror(rc));
    fflush(stdout);
    cim_close(u->c);
    u->down = 1;
}

static void send_one(user_t *u)
{
    cim_msg_out_t m;
    memset(&m, 0, sizeof(m));
    char text[128];
    uint64_t n = g_msgno++;
    if (n % 4 == 3 && g_gid) {
        m.to = g_gid;
        m.session_type = CIM_SESSION_GROUP;
        snprintf(text, sizeof(text), "m.%" PRIu64 ".g.%" PRIu64 ".%s.%" PRIu64, u->uid, g_gid,
                 g_name, n);
    } else {
        uint64_t to;
        do
            to = g_peers[rand() % g_np];
        while (to == u->uid);
        m.to = to;
        m.session_type = CIM_SESSION_SINGLE;
        snprintf(text, sizeof(text), "m.%" PRIu64 ".u.%" PRIu64 ".%s.%" PRIu64, u->uid, to, g_name,
                 n);
    }
    m.data = text;
    m.len = strlen(text);
    m.client_msg_id = text;
    cim_ack_t ack;
    int rc = cim_send_msg(u->c, &m, &ack);
    u->nsent++;
    if (rc == 0) {
        record_ack(&ack);
        return;
    }
    if (rc == CIM_ERESULT)
        return; /* ERROR / RATE_LIMITED: kept unacked, resent later */
    if (rc == CIM_ETIMEDOUT) {
        /* no ack in time: is the gate still there? */
        int h = cim_heartbeat(u->c, 2000);
        if (h == 0)
            return;
        lost(u, "no ack, no heartbeat", h);
        return;
    }
    lost(u, "send", rc);
}

/* ---- verification */

typedef struct {
    char **v;
    size_t n, cap;
} strset_t;

static void ss_add(strset_t *s, const char *x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof(char *));
    }
    s->v[s->n++] = strdup(x);
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static int ss_has(const strset_t *s, const char *x)
{
    return bsearch(&x, s->v, s->n, sizeof(char *), cmpstr) != NULL;
}

/* every acked cmid of every agent */
static void load_acked(strset_t *all)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "acked.", 6))
            continue;
        char p[512], line[256];
        snprintf(p, sizeof(p), "%s/%s", g_dir, e->d_name);
        FILE *f = fopen(p, "r");
        while (f && fgets(line, sizeof(line), f)) {
            line[strcspn(line, "\n")] = 0;
            if (line[0])
                ss_add(all, line);
        }
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    qsort(all->v, all->n, sizeof(char *), cmpstr);
}

typedef struct {
    strset_t got;
    uint64_t maxseq, count, gaps;
    uint64_t *seqs;
    size_t nseqs;
} inbox_t;

static void sync_cb(cim_client_t *c, const CIM__Def__CIMMsgInfo *m, void *ud)
{
    (void) c;
    inbox_t *ib = ud;
    if (m->client_msg_id && !strncmp(m->client_msg_id, "m.", 2))
        ss_add(&ib->got, m->client_msg_id);
    if (ib->nseqs < MAXSEEN)
        ib->seqs[ib->nseqs++] = m->seq;
    ib->count++;
}

static int cmpu64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

/* parse "m.FROM.KIND.TO.AGENT.N": is it meant for uid? */
static int meant_for(const char *cmid, uint64_t uid)
{
    uint64_t from, to;
    char kind;
    if (sscanf(cmid, "m.%" SCNu64 ".%c.%" SCNu64 ".", &from, &kind, &to) != 3)
        return 0;
    if (kind == 'g')
        return to == g_gid; /* every user of the run is a member */
    return to == uid;
}

static int verify_user(user_t *u, const strset_t *acked)
{
    inbox_t ib;
    memset(&ib, 0, sizeof(ib));
    ib.seqs = calloc(MAXSEEN, sizeof(uint64_t));
    uint32_t code = 0;
    uint64_t maxseq = 0;
    int rc = -1;
    for (int attempt = 0; attempt < 5 && rc != 0; attempt++) {
        if (!cim_is_connected(u->c) || u->down)
            try_reconnect(u);
        for (size_t i = 0; i < ib.got.n; i++)
            free(ib.got.v[i]);
        ib.got.n = 0;
        ib.nseqs = 0;
        ib.count = 0;
        rc = cim_sync(u->c, 0, 200, sync_cb, &ib, &maxseq, NULL, &code);
        if (rc != 0) {
            printf("agent %s user %" PRIu64 " sync failed: %s (code %u)\n", g_name, u->uid,
                   cim_strerror(rc), code);
            cim_close(u->c);
            u->down = 1;
            sleep(1);
        }
    }
    if (rc != 0) {
        printf("result %s user %" PRIu64 " sync-failed\n", g_name, u->uid);
        return 1;
    }
    qsort(ib.seqs, ib.nseqs, sizeof(uint64_t), cmpu64);
    uint64_t gaps = 0;
    for (size_t i = 0; i < ib.nseqs; i++)
        if (ib.seqs[i] != i + 1)
            gaps++;
    if (ib.nseqs != maxseq)
        gaps++;
    qsort(ib.got.v, ib.got.n, sizeof(char *), cmpstr);
    uint64_t dup = 0;
    for (size_t i = 1; i < ib.got.n; i++)
        if (!strcmp(ib.got.v[i], ib.got.v[i - 1]))
            dup++;
    uint64_t expected = 0, missing = 0;
    for (size_t i = 0; i < acked->n; i++) {
        if (!meant_for(acked->v[i], u->uid))
            continue;
        expected++;
        if (!ss_has(&ib.got, acked->v[i])) {
            if (missing < 5)
                printf("agent %s user %" PRIu64 " missing %s\n", g_name, u->uid, acked->v[i]);
            missing++;
        }
    }
    printf("result %s user %" PRIu64 " sent %" PRIu64 " inbox %" PRIu64 " maxseq %" PRIu64
           " expected %" PRIu64 " missing %" PRIu64 " dup %" PRIu64 " gaps %" PRIu64
           " pushes %" PRIu64 " reconnects %" PRIu64 " gate %s\n",
           g_name, u->uid, u->nsent, ib.count, maxseq, expected, missing, dup, gaps, u->pushes,
           u->reconnects, cim_gate(u->c));
    fflush(stdout);
    for (size_t i = 0; i < ib.got.n; i++)
        free(ib.got.v[i]);
    free(ib.got.v);
    free(ib.seqs);
    return (missing || dup || gaps || expected == 0) ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *gate = NULL, *users = NULL, *peers = NULL;
    double rate = 20;
    int timeout = 240;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--name"))
            g_name = v;
        else if (!strcmp(k, "--dir"))
            g_dir = v;
        else if (!strcmp(k, "--gate"))
            gate = v;
        else if (!strcmp(k, "--agents"))
            g_agents = atoi(v);
        else if (!strcmp(k, "--group"))
            g_gid = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--users"))
            users = v;
        else if (!strcmp(k, "--peers"))
            peers = v;
        else if (!strcmp(k, "--rate"))
            rate = atof(v);
        else if (!strcmp(k, "--timeout"))
            timeout = atoi(v);
        else if (!strcmp(k, "--start"))
            g_start = atoi(v);
        else {
            fprintf(stderr, "mh_agent: unknown option %s\n", k);
            return 2;
        }
    }
    if (!g_name || !g_dir || !gate || !users || !peers || g_agents < 1) {
        fprintf(stderr, "usage: see the comment at the top of mh_agent.c\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    srand((unsigned) getpid());
    int64_t hard_deadline = now_ms() + (int64_t) timeout * 1000;

    char *ul = strdup(users), *save = NULL;
    for (char *t = strtok_r(ul, ",", &save); t && g_nu < MAXU; t = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(t, ':');
        if (!colon)
            return 2;
        *colon = 0;
        g_u[g_nu].uid = strtoull(t, NULL, 10);
        snprintf(g_u[g_nu].token, sizeof(g_u[g_nu].token), "%s", colon + 1);
        g_nu++;
    }
    char *pl = strdup(peers);
    for (char *t = strtok_r(pl, ",", &save); t && g_np < MAXP; t = strtok_r(NULL, ",", &save))
        g_peers[g_np++] = strtoull(t, NULL, 10);

    char gates[1024];
    if (resolve_gates(gate, gates, sizeof(gates)) != 0) {
        printf("summary %s FAIL cannot resolve %s\n", g_name, gate);
        return 1;
    }
    printf("agent %s resolved %s -> %s\n", g_name, gate, gates);

    char p[512];
    snprintf(p, sizeof(p), "%s/acked.%s", g_dir, g_name);
    g_acked = fopen(p, "w");
    if (!g_acked)
        return 1;

    char *addr[16];
    int na = 0;
    char *gl = strdup(gates);
    for (char *t = strtok_r(gl, ",", &save); t && na < 16; t = strtok_r(NULL, ",", &save))
        addr[na++] = t;

    int fails = 0;
    for (int i = 0; i < g_nu; i++) {
        user_t *u = &g_u[i];
        char mine[1024] = "";
        for (int j = 0; j < na; j++) {
            size_t l = strlen(mine);
            snprintf(mine + l, sizeof(mine) - l, "%s%s", j ? "," : "",
                     addr[(g_start + i + j) % na]);
        }
        u->c = cim_client_new();
        cim_set_call_timeout(u->c, 3000);
        cim_set_heartbeat_interval(u->c, 2000);
        cim_set_push_cb(u->c, push_cb, u);
        cim_set_ack_cb(u->c, ack_cb, NULL);
        uint32_t code = 0;
        int rc = cim_connect_addr(u->c, mine, 5000);
        if (rc == 0)
            rc = cim_login_token(u->c, u->uid, u->token, 5, &code);
        if (rc != 0) {
            printf("agent %s user %" PRIu64 " login failed: %s (code %u)\n", g_name, u->uid,
                   cim_strerror(rc), code);
            fails++;
            u->down = 1;
            continue;
        }
        note_gate(u);
    }
    snprintf(p, sizeof(p), "%s/ready.%s", g_dir, g_name);
    fclose(fopen(p, "w"));

    /* ---- traffic until DIR/stop */
    int64_t interval = rate > 0 ? (int64_t) (1000.0 / rate) : 1000;
    int64_t next = now_ms();
    while (!exists("stop") && now_ms() < hard_deadline) {
        for (int i = 0; i < g_nu; i++) {
            user_t *u = &g_u[i];
            if (u->down) {
                try_reconnect(u);
                continue;
            }
            int rc = cim_poll(u->c, 0);
            if (rc == CIM_ECLOSED || rc == CIM_ENOTCONN || rc == CIM_EPROTO) {
                lost(u, "poll", rc);
                continue;
            }
            if (now_ms() >= next)
                send_one(u);
        }
        if (now_ms() >= next)
            next += interval;
        int64_t wait = next - now_ms();
        if (wait > 0) {
            /* read while waiting */
            for (int i = 0; i < g_nu; i++)
                if (!g_u[i].down && cim_poll(g_u[i].c, 0) < 0 && !cim_is_connected(g_u[i].c))
                    lost(&g_u[i], "poll", CIM_ECLOSED);
            usleep((useconds_t) (wait > 20 ? 20000 : wait * 1000));
        }
    }

    /* ---- flush: every message acked */
    for (int i = 0; i < g_nu; i++) {
        user_t *u = &g_u[i];
        for (int tries = 0; tries < 10 && now_ms() < hard_deadline; tries++) {
            if (u->down || !cim_is_connected(u->c)) {
                try_reconnect(u);
                if (u->down)
                    continue;
            }
            if (cim_flush(u->c, 5000) == 0 && cim_unacked(u->c) == 0)
                break;
            if (!cim_is_connected(u->c))
                u->down = 1;
        }
        if (cim_unacked(u->c)) {
            printf("agent %s user %" PRIu64 " %zu message(s) never acked\n", g_name, u->uid,
                   cim_unacked(u->c));
            fails++;
        }
    }
    fclose(g_acked);
    snprintf(p, sizeof(p), "%s/done.%s", g_dir, g_name);
    fclose(fopen(p, "w"));

    /* ---- wait for every agent, keep connections alive meanwhile */
    while (count_done() < g_agents && now_ms() < hard_deadline) {
        for (int i = 0; i < g_nu; i++)
            if (!g_u[i].down)
                cim_poll(g_u[i].c, 0);
        usleep(100000);
    }
    if (count_done() < g_agents) {
        printf("summary %s FAIL other agents did not finish in time\n", g_name);
        return 1;
    }
    usleep(500000); /* fan-out of the last group messages */

    strset_t acked;
    memset(&acked, 0, sizeof(acked));
    load_acked(&acked);
    for (int i = 0; i < g_nu; i++)
        fails += verify_user(&g_u[i], &acked);
    uint64_t sent = 0, rec = 0;
    for (int i = 0; i < g_nu; i++) {
        sent += g_u[i].nsent;
        rec += g_u[i].reconnects;
    }
    printf("summary %s %s users %d sent %" PRIu64 " reconnects %" PRIu64 " acked-total %zu\n",
           g_name, fails ? "FAIL" : "ok", g_nu, sent, rec, acked.n);
    for (int i = 0; i < g_nu; i++)
        cim_client_free(g_u[i].c);
    return fails ? 1 : 0;
}
