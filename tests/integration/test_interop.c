/*
 * Interoperation: the agent's real controller client (agent/client, tapio_client) on a libuv
 * loop in this process against the real tapio-controller process. Everything submitted is
 * acknowledged; a controller killed mid-stream and restarted on the same directory gets the
 * client's resends, and every occurrence ends up stored exactly once.
 */
#include <uv.h>

#include "agent/client/client.h"
#include "controller_harness.h"

static struct ctl ctl;
static uv_loop_t loop;

static void teardown(void)
{
	if (ctl.pid > 0)
		ctl_stop(&ctl, SIGKILL);
	if (ctl.dir[0])
		ctl_rmroot(&ctl);
}

TestSuite(interop, .fini = teardown);

/* A port that was free a moment ago, so a restarted controller can reuse it. */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Runs the loop until the client has every submitted occurrence acknowledged (or timeout). */
static bool run_until_acked(struct client *cl, uint64_t want, int timeout_ms)
{
	struct client_stats st;

	for (int waited = 0; waited < timeout_ms; waited += 10) {
		uv_run(&loop, UV_RUN_NOWAIT);
		client_counters(cl, &st);
		if (st.occurrences_acked >= want && st.queue_depth == 0)
			return true;
		usleep(10000);
	}
	client_counters(cl, &st);
	fprintf(stderr, "acked %llu of %llu occurrences, queue depth %llu\n",
		(unsigned long long)st.occurrences_acked, (unsigned long long)want,
		(unsigned long long)st.queue_depth);
	return false;
}

static void submit(struct client *cl, int from, int n)
{
	for (int i = from; i < from + n; i++) {
		struct tapio_occurrence o;

		make_occ(&o, (uint64_t)i);
		cr_assert_eq(client_submit(cl, &o), 0);
	}
	client_flush(cl);
}

static void on_closed(void *arg)
{
	*(bool *)arg = true;
}

Test(interop, agent_client_against_controller_with_restart, .timeout = 120)
{
	struct client_options o = {0};
	char err[256], listen[64], spool[300];
	struct client_stats st;
	struct client *cl;
	bool closed = false;
	int port = free_port();

	signal(SIGPIPE, SIG_IGN); /* as in tapio-agent: a dead controller is EPIPE, not death */
	ctl_mkroot(&ctl, "interop");
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	snprintf(spool, sizeof(spool), "%s/spool", ctl.dir);
	ctl_start(&ctl, "--listen", listen, NULL);
	cr_assert_eq(ctl.port, port);

	cr_assert_eq(uv_loop_init(&loop), 0);
	o.host = "127.0.0.1";
	o.port = (uint16_t)port;
	o.agent_id = "interop-agent";
	o.node = "node-a";
	o.cluster = "test";
	o.batch_max = 25;
	o.spool_dir = spool;
	o.backoff_min_ms = 20;
	o.backoff_max_ms = 200;
	cl = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(cl, "client_new: %s", err);
	cr_assert_eq(client_start(cl), 0);
	submit(cl, 0, 100);
	cr_assert(run_until_acked(cl, 100, 20000), "first 100 not acknowledged");

	/* crash the controller; evidence keeps coming while it is down */
	ctl_stop(&ctl, SIGKILL);
	submit(cl, 100, 50);
	for (int i = 0; i < 30; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(10000);
	}
	ctl_start(&ctl, "--listen", listen, NULL);
	cr_assert(run_until_acked(cl, 150, 30000), "resends after restart not acknowledged");
	client_counters(cl, &st);
	cr_assert_eq(st.dropped_queue + st.dropped_spool + st.dropped_spool_error, 0);
	cr_assert_geq(st.connects, 2);

	client_close(cl, on_closed, &closed);
	while (!closed)
		uv_run(&loop, UV_RUN_ONCE);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);

	cr_assert_eq(WEXITSTATUS(ctl_stop(&ctl, SIGTERM)), 0);
	cr_assert_eq(ctl_dump_count(&ctl, NULL), 150, "every occurrence stored exactly once");
}
