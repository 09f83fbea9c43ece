/* The agent spool on a real temp directory: recovery, torn tails, corruption, bounds, acks. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/client/spool.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tapio-spool-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(spool, .init = setup, .fini = teardown, .timeout = 30);

static struct spool *open_spool(uint64_t max_bytes, uint64_t segment_bytes)
{
	struct spool_options o = {
	    .dir = dir, .max_bytes = max_bytes, .segment_bytes = segment_bytes, .fsync = 1};
	struct spool *s;
	char err[256];

	cr_assert_eq(spool_open(&o, &s, err, sizeof(err)), 0, "%s", err);
	return s;
}

/* payload of batch seq: len bytes derived from seq */
static void payload_for(uint64_t seq, uint8_t *buf, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seq * 31 + i);
}

static void append_n(struct spool *s, uint64_t from, uint64_t n, uint32_t len,
		     struct spool_evicted *ev)
{
	uint8_t buf[4096];

	for (uint64_t seq = from; seq < from + n; seq++) {
		payload_for(seq, buf, len);
		cr_assert_eq(spool_append(s, seq, (uint32_t)(seq % 7 + 1), buf, len, ev), 0);
	}
	cr_assert_eq(spool_sync(s), 0);
}

static int count_segments(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	while ((de = readdir(d)))
		n += strncmp(de->d_name, "seg-", 4) == 0;
	closedir(d);
	return n;
}

static char *first_segment(void)
{
	static char path[512];
	DIR *d = opendir(dir);
	struct dirent *de;
	char best[256] = "";

	while ((de = readdir(d)))
		if (strncmp(de->d_name, "seg-", 4) == 0 && (!*best || strcmp(de->d_name, best) < 0))
			snprintf(best, sizeof(best), "%s", de->d_name);
	closedir(d);
	snprintf(path, sizeof(path), "%s/%s", dir, best);
	return path;
}

struct readback {
	uint64_t next;
	size_t n;
};

static void on_rec(void *arg, const struct spool_record *r, const uint8_t *payload)
{
	struct readback *rb = arg;
	uint8_t want[4096];

	cr_assert_eq(r->seq, rb->next, "read seq %lu, wanted %lu", (unsigned long)r->seq,
		     (unsigned long)rb->next);
	cr_assert_eq(r->count, r->seq % 7 + 1);
	payload_for(r->seq, want, r->len);
	cr_assert_eq(memcmp(payload, want, r->len), 0);
	rb->next++;
	rb->n++;
}

Test(spool, session_persists_and_records_survive_reopen)
{
	struct spool *s = open_spool(0, 4096);
	uint64_t session = spool_session_id(s);
	const struct spool_record *rec;
	size_t n;

	cr_assert_neq(session, 0);
	append_n(s, 1, 50, 300, NULL);
	cr_assert_eq(spool_last_seq(s), 50);
	spool_close(s);

	s = open_spool(0, 4096);
	cr_assert_eq(spool_session_id(s), session);
	cr_assert_eq(spool_last_seq(s), 50);
	rec = spool_recovered(s, &n);
	cr_assert_eq(n, 50);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(rec[i].seq, i + 1);
		cr_assert_eq(rec[i].count, (i + 1) % 7 + 1);
		cr_assert_eq(rec[i].len, 300);
	}
	cr_assert_eq(spool_bytes(s), 50ull * (SPOOL_RECORD_HEADER + 300));
	struct readback rb = {.next = 10};
	cr_assert_eq(spool_read(s, 10, 20, 1 << 20, on_rec, &rb), 11);
	cr_assert_eq(rb.next, 21);
	/* max_bytes stops the read early but always yields one record */
	rb.next = 30;
	cr_assert_eq(spool_read(s, 30, 50, 10, on_rec, &rb), 1);
	spool_close(s);
}

Test(spool, truncated_tail_is_cut_and_logged)
{
	struct spool *s = open_spool(0, 1 << 20);
	struct spool_scan sc;
	const struct spool_record *rec;
	struct stat st;
	char *seg;
	size_t n;

	append_n(s, 1, 10, 100, NULL);
	spool_close(s);
	seg = first_segment();
	cr_assert_eq(stat(seg, &st), 0);
	cr_assert_eq(st.st_size, 10 * (SPOOL_RECORD_HEADER + 100));
	/* a crash in the middle of the 10th record */
	cr_assert_eq(truncate(seg, st.st_size - 37), 0);

	cr_assert_eq(spool_scan_file(seg, 0, &sc), 0);
	cr_assert_eq(sc.nrecords, 9);
	cr_assert_eq(sc.valid_bytes, 9 * (SPOOL_RECORD_HEADER + 100));
	cr_assert_eq(sc.corrupt, 0, "a short tail is torn, not corrupt");
	free(sc.records);

	s = open_spool(0, 1 << 20);
	rec = spool_recovered(s, &n);
	cr_assert_eq(n, 9);
	cr_assert_eq(rec[8].seq, 9);
	cr_assert_eq(spool_repaired_bytes(s), SPOOL_RECORD_HEADER + 100 - 37);
	cr_assert_eq(stat(seg, &st), 0);
	cr_assert_eq(st.st_size, 9 * (SPOOL_RECORD_HEADER + 100), "file truncated on disk");
	/* appending continues after the cut */
	append_n(s, 10, 1, 100, NULL);
	spool_close(s);
	s = open_spool(0, 1 << 20);
	spool_recovered(s, &n);
	cr_assert_eq(n, 10);
	spool_close(s);
}

Test(spool, corrupt_byte_cuts_from_the_bad_record)
{
	struct spool *s = open_spool(0, 1 << 20);
	struct spool_scan sc;
	const struct spool_record *rec;
	char *seg;
	size_t n;
	int fd;
	uint8_t b;
	off_t off = 4 * (SPOOL_RECORD_HEADER + 200) + SPOOL_RECORD_HEADER + 17; /* in record 5 */

	append_n(s, 1, 12, 200, NULL);
	spool_close(s);
	seg = first_segment();
	fd = open(seg, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, off), 1);
	close(fd);

	cr_assert_eq(spool_scan_file(seg, 0, &sc), 0);
	cr_assert_eq(sc.nrecords, 4);
	cr_assert_eq(sc.corrupt, 1);
	cr_assert_eq(sc.file_bytes, 12 * (SPOOL_RECORD_HEADER + 200));
	free(sc.records);

	s = open_spool(0, 1 << 20);
	rec = spool_recovered(s, &n);
	cr_assert_eq(n, 4);
	cr_assert_eq(rec[3].seq, 4);
	cr_assert_eq(spool_repaired_bytes(s), 8 * (SPOOL_RECORD_HEADER + 200));
	cr_assert_eq(spool_last_seq(s), 4);
	spool_close(s);
}

Test(spool, corrupt_length_prefix_is_not_trusted)
{
	struct spool *s = open_spool(0, 1 << 20);
	struct spool_scan sc;
	uint8_t huge[4] = {0xff, 0xff, 0xff, 0x7f};
	char *seg;
	int fd;

	append_n(s, 1, 3, 64, NULL);
	spool_close(s);
	seg = first_segment();
	fd = open(seg, O_RDWR);
	cr_assert_eq(pwrite(fd, huge, 4, SPOOL_RECORD_HEADER + 64), 4);
	close(fd);
	cr_assert_eq(spool_scan_file(seg, 1, &sc), 0);
	cr_assert_eq(sc.nrecords, 1);
	cr_assert_eq(sc.corrupt, 1);
	free(sc.records);
}

Test(spool, bound_drops_oldest_segments_with_exact_counts)
{
	/* records of 24 + 476 = 500 bytes; segments rotate past 2000 bytes (4 records);
	 * the bound of 5000 bytes keeps at most 10 records */
	struct spool *s = open_spool(5000, 2000);
	struct spool_evicted ev = {0};
	const struct spool_record *rec;
	uint64_t expect_occ = 0;
	size_t n;

	append_n(s, 1, 10, 476, &ev);
	cr_assert_eq(ev.batches, 0);
	cr_assert_eq(spool_bytes(s), 5000);
	append_n(s, 11, 1, 476, &ev); /* 5500 > 5000: segment 1..4 goes */
	for (uint64_t seq = 1; seq <= 4; seq++)
		expect_occ += seq % 7 + 1;
	cr_assert_eq(ev.batches, 4);
	cr_assert_eq(ev.occurrences, expect_occ);
	cr_assert_eq(ev.hi_seq, 4);
	cr_assert_eq(spool_bytes(s), 3500);
	cr_assert_eq(count_segments(), 2);

	/* acked batches are not counted as lost when their segment is dropped */
	cr_assert_eq(spool_ack(s, 6), 0);
	memset(&ev, 0, sizeof(ev));
	append_n(s, 12, 4, 476, &ev); /* 5500 again: segment 5..8 goes, 5 and 6 were acked */
	cr_assert_eq(ev.batches, 2);
	cr_assert_eq(ev.occurrences, (7 % 7 + 1) + (8 % 7 + 1));
	cr_assert_eq(ev.hi_seq, 8);
	spool_close(s);

	s = open_spool(5000, 2000);
	rec = spool_recovered(s, &n);
	cr_assert_eq(n, 7);
	cr_assert_eq(rec[0].seq, 9);
	cr_assert_eq(rec[6].seq, 15);
	cr_assert_eq(spool_acked(s), 6);
	spool_close(s);
}

Test(spool, ack_deletes_fully_acked_segments_and_persists)
{
	struct spool *s = open_spool(0, 1000);
	const struct spool_record *rec;
	size_t n;

	append_n(s, 1, 20, 176, NULL); /* 200-byte records, 5 per segment: 4 segments */
	cr_assert_eq(count_segments(), 4);
	cr_assert_eq(spool_ack(s, 12), 0);
	cr_assert_eq(count_segments(), 2, "segments 1-5 and 6-10 deleted, 11-15 kept");
	cr_assert_eq(spool_bytes(s), 10 * 200);
	spool_close(s);

	s = open_spool(0, 1000);
	cr_assert_eq(spool_acked(s), 12);
	rec = spool_recovered(s, &n);
	cr_assert_eq(n, 8);
	cr_assert_eq(rec[0].seq, 13);
	cr_assert_eq(spool_ack(s, 20), 0);
	cr_assert_eq(count_segments(), 0);
	cr_assert_eq(spool_last_seq(s), 20);
	/* sequences continue after a fully acked spool */
	cr_assert_eq(spool_append(s, 20, 1, (const uint8_t *)"x", 1, NULL), -EINVAL);
	append_n(s, 21, 1, 10, NULL);
	spool_close(s);
	s = open_spool(0, 1000);
	cr_assert_eq(spool_last_seq(s), 21);
	spool_close(s);
}

Test(spool, marker_files_are_checked)
{
	uint64_t v = 0;
	char path[128];
	int fd;

	cr_assert_eq(spool_read_u64_file(dir, "x", &v), -ENOENT);
	cr_assert_eq(spool_write_u64_file(dir, "x", 0x1122334455667788ull), 0);
	cr_assert_eq(spool_read_u64_file(dir, "x", &v), 0);
	cr_assert_eq(v, 0x1122334455667788ull);
	snprintf(path, sizeof(path), "%s/x.tmp", dir);
	cr_assert_eq(access(path, F_OK), -1, "no .tmp left behind");
	snprintf(path, sizeof(path), "%s/x", dir);
	fd = open(path, O_WRONLY);
	cr_assert_eq(pwrite(fd, "\x00", 1, 3), 1);
	close(fd);
	cr_assert_eq(spool_read_u64_file(dir, "x", &v), -EBADMSG);
}

Test(spool, read_back_checks_the_crc_again)
{
	struct spool *s = open_spool(0, 1 << 20);
	struct readback rb = {.next = 1};
	char *seg;
	int fd;

	append_n(s, 1, 5, 100, NULL);
	/* damage record 4 after recovery: reads stop there with -EBADMSG */
	seg = first_segment();
	fd = open(seg, O_RDWR);
	cr_assert_eq(pwrite(fd, "X", 1, 3 * (SPOOL_RECORD_HEADER + 100) + SPOOL_RECORD_HEADER + 5),
		     1);
	close(fd);
	cr_assert_eq(spool_read(s, 1, 5, 1 << 20, on_rec, &rb), -EBADMSG);
	cr_assert_eq(rb.n, 3, "records 1-3 were delivered before the bad one");
	rb.next = 5;
	cr_assert_eq(spool_read(s, 5, 5, 1 << 20, on_rec, &rb), 1);
	spool_close(s);
}
