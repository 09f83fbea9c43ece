/*
 * common/tls: handshakes, data both ways in chunks, close_notify and every refusal, first
 * between two connections pumped in memory, then over a real socketpair on a libuv loop.
 * Certificates come from scripts/gen-dev-certs.sh.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "common/tls.h"

#define CERTS "/tmp/tapio-test-tls-unit"

static char path_buf[8][256];
static int path_next;

static const char *cert(const char *name)
{
	char *p = path_buf[path_next++ % 8];

	snprintf(p, 256, "%s/%s", CERTS, name);
	return p;
}

static void gen_certs(void)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "%s/scripts/gen-dev-certs.sh %s >/dev/null", TAPIO_SOURCE_DIR,
		 CERTS);
	cr_assert_eq(system(cmd), 0, "gen-dev-certs.sh failed");
}

TestSuite(tls, .init = gen_certs, .timeout = 30);

static struct tls_ctx *server_ctx(const char *cert_name, const char *key_name, bool mutual)
{
	char err[256] = "";
	struct tls_server_options o = {.cert_file = cert(cert_name),
				       .key_file = cert(key_name),
				       .client_ca_file = mutual ? cert("ca.pem") : NULL};
	struct tls_ctx *ctx = tls_ctx_new_server(&o, err, sizeof(err));

	cr_assert(ctx, "server ctx: %s", err);
	return ctx;
}

static struct tls_ctx *client_ctx(const char *ca, const char *name, const char *cert_name,
				  const char *key_name)
{
	char err[256] = "";
	struct tls_client_options o = {.ca_file = cert(ca),
				       .server_name = name,
				       .cert_file = cert_name ? cert(cert_name) : NULL,
				       .key_file = key_name ? cert(key_name) : NULL};
	struct tls_ctx *ctx = tls_ctx_new_client(&o, err, sizeof(err));

	cr_assert(ctx, "client ctx: %s", err);
	return ctx;
}

struct side {
	struct tls_conn *t;
	uint8_t *got;
	size_t got_len, got_cap;
	ssize_t last; /* last tls_conn_read result <= 0 */
};

/* Moves a's pending ciphertext to b in chunks of at most `chunk` bytes. Returns bytes moved. */
static size_t move(struct side *a, struct side *b, size_t chunk)
{
	uint8_t buf[4096];
	size_t moved = 0, n;

	if (chunk > sizeof(buf))
		chunk = sizeof(buf);
	while ((n = tls_conn_output_read(a->t, buf, chunk)) > 0) {
		cr_assert_eq(tls_conn_feed(b->t, buf, n), 0);
		moved += n;
	}
	return moved;
}

static void drain(struct side *s)
{
	uint8_t buf[3000];
	ssize_t n;

	while ((n = tls_conn_read(s->t, buf, sizeof(buf))) > 0) {
		if (s->got_len + (size_t)n > s->got_cap) {
			s->got_cap = (s->got_len + (size_t)n) * 2;
			s->got = realloc(s->got, s->got_cap);
			cr_assert(s->got);
		}
		memcpy(s->got + s->got_len, buf, (size_t)n);
		s->got_len += (size_t)n;
	}
	s->last = n;
}

/* Pumps both ways until nothing moves. */
static void pump(struct side *c, struct side *s, size_t chunk)
{
	for (int i = 0; i < 100000; i++) {
		size_t m = move(c, s, chunk);

		drain(s);
		m += move(s, c, chunk);
		drain(c);
		if (m == 0 && tls_conn_output_pending(c->t) == 0 &&
		    tls_conn_output_pending(s->t) == 0)
			return;
	}
	cr_assert_fail("pump did not settle");
}

static void sides_fini(struct side *c, struct side *s)
{
	tls_conn_free(c->t);
	tls_conn_free(s->t);
	free(c->got);
	free(s->got);
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

Test(tls, mutual_handshake_data_both_ways_and_close_notify)
{
	struct tls_ctx *sc = server_ctx("server.pem", "server.key", true);
	struct tls_ctx *cc = client_ctx("ca.pem", "localhost", "client.pem", "client.key");
	struct side c = {.t = tls_conn_new(cc)}, s = {.t = tls_conn_new(sc)};
	size_t big = 300000;
	uint8_t *up = malloc(big), *down = malloc(big);
	char name[64], desc[96];

	cr_assert(c.t && s.t && up && down);
	cr_assert(tls_ctx_mutual(sc));
	tls_ctx_free(sc); /* connections keep the contexts alive */
	tls_ctx_free(cc);
	fill(up, big, 1);
	fill(down, big, 2);
	/* written before the handshake: held, then sent */
	cr_assert_eq(tls_conn_write(c.t, up, 1000), 0);
	cr_assert_eq(tls_conn_held(c.t), 1000);
	cr_assert_eq(tls_conn_start(c.t), 0);
	pump(&c, &s, 7); /* the handshake in 7-byte pieces */
	cr_assert(tls_conn_established(c.t));
	cr_assert(tls_conn_established(s.t));
	cr_assert_eq(tls_conn_held(c.t), 0);
	cr_assert_str_eq(tls_conn_peer_name(s.t, name, sizeof(name)), "tapio-agent");
	cr_assert_str_eq(tls_conn_peer_name(c.t, name, sizeof(name)), "tapio-controller");
	cr_assert(strncmp(tls_conn_describe(c.t, desc, sizeof(desc)), "TLSv1.3 ", 8) == 0, "%s",
		  desc);
	/* the rest both ways, in uneven writes and 1500-byte segments */
	for (size_t off = 1000, step = 1; off < big; off += step, step = step * 3 % 40000 + 1)
		cr_assert_eq(tls_conn_write(c.t, up + off, off + step > big ? big - off : step), 0);
	for (size_t off = 0, step = 17; off < big; off += step, step = step * 5 % 60000 + 3)
		cr_assert_eq(tls_conn_write(s.t, down + off, off + step > big ? big - off : step),
			     0);
	pump(&c, &s, 1500);
	cr_assert_eq(s.got_len, big);
	cr_assert_eq(c.got_len, big);
	cr_assert(memcmp(s.got, up, big) == 0);
	cr_assert(memcmp(c.got, down, big) == 0);
	/* clean close: close_notify reaches the server as -EPIPE, later writes are refused */
	cr_assert_eq(tls_conn_shutdown(c.t), 0);
	cr_assert_eq(tls_conn_write(c.t, "x", 1), -EPIPE);
	pump(&c, &s, 4096);
	cr_assert_eq(s.last, -EPIPE);
	cr_assert_eq(tls_conn_fail_reason(s.t), TLS_FAIL_NONE);
	cr_assert_str_eq(tls_conn_error(s.t), "");
	sides_fini(&c, &s);
	free(up);
	free(down);
}

Test(tls, server_only_tls_needs_no_client_cert_and_ip_names_verify)
{
	struct tls_ctx *sc = server_ctx("server.pem", "server.key", false);
	struct tls_ctx *cc = client_ctx("ca.pem", "127.0.0.1", NULL, NULL);
	struct side c = {.t = tls_conn_new(cc)}, s = {.t = tls_conn_new(sc)};
	char name[64];

	cr_assert(!tls_ctx_mutual(sc));
	cr_assert_eq(tls_conn_start(c.t), 0);
	cr_assert_eq(tls_conn_write(s.t, "welcome", 7), 0); /* held on the server side too */
	pump(&c, &s, 4096);
	cr_assert(tls_conn_established(s.t));
	cr_assert_eq(c.got_len, 7);
	cr_assert_str_eq(tls_conn_peer_name(s.t, name, sizeof(name)), "");
	sides_fini(&c, &s);
	tls_ctx_free(sc);
	tls_ctx_free(cc);
}

/* Runs a handshake expected to fail; returns the two failure reasons. */
static void refused(struct tls_ctx *sc, struct tls_ctx *cc, enum tls_fail *cf, enum tls_fail *sf,
		    char *cerr, char *serr)
{
	struct side c = {.t = tls_conn_new(cc)}, s = {.t = tls_conn_new(sc)};

	cr_assert_eq(tls_conn_start(c.t), 0);
	tls_conn_write(c.t, "hello", 5);
	pump(&c, &s, 4096);
	*cf = tls_conn_fail_reason(c.t);
	*sf = tls_conn_fail_reason(s.t);
	snprintf(cerr, 160, "%s", tls_conn_error(c.t));
	snprintf(serr, 160, "%s", tls_conn_error(s.t));
	cr_assert_eq(s.got_len, 0, "no plaintext may pass a refused handshake");
	sides_fini(&c, &s);
	tls_ctx_free(sc);
	tls_ctx_free(cc);
}

Test(tls, client_without_certificate_is_refused_by_mutual_server)
{
	enum tls_fail cf, sf;
	char ce[160], se[160];

	refused(server_ctx("server.pem", "server.key", true),
		client_ctx("ca.pem", "localhost", NULL, NULL), &cf, &sf, ce, se);
	cr_assert_eq(sf, TLS_FAIL_NO_PEER_CERT, "%s", se);
	cr_assert(strstr(se, "no certificate"), "%s", se);
	cr_assert_eq(cf, TLS_FAIL_PEER_REFUSED, "%s", ce);
	cr_assert(strstr(ce, "certificate required"), "%s", ce);
}

Test(tls, client_certificate_from_another_ca_is_refused)
{
	enum tls_fail cf, sf;
	char ce[160], se[160];

	refused(server_ctx("server.pem", "server.key", true),
		client_ctx("ca.pem", "localhost", "other-client.pem", "other-client.key"), &cf, &sf,
		ce, se);
	cr_assert_eq(sf, TLS_FAIL_UNKNOWN_CA, "%s", se);
	cr_assert(strstr(se, "client certificate rejected"), "%s", se);
	cr_assert_eq(cf, TLS_FAIL_PEER_REFUSED, "%s", ce);
	cr_assert(strstr(ce, "unknown CA"), "%s", ce);
}

Test(tls, expired_client_certificate_is_refused)
{
	enum tls_fail cf, sf;
	char ce[160], se[160];

	refused(server_ctx("server.pem", "server.key", true),
		client_ctx("ca.pem", "localhost", "client-expired.pem", "client-expired.key"), &cf,
		&sf, ce, se);
	cr_assert_eq(sf, TLS_FAIL_EXPIRED, "%s", se);
	cr_assert(strstr(se, "expired"), "%s", se);
	cr_assert_eq(cf, TLS_FAIL_PEER_REFUSED, "%s", ce);
	cr_assert(strstr(ce, "expired"), "%s", ce);
}

Test(tls, server_from_another_ca_is_refused_by_the_client)
{
	enum tls_fail cf, sf;
	char ce[160], se[160];

	refused(server_ctx("other-server.pem", "other-server.key", false),
		client_ctx("ca.pem", "localhost", NULL, NULL), &cf, &sf, ce, se);
	cr_assert_eq(cf, TLS_FAIL_UNKNOWN_CA, "%s", ce);
	cr_assert(strstr(ce, "server certificate rejected"), "%s", ce);
	cr_assert_eq(sf, TLS_FAIL_PEER_REFUSED, "%s", se);
}

Test(tls, hostname_mismatch_is_refused_by_the_client)
{
	enum tls_fail cf, sf;
	char ce[160], se[160];

	refused(server_ctx("server.pem", "server.key", false),
		client_ctx("ca.pem", "controller.example.com", NULL, NULL), &cf, &sf, ce, se);
	cr_assert_eq(cf, TLS_FAIL_HOSTNAME, "%s", ce);
	cr_assert(strstr(ce, "controller.example.com"), "%s", ce);
	cr_assert_eq(sf, TLS_FAIL_PEER_REFUSED, "%s", se);
	refused(server_ctx("server.pem", "server.key", false),
		client_ctx("ca.pem", "10.1.2.3", NULL, NULL), &cf, &sf, ce, se);
	cr_assert_eq(cf, TLS_FAIL_HOSTNAME, "%s", ce);
}

Test(tls, plaintext_bytes_fail_as_not_tls)
{
	struct tls_ctx *sc = server_ctx("server.pem", "server.key", true);
	struct tls_conn *t = tls_conn_new(sc);
	/* a Tapio frame header and the start of a Hello, as a plaintext agent sends it */
	static const uint8_t frame[] = {0, 0, 0, 40, 0x0a, 0x26, 0x08, 0x01, 0x12, 0x05};
	uint8_t buf[256];

	cr_assert_eq(tls_conn_feed(t, frame, sizeof(frame)), 0);
	cr_assert_eq(tls_conn_read(t, buf, sizeof(buf)), -EPROTO);
	cr_assert_eq(tls_conn_fail_reason(t), TLS_FAIL_NOT_TLS, "%s", tls_conn_error(t));
	cr_assert_str_eq(tls_fail_name(tls_conn_fail_reason(t)), "not_tls");
	cr_assert_eq(tls_conn_read(t, buf, sizeof(buf)), -EPROTO, "failures are sticky");
	cr_assert_eq(tls_conn_write(t, "x", 1), -EPROTO);
	tls_conn_free(t);
	tls_ctx_free(sc);
}

Test(tls, context_errors_name_files_never_contents)
{
	char err[256] = "";
	struct tls_server_options so = {.cert_file = cert("server.pem"),
					.key_file = cert("client.key")};
	struct tls_client_options co = {.ca_file = cert("missing.pem"), .server_name = "x"};
	FILE *f;
	char key[512] = "";

	cr_assert_null(tls_ctx_new_server(&so, err, sizeof(err)));
	cr_assert(strstr(err, "does not match"), "%s", err);
	f = fopen(cert("client.key"), "r");
	cr_assert(f);
	cr_assert(fread(key, 1, sizeof(key) - 1, f) > 0);
	fclose(f);
	/* the base64 body of the key never shows up in an error */
	cr_assert_null(strstr(err, key + 30 > key + strlen(key) ? key : key + 30));
	cr_assert_null(tls_ctx_new_client(&co, err, sizeof(err)));
	cr_assert(strstr(err, "missing.pem"), "%s", err);
	co.ca_file = cert("ca.pem");
	co.cert_file = cert("client.pem");
	cr_assert_null(tls_ctx_new_client(&co, err, sizeof(err)));
	cr_assert(strstr(err, "needs its key"), "%s", err);
	so.key_file = NULL;
	cr_assert_null(tls_ctx_new_server(&so, err, sizeof(err)));
	cr_assert_str_eq(tls_fail_name(TLS_FAIL_EXPIRED), "expired");
	cr_assert_str_eq(tls_fail_name(TLS_FAIL__COUNT), "unknown");
}

/* ---- over a socketpair on one libuv loop ------------------------------------------------ */

struct end {
	uv_pipe_t pipe;
	struct tls_conn *t;
	uint8_t *got;
	size_t got_len, want;
	bool eof, closed;
	uint8_t rbuf[5000];
};

struct wr {
	uv_write_t req;
	char data[];
};

static void on_written(uv_write_t *req, int status)
{
	cr_assert_eq(status, 0);
	free(req);
}

static void flush_end(struct end *e)
{
	size_t n = tls_conn_output_pending(e->t);
	struct wr *w;
	uv_buf_t b;

	if (!n)
		return;
	w = malloc(sizeof(*w) + n);
	cr_assert(w);
	cr_assert_eq(tls_conn_output_read(e->t, w->data, n), n);
	b = uv_buf_init(w->data, (unsigned)n);
	cr_assert_eq(uv_write(&w->req, (uv_stream_t *)&e->pipe, &b, 1, on_written), 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct end *e = (struct end *)h;

	(void)suggested;
	*buf = uv_buf_init((char *)e->rbuf, 700); /* small reads: records span many */
}

static void on_end_closed(uv_handle_t *h)
{
	((struct end *)h)->closed = true;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct end *e = (struct end *)s;
	uint8_t plain[2048];
	ssize_t n;

	if (nread < 0) {
		uv_close((uv_handle_t *)s, on_end_closed);
		return;
	}
	cr_assert_eq(tls_conn_feed(e->t, buf->base, (size_t)nread), 0);
	while ((n = tls_conn_read(e->t, plain, sizeof(plain))) > 0) {
		cr_assert(e->got_len + (size_t)n <= e->want);
		memcpy(e->got + e->got_len, plain, (size_t)n);
		e->got_len += (size_t)n;
	}
	flush_end(e);
	if (n == -EPIPE) {
		/* peer closed cleanly: answer with our close_notify and close */
		e->eof = true;
		tls_conn_shutdown(e->t);
		flush_end(e);
		uv_close((uv_handle_t *)s, on_end_closed);
		return;
	}
	cr_assert_eq(n, 0, "%s", tls_conn_error(e->t));
	if (e->got_len == e->want && e->want && !tls_conn_output_pending(e->t) &&
	    e == (struct end *)e->pipe.data) {
		/* the client got everything: close cleanly */
		tls_conn_shutdown(e->t);
		flush_end(e);
	}
}

Test(tls, libuv_socketpair_round_trip)
{
	uv_loop_t loop;
	int fds[2];
	struct tls_ctx *sc = server_ctx("server.pem", "server.key", true);
	struct tls_ctx *cc =
	    client_ctx("ca.pem", "tapio-controller.tapio.svc", "client.pem", "client.key");
	struct end *c = calloc(1, sizeof(*c)), *s = calloc(1, sizeof(*s));
	size_t big = 1u << 20;
	uint8_t *up = malloc(big), *down = malloc(big);

	cr_assert(c && s && up && down);
	fill(up, big, 7);
	fill(down, big, 9);
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	cr_assert_eq(uv_pipe_init(&loop, &c->pipe, 0), 0);
	cr_assert_eq(uv_pipe_init(&loop, &s->pipe, 0), 0);
	cr_assert_eq(uv_pipe_open(&c->pipe, fds[0]), 0);
	cr_assert_eq(uv_pipe_open(&s->pipe, fds[1]), 0);
	c->pipe.data = c; /* marks the client end */
	s->pipe.data = NULL;
	c->t = tls_conn_new(cc);
	s->t = tls_conn_new(sc);
	c->got = malloc(big);
	s->got = malloc(big);
	c->want = s->want = big;
	cr_assert_eq(uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read), 0);
	cr_assert_eq(uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read), 0);
	cr_assert_eq(tls_conn_start(c->t), 0);
	for (size_t off = 0, step = 100; off < big; off += step, step = step * 7 % 50000 + 1) {
		size_t n = off + step > big ? big - off : step;

		cr_assert_eq(tls_conn_write(c->t, up + off, n), 0);
		cr_assert_eq(tls_conn_write(s->t, down + off, n), 0);
	}
	flush_end(c);
	flush_end(s);
	cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	cr_assert(c->closed && s->closed);
	cr_assert_eq(s->got_len, big);
	cr_assert_eq(c->got_len, big);
	cr_assert(memcmp(s->got, up, big) == 0);
	cr_assert(memcmp(c->got, down, big) == 0);
	cr_assert(s->eof, "the server saw close_notify");
	cr_assert_eq(uv_loop_close(&loop), 0);
	tls_conn_free(c->t);
	tls_conn_free(s->t);
	tls_ctx_free(sc);
	tls_ctx_free(cc);
	free(c->got);
	free(s->got);
	free(c);
	free(s);
	free(up);
	free(down);
}

/* ---- tokens ------------------------------------------------------------------------------ */

Test(tls, token_compare_and_token_file)
{
	char path[] = "/tmp/tapio-tls-token-XXXXXX", buf[TLS_TOKEN_MAX + 1], err[256];
	int fd;

	cr_assert(tls_token_equal("abc", "abc"));
	cr_assert(!tls_token_equal("abd", "abc"));
	cr_assert(!tls_token_equal("ab", "abc"));
	cr_assert(!tls_token_equal("abcd", "abc"));
	cr_assert(!tls_token_equal(NULL, "abc"));
	cr_assert(tls_token_equal(NULL, ""));
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "  s3cret token \n\nsecond line\n", 29), 29);
	close(fd);
	cr_assert_eq(tls_read_token_file(path, buf, sizeof(buf), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(buf, "s3cret token");
	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_eq(write(fd, " \n", 2), 2);
	close(fd);
	cr_assert_eq(tls_read_token_file(path, buf, sizeof(buf), err, sizeof(err)), -1);
	cr_assert(strstr(err, "is empty"), "%s", err);
	cr_assert_eq(tls_read_token_file(path, buf, 4, err, sizeof(err)), -1);
	unlink(path);
	cr_assert_eq(tls_read_token_file(path, buf, sizeof(buf), err, sizeof(err)), -1);
	cr_assert(strstr(err, path), "%s", err);
}
