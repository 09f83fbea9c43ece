/*
 * Remote configuration end to end on the real kernel: the real tapio-agent (real BPF, root)
 * connected to the real tapio-controller started with --profile. The profile is the only
 * source of the agent's settings here:
 *   1. generation 1 disables the network observer for this node (override by node glob):
 *      a refused connect yields nothing, while an exit with code 42 is still reported
 *      under generation 1;
 *   2. the file is rewritten (generation 2: network enabled, exit code 42 ignored): a
 *      refused connect yields one connection_refused carrying config_generation 2, exit
 *      code 42 is no longer reported, exit code 43 is, with generation 2;
 *   3. controller down, agent restarted: it reapplies the stored generation 2 (42 still
 *      ignored, 43 reported under generation 2) and says so in its log; a controller
 *      without a profile then sees stale_config in its heartbeats.
 * Needs root; every skip prints its reason.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_harness.h"

#define CTL_BIN TAPIO_BIN_DIR "/tapio-controller"

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct agent_proc agent;
static bool agent_running;
static char root[64], data[128], agent_data[128], profile[128], ctl_log[128];
static pid_t ctl_pid = -1;
static int ctl_port;

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

static int count_in_file(const char *path, const char *needle)
{
	static char line[1 << 18];
	int n = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static void write_profile(const char *text)
{
	char tmp[160];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", profile);
	f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, profile), 0);
}

/* Starts the controller (1 s heartbeats, API off), with --profile when with_profile. */
static void ctl_start(bool with_profile)
{
	char listen[64];

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", ctl_port);
	truncate(ctl_log, 0);
	ctl_pid = fork();
	cr_assert(ctl_pid >= 0);
	if (ctl_pid == 0) {
		int fd = open(ctl_log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		dup2(fd, 2);
		if (with_profile)
			execl(CTL_BIN, CTL_BIN, "--listen", listen, "--data-dir", data, "--http",
			      "off", "--heartbeat-interval", "1s", "--profile", profile,
			      (char *)NULL);
		else
			execl(CTL_BIN, CTL_BIN, "--listen", listen, "--data-dir", data, "--http",
			      "off", "--heartbeat-interval", "1s", (char *)NULL);
		_exit(127);
	}
	for (long long end = now_ms() + 15000; now_ms() < end; usleep(20000)) {
		if (count_in_file(ctl_log, "ready: listening on"))
			return;
		cr_assert_eq(waitpid(ctl_pid, NULL, WNOHANG), 0, "tapio-controller exited early");
	}
	cr_assert_fail("tapio-controller not ready within 15 s");
}

static void ctl_stop(void)
{
	int st;

	if (ctl_pid <= 0)
		return;
	kill(ctl_pid, SIGTERM);
	waitpid(ctl_pid, &st, 0);
	ctl_pid = -1;
}

static void agent_start(void)
{
	char addr[64];
	const char *args[] = {"--sink",
			      "controller",
			      "--controller",
			      addr,
			      "--heartbeat-interval",
			      "1",
			      "--data-dir",
			      agent_data,
			      "--stats-interval",
			      "1",
			      NULL};

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ctl_port);
	cr_assert_eq(harness_start(&agent, NULL, args), 0, "tapio-agent did not become ready");
	agent_running = true;
}

static void agent_stop(void)
{
	if (agent_running)
		harness_stop(&agent);
	agent_running = false;
}

/* Pumps the agent's stdout until its log holds `count` lines with needle. */
static void wait_agent_log(const char *needle, int count, int timeout_ms)
{
	for (long long end = now_ms() + timeout_ms; now_ms() < end;) {
		if (count_in_file(agent.errpath, needle) >= count)
			return;
		harness_pump(&agent, 100);
	}
	harness_dump_log(&agent);
	cr_assert_fail("no '%s' (x%d) in the agent log within %d ms", needle, count, timeout_ms);
}

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
};

static bool match_comm(json_t *occ, const void *arg)
{
	const struct match_comm *m = arg;
	const char *type = occ_str(occ, "type");
	const char *comm = occ_data_str(occ, "comm");

	return type && comm && strcmp(type, m->type) == 0 && strcmp(comm, m->comm) == 0;
}

#define REFUSED "kernel.network.connection_refused"
#define EXIT	"kernel.container.abnormal_exit"

/* Exactly one occurrence (type, comm) within timeout_ms; returns its config_generation. */
static long long expect_one(const char *type, const char *comm, int timeout_ms)
{
	const struct match_comm m = {type, comm};
	json_t *o = harness_wait_for(&agent, &match_comm, &m, timeout_ms);

	if (!o)
		harness_dump_log(&agent);
	cr_assert_not_null(o, "no %s from %s", type, comm);
	harness_pump(&agent, 300);
	cr_assert_eq(harness_count(&agent, match_comm, &m), 1, "%s from %s reported twice", type,
		     comm);
	return occ_data_int(o, "config_generation");
}

/* Nothing (type, comm) for wait_ms. */
static void expect_none(const char *type, const char *comm, int wait_ms)
{
	const struct match_comm m = {type, comm};

	cr_assert_null(harness_wait_for(&agent, &match_comm, &m, wait_ms),
		       "%s from %s was reported although the config excludes it", type, comm);
}

static void setup(void)
{
	const char *why;

	if (!harness_kernel_ok(&why)) {
		fprintf(stderr, "SKIP: %s\n", why);
		cr_skip_test("%s", why);
	}
	if (access(CTL_BIN, X_OK) != 0) {
		fprintf(stderr, "SKIP: %s was not built\n", CTL_BIN);
		cr_skip_test("%s was not built", CTL_BIN);
	}
	snprintf(root, sizeof(root), "/tmp/tapio-h19-cfg-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	snprintf(data, sizeof(data), "%s/ctl", root);
	snprintf(agent_data, sizeof(agent_data), "%s/agent", root);
	snprintf(profile, sizeof(profile), "%s/profile.yaml", root);
	snprintf(ctl_log, sizeof(ctl_log), "%s/controller.log", root);
	cr_assert_eq(mkdir(agent_data, 0755), 0);
	ctl_port = free_port();
}

static void teardown(void)
{
	char cmd[128];

	agent_stop();
	ctl_stop();
	if (root[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
		if (system(cmd) != 0)
			fprintf(stderr, "cleanup of %s failed\n", root);
	}
}

TestSuite(config_e2e, .init = setup, .fini = teardown, .timeout = 240);

Test(config_e2e, profile_drives_the_kernel_and_survives_an_agent_restart)
{
	int closed = free_port();

	/* 1. network off for this node (node glob), nothing ignored */
	write_profile("version: 1\n"
		      "name: e2e\n"
		      "overrides:\n"
		      "  - match: {node: \"e2e-*\"}\n"
		      "    network: {enabled: false}\n");
	ctl_start(true);
	agent_start();
	wait_agent_log("controller: applied config generation 1", 1, 15000);
	child_refused("h19-ref-off", closed);
	child_exit("h19-x42-gen1", 42);
	cr_assert_eq(expect_one(EXIT, "h19-x42-gen1", 10000), 1);
	expect_none(REFUSED, "h19-ref-off", 2000);

	/* 2. network on, exit code 42 ignored: generation 2 reaches the kernel */
	write_profile("version: 1\n"
		      "name: e2e\n"
		      "defaults:\n"
		      "  container: {ignored_exit_codes: [42]}\n");
	wait_agent_log("controller: applied config generation 2", 1, 15000);
	child_refused("h19-ref-on", closed);
	cr_assert_eq(expect_one(REFUSED, "h19-ref-on", 10000), 2,
		     "the refusal is judged under generation 2");
	child_exit("h19-x42-gen2", 42);
	child_exit("h19-x43-gen2", 43);
	cr_assert_eq(expect_one(EXIT, "h19-x43-gen2", 10000), 2);
	expect_none(EXIT, "h19-x42-gen2", 1500);

	/* 3. controller down, agent restarted: the stored generation 2 comes back */
	ctl_stop();
	agent_stop();
	cr_assert_eq(access(agent_data, F_OK), 0);
	agent_start();
	wait_agent_log("restored config generation 2", 1, 5000);
	cr_assert_eq(count_in_file(agent.errpath, "config_generation=2"), 1,
		     "the start line names the restored generation");
	child_exit("h19-x42-rst", 42);
	child_exit("h19-x43-rst", 43);
	cr_assert_eq(expect_one(EXIT, "h19-x43-rst", 10000), 2);
	expect_none(EXIT, "h19-x42-rst", 1500);

	/* a controller without a profile pushes nothing: heartbeats say stale_config */
	ctl_start(false);
	for (long long end = now_ms() + 60000;; usleep(200000)) {
		harness_pump(&agent, 50);
		kill(ctl_pid, SIGUSR1);
		usleep(100000);
		if (count_in_file(ctl_log, "\"stale_config\"") > 0)
			break;
		cr_assert_lt(now_ms(), end, "no stale_config in the controller's registry");
	}
	cr_assert_eq(count_in_file(agent.errpath, "no longer stale"), 0);
}
