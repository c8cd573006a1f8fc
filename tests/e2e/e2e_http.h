/* e2e_http: a tiny blocking HTTP/1.1 client for the end-to-end tests (header-only).
 *
 *   e2e_http_rsp_t r;
 *   int rc = e2e_http("127.0.0.1:8080", "POST", "/api/v1/users", key, "{\"x\":1}", &r);
 *   ... r.status, r.body (NUL-terminated), r.json (jansson, NULL when not JSON) ...
 *   e2e_http_rsp_free(&r);
 *
 * One request per connection (Connection: close). Understands Content-Length, chunked and
 * read-until-close bodies. key NULL: no Authorization header. Returns 0, or -1 when the
 * server could not be reached or answered something that is not HTTP (r.status is then 0). */
#ifndef CIM_E2E_HTTP_H
#define CIM_E2E_HTTP_H

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define E2E_HTTP_TIMEOUT_MS 10000
#define E2E_HTTP_MAX_BODY   (16 * 1024 * 1024)

typedef struct e2e_http_rsp_s {
    int status;
    char *body; /* NUL-terminated, owned */
    size_t body_len;
    json_t *json; /* parsed body, NULL if it is not JSON; owned */
} e2e_http_rsp_t;

static inline void e2e_http_rsp_free(e2e_http_rsp_t *r)
{
    free(r->body);
    if (r->json)
        json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static inline int64_t e2e_http__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int e2e_http__connect(const char *addr)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t) (colon - addr) >= sizeof(host))
        return -1;
    memcpy(host, addr, (size_t) (colon - addr));
    host[colon - addr] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        struct timeval tv = {E2E_HTTP_TIMEOUT_MS / 1000, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static inline int e2e_http__send_all(int fd, const char *p, size_t n)
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

/* Decode a chunked body in place; new length, or -1. */
static inline long e2e_http__dechunk(char *b, size_t n)
{
    size_t r = 0, w = 0;
    for (;;) {
        char *end;
        if (r >= n)
            return -1;
        unsigned long sz = strtoul(b + r, &end, 16);
        char *crlf = strstr(b + r, "\r\n");
        if (!crlf || end == b + r)
            return -1;
        r = (size_t) (crlf - b) + 2;
        if (sz == 0)
            return (long) w;
        if (r + sz + 2 > n)
            return -1;
        memmove(b + w, b + r, sz);
        w += sz;
        r += sz + 2;
    }
}

static inline int e2e_http(const char *addr, const char *method, const char *path, const char *key,
                           const char *body, e2e_http_rsp_t *r)
{
    memset(r, 0, sizeof(*r));
    int fd = e2e_http__connect(addr);
    if (fd < 0)
        return -1;
    size_t blen = body ? strlen(body) : 0;
    char head[2048];
    int hn = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nAccept: */*\r\n"
                      "%s%s%s"
                      "%s"
                      "Content-Length: %zu\r\n\r\n",
                      method, path, addr, key ? "Authorization: Bearer " : "", key ? key : "",
                      key ? "\r\n" : "", body ? "Content-Type: application/json\r\n" : "", blen);
    if (hn < 0 || (size_t) hn >= sizeof(head) || e2e_http__send_all(fd, head, (size_t) hn) != 0 ||
        (blen && e2e_http__send_all(fd, body, blen) != 0)) {
        close(fd);
        return -1;
    }

    size_t cap = 8192, len = 0;
    char *buf = malloc(cap + 1);
    long content_length = -1;
    int chunked = 0;
    size_t hdr_end = 0;
    int64_t deadline = e2e_http__now() + E2E_HTTP_TIMEOUT_MS;
    while (buf && e2e_http__now() < deadline) {
        if (len == cap) {
            if (cap >= E2E_HTTP_MAX_BODY)
                break;
            char *nb = realloc(buf, cap * 2 + 1);
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
            for (char *line = strstr(buf, "\r\n") + 2; line < e;) {
                char *next = strstr(line, "\r\n");
                if (!strncasecmp(line, "Content-Length:", 15))
                    content_length = strtol(line + 15, NULL, 10);
                else if (!strncasecmp(line, "Transfer-Encoding:", 18) && strstr(line, "chunked") &&
                         strstr(line, "chunked") < next)
                    chunked = 1;
                line = next + 2;
            }
        }
        if (hdr_end && content_length >= 0 && len - hdr_end >= (size_t) content_length)
            break;
        if (hdr_end && chunked && len >= 5 && !memcmp(buf + len - 5, "0\r\n\r\n", 5))
            break;
    }
    close(fd);
    if (!buf)
        return -1;
    buf[len] = '\0';
    int status = 0;
    if (!hdr_end || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        free(buf);
        return -1;
    }
    size_t bl = len - hdr_end;
    if (content_length >= 0 && (size_t) content_length < bl)
        bl = (size_t) content_length;
    memmove(buf, buf + hdr_end, bl);
    buf[bl] = '\0';
    if (chunked) {
        long d = e2e_http__dechunk(buf, bl);
        bl = d < 0 ? 0 : (size_t) d;
    }
    buf[bl] = '\0';
    r->status = status;
    r->body = buf;
    r->body_len = bl;
    r->json = bl ? json_loadb(buf, bl, 0, NULL) : NULL;
    return 0;
}

/* Integer member of the response JSON, or dflt. */
static inline long long e2e_json_int(const e2e_http_rsp_t *r, const char *name, long long dflt)
{
    json_t *v = r->json ? json_object_get(r->json, name) : NULL;
    return json_is_integer(v) ? (long long) json_integer_value(v) : dflt;
}

/* String member of the response JSON (owned by r->json), or NULL. */
static inline const char *e2e_json_str(const e2e_http_rsp_t *r, const char *name)
{
    json_t *v = r->json ? json_object_get(r->json, name) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

#endif
