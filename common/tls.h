/*
 * TLS 1.3 for the agent↔controller link (docs/security.md), transport-agnostic: OpenSSL
 * works on two memory BIOs and never touches a socket, so the owner keeps its libuv stream
 * and nothing ever blocks the loop.
 *
 *   uv read callback ── ciphertext ──► tls_conn_feed ─► tls_conn_read ── plaintext ──► decoder
 *   frames ── plaintext ──► tls_conn_write ─► tls_conn_output_* ── ciphertext ──► uv_write
 *
 * The handshake runs on the same path: tls_conn_start (clients) or the first tls_conn_read
 * (servers) produces the first flight; every call may queue ciphertext, so the owner drains
 * tls_conn_output_* after each feed, read or write. Plaintext written before the handshake
 * completes is held and sent as soon as it does.
 *
 * Contexts hold certificates and keys; their contents are never logged (file paths are).
 * Threading: a context may be shared by connections on one thread; a connection is used by
 * one thread at a time.
 */
#ifndef TAPIO_TLS_H
#define TAPIO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Why a connection failed (counted by the controller, named by tls_fail_name). */
enum tls_fail {
	TLS_FAIL_NONE = 0,
	TLS_FAIL_NO_PEER_CERT, /* the peer sent no certificate where one is required */
	TLS_FAIL_UNKNOWN_CA,   /* the peer's certificate is not signed by a trusted CA */
	TLS_FAIL_EXPIRED,      /* the peer's certificate expired (or is not valid yet) */
	TLS_FAIL_HOSTNAME,     /* the server's certificate does not name the server */
	TLS_FAIL_BAD_CERT,     /* any other certificate verification failure */
	TLS_FAIL_PEER_REFUSED, /* the peer sent a fatal alert (it refused us) */
	TLS_FAIL_NOT_TLS,      /* the peer does not speak TLS (plaintext client, …) */
	TLS_FAIL_PROTOCOL,     /* version or cipher mismatch, bad record, … */
	TLS_FAIL_INTERNAL,     /* allocation or library failure */
	TLS_FAIL__COUNT
};

/* "no_peer_cert", "unknown_ca", … (stable: used as counter labels). */
const char *tls_fail_name(enum tls_fail f);

struct tls_ctx;
struct tls_conn;

struct tls_server_options {
	const char *cert_file;	    /* PEM certificate chain (required) */
	const char *key_file;	    /* PEM private key (required) */
	const char *client_ca_file; /* PEM CA bundle; set → client certificates required (mTLS) */
};

struct tls_client_options {
	const char *ca_file;	 /* PEM CA bundle to verify the server (required) */
	const char *server_name; /* SNI and the name the certificate must carry (required) */
	const char *cert_file;	 /* client certificate for mTLS (optional, with key_file) */
	const char *key_file;
};

/*
 * Builds a server or client context (TLS 1.3 only). Files are read now; nothing is kept
 * open. Returns a new context, or NULL with one line in err ("cannot read key FILE: …", "key
 * FILE does not match certificate FILE", …) that never quotes file contents.
 */
struct tls_ctx *tls_ctx_new_server(const struct tls_server_options *o, char *err, size_t errlen);
struct tls_ctx *tls_ctx_new_client(const struct tls_client_options *o, char *err, size_t errlen);
/* Drops the caller's reference; connections keep theirs. NULL-safe. */
void tls_ctx_free(struct tls_ctx *ctx);
/* The OpenSSL SSL_CTX, for libraries that run TLS on their own sockets (h2o). Borrowed. */
void *tls_ctx_native(struct tls_ctx *ctx);
/* True for a server context built with a client CA. */
bool tls_ctx_mutual(const struct tls_ctx *ctx);

/* A new connection on ctx (server or client side follows the context). NULL on ENOMEM. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx);
/* NULL-safe. Sends nothing: call tls_conn_shutdown first for a clean close. */
void tls_conn_free(struct tls_conn *t);

/* Client side: queues the ClientHello. Returns 0 or -EPROTO (see tls_conn_error). */
int tls_conn_start(struct tls_conn *t);

/* Hands ciphertext received from the peer to the connection (copied). Returns 0 or -ENOMEM. */
int tls_conn_feed(struct tls_conn *t, const void *data, size_t len);

/*
 * Decrypts into buf[0..cap), advancing the handshake as needed. Returns the number of
 * plaintext bytes (> 0), 0 when more ciphertext is needed, -EPIPE once the peer sent
 * close_notify, or -EPROTO on a TLS failure (the connection is dead; tls_conn_error and
 * tls_conn_fail_reason say why, and an alert for the peer may be queued as output). Call it
 * until it returns <= 0 after every tls_conn_feed.
 */
ssize_t tls_conn_read(struct tls_conn *t, void *buf, size_t cap);

/*
 * Encrypts len bytes of plaintext (held until the handshake completes). Returns 0, -ENOMEM,
 * -EPIPE after shutdown, or -EPROTO on a failed connection.
 */
int tls_conn_write(struct tls_conn *t, const void *data, size_t len);

/* Queues close_notify (once). Returns 0 or -EPROTO. */
int tls_conn_shutdown(struct tls_conn *t);

/* Ciphertext bytes waiting to be written to the peer. */
size_t tls_conn_output_pending(const struct tls_conn *t);
/* Moves up to cap bytes of pending ciphertext into dst; returns how many. */
size_t tls_conn_output_read(struct tls_conn *t, void *dst, size_t cap);

/* True once the handshake completed. */
bool tls_conn_established(const struct tls_conn *t);
/* Plaintext held until the handshake completes (bytes). */
size_t tls_conn_held(const struct tls_conn *t);

/* Why the connection failed; TLS_FAIL_NONE while it has not. */
enum tls_fail tls_conn_fail_reason(const struct tls_conn *t);
/* One line saying why it failed ("client certificate has expired", …); "" while it has not. */
const char *tls_conn_error(const struct tls_conn *t);

/* Subject common name of the verified peer certificate, or "" (copied into buf). */
const char *tls_conn_peer_name(const struct tls_conn *t, char *buf, size_t len);
/* Negotiated protocol and cipher ("TLSv1.3 TLS_AES_256_GCM_SHA384"), "" before the handshake. */
const char *tls_conn_describe(const struct tls_conn *t, char *buf, size_t len);

/*
 * Compares a presented token with the expected one in time independent of where they differ
 * (an attacker cannot learn a prefix from response times). NULL counts as "".
 */
bool tls_token_equal(const char *presented, const char *expected);

#define TLS_TOKEN_MAX 512

/*
 * Reads a shared token from path (--token-file): the first line, surrounding whitespace
 * trimmed, into buf[0..len). Returns 0, or -1 with one line in err naming the file but never
 * quoting it (unreadable, empty, longer than len-1).
 */
int tls_read_token_file(const char *path, char *buf, size_t len, char *err, size_t errlen);

#endif
