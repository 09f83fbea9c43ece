/*
 * tapio-loadgen: N simulated agents in one process and one libuv loop, each a real
 * controller client (agent/client), submitting realistic occurrences of every type at a total
 * rate for a duration, then draining and printing what was submitted, acknowledged, dropped
 * and resent. --acked-log writes the id of every acknowledged occurrence (one per line).
 * Every occurrence is stamped with the wall clock when it is submitted; when the Ack that made
 * its batch durable arrives, (ack time - timestamp) goes into a log-linear histogram, and the
 * summary prints its p50/p99/max (end-to-end latency, client batching delay included).
 * --rate 0 submits nothing: the agents connect and stay idle for --duration (memory tests).
 * --rate max is closed-loop: every agent keeps --window bytes of sealed batches unacknowledged
 * and submits the next batch as soon as it is below that (a saturation test, where a fixed
 * rate above capacity would only make the clients drop and count the excess: that costs the
 * machine under test CPU and memory churn for evidence that is then thrown away).
 *
 * loadgen shares the machine with the controller it measures, so every cycle it spends is
 * taken from the measurement. Occurrences are pre-packed once (a pool of POOL_SIZE realistic
 * ones, without their Context); each submit copies one straight into the client's batch frame
 * (client_packed_reserve: the frame is built in place, never copied on seal), patches the id
 * and timestamps there and puts the agent's packed Context (field 9) in its place among the
 * fields, as protobuf-c, and so the agent, orders them: by field number. Every id is fresh and
 * unique, every batch real. Each tick gives every agent its share of the due occurrences in
 * one go, all stamped with the tick's wall clock, so latency bookkeeping is one (stamp, count)
 * run per agent and tick rather than one stamp per occurrence, and the histogram still gets
 * every occurrence exactly.
 */
#include <endian.h>
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

#define TAG		  "loadgen"
#define POOL_SIZE	  4096
#define TICK_MS		  1
#define DRAIN_TIMEOUT	  30000 /* ms to wait for acks after the submit phase */
#define MAX_CATCHUP_MS	  100	/* never submit more than this much of the rate in one tick */
#define HIST_SUB	  16u	/* log-linear latency histogram: 16 sub-buckets per power of 2 */
#define HIST_BUCKETS	  (64u * HIST_SUB)
#define LG_DEFAULT_WINDOW (2ull << 20) /* --window: per agent, under --rate max */
#define PACKED_MAX	  4096 /* a pool entry packed without its Context (checked at start) */

/*
 * One pool entry: where its per-submit fields sit in its packed bytes (0 = absent), where the
 * Context goes (before the first field numbered above 9; first_off and last_off, fields 12
 * and 13, are after it), and the bytes. Entries are slots of one stride (loadgen.slot), so
 * the next pick can be prefetched from its index.
 */
struct packed_occ {
	uint16_t len;
	uint16_t id_off, ts_off, first_off, last_off, ctx_off;
	uint8_t pad[4];
	uint8_t bytes[];
};
_Static_assert(sizeof(struct packed_occ) == 16, "slot header");

/* Context{cluster, node} as a packed Occurrence field 9: two short strings. */
#define CTX_MAX (3 + 2 * (2 + TAPIO_NAME_LEN))
_Static_assert(TAPIO_NAME_LEN < 128, "names fit one-byte varint lengths");

struct lg_batch {
	uint64_t seq;
	uint64_t first; /* index (in the agent's submit order) of its first occurrence */
	uint32_t count;
	int state; /* 0 pending, 1 acked, 2 dropped */
};

/* Occurrences [previous run's end, end) of one agent, all stamped ts (wall clock, ns). */
struct lg_run {
	uint64_t ts;
	uint64_t end;
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
	/*
	 * bookkeeping of the unresolved occurrences, by index in submit order: stamps as runs,
	 * ids (--acked-log only) and batches in seal order; rings with power-of-two sizes, the
	 * resolved front dropped as Acks and drops arrive
	 */
	uint64_t submitted;  /* occurrences the client took */
	uint64_t sealed_end; /* submitted when the last batch was sealed */
	struct lg_run *runs;
	size_t rhead, nruns, rcap;
	uint64_t runs_from; /* where runs[rhead] starts */
	char (*ids)[TAPIO_ULID_LEN];
	uint64_t ids_from; /* ids of [ids_from, submitted) are kept */
	uint64_t idcap;
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
	bool rate_max;	 /* --rate max: closed-loop */
	uint64_t window; /* --window: unacknowledged bytes per agent under --rate max */
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
	uint8_t *pool; /* POOL_SIZE packed_occ slots */
	size_t slot;   /* their stride: the largest, rounded up to whole cache lines */
	uint32_t pick; /* the pool index the next submit uses */
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

static const char b32_digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static uint8_t b32_value[256]; /* digit -> value (b32_init) */

static void b32_init(void)
{
	for (unsigned i = 0; i < 32; i++)
		b32_value[(uint8_t)b32_digits[i]] = (uint8_t)i;
}

/*
 * Writes a fresh ULID for ms to out (TAPIO_ULID_LEN bytes, no terminator): ulid_generate()
 * (lock + random) once per millisecond, then the ULID monotonic rule (random part + 1) for
 * the rest of that millisecond, as cheap string math.
 */
static void next_id(struct loadgen *lg, uint64_t ms, uint8_t *out)
{
	if (ms != lg->last_id_ms || !lg->last_id[0]) {
		ulid_generate(ms, lg->last_id);
		lg->last_id_ms = ms;
		memcpy(out, lg->last_id, TAPIO_ULID_LEN);
		return;
	}
	/* copy the previous id first, then increment both: reading last_id right after a byte
	 * of it was stored would stall on store forwarding */
	memcpy(out, lg->last_id, TAPIO_ULID_LEN);
	for (int i = TAPIO_ULID_LEN - 1; i >= 10; i--) {
		unsigned v = b32_value[(uint8_t)lg->last_id[i]] + 1u;

		out[i] = (uint8_t)(lg->last_id[i] = b32_digits[v & 31]);
		if (v < 32)
			break;
	}
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

/* ---- bookkeeping: batches, stamps, ids --------------------------------------------------- */

static struct lg_run *run_at(struct agent *a, size_t i)
{
	return &a->runs[(a->rhead + i) & (a->rcap - 1)];
}

/*
 * Stamps the occurrences submitted since the last call with ts: one more run, or the last one
 * extended when it has the same stamp.
 */
static void note_run(struct agent *a, uint64_t ts)
{
	uint64_t last_end = a->nruns ? run_at(a, a->nruns - 1)->end : a->runs_from;

	if (a->submitted == last_end)
		return;
	if (a->nruns && run_at(a, a->nruns - 1)->ts == ts) {
		run_at(a, a->nruns - 1)->end = a->submitted;
		return;
	}
	if (a->nruns == a->rcap) {
		size_t ncap = a->rcap ? a->rcap * 2 : 256;
		struct lg_run *p = malloc(ncap * sizeof(*p));

		if (!p)
			abort();
		for (size_t i = 0; i < a->nruns; i++)
			p[i] = *run_at(a, i);
		free(a->runs);
		a->runs = p;
		a->rcap = ncap;
		a->rhead = 0;
	}
	*run_at(a, a->nruns++) = (struct lg_run){ts, a->submitted};
}

/* Keeps id (--acked-log) as the one of occurrence a->submitted. */
static void note_id(struct agent *a, const uint8_t *id)
{
	if (a->submitted - a->ids_from == a->idcap) {
		uint64_t ncap = a->idcap ? a->idcap * 2 : 4096;
		char(*p)[TAPIO_ULID_LEN] = malloc(ncap * sizeof(*p));

		if (!p)
			abort();
		for (uint64_t i = a->ids_from; i < a->submitted; i++)
			memcpy(p[i & (ncap - 1)], a->ids[i & (a->idcap - 1)], TAPIO_ULID_LEN);
		free(a->ids);
		a->ids = p;
		a->idcap = ncap;
	}
	memcpy(a->ids[a->submitted & (a->idcap - 1)], id, TAPIO_ULID_LEN);
}

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

/* Drops the resolved batches at the front and the stamps and ids only they needed. */
static void trim_batches(struct agent *a)
{
	uint64_t live;

	while (a->nbatches && a->batches[a->bhead].state != 0) {
		a->bhead = (a->bhead + 1) % a->bcap;
		a->nbatches--;
	}
	/* everything before the oldest pending batch (or the open one) is resolved */
	live = a->nbatches ? a->batches[a->bhead].first : a->sealed_end;
	while (a->nruns && run_at(a, 0)->end <= live) {
		a->runs_from = run_at(a, 0)->end;
		a->rhead = (a->rhead + 1) & (a->rcap - 1);
		a->nruns--;
	}
	if (live > a->ids_from)
		a->ids_from = live;
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
	/* it holds the `count` occurrences submitted before this seal that no batch took yet */
	b->seq = seq;
	b->count = count;
	b->first = a->submitted - count;
	b->state = 0;
	a->sealed_end = a->submitted;
}

/* n occurrences stamped ts became durable at wall: n samples of the same latency. */
static void record_latency(struct loadgen *lg, uint64_t wall, uint64_t ts, uint64_t n)
{
	uint64_t us = wall > ts ? (wall - ts) / 1000 : 0;

	lg->lat_hist[hist_index(us)] += n;
	lg->lat_n += n;
	if (us > lg->lat_max_us)
		lg->lat_max_us = us;
}

static void on_acked(void *arg, uint64_t seq, uint32_t count)
{
	struct agent *a = arg;
	struct loadgen *lg = a->lg;
	struct lg_batch *b;
	uint64_t wall, start, to;
	size_t lo = 0, hi;

	lg->last_ack_ns = uv_hrtime();
	b = find_batch(a, seq);
	if (!b)
		return; /* recovered from a previous run's spool: ids unknown here */
	wall = clock_wall_ns();
	/* the first run ending after b->first, then every run overlapping the batch */
	hi = a->nruns;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (run_at(a, mid)->end <= b->first)
			lo = mid + 1;
		else
			hi = mid;
	}
	start = lo ? run_at(a, lo - 1)->end : a->runs_from;
	to = b->first + b->count;
	for (size_t i = lo; i < a->nruns && start < to; i++) {
		const struct lg_run *r = run_at(a, i);
		uint64_t from = start > b->first ? start : b->first;
		uint64_t end = r->end < to ? r->end : to;

		if (end > from)
			record_latency(lg, wall, r->ts, end - from);
		start = r->end;
	}
	if (lg->ackf) {
		for (uint64_t i = b->first; i < to; i++) {
			fwrite(a->ids[i & (a->idcap - 1)], 1, TAPIO_ULID_LEN, lg->ackf);
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
	v = htole64(v); /* one store, not eight */
	memcpy(p, &v, sizeof(v));
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
 * Records where the id and the fixed64 timestamps of one packed Occurrence are, and where its
 * Context belongs (top-level fields only; protobuf-c's own output, in field-number order).
 * Returns 0, or -1 when a field is not where it must be.
 */
static int find_fields(const uint8_t *b, size_t len, struct packed_occ *po)
{
	size_t i = 0;

	po->ctx_off = (uint16_t)len;
	while (i < len) {
		size_t at = i;
		uint64_t key = read_varint(b, len, &i), v;

		if ((key >> 3) > 9 && po->ctx_off == len)
			po->ctx_off = (uint16_t)at;

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
	return i == len && po->id_off && po->ts_off && po->id_off < po->ctx_off &&
		       po->ts_off < po->ctx_off && !po->first_off == !po->last_off &&
		       (!po->first_off || po->first_off > po->ctx_off)
		   ? 0
		   : -1;
}

static struct packed_occ *pool_at(const struct loadgen *lg, uint32_t i)
{
	return (struct packed_occ *)(lg->pool + (size_t)i * lg->slot);
}

/* Packs every pool occurrence once, without its Context (each agent inserts its own). */
static int build_packed_pool(struct loadgen *lg, const struct tapio_occurrence *pool)
{
	size_t max = 0;

	for (uint32_t i = 0; i < POOL_SIZE; i++) {
		Tapio__V1__Occurrence msg;
		struct occ_proto_scratch scratch;
		size_t n;

		occ_to_proto(&pool[i], &msg, &scratch);
		msg.context = NULL;
		n = tapio__v1__occurrence__get_packed_size(&msg);
		if (n > PACKED_MAX)
			return -1;
		if (n > max)
			max = n;
	}
	lg->slot = (sizeof(struct packed_occ) + max + 63) & ~(size_t)63;
	lg->pool = aligned_alloc(64, POOL_SIZE * lg->slot);
	if (!lg->pool)
		return -1;
	for (uint32_t i = 0; i < POOL_SIZE; i++) {
		Tapio__V1__Occurrence msg;
		struct occ_proto_scratch scratch;
		struct packed_occ *po = pool_at(lg, i);

		memset(po, 0, sizeof(*po));
		occ_to_proto(&pool[i], &msg, &scratch);
		msg.context = NULL;
		po->len = (uint16_t)tapio__v1__occurrence__pack(&msg, po->bytes);
		if (find_fields(po->bytes, po->len, po) < 0)
			return -1;
	}
	lg->pick = (uint32_t)(occgen_rnd(&lg->gen) & (POOL_SIZE - 1));
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

/*
 * Submits n occurrences from agent a, all stamped now_ns: each is copied from the pool straight
 * into the client's batch frame and its id and timestamps are patched there.
 */
static void submit_n(struct loadgen *lg, struct agent *a, uint64_t n, uint64_t now_ns)
{
	uint64_t ms = now_ns / 1000000;

	for (; n; n--) {
		const struct packed_occ *po = pool_at(lg, lg->pick), *next;
		uint8_t *p;

		/* the pool is larger than this core's L2: fetch the next pick while this one is
		 * written */
		lg->pick = (uint32_t)(occgen_rnd(&lg->gen) & (POOL_SIZE - 1));
		next = pool_at(lg, lg->pick);
		for (size_t off = 0; off < lg->slot; off += 64)
			__builtin_prefetch((const uint8_t *)next + off);
		if (client_packed_reserve(a->client, po->len + a->ctx_len, &p) < 0)
			continue; /* dropped and counted by the client */
		memcpy(p, po->bytes, po->ctx_off);
		memcpy(p + po->ctx_off, a->ctx, a->ctx_len);
		memcpy(p + po->ctx_off + a->ctx_len, po->bytes + po->ctx_off,
		       po->len - po->ctx_off);
		next_id(lg, ms, p + po->id_off);
		put_le64(p + po->ts_off, now_ns);
		if (po->first_off) {
			put_le64(p + a->ctx_len + po->first_off, now_ns - 500000000ull);
			put_le64(p + a->ctx_len + po->last_off, now_ns);
		}
		if (lg->ackf)
			note_id(a, p + po->id_off);
		a->submitted++; /* before the commit: it may seal the batch (on_sealed) */
		client_packed_commit(a->client);
	}
	note_run(a, now_ns);
}

/*
 * Submits n occurrences over the agents as one round-robin from next_agent would, but each
 * agent's share in one go (its client's batch stays hot in the cache).
 */
static void submit_due(struct loadgen *lg, uint64_t n, uint64_t now_ns)
{
	uint64_t each = n / lg->nagents, rest = n % lg->nagents;
	uint32_t first = lg->next_agent;

	for (uint32_t i = 0; i < lg->nagents; i++) {
		uint64_t k = each + (i < rest);

		if (!k)
			break;
		submit_n(lg, &lg->agents[(first + i) % lg->nagents], k, now_ns);
	}
	lg->next_agent = (uint32_t)((first + rest) % lg->nagents);
	lg->submitted += n;
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

/*
 * --rate max: every agent below its window of unacknowledged bytes gets whole batches until it
 * is not (its client seals each at batch_max occurrences).
 */
static void top_up(struct loadgen *lg, uint64_t now_ns)
{
	uint32_t batch = lg->batch ? lg->batch : CLIENT_DEFAULT_BATCH_MAX;

	for (uint32_t i = 0; i < lg->nagents; i++) {
		struct agent *a = &lg->agents[i];
		uint64_t held;

		while ((held = client_queue_bytes(a->client)) < lg->window) {
			submit_n(lg, a, batch, now_ns);
			lg->submitted += batch;
			if (client_queue_bytes(a->client) <= held)
				break; /* the client dropped it (counted): try again next tick */
		}
	}
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
		if (lg->rate_max) {
			top_up(lg, clock_wall_ns());
			return;
		}
		due = (uint64_t)(lg->rate * elapsed);
		max_now = (uint64_t)(lg->rate * MAX_CATCHUP_MS / 1000.0) + 1;
		if (due > lg->submitted + max_now)
			due = lg->submitted + max_now;
		wall = clock_wall_ns();
		if (due > lg->submitted)
			submit_due(lg, due - lg->submitted, wall);
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
		printf("{\"agents\":%u,\"rate\":%.0f,\"duration_s\":%.3f,\"submitted\":%" PRIu64
		       ",\"acked\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"dropped_queue\":%" PRIu64
		       ",\"dropped_spool\":%" PRIu64 ",\"unacked\":%" PRIu64
		       ",\"batches_sent\":%" PRIu64 ",\"batches_acked\":%" PRIu64
		       ",\"batches_resent\":%" PRIu64 ",\"send_failures\":%" PRIu64
		       ",\"reconnects\":%" PRIu64 ",\"elapsed_s\":%.3f,\"acked_per_s\":%.0f"
		       ",\"batch_ms\":%u,\"latency_samples\":%" PRIu64
		       ",\"latency_p50_ms\":%.3f,\"latency_p99_ms\":%.3f,\"latency_max_ms\":%.3f"
		       ",\"window\":%" PRIu64 "}\n",
		       lg->nagents, lg->rate_max ? 0.0 : lg->rate, submit_s, t->submitted,
		       t->occurrences_acked, dropped, t->dropped_queue, t->dropped_spool, unacked,
		       t->batches_sent, t->batches_acked, t->batches_resent, t->send_failures,
		       t->reconnects, ack_s, acked_per_s,
		       lg->batch_ms ? lg->batch_ms : CLIENT_DEFAULT_BATCH_MAX_MS, lg->lat_n, p50,
		       p99, lmax, lg->rate_max ? lg->window : 0);
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
	    "                     [--batch B] [--batch-ms MS] [--window BYTES] [--spool-dir DIR]\n"
	    "                     [--acked-log FILE] [--node-prefix P] [--seed X]\n"
	    "                     [--json-summary] [--token T | --token-file F]\n"
	    "                     [--tls-ca F [--tls-cert F --tls-key F] [--tls-server-name N]]\n"
	    "  --rate is occurrences per second over all agents (0: connect and stay idle;\n"
	    "  max: closed-loop, each agent keeps --window bytes unacknowledged, default 2 MiB);\n"
	    "  --duration in seconds; --batch-ms is the client's batch time (default 200).\n");
}

static int parse_args(struct loadgen *lg, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"controller", required_argument, NULL, 'c'},
	    {"agents", required_argument, NULL, 'a'},
	    {"rate", required_argument, NULL, 'r'},
	    {"window", required_argument, NULL, 'w'},
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
	lg->window = LG_DEFAULT_WINDOW;
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
			if (strcmp(optarg, "max") == 0) {
				lg->rate_max = true;
				break;
			}
			lg->rate_max = false;
			lg->rate = strtod(optarg, &end);
			if (errno || *end || lg->rate < 0) {
				fprintf(stderr, "tapio-loadgen: --rate must be >= 0 or max\n");
				return -1;
			}
			break;
		case 'w': {
			unsigned long long v = strtoull(optarg, &end, 10);
			/* below the client's queue bound, which would drop what the window asks for */
			if (errno || *end || v < 1024 || v > CLIENT_DEFAULT_QUEUE_BYTES / 2) {
				fprintf(stderr,
					"tapio-loadgen: --window must be 1024..%llu bytes\n",
					(unsigned long long)CLIENT_DEFAULT_QUEUE_BYTES / 2);
				return -1;
			}
			lg->window = v;
			break;
		}
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
	b32_init();
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
		free(lg->agents[i].runs);
		free(lg->agents[i].batches);
	}
	free(lg->agents);
	free(lg->pool);
	return ret;
}
