/*
 * The practical ingest limit of this machine, as a baseline for bench-controller.sh: N
 * loopback TCP connections carry `bytes` in total; one receiver thread (like the
 * controller's single loop) reads them with epoll and appends everything to one file,
 * fdatasync()ing every `fsync_ms` (the controller's measured commit cadence; 0 = after every
 * read burst). Prints "bytes=B seconds=S bytes_per_s=R fsyncs=F".
 * usage: tapio-rawbaseline FILE BYTES CONNS FSYNC_MS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SENDERS 4
#define CHUNK	65536

struct sender {
	pthread_t thread;
	int *fds;
	int n;
	uint64_t bytes;
};

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

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: tapio-rawbaseline FILE BYTES CONNS FSYNC_MS\n");
		return 2;
	}
	uint64_t total = strtoull(argv[2], NULL, 10);
	int conns = atoi(argv[3]);
	long fsync_ms = atol(argv[4]);
	int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int *cfd = calloc((size_t)conns, sizeof(int));
	int ep = epoll_create1(0);
	struct sender snd[SENDERS];
	static char buf[1 << 20];
	uint64_t got = 0, fsyncs = 0;
	int open_conns = conns;

	if (out < 0 || ls < 0 || conns <= 0 || !cfd || bind(ls, (void *)&sa, sizeof(sa)) ||
	    listen(ls, conns) || getsockname(ls, (void *)&sa, &sl)) {
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
	double t0 = now_s(), last_sync = t0;

	for (int i = 0; i < SENDERS; i++) {
		snd[i].fds = cfd + i * conns / SENDERS;
		snd[i].n = (i + 1) * conns / SENDERS - i * conns / SENDERS;
		snd[i].bytes = total / SENDERS;
		pthread_create(&snd[i].thread, NULL, send_main, &snd[i]);
	}
	while (open_conns > 0) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, 100);

		for (int i = 0; i < n; i++) {
			ssize_t r = read(evs[i].data.fd, buf, sizeof(buf));

			if (r > 0) {
				if (write(out, buf, (size_t)r) != r) {
					perror("rawbaseline: append");
					return 1;
				}
				got += (uint64_t)r;
			} else if (r == 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd, NULL);
				close(evs[i].data.fd);
				open_conns--;
			}
		}
		if (fsync_ms == 0 || (now_s() - last_sync) * 1000 >= (double)fsync_ms) {
			fdatasync(out);
			fsyncs++;
			last_sync = now_s();
		}
	}
	fdatasync(out);
	fsyncs++;
	double secs = now_s() - t0;

	for (int i = 0; i < SENDERS; i++)
		pthread_join(snd[i].thread, NULL);
	printf("bytes=%llu seconds=%.3f bytes_per_s=%.0f fsyncs=%llu\n", (unsigned long long)got,
	       secs, (double)got / secs, (unsigned long long)fsyncs);
	unlink(argv[1]);
	return 0;
}
