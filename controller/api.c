/* Query API handlers: controller state in, documented JSON / Prometheus / HTML out. */
#include "controller/api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/occ_json.h"
#include "common/occ_proto.h"
#include "common/occ_wire.h"
#include "controller/controller.h"
#include "dashboard_html.h"

#define TAG "api"

/*
 * Records one occurrences page may examine (record headers read, or posting-list entries
 * checked): ~4-5 ms of loop time at the measured decode rate. A page that hits it ends early
 * with a next_cursor where the scan stopped (docs/api.md).
 */
#define OCC_MAX_EXAMINED 100000u

#define CT_JSON	  "application/json; charset=utf-8"
#define CT_NDJSON "application/x-ndjson"
#define CT_PROM	  "text/plain; version=0.0.4; charset=utf-8"
#define CT_HTML	  "text/html; charset=utf-8"

/* ---- a growable text buffer -------------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static bool sbuf_reserve(struct sbuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (!sbuf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !sbuf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* ---- responses ---------------------------------------------------------------------------- */

void api_response_fini(struct api_response *rs)
{
	if (!rs)
		return;
	free(rs->body);
	rs->body = NULL;
	rs->len = 0;
}

void api_error(struct api_response *rs, int status, const char *code, const char *fmt, ...)
{
	char msg[512];
	json_t *j;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	api_response_fini(rs);
	rs->status = status;
	rs->content_type = CT_JSON;
	rs->next_cursor[0] = '\0';
	j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
	rs->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!rs->body) {
		/* out of memory: a static envelope still says what happened */
		static const char oom[] =
		    "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"out of memory\"}}";

		rs->status = 500;
		rs->body = strdup(oom);
	}
	rs->len = rs->body ? strlen(rs->body) : 0;
}

/* Takes ownership of j: renders it as the 200 JSON body. */
static void reply_json(struct api_response *rs, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (!text) {
		log_error(TAG, "rendering a response: out of memory");
		api_error(rs, 500, "INTERNAL", "out of memory rendering the response");
		return;
	}
	rs->status = 200;
	rs->content_type = CT_JSON;
	rs->body = text;
	rs->len = strlen(text);
}

static void reply_sbuf(struct api_response *rs, struct sbuf *b, const char *ctype)
{
	if (b->oom) {
		free(b->p);
		log_error(TAG, "rendering a response: out of memory");
		api_error(rs, 500, "INTERNAL", "out of memory rendering the response");
		return;
	}
	rs->status = 200;
	rs->content_type = ctype;
	rs->body = b->p ? b->p : strdup("");
	rs->len = b->len;
}

static void reply_params_error(struct api_response *rs, const struct params_error *e)
{
	api_error(rs, 400, e->status == PARAMS_BAD_CURSOR ? "BAD_CURSOR" : "BAD_PARAMETER", "%s",
		  e->message);
}

static json_t *time_or_null(uint64_t ns)
{
	char buf[40];

	if (ns == 0 || clock_format_rfc3339(ns, buf, sizeof(buf)) < 0)
		return json_null();
	return json_string(buf);
}

static const char *fsync_name(enum store_fsync f)
{
	switch (f) {
	case STORE_FSYNC_ALWAYS:
		return "always";
	case STORE_FSYNC_INTERVAL:
		return "interval";
	case STORE_FSYNC_NEVER:
		return "never";
	}
	return "unknown";
}

/* ---- GET /v1/status ----------------------------------------------------------------------- */

#define RATE_WINDOW_NS (5ull * 1000000000ull)

/* Occurrences per second over the last 5..10 s of polling, else since start. */
static double occ_rate(struct api_rate *r, uint64_t now, uint64_t occ, uint64_t up_ns)
{
	if (r) {
		if (!r->cur_ns || now - r->cur_ns >= RATE_WINDOW_NS || now < r->cur_ns) {
			r->prev_ns = r->cur_ns;
			r->prev_occ = r->cur_occ;
			r->cur_ns = now;
			r->cur_occ = occ;
		}
		if (r->prev_ns && now > r->prev_ns + 1000000000ull && occ >= r->prev_occ)
			return (double)(occ - r->prev_occ) / ((double)(now - r->prev_ns) / 1e9);
	}
	return up_ns ? (double)occ / ((double)up_ns / 1e9) : 0.0;
}

static void get_status(struct controller *c, const struct api_request *rq, struct api_response *rs)
{
	const struct ingest_stats *s = ingest_get_stats(&c->ingest);
	uint64_t now = clock_wall_ns();
	uint64_t up_ns = now > c->started_ns ? now - c->started_ns : 0;
	const char *host = c->ingest.opt.host ? c->ingest.opt.host : "";
	bool v6 = strchr(host, ':') != NULL;
	json_t *errors = json_object();
	struct store_stats st;
	char listen[300];
	json_t *j;

	store_stats(c->store, &st);
	snprintf(listen, sizeof(listen), "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "",
		 ingest_port(&c->ingest));
	for (int i = 1; errors && i < INGEST_ERROR_CODES; i++)
		if (s->errors_sent[i])
			json_object_set_new(errors, codec_error_code_name((Tapio__V1__ErrorCode)i),
					    json_integer((json_int_t)s->errors_sent[i]));
	j = json_pack(
	    "{s:s,s:s,s:i,s:o,s:I,s:s,s:s,"
	    "s:{s:s,s:I,s:I,s:I,s:o,s:o,s:I,s:I,s:s,s:I,s:I,s:I},"
	    "s:{s:I,s:I,s:I,s:I,s:I,s:f,s:o},s:{s:I,s:I}}",
	    "controller_id", c->ingest.controller_id ? c->ingest.controller_id : "", "version",
	    TAPIO_VERSION, "wire_version", (int)CODEC_WIRE_VERSION, "started_at",
	    time_or_null(c->started_ns), "uptime_s", (json_int_t)(up_ns / 1000000000ull), "listen",
	    listen, "http", rq->http_address ? rq->http_address : "",
	    /* store */
	    "store", "dir", c->opt.store.dir ? c->opt.store.dir : "", "segments",
	    (json_int_t)st.segments, "bytes", (json_int_t)st.bytes, "records",
	    (json_int_t)st.records, "oldest", time_or_null(st.oldest_ts_ns), "newest",
	    time_or_null(st.newest_ts_ns), "retention_bytes",
	    (json_int_t)(c->opt.store.retention_bytes ? c->opt.store.retention_bytes : 10ull << 30),
	    "retention_age_s",
	    (json_int_t)(c->opt.store.retention_age_s ? c->opt.store.retention_age_s
						      : 7ull * 86400),
	    "fsync", fsync_name(c->opt.store.fsync), "commits", (json_int_t)st.commits, "fsyncs",
	    (json_int_t)st.fsyncs, "rotations", (json_int_t)st.rotations,
	    /* ingest */
	    "ingest", "connections", (json_int_t)s->current, "frames", (json_int_t)s->frames_in,
	    "batches", (json_int_t)s->batches, "occurrences", (json_int_t)s->occurrences, "bytes",
	    (json_int_t)s->bytes_in, "occurrences_per_s",
	    occ_rate(rq->rate, now, s->occurrences, up_ns), "errors", errors,
	    /* agents */
	    "agents", "connected", (json_int_t)registry_connected(&c->registry), "known",
	    (json_int_t)registry_known(&c->registry));
	if (j) { /* transport security (docs/security.md) */
		json_t *by = json_object(), *tls;

		for (int i = 1; by && i < TLS_FAIL__COUNT; i++)
			json_object_set_new(by, tls_fail_name((enum tls_fail)i),
					    json_integer((json_int_t)s->tls_failures[i]));
		tls = json_pack("{s:b,s:b,s:I,s:I,s:o*,s:I}", "enabled", c->tls != NULL, "mutual",
				tls_ctx_mutual(c->tls), "handshakes", (json_int_t)s->tls_handshakes,
				"handshake_failures", (json_int_t)s->tls_handshake_failures,
				"failures", by, "errors", (json_int_t)s->tls_errors);
		if (tls)
			json_object_set_new(json_object_get(j, "ingest"), "tls", tls);
	}
	reply_json(rs, j);
}

/* ---- GET /v1/agents ----------------------------------------------------------------------- */

static void get_agents(struct controller *c, struct api_response *rs)
{
	json_t *all = registry_to_json(&c->registry, clock_wall_ns());
	json_t *agents = all ? json_object_get(all, "agents") : NULL;
	json_t *a, *out;
	size_t i;

	if (!agents) {
		json_decref(all);
		api_error(rs, 500, "INTERNAL", "out of memory rendering the agents");
		return;
	}
	/* the registry says "id"; the API contract says "agent_id" (kept first) */
	out = json_array();
	json_array_foreach(agents, i, a)
	{
		json_t *one = json_pack("{s:O?}", "agent_id", json_object_get(a, "id"));

		json_object_del(a, "id");
		if (!one || json_object_update(one, a) < 0 || json_array_append_new(out, one) < 0) {
			json_decref(out);
			out = NULL;
			break;
		}
	}
	json_decref(all);
	reply_json(rs, out ? json_pack("{s:o}", "agents", out) : NULL);
}

/* ---- GET /v1/occurrences ------------------------------------------------------------------ */

static int pos_cmp(struct store_pos a, struct store_pos b)
{
	if (a.segment_id != b.segment_id)
		return a.segment_id < b.segment_id ? -1 : 1;
	if (a.offset != b.offset)
		return a.offset < b.offset ? -1 : 1;
	return 0;
}

/* protobuf-c allocations of one record's unpack come from the page's arena */
static void *arena_alloc(void *ctx, size_t size)
{
	return codec_arena_alloc(ctx, size);
}

static void arena_free(void *ctx, void *ptr)
{
	(void)ctx;
	(void)ptr; /* released all at once by codec_arena_reset */
}

struct page {
	struct store_pos upper, last;
	uint32_t limit, n;
	bool more, ndjson;
	uint64_t undecodable;
	struct sbuf out;
	struct codec_arena arena; /* one record's unpacked message at a time */
	ProtobufCAllocator alloc;
	struct tapio_occurrence occ;
};

/*
 * One stored occurrence (a packed tapio.v1.Occurrence) into p->occ; returns 0 or -1 (it does
 * not decode). The wire decoder (common/occ_wire.h) gives exactly what protobuf-c + occ_from_
 * proto give, without either; what it declines (a non-canonical encoding) is unpacked by
 * protobuf-c into the page's arena and converted by occ_from_proto.
 */
static int decode_stored(struct page *p, const uint8_t *data, size_t len)
{
	Tapio__V1__Occurrence *msg;
	char err[160];
	int r = -1;

	if (occ_wire_decode_occurrence(data, len, &p->occ) == 0)
		return 0;
	/* no free_unpacked: the arena reset below releases the message, which owns nothing */
	msg = tapio__v1__occurrence__unpack(&p->alloc, len, data);
	if (msg && occ_from_proto(msg, &p->occ, err, sizeof(err)) == 0)
		r = 0;
	codec_arena_reset(&p->arena);
	return r;
}

static int on_page_record(void *ctx, const struct store_record_meta *m, const void *data,
			  size_t len, struct store_pos pos)
{
	struct page *p = ctx;
	ssize_t n = -1;

	/* committed after the first page fixed its bound: belongs to a later query */
	if (pos_cmp(pos, p->upper) > 0)
		return 0;
	if (p->n == p->limit) {
		p->more = true;
		return 1;
	}
	/* the JSON goes straight into the response */
	if (decode_stored(p, data, len) == 0 && sbuf_reserve(&p->out, 1 + TAPIO_OCC_JSON_MAX + 1)) {
		char *at = p->out.p + p->out.len + (!p->ndjson && p->n);

		n = occ_json_write(&p->occ, at, TAPIO_OCC_JSON_MAX);
	}
	if (n < 0) {
		if (p->out.p)
			p->out.p[p->out.len] = '\0';
		p->undecodable++;
		return p->out.oom ? 1 : 0;
	}
	if (!p->ndjson && p->n)
		p->out.p[p->out.len++] = ',';
	p->out.len += (size_t)n;
	if (p->ndjson)
		p->out.p[p->out.len++] = '\n';
	p->out.p[p->out.len] = '\0';
	p->n++;
	p->last = pos;
	return p->out.oom ? 1 : 0;
}

static void get_occurrences(struct controller *c, const struct api_request *rq,
			    struct api_response *rs)
{
	struct occ_params prm;
	struct params_error perr;
	struct store_query q;
	struct page *p;
	struct store_scan_info info;
	uint32_t node_id = 0;
	bool empty = false;
	long r;

	if (params_parse_occurrences(rq->query, rq->query_len, clock_wall_ns(), &prm, &perr) < 0) {
		reply_params_error(rs, &perr);
		return;
	}
	p = malloc(sizeof(*p));
	if (!p) {
		api_error(rs, 500, "INTERNAL", "out of memory");
		return;
	}
	memset(p, 0, offsetof(struct page, occ)); /* occ is scratch */
	codec_arena_init(&p->arena);
	p->alloc = (ProtobufCAllocator){
	    .alloc = arena_alloc, .free = arena_free, .allocator_data = &p->arena};
	p->limit = prm.limit;
	p->ndjson = rq->ndjson;
	if (prm.has_cursor) {
		p->upper.segment_id = prm.cursor.upper_segment;
		p->upper.offset = prm.cursor.upper_offset;
	} else {
		/* the first page fixes the bound: the newest durable record right now */
		empty = !store_last_pos(c->store, &p->upper);
	}
	if (prm.has_node && !store_node_find(c->store, prm.node, &node_id))
		empty = true;
	/* room for a page of typical (≈ 600-byte) occurrences at once: no regrowth copies */
	sbuf_reserve(&p->out, (size_t)p->limit * 640);
	if (!p->ndjson)
		sbuf_add(&p->out, "{\"occurrences\":[", 16);
	if (!empty) {
		store_query_init(&q);
		q.order = STORE_NEWEST_FIRST;
		q.since_ns = prm.since_ns;
		q.until_ns = prm.until_ns;
		q.type_mask = prm.type_mask;
		if (prm.min_severity >= 0)
			q.severity_mask =
			    ((1u << TAPIO_SEV__COUNT) - 1) & ~((1u << prm.min_severity) - 1);
		q.node_id = prm.has_node ? (int64_t)node_id : -1;
		/* start at the bound: later records belong to later queries */
		q.has_cursor = true;
		q.cursor.segment_id = p->upper.segment_id;
		q.cursor.offset = p->upper.offset + 1;
		if (prm.has_cursor) {
			q.cursor.segment_id = prm.cursor.last_segment;
			q.cursor.offset = prm.cursor.last_offset;
		}
		q.max_examined = OCC_MAX_EXAMINED;
		r = store_scan_bounded(c->store, &q, on_page_record, p, &info);
		if (r < 0)
			goto scan_failed;
		if (info.truncated && !p->more) {
			/* the work bound, not the end of the data: continue where the scan stopped */
			p->more = true;
			p->last = info.resume;
		}
	}
	if (p->undecodable)
		LOG_RATELIMITED(LOG_WARN, TAG,
				"occurrences: skipped %" PRIu64
				" stored records that do not decode",
				p->undecodable);
	if (p->more) {
		struct params_cursor cur = {
		    .upper_segment = p->upper.segment_id,
		    .upper_offset = p->upper.offset,
		    .last_segment = p->last.segment_id,
		    .last_offset = p->last.offset,
		    .since_ns = prm.since_ns,
		    .until_ns = prm.until_ns,
		    .query_hash = prm.query_hash,
		};

		params_cursor_encode(&cur, rs->next_cursor, sizeof(rs->next_cursor));
	}
	if (!p->ndjson) {
		if (rs->next_cursor[0])
			sbuf_printf(&p->out, "],\"next_cursor\":\"%s\"}", rs->next_cursor);
		else
			sbuf_add(&p->out, "],\"next_cursor\":null}", 21);
	}
	reply_sbuf(rs, &p->out, p->ndjson ? CT_NDJSON : CT_JSON);
	if (rs->status != 200)
		rs->next_cursor[0] = '\0';
	codec_arena_fini(&p->arena);
	free(p);
	return;
scan_failed:
	log_error(TAG, "store_scan: %s", strerror((int)-r));
	codec_arena_fini(&p->arena);
	free(p->out.p);
	free(p);
	api_error(rs, 500, "INTERNAL", "store scan failed: %s", strerror((int)-r));
}

/* ---- GET /v1/summary ---------------------------------------------------------------------- */

struct summary_ctx {
	struct controller *c;
	enum aggregate_by by;
	json_t *groups;
	bool oom;
};

static int on_bucket(void *ctx, uint64_t bucket_start_ns, uint32_t key, uint64_t count)
{
	struct summary_ctx *sc = ctx;
	char name[40], t[40];
	const char *k = name;
	json_t *arr;

	switch (sc->by) {
	case AGG_BY_TYPE:
		k = tapio_occ_type_name((enum tapio_occ_type)key);
		break;
	case AGG_BY_SEVERITY:
		k = tapio_severity_name((enum tapio_severity)key);
		break;
	case AGG_BY_NODE:
		k = store_node_name(sc->c->store, key);
		if (!k) {
			snprintf(name, sizeof(name), "node#%u", key);
			k = name;
		}
		break;
	}
	arr = json_object_get(sc->groups, k);
	if (!arr) {
		arr = json_array();
		if (!arr || json_object_set_new(sc->groups, k, arr) < 0) {
			sc->oom = true;
			return 1;
		}
	}
	clock_format_rfc3339(bucket_start_ns, t, sizeof(t));
	if (json_array_append_new(arr, json_pack("{s:s,s:I}", "t", t, "count", (json_int_t)count)) <
	    0) {
		sc->oom = true;
		return 1;
	}
	return 0;
}

static void get_summary(struct controller *c, const struct api_request *rq, struct api_response *rs)
{
	static const char *const by_names[] = {"type", "node", "severity"};
	struct summary_params prm;
	struct params_error perr;
	struct summary_ctx sc = {.c = c};
	int r;

	if (params_parse_summary(rq->query, rq->query_len, clock_wall_ns(), &prm, &perr) < 0) {
		reply_params_error(rs, &perr);
		return;
	}
	sc.by = prm.by;
	sc.groups = json_object();
	if (!sc.groups) {
		api_error(rs, 500, "INTERNAL", "out of memory");
		return;
	}
	r = aggregate_query(c->aggregate, prm.by, prm.since_ns, prm.until_ns, prm.bucket_s,
			    on_bucket, &sc);
	if (r < 0 || sc.oom) {
		json_decref(sc.groups);
		log_error(TAG, "aggregate_query: %s", sc.oom ? "out of memory" : strerror(-r));
		api_error(rs, 500, "INTERNAL", "summary failed");
		return;
	}
	reply_json(rs, json_pack("{s:s,s:I,s:o,s:o,s:o}", "by", by_names[prm.by], "bucket_s",
				 (json_int_t)prm.bucket_s, "since", time_or_null(prm.since_ns),
				 "until", time_or_null(prm.until_ns), "groups", sc.groups));
}

/* ---- GET /metrics ------------------------------------------------------------------------- */

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void prom_label(struct sbuf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			sbuf_add(b, "\\\\", 2);
		else if (*v == '"')
			sbuf_add(b, "\\\"", 2);
		else if (*v == '\n')
			sbuf_add(b, "\\n", 2);
		else
			sbuf_add(b, v, 1);
	}
}

static void prom_head(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_one(struct sbuf *b, const char *name, const char *type, const char *help,
		     uint64_t v)
{
	prom_head(b, name, type, help);
	sbuf_printf(b, "%s %" PRIu64 "\n", name, v);
}

struct fleet_metric {
	const char *name, *type, *help;
	size_t offset; /* of the uint64_t in struct registry_counters */
};

#define FLEET(n, t, h, f)                                      \
	{                                                      \
		n, t, h, offsetof(struct registry_counters, f) \
	}

static const struct fleet_metric fleet[] = {
    FLEET("tapio_agent_events_total", "counter", "Kernel records the agent received.", events),
    FLEET("tapio_agent_lost_total", "counter", "Kernel records lost before the agent read them.",
	  lost),
    FLEET("tapio_agent_malformed_total", "counter", "Kernel records the agent refused.", malformed),
    FLEET("tapio_agent_correlation_drops_total", "counter",
	  "Correlation entries dropped by the agent.", correlation_drops),
    FLEET("tapio_agent_sink_writes_total", "counter", "Occurrences the agent's sinks wrote.",
	  sink_writes),
    FLEET("tapio_agent_sink_drops_total", "counter", "Occurrences the agent's sinks dropped.",
	  sink_drops),
    FLEET("tapio_agent_send_failures_total", "counter", "Failed sends to the controller.",
	  send_failures),
    FLEET("tapio_agent_queue_depth", "gauge", "Occurrences queued for the controller.",
	  queue_depth),
    FLEET("tapio_agent_queue_drops_total", "counter", "Occurrences dropped from the queue.",
	  queue_drops),
    FLEET("tapio_agent_spool_bytes", "gauge", "Bytes spooled to disk awaiting delivery.",
	  spool_bytes),
    FLEET("tapio_agent_spool_drops_total", "counter", "Occurrences dropped from the spool.",
	  spool_drops),
};

static void agent_labels(struct sbuf *b, const struct registry_agent *a)
{
	sbuf_add(b, "{node=\"", 7);
	prom_label(b, a->node ? a->node : "");
	sbuf_add(b, "\",agent=\"", 9);
	prom_label(b, a->id ? a->id : "");
	sbuf_add(b, "\"}", 2);
}

static void get_metrics(struct controller *c, struct api_response *rs)
{
	const struct ingest_stats *s = ingest_get_stats(&c->ingest);
	struct sbuf b = {0};
	struct store_stats st;

	store_stats(c->store, &st);
	prom_one(&b, "tapio_ingest_frames_total", "counter", "Frames received from agents.",
		 s->frames_in);
	prom_one(&b, "tapio_ingest_batches_total", "counter", "Batches accepted (not resends).",
		 s->batches);
	prom_one(&b, "tapio_ingest_occurrences_total", "counter", "Occurrences stored.",
		 s->occurrences);
	prom_one(&b, "tapio_ingest_bytes_total", "counter", "Bytes received from agents.",
		 s->bytes_in);
	prom_one(&b, "tapio_ingest_duplicates_total", "counter",
		 "Resent batches recognised and not stored again.", s->duplicates);
	prom_one(&b, "tapio_ingest_invalid_occurrences_total", "counter",
		 "Occurrences refused by validation.", s->invalid_occurrences);
	prom_head(&b, "tapio_ingest_errors_total", "counter",
		  "Error frames sent to agents, by code.");
	for (int i = 1; i < INGEST_ERROR_CODES; i++)
		sbuf_printf(&b, "tapio_ingest_errors_total{code=\"%s\"} %" PRIu64 "\n",
			    codec_error_code_name((Tapio__V1__ErrorCode)i), s->errors_sent[i]);
	prom_one(&b, "tapio_ingest_connections", "gauge", "Agent connections open now.",
		 s->current);
	prom_one(&b, "tapio_ingest_tls_handshakes_total", "counter",
		 "TLS handshakes completed with agents.", s->tls_handshakes);
	prom_head(&b, "tapio_ingest_tls_handshake_failures_total", "counter",
		  "TLS handshakes refused or broken, by reason (docs/security.md).");
	for (int i = 1; i < TLS_FAIL__COUNT; i++)
		sbuf_printf(
		    &b, "tapio_ingest_tls_handshake_failures_total{reason=\"%s\"} %" PRIu64 "\n",
		    tls_fail_name((enum tls_fail)i), s->tls_failures[i]);
	prom_one(&b, "tapio_ingest_backpressure", "gauge",
		 "1 while batch readers are paused for the store.", s->backpressure ? 1 : 0);
	{
		uint64_t lagging = 0;

		for (size_t i = 0; i < c->registry.n_agents; i++)
			lagging += config_dist_agent_lags(c->registry.agents[i]) ? 1 : 0;
		prom_one(&b, "tapio_config_generation", "gauge",
			 "Config generation of the profile being pushed (0: no --profile).",
			 c->config.generation);
		prom_one(&b, "tapio_config_reload_failures_total", "counter",
			 "Profile reloads refused (the running profile stayed).",
			 c->config.reload_failures);
		prom_one(&b, "tapio_config_agents_lagging", "gauge",
			 "Connected agents running another config than the one pushed to them.",
			 lagging);
	}
	prom_one(&b, "tapio_store_commits_total", "counter", "Group commits.", st.commits);
	prom_one(&b, "tapio_store_fsyncs_total", "counter", "fdatasync calls.", st.fsyncs);
	prom_one(&b, "tapio_store_rotations_total", "counter", "Segments sealed.", st.rotations);
	prom_one(&b, "tapio_store_bytes", "gauge", "Durable bytes of all segment files.", st.bytes);
	prom_one(&b, "tapio_store_segments", "gauge", "Segment files, including the active one.",
		 st.segments);
	prom_one(&b, "tapio_store_records", "gauge", "Durable records.", st.records);
	prom_one(&b, "tapio_store_pending_bytes", "gauge", "Appended bytes not committed yet.",
		 st.pending_bytes);
	prom_one(&b, "tapio_store_deleted_segments_total", "counter",
		 "Segments deleted by retention.", st.deleted_segments);
	prom_one(&b, "tapio_store_corrupt_reads_total", "counter",
		 "Records that failed their CRC during a scan.", st.corrupt_reads);
	prom_one(&b, "tapio_store_direct_io", "gauge",
		 "1 while segments are written with O_DIRECT, 0 through the page cache.",
		 st.direct_io);
	prom_one(&b, "tapio_agents_known", "gauge", "Agents known to this controller.",
		 registry_known(&c->registry));
	prom_one(&b, "tapio_agents_connected", "gauge", "Agents connected now.",
		 registry_connected(&c->registry));
	prom_head(&b, "tapio_agent_connected", "gauge", "1 while the agent is connected.");
	for (size_t i = 0; i < c->registry.n_agents; i++) {
		const struct registry_agent *a = c->registry.agents[i];

		sbuf_add(&b, "tapio_agent_connected", 21);
		agent_labels(&b, a);
		sbuf_printf(&b, " %d\n", a->connected ? 1 : 0);
	}
	for (size_t m = 0; m < sizeof(fleet) / sizeof(fleet[0]); m++) {
		prom_head(&b, fleet[m].name, fleet[m].type, fleet[m].help);
		for (size_t i = 0; i < c->registry.n_agents; i++) {
			const struct registry_agent *a = c->registry.agents[i];
			uint64_t v;

			if (!a->have_heartbeat)
				continue;
			memcpy(&v, (const char *)&a->counters + fleet[m].offset, sizeof(v));
			sbuf_add(&b, fleet[m].name, strlen(fleet[m].name));
			agent_labels(&b, a);
			sbuf_printf(&b, " %" PRIu64 "\n", v);
		}
	}
	reply_sbuf(rs, &b, CT_PROM);
}

/* ---- routing ------------------------------------------------------------------------------ */

static bool path_is(const struct api_request *rq, const char *p)
{
	return rq->path_len == strlen(p) && memcmp(rq->path, p, rq->path_len) == 0;
}

void api_handle(struct controller *c, const struct api_request *rq, struct api_response *rs)
{
	struct params_error perr;
	enum { R_STATUS, R_AGENTS, R_OCC, R_SUMMARY, R_METRICS, R_DASHBOARD, R_CONFIG } route;

	memset(rs, 0, sizeof(*rs));
	if (path_is(rq, "/v1/status"))
		route = R_STATUS;
	else if (path_is(rq, "/v1/agents"))
		route = R_AGENTS;
	else if (path_is(rq, "/v1/occurrences"))
		route = R_OCC;
	else if (path_is(rq, "/v1/summary"))
		route = R_SUMMARY;
	else if (path_is(rq, "/v1/config"))
		route = R_CONFIG;
	else if (path_is(rq, "/metrics"))
		route = R_METRICS;
	else if (path_is(rq, "/") || path_is(rq, "/index.html"))
		route = R_DASHBOARD;
	else {
		api_error(rs, 404, "NOT_FOUND", "no such path: %.*s",
			  (int)(rq->path_len > 200 ? 200 : rq->path_len), rq->path);
		return;
	}
	if (route != R_OCC && route != R_SUMMARY &&
	    params_parse_none(rq->query, rq->query_len, &perr) < 0) {
		reply_params_error(rs, &perr);
		return;
	}
	if (route == R_DASHBOARD) {
		rs->body = malloc(dashboard_html_len + 1);
		if (!rs->body) {
			api_error(rs, 500, "INTERNAL", "out of memory");
			return;
		}
		memcpy(rs->body, dashboard_html, dashboard_html_len + 1);
		rs->len = dashboard_html_len;
		rs->status = 200;
		rs->content_type = CT_HTML;
		return;
	}
	if (!c->store || !c->aggregate) {
		api_error(rs, 503, "UNAVAILABLE", "the store is not open");
		return;
	}
	switch (route) {
	case R_STATUS:
		get_status(c, rq, rs);
		break;
	case R_AGENTS:
		get_agents(c, rs);
		break;
	case R_OCC:
		get_occurrences(c, rq, rs);
		break;
	case R_SUMMARY:
		get_summary(c, rq, rs);
		break;
	case R_METRICS:
		get_metrics(c, rs);
		break;
	case R_CONFIG:
		reply_json(rs, config_dist_json(&c->config, clock_wall_ns()));
		break;
	case R_DASHBOARD:
		break;
	}
}
