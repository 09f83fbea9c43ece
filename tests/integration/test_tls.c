/*
 * Transport security against the real tapio-controller (docs/security.md): the agent's
 * controller client (in this process, on its own libuv loop) over TLS 1.3 with mutual
 * authentication delivers and gets Acks; clients without a certificate, with one from another
 * CA, with an expired one, with a bad token, and plaintext bytes are refused with a clear
 * reason, counted, and the controller keeps serving; neither the token nor key contents reach
 * the controller's log. The query API's bearer token: 401 without, 200 with. The agent's
 * config file carries the same settings under controller:.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>
#include <uv.h>

#include "agent/agent_config.h"
#include "agent/client/client.h"
#include "common/log.h"
#include "controller_harness.h"

#define CERTS "/tmp/tapio-test-tls-integration"
#define TOKEN "tok-5ecret-Zq9xW2"

static char pbuf[16][300];
static int pnext;

static const char *cert(const char *name)
{
	char *p = pbuf[pnext++ % 16];

	snprintf(p, 300, "%s/%s", CERTS, name);
	return p;
}

static void gen_certs(void)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "%s/scripts/gen-dev-certs.sh %s >/dev/null", TAPIO_SOURCE_DIR,
		 CERTS);
	cr_assert_eq(system(cmd), 0, "gen-dev-certs.sh failed");
	log_set_level(LOG_ERROR);
}

TestSuite(tls_integration, .init = gen_certs, .timeout = 120);

/* Starts a controller with mutual TLS and the shared token. */
static void start_mtls(struct ctl *c, const char *name)
{
	ctl_mkroot(c, name);
	ctl_start(c, "--tls-cert", cert("server.pem"), "--tls-key", cert("server.key"),
		  "--tls-client-ca", cert("ca.pem"), "--token", TOKEN, "--heartbeat-interval", "1s",
		  "--idle-timeout", "10s", NULL);
	cr_assert(ctl_log_has(c, "(TLS 1.3, client certificates required)"));
}

/* ---- one in-process agent client --------------------------------------------------------- */

struct run {
	uv_loop_t loop;
	uv_timer_t poll;
	struct client *cl;
	struct client_stats st;
	uint64_t acked, want;
	uint64_t deadline_ms;
	bool (*done)(struct run *r);
	bool closed;
};

static void on_acked(void *arg, uint64_t seq, uint32_t count)
{
	struct run *r = arg;

	(void)seq;
	r->acked += count;
}

static void on_closed(void *arg)
{
	((struct run *)arg)->closed = true;
}

static void on_poll(uv_timer_t *t)
{
	struct run *r = t->data;

	client_counters(r->cl, &r->st);
	if (r->done(r) || uv_now(&r->loop) >= r->deadline_ms) {
		uv_close((uv_handle_t *)&r->poll, NULL);
		client_close(r->cl, on_closed, r);
	}
}

static bool all_acked(struct run *r)
{
	return r->acked >= r->want;
}

static bool tls_failed(struct run *r)
{
	return r->st.tls_failures > 0;
}

static bool auth_refused(struct run *r)
{
	return r->st.errors_received > 0;
}

static bool send_failed(struct run *r)
{
	return r->st.send_failures > 0;
}

/*
 * Runs one client against port with the given TLS material (NULL = none), submits n
 * occurrences and runs until done(r) or 8 s. Fills r->st with the final counters.
 */
static void run_client(struct run *r, int port, const char *ca, const char *crt, const char *key,
		       const char *name, const char *token, uint64_t n, bool (*done)(struct run *))
{
	struct client_options o = {0};
	char err[300] = "";

	memset(r, 0, sizeof(*r));
	cr_assert_eq(uv_loop_init(&r->loop), 0);
	o.host = "127.0.0.1";
	o.port = (uint16_t)port;
	o.agent_id = "tls-test-agent";
	o.node = "tls-node";
	o.cluster = "test";
	o.token = token;
	o.tls_ca = ca;
	o.tls_cert = crt;
	o.tls_key = key;
	o.tls_server_name = name;
	o.batch_max_ms = 20;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 200;
	o.on_acked = on_acked;
	o.arg = r;
	r->cl = client_new(&r->loop, &o, err, sizeof(err));
	cr_assert(r->cl, "client_new: %s", err);
	r->want = n;
	r->done = done;
	for (uint64_t i = 0; i < n; i++) {
		struct tapio_occurrence occ;

		make_occ(&occ, i);
		cr_assert_eq(client_submit(r->cl, &occ), 0);
	}
	cr_assert_eq(client_start(r->cl), 0);
	r->deadline_ms = uv_now(&r->loop) + 8000;
	uv_timer_init(&r->loop, &r->poll);
	r->poll.data = r;
	uv_timer_start(&r->poll, on_poll, 20, 20);
	uv_run(&r->loop, UV_RUN_DEFAULT);
	cr_assert(r->closed);
	cr_assert_eq(uv_loop_close(&r->loop), 0);
}

/* Asks the controller for its status (SIGUSR1) and returns the log afterwards (free it). */
static char *status_log(struct ctl *c)
{
	char *l = ctl_read_log(c);
	size_t before = strlen(l);

	free(l);
	kill(c->pid, SIGUSR1);
	for (int i = 0; i < 300; i++) {
		usleep(10000);
		l = ctl_read_log(c);
		if (strlen(l) > before && strstr(l + before, "\"tls_handshakes\""))
			return l;
		free(l);
	}
	cr_assert_fail("no status JSON after SIGUSR1");
	return NULL;
}

static void assert_json_has(const char *log, const char *needle)
{
	cr_assert(strstr(log, needle), "status lacks %s", needle);
}

/* Neither the token nor any line of a key file may reach the controller's log. */
static void assert_no_secrets(struct ctl *c)
{
	char *l = ctl_read_log(c);
	const char *keys[] = {"server.key", "client.key", "ca.key"};

	cr_assert_null(strstr(l, TOKEN), "the token is in the controller log");
	for (size_t k = 0; k < 3; k++) {
		FILE *f = fopen(cert(keys[k]), "r");
		char line[256];

		cr_assert(f);
		while (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = '\0';
			if (strlen(line) > 16 && strncmp(line, "-----", 5) != 0)
				cr_assert_null(strstr(l, line), "key material in the log");
		}
		fclose(f);
	}
	free(l);
}

Test(tls_integration, mutual_tls_delivers_and_acks)
{
	struct ctl c;
	struct run r;
	char *l;

	start_mtls(&c, "tls-ok");
	run_client(&r, c.port, cert("ca.pem"), cert("client.pem"), cert("client.key"), "localhost",
		   TOKEN, 2000, all_acked);
	cr_assert_eq(r.acked, 2000, "acked %llu of 2000", (unsigned long long)r.acked);
	cr_assert_eq(r.st.tls_failures, 0);
	cr_assert_eq(r.st.errors_received, 0);
	/* the default server name is the host: 127.0.0.1 is in the certificate's SANs */
	run_client(&r, c.port, cert("ca.pem"), cert("client.pem"), cert("client.key"), NULL, TOKEN,
		   10, all_acked);
	cr_assert_eq(r.acked, 10);
	l = status_log(&c);
	assert_json_has(l, "\"tls\":true");
	assert_json_has(l, "\"tls_handshakes\":2");
	assert_json_has(l, "\"tls_handshake_failures\":0");
	free(l);
	cr_assert_eq(ctl_stop(&c, SIGTERM), 0);
	cr_assert_eq(ctl_dump_count(&c, ""), 2010, "everything acked is stored");
	assert_no_secrets(&c);
	ctl_rmroot(&c);
}

Test(tls_integration, refused_certificates_are_counted_and_logged_with_reasons)
{
	struct ctl c;
	struct run r;
	char *l;

	start_mtls(&c, "tls-refused");
	/* no client certificate */
	run_client(&r, c.port, cert("ca.pem"), NULL, NULL, "localhost", TOKEN, 5, tls_failed);
	cr_assert_eq(r.acked, 0);
	cr_assert_geq(r.st.tls_failures, 1);
	/* a certificate from another CA */
	run_client(&r, c.port, cert("ca.pem"), cert("other-client.pem"), cert("other-client.key"),
		   "localhost", TOKEN, 5, tls_failed);
	cr_assert_eq(r.acked, 0);
	cr_assert_geq(r.st.tls_failures, 1);
	/* an expired certificate */
	run_client(&r, c.port, cert("ca.pem"), cert("client-expired.pem"),
		   cert("client-expired.key"), "localhost", TOKEN, 5, tls_failed);
	cr_assert_eq(r.acked, 0);
	cr_assert_geq(r.st.tls_failures, 1);
	/* the agent does not trust the controller's CA, or the name is wrong: refused client-side */
	run_client(&r, c.port, cert("other-ca.pem"), cert("client.pem"), cert("client.key"),
		   "localhost", TOKEN, 5, tls_failed);
	cr_assert_eq(r.acked, 0);
	run_client(&r, c.port, cert("ca.pem"), cert("client.pem"), cert("client.key"),
		   "wrong.example", TOKEN, 5, tls_failed);
	cr_assert_eq(r.acked, 0);
	/* the controller still serves a good agent */
	run_client(&r, c.port, cert("ca.pem"), cert("client.pem"), cert("client.key"), "localhost",
		   TOKEN, 100, all_acked);
	cr_assert_eq(r.acked, 100);
	cr_assert(ctl_log_has(&c, "TLS handshake refused (no_peer_cert): client sent no "
				  "certificate"));
	cr_assert(ctl_log_has(&c, "TLS handshake refused (unknown_ca): client certificate "
				  "rejected"));
	cr_assert(ctl_log_has(&c, "TLS handshake refused (expired): client certificate rejected: "
				  "certificate has expired"));
	l = status_log(&c);
	assert_json_has(l, "\"no_peer_cert\":1");
	assert_json_has(l, "\"unknown_ca\":1");
	assert_json_has(l, "\"expired\":1");
	free(l);
	cr_assert(ctl_alive(&c));
	cr_assert_eq(ctl_stop(&c, SIGTERM), 0);
	assert_no_secrets(&c);
	ctl_rmroot(&c);
}

Test(tls_integration, bad_token_over_tls_gets_auth_error)
{
	struct ctl c;
	struct run r;
	char *l;

	start_mtls(&c, "tls-token");
	run_client(&r, c.port, cert("ca.pem"), cert("client.pem"), cert("client.key"), "localhost",
		   "not-the-token", 5, auth_refused);
	cr_assert_eq(r.acked, 0);
	cr_assert_geq(r.st.errors_received, 1);
	cr_assert_eq(r.st.tls_failures, 0, "TLS itself succeeded");
	run_client(&r, c.port, cert("ca.pem"), cert("client.pem"), cert("client.key"), "localhost",
		   NULL, 5, auth_refused);
	cr_assert_geq(r.st.errors_received, 1);
	cr_assert(ctl_log_has(&c, "AUTH: wrong or missing token"));
	l = status_log(&c);
	assert_json_has(l, "\"AUTH\":2");
	free(l);
	cr_assert_eq(ctl_stop(&c, SIGTERM), 0);
	assert_no_secrets(&c);
	ctl_rmroot(&c);
}

Test(tls_integration, plaintext_client_to_tls_port_fails_cleanly)
{
	struct ctl c;
	struct run r;
	uint8_t buf[4096];
	ssize_t n, total = 0;
	int fd;
	char *l, *nt;

	start_mtls(&c, "tls-plain");
	fd = cli_connect(c.port);
	{
		Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
		Tapio__V1__Hello h = TAPIO__V1__HELLO__INIT;

		h.wire_version = CODEC_WIRE_VERSION;
		h.agent_id = "plain";
		h.node = "plain";
		h.token = TOKEN;
		f.msg_case = TAPIO__V1__FRAME__MSG_HELLO;
		f.hello = &h;
		cr_assert_eq(cli_send(fd, &f), 0);
	}
	/* the controller answers with a TLS alert at most and closes: EOF, never a Welcome */
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += n;
	cr_assert_geq(n, 0, "read: %s", strerror(errno));
	cr_assert_lt(total, 64, "only an alert may come back");
	close(fd);
	/* a plaintext agent client gets no further */
	run_client(&r, c.port, NULL, NULL, NULL, NULL, TOKEN, 5, send_failed);
	cr_assert_eq(r.acked, 0);
	cr_assert_eq(r.st.connects, 0);
	/* a TLS client to a plaintext controller fails as not_tls on its side */
	{
		struct ctl p;

		ctl_mkroot(&p, "tls-plain-ctl");
		ctl_start(&p, "--token", TOKEN, NULL);
		cr_assert(ctl_log_has(&p, "ingest link is PLAINTEXT with a token"));
		run_client(&r, p.port, cert("ca.pem"), cert("client.pem"), cert("client.key"),
			   "localhost", TOKEN, 5, tls_failed);
		cr_assert_geq(r.st.tls_failures, 1);
		cr_assert_eq(r.acked, 0);
		cr_assert_eq(ctl_stop(&p, SIGTERM), 0);
		ctl_rmroot(&p);
	}
	/* and the TLS controller keeps serving */
	run_client(&r, c.port, cert("ca.pem"), cert("client.pem"), cert("client.key"), "localhost",
		   TOKEN, 50, all_acked);
	cr_assert_eq(r.acked, 50);
	cr_assert(ctl_log_has(&c, "TLS handshake refused (not_tls)"));
	l = status_log(&c);
	nt = strstr(l, "\"not_tls\":");
	cr_assert(nt);
	cr_assert_geq(atoi(nt + strlen("\"not_tls\":")), 2, "the raw socket and the client");
	free(l);
	cr_assert_eq(ctl_stop(&c, SIGTERM), 0);
	ctl_rmroot(&c);
}

Test(tls_integration, server_only_tls_with_token_file_and_plaintext_flag)
{
	struct ctl c;
	struct run r;
	char tf[400];
	FILE *f;

	ctl_mkroot(&c, "tls-server-only");
	snprintf(tf, sizeof(tf), "%s/token", c.dir);
	f = fopen(tf, "w");
	cr_assert(f);
	fprintf(f, "  %s\n", TOKEN);
	fclose(f);
	ctl_start(&c, "--tls-cert", cert("server.pem"), "--tls-key", cert("server.key"),
		  "--token-file", tf, NULL);
	cr_assert(ctl_log_has(&c, "(TLS 1.3)"));
	cr_assert(!ctl_log_has(&c, "PLAINTEXT"));
	run_client(&r, c.port, cert("ca.pem"), NULL, NULL, "tapio-controller", TOKEN, 30,
		   all_acked);
	cr_assert_eq(r.acked, 30);
	cr_assert_eq(ctl_stop(&c, SIGTERM), 0);
	assert_no_secrets(&c);
	/* --plaintext: on purpose, no warning */
	ctl_start(&c, "--plaintext", NULL);
	cr_assert(ctl_log_has(&c, "(plaintext)"));
	cr_assert(!ctl_log_has(&c, "PLAINTEXT"));
	cr_assert_eq(ctl_stop(&c, SIGTERM), 0);
	ctl_rmroot(&c);
}

Test(tls_integration, bad_tls_flags_fail_at_start)
{
	struct ctl c;
	char cmd[1200];

	ctl_mkroot(&c, "tls-flags");
	snprintf(cmd, sizeof(cmd), "%s --data-dir %s --tls-cert %s 2>%s", CTL_BIN, c.data,
		 cert("server.pem"), c.log);
	cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
	cr_assert(ctl_log_has(&c, "--tls-cert and --tls-key go together"));
	snprintf(cmd, sizeof(cmd), "%s --data-dir %s --http off --tls-cert %s --tls-key %s 2>%s",
		 CTL_BIN, c.data, cert("server.pem"), cert("client.key"), c.log);
	cr_assert_eq(WEXITSTATUS(system(cmd)), 1);
	cr_assert(ctl_log_has(&c, "does not match certificate"));
	ctl_rmroot(&c);
}

/* ---- query API bearer token -------------------------------------------------------------- */

static int http_status(int port, const char *auth)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	char req[512], resp[1024];
	int fd = socket(AF_INET, SOCK_STREAM, 0), code = -1;
	ssize_t n, got = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req),
		 "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n%s%s%sConnection: close\r\n\r\n",
		 auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while ((n = read(fd, resp + got, sizeof(resp) - 1 - (size_t)got)) > 0)
		got += n;
	resp[got] = '\0';
	close(fd);
	sscanf(resp, "HTTP/1.1 %d", &code);
	if (code == 401)
		cr_assert(strstr(resp, "\"code\":\"UNAUTHORIZED\""), "%s", resp);
	return code;
}

Test(tls_integration, http_api_bearer_token)
{
	struct ctl c;
	char *l, *p;
	int port;

	ctl_mkroot(&c, "tls-http");
	ctl_start(&c, "--http", "127.0.0.1:0", "--http-token", TOKEN, "--plaintext", NULL);
	l = ctl_read_log(&c);
	p = strstr(l, "http API listening on 127.0.0.1:");
	cr_assert(p);
	port = atoi(p + strlen("http API listening on 127.0.0.1:"));
	free(l);
	cr_assert(ctl_log_has(&c, "bearer token required"));
	cr_assert_eq(http_status(port, NULL), 401);
	cr_assert_eq(http_status(port, "Bearer wrong"), 401);
	cr_assert_eq(http_status(port, "Basic " TOKEN), 401);
	cr_assert_eq(http_status(port, "Bearer " TOKEN), 200);
	cr_assert_eq(http_status(port, "bearer " TOKEN), 200);
	cr_assert_eq(ctl_stop(&c, SIGTERM), 0);
	cr_assert(ctl_log_has(&c, "3 requests unauthorized"));
	assert_no_secrets(&c);
	ctl_rmroot(&c);
}

Test(tls_integration, https_api_with_curl)
{
	struct ctl c;
	char cmd[1200], *l, *p;
	int port;

	if (system("command -v curl >/dev/null 2>&1") != 0) {
		cr_skip_test("curl not installed: HTTPS query API not exercised");
		return;
	}
	ctl_mkroot(&c, "tls-https");
	ctl_start(&c, "--http", "127.0.0.1:0", "--http-token", TOKEN, "--http-tls-cert",
		  cert("server.pem"), "--http-tls-key", cert("server.key"), "--plaintext", NULL);
	l = ctl_read_log(&c);
	p = strstr(l, "http API listening on 127.0.0.1:");
	cr_assert(p);
	port = atoi(p + strlen("http API listening on 127.0.0.1:"));
	free(l);
	cr_assert(ctl_log_has(&c, "(HTTPS, TLS 1.3, bearer token required)"));
	snprintf(cmd, sizeof(cmd),
		 "test \"$(curl -s -o /dev/null -w '%%{http_code}' --cacert %s "
		 "https://localhost:%d/v1/status)\" = 401",
		 cert("ca.pem"), port);
	cr_assert_eq(system(cmd), 0, "HTTPS without a token is not 401");
	snprintf(cmd, sizeof(cmd),
		 "test \"$(curl -s -o /dev/null -w '%%{http_code}' --cacert %s -H "
		 "'Authorization: Bearer %s' https://localhost:%d/v1/status)\" = 200",
		 cert("ca.pem"), TOKEN, port);
	cr_assert_eq(system(cmd), 0, "HTTPS with the token is not 200");
	cr_assert_eq(ctl_stop(&c, SIGTERM), 0);
	ctl_rmroot(&c);
}

/* ---- agent configuration ----------------------------------------------------------------- */

Test(tls_integration, agent_config_controller_tls_keys)
{
	struct agent_config ac;
	char yaml[1200], tf[] = "/tmp/tapio-tls-token-XXXXXX", yf[] = "/tmp/tapio-tls-yaml-XXXXXX";
	char err[600] = "";
	char *argv[] = {"tapio-agent",	     "--config",	 yf,
			"--tls-server-name", "tapio-controller", NULL};
	char *bad[] = {"tapio-agent", "--sink", "stdout", "--tls-cert", "/x.pem", NULL};
	FILE *out = fopen("/dev/null", "w");
	int fd = mkstemp(tf);

	cr_assert(fd >= 0 && write(fd, TOKEN "\n", strlen(TOKEN) + 1) > 0);
	close(fd);
	fd = mkstemp(yf);
	cr_assert(fd >= 0);
	snprintf(yaml, sizeof(yaml),
		 "sinks: [controller]\n"
		 "controller:\n"
		 "  address: tapio-controller.tapio.svc:7070\n"
		 "  tls_ca: %s\n"
		 "  tls_cert: %s\n"
		 "  tls_key: %s\n"
		 "  tls_server_name: ignored-by-the-flag\n"
		 "  token_file: %s\n",
		 cert("ca.pem"), cert("client.pem"), cert("client.key"), tf);
	cr_assert(write(fd, yaml, strlen(yaml)) > 0);
	close(fd);
	cr_assert_eq(agent_config_parse(5, argv, &ac, out, err, sizeof(err)), AGENT_CONFIG_RUN,
		     "%s", err);
	cr_assert_str_eq(ac.tls_ca, cert("ca.pem"));
	cr_assert_str_eq(ac.tls_cert, cert("client.pem"));
	cr_assert_str_eq(ac.tls_key, cert("client.key"));
	cr_assert_str_eq(ac.tls_server_name, "tapio-controller");
	cr_assert_str_eq(ac.token, TOKEN);
	cr_assert_neq(agent_config_parse(5, bad, &ac, out, err, sizeof(err)), AGENT_CONFIG_RUN);
	cr_assert(strstr(err, "need --tls-ca"), "%s", err);
	/* an unknown key under controller: is still refused with its line */
	fd = open(yf, O_WRONLY | O_TRUNC);
	cr_assert(write(fd, "controller:\n  tls_cafile: x\n", 28) == 28);
	close(fd);
	cr_assert_neq(agent_config_parse(3, argv, &ac, out, err, sizeof(err)), AGENT_CONFIG_RUN);
	cr_assert(strstr(err, "tls_cafile"), "%s", err);
	fclose(out);
	unlink(tf);
	unlink(yf);
}
