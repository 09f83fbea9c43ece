/*
 * Real-kernel tests of the loader and the BPF programs: provoke real facts (a refused
 * connect, abnormal and clean exits, an OOM kill in a memory-limited cgroup) and assert the
 * exact record fields. Needs root and kernel BTF; every skip says why.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/loader.h"
#include "ebpf/headers/container.h"
#include "ebpf/headers/network.h"
#include "ebpf/headers/storage.h"

#define MAX_RECORDS 4096

struct captured {
	enum tapio_observer obs;
	size_t len;
	union {
		struct tapio_net_event net;
		struct tapio_container_event ct;
		struct tapio_storage_event st;
		unsigned char raw[256];
	} u;
};

static struct captured records[MAX_RECORDS];
static size_t n_records;

static void on_record(void *ctx, enum tapio_observer obs, const void *data, size_t len)
{
	struct captured *c;

	(void)ctx;
	if (n_records >= MAX_RECORDS)
		return;
	c = &records[n_records++];
	c->obs = obs;
	c->len = len;
	memcpy(c->u.raw, data, len < sizeof(c->u.raw) ? len : sizeof(c->u.raw));
}

static void skip_unless_capable(void)
{
	if (geteuid() != 0)
		cr_skip_test("real-kernel test needs root (CAP_BPF, CAP_PERFMON)");
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
		cr_skip_test("kernel has no BTF at /sys/kernel/btf/vmlinux");
}

static struct tapio_config enabled_config(uint64_t generation)
{
	struct tapio_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.abi_version = TAPIO_ABI_VERSION;
	cfg.generation = generation;
	cfg.flags = TAPIO_F_NET_CONNECT | TAPIO_F_NET_RETRANS | TAPIO_F_NET_RTT | TAPIO_F_CT_OOM |
		    TAPIO_F_CT_EXIT | TAPIO_F_ST_LATENCY | TAPIO_F_ST_ERROR | TAPIO_F_NODE_PMC;
	cfg.rtt_sample_interval_ns = 1000000000ull;
	cfg.storage_latency_min_ns = 50000000ull;
	return cfg;
}

static struct loader *load(const struct tapio_config *cfg)
{
	char errbuf[256] = "";
	int err = 0;
	struct loader *l = loader_new(cfg, 1000, on_record, NULL, &err, errbuf, sizeof(errbuf));

	cr_assert_not_null(l, "loader_new: %d %s", err, errbuf);
	cr_assert_eq(err, 0);
	n_records = 0;
	return l;
}

/* Polls the observer's ring fd and consumes for `ms` milliseconds. */
static void drain(struct loader *l, enum tapio_observer obs, int ms)
{
	struct pollfd pfd = {.fd = loader_ring_fd(l, obs), .events = POLLIN};
	struct timespec start, now;
	int left = ms;

	cr_assert_geq(pfd.fd, 0);
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (left > 0) {
		poll(&pfd, 1, left);
		cr_assert_geq(loader_consume(l, obs, 64), 0);
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = ms - (int)((now.tv_sec - start.tv_sec) * 1000 +
				  (now.tv_nsec - start.tv_nsec) / 1000000);
	}
}

static const struct tapio_container_event *find_exit(pid_t pid, uint32_t kind)
{
	size_t i;

	for (i = 0; i < n_records; i++)
		if (records[i].obs == TAPIO_OBS_CONTAINER && records[i].u.ct.kind == kind &&
		    records[i].u.ct.pid == (uint32_t)pid)
			return &records[i].u.ct;
	return NULL;
}

static size_t count_connect_fail(uint16_t port)
{
	size_t i, n = 0;

	for (i = 0; i < n_records; i++)
		if (records[i].obs == TAPIO_OBS_NETWORK &&
		    records[i].u.net.kind == TAPIO_NET_CONNECT_FAIL &&
		    records[i].u.net.dport == port)
			n++;
	return n;
}

static const struct tapio_net_event *find_connect_fail(uint16_t port)
{
	size_t i;

	for (i = 0; i < n_records; i++)
		if (records[i].obs == TAPIO_OBS_NETWORK &&
		    records[i].u.net.kind == TAPIO_NET_CONNECT_FAIL &&
		    records[i].u.net.dport == port)
			return &records[i].u.net;
	return NULL;
}

/* A loopback port nobody listens on: bind to an ephemeral port, then close it. */
static uint16_t closed_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void connect_refused(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				.sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), -1);
	cr_assert_eq(errno, ECONNREFUSED, "connect: %s", strerror(errno));
	close(fd);
}

/* Forks a child that exits with `code` (or, with sig, is killed by it); returns its pid. */
static pid_t child_exit(int code, int sig)
{
	int status;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_NAME, "tapio-child", 0, 0, 0);
		if (sig)
			for (;;)
				pause();
		_exit(code);
	}
	if (sig) {
		usleep(20000);
		kill(pid, sig);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return pid;
}

Test(loader, states_on_this_kernel, .timeout = 60)
{
	struct tapio_config cfg = enabled_config(7);
	const struct loader_status *st;
	struct loader *l;
	uint64_t kc[TAPIO_KC__COUNT];
	int obs;

	skip_unless_capable();
	l = load(&cfg);
	for (obs = TAPIO_OBS_NETWORK; obs <= TAPIO_OBS_STORAGE; obs++) {
		st = loader_get_status(l, obs);
		cr_assert_not_null(st);
		cr_expect_eq(st->state, OBSERVER_RUNNING, "%s: %s (%s)", tapio_observer_name(obs),
			     observer_state_name(st->state), st->reason);
		cr_expect_eq(st->programs_attached, st->programs_total);
		cr_expect_gt(st->programs_total, 0);
		cr_expect_geq(loader_ring_fd(l, obs), 0);
		cr_expect_eq(loader_kcounters(l, obs, kc), 0);
	}
	st = loader_get_status(l, TAPIO_OBS_NODE);
	if (access("/sys/bus/event_source/devices/cpu/type", F_OK) != 0 &&
	    access("/sys/bus/event_source/devices/cpu_core/type", F_OK) != 0) {
		cr_expect_eq(st->state, OBSERVER_UNSUPPORTED, "node: %s (%s)",
			     observer_state_name(st->state), st->reason);
		cr_expect(strstr(st->reason, "no hardware PMU") != NULL, "reason: %s", st->reason);
		cr_expect_eq(loader_ring_fd(l, TAPIO_OBS_NODE), -1);
		cr_expect_eq(loader_consume(l, TAPIO_OBS_NODE, 8), -ENODEV);
	}
	cr_expect_str_eq(observer_state_name(OBSERVER_UNSUPPORTED), "unsupported");
	cr_expect_str_eq(observer_state_name(OBSERVER_DEGRADED), "degraded");
	loader_free(l);
}

Test(loader, connect_refused_is_one_record_with_rst, .timeout = 60)
{
	struct tapio_config cfg = enabled_config(7);
	const struct tapio_net_event *e;
	struct loader *l;
	uint16_t port;
	uint32_t lo = htonl(INADDR_LOOPBACK);

	skip_unless_capable();
	l = load(&cfg);
	port = closed_port();
	connect_refused(port);
	drain(l, TAPIO_OBS_NETWORK, 300);
	e = find_connect_fail(port);
	cr_assert_not_null(e, "no CONNECT_FAIL for port %u among %zu records", port, n_records);
	cr_expect_eq(count_connect_fail(port), 1);
	cr_expect_eq(e->sk_err, ECONNREFUSED);
	cr_expect_eq(e->rst_seen, 1);
	cr_expect_eq(e->pid, (uint32_t)getpid());
	cr_expect_eq(e->family, AF_INET);
	cr_expect_eq(e->old_state, 2 /* TCP_SYN_SENT */);
	cr_expect_eq(e->new_state, 7 /* TCP_CLOSE */);
	cr_expect_eq(memcmp(e->daddr, &lo, 4), 0);
	cr_expect_eq(memcmp(e->saddr, &lo, 4), 0);
	cr_expect_neq(e->sport, 0);
	cr_expect_eq(e->config_generation, 7);
	cr_expect_neq(e->ts_ns, 0);
	loader_free(l);
}

Test(loader, abnormal_exits_and_signals, .timeout = 60)
{
	struct tapio_config cfg = enabled_config(7);
	const struct tapio_container_event *e;
	struct loader *l;
	pid_t code3, killed, clean;

	skip_unless_capable();
	l = load(&cfg);
	code3 = child_exit(3, 0);
	killed = child_exit(0, SIGKILL);
	clean = child_exit(0, 0);
	drain(l, TAPIO_OBS_CONTAINER, 300);

	e = find_exit(code3, TAPIO_CT_EXIT);
	cr_assert_not_null(e, "no EXIT record for pid %d", code3);
	cr_expect_eq(e->exit_code, 3 << 8);
	cr_expect_eq(e->tid, (uint32_t)code3);
	cr_expect_eq(e->ppid, (uint32_t)getpid());
	cr_expect_eq(e->uid, 0);
	cr_expect_str_eq(e->comm, "tapio-child");
	cr_expect_eq(e->config_generation, 7);
	cr_expect_neq(e->cgroup_id, 0);
	cr_expect_eq(e->cgroup_path[0], '/', "cgroup_path '%s'", e->cgroup_path);

	e = find_exit(killed, TAPIO_CT_EXIT);
	cr_assert_not_null(e, "no EXIT record for killed pid %d", killed);
	cr_expect_eq(e->exit_code & 0x7f, SIGKILL);

	cr_expect_null(find_exit(clean, TAPIO_CT_EXIT), "a clean exit was reported");
	loader_free(l);
}

Test(loader, all_zero_config_is_inert, .timeout = 60)
{
	struct tapio_config cfg;
	struct loader *l;
	uint16_t port;
	pid_t code3;
	size_t i;

	skip_unless_capable();
	memset(&cfg, 0, sizeof(cfg));
	l = load(&cfg);
	port = closed_port();
	connect_refused(port);
	code3 = child_exit(3, 0);
	child_exit(0, SIGKILL);
	drain(l, TAPIO_OBS_NETWORK, 200);
	drain(l, TAPIO_OBS_CONTAINER, 200);
	drain(l, TAPIO_OBS_STORAGE, 100);
	for (i = 0; i < n_records; i++)
		cr_expect_fail("inert config emitted a record (observer %d, len %zu)",
			       records[i].obs, records[i].len);
	cr_expect_eq(count_connect_fail(port), 0);
	cr_expect_null(find_exit(code3, TAPIO_CT_EXIT));

	/* a wrong abi_version is just as inert as all-zero */
	cfg = enabled_config(9);
	cfg.abi_version = TAPIO_ABI_VERSION + 1;
	cr_assert_eq(loader_apply_config(l, &cfg), 0);
	code3 = child_exit(3, 0);
	drain(l, TAPIO_OBS_CONTAINER, 200);
	cr_expect_null(find_exit(code3, TAPIO_CT_EXIT));
	loader_free(l);
}

Test(loader, apply_config_restamps_without_reload, .timeout = 60)
{
	struct tapio_config cfg = enabled_config(7);
	const struct tapio_container_event *e;
	struct loader *l;
	pid_t a, b, c;
	int fd_before;

	skip_unless_capable();
	l = load(&cfg);
	fd_before = loader_ring_fd(l, TAPIO_OBS_CONTAINER);
	cfg.generation = 8;
	cfg.n_ignored_exit_codes = 1;
	cfg.ignored_exit_codes[0] = 3;
	cr_assert_eq(loader_apply_config(l, &cfg), 0);
	cr_expect_eq(loader_ring_fd(l, TAPIO_OBS_CONTAINER), fd_before);
	a = child_exit(4, 0);
	b = child_exit(3, 0); /* ignored by config */
	c = child_exit(0, SIGKILL);
	drain(l, TAPIO_OBS_CONTAINER, 300);
	e = find_exit(a, TAPIO_CT_EXIT);
	cr_assert_not_null(e);
	cr_expect_eq(e->config_generation, 8);
	cr_expect_eq(e->exit_code, 4 << 8);
	cr_expect_null(find_exit(b, TAPIO_CT_EXIT), "ignored exit code 3 was reported");
	e = find_exit(c, TAPIO_CT_EXIT);
	cr_assert_not_null(e, "a signal death must be reported whatever the ignored codes");
	cr_expect_eq(e->config_generation, 8);
	loader_free(l);
}

Test(loader, consume_respects_budget, .timeout = 60)
{
	struct tapio_config cfg = enabled_config(7);
	struct loader *l;
	int i, n, total = 0;

	skip_unless_capable();
	l = load(&cfg);
	for (i = 0; i < 5; i++)
		child_exit(10 + i, 0);
	usleep(100000);
	n = loader_consume(l, TAPIO_OBS_CONTAINER, 2);
	cr_expect_eq(n, 2);
	cr_expect_eq(n_records, 2);
	total += n;
	while ((n = loader_consume(l, TAPIO_OBS_CONTAINER, 2)) > 0)
		total += n;
	cr_expect_eq(n, 0);
	cr_expect_geq(total, 5);
	cr_expect_eq((size_t)total, n_records);
	cr_expect_eq(loader_consume(l, TAPIO_OBS_CONTAINER, 0), 0);
	loader_free(l);
}

static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, value, strlen(value));
	close(fd);
	return n == (ssize_t)strlen(value) ? 0 : -EIO;
}

/*
 * A child moved into a 32 MiB memory cgroup (v1 here) touches 256 MiB: the OOM killer marks
 * it, and the record must carry the victim's own pid/comm and its cgroup's limit and path.
 */
Test(loader, oom_victim_in_memory_cgroup, .timeout = 120)
{
	const uint64_t limit = 32ull << 20;
	struct tapio_config cfg = enabled_config(7);
	const struct tapio_container_event *e;
	char dir[128], path[192], pidbuf[32], name[64];
	struct loader *l;
	int sync_pipe[2], status;
	size_t plen, nlen;
	pid_t pid;
	char go;

	skip_unless_capable();
	if (access("/sys/fs/cgroup/memory/cgroup.procs", W_OK) != 0)
		cr_skip_test("no cgroup v1 memory controller at /sys/fs/cgroup/memory");
	snprintf(name, sizeof(name), "tapio-test-%d", (int)getpid());
	snprintf(dir, sizeof(dir), "/sys/fs/cgroup/memory/%s", name);
	cr_assert(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", dir);
	cr_assert_eq(write_file(path, "33554432"), 0);
	snprintf(path, sizeof(path), "%s/memory.memsw.limit_in_bytes", dir);
	write_file(path, "33554432"); /* no swap escape where swap accounting exists */
	l = load(&cfg);

	cr_assert_eq(pipe(sync_pipe), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		size_t sz = 256u << 20, off;
		char *p;

		prctl(PR_SET_NAME, "tapio-oom", 0, 0, 0);
		close(sync_pipe[1]);
		if (read(sync_pipe[0], &go, 1) != 1)
			_exit(90);
		p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			_exit(91);
		for (off = 0; off < sz; off += 4096)
			p[off] = 1;
		_exit(92); /* not reached under the limit */
	}
	close(sync_pipe[0]);
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
	cr_assert_eq(write_file(path, pidbuf), 0);
	cr_assert_eq(write(sync_pipe[1], "g", 1), 1);
	close(sync_pipe[1]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	drain(l, TAPIO_OBS_CONTAINER, 500);
	rmdir(dir);

	cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status 0x%x", status);
	e = find_exit(pid, TAPIO_CT_OOM_VICTIM);
	cr_assert_not_null(e, "no OOM_VICTIM record for pid %d among %zu records", pid, n_records);
	cr_log_info("oom victim %u %s rss=%llu usage=%llu limit=%llu cgroup=%s id=%llu", e->pid,
		    e->comm, (unsigned long long)e->rss_bytes,
		    (unsigned long long)e->memory_usage_bytes,
		    (unsigned long long)e->memory_limit_bytes, e->cgroup_path,
		    (unsigned long long)e->cgroup_id);
	cr_expect_eq(e->tid, (uint32_t)pid);
	cr_expect_str_eq(e->comm, "tapio-oom");
	cr_expect_eq(e->memory_limit_bytes, limit);
	cr_expect_gt(e->memory_usage_bytes, limit / 2);
	cr_expect_leq(e->memory_usage_bytes, limit);
	cr_expect_gt(e->rss_bytes, limit / 2); /* mostly the anon pages it touched */
	cr_expect_lt(e->rss_bytes, 256ull << 20);
	cr_expect_neq(e->cgroup_id, 0);
	plen = strlen(e->cgroup_path);
	nlen = strlen(name);
	cr_expect(plen > nlen && !strcmp(e->cgroup_path + plen - nlen, name) &&
		      e->cgroup_path[plen - nlen - 1] == '/',
		  "cgroup_path '%s' does not end with /%s", e->cgroup_path, name);
	cr_expect_eq(e->config_generation, 7);

	/* the kill itself is an abnormal exit by SIGKILL */
	e = find_exit(pid, TAPIO_CT_EXIT);
	cr_assert_not_null(e);
	cr_expect_eq(e->exit_code & 0x7f, SIGKILL);
	cr_expect_eq(e->memory_limit_bytes, limit);
	loader_free(l);
}

/* A loopback connection with some traffic yields RTT samples for its 4-tuple. */
Test(loader, rtt_samples_of_a_live_connection, .timeout = 60)
{
	struct tapio_config cfg = enabled_config(7);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	struct loader *l;
	int lfd, cfd, sfd, i, samples = 0;
	uint16_t port;
	char buf[4096];

	skip_unless_capable();
	l = load(&cfg);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
	port = ntohs(a.sin_port);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(cfd, (struct sockaddr *)&a, sizeof(a)), 0);
	sfd = accept(lfd, NULL, NULL);
	cr_assert_geq(sfd, 0);
	memset(buf, 'x', sizeof(buf));
	for (i = 0; i < 20; i++) {
		cr_assert_eq(write(cfd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
		cr_assert_gt(read(sfd, buf, sizeof(buf)), 0);
		cr_assert_eq(write(sfd, buf, 100), 100);
		cr_assert_gt(read(cfd, buf, sizeof(buf)), 0);
	}
	close(cfd);
	close(sfd);
	close(lfd);
	drain(l, TAPIO_OBS_NETWORK, 300);
	for (i = 0; i < (int)n_records; i++) {
		const struct tapio_net_event *e = &records[i].u.net;

		if (records[i].obs != TAPIO_OBS_NETWORK || e->kind != TAPIO_NET_RTT_SAMPLE ||
		    (e->dport != port && e->sport != port))
			continue;
		samples++;
		cr_expect_eq(e->family, AF_INET);
		cr_expect_gt(e->srtt_us, 0);
		cr_expect_lt(e->srtt_us, 1000000);
		cr_expect_eq(e->config_generation, 7);
	}
	/* each side: at most one rate-limited tcp_probe sample plus one at close */
	cr_expect_geq(samples, 1);
	cr_expect_leq(samples, 4);
	cr_expect_eq(count_connect_fail(port), 0);
	loader_free(l);
}

static size_t storage_records(dev_t dev)
{
	uint32_t kdev = (major(dev) << 20) | minor(dev);
	size_t i, n = 0;

	for (i = 0; i < n_records; i++)
		if (records[i].obs == TAPIO_OBS_STORAGE && records[i].u.st.dev == kdev &&
		    records[i].u.st.error == 0 && records[i].u.st.bytes > 0)
			n++;
	return n;
}

/* Direct writes reach the block layer: with a 1 ns threshold every completion is "slow". */
static void direct_writes(const char *path)
{
	void *buf;
	int fd, i;

	cr_assert_eq(posix_memalign(&buf, 4096, 4096), 0);
	memset(buf, 0xab, 4096);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	for (i = 0; i < 8; i++)
		cr_assert_eq(pwrite(fd, buf, 4096, (off_t)i * 4096), 4096);
	fsync(fd);
	close(fd);
	unlink(path);
	free(buf);
}

Test(loader, storage_latency_filter_in_kernel, .timeout = 60)
{
	struct tapio_config cfg = enabled_config(7);
	char path[64];
	struct stat sb;
	struct loader *l;

	skip_unless_capable();
	snprintf(path, sizeof(path), "/var/tmp/tapio-io-%d", (int)getpid());
	cr_assert_eq(stat("/var/tmp", &sb), 0);
	if (major(sb.st_dev) == 0)
		cr_skip_test("/var/tmp is not on a block device (st_dev %u:%u)", major(sb.st_dev),
			     minor(sb.st_dev));

	/* errors only: successful I/O never leaves the kernel */
	cfg.flags = TAPIO_F_ST_ERROR;
	l = load(&cfg);
	direct_writes(path);
	drain(l, TAPIO_OBS_STORAGE, 300);
	cr_expect_eq(storage_records(sb.st_dev), 0);

	/* latency >= 1 ns: every completion on this device is reported */
	cfg.flags = TAPIO_F_ST_LATENCY;
	cfg.storage_latency_min_ns = 1;
	cfg.generation = 8;
	cr_assert_eq(loader_apply_config(l, &cfg), 0);
	direct_writes(path);
	drain(l, TAPIO_OBS_STORAGE, 300);
	cr_expect_geq(storage_records(sb.st_dev), 1, "no completion on %u:%u among %zu records",
		      major(sb.st_dev), minor(sb.st_dev), n_records);
	for (size_t i = 0; i < n_records; i++) {
		if (records[i].obs != TAPIO_OBS_STORAGE)
			continue;
		cr_expect_eq(records[i].u.st.config_generation, 8);
		cr_expect_gt(records[i].u.st.latency_ns, 0);
	}
	loader_free(l);
}

/*
 * A SYN that is never answered: the listener's accept queue is full (backlog 0, one
 * connection parked), so the kernel drops further SYNs. With TCP_SYNCNT=1 the connect gives
 * up after ~3 s: one CONNECT_FAIL with ETIMEDOUT and no RST, plus the SYN retransmits.
 */
Test(loader, connect_timeout_has_no_rst, .timeout = 60)
{
	struct tapio_config cfg = enabled_config(7);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	const struct tapio_net_event *e;
	struct loader *l;
	int lfd, c1, c2, syncnt = 1, retrans = 0;
	uint16_t port;
	size_t i;

	skip_unless_capable();
	l = load(&cfg);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(lfd, 0), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
	port = ntohs(a.sin_port);
	c1 = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(c1, (struct sockaddr *)&a, sizeof(a)), 0);
	usleep(50000);
	c2 = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(setsockopt(c2, IPPROTO_TCP, TCP_SYNCNT, &syncnt, sizeof(syncnt)), 0);
	cr_assert_eq(connect(c2, (struct sockaddr *)&a, sizeof(a)), -1);
	cr_assert_eq(errno, ETIMEDOUT, "connect: %s", strerror(errno));
	close(c2);
	close(c1);
	close(lfd);
	drain(l, TAPIO_OBS_NETWORK, 300);

	e = find_connect_fail(port);
	cr_assert_not_null(e, "no CONNECT_FAIL for port %u", port);
	cr_expect_eq(count_connect_fail(port), 1);
	cr_expect_eq(e->sk_err, ETIMEDOUT);
	cr_expect_eq(e->rst_seen, 0);
	cr_expect_eq(e->pid, (uint32_t)getpid());
	for (i = 0; i < n_records; i++)
		if (records[i].obs == TAPIO_OBS_NETWORK &&
		    records[i].u.net.kind == TAPIO_NET_RETRANSMIT &&
		    records[i].u.net.dport == port) {
			retrans++;
			cr_expect_eq(records[i].u.net.old_state, 2 /* TCP_SYN_SENT */);
		}
	cr_expect_geq(retrans, 1, "no SYN retransmit recorded");
	loader_free(l);
}
