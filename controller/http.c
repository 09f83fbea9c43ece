/*
 * HTTP transport of the query API: libh2o (libuv flavour) on the controller's loop. We own
 * the listener and every accepted uv_tcp_t (so we can count them, cap them and shut them
 * down at stop); h2o owns the protocol. Responses are rendered by controller/api.c.
 */
#include "controller/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <h2o.h>

#include "common/log.h"
#include "common/tls.h"
#include "controller/api.h"
#include "controller/controller.h"

#define TAG "http"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct http_conn {
	uv_tcp_t tcp;
	struct http_server *srv;
	struct http_conn *prev, *next;
	bool counted; /* handed to h2o (else closed at once: over the connection cap) */
};

struct api_handler {
	h2o_handler_t super;
	struct http_server *srv;
};

struct http_server {
	uv_tcp_t listener;
	uv_timer_t final; /* one more loop turn after h2o disposed, so its timers finish closing */
	struct http *owner;
	struct controller *c;
	h2o_globalconf_t config;
	h2o_context_t ctx;
	h2o_accept_ctx_t accept_ctx;
	bool h2o_inited, listener_open, stopping, disposed;
	size_t conns;
	struct http_conn *list;
	uint64_t refused; /* connections over HTTP_MAX_CONNECTIONS */
	struct api_rate rate;
	char address[300];
	char *token;	       /* required bearer token, NULL = none */
	struct tls_ctx *tls;   /* HTTPS context, NULL = plain HTTP */
	uint64_t unauthorized; /* requests answered 401 */
};

/* True when the request carries "Authorization: Bearer <token>" with the right token. */
static bool authorized(struct http_server *srv, h2o_req_t *req)
{
	char given[TLS_TOKEN_MAX + 1];
	ssize_t i;
	const h2o_iovec_t *v;

	if (!srv->token)
		return true;
	i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
	if (i < 0)
		return false;
	v = &req->headers.entries[i].value;
	if (v->len < 7 || v->len - 7 > TLS_TOKEN_MAX || strncasecmp(v->base, "Bearer ", 7) != 0)
		return false;
	memcpy(given, v->base + 7, v->len - 7);
	given[v->len - 7] = '\0';
	return tls_token_equal(given, srv->token);
}

void http_options_defaults(struct http_options *o)
{
	memset(o, 0, sizeof(*o));
	o->host = HTTP_DEFAULT_HOST;
	o->port = HTTP_DEFAULT_PORT;
}

int http_port(const struct http *h)
{
	return h->srv ? h->port : 0;
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

static bool accepts_ndjson(h2o_req_t *req)
{
	static const char want[] = "application/x-ndjson";

	for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, i)) != -1;) {
		const h2o_iovec_t *v = &req->headers.entries[i].value;

		if (memmem(v->base, v->len, want, sizeof(want) - 1))
			return true;
	}
	return false;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	struct http_server *srv = ((struct api_handler *)self)->srv;
	struct api_request rq = {.http_address = srv->address, .rate = &srv->rate};
	struct api_response rs = {0};
	bool head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));

	if (!authorized(srv, req)) {
		srv->unauthorized++;
		api_error(&rs, 401, "UNAUTHORIZED",
			  "missing or wrong bearer token (Authorization: Bearer TOKEN)");
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
			       H2O_STRLIT("Bearer realm=\"tapio\""));
	} else if (!head && !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
		api_error(&rs, 405, "METHOD_NOT_ALLOWED",
			  "method %.*s not allowed: use GET or HEAD",
			  (int)(req->method.len > 16 ? 16 : req->method.len), req->method.base);
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
			       H2O_STRLIT("GET, HEAD"));
	} else if (req->path.len > HTTP_MAX_TARGET) {
		api_error(&rs, 400, "BAD_PARAMETER", "request target longer than %d bytes",
			  HTTP_MAX_TARGET);
	} else {
		rq.path = req->path.base;
		rq.path_len = req->path.len;
		if (req->query_at != SIZE_MAX && req->query_at < req->path.len) {
			rq.path_len = req->query_at;
			rq.query = req->path.base + req->query_at + 1;
			rq.query_len = req->path.len - req->query_at - 1;
		}
		rq.ndjson = accepts_ndjson(req);
		api_handle(srv->c, &rq, &rs);
		if (rs.status == 500)
			log_error(TAG, "%.*s: %.*s", (int)(rq.path_len > 200 ? 200 : rq.path_len),
				  rq.path, (int)rs.len, rs.body ? rs.body : "");
	}
	req->res.status = rs.status;
	req->res.reason = reason(rs.status);
	req->res.content_length = rs.len;
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, rs.content_type,
		       strlen(rs.content_type));
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
		       H2O_STRLIT("no-store"));
	if (rs.next_cursor[0]) {
		h2o_iovec_t v = h2o_strdup(&req->pool, rs.next_cursor, strlen(rs.next_cursor));

		h2o_add_header_by_str(&req->pool, &req->res.headers,
				      H2O_STRLIT("x-tapio-next-cursor"), 0, NULL, v.base, v.len);
	}
	/* h2o_send_inline copies the body into the request's pool; HEAD gets no body */
	h2o_send_inline(req, head ? "" : rs.body, head ? 0 : rs.len);
	api_response_fini(&rs);
	return 0;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void on_final_closed(uv_handle_t *h)
{
	struct http_server *srv = container_of(h, struct http_server, final);

	free(srv);
}

static void on_final(uv_timer_t *t)
{
	uv_close((uv_handle_t *)t, on_final_closed);
}

/* Once the listener and every connection are closed: dispose h2o, free on a later turn. */
static void maybe_finish(struct http_server *srv)
{
	if (!srv->stopping || srv->listener_open || srv->conns || srv->disposed)
		return;
	srv->disposed = true;
	if (srv->h2o_inited) {
		h2o_context_dispose(&srv->ctx);
		h2o_config_dispose(&srv->config);
	}
	log_info(TAG, "http API stopped (%llu connections refused over the cap)",
		 (unsigned long long)srv->refused);
	if (srv->token)
		log_info(TAG, "http API: %llu requests unauthorized (401)",
			 (unsigned long long)srv->unauthorized);
	tls_ctx_free(srv->tls);
	srv->tls = NULL;
	free(srv->token);
	srv->token = NULL;
	uv_timer_start(&srv->final, on_final, 0, 0);
}

static void on_listener_closed(uv_handle_t *h)
{
	struct http_server *srv = container_of(h, struct http_server, listener);

	srv->listener_open = false;
	maybe_finish(srv);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct http_conn *conn = container_of(h, struct http_conn, tcp);
	struct http_server *srv = conn->srv;

	if (conn->prev)
		conn->prev->next = conn->next;
	else
		srv->list = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	srv->conns--;
	free(conn);
	maybe_finish(srv);
}

static void on_accept(uv_stream_t *listener, int status)
{
	struct http_server *srv = container_of(listener, struct http_server, listener);
	struct http_conn *conn;
	h2o_socket_t *sock;

	if (status < 0) {
		LOG_RATELIMITED(LOG_WARN, TAG, "accept: %s", uv_strerror(status));
		return;
	}
	if (srv->stopping)
		return;
	conn = calloc(1, sizeof(*conn));
	if (!conn) {
		LOG_RATELIMITED(LOG_ERROR, TAG, "accept: out of memory");
		return;
	}
	conn->srv = srv;
	uv_tcp_init(listener->loop, &conn->tcp);
	conn->next = srv->list;
	if (srv->list)
		srv->list->prev = conn;
	srv->list = conn;
	srv->conns++;
	if (uv_accept(listener, (uv_stream_t *)&conn->tcp) < 0) {
		uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
		return;
	}
	if (srv->conns > HTTP_MAX_CONNECTIONS) {
		srv->refused++;
		LOG_RATELIMITED(LOG_WARN, TAG, "over %d connections: closing a new one",
				HTTP_MAX_CONNECTIONS);
		uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
		return;
	}
	sock = h2o_uv_socket_create((uv_stream_t *)&conn->tcp, on_conn_closed);
	if (!sock) {
		uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
		return;
	}
	conn->counted = true;
	h2o_accept(&srv->accept_ctx, sock);
}

static int bind_listener(struct http_server *srv, uv_loop_t *loop, const char *host, int port)
{
	struct sockaddr_storage ss;
	int namelen = sizeof(ss);
	bool v6 = strchr(host, ':') != NULL;
	int r;

	if (v6)
		r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
	else
		r = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
	if (r < 0)
		return r;
	uv_tcp_init(loop, &srv->listener);
	srv->listener_open = true;
	r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&srv->listener, 128, on_accept);
	if (r == 0)
		r = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &namelen);
	if (r < 0)
		return r;
	port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
			: ((struct sockaddr_in *)&ss)->sin_port);
	srv->owner->port = port;
	snprintf(srv->address, sizeof(srv->address), "%s%s%s:%d", v6 ? "[" : "", host,
		 v6 ? "]" : "", port);
	return 0;
}

int http_start(struct http *h, uv_loop_t *loop, const struct http_options *o, struct controller *c)
{
	const char *host = o->host ? o->host : HTTP_DEFAULT_HOST;
	struct http_server *srv;
	struct api_handler *handler;
	h2o_hostconf_t *hostconf;
	h2o_pathconf_t *pathconf;
	int r;

	memset(h, 0, sizeof(*h));
	if (o->disabled) {
		log_info(TAG, "http API disabled (--http off)");
		return 0;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->owner = h;
	srv->c = c;
	uv_timer_init(loop, &srv->final);
	if (o->token && *o->token && !(srv->token = strdup(o->token))) {
		uv_close((uv_handle_t *)&srv->final, on_final_closed);
		return -ENOMEM;
	}
	if (o->tls_cert && *o->tls_cert) {
		struct tls_server_options to = {.cert_file = o->tls_cert, .key_file = o->tls_key};
		char err[600];

		srv->tls = tls_ctx_new_server(&to, err, sizeof(err));
		if (!srv->tls) {
			log_error(TAG, "http API TLS: %s", err);
			free(srv->token);
			uv_close((uv_handle_t *)&srv->final, on_final_closed);
			return -EINVAL;
		}
	}
	r = bind_listener(srv, loop, host, o->port);
	if (r < 0) {
		srv->stopping = true;
		if (srv->listener_open)
			uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
		else
			maybe_finish(srv);
		if (o->required) {
			log_error(TAG, "http API on %s:%d: %s", host, o->port, uv_strerror(r));
			return r;
		}
		log_warn(TAG,
			 "http API on %s:%d: %s; running without the query API (give --http "
			 "HOST:PORT to make this fatal)",
			 host, o->port, uv_strerror(r));
		return 0;
	}
	h2o_config_init(&srv->config);
	srv->config.server_name = h2o_iovec_init(H2O_STRLIT("tapio-controller"));
	srv->config.max_request_entity_size = 4096;
	srv->config.http1.req_timeout = HTTP_REQUEST_TIMEOUT_MS;
	hostconf =
	    h2o_config_register_host(&srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	pathconf = h2o_config_register_path(hostconf, "/", 0);
	handler = (struct api_handler *)h2o_create_handler(pathconf, sizeof(*handler));
	handler->super.on_req = on_req;
	handler->srv = srv;
	h2o_context_init(&srv->ctx, loop, &srv->config);
	srv->accept_ctx.ctx = &srv->ctx;
	srv->accept_ctx.hosts = srv->config.hosts;
	srv->accept_ctx.ssl_ctx = tls_ctx_native(srv->tls);
	srv->h2o_inited = true;
	h->srv = srv;
	log_info(TAG, "http API listening on %s (%s%s)", srv->address,
		 srv->tls ? "HTTPS, TLS 1.3" : "plain HTTP",
		 srv->token ? ", bearer token required" : ", no authentication");
	return 0;
}

void http_stop(struct http *h)
{
	struct http_server *srv = h->srv;

	if (!srv || srv->stopping)
		return;
	srv->stopping = true;
	h->srv = NULL;
	if (srv->listener_open)
		uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
	/*
	 * Every response is rendered synchronously, so nothing of ours is in flight: shutting
	 * the sockets down makes h2o see EOF or EPIPE and close each connection itself.
	 */
	for (struct http_conn *conn = srv->list; conn; conn = conn->next) {
		uv_os_fd_t fd;

		if (conn->counted && uv_fileno((uv_handle_t *)&conn->tcp, &fd) == 0)
			shutdown(fd, SHUT_RDWR);
	}
	maybe_finish(srv);
}
