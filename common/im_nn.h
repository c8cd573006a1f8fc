/* im_nn: nanomsg sockets on a libuv loop.
 *
 * im_nn_in: a bound NN_PULL socket; every message received is handed to a callback (borrowed:
 * valid only during the call).
 * im_nn_out: an NN_PUSH socket connected to one endpoint that batches: callers append
 * length-delimited protobuf fields to the current batch (im_nn_out_reserve) and the batch is
 * sent as one nanomsg message after the current loop iteration (uv_check), or at once when it
 * passes the batch cap. Every batch starts with a fixed prefix (the envelope's header fields).
 * When nanomsg cannot take a batch (peer not connected yet, buffers full) it is queued and
 * sent when the socket becomes writable; past queue_max bytes new batches are dropped and
 * counted. Literal addresses only (nanomsg aborts on DNS failure). */
#ifndef IM_NN_H
#define IM_NN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define IM_NN_BATCH_MAX (512 * 1024)       /* flush threshold of one batch */
#define IM_NN_RCVMAX    (16 * 1024 * 1024) /* NN_RCVMAXSIZE: well above a batch */

typedef struct im_nn_in_s im_nn_in_t;
typedef struct im_nn_out_s im_nn_out_t;

typedef void (*im_nn_recv_cb)(void *ud, const uint8_t *msg, size_t len);

/* Bind a PULL socket on addr ("tcp://IP:PORT"). NULL on error (logged). */
im_nn_in_t *im_nn_in_bind(uv_loop_t *loop, const char *addr, im_nn_recv_cb cb, void *ud);
/* Close; the memory is freed after libuv's close callback. */
void im_nn_in_close(im_nn_in_t *in);

/* Connect a PUSH socket to ep. prefix (copied) starts every batch. NULL on error (logged). */
im_nn_out_t *im_nn_out_connect(uv_loop_t *loop, const char *ep, const uint8_t *prefix,
                               size_t prefix_len, size_t queue_max);
/* Reserve room for one length-delimited field (number field, len bytes) in the current batch
 * and return where the caller writes exactly len bytes (valid until the next call on out).
 * NULL when the item can never fit (len > IM_NN_RCVMAX / 2) or on allocation failure. */
uint8_t *im_nn_out_reserve(im_nn_out_t *out, uint32_t field, size_t len);
/* Send the current batch now (normally automatic). */
void im_nn_out_flush(im_nn_out_t *out);
const char *im_nn_out_endpoint(const im_nn_out_t *out);
/* Batches dropped because the queue was full, and bytes queued now. */
uint64_t im_nn_out_dropped(const im_nn_out_t *out);
size_t im_nn_out_queued(const im_nn_out_t *out);
/* Flush what can be sent without waiting, then close. */
void im_nn_out_close(im_nn_out_t *out);

/* Protobuf wire helpers used to build envelopes by hand. */
size_t im_pb_varint(uint8_t *out, uint64_t v); /* returns bytes written (<= 10) */
size_t im_pb_varint_len(uint64_t v);
/* Append "field: varint" / "field: bytes" to buf (caller sizes it). Return bytes written. */
size_t im_pb_put_varint_field(uint8_t *out, uint32_t field, uint64_t v);
size_t im_pb_put_bytes_field(uint8_t *out, uint32_t field, const void *data, size_t len);

#endif
