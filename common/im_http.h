/* im_http: small helpers over libmicrohttpd shared by both processes. */
#ifndef IM_HTTP_H
#define IM_HTTP_H

#include <microhttpd.h>
#include <stddef.h>

#if MHD_VERSION < 0x00097002
typedef int im_mhd_result;
#else
typedef enum MHD_Result im_mhd_result;
#endif

/* Queue a response with a copy of body. */
im_mhd_result im_http_reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                            const char *body, size_t len);
/* Queue the Prometheus text of the metrics registry. */
im_mhd_result im_http_metrics(struct MHD_Connection *c);
/* Start a daemon on host:port (host NULL = all) with its own polling thread, and with a thread
 * per connection when thread_per_conn (handlers may then block). NULL on error. */
struct MHD_Daemon *im_http_start(const char *host, int port, MHD_AccessHandlerCallback cb, void *ud,
                                 MHD_RequestCompletedCallback done, int thread_per_conn);

#endif
