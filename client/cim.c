/* cim: console chat client over libcim.
 *
 *   cim [--gate HOST:PORT[,HOST:PORT...]] [--client-type N] [--quiet] [--batch] [--keep-going]
 *
 * Interactive on a terminal: a prompt, one command per line, pushes printed as they arrive.
 * With stdin not a terminal (or --batch): commands are read line by line, each prints one
 * result line, and the first failing command ends the program with status 1 (--keep-going:
 * run them all, exit 1 at the end if any failed). Between commands the socket is watched
 * too, so pushes print as they arrive. Once logged in, a lost connection is re-established
 * and logged in again with the token (not after a logout or a kick).
 *
 * To add a command: write `static int cmd_x(app_t *a, int argc, char **argv, const char
 * *line)` returning 0 (ok) or 1 (failed) and add a row to `commands[]`. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libcim.h"
#include "im_cmd.h"
#include "proto/cim.pb-c.h"

#define DEFAULT_GATE       "127.0.0.1:8000"
#define CONNECT_TIMEOUT_MS 5000
#define CALL_TIMEOUT_MS    10000
#define MAX_ARGS           32
#define LINE_MAX_LEN       (64 * 1024)
#define RECONNECT_MAX_MS   30000

#define SENT_MAX 256

typedef struct sent_s {
    uint64_t server_msg_id, to;
    uint32_t session_type;
} sent_t;

typedef struct app_s {
    cim_client_t *c;
    const char *gates;
    uint32_t client_type;
    int interactive;
    int quiet;
    int keep_going;
    int quit;
    int in_command;       /* a command runs: pushes do not print a new prompt */
    int failed;           /* a command failed */
    int64_t reconnect_at; /* ms clock; 0 = no reconnect pending */
    int reconnect_delay;
    char inbuf[LINE_MAX_LEN];
    size_t inlen;
    int in_eof;
    sent_t sent[SENT_MAX]; /* my recent messages, for `recall <server_msg_id>` */
    size_t nsent, sent_next;
} app_t;

typedef int (*cmd_fn)(app_t *a, int argc, char **argv, const char *line);

typedef struct command_s {
    const char *name;
    const char *usage;
    const char *help;
    int min_args, max_args; /* not counting the command name; -1 = any */
    cmd_fn fn;
} command_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ output */

static void prompt(const app_t *a)
{
    if (!a->interactive || a->quiet || a->quit)
        return;
    if (cim_logged_in(a->c) && cim_user_name(a->c)[0])
        printf("%s> ", cim_user_name(a->c));
    else if (cim_logged_in(a->c))
        printf("%" PRIu64 "> ", cim_user_id(a->c));
    else
        printf("cim> ");
    fflush(stdout);
}

/* A line that arrives on its own (push, reconnect notice): on a terminal it starts on a fresh
 * line and the prompt is printed again. */
__attribute__((format(printf, 2, 3))) static void notice(const app_t *a, const char *fmt, ...)
{
    va_list ap;
    if (a->interactive && !a->quiet)
        printf("\r");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* One result line for a failure: transport errors by text, server refusals by code + name. */
static int fail_rc(const char *what, int rc, uint32_t code)
{
    if (rc == CIM_ERESULT)
        printf("error: %s failed: %u %s\n", what, code, cim_result_name(code));
    else
        printf("error: %s failed: %s\n", what, cim_strerror(rc));
    fflush(stdout);
    return 1;
}

static const char *kick_text(uint32_t reason)
{
    switch (reason) {
    case IM_KICK_SAME_TYPE:
        return "logged in elsewhere";
    case IM_KICK_API:
        return "by the server";
    case IM_KICK_DISABLED:
        return "account disabled";
    default:
        return "unknown reason";
    }
}

static const char *res_name(uint32_t res)
{
    switch (res) {
    case 1:
        return "OK";
    case 2:
        return "ERROR";
    case 3:
        return "REFUSED";
    case 4:
        return "RATE_LIMITED";
    default:
        return "UNKNOWN";
    }
}

/* Message text for printing: bytes as they are, control characters as '.', cut at 2000. */
static void text_of(const uint8_t *data, size_t len, char *out, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < len && k + 4 < n && i < 2000; i++)
        out[k++] = data[i] < 0x20 || data[i] == 0x7f ? '.' : (char) data[i];
    if (len > 2000 && k + 4 < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

/* "[msg 123 from alice(10001) seq 7] hello" */
static void print_msg(const app_t *a, const cim_packet_t *pkt)
{
    CIM__Def__CIMMsgData *d =
        (CIM__Def__CIMMsgData *) cim_packet_unpack(pkt, &cim__def__cimmsg_data__descriptor);
    if (!d) {
        notice(a, "[undecodable message, %zu bytes]", pkt->body_len);
        return;
    }
    char text[2048], group[48] = "";
    text_of(d->msg_data.data, d->msg_data.len, text, sizeof(text));
    if (d->session_type == CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_GROUP)
        snprintf(group, sizeof(group), " in group %" PRIu64, d->to_session_id);
    else if (d->from_user_id == cim_user_id(a->c))
        snprintf(group, sizeof(group), " to %" PRIu64, d->to_session_id);
    const char *kind = d->msg_type == 9 ? "notification" : "msg";
    notice(a, "[%s %" PRIu64 " from %s(%" PRIu64 ")%s seq %" PRIu64 "] %s", kind, d->server_msg_id,
           d->from_nick_name && d->from_nick_name[0] ? d->from_nick_name : "?", d->from_user_id,
           group, d->seq, text);
    cim__def__cimmsg_data__free_unpacked(d, NULL);
}

static void on_push(cim_client_t *c, const cim_packet_t *pkt, void *ud)
{
    const app_t *a = ud;
    (void) c;
    switch (pkt->cmd) {
    case IM_CMD_KICKOUT_NOTIFY: {
        CIM__Def__CIMKickoutNotify *k = (CIM__Def__CIMKickoutNotify *) cim_packet_unpack(
            pkt, &cim__def__cimkickout_notify__descriptor);
        uint32_t reason = k ? k->reason : 0;
        if (k)
            protobuf_c_message_free_unpacked(&k->base, NULL);
        notice(a, "[kicked: %s]", kick_text(reason));
        break;
    }
    case IM_CMD_HEARTBEAT:
        break; /* an echo nobody waited for */
    case IM_CMD_MSG_DATA:
        print_msg(a, pkt);
        break;
    case IM_CMD_MSG_DATA_ACK: {
        CIM__Def__CIMMsgDataAck *k = (CIM__Def__CIMMsgDataAck *) cim_packet_unpack(
            pkt, &cim__def__cimmsg_data_ack__descriptor);
        if (k)
            notice(a, "[ack %s: %s, msg %" PRIu64 " seq %" PRIu64 "]", k->client_msg_id,
                   res_name((uint32_t) k->res_code), k->server_msg_id, k->seq);
        if (k)
            protobuf_c_message_free_unpacked(&k->base, NULL);
        break;
    }
    case IM_CMD_MSG_READ_NOTIFY: {
        CIM__Def__CIMMsgDataReadNotify *n = (CIM__Def__CIMMsgDataReadNotify *) cim_packet_unpack(
            pkt, &cim__def__cimmsg_data_read_notify__descriptor);
        if (n)
            notice(a, "[read by %" PRIu64 ": session %" PRIu64 " up to msg %" PRIu64 "]",
                   n->user_id, n->session_id, n->msg_id);
        if (n)
            protobuf_c_message_free_unpacked(&n->base, NULL);
        break;
    }
    case IM_CMD_RECALL_NOTIFY: {
        CIM__Def__CIMMsgRecallNotify *n = (CIM__Def__CIMMsgRecallNotify *) cim_packet_unpack(
            pkt, &cim__def__cimmsg_recall_notify__descriptor);
        if (n)
            notice(a, "[recalled by %" PRIu64 ": msg %" PRIu64 " in session %" PRIu64 "]",
                   n->from_user_id, n->server_msg_id, n->session_id);
        if (n)
            protobuf_c_message_free_unpacked(&n->base, NULL);
        break;
    }
    default:
        notice(a, "[push 0x%04x %s seq=%u, %zu bytes]", pkt->cmd, cim_cmd_name(pkt->cmd), pkt->seq,
               pkt->body_len);
        break;
    }
    if (!a->in_command && pkt->cmd != IM_CMD_HEARTBEAT)
        prompt(a);
}

/* ------------------------------------------------------------------ connection */

/* Connected (connecting now if needed): 0, or 1 after printing the error. */
static int ensure_connected(app_t *a)
{
    if (cim_is_connected(a->c))
        cim_poll(a->c, 0); /* notice a close that is already there */
    if (cim_is_connected(a->c))
        return 0;
    int rc = cim_connect_addr(a->c, a->gates, CONNECT_TIMEOUT_MS);
    if (rc != 0) {
        printf("error: cannot connect to %s: %s\n", a->gates, cim_strerror(rc));
        fflush(stdout);
        return 1;
    }
    return 0;
}

static void schedule_reconnect(app_t *a)
{
    if (!cim_logged_in(a->c) || a->reconnect_at)
        return;
    a->reconnect_delay = a->reconnect_delay ? a->reconnect_delay : 500;
    a->reconnect_at = now_ms() + a->reconnect_delay;
    notice(a, "[connection to %s lost; reconnecting]", cim_gate(a->c));
}

static void try_reconnect(app_t *a)
{
    if (!a->reconnect_at || now_ms() < a->reconnect_at)
        return;
    a->reconnect_at = 0;
    int rc = cim_reconnect(a->c, CONNECT_TIMEOUT_MS);
    if (rc == 0) {
        a->reconnect_delay = 0;
        notice(a, "[reconnected to %s as uid %" PRIu64 "]", cim_gate(a->c), cim_user_id(a->c));
        prompt(a);
        return;
    }
    if (rc == CIM_ERESULT || rc == CIM_ENOTOKEN) {
        notice(a, "[reconnect refused: %s; log in again]", cim_strerror(rc));
        prompt(a);
        return;
    }
    a->reconnect_delay =
        a->reconnect_delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : a->reconnect_delay * 2;
    a->reconnect_at = now_ms() + a->reconnect_delay;
    notice(a, "[reconnect failed: %s; next try in %d ms]", cim_strerror(rc), a->reconnect_delay);
}

/* After a command or a poll: if the connection dropped while logged in, plan a reconnect. */
static void check_connection(app_t *a)
{
    if (!cim_is_connected(a->c))
        schedule_reconnect(a);
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-')
        return -1;
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------ commands */

static int cmd_help(app_t *a, int argc, char **argv, const char *line);

static int cmd_quit(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) argv;
    (void) line;
    a->quit = 1;
    return 0;
}

static int cmd_register(app_t *a, int argc, char **argv, const char *line)
{
    (void) line;
    if (ensure_connected(a))
        return 1;
    uint32_t code = 0;
    uint64_t uid = 0;
    int rc = cim_register(a->c, argv[1], argv[2], argc > 3 ? argv[3] : argv[1], &code, &uid);
    if (rc != 0)
        return fail_rc("register", rc, code);
    printf("registered: user_id=%" PRIu64 "\n", uid);
    return 0;
}

static int cmd_login(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) line;
    if (cim_logged_in(a->c) && cim_is_connected(a->c)) {
        printf("error: already logged in as uid %" PRIu64 "; logout first\n", cim_user_id(a->c));
        return 1;
    }
    if (ensure_connected(a))
        return 1;
    uint32_t code = 0;
    int rc = cim_login_password(a->c, argv[1], argv[2], a->client_type, &code);
    if (rc != 0)
        return fail_rc("login", rc, code);
    a->reconnect_at = 0;
    printf("logged in as %s (uid %" PRIu64 ")\n", argv[1], cim_user_id(a->c));
    return 0;
}

static int cmd_login_token(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) line;
    uint64_t uid;
    if (parse_u64(argv[1], &uid) != 0 || uid == 0) {
        printf("error: bad user id '%s'\n", argv[1]);
        return 1;
    }
    if (cim_logged_in(a->c) && cim_is_connected(a->c)) {
        printf("error: already logged in as uid %" PRIu64 "; logout first\n", cim_user_id(a->c));
        return 1;
    }
    if (ensure_connected(a))
        return 1;
    uint32_t code = 0;
    int rc = cim_login_token(a->c, uid, argv[2], a->client_type, &code);
    if (rc != 0)
        return fail_rc("login", rc, code);
    a->reconnect_at = 0;
    printf("logged in as uid %" PRIu64 "\n", uid);
    return 0;
}

static int cmd_logout(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) argv;
    (void) line;
    if (!cim_logged_in(a->c)) {
        printf("error: not logged in\n");
        return 1;
    }
    a->reconnect_at = 0;
    if (!cim_is_connected(a->c)) { /* lost while logged in: just forget the session */
        cim_logout(a->c, NULL);
        printf("logged out\n");
        return 0;
    }
    uint32_t code = 0;
    int rc = cim_logout(a->c, &code);
    if (rc != 0)
        return fail_rc("logout", rc, code);
    cim_wait_closed(a->c, 2000); /* the server closes after 0x0104 */
    cim_close(a->c);
    printf("logged out\n");
    return 0;
}

static int cmd_whoami(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) argv;
    (void) line;
    if (!cim_logged_in(a->c)) {
        printf("not logged in%s%s\n", cim_is_connected(a->c) ? "; connected to " : "",
               cim_is_connected(a->c) ? cim_gate(a->c) : "");
        return 0;
    }
    const char *name = cim_user_name(a->c);
    printf("%s%suid %" PRIu64 ", client type %u, %s %s, token %s\n", name, name[0] ? " " : "",
           cim_user_id(a->c), a->client_type,
           cim_is_connected(a->c) ? "connected to" : "reconnecting to", cim_gate(a->c),
           cim_token(a->c));
    return 0;
}

static int cmd_ping(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) argv;
    (void) line;
    if (ensure_connected(a))
        return 1;
    int64_t t0 = now_ms();
    int rc = cim_heartbeat(a->c, CALL_TIMEOUT_MS);
    if (rc != 0)
        return fail_rc("ping", rc, 0);
    printf("pong from %s in %" PRId64 " ms\n", cim_gate(a->c), now_ms() - t0);
    return 0;
}

/* sleep N: wait N seconds (fractions allowed) while printing pushes; for scripts. */
static int cmd_sleep(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) line;
    char *end;
    double s = strtod(argv[1], &end);
    if (end == argv[1] || *end || s < 0 || s > 3600) {
        printf("error: bad number of seconds '%s'\n", argv[1]);
        return 1;
    }
    int64_t until = now_ms() + (int64_t) (s * 1000);
    while (now_ms() < until) {
        int left = (int) (until - now_ms());
        if (cim_is_connected(a->c)) {
            cim_poll(a->c, left > 1000 ? 1000 : left);
            check_connection(a);
        } else {
            try_reconnect(a);
            poll(NULL, 0, left > 200 ? 200 : left);
        }
    }
    printf("slept %s s\n", argv[1]);
    return 0;
}

static int need_login(const app_t *a)
{
    if (cim_logged_in(a->c) && cim_is_connected(a->c))
        return 0;
    printf("error: not logged in\n");
    return 1;
}

static int parse_id(const char *s, uint64_t *out)
{
    if (parse_u64(s, out) != 0 || *out == 0) {
        printf("error: bad id '%s'\n", s);
        return 1;
    }
    return 0;
}

static void remember_sent(app_t *a, uint64_t id, uint64_t to, uint32_t st)
{
    a->sent[a->sent_next] = (sent_t){.server_msg_id = id, .to = to, .session_type = st};
    a->sent_next = (a->sent_next + 1) % SENT_MAX;
    if (a->nsent < SENT_MAX)
        a->nsent++;
}

/* send <user_id> <text...>: the rest of the line is the text, as typed */
static int cmd_send(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    uint64_t to;
    if (parse_id(argv[1], &to) || need_login(a))
        return 1;
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    p += 4; /* "send" */
    while (*p == ' ' || *p == '\t')
        p++;
    while (*p && *p != ' ' && *p != '\t')
        p++; /* the user id */
    while (*p == ' ' || *p == '\t')
        p++;
    cim_ack_t ack;
    int rc = cim_send_text(a->c, to, p, &ack);
    if (rc == CIM_ERESULT) {
        printf("error: send failed: %s%s\n", res_name(ack.res_code),
               ack.res_code == 2 || ack.res_code == 4
                   ? " (kept; resent after reconnect or `resend`)"
                   : "");
        return 1;
    }
    if (rc != 0)
        return fail_rc("send", rc, 0);
    remember_sent(a, ack.server_msg_id, to, 1);
    printf("sent: msg %" PRIu64 " seq %" PRIu64 "\n", ack.server_msg_id, ack.seq);
    return 0;
}

static void print_info(const CIM__Def__CIMMsgInfo *mi)
{
    char text[2048];
    text_of(mi->msg_data.data, mi->msg_data.len, text, sizeof(text));
    printf("  msg %" PRIu64 " from %" PRIu64 " seq %" PRIu64 " %s%s%s\n", mi->server_msg_id,
           mi->from_user_id, mi->seq, mi->msg_status == 11 ? "[recalled] " : "",
           mi->msg_type == 9 ? "[notification] " : "", text);
}

static int cmd_history(app_t *a, int argc, char **argv, const char *line)
{
    (void) line;
    uint64_t peer, limit = 20;
    if (parse_id(argv[1], &peer) || (argc > 2 && parse_id(argv[2], &limit)) || need_login(a))
        return 1;
    CIM__Def__CIMGetMsgListRsp *rsp = NULL;
    uint32_t code = 0;
    int rc = cim_history(a->c, 1, peer, 0, (uint32_t) limit, &rsp, &code);
    if (rc != 0) {
        if (rsp)
            cim__def__cimget_msg_list_rsp__free_unpacked(rsp, NULL);
        return fail_rc("history", rc, code);
    }
    printf("history with %" PRIu64 ": %zu message(s), newest first\n", peer, rsp->n_msg_list);
    for (size_t i = 0; i < rsp->n_msg_list; i++)
        print_info(rsp->msg_list[i]);
    cim__def__cimget_msg_list_rsp__free_unpacked(rsp, NULL);
    return 0;
}

static int cmd_sessions(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) argv;
    (void) line;
    if (need_login(a))
        return 1;
    CIM__Def__CIMRecentContactSessionRsp *rsp = NULL;
    uint32_t code = 0;
    int rc = cim_sessions(a->c, 0, &rsp, &code);
    if (rc != 0) {
        if (rsp)
            cim__def__cimrecent_contact_session_rsp__free_unpacked(rsp, NULL);
        return fail_rc("sessions", rc, code);
    }
    printf("%zu session(s), %u unread\n", rsp->n_contact_session_list, rsp->unread_counts);
    for (size_t i = 0; i < rsp->n_contact_session_list; i++) {
        const CIM__Def__CIMContactSessionInfo *s = rsp->contact_session_list[i];
        char text[2048];
        text_of(s->msg_data.data, s->msg_data.len, text, sizeof(text));
        printf("  %s %" PRIu64 ": unread %u, last msg %" PRIu64 " from %" PRIu64 ": %s\n",
               s->session_type == 2 ? "group" : "user", s->session_id, s->unread_cnt,
               s->server_msg_id, s->msg_from_user_id, text);
    }
    cim__def__cimrecent_contact_session_rsp__free_unpacked(rsp, NULL);
    return 0;
}

static int cmd_read(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) line;
    uint64_t peer, latest = 0;
    if (parse_id(argv[1], &peer) || need_login(a))
        return 1;
    uint32_t code = 0;
    int rc = cim_latest_msg_id(a->c, 1, peer, &latest, &code);
    if (rc != 0)
        return fail_rc("read", rc, code);
    if (latest == 0) {
        printf("nothing to read with %" PRIu64 "\n", peer);
        return 0;
    }
    rc = cim_read_ack(a->c, 1, peer, latest);
    if (rc != 0)
        return fail_rc("read", rc, 0);
    printf("read: session %" PRIu64 " up to msg %" PRIu64 "\n", peer, latest);
    return 0;
}

static int cmd_recall(app_t *a, int argc, char **argv, const char *line)
{
    (void) line;
    uint64_t peer = 0, id;
    uint32_t st = 1;
    if (argc == 3) {
        if (parse_id(argv[1], &peer) || parse_id(argv[2], &id))
            return 1;
    } else {
        if (parse_id(argv[1], &id))
            return 1;
        for (size_t i = 0; i < a->nsent; i++)
            if (a->sent[i].server_msg_id == id) {
                peer = a->sent[i].to;
                st = a->sent[i].session_type;
            }
        if (!peer) {
            printf("error: msg %" PRIu64 " was not sent from here; use recall <user_id> "
                   "<server_msg_id>\n",
                   id);
            return 1;
        }
    }
    if (need_login(a))
        return 1;
    uint32_t code = 0;
    int rc = cim_recall(a->c, st, peer, id, &code);
    if (rc != 0)
        return fail_rc("recall", rc, code);
    printf("recalled: msg %" PRIu64 "\n", id);
    return 0;
}

static int cmd_sync(app_t *a, int argc, char **argv, const char *line)
{
    (void) line;
    uint64_t after = cim_seq(a->c);
    if (argc > 1 && parse_u64(argv[1], &after) != 0) {
        printf("error: bad seq '%s'\n", argv[1]);
        return 1;
    }
    if (need_login(a))
        return 1;
    CIM__Def__CIMSyncRsp *rsp = NULL;
    uint32_t code = 0;
    size_t total = 0;
    for (;;) {
        int rc = cim_sync_page(a->c, after, 100, &rsp, &code);
        if (rc != 0) {
            if (rsp)
                cim__def__cimsync_rsp__free_unpacked(rsp, NULL);
            return fail_rc("sync", rc, code);
        }
        for (size_t i = 0; i < rsp->n_msg_list; i++) {
            print_info(rsp->msg_list[i]);
            after = rsp->msg_list[i]->seq;
            total++;
        }
        int more = rsp->has_more && rsp->n_msg_list;
        uint64_t max = rsp->max_seq;
        cim__def__cimsync_rsp__free_unpacked(rsp, NULL);
        if (!more) {
            printf("synced: %zu entr%s, max seq %" PRIu64 "\n", total, total == 1 ? "y" : "ies",
                   max);
            return 0;
        }
    }
}

static int cmd_resend(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) argv;
    (void) line;
    if (need_login(a))
        return 1;
    size_t n = cim_unacked(a->c);
    int rc = cim_flush(a->c, CALL_TIMEOUT_MS);
    if (rc != 0)
        return fail_rc("resend", rc, 0);
    printf("resent: %zu message(s) acked\n", n);
    return 0;
}

static const command_t commands[] = {
    {"register", "register <name> <password> [nick]", "create an account (does not log in)", 2, 3,
     cmd_register},
    {"login", "login <name> <password>", "log in with name and password", 2, 2, cmd_login},
    {"login-token", "login-token <uid> <token>", "log in with a token", 2, 2, cmd_login_token},
    {"logout", "logout", "log out (the server closes the connection)", 0, 0, cmd_logout},
    {"whoami", "whoami", "who am I, where, and my token", 0, 0, cmd_whoami},
    {"ping", "ping", "heartbeat round trip", 0, 0, cmd_ping},
    {"sleep", "sleep <seconds>", "wait, printing what arrives", 1, 1, cmd_sleep},
    {"send", "send <user_id> <text>", "send a text message (the rest of the line)", 2, -1,
     cmd_send},
    {"history", "history <user_id> [limit]", "messages with a user, newest first", 1, 2,
     cmd_history},
    {"sessions", "sessions", "recent sessions with unread counts", 0, 0, cmd_sessions},
    {"read", "read <user_id>", "mark the session read up to its latest message", 1, 1, cmd_read},
    {"recall", "recall [user_id] <server_msg_id>",
     "recall my message (user_id needed unless sent from this console)", 1, 2, cmd_recall},
    {"sync", "sync [after_seq]", "print my inbox after a seq (default: what I have seen)", 0, 1,
     cmd_sync},
    {"resend", "resend", "send unacked messages again and wait for their acks", 0, 0, cmd_resend},
    {"help", "help", "this list", 0, 0, cmd_help},
    {"quit", "quit", "leave (also: exit, Ctrl-D)", 0, 0, cmd_quit},
    {"exit", "exit", "leave", 0, 0, cmd_quit},
    {NULL, NULL, NULL, 0, 0, NULL},
};

static int cmd_help(app_t *a, int argc, char **argv, const char *line)
{
    (void) a;
    (void) argc;
    (void) argv;
    (void) line;
    for (const command_t *cmd = commands; cmd->name; cmd++)
        printf("  %-36s %s\n", cmd->usage, cmd->help);
    return 0;
}

/* ------------------------------------------------------------------ line handling */

/* Split line in place into words; "double quotes" group words, \" and \\ escape. */
static int split_words(char *line, char **argv, int max)
{
    int argc = 0;
    char *r = line, *w = line;
    while (*r) {
        while (*r == ' ' || *r == '\t')
            r++;
        if (!*r)
            break;
        if (argc == max)
            return -1;
        argv[argc++] = w;
        int quoted = 0;
        while (*r && (quoted || (*r != ' ' && *r != '\t'))) {
            if (*r == '"') {
                quoted = !quoted;
                r++;
            } else if (*r == '\\' && (r[1] == '"' || r[1] == '\\')) {
                *w++ = r[1];
                r += 2;
            } else {
                *w++ = *r++;
            }
        }
        if (*r)
            r++;
        *w++ = '\0';
    }
    return argc;
}

static int run_line(app_t *a, const char *line)
{
    char *copy = strdup(line);
    char *argv[MAX_ARGS];
    if (!copy) {
        printf("error: out of memory\n");
        return 1;
    }
    int rc = 0;
    int argc = split_words(copy, argv, MAX_ARGS);
    if (argc < 0) {
        printf("error: too many words\n");
        rc = 1;
    } else if (argc > 0 && argv[0][0] != '#') {
        const command_t *cmd = commands;
        while (cmd->name && strcmp(cmd->name, argv[0]) != 0)
            cmd++;
        if (!cmd->name) {
            printf("error: unknown command '%s' (try help)\n", argv[0]);
            rc = 1;
        } else if (argc - 1 < cmd->min_args || (cmd->max_args >= 0 && argc - 1 > cmd->max_args)) {
            printf("error: usage: %s\n", cmd->usage);
            rc = 1;
        } else {
            a->in_command = 1;
            rc = cmd->fn(a, argc, argv, line);
            a->in_command = 0;
        }
    }
    free(copy);
    fflush(stdout);
    check_connection(a);
    return rc;
}

/* Read what stdin has and run each complete line. */
static void read_stdin(app_t *a)
{
    ssize_t n = read(STDIN_FILENO, a->inbuf + a->inlen, sizeof(a->inbuf) - 1 - a->inlen);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        a->in_eof = 1;
        if (a->inlen == 0)
            return;
        a->inbuf[a->inlen++] = '\n'; /* last line without a newline */
    } else {
        a->inlen += (size_t) n;
    }
    size_t start = 0;
    for (size_t i = 0; i < a->inlen && !a->quit; i++) {
        if (a->inbuf[i] != '\n')
            continue;
        a->inbuf[i] = '\0';
        if (i > start && a->inbuf[i - 1] == '\r')
            a->inbuf[i - 1] = '\0';
        if (run_line(a, a->inbuf + start) != 0) {
            a->failed = 1;
            if (!a->interactive && !a->keep_going)
                a->quit = 1;
        }
        start = i + 1;
        if (!a->quit)
            prompt(a);
    }
    memmove(a->inbuf, a->inbuf + start, a->inlen - start);
    a->inlen -= start;
    if (a->inlen == sizeof(a->inbuf) - 1) {
        printf("error: line too long\n");
        a->failed = 1;
        a->inlen = 0;
        if (!a->interactive && !a->keep_going)
            a->quit = 1;
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cim [--gate HOST:PORT[,HOST:PORT...]] [--client-type N] [--quiet]\n"
            "           [--batch] [--keep-going]\n"
            "  --gate         gates to connect to, tried in order (default %s)\n"
            "  --client-type  0..6, default 5 (PC_WINDOWS); 1 ANDROID, 2 IOS, 3 WEB...\n"
            "  --quiet        no banner, no prompt\n"
            "  --batch        read commands from stdin without a prompt (default when stdin\n"
            "                 is not a terminal); exit 1 at the first failing command\n"
            "  --keep-going   in batch mode, run every command; exit 1 if any failed\n",
            DEFAULT_GATE);
}

int main(int argc, char **argv)
{
    static app_t app;
    app_t *a = &app;
    int batch = 0;
    a->gates = DEFAULT_GATE;
    a->client_type = CIM_DEFAULT_CLIENT_TYPE;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--gate") && i + 1 < argc) {
            a->gates = argv[++i];
        } else if (!strncmp(arg, "--gate=", 7)) {
            a->gates = arg + 7;
        } else if (!strcmp(arg, "--client-type") && i + 1 < argc) {
            uint64_t v;
            if (parse_u64(argv[++i], &v) != 0 || v > IM_CT_MAX) {
                fprintf(stderr, "cim: bad client type '%s' (0..%d)\n", argv[i], IM_CT_MAX);
                return 2;
            }
            a->client_type = (uint32_t) v;
        } else if (!strcmp(arg, "--quiet") || !strcmp(arg, "-q")) {
            a->quiet = 1;
        } else if (!strcmp(arg, "--batch")) {
            batch = 1;
        } else if (!strcmp(arg, "--keep-going")) {
            a->keep_going = 1;
        } else if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "cim: unknown option '%s'\n", arg);
            usage(stderr);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    a->interactive = !batch && isatty(STDIN_FILENO);
    a->c = cim_client_new();
    if (!a->c || cim_set_gates(a->c, a->gates) != 0) {
        fprintf(stderr, "cim: bad --gate '%s'\n", a->gates);
        return 2;
    }
    cim_set_push_cb(a->c, on_push, a);
    if (a->interactive && !a->quiet)
        printf("cim console: gate %s, client type %u; type help\n", a->gates, a->client_type);
    prompt(a);

    while (!a->quit && !a->in_eof) {
        struct pollfd pfd[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = -1}};
        int nfds = 1;
        if (cim_is_connected(a->c)) {
            pfd[1].fd = cim_fd(a->c);
            pfd[1].events = POLLIN;
            nfds = 2;
        }
        int n = poll(pfd, (nfds_t) nfds, 1000);
        if (n < 0 && errno != EINTR)
            break;
        if (nfds == 2) { /* also when idle: cim_poll sends the heartbeat when one is due */
            int rc = cim_poll(a->c, 0);
            if (rc < 0 && rc != CIM_ENOTCONN && rc != CIM_ECLOSED)
                notice(a, "[connection error: %s]", cim_strerror(rc));
            check_connection(a);
        }
        try_reconnect(a);
        if (n > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
            read_stdin(a);
    }
    if (a->interactive && !a->quiet && a->in_eof)
        printf("\n");
    cim_client_free(a->c);
    return a->failed ? 1 : 0;
}
