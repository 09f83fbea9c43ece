/*
 * The controller's ingest path end to end: a real tapio-controller process, raw loopback
 * sockets speaking the wire protocol, and the data directory inspected with --dump after the
 * Acks (after a SIGKILL, so only what was durable can be there).
 */
#include <pthread.h>

#include "controller/controller.h"
#include "controller_harness.h"

static struct ctl ctl;

static void setup(void)
{
	raise_nofile(20000);
}

static void teardown(void)
{
	if (ctl.pid > 0)
		ctl_stop(&ctl, SIGKILL);
	if (ctl.dir[0])
		ctl_rmroot(&ctl);
}

TestSuite(ingest, .init = setup, .fini = teardown);

Test(ingest, hello_welcome_batches_acked_only_when_durable, .timeout = 60)
{
	Tapio__V1__Frame *w;
	int fd;

	ctl_mkroot(&ctl, "durable");
	ctl_start(&ctl, "--fsync", "always", "--controller-id", "ctl-test", NULL);
	fd = cli_connect(ctl.port);
	w = cli_hello(fd, "agent-1", 77);
	cr_assert_str_eq(w->welcome->controller_id, "ctl-test");
	cr_assert_eq(w->welcome->wire_version, CODEC_WIRE_VERSION);
	cr_assert(w->welcome->session_accepted);
	cr_assert_eq(w->welcome->session_id, 77);
	cr_assert_not(w->welcome->session_resumed);
	cr_assert_eq(w->welcome->last_acked_sequence, 0);
	cr_assert_gt(w->welcome->heartbeat_interval_ms, 0);
	cr_assert_eq(w->welcome->max_frame_bytes, CODEC_DEFAULT_MAX_FRAME);
	tapio__v1__frame__free_unpacked(w, NULL);

	cr_assert_eq(cli_batch(fd, 77, 1, 3), 0);
	cr_assert_eq(cli_expect_ack(fd, 77), 1);
	cr_assert_eq(cli_batch(fd, 77, 2, 2), 0);
	cr_assert_eq(cli_expect_ack(fd, 77), 2);
	/* Acked means durable: a crash right now must not lose a single occurrence. */
	ctl_stop(&ctl, SIGKILL);
	close(fd);
	cr_assert_eq(ctl_dump_count(&ctl, NULL), 5);
	cr_assert_eq(ctl_dump_count(&ctl, "--limit 2"), 2);
	cr_assert_eq(ctl_dump_count(&ctl, "--type kernel.network.connection_refused"), 5);
	cr_assert_eq(ctl_dump_count(&ctl, "--type kernel.container.oom_kill"), 0);
}

Test(ingest, duplicate_batch_acked_and_stored_once, .timeout = 60)
{
	Tapio__V1__Frame *w;
	int fd;

	ctl_mkroot(&ctl, "dup");
	ctl_start(&ctl, "--fsync", "never", NULL);
	fd = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(fd, "agent-dup", 5), NULL);
	cr_assert_eq(cli_batch(fd, 5, 1, 4), 0);
	cr_assert_eq(cli_batch(fd, 5, 2, 4), 0);
	cli_wait_ack(fd, 5, 2);
	close(fd);

	/* the agent lost the Ack and reconnects: the resend is recognised */
	fd = cli_connect(ctl.port);
	w = cli_hello(fd, "agent-dup", 5);
	cr_assert(w->welcome->session_resumed);
	cr_assert_eq(w->welcome->last_acked_sequence, 2);
	tapio__v1__frame__free_unpacked(w, NULL);
	cr_assert_eq(cli_batch(fd, 5, 2, 4), 0);
	cr_assert_eq(cli_expect_ack(fd, 5), 2);
	cr_assert_eq(cli_batch(fd, 5, 3, 1), 0);
	cr_assert_eq(cli_expect_ack(fd, 5), 3);
	close(fd);
	cr_assert_eq(WEXITSTATUS(ctl_stop(&ctl, SIGTERM)), 0);
	cr_assert_eq(ctl_dump_count(&ctl, NULL), 9);
	cr_assert(ctl_log_has(&ctl, "duplicates=1 "), "duplicate not counted");
}

Test(ingest, resend_after_restart_recognised, .timeout = 60)
{
	Tapio__V1__Frame *w;
	int fd, status;

	ctl_mkroot(&ctl, "restart");
	ctl_start(&ctl, NULL);
	fd = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(fd, "agent-r", 900), NULL);
	cr_assert_eq(cli_batch(fd, 900, 1, 2), 0);
	cr_assert_eq(cli_expect_ack(fd, 900), 1);
	close(fd);
	status = ctl_stop(&ctl, SIGTERM);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unclean exit %d", status);
	cr_assert(ctl_log_has(&ctl, "stopped cleanly"));

	ctl_start(&ctl, NULL);
	fd = cli_connect(ctl.port);
	w = cli_hello(fd, "agent-r", 900);
	cr_assert(w->welcome->session_resumed, "restarted controller forgot the session");
	cr_assert_eq(w->welcome->last_acked_sequence, 1);
	tapio__v1__frame__free_unpacked(w, NULL);
	cr_assert_eq(cli_batch(fd, 900, 1, 2), 0); /* resend of what was acked before */
	cr_assert_eq(cli_expect_ack(fd, 900), 1);
	cr_assert_eq(cli_batch(fd, 900, 2, 3), 0);
	cr_assert_eq(cli_expect_ack(fd, 900), 2);
	close(fd);
	ctl_stop(&ctl, SIGKILL);
	cr_assert_eq(ctl_dump_count(&ctl, NULL), 5);
}

Test(ingest, gaps_accepted_invalid_occurrences_dropped, .timeout = 60)
{
	int fd;

	ctl_mkroot(&ctl, "gap");
	ctl_start(&ctl, "--fsync", "never", NULL);
	fd = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(fd, "agent-g", 3), NULL);
	cr_assert_eq(cli_batch(fd, 3, 1, 1), 0);
	cr_assert_eq(cli_expect_ack(fd, 3), 1);
	cr_assert_eq(cli_batch(fd, 3, 5, 1), 0); /* the agent dropped 2..4 under pressure */
	cr_assert_eq(cli_expect_ack(fd, 3), 5);
	cr_assert_eq(cli_batch_ex(fd, 3, 6, 2, 1), 0); /* one invalid occurrence among three */
	cr_assert_eq(cli_expect_ack(fd, 3), 6);
	close(fd);
	cr_assert_eq(WEXITSTATUS(ctl_stop(&ctl, SIGTERM)), 0);
	cr_assert_eq(ctl_dump_count(&ctl, NULL), 4);
	cr_assert(ctl_log_has(&ctl, "gaps=1 "));
	cr_assert(ctl_log_has(&ctl, "invalid=1 "));
	/* the reason is the validator's, also when the fast path kept only a summary */
	cr_assert(ctl_log_has(&ctl, "dropped invalid occurrence: context.node not set"));
}

Test(ingest, heartbeat_and_config_frames_accepted, .timeout = 60)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__Heartbeat hb = TAPIO__V1__HEARTBEAT__INIT;
	Tapio__V1__Counters cnt = TAPIO__V1__COUNTERS__INIT;
	Tapio__V1__ConfigApplied ca = TAPIO__V1__CONFIG_APPLIED__INIT;
	int fd;

	ctl_mkroot(&ctl, "hb");
	ctl_start(&ctl, "--fsync", "never", NULL);
	fd = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(fd, "agent-hb", 8), NULL);
	cnt.events = 42;
	hb.counters = &cnt;
	hb.uptime_ms = 1000;
	f.msg_case = TAPIO__V1__FRAME__MSG_HEARTBEAT;
	f.heartbeat = &hb;
	cr_assert_eq(cli_send(fd, &f), 0);
	ca.generation = 3;
	ca.hash = "sha256:00";
	f.msg_case = TAPIO__V1__FRAME__MSG_CONFIG_APPLIED;
	f.config_applied = &ca;
	cr_assert_eq(cli_send(fd, &f), 0);
	/* the connection is still healthy: a batch is acked */
	cr_assert_eq(cli_batch(fd, 8, 1, 1), 0);
	cr_assert_eq(cli_expect_ack(fd, 8), 1);
	/* SIGUSR1 logs the status JSON, with what the heartbeat and ConfigApplied reported */
	kill(ctl.pid, SIGUSR1);
	for (int i = 0; i < 500 && !ctl_log_has(&ctl, "\"generation\":3,\"hash\":\"sha256:00\"");
	     i++)
		usleep(10000);
	cr_assert(ctl_log_has(&ctl, "\"events\":42"), "heartbeat counters not in the status");
	cr_assert(ctl_log_has(&ctl, "\"generation\":3,\"hash\":\"sha256:00\""));
	close(fd);
	cr_assert_eq(WEXITSTATUS(ctl_stop(&ctl, SIGTERM)), 0);
}

/* Opens n connections that each say Hello (distinct agents) and read their Welcome. */
static void open_idle_agents(int *fds, int n, int port, const char *prefix)
{
	for (int i = 0; i < n; i++) {
		char id[32];

		snprintf(id, sizeof(id), "%s-%04d", prefix, i);
		fds[i] = cli_connect(port);
		tapio__v1__frame__free_unpacked(cli_hello(fds[i], id, (uint64_t)i + 1), NULL);
	}
}

Test(ingest, thousand_idle_agents_cost_under_16k_each, .timeout = 120)
{
	enum { N = 1000 };
	static int fds[N];
	long before, after;
	double per_conn;
	int good;

	ctl_mkroot(&ctl, "idle");
	ctl_start(&ctl, "--fsync", "never", NULL);
	good = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(good, "good", 1), NULL);
	cr_assert_eq(cli_batch(good, 1, 1, 5), 0);
	cr_assert_eq(cli_expect_ack(good, 1), 1);
	/* warm up allocator arenas with a first round of connections, then measure */
	open_idle_agents(fds, 50, ctl.port, "warm");
	for (int i = 0; i < 50; i++)
		close(fds[i]);
	usleep(200000);
	before = ctl_rss_kb(&ctl);
	open_idle_agents(fds, N, ctl.port, "idle");
	usleep(200000);
	after = ctl_rss_kb(&ctl);
	per_conn = (double)(after - before) * 1024.0 / N;
	fprintf(stderr, "controller VmRSS %ld kB -> %ld kB with %d idle agents: %.0f bytes each\n",
		before, after, N, per_conn);
	cr_assert_lt(per_conn, 16384.0, "idle agent costs %.0f bytes", per_conn);
	/* the good client is still served while the idle ones are connected */
	for (uint64_t seq = 2; seq <= 5; seq++) {
		cr_assert_eq(cli_batch(good, 1, seq, 10), 0);
		cr_assert_eq(cli_expect_ack(good, 1), seq);
	}
	for (int i = 0; i < N; i++)
		close(fds[i]);
	close(good);
	cr_assert_eq(WEXITSTATUS(ctl_stop(&ctl, SIGTERM)), 0);
}

Test(ingest, peer_that_never_reads_is_disconnected, .timeout = 120)
{
	int slow, good, r = 0;
	uint64_t seq;

	ctl_mkroot(&ctl, "slow");
	ctl_start(&ctl, "--fsync", "never", "--max-output-bytes", "4k", NULL);
	good = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(good, "good", 1), NULL);
	slow = cli_connect_buf(ctl.port, 1024);
	tapio__v1__frame__free_unpacked(cli_hello(slow, "slow", 2), NULL);
	/* never read the Acks: the controller's socket buffer fills, then its output cap */
	for (seq = 1; seq <= 200000; seq++) {
		r = cli_batch(slow, 2, seq, 0);
		if (r < 0)
			break;
		if (seq % 5000 == 0) {
			/* the good client is served meanwhile */
			cr_assert_eq(cli_batch(good, 1, seq / 5000, 1), 0);
			cr_assert_eq(cli_expect_ack(good, 1), seq / 5000);
		}
	}
	cr_assert_lt(r, 0, "the controller kept a peer that never reads (%llu batches)",
		     (unsigned long long)seq);
	cr_assert(r == -EPIPE || r == -ECONNRESET, "send: %s", strerror(-r));
	close(slow);
	cr_assert_eq(cli_batch(good, 1, 1000, 1), 0);
	cr_assert_eq(cli_expect_ack(good, 1), 1000);
	close(good);
	cr_assert(ctl_alive(&ctl));
	cr_assert_eq(WEXITSTATUS(ctl_stop(&ctl, SIGTERM)), 0);
	cr_assert(ctl_log_has(&ctl, "overflows=1 "), "output overflow not counted");
}

Test(ingest, backpressure_pauses_and_resumes_batch_readers, .timeout = 120)
{
	int fd;

	ctl_mkroot(&ctl, "bp");
	/* a tiny high-water mark: every batch outruns the store, reading pauses and resumes */
	ctl_start(&ctl, "--fsync", "always", "--high-water-bytes", "4k", NULL);
	fd = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(fd, "agent-bp", 4), NULL);
	for (uint64_t seq = 1; seq <= 200; seq++)
		cr_assert_eq(cli_batch(fd, 4, seq, 20), 0);
	cli_wait_ack(fd, 4, 200);
	close(fd);
	cr_assert_eq(WEXITSTATUS(ctl_stop(&ctl, SIGTERM)), 0);
	cr_assert_eq(ctl_dump_count(&ctl, NULL), 4000);
	cr_assert_not(ctl_log_has(&ctl, "backpressure_events=0"));
}

struct lib_run {
	uv_loop_t loop;
	struct controller c;
};

static void *run_loop(void *arg)
{
	uv_run(&((struct lib_run *)arg)->loop, UV_RUN_DEFAULT);
	return NULL;
}

Test(ingest, library_on_real_loop_stops_and_closes_cleanly, .timeout = 60)
{
	static struct lib_run lr;
	struct controller_options o;
	json_t *st, *agent;
	pthread_t th;
	int fd;

	ctl_mkroot(&ctl, "lib");
	controller_options_defaults(&o);
	o.ingest.port = 0;
	o.ingest.controller_id = "lib";
	o.store.dir = ctl.data;
	o.store.fsync = STORE_FSYNC_NEVER;
	o.http.disabled = true;
	cr_assert_eq(uv_loop_init(&lr.loop), 0);
	cr_assert_eq(controller_open(&lr.c, &lr.loop, &o), 0);
	cr_assert_gt(ingest_port(&lr.c.ingest), 0);
	cr_assert_eq(pthread_create(&th, NULL, run_loop, &lr), 0);

	fd = cli_connect(ingest_port(&lr.c.ingest));
	tapio__v1__frame__free_unpacked(cli_hello(fd, "lib-agent", 12), NULL);
	cr_assert_eq(cli_batch(fd, 12, 1, 3), 0);
	cr_assert_eq(cli_expect_ack(fd, 12), 1);
	/* SIGTERM: the controller's own signal handler stops the loop gracefully */
	kill(getpid(), SIGTERM);
	cr_assert_eq(pthread_join(th, NULL), 0);
	close(fd);

	st = controller_status_json(&lr.c);
	cr_assert_not_null(st);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(st, "ingest"), "batches")),
		     1);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(st, "ingest"), "acks")), 1);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(st, "store"), "records")),
		     3);
	agent = json_array_get(json_object_get(json_object_get(st, "registry"), "agents"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(agent, "id")), "lib-agent");
	cr_assert(json_is_false(json_object_get(agent, "connected")), "stays known, disconnected");
	json_decref(st);
	cr_assert_eq(controller_close(&lr.c), 0);
	cr_assert_eq(uv_loop_close(&lr.loop), 0, "handles left open");
}

/* Runs the controller with args (shell words); returns the exit code and stdout+stderr. */
static int run_cli(const char *args, char *out, size_t len)
{
	char cmd[1024];
	size_t n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s %s 2>&1", CTL_BIN, args);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(out, 1, len - 1, p);
	out[n] = '\0';
	return WEXITSTATUS(pclose(p));
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

Test(ingest, command_line, .timeout = 60)
{
	char out[16384], args[512];

	cr_assert_eq(run_cli("--version", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "tapio-controller " TAPIO_VERSION "\n");
	cr_assert_eq(run_cli("--help", out, sizeof(out)), 0);
	cr_assert(strstr(out, "--listen HOST:PORT") && strstr(out, "--dump DIR"));
	cr_assert_eq(run_cli("--no-such-flag", out, sizeof(out)), 2);
	cr_assert_eq(count_lines(out), 1, "one line, got: %s", out);
	cr_assert_eq(run_cli("--data-dir /tmp/x --fsync sometimes", out, sizeof(out)), 2);
	cr_assert_eq(count_lines(out), 1);
	cr_assert_eq(run_cli("--data-dir /tmp/x --listen nowhere", out, sizeof(out)), 2);
	cr_assert_eq(run_cli("--data-dir /tmp/x --max-frame 12", out, sizeof(out)), 2);
	cr_assert_eq(run_cli("--data-dir /tmp/x --idle-timeout 30s --heartbeat-interval 10s", out,
			     sizeof(out)),
		     2, "idle timeout must exceed 3 heartbeats");
	cr_assert_eq(run_cli("--listen 127.0.0.1:1", out, sizeof(out)), 2, "no --data-dir");
	cr_assert_eq(run_cli("--dump /tmp --type kernel.bogus", out, sizeof(out)), 2);
	cr_assert_eq(count_lines(out), 1);

	/* --dump: a filled directory, time filter, human table and summary */
	ctl_mkroot(&ctl, "cli");
	ctl_start(&ctl, NULL);
	{
		int fd = cli_connect(ctl.port);

		tapio__v1__frame__free_unpacked(cli_hello(fd, "cli-agent", 2), NULL);
		cr_assert_eq(cli_batch(fd, 2, 1, 7), 0);
		cr_assert_eq(cli_expect_ack(fd, 2), 1);
		close(fd);
	}
	cr_assert_eq(WEXITSTATUS(ctl_stop(&ctl, SIGTERM)), 0);
	cr_assert_eq(ctl_dump_count(&ctl, "--since 1h"), 7);
	cr_assert_eq(ctl_dump_count(&ctl, "--since 2099-01-01T00:00:00Z"), 0);
	snprintf(args, sizeof(args), "--dump '%s'", ctl.data);
	cr_assert_eq(run_cli(args, out, sizeof(out)), 0);
	cr_assert(strstr(out, "kernel.network.connection_refused"));
	cr_assert(strstr(out, "records   7 (7 shown)"), "summary: %s", out);
	cr_assert(strstr(out, "node-a"));
}

Test(ingest, sigterm_while_batches_flow_keeps_every_ack, .timeout = 120)
{
	uint64_t acked = 0;
	Tapio__V1__Frame *f;
	int fd, status;

	ctl_mkroot(&ctl, "term");
	ctl_start(&ctl, "--fsync", "always", NULL);
	fd = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(fd, "agent-term", 21), NULL);
	for (uint64_t seq = 1; seq <= 300; seq++)
		cr_assert_eq(cli_batch(fd, 21, seq, 5), 0);
	status = 0;
	kill(ctl.pid, SIGTERM); /* commits are in flight right now */
	while (cli_recv(fd, &f) == 1) {
		cr_assert_eq(f->msg_case, TAPIO__V1__FRAME__MSG_ACK);
		cr_assert_geq(f->ack->durable_sequence, acked, "acks never go backwards");
		acked = f->ack->durable_sequence;
		tapio__v1__frame__free_unpacked(f, NULL);
	}
	close(fd);
	status = ctl_stop(&ctl, 0); /* the SIGTERM above is stopping it: only wait */
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unclean exit %d", status);
	cr_assert(ctl_log_has(&ctl, "stopped cleanly"));
	fprintf(stderr, "acked %llu of 300 batches before the stop\n", (unsigned long long)acked);
	/* every acknowledged batch is there (more may be: durable but the Ack was cut off) */
	cr_assert_geq(ctl_dump_count(&ctl, NULL), (int)(acked * 5));
	cr_assert_leq(ctl_dump_count(&ctl, NULL), 300 * 5);
}
