/*
 * What checking an EventBatch on the wire costs the controller's loop thread (common/occ_wire.c,
 * docs/controller.md "EventBatch fast path"), per occurrence, beside the generic path it
 * replaces: one realistic batch of N occurrences (tools/occgen, one agent: one cluster and
 * node, every type), packed by protobuf-c as the agent packs it, and
 *   check        occ_wire_batch_scan + occ_wire_iter_check, what ingest runs on every batch;
 *   check-ctx9   the same occurrences with their Context after the data member (the order
 *                tapio-loadgen sent until 2026-11-26: taken, through the slower general loop);
 *   generic      protobuf-c unpack of the frame + occ_from_proto + occurrence_validate for
 *                each occurrence (the path for frames the check declines; the baseline).
 * ROUNDS rounds, each timing every variant once (alternated, so host noise hits all alike);
 * prints the best and the median round of each in ns per occurrence.
 * usage: tapio-wirebench [N [ROUNDS]]   (512, 21)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/codec.h"
#include "common/occ_proto.h"
#include "common/occ_wire.h"
#include "common/occurrence.h"
#include "tapio.pb-c.h"
#include "tests/wire_writer.h"
#include "tools/occgen.h"

enum { V_CHECK, V_CHECK_CTX9, V_GENERIC, V_COUNT };
static const char *const names[V_COUNT] = {"check", "check-ctx9", "generic"};

/* Frame{event_batch{session_id, sequence, occurrences…}} of the n occurrences in frame. */
static void build(struct wbuf *frame, const struct tapio_occurrence *occ, size_t n, bool ctx9)
{
	struct wbuf body = {0}, one = {0};
	uint8_t buf[4096];

	w_field_varint(&body, 1, 0x1234567890abcdefull);
	w_field_varint(&body, 2, 77);
	for (size_t i = 0; i < n; i++) {
		Tapio__V1__Occurrence msg;
		struct occ_proto_scratch scratch;

		occ_to_proto(&occ[i], &msg, &scratch);
		one.n = 0;
		if (ctx9) { /* packed without it, then the Context as its own field 9 */
			Tapio__V1__Context *ctx = msg.context;
			uint8_t cbuf[512];

			msg.context = NULL;
			w_raw(&one, buf, tapio__v1__occurrence__pack(&msg, buf));
			w_field_bytes(&one, 9, cbuf, tapio__v1__context__pack(ctx, cbuf));
		} else {
			w_raw(&one, buf, tapio__v1__occurrence__pack(&msg, buf));
		}
		w_field_bytes(&body, 3, one.b, one.n);
	}
	frame->n = 0;
	w_field_bytes(frame, 4, body.b, body.n);
	w_free(&body);
	w_free(&one);
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* One pass over the frame in variant v; returns the occurrences found valid. */
static size_t run(int v, const struct wbuf *f)
{
	size_t valid = 0;

	if (v == V_GENERIC) {
		Tapio__V1__Frame *fr = tapio__v1__frame__unpack(NULL, f->n, f->b);
		struct tapio_occurrence occ;

		if (!fr || !fr->event_batch)
			abort();
		for (size_t i = 0; i < fr->event_batch->n_occurrences; i++)
			valid +=
			    occ_from_proto(fr->event_batch->occurrences[i], &occ, NULL, 0) == 0 &&
			    occurrence_validate(&occ, NULL, 0) == 0;
		tapio__v1__frame__free_unpacked(fr, NULL);
		return valid;
	}
	struct occ_wire_batch b;
	struct occ_wire_iter it;
	struct occ_wire_summary s;
	const uint8_t *w;
	size_t wl;
	int r;

	if (occ_wire_batch_scan(f->b, f->n, &b) < 0)
		abort();
	occ_wire_iter_init(&it, &b);
	while ((r = occ_wire_iter_check(&it, &b, codec_unpack_budget(f->n), &s, &w, &wl)) == 1)
		valid += s.valid;
	if (r < 0)
		abort(); /* the check declined a canonical batch */
	return valid;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 512;
	int rounds = argc > 2 ? atoi(argv[2]) : 21;
	struct tapio_occurrence *occ = calloc(n ? n : 1, sizeof(*occ));
	struct wbuf frame[V_COUNT] = {{0}};
	double *ns[V_COUNT];
	struct occgen g;

	if (!occ || n == 0 || rounds < 1) {
		fprintf(stderr, "usage: tapio-wirebench [N [ROUNDS]]\n");
		return 2;
	}
	occgen_seed(&g, 7);
	for (size_t i = 0; i < n; i++) {
		occgen_fill(&g, &occ[i], (uint32_t)i, "prod-eu");
		snprintf(occ[i].node, sizeof(occ[i].node), "node-0042");
	}
	build(&frame[V_CHECK], occ, n, false);
	build(&frame[V_CHECK_CTX9], occ, n, true);
	frame[V_GENERIC] = frame[V_CHECK];
	for (int v = 0; v < V_COUNT; v++)
		if (!(ns[v] = calloc((size_t)rounds, sizeof(double))))
			return 1;
	/* each round: every variant for ≈ 20 ms */
	for (int r = 0; r < rounds; r++) {
		for (int v = 0; v < V_COUNT; v++) {
			size_t reps = v == V_GENERIC ? 2000000 / (n * 8) + 1 : 2000000 / n + 1;
			double t0 = now();

			for (size_t k = 0; k < reps; k++)
				if (run(v, &frame[v]) != n)
					abort(); /* every occurrence is valid */
			ns[v][r] = (now() - t0) / (double)(reps * n) * 1e9;
		}
	}
	printf("wire check of a %zu-occurrence batch (%.1f B per occurrence), ns per occurrence, "
	       "%d rounds:\n",
	       n, (double)frame[V_CHECK].n / (double)n, rounds);
	for (int v = 0; v < V_COUNT; v++) {
		qsort(ns[v], (size_t)rounds, sizeof(double), cmp_double);
		printf("  %-10s best %6.1f  median %6.1f\n", names[v], ns[v][0], ns[v][rounds / 2]);
	}
	for (int v = 0; v < V_COUNT; v++)
		free(ns[v]);
	free(frame[V_CHECK].b);
	free(frame[V_CHECK_CTX9].b);
	free(occ);
	return 0;
}
