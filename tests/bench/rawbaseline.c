/*
 * The practical ingest limit of this machine, as a baseline for bench-controller.sh: N
 * loopback TCP connections carry `bytes` in total; one receiver thread (like the controller's
 * single loop) reads them with epoll into a group buffer, and one writer thread (like the
 * controller's commit thread) appends each group to one file and fdatasync()s it.
 *
 * The receiver hands a group over when the writer is idle and at least `fsync_ms` passed
 * since the last hand-over (the controller's measured commit cadence; 0 = at once), and stops
 * reading while a full group (HIGH_WATER, the controller's default high-water mark) waits for
 * the writer. So reading overlaps the write and fdatasync of the previous group, as in the
 * controller: a receiver that waited for every fdatasync itself would measure the disk's sync
 * latency, not the machine's limit. The writer uses the store's I/O practices (64 KiB writes,
 * blocks reserved up front with fallocate, writeback started every MiB with
 * sync_file_range, durable pages behind the newest 256 MiB handed back to the kernel), so
 * the ratio to this measures what the controller does beyond moving bytes, not how it writes
 * them.
 *
 * `direct`: the same with the store's default writes (controller/store.c): O_DIRECT, whole
 * 4 KiB blocks from aligned memory, the last partial block written again (padded) with the
 * next group, no page cache. Which of the two is faster depends on the disk and the CPU left
 * over, so bench-controller.sh runs both and takes the faster as the practical limit.
 *
 * `serial` (the baseline of earlier sessions, kept for comparison): the receiver itself
 * appends each read (up to 1 MiB) and calls fdatasync() once `fsync_ms` passed, so no reading
 * happens while it waits for the disk; plain writes, nothing reserved.
 *
 * Prints "bytes=B seconds=S bytes_per_s=R fsyncs=F".
 * usage: tapio-rawbaseline FILE BYTES CONNS FSYNC_MS [serial|direct]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SENDERS		4
#define CHUNK		65536
#define READ_MAX	(1u << 20)
#define HIGH_WATER	(32u << 20)
#define WRITEBACK_EVERY (1u << 20)
#define CACHE_KEEP	(256ull << 20) /* the store's default --page-cache-keep */
#define CACHE_DROP_STEP (8ull << 20)
#define ALIGN		4096u	   /* direct: file offsets, lengths and buffers */
#define DIRECT_CHUNK	(1u << 20) /* direct: bytes per pwrite, as the store's */

struct sender {
	pthread_t thread;
	int *fds;
	int n;
	uint64_t bytes;
};

struct group {
	uint8_t *p;
	size_t len;
};

/* The writer's state, guarded by mu. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct group work; /* handed over, being written (len 0: idle) */
	bool busy, done;
	int fd;
	uint64_t file_off; /* bytes appended so far */
	uint64_t dropped;  /* page cache before this offset handed back */
	uint64_t fsyncs;
	bool direct;
} wr = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *send_main(void *arg)
{
	struct sender *s = arg;
	static char chunk[CHUNK];
	uint64_t left = s->bytes;

	memset(chunk, 'x', sizeof(chunk));
	while (left > 0) {
		for (int i = 0; i < s->n && left > 0; i++) {
			size_t n = left < CHUNK ? (size_t)left : CHUNK;
			ssize_t w = write(s->fds[i], chunk, n);

			if (w < 0) {
				perror("rawbaseline: write");
				exit(1);
			}
			left -= (uint64_t)w;
		}
	}
	for (int i = 0; i < s->n; i++)
		shutdown(s->fds[i], SHUT_WR);
	return NULL;
}

/* Appends each handed-over group and fdatasync()s it, like the controller's commit. */
static void *write_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&wr.mu);
	for (;;) {
		while (!wr.busy && !wr.done)
			pthread_cond_wait(&wr.cv, &wr.mu);
		if (!wr.busy)
			break;
		struct group g = wr.work;
		pthread_mutex_unlock(&wr.mu);
		if (wr.direct) {
			/* whole blocks, the partial last one padded: it starts the next group */
			size_t padded = (g.len + ALIGN - 1) / ALIGN * ALIGN;

			for (size_t off = 0; off < padded;) {
				size_t n =
				    padded - off < DIRECT_CHUNK ? padded - off : DIRECT_CHUNK;
				ssize_t w = pwrite(wr.fd, g.p + off, n, (off_t)(wr.file_off + off));

				if (w <= 0) {
					perror("rawbaseline: direct write");
					exit(1);
				}
				off += (size_t)w;
			}
			wr.file_off += g.len / ALIGN * ALIGN;
		}
		for (size_t off = 0, unstarted = 0; !wr.direct && off < g.len;) {
			size_t n = g.len - off < CHUNK ? g.len - off : CHUNK;
			ssize_t w;

			if (off - unstarted >=
			    WRITEBACK_EVERY) { /* early writeback, as the store */
				sync_file_range(wr.fd, (off_t)(wr.file_off + unstarted),
						(off_t)(off - unstarted), SYNC_FILE_RANGE_WRITE);
				unstarted = off;
			}
			w = write(wr.fd, g.p + off, n);
			if (w < 0) {
				perror("rawbaseline: append");
				exit(1);
			}
			off += (size_t)w;
		}
		if (!wr.direct)
			wr.file_off += g.len;
		if (fdatasync(wr.fd) != 0) {
			perror("rawbaseline: fdatasync");
			exit(1);
		}
		/* the store's page-cache window: durable pages behind the newest CACHE_KEEP go back */
		if (!wr.direct && wr.file_off > wr.dropped + CACHE_KEEP + CACHE_DROP_STEP) {
			posix_fadvise(wr.fd, (off_t)wr.dropped,
				      (off_t)(wr.file_off - CACHE_KEEP - wr.dropped),
				      POSIX_FADV_DONTNEED);
			wr.dropped = wr.file_off - CACHE_KEEP;
		}
		pthread_mutex_lock(&wr.mu);
		wr.fsyncs++;
		wr.busy = false;
		pthread_cond_broadcast(&wr.cv);
	}
	pthread_mutex_unlock(&wr.mu);
	return NULL;
}

/*
 * Hands *fill to the writer when it is idle and the cadence allows (or `wait`: blocks until
 * it is idle), taking the writer's finished buffer in exchange. Returns true when handed.
 */
static bool hand_over(struct group *fill, struct group *spare, bool wait, double *last,
		      long fsync_ms)
{
	bool handed = false;

	pthread_mutex_lock(&wr.mu);
	while (wait && wr.busy)
		pthread_cond_wait(&wr.cv, &wr.mu);
	if (!wr.busy && fill->len && (wait || (now_s() - *last) * 1000 >= (double)fsync_ms)) {
		wr.work = *fill;
		*fill = (struct group){spare->p, 0};
		*spare = wr.work; /* written when next handed back: the two buffers alternate */
		if (wr.direct) {  /* the partial last block is written again with the next group */
			fill->len = wr.work.len % ALIGN;
			memcpy(fill->p, wr.work.p + wr.work.len - fill->len, fill->len);
		}
		wr.busy = true;
		*last = now_s();
		handed = true;
		pthread_cond_broadcast(&wr.cv);
	}
	pthread_mutex_unlock(&wr.mu);
	return handed;
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc > 6 ||
	    (argc == 6 && strcmp(argv[5], "serial") && strcmp(argv[5], "direct"))) {
		fprintf(stderr,
			"usage: tapio-rawbaseline FILE BYTES CONNS FSYNC_MS [serial|direct]\n");
		return 2;
	}
	bool serial = argc == 6 && !strcmp(argv[5], "serial");
	wr.direct = argc == 6 && !strcmp(argv[5], "direct");
	uint64_t total = strtoull(argv[2], NULL, 10);
	int conns = atoi(argv[3]);
	long fsync_ms = atol(argv[4]);
	int out =
	    open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | (wr.direct ? O_DIRECT : O_APPEND), 0644);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int *cfd = calloc((size_t)conns, sizeof(int));
	int ep = epoll_create1(0);
	struct sender snd[SENDERS];
	/* a group may pass HIGH_WATER by one read, as the controller's by the frames read */
	struct group fill = {aligned_alloc(ALIGN, HIGH_WATER + READ_MAX + ALIGN), 0};
	struct group spare = {aligned_alloc(ALIGN, HIGH_WATER + READ_MAX + ALIGN), 0};
	pthread_t writer;
	uint64_t got = 0;
	int open_conns = conns;

	if (out < 0 || ls < 0 || conns <= 0 || !cfd || !fill.p || !spare.p ||
	    bind(ls, (void *)&sa, sizeof(sa)) || listen(ls, conns) ||
	    getsockname(ls, (void *)&sa, &sl)) {
		perror("rawbaseline: setup");
		return 1;
	}
	for (int i = 0; i < conns; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		struct epoll_event ev = {.events = EPOLLIN};

		if (connect(c, (void *)&sa, sizeof(sa))) {
			perror("rawbaseline: connect");
			return 1;
		}
		cfd[i] = c;
		ev.data.fd = accept(ls, NULL, NULL);
		epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev);
	}
	wr.fd = out;
	/* the store's I/O practices (controller/store.c): the file's blocks reserved up front */
	if (!serial && fallocate(out, FALLOC_FL_KEEP_SIZE, 0, (off_t)total))
		perror("rawbaseline: fallocate (appends allocate as they go)");
	pthread_create(&writer, NULL, write_main, NULL);
	double t0 = now_s(), last = t0;

	for (int i = 0; i < SENDERS; i++) {
		snd[i].fds = cfd + i * conns / SENDERS;
		snd[i].n = (i + 1) * conns / SENDERS - i * conns / SENDERS;
		snd[i].bytes = total / SENDERS;
		pthread_create(&snd[i].thread, NULL, send_main, &snd[i]);
	}
	while (open_conns > 0) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, fsync_ms > 0 ? (int)fsync_ms : 1);

		for (int i = 0; i < n; i++) {
			/* a full group waits for the writer: reading stops (backpressure) */
			if (fill.len >= HIGH_WATER)
				hand_over(&fill, &spare, true, &last, fsync_ms);
			ssize_t r = read(evs[i].data.fd, fill.p + fill.len, READ_MAX);

			if (r > 0 && serial) {
				if (write(out, fill.p, (size_t)r) != r) {
					perror("rawbaseline: append");
					return 1;
				}
				got += (uint64_t)r;
			} else if (r > 0) {
				fill.len += (size_t)r;
				got += (uint64_t)r;
			} else if (r == 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd, NULL);
				close(evs[i].data.fd);
				open_conns--;
			}
		}
		if (!serial) {
			hand_over(&fill, &spare, false, &last, fsync_ms);
		} else if (fsync_ms == 0 || (now_s() - last) * 1000 >= (double)fsync_ms) {
			fdatasync(out);
			wr.fsyncs++;
			last = now_s();
		}
	}
	if (serial) {
		fdatasync(out);
		wr.fsyncs++;
	}
	hand_over(&fill, &spare, true, &last, fsync_ms); /* the last group, then wait for it */
	pthread_mutex_lock(&wr.mu);
	while (wr.busy)
		pthread_cond_wait(&wr.cv, &wr.mu);
	wr.done = true;
	pthread_cond_broadcast(&wr.cv);
	pthread_mutex_unlock(&wr.mu);
	pthread_join(writer, NULL);
	if (wr.direct && ftruncate(out, (off_t)got)) /* the last block's padding */
		perror("rawbaseline: ftruncate");
	double secs = now_s() - t0;

	for (int i = 0; i < SENDERS; i++)
		pthread_join(snd[i].thread, NULL);
	printf("bytes=%llu seconds=%.3f bytes_per_s=%.0f fsyncs=%llu\n", (unsigned long long)got,
	       secs, (double)got / secs, (unsigned long long)wr.fsyncs);
	free(fill.p);
	free(spare.p);
	unlink(argv[1]);
	return 0;
}
