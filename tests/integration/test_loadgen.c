/*
 * tapio-loadgen (real controller clients) against the real tapio-controller process over
 * loopback: everything submitted is acknowledged and stored once; across a kill -9 of the
 * controller every acknowledged occurrence survives and the resent batches are stored once.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "controller/store.h"
#include "tapio.pb-c.h"

extern char **environ;

#define BIN(name) TAPIO_BIN_DIR "/" name

static char tmp[64];

static void setup(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/tapio-loadgen-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(loadgen, .init = setup, .fini = teardown, .timeout = 120);

static uint16_t free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static bool port_open(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

	close(fd);
	return ok;
}

/* Runs `sh -c cmd` in the background; returns its pid. */
static pid_t spawn_sh(const char *cmd)
{
	char *argv[] = {"sh", "-c", (char *)cmd, NULL};
	pid_t pid;

	cr_assert_eq(posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ), 0);
	return pid;
}

static pid_t start_controller(uint16_t port)
{
	char cmd[1024];
	pid_t pid;

	snprintf(cmd, sizeof(cmd),
		 "exec %s --data-dir %s/ctl --listen 127.0.0.1:%u --fsync interval:20 "
		 "--stats-interval 1h 2>>%s/ctl.log",
		 BIN("tapio-controller"), tmp, port, tmp);
	pid = spawn_sh(cmd);
	for (int i = 0; i < 200 && !port_open(port); i++)
		sleep_ms(25);
	cr_assert(port_open(port), "controller did not start listening");
	return pid;
}

static int wait_exit(pid_t pid)
{
	int status;

	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static json_t *read_summary(const char *path)
{
	json_error_t jerr;
	json_t *j = json_load_file(path, 0, &jerr);

	cr_assert_not_null(j, "summary %s: %s", path, jerr.text);
	return j;
}

static uint64_t jint(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);

	cr_assert(json_is_integer(v), "summary lacks %s", key);
	return (uint64_t)json_integer_value(v);
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Reads "id" lines (26 chars) from a file into a sorted array of 27-byte strings. */
static char (*read_ids(const char *path, size_t *n))[27]
{
	char(*ids)[27] = NULL;
	size_t cap = 0;
	char line[8192];
	FILE *f = fopen(path, "r");

	cr_assert_not_null(f, "open %s", path);
	*n = 0;
	while (fgets(line, sizeof(line), f)) {
		const char *p = line;

		if (line[0] == '{') { /* a dump line: take the id member */
			p = strstr(line, "\"id\":\"");
			cr_assert_not_null(p);
			p += 6;
		}
		if (*n == cap) {
			cap = cap ? cap * 2 : 4096;
			ids = realloc(ids, cap * sizeof(*ids));
		}
		memcpy(ids[*n], p, 26);
		ids[*n][26] = '\0';
		(*n)++;
	}
	fclose(f);
	qsort(ids, *n, sizeof(*ids), cmp_id);
	return ids;
}

static void dump_store(char *out, size_t len)
{
	char cmd[1024];

	snprintf(out, len, "%s/dump.jsonl", tmp);
	snprintf(cmd, sizeof(cmd), "%s --dump %s/ctl --json > %s 2>>%s/ctl.log",
		 BIN("tapio-controller"), tmp, out, tmp);
	cr_assert_eq(system(cmd), 0, "dump failed");
}

/* Every acked id is in the store; the store holds no id twice; returns the store count. */
static size_t check_store(const char *acked_log)
{
	char dump[256];
	size_t nacked, nstored;
	char(*acked)[27] = read_ids(acked_log, &nacked);
	char(*stored)[27];

	dump_store(dump, sizeof(dump));
	stored = read_ids(dump, &nstored);
	for (size_t i = 1; i < nstored; i++)
		cr_assert_str_neq(stored[i - 1], stored[i], "stored twice: %s", stored[i]);
	for (size_t i = 0; i < nacked; i++)
		cr_assert_not_null(bsearch(acked[i], stored, nstored, sizeof(*stored), cmp_id),
				   "acked occurrence %s is not in the store", acked[i]);
	free(acked);
	free(stored);
	return nstored;
}

/*
 * Runs loadgen (its flags in args, plus --acked-log and --json-summary) against port until it
 * exits 0 with everything acked, and returns its summary; the acked ids go to acked.
 */
static json_t *run_loadgen_acked(uint16_t port, const char *args, const char *name, char *acked,
				 size_t acked_len)
{
	char cmd[1024], summary[256];

	snprintf(summary, sizeof(summary), "%s/summary-%s.json", tmp, name);
	snprintf(acked, acked_len, "%s/acked-%s.log", tmp, name);
	snprintf(cmd, sizeof(cmd),
		 "%s --controller 127.0.0.1:%u %s --acked-log %s --json-summary > %s "
		 "2>>%s/loadgen.log",
		 BIN("tapio-loadgen"), port, args, acked, summary, tmp);
	cr_assert_eq(WEXITSTATUS(system(cmd)), 0, "loadgen did not get everything acked");
	return read_summary(summary);
}

/*
 * The summary j says everything submitted was acked and nothing dropped; then the controller
 * stops cleanly and its store holds exactly the acked ids, once each. Returns submitted.
 */
static uint64_t all_acked_and_stored(json_t *j, pid_t ctl, const char *acked)
{
	uint64_t submitted = jint(j, "submitted");

	cr_assert_eq(jint(j, "acked"), submitted);
	cr_assert_eq(jint(j, "dropped"), 0);
	kill(ctl, SIGTERM);
	cr_assert_eq(wait_exit(ctl), 0);
	cr_assert_eq(check_store(acked), submitted);
	return submitted;
}

/* Counts stored payloads that protobuf-c packs back to the very same bytes. */
static int on_canonical(void *ctx, const struct store_record_meta *m, const void *data, size_t len,
			struct store_pos pos)
{
	size_t *n = ctx;
	uint8_t buf[4096];
	Tapio__V1__Occurrence *o = tapio__v1__occurrence__unpack(NULL, len, data);

	(void)m;
	(void)pos;
	cr_assert_not_null(o, "a stored payload does not unpack");
	cr_assert_lt(tapio__v1__occurrence__get_packed_size(o), sizeof(buf));
	size_t packed = tapio__v1__occurrence__pack(o, buf);
	cr_assert(packed == len && memcmp(buf, data, len) == 0,
		  "loadgen sent an occurrence in an order protobuf-c (so the agent) would not");
	tapio__v1__occurrence__free_unpacked(o, NULL);
	(*n)++;
	return 0;
}

/*
 * loadgen's pre-packed occurrences are what an agent sends: the stored payloads (the bytes
 * loadgen sent, docs/storage-format.md) are protobuf-c's own packing, fields in number order,
 * Context included. Returns the records checked.
 */
static size_t check_canonical(void)
{
	char dir[256];
	struct store_options o;
	struct store_query q;
	struct store *s;
	size_t n = 0;

	snprintf(dir, sizeof(dir), "%s/ctl", tmp);
	store_options_defaults(&o);
	o.dir = dir;
	cr_assert_eq(store_open(&o, &s), 0);
	store_query_init(&q);
	cr_assert_geq(store_scan(s, &q, on_canonical, &n), 0);
	cr_assert_eq(store_close(s), 0);
	return n;
}

Test(loadgen, everything_submitted_is_acked_and_stored_once)
{
	uint16_t port = free_port();
	pid_t ctl = start_controller(port);
	char acked[256];
	json_t *j;
	uint64_t submitted;

	j = run_loadgen_acked(port,
			      "--agents 3 --rate 20000 --duration 2 --batch 256 --node-prefix lg "
			      "--seed 7",
			      "rate", acked, sizeof(acked));
	cr_assert_eq(jint(j, "agents"), 3);
	submitted = all_acked_and_stored(j, ctl, acked);
	cr_assert_gt(submitted, 30000, "rate 20000/s for 2 s");
	cr_assert_eq(check_canonical(), submitted);
	json_decref(j);
}

/*
 * --rate max is closed-loop: each agent keeps at most --window bytes unacknowledged and sends
 * whole batches as Acks free room, so nothing is dropped however fast the controller is. With
 * 4 x 2 MiB in flight the controller also runs out of its per-iteration read budget
 * (INGEST_ITER_BYTES) again and again: the connections it leaves for the next iteration must
 * be read then, not dropped (no reconnect).
 */
Test(loadgen, rate_max_is_closed_loop_and_drops_nothing, .timeout = 120)
{
	uint16_t port = free_port();
	pid_t ctl = start_controller(port);
	char acked[256];
	json_t *j;
	uint64_t submitted;

	j = run_loadgen_acked(port,
			      "--agents 4 --rate max --window 2097152 --duration 2 --batch 64 "
			      "--node-prefix lgmax --seed 9",
			      "max", acked, sizeof(acked));
	cr_assert_eq(jint(j, "window"), 2097152);
	cr_assert_eq(jint(j, "reconnects"), 0);
	cr_assert_eq(jint(j, "batches_resent"), 0);
	submitted = all_acked_and_stored(j, ctl, acked);
	cr_assert_gt(submitted, 10000, "a loopback controller takes far more than 5k/s");
	cr_assert_eq(submitted % 64, 0, "whole batches only");
	json_decref(j);
}

Test(loadgen, controller_kill_9_loses_nothing_acked)
{
	uint16_t port = free_port();
	pid_t ctl = start_controller(port);
	pid_t lg;
	char cmd[1024], summary[256], acked[256];
	json_t *j;
	uint64_t submitted;

	snprintf(summary, sizeof(summary), "%s/summary.json", tmp);
	snprintf(acked, sizeof(acked), "%s/acked.log", tmp);
	snprintf(cmd, sizeof(cmd),
		 "exec %s --controller 127.0.0.1:%u --agents 4 --rate 20000 --duration 6 "
		 "--spool-dir %s/spool --acked-log %s --json-summary > %s 2>>%s/loadgen.log",
		 BIN("tapio-loadgen"), port, tmp, acked, summary, tmp);
	lg = spawn_sh(cmd);
	/* kill -9 the controller three times while the agents stream */
	for (int round = 0; round < 3; round++) {
		sleep_ms(1200);
		kill(ctl, SIGKILL);
		wait_exit(ctl);
		sleep_ms(500); /* agents keep submitting into queue and spool */
		ctl = start_controller(port);
	}
	cr_assert_eq(wait_exit(lg), 0, "loadgen did not get everything acked");
	j = read_summary(summary);
	submitted = jint(j, "submitted");
	cr_assert_gt(submitted, 60000);
	cr_assert_eq(jint(j, "acked"), submitted);
	cr_assert_eq(jint(j, "dropped"), 0);
	cr_assert_geq(jint(j, "reconnects"), 3, "agents reconnected after every kill");
	json_decref(j);
	kill(ctl, SIGTERM);
	cr_assert_eq(wait_exit(ctl), 0);
	/* resent batches were recognised: every occurrence is stored exactly once */
	cr_assert_eq(check_store(acked), submitted);
}
