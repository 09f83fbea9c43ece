/*
 * The controller's HTTP server (docs/api.md): libh2o on the controller's own libuv loop, one
 * listener, bounded connections and requests, GET/HEAD only, one error envelope. Routing
 * and the responses themselves live in controller/api.c; this file owns sockets, h2o and
 * the shutdown sequence.
 *
 * Threading: loop thread only.
 */
#ifndef TAPIO_CONTROLLER_HTTP_H
#define TAPIO_CONTROLLER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define HTTP_DEFAULT_HOST	"127.0.0.1"
#define HTTP_DEFAULT_PORT	7080
#define HTTP_MAX_CONNECTIONS	256   /* further connections are accepted and closed at once */
#define HTTP_REQUEST_TIMEOUT_MS 10000 /* a request must arrive completely within this */
#define HTTP_MAX_TARGET		8192  /* longest request target (path + query) */

struct controller;

struct http_options {
	const char *host; /* IPv4 or IPv6 literal; NULL → HTTP_DEFAULT_HOST */
	int port;	  /* 0 → an ephemeral port (see http_port) */
	bool disabled;	  /* --http off */
	/* set when the address was given explicitly: a bind failure is then fatal; with the
	 * default address it is logged and the controller runs without the query API */
	bool required;
	/* docs/security.md: every request must carry "Authorization: Bearer TOKEN" (else 401
	 * UNAUTHORIZED); NULL/"" → no authentication (copied) */
	const char *token;
	const char *tls_cert; /* HTTPS (TLS 1.3) with this certificate and key; NULL → HTTP */
	const char *tls_key;
};

/* Fills *o with the defaults (127.0.0.1:7080, enabled, not required). */
void http_options_defaults(struct http_options *o);

struct http_server; /* h2o state, opaque */

struct http {
	struct http_server *srv; /* NULL when not running */
	int port;		 /* bound port */
};

/*
 * Starts serving the query API for controller c (which outlives the server) on loop.
 * Logs "http API listening on HOST:PORT". Returns 0 (also when disabled, or when the default
 * address could not be bound and !o->required), or -errno.
 */
int http_start(struct http *h, uv_loop_t *loop, const struct http_options *o, struct controller *c);

/* The port actually bound, 0 when not serving. */
int http_port(const struct http *h);

/*
 * Stops: closes the listener, asks h2o to finish the requests in flight, shuts the
 * remaining sockets down and, once every connection is closed, disposes h2o (its timers
 * close with the loop). Idempotent; the loop ends only after everything closed.
 */
void http_stop(struct http *h);

#endif
