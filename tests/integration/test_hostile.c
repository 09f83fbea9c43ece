/*
 * Hostile peers against a real tapio-controller: garbage, truncated and oversized frames,
 * messages illegal in the current state, wrong wire versions, silence. Each gets an Error
 * frame with the right code and a disconnect, while a well-behaved agent connected the whole
 * time keeps getting its batches acknowledged and the controller never dies.
 */
#include "controller_harness.h"

static struct ctl ctl;
static int good = -1;
static uint64_t good_seq;

static void setup(void)
{
	ctl_mkroot(&ctl, "hostile");
	ctl_start(&ctl, "--fsync", "never", "--hello-timeout", "1s", "--idle-timeout", "3s",
		  "--heartbeat-interval", "500ms", "--stats-interval", "1h", NULL);
	good = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(good, "good-agent", 1), NULL);
	good_seq = 0;
}

static void teardown(void)
{
	if (good >= 0)
		close(good);
	good = -1;
	if (ctl.pid > 0)
		ctl_stop(&ctl, SIGKILL);
	ctl_rmroot(&ctl);
}

/* The well-behaved agent still gets a durable Ack (its heartbeat keeps it from idling out). */
static void good_agent_served(void)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__Heartbeat hb = TAPIO__V1__HEARTBEAT__INIT;

	f.msg_case = TAPIO__V1__FRAME__MSG_HEARTBEAT;
	f.heartbeat = &hb;
	cr_assert_eq(cli_send(good, &f), 0);
	good_seq++;
	cr_assert_eq(cli_batch(good, 1, good_seq, 2), 0);
	cr_assert_eq(cli_expect_ack(good, 1), good_seq);
	cr_assert(ctl_alive(&ctl), "controller died");
}

static void stop_and_expect_counter(const char *needle)
{
	close(good);
	good = -1;
	cr_assert_eq(WEXITSTATUS(ctl_stop(&ctl, SIGTERM)), 0, "unclean exit");
	cr_assert(ctl_log_has(&ctl, needle), "log lacks '%s'", needle);
}

TestSuite(hostile, .init = setup, .fini = teardown);

Test(hostile, random_bytes, .timeout = 60)
{
	uint8_t junk[4096];
	Tapio__V1__Frame *f;
	int fd = cli_connect(ctl.port), r;

	srand(1234);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)rand();
	junk[0] = 0x10; /* a length prefix far above the 4 MiB maximum */
	cli_send_raw(fd, junk, sizeof(junk));
	r = cli_recv(fd, &f);
	cr_assert_eq(r, 1);
	cr_assert_eq(f->msg_case, TAPIO__V1__FRAME__MSG_ERROR);
	cr_assert_eq(f->error->code, TAPIO__V1__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE);
	tapio__v1__frame__free_unpacked(f, NULL);
	close(fd);
	good_agent_served();
	/* random payload behind a plausible length: not a Frame */
	fd = cli_connect(ctl.port);
	junk[0] = 0;
	junk[1] = 0;
	junk[2] = 0;
	junk[3] = 200;
	memset(junk + 4, 0xff, 200); /* a varint tag that never ends */
	cli_send_raw(fd, junk, 204);
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
	close(fd);
	good_agent_served();
	stop_and_expect_counter("FRAME_TOO_LARGE=1");
}

Test(hostile, truncated_frame_then_close, .timeout = 60)
{
	uint8_t buf[54] = {0, 0, 0, 100};
	int fd = cli_connect(ctl.port);

	cli_send_raw(fd, buf, sizeof(buf));
	close(fd);
	good_agent_served();
	fd = cli_connect(ctl.port); /* a new agent still gets in */
	tapio__v1__frame__free_unpacked(cli_hello(fd, "after-truncation", 9), NULL);
	close(fd);
	good_agent_served();
}

Test(hostile, length_zero, .timeout = 60)
{
	uint8_t buf[8] = {0};
	int fd = cli_connect(ctl.port);

	cli_send_raw(fd, buf, sizeof(buf));
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
	close(fd);
	good_agent_served();
	stop_and_expect_counter("MALFORMED=1");
}

Test(hostile, length_max_u32, .timeout = 60)
{
	uint8_t buf[4] = {0xff, 0xff, 0xff, 0xff};
	int fd = cli_connect(ctl.port);

	cli_send_raw(fd, buf, sizeof(buf));
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE);
	close(fd);
	good_agent_served();
}

Test(hostile, batch_before_hello, .timeout = 60)
{
	int fd = cli_connect(ctl.port);

	cr_assert_eq(cli_batch(fd, 1, 1, 1), 0);
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE);
	close(fd);
	good_agent_served();
	stop_and_expect_counter("UNEXPECTED_MESSAGE=1");
}

Test(hostile, welcome_from_agent, .timeout = 60)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__Welcome w = TAPIO__V1__WELCOME__INIT;
	int fd = cli_connect(ctl.port);

	w.wire_version = CODEC_WIRE_VERSION;
	f.msg_case = TAPIO__V1__FRAME__MSG_WELCOME;
	f.welcome = &w;
	cr_assert_eq(cli_send(fd, &f), 0);
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE);
	close(fd);
	good_agent_served();
}

Test(hostile, ack_and_second_hello_after_handshake, .timeout = 60)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__Ack a = TAPIO__V1__ACK__INIT;
	int fd = cli_connect(ctl.port);

	tapio__v1__frame__free_unpacked(cli_hello(fd, "acker", 3), NULL);
	a.session_id = 3;
	a.durable_sequence = 1;
	f.msg_case = TAPIO__V1__FRAME__MSG_ACK;
	f.ack = &a;
	cr_assert_eq(cli_send(fd, &f), 0);
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE);
	close(fd);
	fd = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(fd, "twice", 4), NULL);
	cli_hello_v(fd, "twice", 4, 7); /* sends without waiting for a Welcome */
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE);
	close(fd);
	good_agent_served();
}

Test(hostile, wrong_wire_version, .timeout = 60)
{
	int fd = cli_connect(ctl.port);

	cli_hello_v(fd, "future-agent", 5, 2);
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_WIRE_VERSION);
	close(fd);
	good_agent_served();
	stop_and_expect_counter("WIRE_VERSION=1");
}

Test(hostile, wrong_session_and_backwards_sequence, .timeout = 60)
{
	int fd = cli_connect(ctl.port);

	tapio__v1__frame__free_unpacked(cli_hello(fd, "seq-agent", 10), NULL);
	cr_assert_eq(cli_batch(fd, 11, 1, 1), 0);
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_SEQUENCE);
	close(fd);
	fd = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(fd, "seq-agent", 10), NULL);
	cr_assert_eq(cli_batch(fd, 10, 2, 1), 0);
	cr_assert_eq(cli_expect_ack(fd, 10), 2);
	cr_assert_eq(cli_batch(fd, 10, 1, 1), 0);
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_SEQUENCE);
	close(fd);
	good_agent_served();
}

Test(hostile, silent_connection_times_out, .timeout = 60)
{
	int fd = cli_connect(ctl.port), idle;

	/* no Hello within --hello-timeout 1s */
	cli_expect_error(fd, TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE);
	close(fd);
	/* Hello, then silence for --idle-timeout 3s (the good agent, quiet for ~1.5 s around the
	 * Hello timeout above, stays well inside it even on a loaded machine) */
	idle = cli_connect(ctl.port);
	tapio__v1__frame__free_unpacked(cli_hello(idle, "silent", 6), NULL);
	for (int i = 0; i < 4; i++) {
		usleep(500000);
		good_agent_served();
	}
	cli_expect_error(idle, TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE);
	close(idle);
	good_agent_served();
	stop_and_expect_counter("timeouts=2 ");
}

Test(hostile, many_hostile_peers_concurrently, .timeout = 120)
{
	enum { N = 200 };
	static int fds[N];
	uint8_t zero[4] = {0}, big[4] = {0xff, 0xff, 0xff, 0xff};

	for (int i = 0; i < N; i++) {
		fds[i] = cli_connect(ctl.port);
		if (i % 2)
			cli_send_raw(fds[i], zero, 4);
		else
			cli_send_raw(fds[i], big, 4);
	}
	for (int i = 0; i < N; i++) {
		cli_expect_error(fds[i], i % 2 ? TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED
					       : TAPIO__V1__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE);
		close(fds[i]);
	}
	good_agent_served();
	stop_and_expect_counter("FRAME_TOO_LARGE=100 MALFORMED=100");
}
