/*
 * Test harness for the `tapio` CLI tests: fixture data dirs written with occ_json_write, a
 * child-process runner (fork/exec of the real binary, stdout/stderr captured), and a tiny
 * loopback HTTP server thread that serves canned controller responses.
 */
#ifndef TAPIO_TEST_CLI_HARNESS_H
#define TAPIO_TEST_CLI_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/occ_json.h"
#include "common/occurrence.h"

#define S_NS 1000000000ULL

/* ---- processes ---- */

struct proc {
	pid_t pid;
	int in;	 /* child's stdin (write end), -1 when closed */
	int out; /* child's stdout (read end) */
	int err;
};

static inline void proc_spawn(struct proc *p, const char *const *args)
{
	int pin[2], pout[2], perr[2];
	char *argv[32];
	size_t n = 0;

	argv[n++] = TAPIO_BIN_DIR "/tapio";
	while (args[n - 1] && n < 31) {
		argv[n] = (char *)args[n - 1];
		n++;
	}
	argv[n] = NULL;
	if (pipe(pin) || pipe(pout) || pipe(perr))
		abort();
	p->pid = fork();
	if (p->pid == 0) {
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		dup2(perr[1], 2);
		close(pin[1]);
		close(pout[0]);
		close(perr[0]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	p->in = pin[1];
	p->out = pout[0];
	p->err = perr[0];
	signal(SIGPIPE, SIG_IGN);
}

struct buf {
	char *p;
	size_t len;
};

/*
 * Output buffers are handed to tests that reuse `struct buf` across runs; every allocation is
 * tracked and released at exit (before LeakSanitizer's check, which was registered earlier),
 * so the ASan preset reports only real leaks.
 */
#define BUF_TRACK_MAX 1024
static char *buf_tracked[BUF_TRACK_MAX];
static size_t buf_ntracked;

static void buf_release_all(void)
{
	for (size_t i = 0; i < buf_ntracked; i++)
		free(buf_tracked[i]);
	buf_ntracked = 0;
}

/* Frees a buffer before exit (untracked, so the exit handler does not free it again). */
static inline void buf_free(struct buf *b)
{
	for (size_t i = 0; i < buf_ntracked; i++) {
		if (b->p && buf_tracked[i] == b->p) {
			buf_tracked[i] = buf_tracked[--buf_ntracked];
			break;
		}
	}
	free(b->p);
	b->p = NULL;
	b->len = 0;
}

static inline char *buf_realloc(char *old, size_t n)
{
	char *p = realloc(old, n);

	if (!p)
		abort();
	for (size_t i = 0; i < buf_ntracked; i++) {
		if (old && buf_tracked[i] == old) {
			buf_tracked[i] = p;
			return p;
		}
	}
	if (buf_ntracked == 0)
		atexit(buf_release_all);
	if (buf_ntracked < BUF_TRACK_MAX)
		buf_tracked[buf_ntracked++] = p;
	return p;
}

static inline void buf_add(struct buf *b, const char *d, size_t n)
{
	b->p = buf_realloc(b->p, b->len + n + 1);
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Reads stdout/stderr until both close (or timeout_ms), then reaps. Returns the exit status,
 * or -1 on timeout/abnormal end. */
static inline int proc_finish(struct proc *p, struct buf *out, struct buf *err, int timeout_ms)
{
	uint64_t deadline = clock_mono_ns() + (uint64_t)timeout_ms * 1000000ULL;
	bool oo = true, eo = true;
	int st;

	if (p->in >= 0) {
		close(p->in);
		p->in = -1;
	}
	out->p = buf_realloc(out->p, out->len + 1);
	out->p[out->len] = '\0';
	err->p = buf_realloc(err->p, err->len + 1);
	err->p[err->len] = '\0';
	while ((oo || eo) && clock_mono_ns() < deadline) {
		struct pollfd fds[2] = {{p->out, POLLIN, 0}, {p->err, POLLIN, 0}};
		char tmp[65536];
		ssize_t r;

		if (poll(fds, 2, 100) <= 0)
			continue;
		if (oo && fds[0].revents) {
			r = read(p->out, tmp, sizeof(tmp));
			if (r > 0)
				buf_add(out, tmp, (size_t)r);
			else
				oo = false;
		}
		if (eo && fds[1].revents) {
			r = read(p->err, tmp, sizeof(tmp));
			if (r > 0)
				buf_add(err, tmp, (size_t)r);
			else
				eo = false;
		}
	}
	close(p->out);
	close(p->err);
	if (oo || eo) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, &st, 0);
		return -1;
	}
	waitpid(p->pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs tapio with args (NULL-terminated), optional stdin text. */
static inline int run_tapio(const char *const *args, const char *input, struct buf *out,
			    struct buf *err)
{
	struct proc p;

	memset(out, 0, sizeof(*out));
	memset(err, 0, sizeof(*err));
	proc_spawn(&p, args);
	if (input) {
		size_t off = 0, len = strlen(input);

		while (off < len) {
			ssize_t w = write(p.in, input + off, len - off);

			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	return proc_finish(&p, out, err, 20000);
}

/* Reads one line from fd into line (blocking up to timeout_ms); carry keeps extra bytes.
 * Returns 1 for a line, 0 on timeout/EOF. */
static inline int read_line(int fd, struct buf *carry, char *line, size_t len, int timeout_ms)
{
	uint64_t deadline = clock_mono_ns() + (uint64_t)timeout_ms * 1000000ULL;

	for (;;) {
		char *nl = carry->p ? memchr(carry->p, '\n', carry->len) : NULL;

		if (nl) {
			size_t n = (size_t)(nl - carry->p);

			snprintf(line, len, "%.*s", (int)n, carry->p);
			memmove(carry->p, nl + 1, carry->len - n - 1);
			carry->len -= n + 1;
			return 1;
		}
		if (clock_mono_ns() >= deadline)
			return 0;
		{
			struct pollfd pf = {fd, POLLIN, 0};
			char tmp[8192];
			ssize_t r;

			if (poll(&pf, 1, 50) <= 0)
				continue;
			r = read(fd, tmp, sizeof(tmp));
			if (r <= 0)
				return 0;
			buf_add(carry, tmp, (size_t)r);
		}
	}
}

static inline size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

/* ---- fixtures ---- */

#define FX_MAX 400

struct fixture {
	char dir[256];
	uint64_t now_ns;
	size_t n;
	struct tapio_occurrence occ[FX_MAX]; /* sorted oldest first */
	uint64_t off_s[FX_MAX];		     /* age at build time, seconds */
};

static inline bool near_boundary(uint64_t off)
{
	static const uint64_t b[] = {300, 900, 3600, 86400};

	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
		if (off + 120 > b[i] && off < b[i] + 120)
			return true;
	}
	return false;
}

static inline void fx_occ(struct tapio_occurrence *o, int i, uint64_t ts)
{
	enum tapio_occ_type type = (enum tapio_occ_type)(i % TAPIO_OCC__COUNT);

	occurrence_init(o, type, ts, i % 5 == 0 ? "node-b" : "node-a", "prod");
	o->config_generation = 3;
	switch (tapio_catalogue[type].observer) {
	case TAPIO_OBS_NETWORK:
		o->data.network.pid = 100 + (uint32_t)i;
		snprintf(o->data.network.comm, sizeof(o->data.network.comm), "curl");
		snprintf(o->data.network.src_ip, sizeof(o->data.network.src_ip), "10.0.0.5");
		snprintf(o->data.network.dst_ip, sizeof(o->data.network.dst_ip), "10.0.0.%d",
			 9 + (i % 3 == 0 ? 0 : i % 2));
		o->data.network.src_port = 40000;
		o->data.network.dst_port = 8080;
		o->data.network.family = 4;
		if (type == TAPIO_OCC_CONNECTION_REFUSED || type == TAPIO_OCC_CONNECTION_TIMEOUT) {
			snprintf(o->data.network.old_state, 16, "SYN_SENT");
			snprintf(o->data.network.new_state, 16, "CLOSE");
		}
		if (type == TAPIO_OCC_RTT_DEGRADATION) {
			o->data.network.baseline_ms = 2;
			o->data.network.current_ms = 40;
		}
		break;
	case TAPIO_OBS_CONTAINER:
		o->data.container.pid = 200 + (uint32_t)i;
		o->data.container.tid = o->data.container.pid;
		snprintf(o->data.container.comm, sizeof(o->data.container.comm), "%s",
			 i % 3 ? "java" : "nginx");
		if (type == TAPIO_OCC_ABNORMAL_EXIT && i % 2) {
			o->data.container.signal = 9;
			o->severity = TAPIO_SEV_ERROR;
		} else {
			o->data.container.exit_code = 1;
		}
		break;
	case TAPIO_OBS_STORAGE:
		o->data.storage.pid = 77;
		snprintf(o->data.storage.comm, sizeof(o->data.storage.comm), "postgres");
		o->data.storage.dev_major = 259;
		o->data.storage.dev_minor = (uint32_t)(i % 2);
		o->data.storage.bytes = 4096;
		snprintf(o->data.storage.opcode, sizeof(o->data.storage.opcode), "write");
		o->data.storage.latency_ms = 80;
		if (type == TAPIO_OCC_IO_ERROR)
			o->data.storage.error_code = -5;
		if (type == TAPIO_OCC_LATENCY_SPIKE && i % 2) {
			o->severity = TAPIO_SEV_CRITICAL;
			o->data.storage.latency_ms = 250;
		}
		break;
	default:
		o->data.node.cpu = type == TAPIO_OCC_MEMORY_PRESSURE ? -1 : i % 4;
		o->data.node.cycles = 1000;
		o->data.node.instructions = 400;
		o->data.node.stall_cycles = 450;
		o->data.node.ipc = 0.4;
		o->data.node.stall_pct = 45;
		break;
	}
}

static int cmp_fx(const void *a, const void *b)
{
	const struct tapio_occurrence *x = a, *y = b;

	return x->timestamp_ns < y->timestamp_ns ? -1 : x->timestamp_ns > y->timestamp_ns;
}

static inline void write_line(FILE *f, const struct tapio_occurrence *o)
{
	char buf[TAPIO_OCC_JSON_MAX];
	ssize_t n = occ_json_write(o, buf, sizeof(buf));

	if (n < 0)
		abort();
	fprintf(f, "%s\n", buf);
}

static inline FILE *fx_open(const struct fixture *fx, const char *name, const char *mode)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", fx->dir, name);
	return fopen(p, mode);
}

/*
 * Builds a data dir of n occurrences spread over 3 days (a quarter of them in the last
 * hour), none within 2 minutes of the 5m/15m/1h/24h boundaries: rotated .2 (oldest third),
 * .1 (middle third, a malformed 3rd line), current (newest, then a torn last line).
 */
static inline void fixture_build(struct fixture *fx, size_t n)
{
	uint64_t seed = 12345;
	size_t i;
	FILE *f;

	memset(fx, 0, sizeof(*fx));
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/tapio-cli-test-XXXXXX");
	if (!mkdtemp(fx->dir))
		abort();
	fx->now_ns = clock_wall_ns();
	fx->n = n;
	for (i = 0; i < n; i++) {
		uint64_t off;

		do {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			off = (i % 4 == 0) ? 30 + (seed >> 33) % 3500 : 30 + (seed >> 33) % 259200;
		} while (near_boundary(off));
		fx_occ(&fx->occ[i], (int)i, fx->now_ns - off * S_NS - (uint64_t)i);
	}
	qsort(fx->occ, n, sizeof(fx->occ[0]), cmp_fx);
	for (i = 0; i < n; i++)
		fx->off_s[i] = (fx->now_ns - fx->occ[i].timestamp_ns) / S_NS;
	f = fx_open(fx, "occurrences.jsonl.2", "w");
	for (i = 0; i < n / 3; i++)
		write_line(f, &fx->occ[i]);
	fclose(f);
	f = fx_open(fx, "occurrences.jsonl.1", "w");
	for (i = n / 3; i < 2 * n / 3; i++) {
		if (i == n / 3 + 2)
			fprintf(f, "{\"id\":\"broken\",\"type\":\"kernel.nope\"}\n");
		write_line(f, &fx->occ[i]);
	}
	fclose(f);
	f = fx_open(fx, "occurrences.jsonl", "w");
	for (i = 2 * n / 3; i < n; i++)
		write_line(f, &fx->occ[i]);
	fprintf(f, "{\"id\":\"01M89EY95VS5W9251RTXZNNPHP\",\"timestamp\":\"2026-");
	fclose(f);
}

static inline void fixture_empty(struct fixture *fx)
{
	memset(fx, 0, sizeof(*fx));
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/tapio-cli-test-XXXXXX");
	if (!mkdtemp(fx->dir))
		abort();
	fx->now_ns = clock_wall_ns();
}

static inline void fixture_remove(struct fixture *fx)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", fx->dir);
}

/* ---- canned HTTP server ---- */

struct http_route {
	const char *prefix;   /* matched against the request target */
	const char *contains; /* and, when set, a substring of it */
	int status;
	const char *body;
};

struct http_server {
	int fd;
	int port;
	pthread_t thread;
	const struct http_route *routes;
	size_t nroutes;
	char requests[64][1024];
	size_t nrequests;
	pthread_mutex_t lock;
	volatile bool stop;
};

static void *http_serve(void *arg)
{
	struct http_server *s = arg;

	while (!s->stop) {
		struct pollfd pf = {s->fd, POLLIN, 0};
		char req[8192], target[1024] = "", head[256];
		size_t len = 0;
		const struct http_route *r = NULL;
		int c;

		if (poll(&pf, 1, 50) <= 0)
			continue;
		c = accept(s->fd, NULL, NULL);
		if (c < 0)
			continue;
		while (len < sizeof(req) - 1) {
			ssize_t n = read(c, req + len, sizeof(req) - 1 - len);

			if (n <= 0)
				break;
			len += (size_t)n;
			req[len] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		req[len] = '\0';
		sscanf(req, "GET %1023s", target);
		pthread_mutex_lock(&s->lock);
		if (s->nrequests < 64)
			snprintf(s->requests[s->nrequests++], 1024, "%s", target);
		pthread_mutex_unlock(&s->lock);
		for (size_t i = 0; i < s->nroutes && !r; i++) {
			if (!strncmp(target, s->routes[i].prefix, strlen(s->routes[i].prefix)) &&
			    (!s->routes[i].contains || strstr(target, s->routes[i].contains)))
				r = &s->routes[i];
		}
		{
			int st = r ? r->status : 404;
			const char *body =
			    r ? r->body
			      : "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"no route\"}}";

			snprintf(head, sizeof(head),
				 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
				 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
				 st, strlen(body));
			if (write(c, head, strlen(head)) < 0 || write(c, body, strlen(body)) < 0)
				fprintf(stderr, "http test server: write failed\n");
		}
		close(c);
	}
	return NULL;
}

static inline void http_start(struct http_server *s, const struct http_route *routes, size_t n)
{
	struct sockaddr_in a = {0};
	socklen_t al = sizeof(a);
	int one = 1;

	memset(s, 0, sizeof(*s));
	s->routes = routes;
	s->nroutes = n;
	pthread_mutex_init(&s->lock, NULL);
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) || listen(s->fd, 16))
		abort();
	getsockname(s->fd, (struct sockaddr *)&a, &al);
	s->port = ntohs(a.sin_port);
	pthread_create(&s->thread, NULL, http_serve, s);
}

static inline void http_stop(struct http_server *s)
{
	s->stop = true;
	pthread_join(s->thread, NULL);
	close(s->fd);
	pthread_mutex_destroy(&s->lock);
}

#endif
