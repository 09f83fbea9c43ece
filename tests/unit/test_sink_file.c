/* Sinks: rotation, concurrent readers, torn-tail repair, bounded buffers, flush on close. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/sink/sink.h"

static char dir[256];
static uv_loop_t loop;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tapio-sink-test-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(uv_loop_init(&loop), 0);
}

static void teardown(void)
{
	char cmd[300];

	cr_assert_eq(uv_loop_close(&loop), 0, "loop must close cleanly");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

static struct sink_counters last_final;

static void on_closed(void *arg, const struct sink_counters *final)
{
	(*(int *)arg)++;
	last_final = *final;
}

static void close_and_drain(struct sink *s)
{
	int closed = 0;

	sink_close(s, on_closed, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(closed, 1);
}

static char *path_of(const char *suffix)
{
	static char p[400];

	snprintf(p, sizeof(p), "%s/occurrences.jsonl%s", dir, suffix);
	return p;
}

static long file_size(const char *p)
{
	struct stat st;

	if (stat(p, &st) < 0)
		return -1;
	return (long)st.st_size;
}

static char *slurp(const char *p, size_t *len)
{
	FILE *f = fopen(p, "r");
	char *buf;
	long n;

	*len = 0;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	*len = fread(buf, 1, (size_t)n, f);
	buf[*len] = 0;
	fclose(f);
	return buf;
}

/* A 99-char line (100 bytes with its newline) numbered i. */
static void line100(char *buf, int i)
{
	snprintf(buf, 100, "{\"seq\":%08d,\"pad\":\"", i);
	size_t l = strlen(buf);
	memset(buf + l, 'x', 99 - l - 2);
	memcpy(buf + 97, "\"}", 2);
	buf[99] = 0;
}

static struct sink *new_file_sink(uint64_t max_bytes, uint32_t max_files, size_t buffer)
{
	struct sink_file_options o = {
	    .dir = dir, .max_bytes = max_bytes, .max_files = max_files, .buffer_bytes = buffer};
	char err[256] = "";
	struct sink *s = sink_file_new(&loop, &o, err, sizeof(err));

	cr_assert_not_null(s, "sink_file_new: %s", err);
	return s;
}

TestSuite(sink_file, .init = setup, .fini = teardown, .timeout = 30);

Test(sink_file, rotates_by_size_and_count_with_exact_names)
{
	struct sink *s = new_file_sink(4096, 3, 0);
	char line[100];
	size_t len;
	char *c;

	for (int i = 1; i <= 150; i++) {
		line100(line, i);
		cr_assert_eq(sink_write(s, line, 99), 0);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	close_and_drain(s);

	/* 40 lines (4000 bytes) fit in 4096: files hold 1-40 (dropped), 41-80, 81-120, 121-150 */
	cr_assert_eq(file_size(path_of("")), 3000);
	cr_assert_eq(file_size(path_of(".1")), 4000);
	cr_assert_eq(file_size(path_of(".2")), 4000);
	cr_assert_eq(file_size(path_of(".3")), -1, "max_files=3 keeps current + .1 + .2 only");

	c = slurp(path_of(".2"), &len);
	cr_assert(strncmp(c, "{\"seq\":00000041,", 16) == 0, "oldest kept starts at 41: %.20s", c);
	free(c);
	c = slurp(path_of(".1"), &len);
	cr_assert(strncmp(c, "{\"seq\":00000081,", 16) == 0);
	cr_assert_eq(c[len - 1], '\n');
	free(c);
	c = slurp(path_of(""), &len);
	cr_assert(strncmp(c, "{\"seq\":00000121,", 16) == 0);
	cr_assert(strncmp(c + len - 100, "{\"seq\":00000150,", 16) == 0);
	free(c);
}

Test(sink_file, counters_count_writes_bytes_rotations)
{
	struct sink *s = new_file_sink(4096, 5, 0);
	char line[100];
	struct sink_counters snap;
	int closed = 0;

	for (int i = 1; i <= 100; i++) {
		line100(line, i);
		sink_write(s, line, 99);
	}
	sink_flush(s);
	while (s->counters.writes < 100)
		uv_run(&loop, UV_RUN_ONCE);
	snap = s->counters;
	sink_close(s, on_closed, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(closed, 1);
	cr_assert_eq(snap.writes, 100);
	cr_assert_eq(snap.bytes, 10000);
	cr_assert_eq(snap.drops, 0);
	cr_assert_eq(snap.rotations, 2); /* 40 + 40 + 20 */
	cr_assert_eq(file_size(path_of("")), 2000);
}

Test(sink_file, bounded_buffer_drops_and_counts)
{
	/* 1024-byte buffer: the first line goes in flight at once, 10 more fit, 9 drop. */
	struct sink *s = new_file_sink(1 << 20, 2, 1024);
	char line[100];
	int accepted = 0, rejected = 0;
	struct sink_counters snap;
	int closed = 0;

	for (int i = 1; i <= 20; i++) {
		line100(line, i);
		if (sink_write(s, line, 99) == 0)
			accepted++;
		else
			rejected++;
	}
	cr_assert_eq(accepted, 11);
	cr_assert_eq(rejected, 9);
	cr_assert_eq(s->counters.drops, 9);
	while (s->counters.writes < 11)
		uv_run(&loop, UV_RUN_ONCE);
	snap = s->counters;
	sink_close(s, on_closed, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(snap.writes, 11);
	cr_assert_eq(snap.drops, 9);
	cr_assert_eq(file_size(path_of("")), 1100);
}

Test(sink_file, close_flushes_everything_buffered)
{
	struct sink *s = new_file_sink(1 << 20, 2, 0);
	char line[100];
	size_t len;
	char *c;

	for (int i = 1; i <= 500; i++) {
		line100(line, i);
		cr_assert_eq(sink_write(s, line, 99), 0);
	}
	close_and_drain(s); /* never ran the loop before close */
	cr_assert_eq(last_final.writes, 500,
		     "final counters include the writes done while closing");
	cr_assert_eq(last_final.bytes, 50000);
	cr_assert_eq(last_final.drops, 0);
	c = slurp(path_of(""), &len);
	cr_assert_eq(len, 50000);
	cr_assert(strncmp(c + 49900, "{\"seq\":00000500,", 16) == 0);
	free(c);
}

Test(sink_file, truncates_torn_tail_at_start)
{
	FILE *f = fopen(path_of(""), "w");
	size_t len;
	char *c;
	struct sink *s;

	fputs("{\"a\":1}\n{\"b\":2}\n{\"c\":", f);
	fclose(f);
	s = new_file_sink(1 << 20, 2, 0);
	cr_assert_eq(s->counters.repaired_bytes, 5);
	cr_assert_eq(file_size(path_of("")), 16);
	sink_write(s, "{\"d\":4}", 7);
	close_and_drain(s);
	c = slurp(path_of(""), &len);
	cr_assert_str_eq(c, "{\"a\":1}\n{\"b\":2}\n{\"d\":4}\n");
	free(c);
}

Test(sink_file, truncates_file_without_any_newline_to_empty)
{
	FILE *f = fopen(path_of(""), "w");
	struct sink *s;

	fputs("{\"torn\":", f);
	fclose(f);
	s = new_file_sink(1 << 20, 2, 0);
	cr_assert_eq(s->counters.repaired_bytes, 8);
	cr_assert_eq(file_size(path_of("")), 0);
	close_and_drain(s);
}

Test(sink_file, intact_file_is_kept_and_appended)
{
	FILE *f = fopen(path_of(""), "w");
	struct sink *s;

	fputs("{\"a\":1}\n", f);
	fclose(f);
	s = new_file_sink(1 << 20, 2, 0);
	cr_assert_eq(s->counters.repaired_bytes, 0);
	sink_write(s, "{\"b\":2}", 7);
	close_and_drain(s);
	cr_assert_eq(file_size(path_of("")), 16);
}

Test(sink_file, rejects_bad_options)
{
	struct sink_file_options o = {.dir = dir, .max_bytes = 100, .max_files = 5};
	char err[256] = "";

	cr_assert_null(sink_file_new(&loop, &o, err, sizeof(err)));
	cr_assert(strstr(err, "max_bytes") != NULL, "%s", err);
	o.max_bytes = 1 << 20;
	o.max_files = 1;
	cr_assert_null(sink_file_new(&loop, &o, err, sizeof(err)));
	o.max_files = 3;
	o.dir = "/proc/nonexistent/dir";
	cr_assert_null(sink_file_new(&loop, &o, err, sizeof(err)));
	cr_assert(strstr(err, "mkdir") != NULL, "%s", err);
}

/* ---- concurrent reader ---- */

static volatile int stop_reader;
static long torn_seen, lines_seen, scans;
static char bad_example[200];

/* A flood line: {"seq":N,"len":L,"pad":"xx…"} whose total length is L. */
static size_t flood_line(char *buf, size_t cap, int i)
{
	size_t want = 60 + (size_t)((i * 7919) % 600);
	int n = snprintf(buf, cap, "{\"seq\":%d,\"len\":%04zu,\"pad\":\"", i, want);
	memset(buf + n, 'p', want - (size_t)n - 2);
	memcpy(buf + want - 2, "\"}", 2);
	buf[want] = 0;
	return want;
}

static int line_ok(const char *l, size_t len)
{
	const char *p = strstr(l, "\"len\":");
	if (len < 20 || strncmp(l, "{\"seq\":", 7) != 0 || !p || (size_t)(p - l) > len)
		return 0;
	return (size_t)atoi(p + 6) == len && l[len - 1] == '}';
}

static void check_file(const char *p, int rotated)
{
	size_t len, start = 0;
	char *c = slurp(p, &len);

	if (!c)
		return;
	for (size_t i = 0; i < len; i++) {
		if (c[i] != '\n')
			continue;
		c[i] = 0;
		lines_seen++;
		if (!line_ok(c + start, i - start)) {
			torn_seen++;
			snprintf(bad_example, sizeof(bad_example), "%s: %.120s", p, c + start);
		}
		start = i + 1;
	}
	/* a rotated file is complete; the current one may show a write in progress */
	if (rotated && start != len) {
		torn_seen++;
		snprintf(bad_example, sizeof(bad_example), "%s ends mid-line", p);
	}
	free(c);
}

static void *reader(void *arg)
{
	char names[4][400];

	for (int i = 0; i < 4; i++)
		snprintf(names[i], sizeof(names[i]), "%s",
			 path_of(i == 0	  ? ""
				 : i == 1 ? ".1"
				 : i == 2 ? ".2"
					  : ".3"));
	while (!stop_reader) {
		for (int i = 0; i < 4; i++)
			check_file(names[i], i > 0);
		scans++;
	}
	return arg;
}

Test(sink_file, concurrent_reader_never_sees_a_torn_line, .timeout = 60)
{
	struct sink *s = new_file_sink(64 * 1024, 4, 1 << 20);
	pthread_t th;
	char line[800];
	uint64_t accepted = 0;
	int closed = 0;

	stop_reader = 0;
	cr_assert_eq(pthread_create(&th, NULL, reader, NULL), 0);
	for (int i = 0; i < 200000; i++) {
		size_t l = flood_line(line, sizeof(line), i);
		if (sink_write(s, line, l) == 0)
			accepted++;
		if (i % 200 == 0)
			uv_run(&loop, UV_RUN_NOWAIT);
	}
	sink_close(s, on_closed, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	stop_reader = 1;
	pthread_join(th, NULL);
	cr_assert_eq(closed, 1);
	cr_assert_gt(scans, 10, "reader scanned %ld times", scans);
	cr_assert_gt(lines_seen, 1000);
	cr_assert_eq(torn_seen, 0, "%ld torn lines, e.g. %s", torn_seen, bad_example);
	/* after close every file is complete and within bounds */
	check_file(path_of(""), 1);
	cr_assert_eq(torn_seen, 0, "%s", bad_example);
	cr_assert_leq(file_size(path_of("")), 64 * 1024);
	cr_assert_leq(file_size(path_of(".3")), 64 * 1024);
	cr_assert_eq(file_size(path_of(".4")), -1);
	cr_assert_gt(accepted, 0);
}

/* ---- stdout sink ---- */

TestSuite(sink_stdout, .init = setup, .fini = teardown, .timeout = 30);

Test(sink_stdout, writes_lines_to_fd_and_flushes_on_close)
{
	int p[2];
	char buf[4096];
	ssize_t n;
	struct sink *s;

	cr_assert_eq(pipe(p), 0);
	s = sink_stdout_new(&loop, p[1], 0);
	cr_assert_not_null(s);
	cr_assert_eq(sink_write(s, "{\"a\":1}", 7), 0);
	cr_assert_eq(sink_write(s, "{\"b\":2}", 7), 0);
	close_and_drain(s);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	cr_assert_eq(n, 16);
	buf[n] = 0;
	cr_assert_str_eq(buf, "{\"a\":1}\n{\"b\":2}\n");
	close(p[0]);
}

Test(sink_stdout, full_queue_drops_instead_of_blocking)
{
	int p[2];
	struct sink *s;
	int rejected = 0;
	char line[100];

	cr_assert_eq(pipe(p), 0);
	s = sink_stdout_new(&loop, p[1], 1000);
	for (int i = 0; i < 30; i++) {
		line100(line, i);
		if (sink_write(s, line, 99) < 0)
			rejected++;
	}
	cr_assert_eq(rejected, 19, "1 in flight + 10 queued of 30");
	cr_assert_eq(s->counters.drops, 19);
	close_and_drain(s);
	close(p[1]);
	close(p[0]);
}

Test(sink_stdout, closed_reader_counts_drops_and_errors)
{
	int p[2];
	struct sink *s;

	signal(SIGPIPE, SIG_IGN); /* as tapio-agent's main does */
	cr_assert_eq(pipe(p), 0);
	close(p[0]);
	s = sink_stdout_new(&loop, p[1], 0);
	cr_assert_eq(sink_write(s, "{\"a\":1}", 7), 0);
	cr_assert_eq(sink_write(s, "{\"b\":2}", 7), 0);
	close_and_drain(s);
	cr_assert_eq(last_final.writes, 0);
	cr_assert_eq(last_final.drops, 2);
	cr_assert_geq(last_final.errors, 1);
	close(p[1]);
}

Test(sink_file, failed_write_never_leaves_a_torn_line)
{
	struct rlimit rl = {.rlim_cur = 250, .rlim_max = RLIM_INFINITY};
	struct sink *s = new_file_sink(1 << 20, 2, 0);
	char line[100];
	size_t len;
	char *c;

	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	for (int i = 1; i <= 5; i++) {
		line100(line, i);
		cr_assert_eq(sink_write(s, line, 99), 0);
	}
	close_and_drain(s);
	rl.rlim_cur = RLIM_INFINITY;
	setrlimit(RLIMIT_FSIZE, &rl);
	/* 250 bytes allowed: lines 1-2 land whole, line 3 was cut back, 3-5 are drops */
	c = slurp(path_of(""), &len);
	cr_assert_eq(len, 200, "file keeps only whole lines: %zu bytes", len);
	cr_assert_eq(c[len - 1], '\n');
	free(c);
	cr_assert_eq(last_final.writes, 2);
	cr_assert_eq(last_final.drops, 3);
	cr_assert_geq(last_final.errors, 1);
}
