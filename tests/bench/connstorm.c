/*
 * Connection-refused storm for benchmarks: N connect() calls to a closed TCP port on
 * 127.0.0.1, each with a fresh socket. Prints "connects=N refused=R seconds=S".
 * usage: tapio-connstorm N [port]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int closed_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(s, (struct sockaddr *)&sa, &sl) != 0) {
		perror("connstorm: bind");
		exit(1);
	}
	close(s);
	return ntohs(sa.sin_port);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
	int port = argc > 2 ? atoi(argv[2]) : closed_port();
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timespec t0, t1;
	long refused = 0;

	if (n <= 0) {
		fprintf(stderr, "usage: tapio-connstorm N [port]\n");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);

		if (s < 0) {
			perror("connstorm: socket");
			return 1;
		}
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno == ECONNREFUSED)
			refused++;
		close(s);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("connects=%ld refused=%ld seconds=%.3f\n", n, refused,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return refused == n ? 0 : 1;
}
