/*
 * libFuzzer harness for the wire decoder (common/codec) and the conversions a receiver runs on
 * decoded frames (common/occ_proto). Input layout: byte 0 picks max_frame, byte 1 seeds the
 * read-boundary pattern, the rest is the byte stream as a peer would send it.
 *
 * Built with -DFUZZ_CODEC_SEEDS it is instead a small program that writes a seed corpus of
 * valid streams (one file per message type, plus a multi-frame stream) into argv[1].
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/occ_proto.h"

#ifndef FUZZ_CODEC_SEEDS

/* A decoded frame must re-encode to bytes that decode to the same bytes again. */
static void check_reencode(const Tapio__V1__Frame *f)
{
	struct codec_buf once, twice;
	struct codec_decoder d;
	Tapio__V1__Frame *g;

	codec_buf_init(&once);
	codec_buf_init(&twice);
	if (codec_buf_append_frame(&once, f) <= 0)
		goto out; /* an empty Frame: nothing to re-encode */
	codec_decoder_init(&d, CODEC_MAX_FRAME_LIMIT);
	if (codec_decoder_feed(&d, once.data, once.len) != (ssize_t)once.len ||
	    codec_decoder_next(&d, &g) != 1)
		__builtin_trap();
	if (codec_buf_append_frame(&twice, g) <= 0 || twice.len != once.len ||
	    memcmp(twice.data, once.data, once.len) != 0)
		__builtin_trap();
	tapio__v1__frame__free_unpacked(g, NULL);
	codec_decoder_fini(&d);
out:
	codec_buf_fini(&once);
	codec_buf_fini(&twice);
}

/* What a receiver does with each frame kind. */
static void consume(const Tapio__V1__Frame *f)
{
	char err[128];

	codec_frame_kind(f);
	switch (f->msg_case) {
	case TAPIO__V1__FRAME__MSG_HELLO:
		codec_check_hello(f->hello);
		break;
	case TAPIO__V1__FRAME__MSG_WELCOME:
		codec_check_welcome(f->welcome);
		break;
	case TAPIO__V1__FRAME__MSG_EVENT_BATCH:
		for (size_t i = 0; i < f->event_batch->n_occurrences; i++) {
			struct tapio_occurrence occ;

			occ_from_proto(f->event_batch->occurrences[i], &occ, err, sizeof(err));
		}
		break;
	case TAPIO__V1__FRAME__MSG_CONFIG_PUSH: {
		struct tapio_settings s;
		struct tapio_config c;

		if (f->config_push->settings)
			settings_from_proto(f->config_push->settings, &s, err, sizeof(err));
		config_from_proto(f->config_push, &c, err, sizeof(err));
		break;
	}
	case TAPIO__V1__FRAME__MSG_ERROR:
		codec_error_code_name(f->error->code);
		break;
	default:
		break;
	}
	check_reencode(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct codec_decoder d;
	uint32_t rng;
	size_t off = 2;

	if (size < 2)
		return 0;
	/* 16 B .. 16 KiB: small maxima exercise the length checks, large ones the parser */
	codec_decoder_init(&d, 16u << (data[0] % 11));
	rng = data[1] | 1u;
	while (off < size) {
		size_t chunk, left = size - off;
		Tapio__V1__Frame *f;
		ssize_t n;
		int rc;

		rng = rng * 1103515245u + 12345u;
		chunk = data[1] & 0x80 ? 1 + (rng >> 16) % 97 : left;
		if (chunk > left)
			chunk = left;
		n = codec_decoder_feed(&d, data + off, chunk);
		if (n < 0)
			break;
		off += (size_t)n;
		while ((rc = codec_decoder_next(&d, &f)) == 1) {
			consume(f);
			tapio__v1__frame__free_unpacked(f, NULL);
		}
		if (rc < 0)
			break;
		if (d.cap > (size_t)d.max_frame + CODEC_HEADER_LEN)
			__builtin_trap();
	}
	codec_decoder_fini(&d);
	return 0;
}

#else /* FUZZ_CODEC_SEEDS */

static int write_seed(const char *dir, const char *name, uint8_t mode, const struct codec_buf *b)
{
	char path[4096];
	uint8_t prefix[2] = {10, mode}; /* max_frame 16 KiB; mode picks the chunking */
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "wb");
	if (!fp) {
		perror(path);
		return -1;
	}
	fwrite(prefix, 1, sizeof(prefix), fp);
	fwrite(b->data, 1, b->len, fp);
	return fclose(fp);
}

int main(int argc, char **argv)
{
	Tapio__V1__Hello hello = TAPIO__V1__HELLO__INIT;
	Tapio__V1__Welcome welcome = TAPIO__V1__WELCOME__INIT;
	Tapio__V1__Counters counters = TAPIO__V1__COUNTERS__INIT;
	Tapio__V1__ObserverState obs = TAPIO__V1__OBSERVER_STATE__INIT, *obs_ptr = &obs;
	Tapio__V1__Heartbeat hb = TAPIO__V1__HEARTBEAT__INIT;
	Tapio__V1__EventBatch batch = TAPIO__V1__EVENT_BATCH__INIT;
	Tapio__V1__Ack ack = TAPIO__V1__ACK__INIT;
	Tapio__V1__Settings settings;
	Tapio__V1__ConfigPush push = TAPIO__V1__CONFIG_PUSH__INIT;
	Tapio__V1__ConfigApplied applied = TAPIO__V1__CONFIG_APPLIED__INIT;
	Tapio__V1__ConfigRejected rejected = TAPIO__V1__CONFIG_REJECTED__INIT;
	Tapio__V1__Error error = TAPIO__V1__ERROR__INIT;
	Tapio__V1__Occurrence msgs[TAPIO_OCC__COUNT], *ptrs[TAPIO_OCC__COUNT];
	struct occ_proto_scratch scratch[TAPIO_OCC__COUNT];
	struct tapio_occurrence occs[TAPIO_OCC__COUNT];
	struct tapio_settings s;
	struct tapio_config cfg;
	Tapio__V1__Frame frames[9];
	struct codec_buf all;
	int rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	hello.wire_version = CODEC_WIRE_VERSION;
	hello.agent_id = "agent-1";
	hello.node = "node-a";
	hello.session_id = 99;
	welcome.wire_version = CODEC_WIRE_VERSION;
	welcome.session_accepted = 1;
	welcome.heartbeat_interval_ms = 5000;
	counters.events = 10;
	obs.name = "network";
	obs.state = TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_RUNNING;
	hb.counters = &counters;
	hb.n_observers = 1;
	hb.observers = &obs_ptr;
	memset(occs, 0, sizeof(occs));
	for (int t = 0; t < TAPIO_OCC__COUNT; t++) {
		occs[t].type = (enum tapio_occ_type)t;
		occs[t].severity = tapio_catalogue[t].severity;
		occs[t].outcome = tapio_catalogue[t].outcome;
		memcpy(occs[t].id, "01JDQ4Z8X9K3M5N7P9R1T3V5W7", TAPIO_ULID_LEN);
		strcpy(occs[t].node, "node-a");
		occs[t].timestamp_ns = 1764077000000000000ull;
		occ_to_proto(&occs[t], &msgs[t], &scratch[t]);
		ptrs[t] = &msgs[t];
	}
	batch.session_id = 99;
	batch.sequence = 1;
	batch.n_occurrences = TAPIO_OCC__COUNT;
	batch.occurrences = ptrs;
	ack.session_id = 99;
	ack.durable_sequence = 1;
	memset(&s, 0, sizeof(s));
	s.network_enabled = 1;
	s.n_ignored_exit_codes = 1;
	s.ignored_exit_codes[0] = 143;
	settings_to_proto(&s, &settings);
	memset(&cfg, 0, sizeof(cfg));
	cfg.abi_version = TAPIO_ABI_VERSION;
	cfg.generation = 3;
	push.generation = 3;
	push.hash = "sha256:00";
	push.config.data = (uint8_t *)&cfg;
	push.config.len = sizeof(cfg);
	push.settings = &settings;
	applied.generation = 3;
	rejected.generation = 4;
	rejected.reason = "bad";
	error.code = TAPIO__V1__ERROR_CODE__ERROR_CODE_SEQUENCE;
	error.message = "gap";

	for (int i = 0; i < 9; i++)
		tapio__v1__frame__init(&frames[i]);
	frames[0].msg_case = TAPIO__V1__FRAME__MSG_HELLO;
	frames[0].hello = &hello;
	frames[1].msg_case = TAPIO__V1__FRAME__MSG_WELCOME;
	frames[1].welcome = &welcome;
	frames[2].msg_case = TAPIO__V1__FRAME__MSG_HEARTBEAT;
	frames[2].heartbeat = &hb;
	frames[3].msg_case = TAPIO__V1__FRAME__MSG_EVENT_BATCH;
	frames[3].event_batch = &batch;
	frames[4].msg_case = TAPIO__V1__FRAME__MSG_ACK;
	frames[4].ack = &ack;
	frames[5].msg_case = TAPIO__V1__FRAME__MSG_CONFIG_PUSH;
	frames[5].config_push = &push;
	frames[6].msg_case = TAPIO__V1__FRAME__MSG_CONFIG_APPLIED;
	frames[6].config_applied = &applied;
	frames[7].msg_case = TAPIO__V1__FRAME__MSG_CONFIG_REJECTED;
	frames[7].config_rejected = &rejected;
	frames[8].msg_case = TAPIO__V1__FRAME__MSG_ERROR;
	frames[8].error = &error;

	codec_buf_init(&all);
	for (int i = 0; i < 9 && rc == 0; i++) {
		struct codec_buf one;
		char name[32];

		codec_buf_init(&one);
		if (codec_buf_append_frame(&one, &frames[i]) <= 0 ||
		    codec_buf_append_frame(&all, &frames[i]) <= 0)
			rc = -1;
		snprintf(name, sizeof(name), "seed-%s", codec_frame_kind(&frames[i]));
		if (rc == 0)
			rc = write_seed(argv[1], name, 0x00, &one);
		codec_buf_fini(&one);
	}
	if (rc == 0)
		rc = write_seed(argv[1], "seed-stream-chunked", 0x81, &all);
	if (rc == 0)
		rc = write_seed(argv[1], "seed-stream-whole", 0x01, &all);
	codec_buf_fini(&all);
	return rc ? 1 : 0;
}

#endif
