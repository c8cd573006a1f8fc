/* cim: console chat client over libcim.
 *
 *   cim [--gate HOST:PORT[,HOST:PORT...]] [--client-type N] [--quiet] [--batch] [--keep-going]
 *       [--heartbeat SECONDS] [--tls [--tls-ca FILE | --tls-insecure]]
 *   cim admin [--api URL] [--api-key-file FILE | --api-key KEY] COMMAND...   (business API)
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
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

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

#define NICKS_MAX 512

typedef struct nick_s {
    uint64_t uid;
    char nick[48];
    uint32_t types;    /* bit per client type: online devices seen in presence changes */
    int presence_seen; /* 1 once a presence change of this user arrived */
} nick_t;

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
    nick_t nicks[NICKS_MAX]; /* user names seen (online lists, messages), for printing */
    size_t nnicks, nick_next;
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
static void remember_nick(app_t *a, uint64_t uid, const char *nick);

static void print_msg(app_t *a, const cim_packet_t *pkt)
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
    if (d->from_user_id && d->from_nick_name && d->from_nick_name[0])
        remember_nick(a, d->from_user_id, d->from_nick_name);
    notice(a, "[%s %" PRIu64 " from %s(%" PRIu64 ")%s seq %" PRIu64 "] %s", kind, d->server_msg_id,
           d->from_nick_name && d->from_nick_name[0] ? d->from_nick_name : "?", d->from_user_id,
           group, d->seq, text);
    cim__def__cimmsg_data__free_unpacked(d, NULL);
}

static void print_presence(app_t *a, const cim_packet_t *pkt);
static void print_member_change(app_t *a, const cim_packet_t *pkt);

static void on_push(cim_client_t *c, const cim_packet_t *pkt, void *ud)
{
    app_t *a = ud;
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
    case IM_CMD_PRESENCE_NOTIFY:
        print_presence(a, pkt);
        break;
    case IM_CMD_GROUP_MEMBER_CHANGED:
        print_member_change(a, pkt);
        break;
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
        if (*cim_tls_error(a->c))
            printf("error: cannot connect to %s: %s (%s)\n", a->gates, cim_strerror(rc),
                   cim_tls_error(a->c));
        else
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

/* ------------------------------------------------------------------ groups and presence */

static nick_t *find_nick(app_t *a, uint64_t uid)
{
    for (size_t i = 0; i < a->nnicks; i++)
        if (a->nicks[i].uid == uid)
            return &a->nicks[i];
    return NULL;
}

static nick_t *nick_slot(app_t *a, uint64_t uid)
{
    nick_t *n = find_nick(a, uid);
    if (n)
        return n;
    n = &a->nicks[a->nick_next];
    memset(n, 0, sizeof(*n));
    n->uid = uid;
    a->nick_next = (a->nick_next + 1) % NICKS_MAX;
    if (a->nnicks < NICKS_MAX)
        a->nnicks++;
    return n;
}

static void remember_nick(app_t *a, uint64_t uid, const char *nick)
{
    if (!uid || !nick || !nick[0])
        return;
    nick_t *n = nick_slot(a, uid);
    snprintf(n->nick, sizeof(n->nick), "%s", nick);
}

/* "alice(10001)" when the name is known, else "10001" */
static const char *user_label(app_t *a, uint64_t uid, char *buf, size_t n)
{
    const nick_t *k = find_nick(a, uid);
    if (k && k->nick[0])
        snprintf(buf, n, "%s(%" PRIu64 ")", k->nick, uid);
    else
        snprintf(buf, n, "%" PRIu64, uid);
    return buf;
}

/* "[online] bob(10002) type 5" */
static void print_presence(app_t *a, const cim_packet_t *pkt)
{
    CIM__Def__CIMPresenceNotify *p = (CIM__Def__CIMPresenceNotify *) cim_packet_unpack(
        pkt, &cim__def__cimpresence_notify__descriptor);
    if (!p) {
        notice(a, "[undecodable presence change, %zu bytes]", pkt->body_len);
        return;
    }
    nick_t *k = nick_slot(a, p->user_id);
    k->presence_seen = 1;
    unsigned ct = (unsigned) p->client_type;
    if (ct <= IM_CT_MAX) {
        if (p->online)
            k->types |= 1u << ct;
        else
            k->types = 0; /* offline: the last device left */
    }
    char who[80];
    notice(a, "[%s] %s type %u", p->online ? "online" : "offline",
           user_label(a, p->user_id, who, sizeof(who)), (unsigned) p->client_type);
    protobuf_c_message_free_unpacked(&p->base, NULL);
}

static size_t id_list_text(app_t *a, const uint64_t *ids, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        char who[80];
        int w = snprintf(out + k, cap - k, "%s%s", i ? ", " : "",
                         user_label(a, ids[i], who, sizeof(who)));
        if (w < 0 || (size_t) w >= cap - k) {
            snprintf(out + (cap > 4 ? cap - 4 : 0), cap > 4 ? 4 : cap, "...");
            break;
        }
        k += (size_t) w;
    }
    return k;
}

/* "[group 5001: alice(10001) added 10002, 10003]", "... removed ...", "... joined", "... left" */
static void print_member_change(app_t *a, const cim_packet_t *pkt)
{
    CIM__Def__CIMGroupMemberChangedNotify *n =
        (CIM__Def__CIMGroupMemberChangedNotify *) cim_packet_unpack(
            pkt, &cim__def__cimgroup_member_changed_notify__descriptor);
    if (!n) {
        notice(a, "[undecodable group member change, %zu bytes]", pkt->body_len);
        return;
    }
    size_t nadd = 0, ndel = 0, cnt = n->n_changed_list;
    uint64_t *add = calloc(cnt ? cnt : 1, sizeof(uint64_t));
    uint64_t *del = calloc(cnt ? cnt : 1, sizeof(uint64_t));
    if (add && del)
        for (size_t i = 0; i < cnt; i++) {
            const CIM__Def__CIMGroupMemberChangedInfo *ci = n->changed_list[i];
            if (ci->type ==
                CIM__DEF__CIMGROUP_MEMBER_CHANGED_TYPE__kCIM_GROUP_MEMBER_CHANGED_TYPE_DEL)
                del[ndel++] = ci->user_id;
            else
                add[nadd++] = ci->user_id;
        }
    char by[80], text[2048], list[1800];
    size_t k = 0;
    user_label(a, n->user_id, by, sizeof(by));
    text[0] = '\0';
    if (nadd == 1 && ndel == 0 && add[0] == n->user_id) {
        snprintf(text, sizeof(text), "%s joined", by);
    } else if (ndel == 1 && nadd == 0 && del[0] == n->user_id) {
        snprintf(text, sizeof(text), "%s left", by);
    } else {
        if (nadd) {
            id_list_text(a, add, nadd, list, sizeof(list));
            k += (size_t) snprintf(text + k, sizeof(text) - k, "%s added %s", by, list);
        }
        if (ndel && k < sizeof(text)) {
            id_list_text(a, del, ndel, list, sizeof(list));
            snprintf(text + k, sizeof(text) - k, "%s%s removed %s", k ? "; " : "", by, list);
        }
        if (!nadd && !ndel)
            snprintf(text, sizeof(text), "%s changed nothing", by);
    }
    notice(a, "[group %" PRIu64 ": %s]", n->group_id, text);
    free(add);
    free(del);
    protobuf_c_message_free_unpacked(&n->base, NULL);
}

/* The text of a command line after its first `skip` words, as typed. */
static const char *rest_of_line(const char *line, int skip)
{
    const char *p = line;
    for (int i = 0; i < skip; i++) {
        while (*p == ' ' || *p == '\t')
            p++;
        while (*p && *p != ' ' && *p != '\t')
            p++;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Parse argv[from..argc) as ids into a new array (*n); NULL after printing an error. */
static uint64_t *parse_ids(int argc, char **argv, int from, size_t *n)
{
    *n = 0;
    uint64_t *v = calloc((size_t) (argc > from ? argc - from : 1), sizeof(uint64_t));
    if (!v) {
        printf("error: out of memory\n");
        return NULL;
    }
    for (int i = from; i < argc; i++) {
        /* "10002,10003" works as well as "10002 10003" */
        char *save = NULL, *copy = strdup(argv[i]);
        if (!copy) {
            free(v);
            return NULL;
        }
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            uint64_t id;
            if (parse_id(t, &id)) {
                free(copy);
                free(v);
                return NULL;
            }
            uint64_t *nv = realloc(v, (*n + 1 + (size_t) (argc - i)) * sizeof(uint64_t));
            if (!nv) {
                free(copy);
                free(v);
                return NULL;
            }
            v = nv;
            v[(*n)++] = id;
        }
        free(copy);
    }
    return v;
}

/* One request/response; 0, or 1 after printing the error (rsp freed). */
static int call(app_t *a, const char *what, uint16_t cmd, const ProtobufCMessage *req,
                uint16_t rsp_cmd, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **rsp)
{
    int rc = cim_call(a->c, cmd, req, rsp_cmd, desc, rsp, CALL_TIMEOUT_MS);
    if (rc != 0)
        return fail_rc(what, rc, 0);
    return 0;
}

/* A response's result_code: 0 when it is success (0 or 200), else 1 after printing it. */
static int check_code(const char *what, uint32_t code, ProtobufCMessage *rsp)
{
    if (code == 0 || code == CIM_RESULT_SUCCESS)
        return 0;
    protobuf_c_message_free_unpacked(rsp, NULL);
    return fail_rc(what, CIM_ERESULT, code);
}

static int group_create(app_t *a, int argc, char **argv)
{
    size_t n;
    uint64_t *ids = parse_ids(argc, argv, 3, &n);
    if (!ids)
        return 1;
    CIM__Def__CIMGroupCreateReq q = CIM__DEF__CIMGROUP_CREATE_REQ__INIT;
    q.group_name = argv[2];
    q.member_id_list = ids;
    q.n_member_id_list = n;
    CIM__Def__CIMGroupCreateRsp *r = NULL;
    int rc = call(a, "group create", IM_CMD_GROUP_CREATE_REQ, &q.base, IM_CMD_GROUP_CREATE_RSP,
                  &cim__def__cimgroup_create_rsp__descriptor, (ProtobufCMessage **) &r);
    free(ids);
    if (rc || check_code("group create", r->result_code, &r->base))
        return 1;
    printf("group created: %" PRIu64 " \"%s\", %zu member(s)\n",
           r->group_info ? r->group_info->group_id : 0,
           r->group_info && r->group_info->group_name ? r->group_info->group_name : argv[2],
           r->n_member_id_list);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

static int group_members_change(app_t *a, int argc, char **argv, uint64_t gid, int invite)
{
    size_t n;
    uint64_t *ids = parse_ids(argc, argv, 3, &n);
    if (!ids)
        return 1;
    char list[1800];
    id_list_text(a, ids, n, list, sizeof(list));
    uint32_t code;
    ProtobufCMessage *r = NULL;
    int rc;
    if (invite) {
        CIM__Def__CIMGroupInviteMemberReq q = CIM__DEF__CIMGROUP_INVITE_MEMBER_REQ__INIT;
        q.group_id = gid;
        q.member_id_list = ids;
        q.n_member_id_list = n;
        rc = call(a, "group invite", IM_CMD_GROUP_INVITE_REQ, &q.base, IM_CMD_GROUP_INVITE_RSP,
                  &cim__def__cimgroup_invite_member_rsp__descriptor, &r);
        code = rc ? 0 : ((CIM__Def__CIMGroupInviteMemberRsp *) r)->result_code;
    } else {
        CIM__Def__CIMGroupKickOutMemberReq q = CIM__DEF__CIMGROUP_KICK_OUT_MEMBER_REQ__INIT;
        q.group_id = gid;
        q.member_id_list = ids;
        q.n_member_id_list = n;
        rc = call(a, "group kick", IM_CMD_GROUP_KICK_REQ, &q.base, IM_CMD_GROUP_KICK_RSP,
                  &cim__def__cimgroup_kick_out_member_rsp__descriptor, &r);
        code = rc ? 0 : ((CIM__Def__CIMGroupKickOutMemberRsp *) r)->result_code;
    }
    free(ids);
    if (rc || check_code(invite ? "group invite" : "group kick", code, r))
        return 1;
    printf("%s group %" PRIu64 ": %s\n", invite ? "invited to" : "removed from", gid, list);
    protobuf_c_message_free_unpacked(r, NULL);
    return 0;
}

/* join, exit, disband: requests of (user_id, group_id) answered with a result_code */
static int group_simple(app_t *a, const char *sub, uint64_t gid)
{
    CIM__Def__CIMGroupJoinReq jq = CIM__DEF__CIMGROUP_JOIN_REQ__INIT;
    CIM__Def__CIMGroupExitReq eq = CIM__DEF__CIMGROUP_EXIT_REQ__INIT;
    CIM__Def__CIMGroupDisbandingReq dq = CIM__DEF__CIMGROUP_DISBANDING_REQ__INIT;
    ProtobufCMessage *r = NULL;
    uint32_t code = 0;
    int rc;
    char what[32];
    snprintf(what, sizeof(what), "group %s", sub);
    if (!strcmp(sub, "join")) {
        jq.group_id = gid;
        rc = call(a, what, IM_CMD_GROUP_JOIN_REQ, &jq.base, IM_CMD_GROUP_JOIN_RSP,
                  &cim__def__cimgroup_join_rsp__descriptor, &r);
        if (!rc)
            code = ((CIM__Def__CIMGroupJoinRsp *) r)->result_code;
    } else if (!strcmp(sub, "exit")) {
        eq.group_id = gid;
        rc = call(a, what, IM_CMD_GROUP_EXIT_REQ, &eq.base, IM_CMD_GROUP_EXIT_RSP,
                  &cim__def__cimgroup_exit_rsp__descriptor, &r);
        if (!rc)
            code = ((CIM__Def__CIMGroupExitRsp *) r)->result_code;
    } else {
        dq.group_id = gid;
        rc = call(a, what, IM_CMD_GROUP_DISBAND_REQ, &dq.base, IM_CMD_GROUP_DISBAND_RSP,
                  &cim__def__cimgroup_disbanding_rsp__descriptor, &r);
        if (!rc)
            code = ((CIM__Def__CIMGroupDisbandingRsp *) r)->result_code;
    }
    if (rc || check_code(what, code, r))
        return 1;
    printf("%s group %" PRIu64 "\n",
           !strcmp(sub, "join")   ? "joined"
           : !strcmp(sub, "exit") ? "left"
                                  : "disbanded",
           gid);
    protobuf_c_message_free_unpacked(r, NULL);
    return 0;
}

/* 0x0509 for the given groups (version 0: always answered); *out owned by the caller */
static int group_infos(app_t *a, const uint64_t *gids, size_t n, CIM__Def__CIMGroupInfoRsp **out)
{
    CIM__Def__CIMGroupVersionInfo *vi = calloc(n ? n : 1, sizeof(*vi));
    CIM__Def__CIMGroupVersionInfo **vp = calloc(n ? n : 1, sizeof(*vp));
    if (!vi || !vp) {
        free(vi);
        free(vp);
        printf("error: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        cim__def__cimgroup_version_info__init(&vi[i]);
        vi[i].group_id = gids[i];
        vp[i] = &vi[i];
    }
    CIM__Def__CIMGroupInfoReq q = CIM__DEF__CIMGROUP_INFO_REQ__INIT;
    q.group_version_list = vp;
    q.n_group_version_list = n;
    int rc = call(a, "group info", IM_CMD_GROUP_INFO_REQ, &q.base, IM_CMD_GROUP_INFO_RSP,
                  &cim__def__cimgroup_info_rsp__descriptor, (ProtobufCMessage **) out);
    free(vi);
    free(vp);
    if (rc || check_code("group info", (*out)->result_code, &(*out)->base))
        return 1;
    return 0;
}

static int group_info(app_t *a, uint64_t gid)
{
    CIM__Def__CIMGroupInfoRsp *r = NULL;
    if (group_infos(a, &gid, 1, &r))
        return 1;
    const CIM__Def__CIMGroupInfo *g = NULL;
    for (size_t i = 0; i < r->n_group_info_list; i++)
        if (r->group_info_list[i]->group_id == gid)
            g = r->group_info_list[i];
    if (!g) {
        printf("error: group %" PRIu64 " not found\n", gid);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        return 1;
    }
    char owner[80];
    printf("group %" PRIu64 " \"%s\": owner %s, type %u, join_model %u, mute_model %u, "
           "created %u, updated %u\n",
           g->group_id, g->group_name, user_label(a, g->group_owner_id, owner, sizeof(owner)),
           (unsigned) g->group_type, (unsigned) g->join_model, (unsigned) g->mute_model,
           g->create_time, g->update_time);
    if (g->announcement && g->announcement[0])
        printf("  announcement: %s\n", g->announcement);
    if (g->group_intro && g->group_intro[0])
        printf("  intro: %s\n", g->group_intro);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

static int group_members(app_t *a, uint64_t gid)
{
    CIM__Def__CIMGroupMemberListReq q = CIM__DEF__CIMGROUP_MEMBER_LIST_REQ__INIT;
    q.group_id = gid;
    CIM__Def__CIMGroupMemberListRsp *r = NULL;
    if (call(a, "group members", IM_CMD_GROUP_MEMBER_LIST_REQ, &q.base,
             IM_CMD_GROUP_MEMBER_LIST_RSP, &cim__def__cimgroup_member_list_rsp__descriptor,
             (ProtobufCMessage **) &r) ||
        check_code("group members", r->result_code, &r->base))
        return 1;
    char list[1800];
    id_list_text(a, r->member_id_list, r->n_member_id_list, list, sizeof(list));
    printf("group %" PRIu64 ": %zu member(s): %s\n", gid, r->n_member_id_list, list);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

/* group create|invite|kick|join|exit|disband|info|members ... */
static int cmd_group(app_t *a, int argc, char **argv, const char *line)
{
    (void) line;
    const char *sub = argv[1];
    int many = !strcmp(sub, "invite") || !strcmp(sub, "kick");
    int one = !strcmp(sub, "join") || !strcmp(sub, "exit") || !strcmp(sub, "disband") ||
              !strcmp(sub, "info") || !strcmp(sub, "members");
    if (!strcmp(sub, "create")) {
        if (argc < 3) {
            printf("error: usage: group create <name> [uid...]\n");
            return 1;
        }
        return need_login(a) ? 1 : group_create(a, argc, argv);
    }
    if ((!many && !one) || (many && argc < 4) || (one && argc != 3)) {
        printf("error: usage: group create <name> [uid...] | group invite|kick <gid> <uid...> | "
               "group join|exit|disband|info|members <gid>\n");
        return 1;
    }
    uint64_t gid;
    if (parse_id(argv[2], &gid) || need_login(a))
        return 1;
    if (many)
        return group_members_change(a, argc, argv, gid, !strcmp(sub, "invite"));
    if (!strcmp(sub, "info"))
        return group_info(a, gid);
    if (!strcmp(sub, "members"))
        return group_members(a, gid);
    return group_simple(a, sub, gid);
}

/* groups: my groups with their versions (and names) */
static int cmd_groups(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) argv;
    (void) line;
    if (need_login(a))
        return 1;
    CIM__Def__CIMGroupListReq q = CIM__DEF__CIMGROUP_LIST_REQ__INIT;
    CIM__Def__CIMGroupListRsp *r = NULL;
    if (call(a, "groups", IM_CMD_GROUP_LIST_REQ, &q.base, IM_CMD_GROUP_LIST_RSP,
             &cim__def__cimgroup_list_rsp__descriptor, (ProtobufCMessage **) &r) ||
        check_code("groups", r->result_code, &r->base))
        return 1;
    size_t n = r->n_group_version_list;
    uint64_t *gids = calloc(n ? n : 1, sizeof(uint64_t));
    CIM__Def__CIMGroupInfoRsp *info = NULL;
    for (size_t i = 0; gids && i < n; i++)
        gids[i] = r->group_version_list[i]->group_id;
    if (n && gids && group_infos(a, gids, n > 500 ? 500 : n, &info) != 0)
        info = NULL; /* names are a bonus; the error line is printed */
    printf("%zu group(s)\n", n);
    for (size_t i = 0; i < n; i++) {
        const CIM__Def__CIMGroupVersionInfo *v = r->group_version_list[i];
        const CIM__Def__CIMGroupInfo *g = NULL;
        for (size_t j = 0; info && j < info->n_group_info_list; j++)
            if (info->group_info_list[j]->group_id == v->group_id)
                g = info->group_info_list[j];
        printf("  group %" PRIu64 " version %u%s%s%s\n", v->group_id, v->group_version,
               g ? " \"" : "", g ? g->group_name : "", g ? "\"" : "");
    }
    if (info)
        protobuf_c_message_free_unpacked(&info->base, NULL);
    free(gids);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

/* gsend <gid> <text...> */
static int cmd_gsend(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    uint64_t gid;
    if (parse_id(argv[1], &gid) || need_login(a))
        return 1;
    const char *text = rest_of_line(line, 2);
    cim_msg_out_t m = {
        .to = gid, .session_type = CIM_SESSION_GROUP, .data = text, .len = strlen(text)};
    cim_ack_t ack;
    int rc = cim_send_msg(a->c, &m, &ack);
    if (rc == CIM_ERESULT) {
        printf("error: gsend failed: %s%s\n", res_name(ack.res_code),
               ack.res_code == 2 || ack.res_code == 4
                   ? " (kept; resent after reconnect or `resend`)"
                   : "");
        return 1;
    }
    if (rc != 0)
        return fail_rc("gsend", rc, 0);
    remember_sent(a, ack.server_msg_id, gid, CIM_SESSION_GROUP);
    printf("sent to group %" PRIu64 ": msg %" PRIu64 " seq %" PRIu64 "\n", gid, ack.server_msg_id,
           ack.seq);
    return 0;
}

/* 0x0603 one page; *out owned by the caller */
static int online_page(app_t *a, uint32_t offset, uint32_t limit, uint32_t subscribe,
                       CIM__Def__CIMOnlineUserListRsp **out)
{
    CIM__Def__CIMOnlineUserListReq q = CIM__DEF__CIMONLINE_USER_LIST_REQ__INIT;
    q.offset = offset;
    q.limit = limit;
    q.subscribe = subscribe;
    if (call(a, "online list", IM_CMD_ONLINE_LIST_REQ, &q.base, IM_CMD_ONLINE_LIST_RSP,
             &cim__def__cimonline_user_list_rsp__descriptor, (ProtobufCMessage **) out) ||
        check_code("online list", (*out)->result_code, &(*out)->base))
        return 1;
    for (size_t i = 0; i < (*out)->n_user_list; i++)
        remember_nick(a, (*out)->user_list[i]->user_id, (*out)->user_list[i]->nick_name);
    return 0;
}

/* online [offset]: one page of 50 online users */
static int cmd_online(app_t *a, int argc, char **argv, const char *line)
{
    (void) line;
    uint64_t off = 0;
    if (argc > 1 && (parse_u64(argv[1], &off) != 0 || off > UINT32_MAX)) {
        printf("error: bad offset '%s'\n", argv[1]);
        return 1;
    }
    if (need_login(a))
        return 1;
    CIM__Def__CIMOnlineUserListRsp *r = NULL;
    if (online_page(a, (uint32_t) off, 50, 0, &r))
        return 1;
    printf("online: %u user(s) in total; %zu from offset %" PRIu64 "%s\n", r->total_online,
           r->n_user_list, off, r->n_user_list ? ":" : "");
    for (size_t i = 0; i < r->n_user_list; i++) {
        char who[80];
        printf("  %s\n", user_label(a, r->user_list[i]->user_id, who, sizeof(who)));
    }
    if (r->next_offset)
        printf("more: online %u\n", r->next_offset);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

/* who <uid>: is this user online (walks the online list) */
static int cmd_who(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) line;
    uint64_t uid;
    if (parse_id(argv[1], &uid) || need_login(a))
        return 1;
    uint32_t off = 0;
    int found = 0;
    for (int page = 0; page < 1000 && !found; page++) {
        CIM__Def__CIMOnlineUserListRsp *r = NULL;
        if (online_page(a, off, 200, 0, &r))
            return 1;
        for (size_t i = 0; i < r->n_user_list; i++)
            if (r->user_list[i]->user_id == uid)
                found = 1;
        off = r->next_offset;
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (!off)
            break;
    }
    char who[80];
    user_label(a, uid, who, sizeof(who));
    if (!found) {
        printf("%s is offline\n", who);
        return 0;
    }
    const nick_t *k = find_nick(a, uid);
    char types[64] = "";
    size_t t = 0;
    for (unsigned ct = 0; k && k->presence_seen && ct <= IM_CT_MAX && t + 4 < sizeof(types); ct++)
        if (k->types & (1u << ct))
            t += (size_t) snprintf(types + t, sizeof(types) - t, " %u", ct);
    if (t)
        printf("%s is online; client types seen:%s\n", who, types);
    else
        printf("%s is online\n", who);
    return 0;
}

static int cmd_subscribe(app_t *a, int argc, char **argv, const char *line)
{
    (void) argc;
    (void) line;
    int on = !strcmp(argv[0], "subscribe");
    if (need_login(a))
        return 1;
    CIM__Def__CIMOnlineUserListRsp *r = NULL;
    if (online_page(a, 0, 1, on ? 1 : 2, &r))
        return 1;
    if (on)
        printf("subscribed to presence changes (%u user(s) online now)\n", r->total_online);
    else
        printf("unsubscribed from presence changes\n");
    protobuf_c_message_free_unpacked(&r->base, NULL);
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
    {"group", "group create <name> [uid...]", "create a group with these members", 1, -1,
     cmd_group},
    {"group", "group invite|kick <gid> <uid...>", "add or remove members (kick: owner only)", 1, -1,
     cmd_group},
    {"group", "group join|exit|disband <gid>", "join, leave, or disband (owner) a group", 1, -1,
     cmd_group},
    {"group", "group info|members <gid>", "a group's info or its member list", 1, -1, cmd_group},
    {"groups", "groups", "my groups with their versions and names", 0, 0, cmd_groups},
    {"gsend", "gsend <gid> <text>", "send a text message to a group (the rest of the line)", 2, -1,
     cmd_gsend},
    {"online", "online [offset]", "online users, 50 per page", 0, 1, cmd_online},
    {"who", "who <uid>", "is this user online", 1, 1, cmd_who},
    {"subscribe", "subscribe", "print users coming online / going offline", 0, 0, cmd_subscribe},
    {"unsubscribe", "unsubscribe", "stop printing presence changes", 0, 0, cmd_subscribe},
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
    printf("Operators: `cim admin --help` (from the shell) calls the business HTTP API.\n");
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

/* ------------------------------------------------------------------ admin (business API) */

#define ADMIN_DEFAULT_API      "http://127.0.0.1:8080"
#define ADMIN_DEFAULT_KEY_FILE "run/api_key"
#define ADMIN_TIMEOUT_MS       15000
#define ADMIN_MAX_ANSWER       (16 * 1024 * 1024)

typedef struct admin_s {
    char host[300];
    char port[300];
    char prefix[256]; /* path before /api/v1, usually "" */
    char key[512];
} admin_t;

static int admin_parse_url(admin_t *ad, const char *url)
{
    const char *p = url;
    if (!strncmp(p, "http://", 7))
        p += 7;
    else if (strstr(p, "://"))
        return -1; /* only plain http */
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t) (slash - p) : strlen(p);
    char hp[300];
    if (hl == 0 || hl >= sizeof(hp))
        return -1;
    memcpy(hp, p, hl);
    hp[hl] = '\0';
    snprintf(ad->prefix, sizeof(ad->prefix), "%s", slash ? slash : "");
    size_t pl = strlen(ad->prefix);
    while (pl && ad->prefix[pl - 1] == '/')
        ad->prefix[--pl] = '\0';
    char *colon = strrchr(hp, ':');
    if (hp[0] == '[') { /* [v6]:port */
        char *close = strchr(hp, ']');
        if (!close)
            return -1;
        *close = '\0';
        colon = close[1] == ':' ? close + 1 : NULL;
        snprintf(ad->host, sizeof(ad->host), "%s", hp + 1);
    } else {
        if (colon)
            *colon = '\0';
        snprintf(ad->host, sizeof(ad->host), "%s", hp);
    }
    snprintf(ad->port, sizeof(ad->port), "%s", colon ? colon + 1 : "80");
    return ad->host[0] && ad->port[0] ? 0 : -1;
}

static int admin_read_key(admin_t *ad, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "cim admin: cannot read the API key from %s: %s\n", file, strerror(errno));
        return -1;
    }
    size_t n = fread(ad->key, 1, sizeof(ad->key) - 1, f);
    fclose(f);
    ad->key[n] = '\0';
    while (n && (ad->key[n - 1] == '\n' || ad->key[n - 1] == '\r' || ad->key[n - 1] == ' '))
        ad->key[--n] = '\0';
    if (!n) {
        fprintf(stderr, "cim admin: %s is empty\n", file);
        return -1;
    }
    return 0;
}

static int admin_send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t) w;
    }
    return 0;
}

/* One request (Connection: close). 0 with *status and *answer (malloc'd, NUL-terminated), or
 * -1 after printing why. */
static int admin_http(const admin_t *ad, const char *method, const char *path, const char *body,
                      int *status, char **answer)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(ad->host, ad->port, &hints, &res);
    if (gai != 0 || !res) {
        fprintf(stderr, "cim admin: cannot resolve %s: %s\n", ad->host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        struct timeval tv = {ADMIN_TIMEOUT_MS / 1000, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "cim admin: cannot connect to %s:%s: %s\n", ad->host, ad->port,
                strerror(err));
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    char head[2048];
    int hn = snprintf(head, sizeof(head),
                      "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n"
                      "Accept: application/json\r\nAuthorization: Bearer %s\r\n"
                      "%sContent-Length: %zu\r\n\r\n",
                      method, ad->prefix, path, ad->host, ad->port, ad->key,
                      body ? "Content-Type: application/json\r\n" : "", blen);
    if (hn < 0 || (size_t) hn >= sizeof(head) || admin_send_all(fd, head, (size_t) hn) != 0 ||
        (blen && admin_send_all(fd, body, blen) != 0)) {
        fprintf(stderr, "cim admin: sending the request failed: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap + 1);
    long clen = -1;
    size_t hdr_end = 0;
    int chunked = 0;
    while (buf) {
        if (len == cap) {
            char *nb = cap < ADMIN_MAX_ANSWER ? realloc(buf, cap * 2 + 1) : NULL;
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t) n;
        buf[len] = '\0';
        if (!hdr_end) {
            char *e = strstr(buf, "\r\n\r\n");
            if (!e)
                continue;
            hdr_end = (size_t) (e - buf) + 4;
            for (char *l = strstr(buf, "\r\n") + 2; l < e;) {
                char *next = strstr(l, "\r\n");
                if (!strncasecmp(l, "Content-Length:", 15))
                    clen = strtol(l + 15, NULL, 10);
                else if (!strncasecmp(l, "Transfer-Encoding:", 18) && strstr(l, "chunked") &&
                         strstr(l, "chunked") < next)
                    chunked = 1;
                l = next + 2;
            }
        }
        if (hdr_end && clen >= 0 && len - hdr_end >= (size_t) clen)
            break;
    }
    close(fd);
    if (!buf)
        return -1;
    buf[len] = '\0';
    if (!hdr_end || sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
        fprintf(stderr, "cim admin: no HTTP answer from %s:%s\n", ad->host, ad->port);
        free(buf);
        return -1;
    }
    size_t bl = len - hdr_end;
    if (clen >= 0 && (size_t) clen < bl)
        bl = (size_t) clen;
    memmove(buf, buf + hdr_end, bl);
    buf[bl] = '\0';
    if (chunked) { /* decode in place */
        size_t r = 0, w = 0;
        for (;;) {
            char *end;
            unsigned long sz = strtoul(buf + r, &end, 16);
            char *crlf = strstr(buf + r, "\r\n");
            if (!crlf || end == buf + r || sz == 0)
                break;
            r = (size_t) (crlf - buf) + 2;
            if (r + sz > bl)
                break;
            memmove(buf + w, buf + r, sz);
            w += sz;
            r += sz + 2;
        }
        bl = w;
        buf[bl] = '\0';
    }
    *answer = buf;
    return 0;
}

/* Print the answer indented; exit status 0 for HTTP 200, else 1. */
static int admin_print(int status, const char *answer)
{
    json_error_t jerr;
    json_t *j = json_loads(answer, 0, &jerr);
    if (j) {
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s ? s : answer);
        free(s);
    } else {
        printf("%s\n", answer);
    }
    fflush(stdout);
    int rc = 0;
    if (status != 200) {
        json_t *code = j ? json_object_get(j, "error_code") : NULL;
        json_t *msg = j ? json_object_get(j, "error_msg") : NULL;
        fprintf(stderr, "error: HTTP %d: %s (error_code %lld)\n", status,
                json_is_string(msg) ? json_string_value(msg) : "no JSON answer",
                json_is_integer(code) ? (long long) json_integer_value(code) : -1LL);
        rc = 1;
    }
    if (j)
        json_decref(j);
    return rc;
}

static int admin_do(const admin_t *ad, const char *method, const char *path, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body)
        json_decref(body);
    char *answer = NULL;
    int status = 0;
    int rc = admin_http(ad, method, path, text, &status, &answer);
    free(text);
    if (rc != 0)
        return 1;
    rc = admin_print(status, answer);
    free(answer);
    return rc;
}

static int admin_id(const char *s, uint64_t *out)
{
    if (parse_u64(s, out) != 0 || *out == 0 || *out >= (1ULL << 53)) {
        fprintf(stderr, "cim admin: bad id '%s'\n", s);
        return -1;
    }
    return 0;
}

/* ids "1,2,3" or separate words into a JSON array; NULL after printing the error */
static json_t *admin_ids(int argc, char **argv, int from)
{
    json_t *a = json_array();
    for (int i = from; i < argc; i++) {
        char *copy = strdup(argv[i]), *save = NULL;
        if (!copy)
            break;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            uint64_t id;
            if (admin_id(t, &id) != 0) {
                free(copy);
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, json_integer((json_int_t) id));
        }
        free(copy);
    }
    return a;
}

static void admin_usage(FILE *f)
{
    fprintf(f,
            "usage: cim admin [--api URL] [--api-key-file FILE | --api-key KEY] COMMAND...\n"
            "  --api           business API of a msg_logic (default %s)\n"
            "  --api-key-file  file holding the API key (default %s)\n"
            "commands:\n"
            "  user-add <name> <password> [nick]        register a user (the server picks the id)\n"
            "  user-import <uid> <nick>                 import a user with a given id\n"
            "  token <uid>                              a login token for the user\n"
            "  token-rotate <uid>                       new token; old ones stop working\n"
            "  push <uid,uid...|all> <text> [--transient]  server push (stored unless transient)\n"
            "  kick <uid>                               close the user's connections\n"
            "  online <uid>                             is the user online, with which clients\n"
            "  online-count                             online users and connections\n"
            "  group-create <owner> <name> [uid...]     create a group\n"
            "  group-members <gid>                      a group's members\n"
            "The answer is printed as JSON; the exit status is 1 on an HTTP error, 2 on bad "
            "usage.\n",
            ADMIN_DEFAULT_API, ADMIN_DEFAULT_KEY_FILE);
}

static int admin_main(int argc, char **argv)
{
    admin_t ad;
    memset(&ad, 0, sizeof(ad));
    const char *api = ADMIN_DEFAULT_API, *key_file = ADMIN_DEFAULT_KEY_FILE, *key = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (!strcmp(argv[i], "--api") && i + 1 < argc)
            api = argv[++i];
        else if (!strncmp(argv[i], "--api=", 6))
            api = argv[i] + 6;
        else if (!strcmp(argv[i], "--api-key-file") && i + 1 < argc)
            key_file = argv[++i];
        else if (!strncmp(argv[i], "--api-key-file=", 15))
            key_file = argv[i] + 15;
        else if (!strcmp(argv[i], "--api-key") && i + 1 < argc)
            key = argv[++i];
        else if (!strcmp(argv[i], "--help")) {
            admin_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "cim admin: unknown option '%s'\n", argv[i]);
            admin_usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        admin_usage(stderr);
        return 2;
    }
    if (admin_parse_url(&ad, api) != 0) {
        fprintf(stderr, "cim admin: bad --api '%s' (http://HOST:PORT)\n", api);
        return 2;
    }
    if (key)
        snprintf(ad.key, sizeof(ad.key), "%s", key);
    else if (admin_read_key(&ad, key_file) != 0)
        return 2;
    const char *cmd = argv[i];
    int n = argc - i - 1; /* arguments after the command */
    char **av = argv + i; /* av[0] = command */
    char path[256];
    uint64_t id;
#define ADMIN_ARGS(lo, hi)                                                                         \
    do {                                                                                           \
        if (n < (lo) || n > (hi)) {                                                                \
            fprintf(stderr, "cim admin: wrong number of arguments for %s\n", cmd);                 \
            admin_usage(stderr);                                                                   \
            return 2;                                                                              \
        }                                                                                          \
    } while (0)
    if (!strcmp(cmd, "user-add")) {
        ADMIN_ARGS(2, 3);
        json_t *b = json_object();
        json_object_set_new(b, "user_name", json_string(av[1]));
        json_object_set_new(b, "password", json_string(av[2]));
        json_object_set_new(b, "nick_name", json_string(n > 2 ? av[3] : av[1]));
        return admin_do(&ad, "POST", "/api/v1/users", b);
    }
    if (!strcmp(cmd, "user-import")) {
        ADMIN_ARGS(2, 2);
        if (admin_id(av[1], &id) != 0)
            return 2;
        json_t *b = json_object();
        json_object_set_new(b, "user_id", json_integer((json_int_t) id));
        json_object_set_new(b, "nick_name", json_string(av[2]));
        return admin_do(&ad, "POST", "/api/v1/users", b);
    }
    if (!strcmp(cmd, "token") || !strcmp(cmd, "token-rotate") || !strcmp(cmd, "kick") ||
        !strcmp(cmd, "online") || !strcmp(cmd, "group-members")) {
        ADMIN_ARGS(1, 1);
        if (admin_id(av[1], &id) != 0)
            return 2;
        int get = strcmp(cmd, "token-rotate") != 0 && strcmp(cmd, "kick") != 0;
        if (!strcmp(cmd, "group-members"))
            snprintf(path, sizeof(path), "/api/v1/groups/%" PRIu64 "/members", id);
        else
            snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/%s", id,
                     !strcmp(cmd, "kick")     ? "kick"
                     : !strcmp(cmd, "online") ? "online"
                                              : "token");
        return admin_do(&ad, get ? "GET" : "POST", path, NULL);
    }
    if (!strcmp(cmd, "online-count")) {
        ADMIN_ARGS(0, 0);
        return admin_do(&ad, "GET", "/api/v1/online/count", NULL);
    }
    if (!strcmp(cmd, "push")) {
        int transient = 0;
        char text[65536];
        size_t t = 0;
        int words = 0;
        text[0] = '\0';
        for (int k = 2; k <= n; k++) {
            if (!strcmp(av[k], "--transient")) {
                transient = 1;
                continue;
            }
            int w = snprintf(text + t, sizeof(text) - t, "%s%s", words++ ? " " : "", av[k]);
            if (w < 0 || (size_t) w >= sizeof(text) - t) {
                fprintf(stderr, "cim admin: text too long\n");
                return 2;
            }
            t += (size_t) w;
        }
        if (n < 2 || !words) {
            fprintf(stderr, "cim admin: usage: push <uid,uid...|all> <text> [--transient]\n");
            return 2;
        }
        json_t *b = json_object();
        if (!strcmp(av[1], "all")) {
            json_object_set_new(b, "all", json_true());
        } else {
            json_t *ids = admin_ids(2, av, 1);
            if (!ids) {
                json_decref(b);
                return 2;
            }
            json_object_set_new(b, "to_user_ids", ids);
        }
        json_object_set_new(b, "msg_data", json_string(text));
        if (transient)
            json_object_set_new(b, "transient", json_true());
        return admin_do(&ad, "POST", "/api/v1/push", b);
    }
    if (!strcmp(cmd, "group-create")) {
        if (n < 2) {
            fprintf(stderr, "cim admin: usage: group-create <owner> <name> [uid...]\n");
            return 2;
        }
        if (admin_id(av[1], &id) != 0)
            return 2;
        json_t *ids = admin_ids(n + 1, av, 3);
        if (!ids)
            return 2;
        json_t *b = json_object();
        json_object_set_new(b, "owner_id", json_integer((json_int_t) id));
        json_object_set_new(b, "group_name", json_string(av[2]));
        json_object_set_new(b, "member_ids", ids);
        return admin_do(&ad, "POST", "/api/v1/groups", b);
    }
#undef ADMIN_ARGS
    fprintf(stderr, "cim admin: unknown command '%s'\n", cmd);
    admin_usage(stderr);
    return 2;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cim [--gate HOST:PORT[,HOST:PORT...]] [--client-type N] [--quiet]\n"
            "           [--batch] [--keep-going] [--heartbeat SECONDS]\n"
            "           [--tls [--tls-ca FILE | --tls-insecure]]\n"
            "       cim admin [--api URL] [--api-key-file FILE] COMMAND... (cim admin --help)\n"
            "  --gate         gates to connect to, tried in order (default %s)\n"
            "  --client-type  0..6, default 5 (PC_WINDOWS); 1 ANDROID, 2 IOS, 3 WEB...\n"
            "  --quiet        no banner, no prompt\n"
            "  --batch        read commands from stdin without a prompt (default when stdin\n"
            "                 is not a terminal); exit 1 at the first failing command\n"
            "  --keep-going   in batch mode, run every command; exit 1 if any failed\n"
            "  --heartbeat    seconds between heartbeats when idle (default 25; 0 = none)\n"
            "  --tls          TLS to the gates' gate_tls_port, certificate checked against\n"
            "                 the system's CAs and the gate's name (or IP address)\n"
            "  --tls-ca       PEM file of the CA (or self-signed certificate) to check against\n"
            "  --tls-insecure TLS without checking the certificate (tests only)\n",
            DEFAULT_GATE);
}

int main(int argc, char **argv)
{
    static app_t app;
    app_t *a = &app;
    int batch = 0, heartbeat_ms = -1, tls = CIM_TLS_OFF;
    const char *tls_ca = NULL;
    if (argc > 1 && !strcmp(argv[1], "admin"))
        return admin_main(argc - 1, argv + 1);
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
        } else if (!strcmp(arg, "--heartbeat") && i + 1 < argc) {
            char *end;
            double sec = strtod(argv[++i], &end);
            if (end == argv[i] || *end || sec < 0 || sec > 3600) {
                fprintf(stderr, "cim: bad heartbeat interval '%s' (seconds)\n", argv[i]);
                return 2;
            }
            heartbeat_ms = (int) (sec * 1000);
        } else if (!strcmp(arg, "--tls")) {
            if (tls == CIM_TLS_OFF)
                tls = CIM_TLS_VERIFY;
        } else if (!strcmp(arg, "--tls-ca") && i + 1 < argc) {
            tls_ca = argv[++i];
            if (tls == CIM_TLS_OFF)
                tls = CIM_TLS_VERIFY;
        } else if (!strcmp(arg, "--tls-insecure")) {
            tls = CIM_TLS_INSECURE;
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
    if (tls != CIM_TLS_OFF && cim_set_tls(a->c, tls, tls_ca) != 0) {
        fprintf(stderr, "cim: --tls: %s\n", cim_tls_error(a->c));
        cim_client_free(a->c);
        return 2;
    }
    cim_set_push_cb(a->c, on_push, a);
    if (heartbeat_ms >= 0)
        cim_set_heartbeat_interval(a->c, heartbeat_ms);
    if (a->interactive && !a->quiet)
        printf("cim console: gate %s%s, client type %u; type help\n", a->gates,
               tls == CIM_TLS_OFF        ? ""
               : tls == CIM_TLS_INSECURE ? " (TLS, certificate not checked)"
                                         : " (TLS)",
               a->client_type);
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
