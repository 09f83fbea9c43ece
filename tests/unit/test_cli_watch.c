/*
 * `tapio watch`: a real process follows the data dir while the test appends lines, rotates
 * the current file by rename (as the file sink does) and finally sends SIGINT.
 */
#include <criterion/criterion.h>

#include "cli_harness.h"

TestSuite(cli_watch, .timeout = 60);

static void append(struct fixture *d, int from, int n, bool partial_last)
{
	FILE *f = fx_open(d, "occurrences.jsonl", "a");

	for (int i = from; i < from + n; i++) {
		struct tapio_occurrence o;

		fx_occ(&o, i, clock_wall_ns());
		snprintf(o.error_message, sizeof(o.error_message), "seq %d", i);
		if (partial_last && i == from + n - 1) {
			char buf[TAPIO_OCC_JSON_MAX];
			ssize_t len = occ_json_write(&o, buf, sizeof(buf));

			fwrite(buf, 1, (size_t)len / 2, f); /* the writer is mid-line */
			fflush(f);
			fclose(f);
			usleep(450 * 1000);
			f = fx_open(d, "occurrences.jsonl", "a");
			fprintf(f, "%s\n", buf + len / 2);
		} else {
			write_line(f, &o);
		}
	}
	fclose(f);
}

/* Waits for watch's "watching" line on stderr: from then on every append is seen. */
static void wait_ready(struct proc *p)
{
	struct buf carry = {0};
	char line[1024];

	cr_assert(read_line(p->err, &carry, line, sizeof(line), 10000), "watch did not start");
	cr_assert_not_null(strstr(line, "tapio: watching "), "%s", line);
	cr_assert_eq(carry.len, 0, "more on stderr: %s", carry.p);
	buf_free(&carry);
}

static int seq_of(const char *line)
{
	const char *p = strstr(line, "\"seq ");

	return p ? atoi(p + 5) : -1;
}

Test(cli_watch, follows_appends_and_rotation_then_stops_on_sigint)
{
	struct fixture d;
	struct proc p;
	struct buf carry = {0}, out = {0}, err = {0};
	char line[TAPIO_OCC_JSON_MAX + 64], a[600], b[600];
	int next = 0, got;

	fixture_empty(&d);
	append(&d, 1000, 5, false); /* already there: not printed */
	{
		const char *args[] = {"--data-dir", d.dir, "--json", "watch", NULL};

		proc_spawn(&p, args);
	}
	wait_ready(&p);
	append(&d, 0, 3, true);
	for (got = 0; got < 3 && read_line(p.out, &carry, line, sizeof(line), 5000); got++)
		cr_expect_eq(seq_of(line), next++, "line: %s", line);
	cr_assert_eq(got, 3, "watch printed %d of 3 appended lines", got);

	/* rotation by rename: current → .1, then a fresh current file */
	snprintf(a, sizeof(a), "%s/occurrences.jsonl", d.dir);
	snprintf(b, sizeof(b), "%s/occurrences.jsonl.1", d.dir);
	append(&d, 3, 1, false); /* written just before the rename: must not be lost */
	cr_assert_eq(rename(a, b), 0);
	append(&d, 4, 2, false);
	for (got = 0; got < 3 && read_line(p.out, &carry, line, sizeof(line), 5000); got++)
		cr_expect_eq(seq_of(line), next++, "line: %s", line);
	cr_assert_eq(got, 3, "after rotation watch printed %d of 3 lines", got);

	kill(p.pid, SIGINT);
	cr_expect_eq(proc_finish(&p, &out, &err, 5000), 0, "stderr: %s", err.p);
	cr_expect_eq(out.len, 0, "extra output: %s", out.p);
	fixture_remove(&d);
}

Test(cli_watch, human_lines_are_aligned_and_filtered)
{
	struct fixture d;
	struct proc p;
	struct buf carry = {0}, out = {0}, err = {0};
	char l1[1024], l2[1024];

	fixture_empty(&d);
	append(&d, 0, 1, false);
	{
		const char *args[] = {"--data-dir", d.dir, "watch", "--node", "node-a", NULL};

		proc_spawn(&p, args);
	}
	wait_ready(&p);
	append(&d, 1, 5, false); /* i = 5 is node-b: filtered out */
	cr_assert(read_line(p.out, &carry, l1, sizeof(l1), 5000));
	cr_assert(read_line(p.out, &carry, l2, sizeof(l2), 5000));
	cr_expect_neq(strstr(l1, "kernel.") - l1, 0);
	cr_expect_eq(strstr(l1, "kernel.") - l1, strstr(l2, "kernel.") - l2, "%s\n%s", l1, l2);
	cr_expect_eq(strstr(l1, "node-a") - l1, strstr(l2, "node-a") - l2, "%s\n%s", l1, l2);
	kill(p.pid, SIGINT);
	cr_expect_eq(proc_finish(&p, &out, &err, 5000), 0);
	buf_add(&carry, out.p, out.len);
	cr_expect_eq(2 + count_lines(carry.p), 4, "%s", carry.p); /* 1..4 node-a, 5 node-b */
	cr_expect_null(strstr(carry.p, "node-b"));
	fixture_remove(&d);
}
