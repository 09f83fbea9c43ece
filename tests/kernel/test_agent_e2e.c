/*
 * End-to-end tests on the real kernel: the real tapio-agent process with its real BPF
 * programs; facts are provoked for real (closed ports, dropped SYNs, dropped data, signals,
 * a memory cgroup OOM) and the JSON occurrences it prints are checked field by field.
 * Needs root; every skip prints its reason.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_harness.h"

/* Short windows so the tests do not wait for production defaults. */
static const char *const E2E_CONFIG = "network:\n"
				      "  conn_refused_window_ms: 300\n"
				      "  retransmit_window_ms: 5000\n"
				      "  retransmit_burst_threshold: 3\n";

#define SKIP_UNLESS_KERNEL()                                 \
	do {                                                 \
		const char *why_;                            \
		if (!harness_kernel_ok(&why_)) {             \
			cr_log_warn("%s", why_);             \
			fprintf(stderr, "SKIP: %s\n", why_); \
			cr_skip_test("%s", why_);            \
		}                                            \
	} while (0)

static struct agent_proc agent;

static void start_agent(void)
{
	int rc = harness_start(&agent, E2E_CONFIG, NULL);

	cr_assert_eq(rc, 0, "tapio-agent did not become ready: %s", strerror(-rc));
}

static void stop_agent(void)
{
	cr_assert_eq(harness_stop(&agent), 0, "tapio-agent did not exit cleanly on SIGTERM");
}

/* A TCP port on 127.0.0.1 that nothing listens on. */
static int closed_port(void)
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

static int listen_port(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(s >= 0);
	cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(s, 16), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return s;
}

/* Forks a child named `comm` that connects to 127.0.0.1:port and exits with the errno. */
static pid_t connect_child(const char *comm, int port, int syncnt, int *child_errno)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int s = socket(AF_INET, SOCK_STREAM, 0);

		prctl(PR_SET_NAME, comm);
		if (syncnt > 0)
			setsockopt(s, IPPROTO_TCP, TCP_SYNCNT, &syncnt, sizeof(syncnt));
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			_exit(0);
		_exit(errno & 0xff);
	}
	int status;

	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	*child_errno = WEXITSTATUS(status);
	return pid;
}

/*
 * Packets are dropped on the INPUT hook: a drop on OUTPUT fails the local transmit itself, so
 * the kernel never counts a retransmission (tcp_retransmit_skb does not fire).
 */
static bool have_nft(void)
{
	return system("nft list tables >/dev/null 2>&1") == 0;
}

static void nft(const char *fmt, int port)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), fmt, (int)getpid(), port);
	cr_assert_eq(system(cmd), 0, "nft failed: %s", cmd);
}

static void nft_cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "nft delete table inet tapio_e2e_%d >/dev/null 2>&1", getpid());
	if (system(cmd) != 0) {
		/* not created: nothing to remove */
	}
}

TestSuite(agent_e2e, .init = NULL, .fini = nft_cleanup);

Test(agent_e2e, connection_refused_exactly_once, .timeout = 90)
{
	SKIP_UNLESS_KERNEL();
	start_agent();

	int port = closed_port(), err;
	pid_t child = connect_child("tapio-refuse", port, 0, &err);

	cr_assert_eq(err, ECONNREFUSED, "the connect was not refused (errno %d)", err);

	struct match_int refused = {"kernel.network.connection_refused", "dst_port", port};
	struct match_int timeout = {"kernel.network.connection_timeout", "dst_port", port};
	json_t *o = harness_wait_for(&agent, harness_match_type_int, &refused, 10000);

	cr_assert_not_null(o, "no connection_refused for port %d", port);
	cr_expect_eq(occ_data_int(o, "pid"), child);
	cr_expect_str_eq(occ_data_str(o, "comm"), "tapio-refuse");
	cr_expect_str_eq(occ_data_str(o, "dst_ip"), "127.0.0.1");
	cr_expect_str_eq(occ_data_str(o, "family"), "ipv4");
	cr_expect_eq(occ_data_int(o, "count"), 1);
	cr_expect_str_eq(occ_str(o, "severity"), "warning");
	cr_expect_str_eq(occ_str(o, "outcome"), "failure");
	cr_expect_str_eq(occ_str(o, "source"), "tapio");
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "code")),
			 "CONNECTION_REFUSED");
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(o, "context"), "node")),
			 "e2e-node");
	cr_expect_eq(strlen(occ_str(o, "id")), 26);

	/* Let every window close, then make sure it was the only fact about this port. */
	harness_pump(&agent, 1500);
	cr_expect_eq(harness_count(&agent, harness_match_type_int, &refused), 1);
	cr_expect_eq(harness_count(&agent, harness_match_type_int, &timeout), 0,
		     "a refused connect must not also be reported as a timeout");
	stop_agent();
}

Test(agent_e2e, refusals_collapse_with_count, .timeout = 90)
{
	SKIP_UNLESS_KERNEL();
	start_agent();

	int port = closed_port(), err;

	for (int i = 0; i < 5; i++)
		connect_child("tapio-refuse5", port, 0, &err);

	struct match_int refused = {"kernel.network.connection_refused", "dst_port", port};
	json_t *o = harness_wait_for(&agent, harness_match_type_int, &refused, 10000);

	cr_assert_not_null(o);
	harness_pump(&agent, 1000);
	long long total = 0;

	for (size_t i = 0; i < agent.n_occ; i++)
		if (harness_match_type_int(agent.occ[i], &refused))
			total += occ_data_int(agent.occ[i], "count");
	cr_expect_eq(total, 5, "5 refusals must be counted exactly, got %lld", total);
	cr_expect_lt(harness_count(&agent, harness_match_type_int, &refused), 5,
		     "refusals inside one window must collapse");
	cr_expect_not_null(occ_data_str(o, "first_seen"));
	cr_expect_not_null(occ_data_str(o, "last_seen"));
	stop_agent();
}

Test(agent_e2e, unanswered_syn_is_a_timeout, .timeout = 90)
{
	SKIP_UNLESS_KERNEL();
	if (!have_nft())
		cr_skip_test("nft is not usable here: cannot drop SYNs");
	int port = closed_port(), err;

	nft("nft add table inet tapio_e2e_%d", 0);
	nft("nft add chain inet tapio_e2e_%d in '{ type filter hook input priority 0; }'", 0);
	nft("nft add rule inet tapio_e2e_%d in ip daddr 127.0.0.1 tcp dport %d drop", port);
	start_agent();

	/* TCP_SYNCNT=1: one retry, the connect gives up after ~3 s. */
	pid_t child = connect_child("tapio-synto", port, 1, &err);

	cr_assert_eq(err, ETIMEDOUT, "connect should time out (errno %d)", err);

	struct match_int timeout = {"kernel.network.connection_timeout", "dst_port", port};
	struct match_int refused = {"kernel.network.connection_refused", "dst_port", port};
	json_t *o = harness_wait_for(&agent, harness_match_type_int, &timeout, 10000);

	cr_assert_not_null(o, "no connection_timeout for port %d", port);
	cr_expect_eq(occ_data_int(o, "pid"), child);
	cr_expect_str_eq(occ_data_str(o, "comm"), "tapio-synto");
	cr_expect_str_eq(occ_str(o, "severity"), "error");
	cr_expect_str_eq(occ_str(o, "outcome"), "timeout");
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "code")),
			 "SYN_TIMEOUT");
	harness_pump(&agent, 1000);
	cr_expect_eq(harness_count(&agent, harness_match_type_int, &refused), 0);
	stop_agent();
	nft_cleanup();
}

Test(agent_e2e, dropped_data_is_a_retransmit_spike, .timeout = 120)
{
	SKIP_UNLESS_KERNEL();
	if (!have_nft())
		cr_skip_test("nft is not usable here: cannot drop packets");
	int port;
	int ls = listen_port(&port);

	start_agent();
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int c = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_eq(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	int srv = accept(ls, NULL, NULL);

	cr_assert(srv >= 0);
	nft("nft add table inet tapio_e2e_%d", 0);
	nft("nft add chain inet tapio_e2e_%d in '{ type filter hook input priority 0; }'", 0);
	nft("nft add rule inet tapio_e2e_%d in ip daddr 127.0.0.1 tcp dport %d drop", port);
	cr_assert_eq(write(c, "evidence, not exhaust", 21), 21);

	struct match_int spike = {"kernel.network.retransmit_spike", "dst_port", port};
	json_t *o = harness_wait_for(&agent, harness_match_type_int, &spike, 20000);

	cr_assert_not_null(o, "no retransmit_spike for port %d", port);
	cr_expect_geq(occ_data_int(o, "count"), 3);
	cr_expect_eq(occ_data_int(o, "pid") >= 0, 1);
	cr_expect_str_eq(occ_data_str(o, "dst_ip"), "127.0.0.1");
	cr_expect_geq(occ_data_int(o, "total_retrans"), 3);
	nft_cleanup();
	close(c);
	close(srv);
	close(ls);
	stop_agent();
}

static pid_t spawn_exit_child(const char *comm, int how)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		struct rlimit no_core = {0, 0};

		setrlimit(RLIMIT_CORE, &no_core);
		prctl(PR_SET_NAME, comm);
		switch (how) {
		case 0:
			_exit(0);
		case 3:
			_exit(3);
		case SIGSEGV:
			signal(SIGSEGV, SIG_DFL);
			raise(SIGSEGV);
			_exit(99);
		default:
			pause();
			_exit(98);
		}
	}
	return pid;
}

Test(agent_e2e, abnormal_exits_with_exact_facts, .timeout = 90)
{
	SKIP_UNLESS_KERNEL();
	start_agent();

	pid_t segv = spawn_exit_child("tapio-segv", SIGSEGV);
	pid_t killed = spawn_exit_child("tapio-kill", SIGKILL);
	pid_t three = spawn_exit_child("tapio-exit3", 3);
	pid_t clean = spawn_exit_child("tapio-clean", 0);
	int status;

	usleep(100 * 1000);
	kill(killed, SIGKILL);
	waitpid(segv, &status, 0);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
	waitpid(killed, &status, 0);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	waitpid(three, &status, 0);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3);
	waitpid(clean, &status, 0);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	const char *t = "kernel.container.abnormal_exit";
	struct match_int m_segv = {t, "pid", segv}, m_kill = {t, "pid", killed};
	struct match_int m_three = {t, "pid", three}, m_clean = {t, "pid", clean};
	json_t *o;

	o = harness_wait_for(&agent, harness_match_type_int, &m_segv, 10000);
	cr_assert_not_null(o, "no abnormal_exit for the SIGSEGV child %d", segv);
	cr_expect_eq(occ_data_int(o, "signal"), SIGSEGV);
	cr_expect_eq(occ_data_int(o, "exit_code"), 0);
	cr_expect_str_eq(occ_data_str(o, "comm"), "tapio-segv");
	cr_expect_str_eq(occ_str(o, "severity"), "error");
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "code")),
			 "ABNORMAL_EXIT");

	o = harness_wait_for(&agent, harness_match_type_int, &m_kill, 10000);
	cr_assert_not_null(o, "no abnormal_exit for the SIGKILL child %d", killed);
	cr_expect_eq(occ_data_int(o, "signal"), SIGKILL);
	cr_expect_str_eq(occ_data_str(o, "comm"), "tapio-kill");

	o = harness_wait_for(&agent, harness_match_type_int, &m_three, 10000);
	cr_assert_not_null(o, "no abnormal_exit for the exit(3) child %d", three);
	cr_expect_eq(occ_data_int(o, "exit_code"), 3);
	cr_expect_eq(occ_data_int(o, "signal"), 0);
	cr_expect_str_eq(occ_data_str(o, "comm"), "tapio-exit3");
	cr_expect_str_eq(occ_str(o, "severity"), "warning");

	harness_pump(&agent, 1000);
	cr_expect_eq(harness_count(&agent, harness_match_type_int, &m_clean), 0,
		     "a clean exit must yield nothing");
	stop_agent();
}

/* Memory cgroup for the OOM test: v1 (memory.limit_in_bytes) or v2 (memory.max). */
static char cg_dir[256];

static int write_file(const char *dir, const char *name, const char *value)
{
	char path[384];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static void cg_cleanup(void)
{
	if (cg_dir[0])
		rmdir(cg_dir);
	cg_dir[0] = '\0';
}

Test(agent_e2e, oom_kill_names_the_victim, .timeout = 120, .fini = cg_cleanup)
{
	SKIP_UNLESS_KERNEL();
	const char *limit_file;
	char name[64];

	snprintf(name, sizeof(name), "tapio-e2e-%d", getpid());
	if (access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) == 0 ||
	    access("/sys/fs/cgroup/memory/cgroup.procs", F_OK) == 0) {
		snprintf(cg_dir, sizeof(cg_dir), "/sys/fs/cgroup/memory/%s", name);
		limit_file = "memory.limit_in_bytes";
	} else if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {
		snprintf(cg_dir, sizeof(cg_dir), "/sys/fs/cgroup/%s", name);
		limit_file = "memory.max";
	} else {
		cr_skip_test("no memory cgroup hierarchy mounted: cannot provoke an OOM kill");
	}
	cr_assert_eq(mkdir(cg_dir, 0755), 0, "mkdir %s: %s", cg_dir, strerror(errno));
	cr_assert_eq(write_file(cg_dir, limit_file, "33554432"), 0);
	start_agent();

	pid_t child = fork();

	cr_assert(child >= 0);
	if (child == 0) {
		char pid[32];

		prctl(PR_SET_NAME, "tapio-oomer");
		snprintf(pid, sizeof(pid), "%d", getpid());
		if (write_file(cg_dir, "cgroup.procs", pid) != 0)
			_exit(90);
		size_t sz = 256u << 20;
		char *p = malloc(sz);

		if (!p)
			_exit(91);
		for (size_t i = 0; i < sz; i += 4096)
			p[i] = 1;
		_exit(92);
	}
	int status;

	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		  "the child was not OOM-killed (status 0x%x)", status);

	struct match_int m = {"kernel.container.oom_kill", "pid", child};
	json_t *o = harness_wait_for(&agent, harness_match_type_int, &m, 10000);

	cr_assert_not_null(o, "no oom_kill for pid %d", child);
	cr_expect_str_eq(occ_data_str(o, "comm"), "tapio-oomer");
	cr_expect_eq(occ_data_int(o, "memory_limit_bytes"), 33554432);
	cr_expect_gt(occ_data_int(o, "memory_usage_bytes"), 0);
	cr_expect_gt(occ_data_int(o, "rss_bytes"), 0);
	const char *path = occ_data_str(o, "cgroup_path");

	cr_assert_not_null(path);
	cr_expect(strlen(path) >= strlen(name) &&
		      strcmp(path + strlen(path) - strlen(name), name) == 0,
		  "cgroup_path '%s' does not end with '%s'", path, name);
	cr_expect_str_eq(occ_str(o, "severity"), "critical");
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "code")),
			 "OOM_KILL");
	stop_agent();
}
