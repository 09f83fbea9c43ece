/*
 * The real tapio-agent process: ready line, JSON-only stdout, both sinks, stats lines, clean
 * exit 0 on SIGTERM/SIGINT with everything flushed. Needs root and the built binary; each
 * skip says why.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AGENT TAPIO_BIN_DIR "/tapio-agent"

struct run {
	pid_t pid;
	char dir[64];
	char out[128];
	char err[128];
};

static void skip_unless_runnable(void)
{
	if (access(AGENT, X_OK) != 0)
		cr_skip_test("tapio-agent not built (needs the BPF toolchain): " AGENT);
	if (geteuid() != 0)
		cr_skip_test("needs root to load BPF programs");
}

static char *slurp(const char *p)
{
	FILE *f = fopen(p, "r");
	char *buf;
	long n;

	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	n = (long)fread(buf, 1, (size_t)n, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static void start(struct run *r, const char *yaml, const char *const *extra)
{
	const char *argv[32];
	char cfg[128];
	int n = 0;

	snprintf(r->dir, sizeof(r->dir), "/tmp/tapio-run-XXXXXX");
	cr_assert_not_null(mkdtemp(r->dir));
	snprintf(r->out, sizeof(r->out), "%s/stdout", r->dir);
	snprintf(r->err, sizeof(r->err), "%s/stderr", r->dir);
	snprintf(cfg, sizeof(cfg), "%s/agent.yaml", r->dir);
	argv[n++] = AGENT;
	if (yaml) {
		FILE *f = fopen(cfg, "w");
		fputs(yaml, f);
		fclose(f);
		argv[n++] = "--config";
		argv[n++] = cfg;
	}
	for (int i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	r->pid = fork();
	cr_assert_geq(r->pid, 0);
	if (r->pid == 0) {
		int o = open(r->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(r->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(o, 1);
		dup2(e, 2);
		execv(AGENT, (char *const *)argv);
		_exit(127);
	}
}

static bool wait_for(const char *path, const char *needle, int ms)
{
	for (int t = 0; t < ms; t += 50) {
		char *c = slurp(path);
		bool hit = strstr(c, needle) != NULL;
		free(c);
		if (hit)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

static int stop(struct run *r, int sig)
{
	int status;

	kill(r->pid, sig);
	for (int t = 0; t < 200; t++) {
		if (waitpid(r->pid, &status, WNOHANG) == r->pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(50 * 1000);
	}
	kill(r->pid, SIGKILL);
	waitpid(r->pid, &status, 0);
	return -1;
}

static void cleanup(struct run *r)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", r->dir);
	cr_assert_eq(system(cmd), 0);
}

static void refuse_once(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(1)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	cr_assert_lt(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(errno, ECONNREFUSED);
	close(fd);
}

static int count_lines_with(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

TestSuite(agent_run, .timeout = 60);

Test(agent_run, sigterm_flushes_both_sinks_and_exits_0)
{
	struct run r;
	const char *extra[14] = {
	    "--sink",	 "stdout", "--sink",	       "file", "--node-name", "run-node",
	    "--cluster", "c1",	   "--stats-interval", "1",    "--data-dir",  NULL,
	    NULL};
	char path[160], datadir[64], *out, *err, *file;
	const char *refused = "\"type\":\"kernel.network.connection_refused\"";

	skip_unless_runnable();
	/* a long window: the refusal is still pending at SIGTERM, so only _flush emits it */
	snprintf(r.dir, sizeof(r.dir), "/tmp/tapio-run-data-XXXXXX");
	cr_assert_not_null(mkdtemp(r.dir));
	snprintf(datadir, sizeof(datadir), "%s", r.dir);
	extra[11] = datadir;
	start(&r, "network:\n  conn_refused_window_ms: 600000\n", extra);
	cr_assert(wait_for(r.err, "tapio-agent ready: network=running", 20000), "no ready line: %s",
		  slurp(r.err));
	refuse_once();
	cr_assert(wait_for(r.err, "stats: events", 5000), "no stats line");
	cr_assert_eq(stop(&r, SIGTERM), 0, "exit status after SIGTERM; stderr:\n%s", slurp(r.err));

	err = slurp(r.err);
	cr_assert(strstr(err, "received SIGTERM") != NULL);
	cr_assert(strstr(err, "final: events") != NULL);
	cr_assert(strstr(err, "stopped cleanly") != NULL, "%s", err);
	cr_assert(strstr(err, "[agent] tapio-agent ready: network=running container=running "
			      "storage=running node=") != NULL);

	out = slurp(r.out);
	/* stdout holds JSON lines only */
	for (char *line = out; *line;) {
		char *nl = strchr(line, '\n');
		cr_assert_not_null(nl, "stdout ends mid-line");
		cr_assert_eq(line[0], '{', "non-JSON on stdout: %.80s", line);
		cr_assert_eq(nl[-1], '}');
		line = nl + 1;
	}
	cr_assert_geq(count_lines_with(out, refused), 1, "stdout: %s", out);
	cr_assert(strstr(out, "\"node\":\"run-node\"") != NULL);
	cr_assert(strstr(out, "\"cluster\":\"c1\"") != NULL);
	cr_assert(strstr(out, "\"config_generation\":1") != NULL);

	snprintf(path, sizeof(path), "%s/occurrences.jsonl", datadir);
	file = slurp(path);
	cr_assert_str_eq(file, out, "file sink and stdout sink got the same lines");
	free(out);
	free(err);
	free(file);
	cleanup(&r);
	snprintf(path, sizeof(path), "rm -rf %s", datadir);
	cr_assert_eq(system(path), 0);
}

Test(agent_run, sigint_exits_0)
{
	struct run r;
	const char *const extra[] = {"--stats-interval", "0", NULL};

	skip_unless_runnable();
	start(&r, NULL, extra);
	cr_assert(wait_for(r.err, "tapio-agent ready:", 20000), "%s", slurp(r.err));
	cr_assert_eq(stop(&r, SIGINT), 0, "%s", slurp(r.err));
	cr_assert(wait_for(r.err, "stopped cleanly", 100));
	cleanup(&r);
}

Test(agent_run, unusable_data_dir_exits_1_with_one_line)
{
	struct run r;
	const char *const extra[] = {"--sink", "file", "--data-dir", "/proc/tapio/none", NULL};
	char *err;
	int status;

	if (access(AGENT, X_OK) != 0)
		cr_skip_test("tapio-agent not built (needs the BPF toolchain): " AGENT);
	start(&r, NULL, extra);
	cr_assert_eq(waitpid(r.pid, &status, 0), r.pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 1);
	err = slurp(r.err);
	cr_assert(strncmp(err, "tapio-agent: file sink: mkdir /proc/tapio/none: ", 48) == 0, "%s",
		  err);
	cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line: %s", err);
	free(err);
	cleanup(&r);
}

Test(agent_run, without_privileges_exits_1_naming_the_capabilities)
{
	int pe[2], status;
	char err[8192];
	ssize_t n, total = 0;
	pid_t pid;
	const char *last;

	skip_unless_runnable(); /* root is needed to drop to nobody */
	cr_assert_eq(pipe(pe), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char *argv[] = {AGENT, "--stats-interval", "0", NULL};
		dup2(pe[1], 2);
		if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
		    setresuid(65534, 65534, 65534) != 0)
			_exit(126);
		execv(AGENT, argv);
		_exit(127);
	}
	close(pe[1]);
	while ((n = read(pe[0], err + total, sizeof(err) - 1 - (size_t)total)) > 0)
		total += n;
	err[total] = 0;
	close(pe[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 1, "%s", err);
	cr_assert_gt(total, 1);
	err[total - 1] = 0; /* the last line is the verdict */
	last = strrchr(err, '\n');
	last = last ? last + 1 : err;
	cr_assert(strncmp(last, "tapio-agent: cannot load BPF programs: ", 39) == 0, "%s", last);
	cr_assert(strstr(last, "(run as root or grant CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)") !=
		      NULL,
		  "%s", last);
}

static void rewrite(const struct run *r, const char *yaml)
{
	char p[160], tmp[170];
	FILE *f;

	snprintf(p, sizeof(p), "%s/agent.yaml", r->dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", p);
	f = fopen(tmp, "w");
	fputs(yaml, f);
	fclose(f);
	cr_assert_eq(rename(tmp, p), 0);
}

Test(agent_run, sighup_reloads_settings_under_a_new_generation)
{
	struct run r;
	const char *const extra[] = {"--stats-interval", "0", NULL};
	char *out;

	skip_unless_runnable();
	start(&r, "network:\n  conn_refused_window_ms: 600000\n", extra);
	cr_assert(wait_for(r.err, "tapio-agent ready:", 20000), "%s", slurp(r.err));

	/* a contradiction is refused with its location; the agent keeps running */
	rewrite(&r, "storage:\n  warning_ms: 300\n  critical_ms: 100\n");
	kill(r.pid, SIGHUP);
	cr_assert(wait_for(r.err,
			   "agent.yaml:3:16: storage.critical_ms: 100 is below "
			   "storage.warning_ms 300; keeping config generation 1",
			   5000),
		  "%s", slurp(r.err));

	/* a valid change applies at once: short window, events carry generation 2 */
	rewrite(&r, "network:\n  conn_refused_window_ms: 100\n");
	kill(r.pid, SIGHUP);
	cr_assert(wait_for(r.err, "reload: applied config generation 2", 5000), "%s", slurp(r.err));
	refuse_once();
	cr_assert(wait_for(r.out, "\"type\":\"kernel.network.connection_refused\"", 5000),
		  "window of 100 ms must close long before SIGTERM: %s", slurp(r.err));
	out = slurp(r.out);
	cr_assert(strstr(out, "\"config_generation\":2") != NULL, "%s", out);
	free(out);

	kill(r.pid, SIGHUP); /* same file again: nothing changes */
	cr_assert(
	    wait_for(r.err, "reload: observer settings unchanged (config generation 2)", 5000));
	cr_assert_eq(stop(&r, SIGTERM), 0, "%s", slurp(r.err));
	cleanup(&r);
}
