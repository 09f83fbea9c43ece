/*
 * Test harness for the controller integration tests: starts the real tapio-controller from
 * TAPIO_BIN_DIR on an ephemeral loopback port (waiting for its ready line), and speaks the
 * wire protocol over raw blocking sockets, so the tests see exactly the bytes an agent would.
 */
#ifndef TAPIO_TESTS_CONTROLLER_HARNESS_H
#define TAPIO_TESTS_CONTROLLER_HARNESS_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/codec.h"
#include "common/occ_proto.h"
#include "common/occurrence.h"

#define CTL_BIN TAPIO_BIN_DIR "/tapio-controller"

struct ctl {
	pid_t pid;
	int port;
	char dir[128];	/* test root: data/ and controller.log inside */
	char data[300]; /* the data directory */
	char log[300];
};

static inline void ctl_mkroot(struct ctl *c, const char *name)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "/tmp/tapio-ctl-%s-%d", name, (int)getpid());
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", c->dir, c->dir);
	cr_assert_eq(system(cmd), 0);
	snprintf(c->data, sizeof(c->data), "%s/data", c->dir);
	snprintf(c->log, sizeof(c->log), "%s/controller.log", c->dir);
}

static inline void ctl_rmroot(struct ctl *c)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", c->dir);
}

/* Reads the whole log into a malloc'd string (caller frees). */
static inline char *ctl_read_log(const struct ctl *c)
{
	FILE *f = fopen(c->log, "r");
	char *buf;
	long n;

	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

static inline bool ctl_log_has(const struct ctl *c, const char *needle)
{
	char *l = ctl_read_log(c);
	bool found = strstr(l, needle) != NULL;

	free(l);
	return found;
}

/*
 * Starts the controller with --data-dir c->data --listen 127.0.0.1:0 --http off and the extra flags
 * (NULL-terminated), waits up to 10 s for the ready line and parses the port from it.
 */
static inline void ctl_start(struct ctl *c, ...)
{
	const char *argv[48];
	int argc = 0;
	va_list ap;

	argv[argc++] = CTL_BIN;
	argv[argc++] = "--listen";
	argv[argc++] = "127.0.0.1:0";
	argv[argc++] = "--data-dir";
	argv[argc++] = c->data;
	argv[argc++] = "--http"; /* the query API has its own tests; keep port 7080 free */
	argv[argc++] = "off";
	va_start(ap, c);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 46;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	truncate(c->log, 0);
	c->pid = fork();
	cr_assert_geq(c->pid, 0);
	if (c->pid == 0) {
		int fd = open(c->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		char *l = ctl_read_log(c), *p = strstr(l, "ready: listening on 127.0.0.1:");

		if (p) {
			c->port = atoi(p + strlen("ready: listening on 127.0.0.1:"));
			free(l);
			return;
		}
		free(l);
		cr_assert_eq(waitpid(c->pid, NULL, WNOHANG), 0, "controller exited early");
		usleep(10000);
	}
	cr_assert_fail("controller not ready within 10 s");
}

/* Sends sig (0: none, only wait) and waits for the exit; returns the wait status. */
static inline int ctl_stop(struct ctl *c, int sig)
{
	int status = -1;

	if (c->pid <= 0)
		return -1;
	kill(c->pid, sig);
	for (int i = 0; i < 1500; i++) {
		if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
			c->pid = 0;
			return status;
		}
		usleep(10000);
	}
	kill(c->pid, SIGKILL);
	waitpid(c->pid, &status, 0);
	c->pid = 0;
	cr_assert_fail("controller did not stop within 15 s");
	return status;
}

static inline bool ctl_alive(const struct ctl *c)
{
	return c->pid > 0 && waitpid(c->pid, NULL, WNOHANG) == 0;
}

/* VmRSS of the controller in KiB. */
static inline long ctl_rss_kb(const struct ctl *c)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)c->pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Runs tapio-controller --dump DIR --json [extra] and returns the number of JSON lines. */
static inline int ctl_dump_count(const struct ctl *c, const char *extra)
{
	char cmd[800], line[8192];
	int n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s --dump '%s' --json %s 2>/dev/null", CTL_BIN, c->data,
		 extra ? extra : "");
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (fgets(line, sizeof(line), p))
		if (line[0] == '{')
			n++;
	cr_assert_eq(WEXITSTATUS(pclose(p)), 0, "--dump failed");
	return n;
}

/* ---- raw protocol client ------------------------------------------------------------------ */

static inline void raise_nofile(rlim_t want)
{
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* Connects to 127.0.0.1:port; rcvbuf > 0 sets SO_RCVBUF before connecting. 5 s timeouts. */
static inline int cli_connect_buf(int port, int rcvbuf)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = 5};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

static inline int cli_connect(int port)
{
	return cli_connect_buf(port, 0);
}

/* Sends all bytes; returns 0 or -errno. */
static inline int cli_send_raw(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static inline int cli_send(int fd, const Tapio__V1__Frame *f)
{
	struct codec_buf b;
	int r;

	codec_buf_init(&b);
	cr_assert_gt(codec_buf_append_frame(&b, f), 0);
	r = cli_send_raw(fd, b.data, b.len);
	codec_buf_fini(&b);
	return r;
}

static inline int read_full(int fd, uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			return 0;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 1;
}

/* Receives one frame: 1 and *out (free_unpacked), 0 on EOF, -errno (e.g. -EAGAIN timeout). */
static inline int cli_recv(int fd, Tapio__V1__Frame **out)
{
	uint8_t hdr[4], *payload;
	uint32_t n;
	int r = read_full(fd, hdr, 4);

	*out = NULL;
	if (r <= 0)
		return r;
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	cr_assert(n > 0 && n < (1u << 24), "bad frame length %u from controller", n);
	payload = malloc(n);
	r = read_full(fd, payload, n);
	if (r <= 0) {
		free(payload);
		return r;
	}
	*out = tapio__v1__frame__unpack(NULL, n, payload);
	free(payload);
	cr_assert_not_null(*out, "controller sent an undecodable frame");
	return 1;
}

/* Expects an Error frame with `code`, then EOF. */
static inline void cli_expect_error(int fd, Tapio__V1__ErrorCode code)
{
	Tapio__V1__Frame *f;
	int r = cli_recv(fd, &f);

	cr_assert_eq(r, 1, "expected an Error frame, got %d", r);
	cr_assert_eq(f->msg_case, TAPIO__V1__FRAME__MSG_ERROR, "expected error, got %s",
		     codec_frame_kind(f));
	cr_assert_eq(f->error->code, code, "error code %s (%s), want %s",
		     codec_error_code_name(f->error->code), f->error->message,
		     codec_error_code_name(code));
	cr_assert_gt(strlen(f->error->message), 0);
	tapio__v1__frame__free_unpacked(f, NULL);
	r = cli_recv(fd, &f);
	cr_assert(r == 0 || r == -ECONNRESET, "expected a disconnect after the Error, got %d", r);
}

/* Sends Hello(agent, session, wire version) — returns the Welcome (caller frees). */
static inline Tapio__V1__Frame *cli_hello_v(int fd, const char *agent, uint64_t session,
					    uint32_t wire_version)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT, *w;
	Tapio__V1__Hello h = TAPIO__V1__HELLO__INIT;

	h.wire_version = wire_version;
	h.agent_id = (char *)agent;
	h.node = "node-a";
	h.cluster = "test";
	h.version = "test";
	h.kernel = "6.1.0";
	h.arch = "x86_64";
	h.session_id = session;
	f.msg_case = TAPIO__V1__FRAME__MSG_HELLO;
	f.hello = &h;
	cr_assert_eq(cli_send(fd, &f), 0);
	if (wire_version != CODEC_WIRE_VERSION)
		return NULL;
	cr_assert_eq(cli_recv(fd, &w), 1, "no Welcome");
	cr_assert_eq(w->msg_case, TAPIO__V1__FRAME__MSG_WELCOME, "got %s (%s) instead of welcome",
		     codec_frame_kind(w),
		     w->msg_case == TAPIO__V1__FRAME__MSG_ERROR ? w->error->message : "");
	return w;
}

static inline Tapio__V1__Frame *cli_hello(int fd, const char *agent, uint64_t session)
{
	return cli_hello_v(fd, agent, session, CODEC_WIRE_VERSION);
}

/* A valid occurrence number i (connection_refused on node-a). */
static inline void make_occ(struct tapio_occurrence *o, uint64_t i)
{
	occurrence_init(o, TAPIO_OCC_CONNECTION_REFUSED, clock_wall_ns() - 1000000000ull + i,
			"node-a", "test");
	o->data.network.pid = (uint32_t)(1000 + i);
	snprintf(o->data.network.comm, sizeof(o->data.network.comm), "curl");
	snprintf(o->data.network.src_ip, sizeof(o->data.network.src_ip), "10.0.0.1");
	snprintf(o->data.network.dst_ip, sizeof(o->data.network.dst_ip), "10.0.0.2");
	o->data.network.src_port = 40000;
	o->data.network.dst_port = 8080;
	o->data.network.family = 4;
	snprintf(o->data.network.old_state, sizeof(o->data.network.old_state), "SYN_SENT");
	snprintf(o->data.network.new_state, sizeof(o->data.network.new_state), "CLOSE");
}

/*
 * Sends EventBatch(session, seq) with n valid occurrences (plus `invalid` occurrences whose
 * node is empty). Returns 0 or -errno from send.
 */
static inline int cli_batch_ex(int fd, uint64_t session, uint64_t seq, size_t n, size_t invalid)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__EventBatch b = TAPIO__V1__EVENT_BATCH__INIT;
	size_t total = n + invalid;
	struct tapio_occurrence *occ = calloc(total ? total : 1, sizeof(*occ));
	Tapio__V1__Occurrence *msg = calloc(total ? total : 1, sizeof(*msg));
	Tapio__V1__Occurrence **ptr = calloc(total ? total : 1, sizeof(*ptr));
	struct occ_proto_scratch *scr = calloc(total ? total : 1, sizeof(*scr));
	int r;

	for (size_t i = 0; i < total; i++) {
		make_occ(&occ[i], seq * 1000 + i);
		if (i >= n)
			occ[i].node[0] = '\0'; /* occurrence_validate refuses it */
		occ_to_proto(&occ[i], &msg[i], &scr[i]);
		ptr[i] = &msg[i];
	}
	b.session_id = session;
	b.sequence = seq;
	b.n_occurrences = total;
	b.occurrences = ptr;
	f.msg_case = TAPIO__V1__FRAME__MSG_EVENT_BATCH;
	f.event_batch = &b;
	r = cli_send(fd, &f);
	free(scr);
	free(ptr);
	free(msg);
	free(occ);
	return r;
}

static inline int cli_batch(int fd, uint64_t session, uint64_t seq, size_t n)
{
	return cli_batch_ex(fd, session, seq, n, 0);
}

/* Expects an Ack for session; returns its durable_sequence. */
static inline uint64_t cli_expect_ack(int fd, uint64_t session)
{
	Tapio__V1__Frame *f;
	uint64_t seq;
	int r = cli_recv(fd, &f);

	cr_assert_eq(r, 1, "expected an Ack, got %d (%s)", r, r < 0 ? strerror(-r) : "eof");
	cr_assert_eq(f->msg_case, TAPIO__V1__FRAME__MSG_ACK, "got %s (%s) instead of ack",
		     codec_frame_kind(f),
		     f->msg_case == TAPIO__V1__FRAME__MSG_ERROR ? f->error->message : "");
	cr_assert_eq(f->ack->session_id, session);
	seq = f->ack->durable_sequence;
	tapio__v1__frame__free_unpacked(f, NULL);
	return seq;
}

/* Reads Acks until one reaches seq (cumulative acks may be coalesced). */
static inline void cli_wait_ack(int fd, uint64_t session, uint64_t seq)
{
	for (;;) {
		uint64_t got = cli_expect_ack(fd, session);

		if (got >= seq)
			return;
	}
}

#endif
