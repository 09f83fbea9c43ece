/* Fast path vs generic path on one frame payload (see occ_wire_diff.h). */
#include "occ_wire_diff.h"

#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/occ_proto.h"
#include "common/occ_wire.h"

/* The generic path: the codec decoder, as the controller runs it, with the same budget. */
static int generic_decode(struct codec_decoder *d, const uint8_t *payload, size_t len,
			  Tapio__V1__Frame **f)
{
	uint8_t *frame = malloc(len + CODEC_HEADER_LEN);
	size_t fed = 0;
	int rc;

	*f = NULL;
	codec_decoder_init(d, (uint32_t)len);
	if (!frame)
		return CODEC_ERR_NOMEM;
	frame[0] = (uint8_t)(len >> 24);
	frame[1] = (uint8_t)(len >> 16);
	frame[2] = (uint8_t)(len >> 8);
	frame[3] = (uint8_t)len;
	memcpy(frame + CODEC_HEADER_LEN, payload, len);
	while (fed < len + CODEC_HEADER_LEN) {
		ssize_t n = codec_decoder_feed(d, frame + fed, len + CODEC_HEADER_LEN - fed);

		if (n <= 0)
			break;
		fed += (size_t)n;
	}
	rc = codec_decoder_next(d, f);
	free(frame);
	return rc;
}

/* Occurrence i both ways; NULL when they agree. */
static const char *compare_one(const Tapio__V1__Occurrence *msg,
			       const struct tapio_occurrence *fast)
{
	struct tapio_occurrence *occ = malloc(sizeof(*occ));
	char err_fast[160], err_gen[160];
	const char *why = NULL;

	if (!occ)
		return "out of memory";
	memset(occ, 0, sizeof(*occ)); /* as occ_from_proto zeroes it: padding included */
	if (occ_from_proto(msg, occ, err_gen, sizeof(err_gen)) < 0)
		why = "fast path accepted an occurrence occ_from_proto refuses";
	else if (memcmp(occ, fast, sizeof(*occ)) != 0)
		why = "occurrence differs from occ_from_proto's";
	else if ((occurrence_validate(occ, err_gen, sizeof(err_gen)) == 0) !=
		 (occurrence_validate(fast, err_fast, sizeof(err_fast)) == 0))
		why = "occurrence_validate verdicts differ";
	free(occ);
	return why;
}

/*
 * The check mode on the same frame: it must take the frame exactly when the decoder did
 * (took), with the same slices and accounting, and summarise each occurrence as the decoded
 * struct says (occ[i], validated). NULL when it does.
 */
static const char *compare_check(const uint8_t *payload, size_t len, bool took,
				 const struct occ_wire_batch *db,
				 const struct tapio_occurrence *occ, const uint8_t *const *wire,
				 const size_t *wire_len)
{
	struct occ_wire_batch b;
	struct occ_wire_iter it;
	struct occ_wire_summary s;
	const uint8_t *w;
	size_t wl, i = 0;
	int r;

	if (occ_wire_batch_scan(payload, len, &b) < 0)
		return "check mode: the batch no longer scans";
	occ_wire_iter_init(&it, &b);
	while ((r = occ_wire_iter_check(&it, &b, codec_unpack_budget(len), &s, &w, &wl)) == 1) {
		const struct tapio_occurrence *o = &occ[i];
		size_t node_len = strlen(o->node);

		if (!took)
			continue; /* it may get further than the decoder did, not take more */
		if (i >= db->n || w != wire[i] || wl != wire_len[i])
			return "check mode: occurrence slice differs";
		if (s.valid != (occurrence_validate(o, NULL, 0) == 0))
			return "check mode: validity differs from occurrence_validate's";
		if (s.timestamp_ns != o->timestamp_ns || s.type != (uint8_t)o->type ||
		    s.severity != (uint8_t)o->severity)
			return "check mode: timestamp, type or severity differs";
		if (s.node_len != node_len || (node_len && memcmp(s.node, o->node, node_len)))
			return "check mode: node differs";
		i++;
	}
	if ((r == 0) != took)
		return took ? "check mode declined a frame the decoder takes"
			    : "check mode took a frame the decoder declines";
	if (took && (i != db->n || b.unpack_bytes != db->unpack_bytes))
		return "check mode: count or unpack accounting differs";
	return NULL;
}

const char *occ_wire_diff(const uint8_t *payload, size_t len, bool *fast_took)
{
	struct tapio_occurrence *occ = NULL;
	const uint8_t **wire = NULL, **gwire = NULL;
	size_t *wire_len = NULL, *gwire_len = NULL;
	struct codec_decoder d;
	struct occ_wire_batch b;
	Tapio__V1__Frame *f = NULL;
	const char *why = NULL;
	size_t n;
	int rc;

	*fast_took = false;
	if (occ_wire_batch_scan(payload, len, &b) < 0)
		return NULL;
	n = b.n ? b.n : 1;
	occ = malloc(n * sizeof(*occ));
	wire = malloc(n * sizeof(*wire));
	gwire = malloc(n * sizeof(*gwire));
	wire_len = malloc(n * sizeof(*wire_len));
	gwire_len = malloc(n * sizeof(*gwire_len));
	if (!occ || !wire || !gwire || !wire_len || !gwire_len) {
		why = "out of memory";
		goto out;
	}
	if (occ_wire_batch_decode(&b, codec_unpack_budget(len), occ, wire, wire_len) < 0) {
		why = compare_check(payload, len, false, &b, occ, wire, wire_len);
		goto out; /* declined: the generic path decides alone */
	}
	*fast_took = true;
	why = compare_check(payload, len, true, &b, occ, wire, wire_len);

	rc = generic_decode(&d, payload, len, &f);
	if (why) {
		/* reported as it is */
	} else if (rc != 1) {
		why = "fast path accepted a frame the generic decoder refuses";
	} else if (f->msg_case != TAPIO__V1__FRAME__MSG_EVENT_BATCH) {
		why = "generic decoder found no event batch";
	} else if (d.last_unknown_fields != 0) {
		why = "generic decoder dropped unknown fields";
	} else if (d.last_unpack_bytes != b.unpack_bytes) {
		why = "unpack memory accounting differs";
	} else if (f->event_batch->session_id != b.session_id ||
		   f->event_batch->sequence != b.sequence) {
		why = "session_id or sequence differs";
	} else if (f->event_batch->n_occurrences != b.n) {
		why = "occurrence count differs";
	} else if (codec_batch_occurrences(payload, len, gwire, gwire_len, n) != (ssize_t)b.n) {
		why = "codec_batch_occurrences does not slice the batch";
	}
	for (size_t i = 0; !why && i < b.n; i++) {
		if (wire[i] != gwire[i] || wire_len[i] != gwire_len[i])
			why = "occurrence slice differs";
		else
			why = compare_one(f->event_batch->occurrences[i], &occ[i]);
	}
	tapio__v1__frame__free_unpacked(f, NULL);
	codec_decoder_fini(&d);
out:
	free(occ);
	free(wire);
	free(gwire);
	free(wire_len);
	free(gwire_len);
	return why;
}
