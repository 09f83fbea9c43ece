/*
 * The agent's controller mode end to end: the real tapio-agent (real BPF programs, root)
 * streaming to the real tapio-controller over loopback. Facts are provoked for real (a refused
 * connect, exit codes, SIGKILL); what the agent printed on stdout is compared field by field
 * with what the controller stored (tapio-controller --dump --json). Outage: the controller is
 * down while facts happen and comes up later; every fact arrives exactly once. Spool bound:
 * tiny bounds, many facts, controller down: stored + dropped == submitted, exactly. Config
 * push: a scripted controller on a raw socket pushes settings; the agent applies them (the
 * next occurrences carry the pushed generation, an ignored exit code stops being reported),
 * reports them in heartbeats and rejects invalid ones with a reason; a local SIGHUP reload
 * does not override the controller's config (generations are the controller's).
 * Needs root; every skip prints its reason.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_harness.h"
#include "common/codec.h"
#include "common/config_hash.h"
#include "common/occ_proto.h"
#include "common/settings.h"

#define CTL_BIN	  TAPIO_BIN_DIR "/tapio-controller"
#define AGENT_BIN TAPIO_BIN_DIR "/tapio-agent"
#define MAX_DUMP  32768

#define SKIP_UNLESS_KERNEL()                                                  \
	do {                                                                  \
		const char *why_;                                             \
		if (!harness_kernel_ok(&why_)) {                              \
			fprintf(stderr, "SKIP: %s\n", why_);                  \
			cr_skip_test("%s", why_);                             \
		}                                                             \
		if (access(CTL_BIN, X_OK) != 0) {                             \
			fprintf(stderr, "SKIP: %s was not built\n", CTL_BIN); \
			cr_skip_test("%s was not built", CTL_BIN);            \
		}                                                             \
	} while (0)

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct agent_proc agent;

/* ---- the real controller ---- */

struct ctl {
	pid_t pid;
	int port;
	char dir[128];
	char data[192];
	char log[192];
};

/* A loopback TCP port nothing listens on right now. */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(s >= 0);
	cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
	close(s);
	return ntohs(sa.sin_port);
}

static void ctl_init(struct ctl *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "/tmp/tapio-h13-ctl-XXXXXX");
	cr_assert_not_null(mkdtemp(c->dir));
	snprintf(c->data, sizeof(c->data), "%s/data", c->dir);
	snprintf(c->log, sizeof(c->log), "%s/controller.log", c->dir);
	c->port = free_port();
}

static bool file_has(const char *path, const char *needle)
{
	char line[2048];
	bool found = false;
	FILE *f = fopen(path, "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

/* Starts the controller on c->port (HTTP API off, 1 s heartbeats), waits for "ready". */
static void ctl_start(struct ctl *c)
{
	char listen[64];

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", c->port);
	c->pid = fork();
	cr_assert(c->pid >= 0);
	if (c->pid == 0) {
		int fd = open(c->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		dup2(fd, 2);
		execl(CTL_BIN, CTL_BIN, "--listen", listen, "--data-dir", c->data, "--http", "off",
		      "--heartbeat-interval", "1s", (char *)NULL);
		_exit(127);
	}
	for (long long end = now_ms() + 15000; now_ms() < end;) {
		if (file_has(c->log, "ready: listening on"))
			return;
		cr_assert_eq(waitpid(c->pid, NULL, WNOHANG), 0, "tapio-controller exited early");
		usleep(20000);
	}
	cr_assert_fail("tapio-controller not ready within 15 s");
}

static void ctl_stop(struct ctl *c)
{
	int status;

	if (c->pid <= 0)
		return;
	kill(c->pid, SIGTERM);
	for (long long end = now_ms() + 15000; now_ms() < end; usleep(10000)) {
		if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
			c->pid = 0;
			cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
				  "tapio-controller did not exit cleanly");
			return;
		}
	}
	kill(c->pid, SIGKILL);
	waitpid(c->pid, NULL, 0);
	c->pid = 0;
	cr_assert_fail("tapio-controller did not stop within 15 s");
}

/* Removes the agent's temp dir (log, spool) once a test passed. */
static void agent_cleanup(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", agent.dir);
	if (agent.dir[0] && system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", agent.dir);
}

static void ctl_cleanup(struct ctl *c)
{
	char cmd[300];

	agent_cleanup();

	if (c->pid > 0) {
		kill(c->pid, SIGKILL);
		waitpid(c->pid, NULL, 0);
		c->pid = 0;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", c->dir);
}

struct dump {
	json_t *occ[MAX_DUMP];
	size_t n;
};

/* The store of a stopped controller, via tapio-controller --dump DIR --json. */
static void ctl_dump(const struct ctl *c, struct dump *d)
{
	char cmd[400];
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	FILE *p;

	d->n = 0;
	snprintf(cmd, sizeof(cmd), "%s --dump '%s' --json 2>/dev/null", CTL_BIN, c->data);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while ((len = getline(&line, &cap, p)) > 0) {
		json_error_t err;
		json_t *j;

		if (line[0] != '{')
			continue;
		j = json_loadb(line, (size_t)len, 0, &err);
		cr_assert(json_is_object(j), "dump line is not a JSON object: %s", line);
		cr_assert_lt(d->n, (size_t)MAX_DUMP);
		d->occ[d->n++] = j;
	}
	free(line);
	cr_assert_eq(WEXITSTATUS(pclose(p)), 0, "tapio-controller --dump failed");
}

static void dump_free(struct dump *d)
{
	for (size_t i = 0; i < d->n; i++)
		json_decref(d->occ[i]);
	d->n = 0;
}

/* ---- the agent ---- */

static void agent_start_yaml(const struct ctl *c, const char *yaml, const char *const *more)
{
	char addr[64];
	const char *args[32] = {
	    "--sink",		"controller", "--controller", addr, "--heartbeat-interval", "1",
	    "--stats-interval", "1"};
	int n = 8;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", c->port);
	for (int i = 0; more && more[i] && n < 31; i++)
		args[n++] = more[i];
	args[n] = NULL;
	cr_assert_eq(harness_start(&agent, yaml, args), 0, "tapio-agent did not become ready");
}

static void agent_start(const struct ctl *c, const char *const *more)
{
	agent_start_yaml(c, NULL, more);
}

/* Number of lines of the agent's log containing `needle`; the last one goes to buf. */
static int agent_log_last(const char *needle, char *buf, size_t len)
{
	char line[4096];
	int n = 0;
	FILE *f = fopen(agent.errpath, "r");

	buf[0] = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, needle)) {
			size_t l = strnlen(line, len - 1); /* cut to buf, as intended */

			n++;
			memcpy(buf, line, l);
			buf[l] = '\0';
		}
	}
	fclose(f);
	return n;
}

static unsigned long long field_u64(const char *line, const char *key)
{
	const char *p = strstr(line, key);

	cr_assert_not_null(p, "no '%s' in: %s", key, line);
	return strtoull(p + strlen(key), NULL, 10);
}

/*
 * Waits (pumping stdout) for a stats line written after this call that shows the client
 * connected with an empty queue and every occurrence acknowledged.
 */
static void wait_all_acked(int timeout_ms)
{
	char line[4096];
	int seen = agent_log_last("] stats:", line, sizeof(line));

	for (long long end = now_ms() + timeout_ms; now_ms() < end;) {
		harness_pump(&agent, 300);
		int n = agent_log_last("] stats:", line, sizeof(line));
		if (n <= seen)
			continue;
		seen = n;
		if (strstr(line, "connected=yes") && field_u64(line, "queue_depth=") == 0 &&
		    field_u64(line, "total=") ==
			field_u64(line, "acked=") + field_u64(line, "dropped="))
			return;
	}
	harness_dump_log(&agent);
	cr_assert_fail("the agent did not get everything acknowledged within %d ms", timeout_ms);
}

/* What the controller sink reported at shutdown. */
struct final_counts {
	unsigned long long submitted, acked, dropped, spooled;
};

static void agent_final(struct final_counts *f)
{
	char line[4096];

	cr_assert_eq(agent_log_last("sink controller closed:", line, sizeof(line)), 1,
		     "no 'sink controller closed' line");
	f->submitted = field_u64(line, "submitted=");
	f->acked = field_u64(line, "acked=");
	f->dropped = field_u64(line, "dropped=");
	f->spooled = 0;
	if (agent_log_last("unacknowledged batches (", line, sizeof(line)) > 0)
		f->spooled = field_u64(line, "batches (");
	fprintf(stderr, "agent: submitted=%llu acked=%llu dropped=%llu spooled=%llu printed=%zu\n",
		f->submitted, f->acked, f->dropped, f->spooled, agent.n_occ);
	cr_assert_eq(agent_log_last("sink stdout closed:", line, sizeof(line)), 1);
	cr_assert_eq(field_u64(line, "drops="), 0, "stdout sink dropped lines: %s", line);
	cr_assert(file_has(agent.errpath, "stopped cleanly"), "the loop did not close cleanly");
}

/* ---- provoking facts ---- */

static void child_exit(const char *comm, int code)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_NAME, comm);
		_exit(code);
	}
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
}

static void child_killed(const char *comm)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_NAME, comm);
		pause();
		_exit(0);
	}
	usleep(20000);
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
}

static void child_refused(const char *comm, int port)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int s = socket(AF_INET, SOCK_STREAM, 0);

		prctl(PR_SET_NAME, comm);
		_exit(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : 0);
	}
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
}

struct match_comm {
	const char *type;
	const char *comm;
	const char *key;
	long long value;
};

static bool match_comm(json_t *occ, const void *arg)
{
	const struct match_comm *m = arg;
	const char *type = occ_str(occ, "type");
	const char *comm = occ_data_str(occ, "comm");

	return type && comm && strcmp(type, m->type) == 0 && strcmp(comm, m->comm) == 0 &&
	       (!m->key || occ_data_int(occ, m->key) == m->value);
}

static size_t count_in(json_t **occ, size_t n, const struct match_comm *m)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += match_comm(occ[i], m) ? 1 : 0;
	return k;
}

static json_t *find_id(json_t *const *occ, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(occ_str(occ[i], "id"), id) == 0)
			return occ[i];
	return NULL;
}

/*
 * Every stored occurrence is one the agent printed, identical in every field (ids, types,
 * context, every data field), and none is stored twice.
 */
static void assert_stored_subset_of_stdout(const struct dump *d)
{
	for (size_t i = 0; i < d->n; i++) {
		const char *id = occ_str(d->occ[i], "id");
		json_t *printed;

		cr_assert_not_null(id);
		printed = find_id(agent.occ, agent.n_occ, id);
		cr_assert_not_null(printed, "stored occurrence %s was never printed by the agent",
				   id);
		if (!json_equal(printed, d->occ[i])) {
			char *a = json_dumps(printed, JSON_SORT_KEYS);
			char *b = json_dumps(d->occ[i], JSON_SORT_KEYS);
			cr_assert_fail("occurrence %s differs:\n printed %s\n stored  %s", id, a,
				       b);
		}
		cr_assert_null(find_id(d->occ + i + 1, d->n - i - 1, id), "%s stored twice", id);
	}
}

/* ---- tests ---- */

Test(agent_controller, missing_address_is_one_line_exit_2, .timeout = 30)
{
	char out[1024] = "";
	size_t n;
	int lines = 0, status;
	FILE *p;

	if (access(AGENT_BIN, X_OK) != 0) {
		fprintf(stderr, "SKIP: %s was not built\n", AGENT_BIN);
		cr_skip_test("%s was not built", AGENT_BIN);
	}
	p = popen(AGENT_BIN " --sink stdout --sink controller 2>&1", "r");
	cr_assert_not_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	status = pclose(p);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "exit status %d, output: %s",
		  status, out);
	for (size_t i = 0; i < n; i++)
		lines += out[i] == '\n';
	cr_assert_eq(lines, 1, "expected one line, got: %s", out);
	cr_assert(strstr(out, "tapio-agent: ") == out && strstr(out, "--controller HOST:PORT"),
		  "unexpected message: %s", out);

	p = popen(AGENT_BIN " --sink controller --controller nohostport 2>&1", "r");
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	status = pclose(p);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "output: %s", out);
	cr_assert(strstr(out, "invalid value 'nohostport' for --controller"), "%s", out);
}

Test(agent_controller, stored_equals_printed, .timeout = 180)
{
	struct ctl c;
	struct dump *d = calloc(1, sizeof(*d));
	struct final_counts f;
	int closed;
	const struct match_comm refused = {"kernel.network.connection_refused", "h13-refuse", NULL,
					   0};
	const struct match_comm exit3 = {"kernel.container.abnormal_exit", "h13-exit3", "exit_code",
					 3};
	const struct match_comm kill9 = {"kernel.container.abnormal_exit", "h13-kill9", "signal",
					 9};

	SKIP_UNLESS_KERNEL();
	ctl_init(&c);
	ctl_start(&c);
	agent_start(&c, NULL);
	for (long long end = now_ms() + 10000;
	     now_ms() < end && !file_has(agent.errpath, "[client] connected to");)
		harness_pump(&agent, 100);
	cr_assert(file_has(agent.errpath, "[client] connected to"), "agent never connected");

	closed = free_port();
	child_refused("h13-refuse", closed);
	child_exit("h13-exit3", 3);
	child_killed("h13-kill9");
	cr_assert_not_null(harness_wait_for(&agent, match_comm, &refused, 10000));
	cr_assert_not_null(harness_wait_for(&agent, match_comm, &exit3, 10000));
	cr_assert_not_null(harness_wait_for(&agent, match_comm, &kill9, 10000));
	wait_all_acked(20000);

	cr_assert_eq(harness_stop_keep(&agent), 0, "tapio-agent did not exit cleanly");
	agent_final(&f);
	ctl_stop(&c);
	ctl_dump(&c, d);

	/* the agent's own accounting: every printed occurrence was submitted; nothing dropped;
	 * what was acked is exactly what the store holds */
	cr_assert_eq(f.submitted, agent.n_occ, "submitted %llu, printed %zu", f.submitted,
		     agent.n_occ);
	cr_assert_eq(f.dropped, 0);
	cr_assert_eq(f.acked, d->n, "acked %llu, stored %zu", f.acked, d->n);
	cr_assert_eq(f.acked + f.spooled, f.submitted);
	assert_stored_subset_of_stdout(d);
	cr_assert_eq(count_in(d->occ, d->n, &refused), 1);
	cr_assert_eq(count_in(d->occ, d->n, &exit3), 1);
	cr_assert_eq(count_in(d->occ, d->n, &kill9), 1);
	{
		json_t *r = NULL;
		for (size_t i = 0; i < d->n && !r; i++)
			if (match_comm(d->occ[i], &refused))
				r = d->occ[i];
		cr_assert_eq(occ_data_int(r, "dst_port"), closed);
		cr_assert_str_eq(occ_data_str(r, "dst_ip"), "127.0.0.1");
		cr_assert_str_eq(
		    json_string_value(json_object_get(json_object_get(r, "context"), "node")),
		    "e2e-node");
	}

	harness_release(&agent);
	dump_free(d);
	free(d);
	ctl_cleanup(&c);
}

Test(agent_controller, outage_then_all_arrive_once, .timeout = 240)
{
	enum { N = 25 };
	struct ctl c;
	struct dump *d = calloc(1, sizeof(*d));
	struct final_counts f;
	const struct match_comm out7 = {"kernel.container.abnormal_exit", "h13-out7", "exit_code",
					7};
	long long t0;

	SKIP_UNLESS_KERNEL();
	ctl_init(&c); /* not started: the controller is down */
	agent_start(&c, NULL);
	t0 = now_ms();
	for (int i = 0; i < N; i++)
		child_exit("h13-out7", 7);
	/* observation goes on during the outage: all N on stdout at once */
	for (long long end = now_ms() + 5000;
	     now_ms() < end && harness_count(&agent, match_comm, &out7) < N;)
		harness_pump(&agent, 100);
	cr_assert_eq(harness_count(&agent, match_comm, &out7), N,
		     "the agent printed %zu of %d exits during the outage",
		     harness_count(&agent, match_comm, &out7), N);
	cr_assert_lt(now_ms() - t0, 5000);
	cr_assert(!file_has(agent.errpath, "[client] connected to"));
	cr_assert(file_has(agent.errpath, "cannot connect to"),
		  "no failed connect attempt was logged");

	/* a real outage: the agent keeps failing to connect for a while */
	for (long long end = now_ms() + 2500; now_ms() < end;)
		harness_pump(&agent, 100);
	ctl_start(&c);
	/* reconnect back-off is at most a few seconds after a short outage */
	wait_all_acked(60000);
	cr_assert_eq(harness_stop_keep(&agent), 0, "tapio-agent did not exit cleanly");
	agent_final(&f);
	ctl_stop(&c);
	ctl_dump(&c, d);

	cr_assert_eq(f.dropped, 0);
	cr_assert_eq(f.submitted, agent.n_occ);
	cr_assert_eq(f.acked, d->n, "acked %llu, stored %zu", f.acked, d->n);
	cr_assert_eq(d->n + f.spooled, f.submitted);
	assert_stored_subset_of_stdout(d);
	cr_assert_eq(count_in(d->occ, d->n, &out7), N, "stored %zu of %d",
		     count_in(d->occ, d->n, &out7), N);
	for (size_t i = 0; i < agent.n_occ; i++)
		if (match_comm(agent.occ[i], &out7))
			cr_assert_not_null(find_id(d->occ, d->n, occ_str(agent.occ[i], "id")));

	harness_release(&agent);
	dump_free(d);
	free(d);
	ctl_cleanup(&c);
}

Test(agent_controller, spool_bound_drops_are_counted_exactly, .timeout = 300)
{
	enum { N = 3000 };
	struct ctl c;
	struct dump *d = calloc(1, sizeof(*d));
	struct final_counts f;
	const struct match_comm bnd7 = {"kernel.container.abnormal_exit", "h13-bnd7", "exit_code",
					7};
	const char *const tiny[] = {"--spool-max-bytes", "65536", "--queue-max-bytes", "65536",
				    NULL};
	size_t printed;

	SKIP_UNLESS_KERNEL();
	ctl_init(&c);
	agent_start(&c, tiny);
	for (int i = 0; i < N; i++) {
		child_exit("h13-bnd7", 7);
		if (i % 100 == 99)
			harness_pump(&agent, 20); /* keep the stdout pipe flowing */
	}
	for (long long end = now_ms() + 10000;
	     now_ms() < end && harness_count(&agent, match_comm, &bnd7) < N;)
		harness_pump(&agent, 100);
	printed = harness_count(&agent, match_comm, &bnd7);
	cr_assert_eq(printed, N, "the agent saw %zu of %d exits (kernel ring loss?)", printed, N);

	ctl_start(&c);
	wait_all_acked(90000);
	cr_assert_eq(harness_stop_keep(&agent), 0, "tapio-agent did not exit cleanly");
	agent_final(&f);
	ctl_stop(&c);
	ctl_dump(&c, d);

	cr_assert_gt(f.dropped, 0, "a 64 KiB spool held %d facts: the bound was not exercised", N);
	cr_assert_eq(f.submitted, agent.n_occ);
	cr_assert_eq(f.acked, d->n, "acked %llu, stored %zu", f.acked, d->n);
	/* exact: every submitted occurrence is stored, counted as dropped, or still spooled */
	cr_assert_eq(d->n + f.dropped + f.spooled, f.submitted,
		     "stored %zu + dropped %llu + spooled %llu != submitted %llu", d->n, f.dropped,
		     f.spooled, f.submitted);
	assert_stored_subset_of_stdout(d);
	/* the oldest evidence went: what is stored of the provoked exits is the newest */
	cr_assert_lt(count_in(d->occ, d->n, &bnd7), (size_t)N);

	harness_release(&agent);
	dump_free(d);
	free(d);
	ctl_cleanup(&c);
}

/* ---- config push, from a scripted controller on a raw socket ---- */

static int send_frame(int fd, const Tapio__V1__Frame *f)
{
	uint8_t buf[4096];
	ssize_t n = codec_encode_frame(f, buf, sizeof(buf));

	cr_assert_gt(n, 0, "codec_encode_frame: %zd", n);
	for (ssize_t off = 0; off < n;) {
		ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
		if (w < 0)
			return -errno;
		off += w;
	}
	return 0;
}

static bool read_full(int fd, uint8_t *p, size_t len)
{
	while (len) {
		ssize_t r = recv(fd, p, len, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		len -= (size_t)r;
	}
	return true;
}

/* Next frame from the agent (5 s socket timeout); the caller frees it. */
static Tapio__V1__Frame *recv_frame(int fd)
{
	uint8_t hdr[4], *payload;
	uint32_t n;
	Tapio__V1__Frame *f;

	cr_assert(read_full(fd, hdr, 4), "no frame from the agent: %s", strerror(errno));
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	cr_assert(n > 0 && n < (4u << 20), "bad frame length %u", n);
	payload = malloc(n);
	cr_assert(read_full(fd, payload, n));
	f = tapio__v1__frame__unpack(NULL, n, payload);
	free(payload);
	cr_assert_not_null(f, "undecodable frame from the agent");
	return f;
}

/* Reads frames (answering batches with Acks) until one of kind `want`; caller frees it. */
static Tapio__V1__Frame *recv_until(int fd, Tapio__V1__Frame__MsgCase want)
{
	for (int i = 0; i < 200; i++) {
		Tapio__V1__Frame *f = recv_frame(fd);

		if (f->msg_case == want)
			return f;
		if (f->msg_case == TAPIO__V1__FRAME__MSG_EVENT_BATCH) {
			Tapio__V1__Frame a = TAPIO__V1__FRAME__INIT;
			Tapio__V1__Ack ack = TAPIO__V1__ACK__INIT;

			ack.session_id = f->event_batch->session_id;
			ack.durable_sequence = f->event_batch->sequence;
			a.msg_case = TAPIO__V1__FRAME__MSG_ACK;
			a.ack = &ack;
			send_frame(fd, &a);
		}
		tapio__v1__frame__free_unpacked(f, NULL);
	}
	cr_assert_fail("no %d frame from the agent", (int)want);
	return NULL;
}

/* Sends ConfigPush(generation, settings) with the given hash (NULL: the settings' hash). */
static void push_config(int fd, uint64_t generation, const struct tapio_settings *st,
			const char *hash)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__ConfigPush p = TAPIO__V1__CONFIG_PUSH__INIT;
	Tapio__V1__Settings ps;
	struct tapio_config kc;
	char h[CONFIG_HASH_LEN];

	settings_compile(st, generation, &kc);
	settings_to_proto(st, &ps);
	cr_assert_eq(config_hash_settings(st, h), 0);
	p.generation = generation;
	p.hash = (char *)(hash ? hash : h);
	p.config.data = (uint8_t *)&kc;
	p.config.len = sizeof(kc);
	p.settings = &ps;
	f.msg_case = TAPIO__V1__FRAME__MSG_CONFIG_PUSH;
	f.config_push = &p;
	cr_assert_eq(send_frame(fd, &f), 0);
}

Test(agent_controller, config_push_applied_reported_and_rejected, .timeout = 120)
{
	struct ctl c;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	struct timeval tv = {.tv_sec = 5};
	struct pollfd pfd;
	struct tapio_settings st;
	char hash[CONFIG_HASH_LEN];
	Tapio__V1__Frame w = TAPIO__V1__FRAME__INIT, *f;
	Tapio__V1__Welcome wel = TAPIO__V1__WELCOME__INIT;
	const struct match_comm gen6 = {"kernel.container.abnormal_exit", "h13-gen6", "exit_code",
					6};
	const struct match_comm ign5 = {"kernel.container.abnormal_exit", "h13-ign5", NULL, 0};
	bool container_running = false;
	json_t *o;
	int lfd, fd;

	SKIP_UNLESS_KERNEL();
	memset(&c, 0, sizeof(c));
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	c.port = ntohs(sa.sin_port);
	agent_start_yaml(&c, "container:\n  ignored_exit_codes: [143]\n", NULL);

	pfd = (struct pollfd){.fd = lfd, .events = POLLIN};
	cr_assert_eq(poll(&pfd, 1, 10000), 1, "the agent did not connect");
	fd = accept(lfd, NULL, NULL);
	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	/* Hello: identity, config.push capability, the local config (generation 0: every
	 * generation number is the controller's) */
	settings_defaults(&st);
	st.ignored_exit_codes[0] = 143;
	st.n_ignored_exit_codes = 1;
	cr_assert_eq(config_hash_settings(&st, hash), 0);
	f = recv_frame(fd);
	cr_assert_eq(f->msg_case, TAPIO__V1__FRAME__MSG_HELLO, "got %s", codec_frame_kind(f));
	cr_assert_str_eq(f->hello->node, "e2e-node");
	cr_assert_eq(f->hello->config_generation, 0);
	cr_assert_str_eq(f->hello->config_hash, hash);
	{
		bool push = false;
		for (size_t i = 0; i < f->hello->n_capabilities; i++)
			push |= strcmp(f->hello->capabilities[i], "config.push") == 0;
		cr_assert(push, "no config.push capability");
	}
	wel.wire_version = CODEC_WIRE_VERSION;
	wel.session_accepted = true;
	wel.heartbeat_interval_ms = 300;
	wel.session_id = f->hello->session_id;
	wel.max_frame_bytes = 4u << 20;
	wel.controller_id = "scripted";
	w.msg_case = TAPIO__V1__FRAME__MSG_WELCOME;
	w.welcome = &wel;
	tapio__v1__frame__free_unpacked(f, NULL);
	cr_assert_eq(send_frame(fd, &w), 0);

	/* a valid push: exit code 5 ignored from now on (143 no more), generation 42 */
	settings_defaults(&st);
	st.ignored_exit_codes[st.n_ignored_exit_codes++] = 5;
	cr_assert_eq(config_hash_settings(&st, hash), 0);
	push_config(fd, 42, &st, NULL);
	f = recv_until(fd, TAPIO__V1__FRAME__MSG_CONFIG_APPLIED);
	cr_assert_eq(f->config_applied->generation, 42);
	cr_assert_str_eq(f->config_applied->hash, hash);
	tapio__v1__frame__free_unpacked(f, NULL);

	/* it took effect in the kernel and the observers */
	child_exit("h13-ign5", 5);
	child_exit("h13-gen6", 6);
	o = harness_wait_for(&agent, match_comm, &gen6, 10000);
	cr_assert_not_null(o, "exit(6) after the push was not reported");
	cr_assert_eq(occ_data_int(o, "config_generation"), 42);
	cr_assert_eq(harness_count(&agent, match_comm, &ign5), 0,
		     "exit code 5 is ignored by the pushed config but was reported");

	/* heartbeats report the applied config, observer states and counters */
	for (int i = 0; i < 20; i++) {
		f = recv_until(fd, TAPIO__V1__FRAME__MSG_HEARTBEAT);
		if (f->heartbeat->config_generation == 42)
			break;
		tapio__v1__frame__free_unpacked(f, NULL);
		f = NULL;
	}
	cr_assert_not_null(f, "no heartbeat with generation 42");
	cr_assert_str_eq(f->heartbeat->config_hash, hash);
	cr_assert_not_null(f->heartbeat->counters);
	cr_assert_gt(f->heartbeat->counters->events, 0);
	cr_assert_eq(f->heartbeat->n_observers, 4);
	for (size_t i = 0; i < f->heartbeat->n_observers; i++)
		if (strcmp(f->heartbeat->observers[i]->name, "container") == 0)
			container_running = f->heartbeat->observers[i]->state ==
					    TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_RUNNING;
	cr_assert(container_running, "container observer not reported running");
	tapio__v1__frame__free_unpacked(f, NULL);

	/* invalid settings and a wrong hash are rejected with a reason; generation 42 stays */
	st.storage_critical_ms = st.storage_warning_ms - 1;
	push_config(fd, 43, &st, NULL);
	f = recv_until(fd, TAPIO__V1__FRAME__MSG_CONFIG_REJECTED);
	cr_assert_eq(f->config_rejected->generation, 43);
	cr_assert(strstr(f->config_rejected->reason, "critical") != NULL, "reason: %s",
		  f->config_rejected->reason);
	tapio__v1__frame__free_unpacked(f, NULL);
	settings_defaults(&st);
	push_config(fd, 44, &st, "sha256:0000");
	f = recv_until(fd, TAPIO__V1__FRAME__MSG_CONFIG_REJECTED);
	cr_assert_eq(f->config_rejected->generation, 44);
	cr_assert(strstr(f->config_rejected->reason, "does not match") != NULL, "reason: %s",
		  f->config_rejected->reason);
	tapio__v1__frame__free_unpacked(f, NULL);

	/* a local reload while the controller manages the agent keeps the controller's config:
	 * the file now ignores exit code 6, yet exit(6) is still reported under generation 42 */
	{
		char cfg[256], line[512];
		FILE *cf;

		snprintf(cfg, sizeof(cfg), "%s/agent.yaml", agent.dir);
		cf = fopen(cfg, "w");
		cr_assert_not_null(cf);
		fputs("container:\n  ignored_exit_codes: [6]\n", cf);
		cr_assert_eq(fclose(cf), 0);
		cr_assert_eq(kill(agent.pid, SIGHUP), 0);
		for (long long end = now_ms() + 10000;
		     now_ms() < end &&
		     !agent_log_last("follow the controller", line, sizeof(line));)
			harness_pump(&agent, 100);
		cr_assert(agent_log_last("follow the controller (config generation 42)", line,
					 sizeof(line)),
			  "the reload did not say the controller's config stays");
	}
	child_exit("h13-gen6", 6);
	for (long long end = now_ms() + 10000;
	     now_ms() < end && harness_count(&agent, match_comm, &gen6) < 2;)
		harness_pump(&agent, 100);
	cr_assert_eq(harness_count(&agent, match_comm, &gen6), 2);
	for (size_t i = 0; i < agent.n_occ; i++)
		if (match_comm(agent.occ[i], &gen6))
			cr_assert_eq(occ_data_int(agent.occ[i], "config_generation"), 42);

	cr_assert_eq(harness_stop(&agent), 0, "tapio-agent did not exit cleanly");
	close(fd);
	close(lfd);
	agent_cleanup();
}
