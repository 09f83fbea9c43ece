/* Real tapio-agent process harness for end-to-end tests (see agent_harness.h). */
#include "agent_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TAPIO_BIN_DIR
#error "TAPIO_BIN_DIR must point at build/bin"
#endif

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool harness_kernel_ok(const char **why)
{
	if (geteuid() != 0) {
		*why = "real-kernel test skipped: needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)";
		return false;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
		*why = "real-kernel test skipped: no kernel BTF at /sys/kernel/btf/vmlinux";
		return false;
	}
	if (access(TAPIO_BIN_DIR "/tapio-agent", X_OK) != 0) {
		*why = "real-kernel test skipped: " TAPIO_BIN_DIR "/tapio-agent was not built";
		return false;
	}
	return true;
}

static bool log_has_ready(const char *path)
{
	char line[1024];
	bool found = false;
	FILE *f = fopen(path, "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "tapio-agent ready")) {
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

void harness_dump_log(struct agent_proc *a)
{
	char line[1024];
	FILE *f = fopen(a->errpath, "r");

	if (!f)
		return;
	fprintf(stderr, "---- tapio-agent stderr (%s) ----\n", a->errpath);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fprintf(stderr, "---- end ----\n");
	fclose(f);
}

int harness_start(struct agent_proc *a, const char *config_yaml, const char *const *extra_args)
{
	char cfgpath[256];
	const char *argv[64];
	int pipefd[2];
	int n = 0;

	memset(a, 0, sizeof(*a));
	a->pid = -1;
	a->out_fd = -1;
	snprintf(a->dir, sizeof(a->dir), "/tmp/tapio-e2e-XXXXXX");
	if (!mkdtemp(a->dir))
		return -errno;
	snprintf(a->errpath, sizeof(a->errpath), "%s/agent.log", a->dir);
	snprintf(cfgpath, sizeof(cfgpath), "%s/agent.yaml", a->dir);

	argv[n++] = TAPIO_BIN_DIR "/tapio-agent";
	argv[n++] = "--sink";
	argv[n++] = "stdout";
	argv[n++] = "--node-name";
	argv[n++] = "e2e-node";
	argv[n++] = "--data-dir";
	argv[n++] = a->dir;
	if (config_yaml) {
		FILE *f = fopen(cfgpath, "w");

		if (!f)
			return -errno;
		fputs(config_yaml, f);
		fclose(f);
		argv[n++] = "--config";
		argv[n++] = cfgpath;
	}
	for (int i = 0; extra_args && extra_args[i] && n < 62; i++)
		argv[n++] = extra_args[i];
	argv[n] = NULL;

	if (pipe2(pipefd, O_CLOEXEC) != 0)
		return -errno;
	a->pid = fork();
	if (a->pid < 0)
		return -errno;
	if (a->pid == 0) {
		int errfd = open(a->errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(pipefd[1], 1);
		if (errfd >= 0)
			dup2(errfd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	a->out_fd = pipefd[0];
	fcntl(a->out_fd, F_SETFL, O_NONBLOCK);

	long long deadline = now_ms() + 30000;

	while (now_ms() < deadline) {
		int status;

		if (log_has_ready(a->errpath))
			return 0;
		if (waitpid(a->pid, &status, WNOHANG) == a->pid) {
			a->pid = -1;
			harness_dump_log(a);
			return -ECHILD;
		}
		harness_pump(a, 50);
	}
	harness_dump_log(a);
	return -ETIMEDOUT;
}

static void take_line(struct agent_proc *a, const char *line, size_t len)
{
	json_error_t err;
	json_t *j;

	if (len == 0)
		return;
	j = json_loadb(line, len, 0, &err);
	if (!j || !json_is_object(j)) {
		a->bad_lines++;
		fprintf(stderr, "harness: stdout line is not a JSON object: %.*s\n", (int)len,
			line);
		json_decref(j);
		return;
	}
	if (a->n_occ < HARNESS_MAX_OCC)
		a->occ[a->n_occ++] = j;
	else
		json_decref(j);
}

static int read_some(struct agent_proc *a)
{
	char chunk[65536];
	ssize_t r = read(a->out_fd, chunk, sizeof(chunk));

	if (r <= 0)
		return r == 0 ? 0 : (errno == EAGAIN ? -EAGAIN : -errno);
	if (a->len + (size_t)r > a->cap) {
		size_t cap = (a->len + (size_t)r) * 2;
		char *nb = realloc(a->buf, cap);

		if (!nb)
			abort();
		a->buf = nb;
		a->cap = cap;
	}
	memcpy(a->buf + a->len, chunk, (size_t)r);
	a->len += (size_t)r;

	size_t start = 0;

	for (size_t i = 0; i < a->len; i++) {
		if (a->buf[i] == '\n') {
			take_line(a, a->buf + start, i - start);
			start = i + 1;
		}
	}
	memmove(a->buf, a->buf + start, a->len - start);
	a->len -= start;
	return (int)r;
}

void harness_pump(struct agent_proc *a, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	if (a->out_fd < 0)
		return;
	for (;;) {
		long long left = deadline - now_ms();
		struct pollfd p = {.fd = a->out_fd, .events = POLLIN};

		if (left < 0)
			left = 0;
		if (poll(&p, 1, (int)left) <= 0)
			return;
		if (read_some(a) == 0) {
			close(a->out_fd);
			a->out_fd = -1;
			return;
		}
		if (left == 0)
			return;
	}
}

json_t *harness_wait_for(struct agent_proc *a, harness_match_fn fn, const void *arg, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	size_t checked = 0;

	for (;;) {
		for (; checked < a->n_occ; checked++)
			if (fn(a->occ[checked], arg))
				return a->occ[checked];
		if (now_ms() >= deadline || a->out_fd < 0)
			return NULL;
		harness_pump(a, 100);
	}
}

size_t harness_count(struct agent_proc *a, harness_match_fn fn, const void *arg)
{
	size_t n = 0;

	for (size_t i = 0; i < a->n_occ; i++)
		n += fn(a->occ[i], arg) ? 1 : 0;
	return n;
}

int harness_stop(struct agent_proc *a)
{
	int rc = harness_stop_keep(a);

	harness_release(a);
	return rc;
}

void harness_release(struct agent_proc *a)
{
	for (size_t i = 0; i < a->n_occ; i++)
		json_decref(a->occ[i]);
	a->n_occ = 0;
	free(a->buf);
	a->buf = NULL;
}

int harness_stop_keep(struct agent_proc *a)
{
	int status = 0, rc = -1;

	if (a->pid > 0) {
		kill(a->pid, SIGTERM);
		while (a->out_fd >= 0)
			harness_pump(a, 1000);
		if (waitpid(a->pid, &status, 0) == a->pid)
			rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		a->pid = -1;
	}
	if (a->out_fd >= 0)
		close(a->out_fd);
	a->out_fd = -1;
	if (rc != 0)
		harness_dump_log(a);
	return rc;
}

const char *occ_str(json_t *occ, const char *key)
{
	return json_string_value(json_object_get(occ, key));
}

long long occ_data_int(json_t *occ, const char *key)
{
	json_t *v = json_object_get(json_object_get(occ, "data"), key);

	return json_is_integer(v) ? json_integer_value(v) : -999999;
}

const char *occ_data_str(json_t *occ, const char *key)
{
	return json_string_value(json_object_get(json_object_get(occ, "data"), key));
}

bool harness_match_type_int(json_t *occ, const void *arg)
{
	const struct match_int *m = arg;
	const char *type = occ_str(occ, "type");

	if (!type || strcmp(type, m->type) != 0)
		return false;
	return !m->key || occ_data_int(occ, m->key) == m->value;
}
