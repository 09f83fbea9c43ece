/*
 * bench_store: appends N records of ~300 bytes in batches of B with one commit per batch and
 * prints records/s and fsyncs/s, then the baseline: the same bytes written with write() +
 * fdatasync() to a plain file at the same cadence.
 *
 * usage: bench_store [-n records] [-b batch] [-d dir] [-p always|interval|never]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "controller/store.h"

#define PAYLOAD_LEN 300

static int rm_tree(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

int main(int argc, char **argv)
{
	size_t n = 100000, batch = 100;
	const char *base = "/tmp";
	enum store_fsync policy = STORE_FSYNC_ALWAYS;
	int opt;

	while ((opt = getopt(argc, argv, "n:b:d:p:")) != -1) {
		switch (opt) {
		case 'n':
			n = strtoull(optarg, NULL, 10);
			break;
		case 'b':
			batch = strtoull(optarg, NULL, 10);
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
			fprintf(stderr, "usage: %s [-n records] [-b batch] [-d dir] [-p policy]\n",
				argv[0]);
			return 2;
		}
	}
	if (n == 0 || batch == 0 || batch > n) {
		fprintf(stderr, "bench_store: need 0 < batch <= records\n");
		return 2;
	}

	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/bench_store.%d", base, (int)getpid());
	rm_tree(dir);

	struct store_options o;
	store_options_defaults(&o);
	o.dir = dir;
	o.fsync = policy;
	struct store *s;
	int err = store_open(&o, &s);
	if (err) {
		fprintf(stderr, "bench_store: store_open %s: %s\n", dir, strerror(-err));
		return 1;
	}
	uint32_t node;
	store_node_intern(s, "bench-node", &node);

	struct store_record_meta *meta = calloc(batch, sizeof(*meta));
	const void **rec = calloc(batch, sizeof(*rec));
	size_t *len = calloc(batch, sizeof(*len));
	uint8_t payload[PAYLOAD_LEN];
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
			return 1;
		}
		done += k;
	}
	double secs = (double)(clock_mono_ns() - t0) / 1e9;
	struct store_stats st;
	store_stats(s, &st);
	printf("store:    %zu records (%zu B payload, batch %zu) in %.3f s: %.0f records/s, "
	       "%.0f commits/s, %.0f fsyncs/s, %llu bytes\n",
	       n, (size_t)PAYLOAD_LEN, batch, secs, (double)n / secs, (double)st.commits / secs,
	       (double)st.fsyncs / secs, (unsigned long long)st.bytes);
	store_close(s);

	/* baseline: identical bytes per batch, write() + fdatasync() per batch */
	char path[4200];
	snprintf(path, sizeof(path), "%s/raw.bin", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "bench_store: open %s: %s\n", path, strerror(errno));
		return 1;
	}
	size_t rec_bytes = seg_record_size(PAYLOAD_LEN);
	uint8_t *buf = malloc(rec_bytes * batch);
	memset(buf, 0xab, rec_bytes * batch);
	uint64_t syncs = 0;
	t0 = clock_mono_ns();
	for (size_t done = 0; done < n;) {
		size_t k = n - done < batch ? n - done : batch;
		if (write(fd, buf, rec_bytes * k) != (ssize_t)(rec_bytes * k)) {
			fprintf(stderr, "bench_store: write: %s\n", strerror(errno));
			return 1;
		}
		if (policy != STORE_FSYNC_NEVER) {
			fdatasync(fd);
			syncs++;
		}
		done += k;
	}
	secs = (double)(clock_mono_ns() - t0) / 1e9;
	printf("baseline: %zu records write()+fdatasync() per batch in %.3f s: %.0f records/s, "
	       "%.0f fsyncs/s\n",
	       n, secs, (double)n / secs, (double)syncs / secs);
	close(fd);
	free(buf);
	free(meta);
	free(rec);
	free(len);
	rm_tree(dir);
	return 0;
}
