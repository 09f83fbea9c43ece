/*
 * tapio-loadgen: N simulated agents in one process and one libuv loop, each a real
 * controller client (agent/client), submitting realistic occurrences of every type at a total
 * rate for a duration, then draining and printing what was submitted, acknowledged, dropped
 * and resent. --acked-log writes the id of every acknowledged occurrence (one per line).
 * Every occurrence is stamped with the wall clock when it is submitted; when the Ack that made
 * its batch durable arrives, (ack time - timestamp) goes into a log-linear histogram, and the
 * summary prints its p50/p99/max (end-to-end latency, client batching delay included).
 * --rate 0 submits nothing: the agents connect and stay idle for --duration (memory tests).
 * Occurrences are pre-packed once (a pool of POOL_SIZE realistic ones, without their Context)
 * and submitted with client_submit_packed: per occurrence only the id and timestamps are
 * patched in place and the agent's packed Context appended, so the simulated agents spend
 * their CPU on the protocol, not on protobuf packing. Every id is still fresh and unique.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <uv.h>

#include "agent/client/client.h"
#include "common/clock.h"
#include "common/config_hash.h"
#include "common/log.h"
#include "common/occ_proto.h"
#include "common/tls.h"
#include "common/ulid.h"
#include "tools/occgen.h"

#define TAG	       "loadgen"
#define POOL_SIZE      4096
#define TICK_MS	       1
#define DRAIN_TIMEOUT  30000 /* ms to wait for acks after the submit phase */
#define MAX_CATCHUP_MS 100   /* never submit more than this much of the rate in one tick */
#define HIST_SUB       16u   /* log-linear latency histogram: 16 sub-buckets per power of 2 */
#define HIST_BUCKETS   (64u * HIST_SUB)
#define PACKED_MAX     4096 /* a pool entry packed without its Context (checked at start) */

/* One pool entry as packed bytes, and where its per-submit fields sit in them (0 = absent). */
struct packed_occ {
	uint32_t off; /* in loadgen.pk_bytes */
	uint16_t len;
	uint16_t id_off, ts_off, first_off, last_off;
};

/* Context{cluster, node} as a packed Occurrence field 9: two short strings. */
#define CTX_MAX (3 + 2 * (2 + TAPIO_NAME_LEN))
_Static_assert(TAPIO_NAME_LEN < 128, "names fit one-byte varint lengths");

struct lg_batch {
	uint64_t seq;
	uint64_t first; /* index of its first id in the agent's id log */
	uint32_t count;
	int state; /* 0 pending, 1 acked, 2 dropped */
};

struct agent {
	struct loadgen *lg;
	struct client *client;
	char node[TAPIO_NAME_LEN];
	char agent_id[TAPIO_NAME_LEN];
	char spool[4096];
	uint8_t ctx[CTX_MAX]; /* packed Occurrence.context of this agent */
	size_t ctx_len;
	bool closed;
	/* bookkeeping: timestamps (and ids with --acked-log) in submit order, batches in seal
	 * order */
	char (*ids)[TAPIO_ULID_LEN + 1];
	uint64_t *ts;	   /* wall-clock stamp of every unresolved occurrence */
	uint64_t ids_base; /* index of ids[0] and ts[0] */
	uint64_t nids, idcap;
	uint64_t dead; /* resolved entries at the front, compacted away in bulk */
	uint64_t submitted;
	struct lg_batch *batches;
	size_t bhead, nbatches, bcap;
};

struct loadgen {
	/* transport security (docs/security.md); NULL = off */
	const char *token, *tls_ca, *tls_cert, *tls_key, *tls_server_name;
	char token_buf[TLS_TOKEN_MAX + 1];
	uv_loop_t *loop;
	uv_timer_t tick;
	uv_signal_t sigint, sigterm;
	char host[256];
	uint16_t port;
	uint32_t nagents;
	double rate;
	double duration;
	uint32_t batch;
	uint32_t batch_ms;
	const char *spool_dir;
	const char *acked_log;
	const char *node_prefix;
	uint64_t seed;
	bool json;
	FILE *ackf;
	struct agent *agents;
	struct packed_occ *packed; /* POOL_SIZE entries */
	uint8_t *pk_bytes;
	struct occgen gen;
	uint64_t t0_ns, submit_end_ns, last_ack_ns, end_ns;
	uint64_t submitted;
	uint32_t next_agent;
	int phase; /* 0 submitting, 1 draining, 2 closing */
	uint64_t drain_deadline_ns;
	uint32_t open_clients;
	bool interrupted;
	uint64_t lat_hist[HIST_BUCKETS]; /* microseconds, see hist_index */
	uint64_t lat_n, lat_max_us;
	char last_id[TAPIO_ULID_LEN + 1]; /* the last id handed out, and its ms */
	uint64_t last_id_ms;
};

/*
 * A fresh ULID for ms: ulid_generate() (lock + random) once per millisecond, then the ULID
 * monotonic rule (random part + 1) for the rest of that millisecond, as cheap string math.
 */
static void next_id(struct loadgen *lg, uint64_t ms, char *out)
{
	static const char digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

	if (ms != lg->last_id_ms || !lg->last_id[0]) {
		ulid_generate(ms, lg->last_id);
		lg->last_id_ms = ms;
	} else {
		for (int i = TAPIO_ULID_LEN - 1; i >= 10; i--) {
			const char *d = strchr(digits, lg->last_id[i]);
			int v = d ? (int)(d - digits) + 1 : 0;

			lg->last_id[i] = digits[v & 31];
			if (v < 32)
				break;
		}
	}
	memcpy(out, lg->last_id, TAPIO_ULID_LEN + 1);
}

/* Log-linear bucket of v: exact below 2*HIST_SUB, then HIST_SUB buckets per power of 2. */
static unsigned hist_index(uint64_t v)
{
	unsigned shift;

	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	shift = (unsigned)(63 - __builtin_clzll(v)) - 4; /* v >> shift is in [16, 32) */
	return HIST_SUB * shift + (unsigned)(v >> shift);
}

/* The largest value bucket i holds. */
static uint64_t hist_upper(unsigned i)
{
	unsigned shift;

	if (i < 2 * HIST_SUB)
		return i;
	shift = i / HIST_SUB - 1;
	return ((uint64_t)(i - HIST_SUB * shift + 1) << shift) - 1;
}

static uint64_t hist_percentile(const struct loadgen *lg, double p)
{
	uint64_t want = (uint64_t)(p * (double)lg->lat_n + 0.5), seen = 0;

	if (want == 0)
		want = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += lg->lat_hist[i];
		if (seen >= want)
			return hist_upper(i) < lg->lat_max_us ? hist_upper(i) : lg->lat_max_us;
	}
	return lg->lat_max_us;
}

/* ---- acked log --------------------------------------------------------------------------- */

static struct lg_batch *find_batch(struct agent *a, uint64_t seq)
{
	size_t lo = 0, hi = a->nbatches;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct lg_batch *b = &a->batches[(a->bhead + mid) % a->bcap];
		if (b->seq < seq)
			lo = mid + 1;
		else if (b->seq > seq)
			hi = mid;
		else
			return b;
	}
	return NULL;
}

static void trim_batches(struct agent *a)
{
	uint64_t drop_ids = 0;

	while (a->nbatches && a->batches[a->bhead].state != 0) {
		drop_ids += a->batches[a->bhead].count;
		a->bhead = (a->bhead + 1) % a->bcap;
		a->nbatches--;
	}
	a->dead += drop_ids;
	/*
	 * Compact only once the resolved prefix is at least half the arrays: one memmove per
	 * Ack of a long backlog made loadgen's Ack handling quadratic and took CPU from the
	 * controller it shares the machine with.
	 */
	if (a->dead && a->dead * 2 >= a->nids) {
		if (a->ids)
			memmove(a->ids, a->ids + a->dead, (a->nids - a->dead) * sizeof(*a->ids));
		memmove(a->ts, a->ts + a->dead, (a->nids - a->dead) * sizeof(*a->ts));
		a->nids -= a->dead;
		a->ids_base += a->dead;
		a->dead = 0;
	}
}

static void on_sealed(void *arg, uint64_t seq, uint32_t count)
{
	struct agent *a = arg;
	struct lg_batch *b;

	if (a->nbatches == a->bcap) {
		size_t ncap = a->bcap ? a->bcap * 2 : 256;
		struct lg_batch *p = malloc(ncap * sizeof(*p));
		if (!p)
			abort();
		for (size_t i = 0; i < a->nbatches; i++)
			p[i] = a->batches[(a->bhead + i) % a->bcap];
		free(a->batches);
		a->batches = p;
		a->bcap = ncap;
		a->bhead = 0;
	}
	b = &a->batches[(a->bhead + a->nbatches++) % a->bcap];
	/* the batch holds the `count` ids submitted before this seal that no batch took yet */
	b->seq = seq;
	b->count = count;
	b->first = a->submitted - count;
	b->state = 0;
}

static void on_acked(void *arg, uint64_t seq, uint32_t count)
{
	struct agent *a = arg;
	struct loadgen *lg = a->lg;
	struct lg_batch *b;

	lg->last_ack_ns = uv_hrtime();
	b = find_batch(a, seq);
	if (!b)
		return; /* recovered from a previous run's spool: ids unknown here */
	uint64_t wall = clock_wall_ns();
	for (uint32_t i = 0; i < b->count; i++) {
		uint64_t t = a->ts[b->first - a->ids_base + i];
		uint64_t us = wall > t ? (wall - t) / 1000 : 0;

		lg->lat_hist[hist_index(us)]++;
		lg->lat_n++;
		if (us > lg->lat_max_us)
			lg->lat_max_us = us;
	}
	if (lg->ackf) {
		for (uint32_t i = 0; i < b->count; i++) {
			fputs(a->ids[b->first - a->ids_base + i], lg->ackf);
			fputc('\n', lg->ackf);
		}
		fflush(lg->ackf);
	}
	b->state = 1;
	trim_batches(a);
}

static void on_dropped(void *arg, uint64_t seq, uint32_t count)
{
	struct agent *a = arg;
	struct lg_batch *b;

	b = find_batch(a, seq);
	if (b) {
		b->state = 2;
		trim_batches(a);
	}
}

/* ---- the run ----------------------------------------------------------------------------- */

/*
 * ConfigPush: a simulated agent accepts what a real one would (valid settings whose hash is
 * the pushed hash) and applies nothing; the client answers ConfigApplied or ConfigRejected.
 */
static int on_config(void *arg, const Tapio__V1__ConfigPush *p, char *reason, size_t len)
{
	struct tapio_settings s;
	char hash[CONFIG_HASH_LEN];

	(void)arg;
	if (!p->settings) {
		snprintf(reason, len, "config push without settings");
		return -EINVAL;
	}
	if (settings_from_proto(p->settings, &s, reason, len) < 0 ||
	    settings_validate(&s, reason, len) < 0)
		return -EINVAL;
	if (config_hash_settings(&s, hash) < 0 || !p->hash || strcmp(hash, p->hash) != 0) {
		snprintf(reason, len, "hash %s does not match the pushed settings",
			 p->hash ? p->hash : "");
		return -EINVAL;
	}
	return 0;
}

/* ---- the pre-packed pool ------------------------------------------------------------------ */

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Reads the varint at b[*i] (below len) and advances *i. */
static uint64_t read_varint(const uint8_t *b, size_t len, size_t *i)
{
	uint64_t v = 0;

	for (unsigned shift = 0; *i < len && shift < 64; shift += 7) {
		uint8_t c = b[(*i)++];

		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			break;
	}
	return v;
}

/*
 * Records where the id and the fixed64 timestamps of one packed Occurrence are (top-level
 * fields only; protobuf-c's own output). Returns 0, or -1 when a field is not where it must be.
 */
static int find_fields(const uint8_t *b, size_t len, struct packed_occ *po)
{
	size_t i = 0;

	while (i < len) {
		uint64_t key = read_varint(b, len, &i), v;

		switch (key & 7) {
		case 0:
			read_varint(b, len, &i);
			break;
		case 1:
			if ((key >> 3) == 2)
				po->ts_off = (uint16_t)i;
			else if ((key >> 3) == 12)
				po->first_off = (uint16_t)i;
			else if ((key >> 3) == 13)
				po->last_off = (uint16_t)i;
			i += 8;
			break;
		case 2:
			v = read_varint(b, len, &i);
			if ((key >> 3) == 1 && v == TAPIO_ULID_LEN)
				po->id_off = (uint16_t)i;
			i += v;
			break;
		case 5:
			i += 4;
			break;
		default:
			return -1;
		}
	}
	return i == len && po->id_off && po->ts_off && !po->first_off == !po->last_off ? 0 : -1;
}

/* Packs every pool occurrence once, without its Context (each agent appends its own). */
static int build_packed_pool(struct loadgen *lg, const struct tapio_occurrence *pool)
{
	size_t total = 0;

	lg->packed = calloc(POOL_SIZE, sizeof(*lg->packed));
	lg->pk_bytes = malloc((size_t)POOL_SIZE * PACKED_MAX);
	if (!lg->packed || !lg->pk_bytes)
		return -1;
	for (uint32_t i = 0; i < POOL_SIZE; i++) {
		Tapio__V1__Occurrence msg;
		struct occ_proto_scratch scratch;
		struct packed_occ *po = &lg->packed[i];
		size_t n;

		occ_to_proto(&pool[i], &msg, &scratch);
		msg.context = NULL;
		n = tapio__v1__occurrence__get_packed_size(&msg);
		if (n > PACKED_MAX)
			return -1;
		po->off = (uint32_t)total;
		po->len = (uint16_t)tapio__v1__occurrence__pack(&msg, lg->pk_bytes + total);
		if (find_fields(lg->pk_bytes + total, po->len, po) < 0)
			return -1;
		total += po->len;
	}
	return 0;
}

/* Occurrence field 9, Context{cluster = 1, node = 2}, packed once per agent. */
static void build_context(struct agent *a, const char *cluster)
{
	size_t cl = strnlen(cluster, TAPIO_NAME_LEN - 1), nl = strlen(a->node);
	size_t inner = 2 + cl + 2 + nl; /* < 2^14: a two-byte varint at most */
	uint8_t *p = a->ctx;

	*p++ = (9 << 3) | 2;
	if (inner >= 0x80)
		*p++ = (uint8_t)(inner | 0x80);
	*p++ = (uint8_t)(inner >> (inner >= 0x80 ? 7 : 0));
	*p++ = (1 << 3) | 2;
	*p++ = (uint8_t)cl;
	memcpy(p, cluster, cl);
	p += cl;
	*p++ = (2 << 3) | 2;
	*p++ = (uint8_t)nl;
	memcpy(p, a->node, nl);
	p += nl;
	a->ctx_len = (size_t)(p - a->ctx);
}

static void submit_one(struct loadgen *lg, struct agent *a, uint64_t now_ns)
{
	const struct packed_occ *po = &lg->packed[occgen_rnd(&lg->gen) & (POOL_SIZE - 1)];
	uint8_t buf[PACKED_MAX + CTX_MAX];
	char id[TAPIO_ULID_LEN + 1];

	memcpy(buf, lg->pk_bytes + po->off, po->len);
	next_id(lg, now_ns / 1000000, id);
	memcpy(buf + po->id_off, id, TAPIO_ULID_LEN);
	put_le64(buf + po->ts_off, now_ns);
	if (po->first_off) {
		put_le64(buf + po->first_off, now_ns - 500000000ull);
		put_le64(buf + po->last_off, now_ns);
	}
	memcpy(buf + po->len, a->ctx, a->ctx_len);
	if (a->nids == a->idcap) {
		a->idcap = a->idcap ? a->idcap * 2 : 4096;
		a->ts = realloc(a->ts, a->idcap * sizeof(*a->ts));
		if (!a->ts)
			abort();
		if (lg->ackf) {
			a->ids = realloc(a->ids, a->idcap * sizeof(*a->ids));
			if (!a->ids)
				abort();
		}
	}
	a->ts[a->nids] = now_ns;
	if (lg->ackf)
		memcpy(a->ids[a->nids], id, TAPIO_ULID_LEN + 1);
	a->nids++;
	a->submitted++;
	client_submit_packed(a->client, buf, po->len + a->ctx_len);
	lg->submitted++;
}

static void stats_total(struct loadgen *lg, struct client_stats *t)
{
	memset(t, 0, sizeof(*t));
	for (uint32_t i = 0; i < lg->nagents; i++) {
		struct client_stats s;

		if (!lg->agents[i].client)
			continue;
		client_counters(lg->agents[i].client, &s);
		t->submitted += s.submitted;
		t->occurrences_acked += s.occurrences_acked;
		t->batches_sent += s.batches_sent;
		t->batches_acked += s.batches_acked;
		t->batches_resent += s.batches_resent;
		t->dropped_queue += s.dropped_queue + s.dropped_closing + s.dropped_spool_error;
		t->dropped_spool += s.dropped_spool;
		t->send_failures += s.send_failures;
		t->reconnects += s.reconnects;
		t->connects += s.connects;
		t->queue_depth += s.queue_depth;
	}
}

static struct client_stats final_stats;

static void on_client_closed(void *arg)
{
	struct agent *a = arg;

	a->closed = true;
	a->client = NULL;
	if (--a->lg->open_clients == 0) {
		uv_close((uv_handle_t *)&a->lg->tick, NULL);
		uv_close((uv_handle_t *)&a->lg->sigint, NULL);
		uv_close((uv_handle_t *)&a->lg->sigterm, NULL);
	}
}

static void start_closing(struct loadgen *lg)
{
	lg->phase = 2;
	lg->end_ns = uv_hrtime();
	stats_total(lg, &final_stats);
	uv_timer_stop(&lg->tick);
	for (uint32_t i = 0; i < lg->nagents; i++)
		if (lg->agents[i].client)
			client_close(lg->agents[i].client, on_client_closed, &lg->agents[i]);
}

static bool all_drained(struct loadgen *lg)
{
	struct client_stats t;

	/* cheap first (this runs every tick): an agent with a batch still pending is not done */
	for (uint32_t i = 0; i < lg->nagents; i++)
		if (lg->agents[i].nbatches)
			return false;
	stats_total(lg, &t);
	return t.queue_depth == 0;
}

static void on_tick(uv_timer_t *t)
{
	struct loadgen *lg = t->data;
	uint64_t now = uv_hrtime();

	if (lg->phase == 0) {
		double elapsed = (double)(now - lg->t0_ns) / 1e9;
		uint64_t due, max_now, wall;

		if (elapsed >= lg->duration || lg->interrupted) {
			for (uint32_t i = 0; i < lg->nagents; i++)
				client_flush(lg->agents[i].client);
			lg->submit_end_ns = now;
			lg->phase = 1;
			lg->drain_deadline_ns = now + (uint64_t)DRAIN_TIMEOUT * 1000000ull;
			return;
		}
		due = (uint64_t)(lg->rate * elapsed);
		max_now = (uint64_t)(lg->rate * MAX_CATCHUP_MS / 1000.0) + 1;
		if (due > lg->submitted + max_now)
			due = lg->submitted + max_now;
		wall = clock_wall_ns();
		while (lg->submitted < due) {
			struct agent *a = &lg->agents[lg->next_agent];

			if (++lg->next_agent == lg->nagents)
				lg->next_agent = 0;
			submit_one(lg, a, wall);
		}
		return;
	}
	if (lg->phase == 1 && (all_drained(lg) || now > lg->drain_deadline_ns || lg->interrupted))
		start_closing(lg);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct loadgen *lg = h->data;

	if (lg->interrupted && lg->phase < 2)
		start_closing(lg);
	lg->interrupted = true;
}

static void print_summary(struct loadgen *lg)
{
	const struct client_stats *t = &final_stats;
	double submit_s = (double)(lg->submit_end_ns - lg->t0_ns) / 1e9;
	uint64_t last = lg->last_ack_ns ? lg->last_ack_ns : lg->end_ns;
	double ack_s = (double)(last - lg->t0_ns) / 1e9;
	double acked_per_s = ack_s > 0 ? (double)t->occurrences_acked / ack_s : 0;
	uint64_t dropped = t->dropped_queue + t->dropped_spool;
	uint64_t unacked = t->submitted - t->occurrences_acked - dropped;
	double p50 = lg->lat_n ? (double)hist_percentile(lg, 0.50) / 1000.0 : 0;
	double p99 = lg->lat_n ? (double)hist_percentile(lg, 0.99) / 1000.0 : 0;
	double lmax = (double)lg->lat_max_us / 1000.0;

	if (lg->json) {
		printf(
		    "{\"agents\":%u,\"rate\":%.0f,\"duration_s\":%.3f,\"submitted\":%" PRIu64
		    ",\"acked\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"dropped_queue\":%" PRIu64
		    ",\"dropped_spool\":%" PRIu64 ",\"unacked\":%" PRIu64
		    ",\"batches_sent\":%" PRIu64 ",\"batches_acked\":%" PRIu64
		    ",\"batches_resent\":%" PRIu64 ",\"send_failures\":%" PRIu64
		    ",\"reconnects\":%" PRIu64 ",\"elapsed_s\":%.3f,\"acked_per_s\":%.0f"
		    ",\"batch_ms\":%u,\"latency_samples\":%" PRIu64
		    ",\"latency_p50_ms\":%.3f,\"latency_p99_ms\":%.3f,\"latency_max_ms\":%.3f}\n",
		    lg->nagents, lg->rate, submit_s, t->submitted, t->occurrences_acked, dropped,
		    t->dropped_queue, t->dropped_spool, unacked, t->batches_sent, t->batches_acked,
		    t->batches_resent, t->send_failures, t->reconnects, ack_s, acked_per_s,
		    lg->batch_ms ? lg->batch_ms : CLIENT_DEFAULT_BATCH_MAX_MS, lg->lat_n, p50, p99,
		    lmax);
	} else {
		printf("agents        %u\n", lg->nagents);
		printf("submitted     %" PRIu64 " in %.3f s (%.0f/s)\n", t->submitted, submit_s,
		       submit_s > 0 ? (double)t->submitted / submit_s : 0);
		printf("acked         %" PRIu64 "\n", t->occurrences_acked);
		printf("dropped       %" PRIu64 " (queue %" PRIu64 ", spool %" PRIu64 ")\n",
		       dropped, t->dropped_queue, t->dropped_spool);
		printf("unacked       %" PRIu64 "\n", unacked);
		printf("batches       sent %" PRIu64 ", acked %" PRIu64 ", resent %" PRIu64 "\n",
		       t->batches_sent, t->batches_acked, t->batches_resent);
		printf("connection    send failures %" PRIu64 ", reconnects %" PRIu64 "\n",
		       t->send_failures, t->reconnects);
		printf("elapsed       %.3f s to the last ack\n", ack_s);
		printf("acked/s       %.0f\n", acked_per_s);
		printf("latency       p50 %.3f ms, p99 %.3f ms, max %.3f ms over %" PRIu64
		       " occurrences (creation to durable Ack, batch time %u ms)\n",
		       p50, p99, lmax, lg->lat_n,
		       lg->batch_ms ? lg->batch_ms : CLIENT_DEFAULT_BATCH_MAX_MS);
	}
	fflush(stdout);
}

/* One socket per agent (plus spool files): raise the soft descriptor limit when needed. */
static void raise_nofile(uint32_t agents)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)agents * 2 + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_warn(TAG, "setrlimit(RLIMIT_NOFILE, %llu): %s", (unsigned long long)rl.rlim_cur,
			 strerror(errno));
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: tapio-loadgen --controller HOST:PORT --agents N --rate R --duration S\n"
	    "                     [--batch B] [--batch-ms MS] [--spool-dir DIR]\n"
	    "                     [--acked-log FILE] [--node-prefix P] [--seed X]\n"
	    "                     [--json-summary] [--token T | --token-file F]\n"
	    "                     [--tls-ca F [--tls-cert F --tls-key F] [--tls-server-name N]]\n"
	    "  --rate is occurrences per second over all agents (0: connect and stay idle);\n"
	    "  --duration in seconds; --batch-ms is the client's batch time (default 200).\n");
}

static int parse_args(struct loadgen *lg, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"controller", required_argument, NULL, 'c'},
	    {"agents", required_argument, NULL, 'a'},
	    {"rate", required_argument, NULL, 'r'},
	    {"duration", required_argument, NULL, 'd'},
	    {"batch", required_argument, NULL, 'b'},
	    {"batch-ms", required_argument, NULL, 'm'},
	    {"spool-dir", required_argument, NULL, 's'},
	    {"acked-log", required_argument, NULL, 'l'},
	    {"node-prefix", required_argument, NULL, 'p'},
	    {"seed", required_argument, NULL, 'x'},
	    {"json-summary", no_argument, NULL, 'j'},
	    {"token", required_argument, NULL, 'T'},
	    {"token-file", required_argument, NULL, 'F'},
	    {"tls-ca", required_argument, NULL, 'A'},
	    {"tls-cert", required_argument, NULL, 'C'},
	    {"tls-key", required_argument, NULL, 'K'},
	    {"tls-server-name", required_argument, NULL, 'N'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	bool have_controller = false;
	char *end;
	int ch;

	lg->nagents = 1;
	lg->rate = 1000;
	lg->duration = 10;
	lg->node_prefix = "node";
	lg->seed = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		errno = 0;
		switch (ch) {
		case 'c':
			if (client_parse_endpoint(optarg, lg->host, sizeof(lg->host), &lg->port) <
			    0) {
				fprintf(stderr,
					"tapio-loadgen: bad --controller '%s' (HOST:PORT)\n",
					optarg);
				return -1;
			}
			have_controller = true;
			break;
		case 'a': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || *end || v == 0 || v > 10000) {
				fprintf(stderr, "tapio-loadgen: --agents must be 1..10000\n");
				return -1;
			}
			lg->nagents = (uint32_t)v;
			break;
		}
		case 'r':
			lg->rate = strtod(optarg, &end);
			if (errno || *end || lg->rate < 0) {
				fprintf(stderr, "tapio-loadgen: --rate must be >= 0\n");
				return -1;
			}
			break;
		case 'd':
			lg->duration = strtod(optarg, &end);
			if (errno || *end || lg->duration <= 0) {
				fprintf(stderr, "tapio-loadgen: --duration must be > 0 seconds\n");
				return -1;
			}
			break;
		case 'b': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || *end || v == 0 || v > 65536) {
				fprintf(stderr, "tapio-loadgen: --batch must be 1..65536\n");
				return -1;
			}
			lg->batch = (uint32_t)v;
			break;
		}
		case 'm': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || *end || v == 0 || v > 60000) {
				fprintf(stderr, "tapio-loadgen: --batch-ms must be 1..60000\n");
				return -1;
			}
			lg->batch_ms = (uint32_t)v;
			break;
		}
		case 's':
			lg->spool_dir = optarg;
			break;
		case 'l':
			lg->acked_log = optarg;
			break;
		case 'p':
			lg->node_prefix = optarg;
			break;
		case 'x':
			lg->seed = strtoull(optarg, &end, 0);
			if (errno || *end) {
				fprintf(stderr, "tapio-loadgen: bad --seed\n");
				return -1;
			}
			break;
		case 'j':
			lg->json = true;
			break;
		case 'T':
			lg->token = optarg;
			break;
		case 'F': {
			char err[600];

			if (tls_read_token_file(optarg, lg->token_buf, sizeof(lg->token_buf), err,
						sizeof(err)) < 0) {
				fprintf(stderr, "tapio-loadgen: --token-file: %s\n", err);
				return -1;
			}
			lg->token = lg->token_buf;
			break;
		}
		case 'A':
			lg->tls_ca = optarg;
			break;
		case 'C':
			lg->tls_cert = optarg;
			break;
		case 'K':
			lg->tls_key = optarg;
			break;
		case 'N':
			lg->tls_server_name = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (!have_controller || optind != argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct loadgen lgs;
	struct loadgen *lg = &lgs;
	uv_loop_t loop;
	struct tapio_occurrence *pool;
	char err[256];
	int ret = 1;

	if (parse_args(lg, argc, argv) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	raise_nofile(lg->nagents);
	occgen_seed(&lg->gen, lg->seed);
	if (uv_loop_init(&loop) < 0)
		return 1;
	lg->loop = &loop;
	pool = calloc(POOL_SIZE, sizeof(*pool));
	lg->agents = calloc(lg->nagents, sizeof(*lg->agents));
	if (!pool || !lg->agents) {
		fprintf(stderr, "tapio-loadgen: out of memory\n");
		return 1;
	}
	for (uint32_t i = 0; i < POOL_SIZE; i++)
		occgen_fill(&lg->gen, &pool[i], i, "loadgen");
	if (build_packed_pool(lg, pool) < 0) {
		fprintf(stderr, "tapio-loadgen: packing the occurrence pool failed\n");
		return 1;
	}
	free(pool);
	if (lg->acked_log) {
		lg->ackf = fopen(lg->acked_log, "w");
		if (!lg->ackf) {
			fprintf(stderr, "tapio-loadgen: open %s: %s\n", lg->acked_log,
				strerror(errno));
			return 1;
		}
		setvbuf(lg->ackf, NULL, _IOFBF, 1 << 20);
	}
	if (lg->spool_dir && mkdir(lg->spool_dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "tapio-loadgen: mkdir %s: %s\n", lg->spool_dir, strerror(errno));
		return 1;
	}
	for (uint32_t i = 0; i < lg->nagents; i++) {
		struct agent *a = &lg->agents[i];
		struct client_options o = {0};

		a->lg = lg;
		snprintf(a->node, sizeof(a->node), "%s-%04u", lg->node_prefix, i);
		snprintf(a->agent_id, sizeof(a->agent_id), "loadgen-%s-%04u", lg->node_prefix, i);
		build_context(a, "loadgen");
		o.host = lg->host;
		o.port = lg->port;
		o.agent_id = a->agent_id;
		o.node = a->node;
		o.cluster = "loadgen";
		o.capabilities[0] = "loadgen";
		o.label_keys[0] = "tool";
		o.label_values[0] = "tapio-loadgen";
		o.batch_max = lg->batch;
		o.batch_max_ms = lg->batch_ms;
		o.on_sealed = on_sealed;
		o.on_acked = on_acked;
		o.on_dropped = on_dropped;
		o.on_config = on_config;
		o.capabilities[1] = "config.push";
		o.token = lg->token;
		o.tls_ca = lg->tls_ca;
		o.tls_cert = lg->tls_cert;
		o.tls_key = lg->tls_key;
		o.tls_server_name = lg->tls_server_name;
		o.arg = a;
		if (lg->spool_dir) {
			snprintf(a->spool, sizeof(a->spool), "%s/%s", lg->spool_dir, a->node);
			o.spool_dir = a->spool;
		}
		a->client = client_new(&loop, &o, err, sizeof(err));
		if (!a->client) {
			fprintf(stderr, "tapio-loadgen: agent %u: %s\n", i, err);
			return 1;
		}
		lg->open_clients++;
		client_start(a->client);
	}
	uv_timer_init(&loop, &lg->tick);
	lg->tick.data = lg;
	uv_signal_init(&loop, &lg->sigint);
	uv_signal_init(&loop, &lg->sigterm);
	lg->sigint.data = lg->sigterm.data = lg;
	uv_signal_start(&lg->sigint, on_signal, SIGINT);
	uv_signal_start(&lg->sigterm, on_signal, SIGTERM);
	uv_update_time(&loop);
	lg->t0_ns = uv_hrtime();
	uv_timer_start(&lg->tick, on_tick, TICK_MS, TICK_MS);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		log_warn(TAG, "loop still had handles at exit");
	print_summary(lg);
	ret = final_stats.occurrences_acked == final_stats.submitted ? 0 : 3;
	if (lg->ackf && fclose(lg->ackf) != 0) {
		fprintf(stderr, "tapio-loadgen: close %s: %s\n", lg->acked_log, strerror(errno));
		ret = 1;
	}
	for (uint32_t i = 0; i < lg->nagents; i++) {
		free(lg->agents[i].ids);
		free(lg->agents[i].ts);
		free(lg->agents[i].batches);
	}
	free(lg->agents);
	free(lg->packed);
	free(lg->pk_bytes);
	return ret;
}
