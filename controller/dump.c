/* tapio-controller --dump: print what a data directory holds, without starting a server. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/occ_json.h"
#include "common/occ_proto.h"
#include "controller/controller.h"

struct dump_ctx {
	const struct dump_options *o;
	struct store *s;
	uint64_t printed, undecodable;
	uint64_t by_type[TAPIO_OCC__COUNT];
	char json[TAPIO_OCC_JSON_MAX];
};

static void fmt_time(uint64_t ns, char *buf, size_t len)
{
	if (ns == 0 || clock_format_rfc3339(ns, buf, len) < 0)
		snprintf(buf, len, "-");
}

static int on_record(void *ctx, const struct store_record_meta *m, const void *data, size_t len,
		     struct store_pos pos)
{
	struct dump_ctx *d = ctx;
	Tapio__V1__Occurrence *msg = tapio__v1__occurrence__unpack(NULL, len, data);
	struct tapio_occurrence occ;
	char err[160], ts[40];
	ssize_t n;

	if (!msg || occ_from_proto(msg, &occ, err, sizeof(err)) < 0) {
		d->undecodable++;
		fprintf(stderr, "segment %" PRIu64 " offset %" PRIu64 ": undecodable payload\n",
			pos.segment_id, pos.offset);
		if (msg)
			tapio__v1__occurrence__free_unpacked(msg, NULL);
		return 0;
	}
	tapio__v1__occurrence__free_unpacked(msg, NULL);
	d->printed++;
	if (m->type < TAPIO_OCC__COUNT)
		d->by_type[m->type]++;
	if (d->o->json) {
		n = occ_json_write(&occ, d->json, sizeof(d->json));
		if (n < 0) {
			d->undecodable++;
			return 0;
		}
		fwrite(d->json, 1, (size_t)n, stdout);
		fputc('\n', stdout);
		return 0;
	}
	fmt_time(occ.timestamp_ns, ts, sizeof(ts));
	printf("%-30s  %-36s  %-8s  %-20s  %10" PRIu64 ":%-6" PRIu64 "  %s\n", ts,
	       tapio_occ_type_name(occ.type), tapio_severity_name(occ.severity), occ.node,
	       m->session_id, m->sequence, occ.id);
	return 0;
}

static void summary(struct dump_ctx *d, FILE *out)
{
	struct store_stats st;
	uint64_t ids[4096], by_type[TAPIO_OCC__COUNT] = {0};
	size_t n = store_segment_ids(d->s, ids, 4096);
	char a[40], b[40];

	if (n > 4096)
		n = 4096;
	store_stats(d->s, &st);
	for (size_t i = 0; i < n; i++) {
		struct seg_index idx;

		if (store_segment_index(d->s, ids[i], &idx) < 0)
			continue;
		for (int t = 0; t < TAPIO_OCC__COUNT; t++)
			by_type[t] += idx.by_type[t];
		seg_index_fini(&idx);
	}
	fmt_time(st.oldest_ts_ns, a, sizeof(a));
	fmt_time(st.newest_ts_ns, b, sizeof(b));
	fprintf(out, "summary: %s\n", d->o->dir);
	fprintf(out, "  segments  %" PRIu64 " (%" PRIu64 " bytes)\n", st.segments, st.bytes);
	fprintf(out, "  records   %" PRIu64 " (%" PRIu64 " shown", st.records, d->printed);
	if (d->undecodable)
		fprintf(out, ", %" PRIu64 " undecodable", d->undecodable);
	fprintf(out, ")\n  range     %s .. %s\n", a, b);
	fprintf(out, "  nodes     %u\n", store_node_count(d->s));
	if (st.recovery_truncations)
		fprintf(out, "  recovery  %" PRIu64 " torn tail(s) truncated (%" PRIu64 " bytes)\n",
			st.recovery_truncations, st.recovery_truncated_bytes);
	fprintf(out, "  by type:\n");
	for (int t = 0; t < TAPIO_OCC__COUNT; t++)
		if (by_type[t])
			fprintf(out, "    %-36s %" PRIu64 "\n", tapio_occ_type_name(t), by_type[t]);
}

int controller_dump(const struct dump_options *o)
{
	struct store_options so;
	struct store_query q;
	struct dump_ctx *d;
	long r;
	int err;

	store_options_defaults(&so);
	so.dir = o->dir;
	so.fsync = STORE_FSYNC_NEVER;
	d = calloc(1, sizeof(*d));
	if (!d) {
		fprintf(stderr, "tapio-controller: --dump: out of memory\n");
		return 1;
	}
	d->o = o;
	err = store_open(&so, &d->s);
	if (err < 0) {
		fprintf(stderr, "tapio-controller: --dump %s: %s\n", o->dir,
			err == -EBUSY ? "locked by a running controller (stop it, or dump a copy)"
				      : strerror(-err));
		free(d);
		return 1;
	}
	store_query_init(&q);
	q.since_ns = o->since_ns;
	if (o->type >= 0)
		q.type_mask = 1u << o->type;
	q.limit = o->limit;
	if (!o->json)
		printf("%-30s  %-36s  %-8s  %-20s  %17s  %s\n", "TIME", "TYPE", "SEVERITY", "NODE",
		       "SESSION:SEQ", "ID");
	r = store_scan(d->s, &q, on_record, d);
	fflush(stdout);
	if (r < 0) {
		fprintf(stderr, "tapio-controller: --dump %s: scan: %s\n", o->dir,
			strerror((int)-r));
		store_close(d->s);
		free(d);
		return 1;
	}
	summary(d, o->json ? stderr : stdout);
	store_close(d->s);
	free(d);
	return 0;
}
