/*
 * tapio-storegen: fills a controller data directory with N realistic occurrences (every type,
 * plausible facts, severities per the catalogue, nodes node-0000..) whose timestamps are spread
 * over the last --span in increasing order, written straight through the store API in the
 * exact record format the controller's ingest writes (packed tapio.v1.Occurrence payload +
 * store_record_meta; one store batch per agent batch, batch identity = the agent's key,
 * session and sequence). --sqlite FILE writes the same rows to an SQLite database (the
 * baseline of scripts/bench-query.sh).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TAPIO_HAVE_SQLITE
#include <sqlite3.h>
#endif

#include "common/clock.h"
#include "common/occ_json.h"
#include "common/occ_proto.h"
#include "common/ulid.h"
#include "controller/registry.h"
#include "controller/store.h"
#include "tools/occgen.h"

#define POOL_SIZE    4096
#define COMMIT_EVERY 32768 /* records per store_commit (~7 MB, segments close to 64 MiB) */
#define PAYLOAD_ROOM 4096  /* bytes of packed payload room per record (way over real sizes) */

/* ---- options ------------------------------------------------------------------------------ */

struct opts {
	const char *dir;
	const char *sqlite;
	uint64_t records;
	uint32_t nodes;
	uint64_t span_s;
	uint64_t seed;
	uint64_t end_ns; /* newest timestamp; 0 → now */
};

static int parse_span(const char *s, uint64_t *secs)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || v == 0)
		return -1;
	switch (*end) {
	case 's':
		break;
	case 'm':
		v *= 60;
		break;
	case 'h':
		v *= 3600;
		break;
	case 'd':
		v *= 86400;
		break;
	default:
		return -1;
	}
	if (end[1])
		return -1;
	*secs = v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: tapio-storegen --data-dir DIR --records N --nodes K --span 24h\n"
		   "                      [--seed S] [--sqlite FILE] [--end RFC3339]\n"
		   "  writes N occurrences, timestamps spread over the --span before --end\n"
		   "  (default now) in increasing order, into the store in DIR (and FILE).\n");
}

static int parse_args(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"data-dir", required_argument, NULL, 'd'},
	    {"records", required_argument, NULL, 'n'},
	    {"nodes", required_argument, NULL, 'k'},
	    {"span", required_argument, NULL, 's'},
	    {"seed", required_argument, NULL, 'x'},
	    {"sqlite", required_argument, NULL, 'q'},
	    {"end", required_argument, NULL, 'e'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char *end;
	int ch;

	o->records = 1000000;
	o->nodes = 1000;
	o->span_s = 86400;
	o->seed = 1;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		errno = 0;
		switch (ch) {
		case 'd':
			o->dir = optarg;
			break;
		case 'q':
			o->sqlite = optarg;
			break;
		case 'n':
			o->records = strtoull(optarg, &end, 10);
			if (errno || *end || o->records == 0) {
				fprintf(stderr, "tapio-storegen: --records must be > 0\n");
				return -1;
			}
			break;
		case 'k': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || *end || v == 0 || v > 100000) {
				fprintf(stderr, "tapio-storegen: --nodes must be 1..100000\n");
				return -1;
			}
			o->nodes = (uint32_t)v;
			break;
		}
		case 's':
			if (parse_span(optarg, &o->span_s) < 0) {
				fprintf(stderr, "tapio-storegen: bad --span '%s' (e.g. 24h)\n",
					optarg);
				return -1;
			}
			break;
		case 'x':
			o->seed = strtoull(optarg, &end, 0);
			if (errno || *end) {
				fprintf(stderr, "tapio-storegen: bad --seed\n");
				return -1;
			}
			break;
		case 'e':
			if (clock_parse_rfc3339(optarg, &o->end_ns) < 0) {
				fprintf(stderr, "tapio-storegen: bad --end (RFC 3339)\n");
				return -1;
			}
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (!o->dir || optind != argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* ---- SQLite baseline ---------------------------------------------------------------------- */

#ifdef TAPIO_HAVE_SQLITE
struct sql {
	sqlite3 *db;
	sqlite3_stmt *ins;
};

static int sql_exec(sqlite3 *db, const char *q)
{
	char *msg = NULL;

	if (sqlite3_exec(db, q, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "tapio-storegen: sqlite: %s: %s\n", q, msg ? msg : "?");
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int sql_open(struct sql *s, const char *file)
{
	if (remove(file) < 0 && errno != ENOENT) {
		fprintf(stderr, "tapio-storegen: remove %s: %s\n", file, strerror(errno));
		return -1;
	}
	if (sqlite3_open(file, &s->db) != SQLITE_OK) {
		fprintf(stderr, "tapio-storegen: sqlite open %s: %s\n", file,
			sqlite3_errmsg(s->db));
		return -1;
	}
	/* bulk load: the same "no fsync while generating" policy as the store */
	if (sql_exec(s->db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
			    "PRAGMA cache_size=-1048576;") < 0 ||
	    sql_exec(s->db, "CREATE TABLE occurrences(id TEXT PRIMARY KEY, ts INTEGER, "
			    "type TEXT, node TEXT, severity INTEGER, json TEXT)") < 0 ||
	    sql_exec(s->db, "BEGIN") < 0)
		return -1;
	if (sqlite3_prepare_v2(s->db, "INSERT INTO occurrences VALUES(?,?,?,?,?,?)", -1, &s->ins,
			       NULL) != SQLITE_OK) {
		fprintf(stderr, "tapio-storegen: sqlite prepare: %s\n", sqlite3_errmsg(s->db));
		return -1;
	}
	return 0;
}

static int sql_insert(struct sql *s, const struct tapio_occurrence *o, const char *json,
		      size_t jlen)
{
	sqlite3_bind_text(s->ins, 1, o->id, TAPIO_ULID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s->ins, 2, (sqlite3_int64)o->timestamp_ns);
	sqlite3_bind_text(s->ins, 3, tapio_occ_type_name(o->type), -1, SQLITE_STATIC);
	sqlite3_bind_text(s->ins, 4, o->node, -1, SQLITE_STATIC);
	sqlite3_bind_int(s->ins, 5, (int)o->severity);
	sqlite3_bind_text(s->ins, 6, json, (int)jlen, SQLITE_STATIC);
	if (sqlite3_step(s->ins) != SQLITE_DONE) {
		fprintf(stderr, "tapio-storegen: sqlite insert: %s\n", sqlite3_errmsg(s->db));
		return -1;
	}
	sqlite3_reset(s->ins);
	return 0;
}

/* Indexes after the load (one sort each, the fastest way to build them), then commit. */
static int sql_close(struct sql *s)
{
	int r = 0;

	sqlite3_finalize(s->ins);
	if (sql_exec(s->db, "CREATE INDEX occ_ts ON occurrences(ts);"
			    "CREATE INDEX occ_type_node_ts ON occurrences(type, node, ts);"
			    "CREATE INDEX occ_node_ts ON occurrences(node, ts);"
			    "CREATE INDEX occ_sev_ts ON occurrences(severity, ts);"
			    "COMMIT; ANALYZE;") < 0)
		r = -1;
	if (sqlite3_close(s->db) != SQLITE_OK)
		r = -1;
	return r;
}
#endif

/* ---- generation --------------------------------------------------------------------------- */

struct node_state {
	char name[TAPIO_NAME_LEN];
	uint32_t id;
	uint64_t agent_key;
	uint64_t session_id;
	uint64_t sequence;
};

int main(int argc, char **argv)
{
	struct opts o = {0};
	struct occgen g;
	struct store_options so;
	struct store *st = NULL;
	struct tapio_occurrence *pool;
	struct node_state *nodes;
	uint8_t *buf;
	uint64_t now, t0, step, t_start;
	uint64_t bytes = 0, sql_ns = 0;
	int r;
#ifdef TAPIO_HAVE_SQLITE
	struct sql sq = {0};
	char json[TAPIO_OCC_JSON_MAX];
#endif

	if (parse_args(&o, argc, argv) < 0)
		return 2;
#ifndef TAPIO_HAVE_SQLITE
	if (o.sqlite) {
		fprintf(stderr, "tapio-storegen: built without SQLite (libsqlite3-dev)\n");
		return 2;
	}
#endif
	occgen_seed(&g, o.seed);
	pool = calloc(POOL_SIZE, sizeof(*pool));
	nodes = calloc(o.nodes, sizeof(*nodes));
	buf = malloc(PAYLOAD_ROOM);
	if (!pool || !nodes || !buf) {
		fprintf(stderr, "tapio-storegen: out of memory\n");
		return 1;
	}
	for (uint32_t i = 0; i < POOL_SIZE; i++)
		occgen_fill(&g, &pool[i], i, "storegen");

	store_options_defaults(&so);
	so.dir = o.dir;
	so.fsync = STORE_FSYNC_NEVER;
	r = store_open(&so, &st);
	if (r < 0) {
		fprintf(stderr, "tapio-storegen: store_open %s: %s\n", o.dir, strerror(-r));
		return 1;
	}
	for (uint32_t i = 0; i < o.nodes; i++) {
		struct node_state *n = &nodes[i];
		char agent_id[TAPIO_NAME_LEN + 16];

		snprintf(n->name, sizeof(n->name), "node-%04u", i);
		snprintf(agent_id, sizeof(agent_id), "storegen-%s", n->name);
		n->agent_key = registry_agent_key(agent_id);
		n->session_id = occgen_rnd(&g) | 1;
		if ((r = store_node_intern(st, n->name, &n->id)) < 0) {
			fprintf(stderr, "tapio-storegen: store_node_intern: %s\n", strerror(-r));
			return 1;
		}
	}
#ifdef TAPIO_HAVE_SQLITE
	if (o.sqlite && sql_open(&sq, o.sqlite) < 0)
		return 1;
#endif

	now = o.end_ns ? o.end_ns : clock_wall_ns();
	t0 = now - o.span_s * 1000000000ull;
	step = o.span_s * 1000000000ull / o.records; /* ns between consecutive records */
	t_start = clock_mono_ns();
	for (uint64_t i = 0; i < o.records; i++) {
		struct tapio_occurrence occ = pool[occgen_rnd(&g) & (POOL_SIZE - 1)];
		struct node_state *n = &nodes[occgen_below(&g, o.nodes)];
		struct store_record_meta m;
		Tapio__V1__Occurrence msg;
		struct occ_proto_scratch scratch;
		const void *rec = buf;
		size_t sz;

		/* increasing timestamps: a slot of `step` ns per record, jittered inside it */
		occ.timestamp_ns = t0 + i * step + (step > 1 ? occgen_rnd(&g) % step : 0);
		if (occ.count) {
			occ.first_seen_ns = occ.timestamp_ns - 500000000ull;
			occ.last_seen_ns = occ.timestamp_ns;
		}
		memcpy(occ.node, n->name, sizeof(occ.node));
		ulid_generate(occ.timestamp_ns / 1000000, occ.id);

		/* exactly what ingest.c's append_batch does for one occurrence */
		occ_to_proto(&occ, &msg, &scratch);
		sz = tapio__v1__occurrence__get_packed_size(&msg);
		if (sz > PAYLOAD_ROOM) {
			fprintf(stderr, "tapio-storegen: payload of %zu bytes\n", sz);
			return 1;
		}
		tapio__v1__occurrence__pack(&msg, buf);
		m.timestamp_ns = occ.timestamp_ns;
		m.type = (uint8_t)occ.type;
		m.severity = (uint8_t)occ.severity;
		m.node_id = n->id;
		m.agent_key = n->agent_key;
		m.session_id = n->session_id;
		/* ~0.1 occurrence/s per node: every agent batch (200 ms) holds one occurrence */
		m.sequence = ++n->sequence;
		if ((r = store_append_batch(st, &m, &rec, &sz, 1)) < 0) {
			fprintf(stderr, "tapio-storegen: store_append_batch: %s\n", strerror(-r));
			return 1;
		}
		bytes +=
		    seg_record_size(sz, true); /* one record per batch: it carries the identity */
#ifdef TAPIO_HAVE_SQLITE
		if (o.sqlite) {
			uint64_t q0 = clock_mono_ns();
			ssize_t jl = occ_json_write(&occ, json, sizeof(json));

			if (jl < 0 || sql_insert(&sq, &occ, json, (size_t)jl) < 0)
				return 1;
			sql_ns += clock_mono_ns() - q0;
		}
#endif
		if ((i + 1) % COMMIT_EVERY == 0) {
			if ((r = store_commit(st)) < 0) {
				fprintf(stderr, "tapio-storegen: store_commit: %s\n", strerror(-r));
				return 1;
			}
			if ((i + 1) % (COMMIT_EVERY * 32) == 0)
				fprintf(stderr, "tapio-storegen: %" PRIu64 " records, %.1f s\n",
					i + 1, (double)(clock_mono_ns() - t_start) / 1e9);
		}
	}
	if ((r = store_commit(st)) < 0) {
		fprintf(stderr, "tapio-storegen: store_commit: %s\n", strerror(-r));
		return 1;
	}
	double store_s = (double)(clock_mono_ns() - t_start - sql_ns) / 1e9;
	struct store_stats ss;
	store_stats(st, &ss);
	if ((r = store_close(st)) < 0) {
		fprintf(stderr, "tapio-storegen: store_close: %s\n", strerror(-r));
		return 1;
	}
#ifdef TAPIO_HAVE_SQLITE
	uint64_t q0 = clock_mono_ns();
	if (o.sqlite && sql_close(&sq) < 0)
		return 1;
	sql_ns += clock_mono_ns() - q0;
#endif
	/* store_s: generation + store writes; sqlite_s: JSON + inserts + index build */
	printf("records %" PRIu64 " nodes %u span_s %" PRIu64 " segments %" PRIu64
	       " store_bytes %" PRIu64 " record_bytes %" PRIu64 " store_s %.1f sqlite_s %.1f\n",
	       ss.records, o.nodes, o.span_s, ss.segments, ss.bytes, bytes, store_s,
	       (double)sql_ns / 1e9);
	free(pool);
	free(nodes);
	free(buf);
	return 0;
}
