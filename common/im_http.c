/* im_http: see im_http.h. */
#include "im_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "im_log.h"
#include "im_metrics.h"

im_mhd_result im_http_reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                            const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    im_mhd_result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

im_mhd_result im_http_metrics(struct MHD_Connection *c)
{
    char *text = NULL;
    long n = im_metrics_render(&text);
    if (n < 0)
        return im_http_reply(c, 500, "text/plain", "out of memory\n", 14);
    struct MHD_Response *r =
        MHD_create_response_from_buffer((size_t) n, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    im_mhd_result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

struct MHD_Daemon *im_http_start(const char *host, int port, MHD_AccessHandlerCallback cb, void *ud,
                                 MHD_RequestCompletedCallback done, int thread_per_conn)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) port);
    if (!host || !*host)
        host = "0.0.0.0";
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        log_error("http: bad address %s", host);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
    if (thread_per_conn)
        flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
    else
        flags |= MHD_USE_EPOLL_LINUX_ONLY;
    struct MHD_Daemon *d =
        MHD_start_daemon(flags, (uint16_t) port, NULL, NULL, cb, ud, MHD_OPTION_SOCK_ADDR, &sin,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 30, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned) 1000, MHD_OPTION_NOTIFY_COMPLETED, done, ud,
                         MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned) 1, MHD_OPTION_END);
    if (!d)
        log_error("http: cannot listen on %s:%d", host, port);
    return d;
}
