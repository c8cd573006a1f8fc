/* gate_tls: optional TLS on gate_tls_port (binary protocol) and gate_wss_port (WebSocket).
 *
 * libuv keeps owning the socket. Each TLS connection's SSL object reads from and writes to two
 * memory BIOs: ciphertext read from the socket is put into the read BIO (gate_tls_feed), and
 * the plaintext SSL_read yields (gate_tls_read) goes down the same paths as on the plain ports
 * (packet decoder, or WebSocket). Plaintext for the client goes through SSL_write in slices of
 * one record; after each slice the ciphertext in the write BIO is handed to
 * gate_conn__sock_write, so the write-queue cap (gate_write_queue_max) counts the bytes that
 * wait for the socket, as on the plain ports, and neither BIO grows past a record or two.
 *
 * Choices (one SSL_CTX per gate):
 * - TLS 1.2 at least; the server's cipher order; TLS 1.2 suites limited to ECDHE with AEAD
 *   (TLS 1.3 suites: OpenSSL's defaults); no renegotiation; no compression.
 * - No session resumption: no tickets (TLS 1.2 and 1.3) and no session cache. Clients
 *   reconnect to whichever gate DNS gives them, so resumption would need a ticket key shared
 *   and rotated across gates; a full handshake once per connection is cheap next to a
 *   connection's life, and there is no key material to manage besides the certificate's.
 * - The handshake has no deadline of its own: a connection is unauthenticated until it logs
 *   in over TLS, so the sweep closes it gate_auth_timeout after connect like any other.
 * - Failures are logged on one line with the peer address and OpenSSL's reason (never key
 *   material), counted in cim_gate_tls_handshake_failures_total, and the connection closed. */
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gate.h"
#include "im_log.h"

#define TLS_SLICE 16384 /* plaintext per SSL_write: one full record */

/* TLS 1.2 suites: forward secrecy and AEAD only (ECDSA or RSA certificates) */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

struct gate_tls_s {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    uint8_t up;       /* handshake done */
    uint8_t failed;   /* a fatal TLS error: no close_notify */
    uint8_t shut;     /* close_notify sent */
};

/* OpenSSL's first queued error as text (then the queue is cleared), or fallback. */
static const char *ssl_reason(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "%s", fallback);
    ERR_clear_error();
    return buf;
}

/* no passphrase prompt on the terminal: an encrypted key is an error */
static int no_password(char *buf, int size, int rwflag, void *ud)
{
    (void) buf;
    (void) size;
    (void) rwflag;
    (void) ud;
    return 0;
}

int gate_tls_init(gate_t *g)
{
    const gate_config_t *cfg = &g->cfg;
    char why[256];
    if (!cfg->gate_tls_port && !cfg->gate_wss_port) {
        if ((cfg->gate_tls_cert && *cfg->gate_tls_cert) ||
            (cfg->gate_tls_key && *cfg->gate_tls_key))
            log_info("gate_tls_cert/gate_tls_key set but gate_tls_port and gate_wss_port are 0: "
                     "TLS is off");
        return 0;
    }
    if (!cfg->gate_tls_cert || !*cfg->gate_tls_cert || !cfg->gate_tls_key || !*cfg->gate_tls_key) {
        log_error("gate_tls_port/gate_wss_port need gate_tls_cert and gate_tls_key (PEM files)");
        return -1;
    }
    /* the plain reason first: OpenSSL's text for a missing file is less clear */
    const char *files[2][2] = {{"gate_tls_cert", cfg->gate_tls_cert},
                               {"gate_tls_key", cfg->gate_tls_key}};
    for (int i = 0; i < 2; i++)
        if (access(files[i][1], R_OK) != 0) {
            log_error("%s %s: %s", files[i][0], files[i][1], strerror(errno));
            return -1;
        }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_error("TLS: SSL_CTX_new: %s", ssl_reason(why, sizeof(why), "failed"));
        return -1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET |
                                 SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* idle connections hold no record buffers */
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        log_error("TLS: cipher list: %s", ssl_reason(why, sizeof(why), "failed"));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->gate_tls_cert) != 1) {
        log_error("gate_tls_cert %s: not a usable PEM certificate: %s", cfg->gate_tls_cert,
                  ssl_reason(why, sizeof(why), "unknown error"));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->gate_tls_key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            log_error("gate_tls_key %s does not match gate_tls_cert %s", cfg->gate_tls_key,
                      cfg->gate_tls_cert);
        else
            log_error("gate_tls_key %s: not a usable unencrypted PEM private key: %s",
                      cfg->gate_tls_key, ssl_reason(why, sizeof(why), "unknown error"));
        ERR_clear_error();
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_error("gate_tls_key %s does not match gate_tls_cert %s: %s", cfg->gate_tls_key,
                  cfg->gate_tls_cert, ssl_reason(why, sizeof(why), "mismatch"));
        goto fail;
    }
    g->tls_ctx = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return -1;
}

void gate_tls_cleanup(gate_t *g)
{
    SSL_CTX_free(g->tls_ctx);
    g->tls_ctx = NULL;
}

gate_tls_t *gate_tls_new(gate_t *g)
{
    gate_tls_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ssl = SSL_new(g->tls_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty = "try again", not EOF */
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    return t;
}

void gate_tls_free(gate_tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
}

/* Send the ciphertext SSL left in the write BIO. 0, or -1 when the connection was closed. */
static int flush_out(gate_conn_t *c, gate_tls_t *t)
{
    uint8_t buf[TLS_SLICE + 1024];
    for (;;) {
        int n = BIO_read(t->wbio, buf, (int) sizeof(buf));
        if (n <= 0)
            return 0;
        if (gate_conn__sock_write(c, buf, (size_t) n, NULL, 0) < 0) {
            (void) BIO_reset(t->wbio);
            return -1;
        }
    }
}

/* A fatal TLS error from a peer: one line, counted, alert (if any) sent, closed. */
static void fail(gate_conn_t *c, gate_tls_t *t, const char *what, int err)
{
    gate_t *g = gate_conn_gate(c);
    char peer[48], why[256], fb[32];
    snprintf(fb, sizeof(fb), "SSL error %d", err);
    ssl_reason(why, sizeof(why), fb);
    t->failed = 1;
    im_metric_add(g->m.tls_failures, 1);
    log_warn("conn %llu peer %s: %s: %s: closed", (unsigned long long) gate_conn_id(c),
             gate_conn_peer(c, peer, sizeof(peer)), what, why);
    if (flush_out(c, t) == 0) /* OpenSSL's alert tells the client why */
        gate_conn_close(c, CLOSE_PROTOCOL, 0);
}

int gate_tls_feed(gate_conn_t *c, gate_tls_t *t, const uint8_t *data, size_t len)
{
    if (len && BIO_write(t->rbio, data, (int) len) != (int) len) {
        ERR_clear_error();
        gate_conn_close(c, CLOSE_CLIENT, 0); /* out of memory */
        return -1;
    }
    if (t->up)
        return 0;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->up = 1;
        char peer[48];
        log_debug("conn %llu peer %s: TLS handshake done (%s, %s)",
                  (unsigned long long) gate_conn_id(c), gate_conn_peer(c, peer, sizeof(peer)),
                  SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
        return flush_out(c, t);
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return flush_out(c, t);
    fail(c, t, "TLS handshake failed", e);
    return -1;
}

long gate_tls_read(gate_conn_t *c, gate_tls_t *t, uint8_t *buf, size_t cap)
{
    if (!t->up || cap == 0)
        return 0;
    /* nothing buffered in SSL and no ciphertext: SSL_read could only say WANT_READ */
    if (!SSL_has_pending(t->ssl) && BIO_ctrl_pending(t->rbio) == 0)
        return flush_out(c, t) < 0 ? -1 : 0;
    ERR_clear_error();
    int n = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int) cap);
    if (n > 0)
        return n;
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ) /* whatever SSL wrote meanwhile (alerts, key updates) */
        return flush_out(c, t) < 0 ? -1 : 0;
    if (e == SSL_ERROR_ZERO_RETURN) { /* the client's close_notify: like a TCP close */
        char peer[48];
        log_debug("conn %llu peer %s: TLS close_notify", (unsigned long long) gate_conn_id(c),
                  gate_conn_peer(c, peer, sizeof(peer)));
        gate_conn_close(c, CLOSE_CLIENT, 0);
        return -1;
    }
    fail(c, t, "TLS error", e);
    return -1;
}

int gate_tls_write(gate_conn_t *c, gate_tls_t *t, const uint8_t *a, size_t alen, const uint8_t *b,
                   size_t blen)
{
    if (!t->up || t->shut || t->failed)
        return 0; /* nothing goes out before the handshake or after close_notify */
    /* a and b as one stream, in slices of one record (header and body in one record) */
    uint8_t slice[TLS_SLICE];
    size_t total = alen + blen, off = 0;
    while (off < total) {
        size_t n = 0;
        while (n < sizeof(slice) && off < total) {
            const uint8_t *src = off < alen ? a + off : b + (off - alen);
            size_t avail = off < alen ? alen - off : total - off;
            size_t take = avail < sizeof(slice) - n ? avail : sizeof(slice) - n;
            memcpy(slice + n, src, take);
            n += take;
            off += take;
        }
        ERR_clear_error();
        int w = SSL_write(t->ssl, slice, (int) n);
        if (w != (int) n) {
            fail(c, t, "TLS write failed", SSL_get_error(t->ssl, w));
            return -1;
        }
        if (flush_out(c, t) < 0)
            return -1;
    }
    return 0;
}

void gate_tls_close_notify(gate_conn_t *c, gate_tls_t *t)
{
    if (!t->up || t->shut || t->failed)
        return;
    t->shut = 1;
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* queues close_notify in the write BIO; returns 0 (not awaited) */
    ERR_clear_error();
    flush_out(c, t);
}
