/*
 * Why the store writes a commit group in 64 KiB pieces (controller/store.c WRITE_CHUNK): fills
 * a GROUP-byte buffer (as the loop fills a commit group), writes it with pwrite() in pieces of
 * at most CHUNK bytes (0 = the whole group in one call), fdatasync()s every 4 groups, until
 * TOTAL bytes are written; prints the wall rate and the kernel+user CPU the pwrite calls cost
 * per byte (thread CPU time around them). Alternate chunk sizes in one session to compare.
 * KEEP (bytes, optional): after each fdatasync, hand the page cache of everything but the
 * newest KEEP bytes back to the kernel (POSIX_FADV_DONTNEED), as the store does with
 * --page-cache-keep; 0 or absent = never. Alternate `… 65536 4000000000 268435456` with
 * `… 65536 4000000000` to see what written pages piling up cost the write's copy.
 * usage: tapio-pwritebench FILE [GROUP [CHUNK [TOTAL [KEEP]]]]   (32 MiB, 64 KiB, 2 GB, 0)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double secs(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	size_t group = argc > 2 ? strtoull(argv[2], NULL, 0) : 32u << 20;
	size_t chunk = argc > 3 ? strtoull(argv[3], NULL, 0) : 64u << 10;
	uint64_t total = argc > 4 ? strtoull(argv[4], NULL, 0) : 2000000000ull;
	uint64_t keep = argc > 5 ? strtoull(argv[5], NULL, 0) : 0;
	uint64_t off = 0, groups = 0, dropped = 0;
	double write_cpu = 0, t0;
	uint8_t *buf;
	int fd;

	if (argc < 2 || group == 0) {
		fprintf(stderr, "usage: tapio-pwritebench FILE [GROUP [CHUNK [TOTAL]]]\n");
		return 2;
	}
	if (chunk == 0 || chunk > group)
		chunk = group;
	fd = open(argv[1], O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	buf = malloc(group);
	if (fd < 0 || !buf) {
		fprintf(stderr, "tapio-pwritebench: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	t0 = secs(CLOCK_MONOTONIC);
	while (off < total) {
		memset(buf, (int)(groups & 0xff), group); /* the loop writing the group */
		double c0 = secs(CLOCK_THREAD_CPUTIME_ID);
		for (size_t done = 0; done < group;) {
			size_t n = group - done < chunk ? group - done : chunk;
			ssize_t w = pwrite(fd, buf + done, n, (off_t)(off + done));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				fprintf(stderr, "tapio-pwritebench: pwrite: %s\n", strerror(errno));
				return 1;
			}
			done += (size_t)w;
		}
		write_cpu += secs(CLOCK_THREAD_CPUTIME_ID) - c0;
		off += group;
		if (++groups % 4 == 0 && fdatasync(fd) != 0) {
			fprintf(stderr, "tapio-pwritebench: fdatasync: %s\n", strerror(errno));
			return 1;
		}
		if (keep && groups % 4 == 0 && off > dropped + keep) {
			posix_fadvise(fd, (off_t)dropped, (off_t)(off - keep - dropped),
				      POSIX_FADV_DONTNEED);
			dropped = off - keep;
		}
	}
	fdatasync(fd);
	printf("group=%zu chunk=%zu keep=%llu bytes=%llu wall_MBps=%.0f pwrite_cpu_s=%.2f "
	       "pwrite_MBps_per_core=%.0f\n",
	       group, chunk, (unsigned long long)keep, (unsigned long long)off,
	       (double)off / 1e6 / (secs(CLOCK_MONOTONIC) - t0), write_cpu,
	       (double)off / 1e6 / write_cpu);
	close(fd);
	unlink(argv[1]);
	free(buf);
	return 0;
}
