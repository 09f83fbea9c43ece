/*
 * bench_store: appends N records of ~300 bytes in batches of B with one commit per batch and
 * prints records/s and fsyncs/s, then the baseline: the same bytes written with write() +
 * fdatasync() to a plain file at the same cadence.
 *
 * Store and baseline alternate for -r rounds (default 3) so that disk noise from other
 * processes hits both alike; the median round of each is printed last.
 *
 * usage: bench_store [-n records] [-b batch] [-r rounds] [-d dir] [-p always|interval|never]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "controller/store.h"

#define PAYLOAD_LEN 300
#define MAX_ROUNDS  16

struct result {
	double records_s;
	double fsyncs_s;
};

static int rm_tree(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static int run_store(const char *dir, size_t n, size_t batch, enum store_fsync policy,
		     struct result *r)
{
	struct store_options o;
	struct store *s;
	uint32_t node;
	uint8_t payload[PAYLOAD_LEN];
	int err;

	rm_tree(dir);
	store_options_defaults(&o);
	o.dir = dir;
	o.fsync = policy;
	err = store_open(&o, &s);
	if (err) {
		fprintf(stderr, "bench_store: store_open %s: %s\n", dir, strerror(-err));
		return err;
	}
	store_node_intern(s, "bench-node", &node);
	struct store_record_meta *meta = calloc(batch, sizeof(*meta));
	const void **rec = calloc(batch, sizeof(*rec));
	size_t *len = calloc(batch, sizeof(*len));
	if (!meta || !rec || !len) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);

	uint64_t seq = 0, t0 = clock_mono_ns();
	for (size_t done = 0; done < n;) {
		size_t k = n - done < batch ? n - done : batch;
		seq++;
		for (size_t i = 0; i < k; i++) {
			meta[i] = (struct store_record_meta){.timestamp_ns = clock_wall_ns(),
							     .type = (uint8_t)(i % 11),
							     .severity = (uint8_t)(i % 5),
							     .node_id = node,
							     .agent_key = 1,
							     .session_id = 1,
							     .sequence = seq};
			rec[i] = payload;
			len[i] = sizeof(payload);
		}
		err = store_append_batch(s, meta, rec, len, k);
		if (!err)
			err = store_commit(s);
		if (err) {
			fprintf(stderr, "bench_store: append/commit: %s\n", strerror(-err));
			goto out;
		}
		done += k;
	}
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	struct store_stats st;
	store_stats(s, &st);
	r->records_s = (double)n / secs;
	r->fsyncs_s = (double)st.fsyncs / secs;
out:
	store_close(s);
	free(meta);
	free(rec);
	free(len);
	rm_tree(dir);
	return err;
}

/* The same bytes per batch, write() + fdatasync() per batch, to a plain file. */
static int run_baseline(const char *dir, size_t n, size_t batch, enum store_fsync policy,
			struct result *r)
{
	char path[4200];
	int err = 0;

	rm_tree(dir);
	if (mkdir(dir, 0755) != 0)
		return -errno;
	snprintf(path, sizeof(path), "%s/raw.bin", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "bench_store: open %s: %s\n", path, strerror(errno));
		return -errno;
	}
	size_t rec_bytes = seg_record_size(PAYLOAD_LEN, false);
	uint8_t *buf = malloc(rec_bytes * batch);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	memset(buf, 0xab, rec_bytes * batch);
	uint64_t syncs = 0, t0 = clock_mono_ns();
	for (size_t done = 0; done < n && !err;) {
		size_t k = n - done < batch ? n - done : batch;
		if (write(fd, buf, rec_bytes * k) != (ssize_t)(rec_bytes * k)) {
			fprintf(stderr, "bench_store: write: %s\n", strerror(errno));
			err = -EIO;
		}
		if (policy != STORE_FSYNC_NEVER) {
			fdatasync(fd);
			syncs++;
		}
		done += k;
	}
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	r->records_s = (double)n / secs;
	r->fsyncs_s = (double)syncs / secs;
	close(fd);
	free(buf);
	rm_tree(dir);
	return err;
}

static int cmp_result(const void *a, const void *b)
{
	double x = ((const struct result *)a)->records_s, y = ((const struct result *)b)->records_s;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	size_t n = 100000, batch = 100, rounds = 3;
	const char *base = "/tmp";
	enum store_fsync policy = STORE_FSYNC_ALWAYS;
	int opt;

	while ((opt = getopt(argc, argv, "n:b:r:d:p:")) != -1) {
		switch (opt) {
		case 'n':
			n = strtoull(optarg, NULL, 10);
			break;
		case 'b':
			batch = strtoull(optarg, NULL, 10);
			break;
		case 'r':
			rounds = strtoull(optarg, NULL, 10);
			break;
		case 'd':
			base = optarg;
			break;
		case 'p':
			policy = !strcmp(optarg, "never")      ? STORE_FSYNC_NEVER
				 : !strcmp(optarg, "interval") ? STORE_FSYNC_INTERVAL
							       : STORE_FSYNC_ALWAYS;
			break;
		default:
			fprintf(
			    stderr,
			    "usage: %s [-n records] [-b batch] [-r rounds] [-d dir] [-p policy]\n",
			    argv[0]);
			return 2;
		}
	}
	if (n == 0 || batch == 0 || batch > n || rounds == 0 || rounds > MAX_ROUNDS) {
		fprintf(stderr, "bench_store: need 0 < batch <= records, 1 <= rounds <= %d\n",
			MAX_ROUNDS);
		return 2;
	}
	log_set_level(LOG_WARN);

	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/bench_store.%d", base, (int)getpid());
	struct result st[MAX_ROUNDS], raw[MAX_ROUNDS];
	printf(
	    "bench_store: %zu records of %d B payload, batch %zu, commit per batch, %zu rounds\n",
	    n, PAYLOAD_LEN, batch, rounds);
	for (size_t i = 0; i < rounds; i++) {
		if (run_store(dir, n, batch, policy, &st[i]) ||
		    run_baseline(dir, n, batch, policy, &raw[i]))
			return 1;
		printf("round %zu: store %.0f records/s %.0f fsyncs/s | baseline %.0f records/s "
		       "%.0f fsyncs/s\n",
		       i + 1, st[i].records_s, st[i].fsyncs_s, raw[i].records_s, raw[i].fsyncs_s);
	}
	qsort(st, rounds, sizeof(st[0]), cmp_result);
	qsort(raw, rounds, sizeof(raw[0]), cmp_result);
	printf("median: store %.0f records/s %.0f fsyncs/s | baseline write()+fdatasync() %.0f "
	       "records/s %.0f fsyncs/s\n",
	       st[rounds / 2].records_s, st[rounds / 2].fsyncs_s, raw[rounds / 2].records_s,
	       raw[rounds / 2].fsyncs_s);
	return 0;
}
