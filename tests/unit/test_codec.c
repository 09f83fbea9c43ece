/* Contract of common/codec: framing, incremental decoding, hostile input, handshake checks. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"

#define KINDS 9

/* One fully populated frame of each message type; everything lives in this struct. */
struct sample {
	Tapio__V1__Frame frame;
	union {
		Tapio__V1__Hello hello;
		Tapio__V1__Welcome welcome;
		Tapio__V1__Heartbeat heartbeat;
		Tapio__V1__EventBatch batch;
		Tapio__V1__Ack ack;
		Tapio__V1__ConfigPush push;
		Tapio__V1__ConfigApplied applied;
		Tapio__V1__ConfigRejected rejected;
		Tapio__V1__Error error;
	} m;
	Tapio__V1__Resume resume;
	Tapio__V1__Label labels[2];
	Tapio__V1__Label *label_ptrs[2];
	char *caps[2];
	Tapio__V1__Counters counters;
	Tapio__V1__TypeCount tc[2];
	Tapio__V1__TypeCount *tc_ptrs[2];
	Tapio__V1__ObserverState obs[2];
	Tapio__V1__ObserverState *obs_ptrs[2];
	char *degraded[1];
	Tapio__V1__Occurrence occ[3];
	Tapio__V1__Occurrence *occ_ptrs[3];
	Tapio__V1__NodeData node;
	Tapio__V1__Settings settings;
	int32_t codes[2];
	uint8_t config[112];
	char big[6000];
};

static void sample_fill(struct sample *s, int kind, uint64_t seq)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;

	memset(s, 0, sizeof(*s));
	s->frame = f;
	switch (kind) {
	case 0:
		tapio__v1__hello__init(&s->m.hello);
		s->m.hello.wire_version = CODEC_WIRE_VERSION;
		s->m.hello.agent_id = "agent-7";
		s->m.hello.node = "node-a";
		s->m.hello.cluster = "prod";
		s->m.hello.version = "0.1.0";
		s->m.hello.kernel = "6.1.0-18-amd64";
		s->m.hello.arch = "x86_64";
		s->caps[0] = "observer.network";
		s->caps[1] = "config.push";
		s->m.hello.n_capabilities = 2;
		s->m.hello.capabilities = s->caps;
		for (int i = 0; i < 2; i++) {
			tapio__v1__label__init(&s->labels[i]);
			s->labels[i].key = i ? "zone" : "rack";
			s->labels[i].value = i ? "eu-1" : "r12";
			s->label_ptrs[i] = &s->labels[i];
		}
		s->m.hello.n_labels = 2;
		s->m.hello.labels = s->label_ptrs;
		s->m.hello.session_id = 0xdeadbeefcafe0000ull + seq;
		tapio__v1__resume__init(&s->resume);
		s->resume.oldest_unacked_sequence = 4;
		s->resume.next_sequence = 9;
		s->m.hello.resume = &s->resume;
		s->m.hello.token = "s3cret";
		s->m.hello.config_generation = 3;
		s->m.hello.config_hash = "sha256:00ff";
		s->m.hello.max_frame_bytes = 1 << 20;
		s->frame.msg_case = TAPIO__V1__FRAME__MSG_HELLO;
		s->frame.hello = &s->m.hello;
		break;
	case 1:
		tapio__v1__welcome__init(&s->m.welcome);
		s->m.welcome.controller_id = "ctl-1";
		s->m.welcome.wire_version = CODEC_WIRE_VERSION;
		s->m.welcome.session_accepted = true;
		s->m.welcome.heartbeat_interval_ms = 5000;
		s->m.welcome.session_id = 77 + seq;
		s->m.welcome.session_resumed = true;
		s->m.welcome.last_acked_sequence = 41;
		s->m.welcome.max_frame_bytes = 4 << 20;
		s->frame.msg_case = TAPIO__V1__FRAME__MSG_WELCOME;
		s->frame.welcome = &s->m.welcome;
		break;
	case 2:
		tapio__v1__heartbeat__init(&s->m.heartbeat);
		tapio__v1__counters__init(&s->counters);
		s->counters.events = 1000 + seq;
		for (int i = 0; i < 2; i++) {
			tapio__v1__type_count__init(&s->tc[i]);
			s->tc[i].type = (Tapio__V1__OccurrenceType)(i + 1);
			s->tc[i].count = 10u + (unsigned)i;
			s->tc_ptrs[i] = &s->tc[i];
			tapio__v1__observer_state__init(&s->obs[i]);
			s->obs[i].name = i ? "node" : "network";
			s->obs[i].state =
			    i ? TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_UNSUPPORTED
			      : TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_RUNNING;
			s->obs[i].reason = i ? "no hardware PMU" : "";
			s->obs_ptrs[i] = &s->obs[i];
		}
		s->counters.n_anomalies = 2;
		s->counters.anomalies = s->tc_ptrs;
		s->counters.lost = 1;
		s->counters.malformed = 2;
		s->counters.correlation_drops = 3;
		s->counters.sink_writes = 4;
		s->counters.sink_drops = 5;
		s->counters.send_failures = 6;
		s->counters.queue_depth = 7;
		s->counters.queue_drops = 8;
		s->counters.spool_bytes = 9;
		s->counters.spool_drops = 10;
		s->m.heartbeat.timestamp_ns = 1764077000123456789ull;
		s->m.heartbeat.counters = &s->counters;
		s->m.heartbeat.n_observers = 2;
		s->m.heartbeat.observers = s->obs_ptrs;
		s->m.heartbeat.config_generation = 12;
		s->m.heartbeat.config_hash = "sha256:abcd";
		s->degraded[0] = "node: no hardware PMU";
		s->m.heartbeat.n_degraded_reasons = 1;
		s->m.heartbeat.degraded_reasons = s->degraded;
		s->m.heartbeat.uptime_ms = 99;
		s->frame.msg_case = TAPIO__V1__FRAME__MSG_HEARTBEAT;
		s->frame.heartbeat = &s->m.heartbeat;
		break;
	case 3:
		tapio__v1__event_batch__init(&s->m.batch);
		s->m.batch.session_id = 5;
		s->m.batch.sequence = seq + 1;
		tapio__v1__node_data__init(&s->node);
		s->node.cpu = 3;
		s->node.ipc = 0.42;
		memset(s->big, 'x', sizeof(s->big) - 1); /* pushes the frame past the base buffer */
		for (int i = 0; i < 3; i++) {
			tapio__v1__occurrence__init(&s->occ[i]);
			s->occ[i].id = "01JDQ4Z8X9K3M5N7P9R1T3V5W7";
			s->occ[i].timestamp_ns = 1764077000000000000ull + (uint64_t)i;
			s->occ[i].type = TAPIO__V1__OCCURRENCE_TYPE__OCCURRENCE_TYPE_CPU_STALL;
			s->occ[i].severity = TAPIO__V1__SEVERITY__SEVERITY_CRITICAL;
			s->occ[i].outcome = TAPIO__V1__OUTCOME__OUTCOME_IN_PROGRESS;
			s->occ[i].source = i == 2 ? s->big : "tapio";
			s->occ[i].data_case = TAPIO__V1__OCCURRENCE__DATA_NODE;
			s->occ[i].node = &s->node;
			s->occ_ptrs[i] = &s->occ[i];
		}
		s->m.batch.n_occurrences = 3;
		s->m.batch.occurrences = s->occ_ptrs;
		s->frame.msg_case = TAPIO__V1__FRAME__MSG_EVENT_BATCH;
		s->frame.event_batch = &s->m.batch;
		break;
	case 4:
		tapio__v1__ack__init(&s->m.ack);
		s->m.ack.session_id = 5;
		s->m.ack.durable_sequence = 1000 + seq;
		s->frame.msg_case = TAPIO__V1__FRAME__MSG_ACK;
		s->frame.ack = &s->m.ack;
		break;
	case 5:
		tapio__v1__config_push__init(&s->m.push);
		tapio__v1__settings__init(&s->settings);
		s->settings.network_enabled = true;
		s->settings.rtt_spike_ratio = 2.5;
		s->codes[0] = 143;
		s->codes[1] = -1;
		s->settings.n_ignored_exit_codes = 2;
		s->settings.ignored_exit_codes = s->codes;
		for (size_t i = 0; i < sizeof(s->config); i++)
			s->config[i] = (uint8_t)(i * 7 + seq);
		s->m.push.generation = 12 + seq;
		s->m.push.hash = "sha256:beef";
		s->m.push.config.data = s->config;
		s->m.push.config.len = sizeof(s->config);
		s->m.push.settings = &s->settings;
		s->frame.msg_case = TAPIO__V1__FRAME__MSG_CONFIG_PUSH;
		s->frame.config_push = &s->m.push;
		break;
	case 6:
		tapio__v1__config_applied__init(&s->m.applied);
		s->m.applied.generation = 12 + seq;
		s->m.applied.hash = "sha256:beef";
		s->frame.msg_case = TAPIO__V1__FRAME__MSG_CONFIG_APPLIED;
		s->frame.config_applied = &s->m.applied;
		break;
	case 7:
		tapio__v1__config_rejected__init(&s->m.rejected);
		s->m.rejected.generation = 13 + seq;
		s->m.rejected.reason = "storage_critical_ms below storage_warning_ms";
		s->m.rejected.hash = "sha256:f00d";
		s->frame.msg_case = TAPIO__V1__FRAME__MSG_CONFIG_REJECTED;
		s->frame.config_rejected = &s->m.rejected;
		break;
	default:
		tapio__v1__error__init(&s->m.error);
		s->m.error.code = TAPIO__V1__ERROR_CODE__ERROR_CODE_SEQUENCE;
		s->m.error.message = "sequence 9 after 4";
		s->frame.msg_case = TAPIO__V1__FRAME__MSG_ERROR;
		s->frame.error = &s->m.error;
		break;
	}
}

/* Encodes f into a fresh malloc'ed buffer. */
static uint8_t *encode(const Tapio__V1__Frame *f, size_t *len)
{
	size_t n = codec_frame_size(f);
	uint8_t *buf = malloc(n);

	cr_assert_not_null(buf);
	cr_assert_eq(codec_encode_frame(f, buf, n), (ssize_t)n);
	*len = n;
	return buf;
}

/* Asserts that a decoded frame re-encodes to exactly the bytes it came from. */
static void assert_same(const Tapio__V1__Frame *got, const uint8_t *want, size_t len)
{
	size_t n;
	uint8_t *again = encode(got, &n);

	cr_assert_eq(n, len, "re-encoded %zu bytes, expected %zu", n, len);
	cr_assert_eq(memcmp(again, want, len), 0);
	free(again);
}

/* Feeds data[0..len) in chunks chosen by next_chunk, collecting decoded frames. */
static size_t decode_stream(struct codec_decoder *d, const uint8_t *data, size_t len,
			    size_t (*next_chunk)(void), Tapio__V1__Frame **out, size_t max_out)
{
	size_t got = 0, off = 0;

	while (off < len) {
		size_t chunk = next_chunk();

		if (chunk > len - off)
			chunk = len - off;
		while (chunk > 0) {
			ssize_t n = codec_decoder_feed(d, data + off, chunk);
			Tapio__V1__Frame *f;
			int rc;

			cr_assert_geq(n, 0, "feed: %s", codec_error_name((int)n));
			off += (size_t)n;
			chunk -= (size_t)n;
			while ((rc = codec_decoder_next(d, &f)) == 1) {
				cr_assert_lt(got, max_out);
				out[got++] = f;
			}
			cr_assert_eq(rc, 0, "next: %s", codec_error_name(rc));
			cr_assert_leq(d->cap, (size_t)d->max_frame + CODEC_HEADER_LEN);
		}
	}
	return got;
}

static size_t chunk_one(void)
{
	return 1;
}

static size_t chunk_all(void)
{
	return SIZE_MAX;
}

static size_t chunk_random(void)
{
	return 1 + (size_t)(rand() % 9000);
}

Test(codec, roundtrip_every_message, .timeout = 10)
{
	for (int kind = 0; kind < KINDS; kind++) {
		struct sample *s = malloc(sizeof(*s));
		struct codec_decoder d;
		Tapio__V1__Frame *f = NULL;
		uint8_t *bytes;
		size_t len;

		sample_fill(s, kind, 0);
		bytes = encode(&s->frame, &len);
		cr_assert_eq(bytes[0] << 24 | bytes[1] << 16 | bytes[2] << 8 | bytes[3],
			     (int)(len - 4), "big-endian length prefix");
		cr_assert_eq(codec_decoder_init(&d, 0), 0);
		cr_assert_eq(codec_decoder_feed(&d, bytes, len), (ssize_t)len);
		cr_assert_eq(codec_decoder_next(&d, &f), 1);
		cr_assert_eq(f->msg_case, s->frame.msg_case, "kind %d", kind);
		assert_same(f, bytes, len);
		tapio__v1__frame__free_unpacked(f, NULL);
		cr_assert_eq(codec_decoder_next(&d, &f), 0);
		cr_assert_null(f);
		cr_assert_eq(codec_decoder_pending(&d), 0);
		codec_decoder_fini(&d);
		free(bytes);
		free(s);
	}
}

Test(codec, decoded_fields, .timeout = 10)
{
	struct sample *s = malloc(sizeof(*s));
	struct codec_decoder d;
	Tapio__V1__Frame *f;
	uint8_t *bytes;
	size_t len;

	sample_fill(s, 0, 0);
	bytes = encode(&s->frame, &len);
	codec_decoder_init(&d, 0);
	codec_decoder_feed(&d, bytes, len);
	cr_assert_eq(codec_decoder_next(&d, &f), 1);
	cr_assert_str_eq(codec_frame_kind(f), "hello");
	cr_assert_eq(codec_check_hello(f->hello), 0);
	cr_assert_str_eq(f->hello->agent_id, "agent-7");
	cr_assert_str_eq(f->hello->kernel, "6.1.0-18-amd64");
	cr_assert_eq(f->hello->n_capabilities, 2);
	cr_assert_str_eq(f->hello->capabilities[1], "config.push");
	cr_assert_eq(f->hello->n_labels, 2);
	cr_assert_str_eq(f->hello->labels[1]->value, "eu-1");
	cr_assert_eq(f->hello->session_id, 0xdeadbeefcafe0000ull);
	cr_assert_eq(f->hello->resume->next_sequence, 9);
	tapio__v1__frame__free_unpacked(f, NULL);

	sample_fill(s, 2, 0);
	free(bytes);
	bytes = encode(&s->frame, &len);
	codec_decoder_feed(&d, bytes, len);
	cr_assert_eq(codec_decoder_next(&d, &f), 1);
	cr_assert_eq(f->heartbeat->counters->spool_drops, 10);
	cr_assert_eq(f->heartbeat->counters->anomalies[1]->type,
		     TAPIO__V1__OCCURRENCE_TYPE__OCCURRENCE_TYPE_CONNECTION_TIMEOUT);
	cr_assert_eq(f->heartbeat->observers[1]->state,
		     TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_UNSUPPORTED);
	cr_assert_str_eq(f->heartbeat->degraded_reasons[0], "node: no hardware PMU");
	tapio__v1__frame__free_unpacked(f, NULL);

	sample_fill(s, 5, 0);
	free(bytes);
	bytes = encode(&s->frame, &len);
	codec_decoder_feed(&d, bytes, len);
	cr_assert_eq(codec_decoder_next(&d, &f), 1);
	cr_assert_eq(f->config_push->config.len, 112);
	cr_assert_eq(memcmp(f->config_push->config.data, s->config, 112), 0);
	cr_assert_eq(f->config_push->settings->n_ignored_exit_codes, 2);
	cr_assert_eq(f->config_push->settings->ignored_exit_codes[1], -1);
	cr_assert_eq(f->config_push->settings->rtt_spike_ratio, 2.5);
	tapio__v1__frame__free_unpacked(f, NULL);

	codec_decoder_fini(&d);
	free(bytes);
	free(s);
}

#define STREAM_FRAMES 60

Test(codec, stream_chunking_gives_same_frames, .timeout = 30)
{
	struct sample *s = malloc(sizeof(*s));
	size_t lens[STREAM_FRAMES], offs[STREAM_FRAMES], total = 0;
	uint8_t *stream = NULL;
	size_t (*chunkers[])(void) = {chunk_all, chunk_one, chunk_random};

	for (int i = 0; i < STREAM_FRAMES; i++) {
		size_t len;
		uint8_t *bytes;

		sample_fill(s, i % KINDS, (uint64_t)i);
		bytes = encode(&s->frame, &len);
		stream = realloc(stream, total + len);
		memcpy(stream + total, bytes, len);
		offs[i] = total;
		lens[i] = len;
		total += len;
		free(bytes);
	}
	srand(1234);
	for (size_t c = 0; c < sizeof(chunkers) / sizeof(chunkers[0]); c++) {
		Tapio__V1__Frame *frames[STREAM_FRAMES];
		struct codec_decoder d;
		size_t n;

		/* 8 KiB max: the 6 KiB batch frames force growth past the base buffer */
		cr_assert_eq(codec_decoder_init(&d, 8192), 0);
		n = decode_stream(&d, stream, total, chunkers[c], frames, STREAM_FRAMES);
		cr_assert_eq(n, STREAM_FRAMES, "chunker %zu decoded %zu frames", c, n);
		for (size_t i = 0; i < n; i++) {
			assert_same(frames[i], stream + offs[i], lens[i]);
			tapio__v1__frame__free_unpacked(frames[i], NULL);
		}
		cr_assert_eq(codec_decoder_pending(&d), 0);
		cr_assert_eq(d.frames, STREAM_FRAMES);
		codec_decoder_fini(&d);
	}
	free(stream);
	free(s);
}

/* A header alone must be refused before the decoder grows its buffer for the payload. */
static void assert_header_refused(uint32_t max, uint32_t length, int want)
{
	struct codec_decoder d;
	uint8_t hdr[4] = {(uint8_t)(length >> 24), (uint8_t)(length >> 16), (uint8_t)(length >> 8),
			  (uint8_t)length};
	Tapio__V1__Frame *f = (Tapio__V1__Frame *)1;

	cr_assert_eq(codec_decoder_init(&d, max), 0);
	ssize_t n = codec_decoder_feed(&d, hdr, sizeof(hdr));
	cr_assert(n == 4 || n == want);
	/* only the small base buffer exists: nothing was sized from the hostile length */
	cr_assert_leq(d.cap, (size_t)d.max_frame + 4, "buffer grew to %zu for length %u", d.cap,
		      length);
	cr_assert_leq(d.cap, 4096, "buffer grew to %zu for length %u", d.cap, length);
	cr_assert_eq(codec_decoder_next(&d, &f), want, "length %u: got %s", length,
		     codec_error_name(codec_decoder_next(&d, &f)));
	cr_assert_null(f);
	/* sticky: the stream is out of sync for good */
	cr_assert_eq(codec_decoder_feed(&d, hdr, sizeof(hdr)), want);
	cr_assert_eq(codec_decoder_next(&d, &f), want);
	codec_decoder_fini(&d);
}

Test(codec, bad_lengths_refused_before_allocation, .timeout = 10)
{
	assert_header_refused(64, 0, CODEC_ERR_FRAME_EMPTY);
	assert_header_refused(64, 65, CODEC_ERR_FRAME_TOO_LARGE);
	assert_header_refused(64, UINT32_MAX, CODEC_ERR_FRAME_TOO_LARGE);
	assert_header_refused(0, CODEC_DEFAULT_MAX_FRAME + 1, CODEC_ERR_FRAME_TOO_LARGE);
	assert_header_refused(0, UINT32_MAX, CODEC_ERR_FRAME_TOO_LARGE);
	cr_assert_eq(codec_error_to_proto(CODEC_ERR_FRAME_TOO_LARGE),
		     TAPIO__V1__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE);
	cr_assert_eq(codec_error_to_proto(CODEC_ERR_FRAME_EMPTY),
		     TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
}

Test(codec, max_frame_is_inclusive, .timeout = 10)
{
	struct sample *s = malloc(sizeof(*s));
	struct codec_decoder d;
	Tapio__V1__Frame *f;
	uint8_t *bytes;
	size_t len;

	sample_fill(s, 4, 0);
	bytes = encode(&s->frame, &len);
	codec_decoder_init(&d, (uint32_t)(len - 4));
	codec_decoder_feed(&d, bytes, len);
	cr_assert_eq(codec_decoder_next(&d, &f), 1);
	tapio__v1__frame__free_unpacked(f, NULL);
	codec_decoder_fini(&d);

	codec_decoder_init(&d, (uint32_t)(len - 5));
	codec_decoder_feed(&d, bytes, len);
	cr_assert_eq(codec_decoder_next(&d, &f), CODEC_ERR_FRAME_TOO_LARGE);
	codec_decoder_fini(&d);
	free(bytes);
	free(s);
	cr_assert_eq(codec_decoder_init(&d, CODEC_MAX_FRAME_LIMIT + 1u), -EINVAL);
}

Test(codec, truncated_frames_need_more, .timeout = 10)
{
	struct sample *s = malloc(sizeof(*s));

	for (int kind = 0; kind < KINDS; kind++) {
		uint8_t *bytes;
		size_t len;

		sample_fill(s, kind, 0);
		bytes = encode(&s->frame, &len);
		for (size_t cut = 0; cut < len; cut++) {
			struct codec_decoder d;
			Tapio__V1__Frame *f = NULL;

			codec_decoder_init(&d, 0);
			cr_assert_eq(codec_decoder_feed(&d, bytes, cut), (ssize_t)cut);
			cr_assert_eq(codec_decoder_next(&d, &f), 0, "kind %d cut %zu", kind, cut);
			cr_assert_null(f);
			cr_assert_eq(codec_decoder_pending(&d), cut);
			/* the rest completes it */
			cr_assert_eq(codec_decoder_feed(&d, bytes + cut, len - cut),
				     (ssize_t)(len - cut));
			cr_assert_eq(codec_decoder_next(&d, &f), 1);
			tapio__v1__frame__free_unpacked(f, NULL);
			codec_decoder_fini(&d);
		}
		free(bytes);
	}
	free(s);
}

Test(codec, malformed_payload, .timeout = 10)
{
	/* length 3, then a field tag announcing a 127-byte string that is not there */
	const uint8_t bad[] = {0, 0, 0, 3, 0x0a, 0x7f, 0x01};
	const uint8_t bad_wire_type[] = {0, 0, 0, 2, 0x0f, 0x00};
	struct codec_decoder d;
	Tapio__V1__Frame *f;

	codec_decoder_init(&d, 0);
	codec_decoder_feed(&d, bad, sizeof(bad));
	cr_assert_eq(codec_decoder_next(&d, &f), CODEC_ERR_MALFORMED);
	cr_assert_null(f);
	cr_assert_str_eq(codec_error_name(CODEC_ERR_MALFORMED), "MALFORMED");
	cr_assert_eq(codec_error_to_proto(CODEC_ERR_MALFORMED),
		     TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
	codec_decoder_fini(&d);

	codec_decoder_init(&d, 0);
	codec_decoder_feed(&d, bad_wire_type, sizeof(bad_wire_type));
	cr_assert_eq(codec_decoder_next(&d, &f), CODEC_ERR_MALFORMED);
	codec_decoder_fini(&d);
}

Test(codec, random_garbage_never_crashes, .timeout = 60)
{
	uint8_t buf[600];
	int frames = 0, errors = 0;

	srand(42);
	for (int round = 0; round < 10000; round++) {
		struct codec_decoder d;
		size_t len = (size_t)(rand() % (int)sizeof(buf));
		size_t off = 0;

		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand();
		if (round % 2 && len >= 4) {
			/* a plausible prefix so the protobuf parser sees the garbage too */
			uint32_t n = (uint32_t)(rand() % (int)(len - 3));

			buf[0] = 0;
			buf[1] = 0;
			buf[2] = (uint8_t)(n >> 8);
			buf[3] = (uint8_t)n;
		}
		codec_decoder_init(&d, 512);
		while (off < len) {
			size_t chunk = 1 + (size_t)(rand() % 64);
			ssize_t n;
			Tapio__V1__Frame *f;
			int rc;

			if (chunk > len - off)
				chunk = len - off;
			n = codec_decoder_feed(&d, buf + off, chunk);
			if (n < 0)
				break;
			off += (size_t)n;
			while ((rc = codec_decoder_next(&d, &f)) == 1) {
				frames++;
				codec_frame_kind(f);
				tapio__v1__frame__free_unpacked(f, NULL);
			}
			if (rc < 0) {
				cr_assert_null(f);
				cr_assert_neq(codec_error_to_proto(rc),
					      TAPIO__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED);
				errors++;
				break;
			}
			cr_assert_leq(d.cap, 516);
		}
		codec_decoder_fini(&d);
	}
	cr_assert_gt(errors, 1000, "garbage must mostly be refused (%d errors)", errors);
	cr_log_info("garbage: %d frames decoded, %d streams refused", frames, errors);
}

Test(codec, wire_version_checked, .timeout = 10)
{
	Tapio__V1__Hello h = TAPIO__V1__HELLO__INIT;
	Tapio__V1__Welcome w = TAPIO__V1__WELCOME__INIT;

	cr_assert_eq(codec_check_hello(&h), CODEC_ERR_WIRE_VERSION, "missing version refused");
	h.wire_version = 2;
	cr_assert_eq(codec_check_hello(&h), CODEC_ERR_WIRE_VERSION);
	h.wire_version = CODEC_WIRE_VERSION;
	cr_assert_eq(codec_check_hello(&h), 0);
	w.wire_version = 7;
	cr_assert_eq(codec_check_welcome(&w), CODEC_ERR_WIRE_VERSION);
	w.wire_version = CODEC_WIRE_VERSION;
	cr_assert_eq(codec_check_welcome(&w), 0);
	cr_assert_eq(codec_error_to_proto(CODEC_ERR_WIRE_VERSION),
		     TAPIO__V1__ERROR_CODE__ERROR_CODE_WIRE_VERSION);
	cr_assert_str_eq(codec_error_name(CODEC_ERR_WIRE_VERSION), "WIRE_VERSION");
	cr_assert_eq(CODEC_WIRE_VERSION, TAPIO__V1__WIRE_VERSION__WIRE_VERSION_CURRENT);

	/* a version-2 Hello still decodes, so the receiver can answer with WIRE_VERSION */
	Tapio__V1__Frame fr = TAPIO__V1__FRAME__INIT;
	uint8_t buf[64];
	struct codec_decoder d;
	Tapio__V1__Frame *f;

	h.wire_version = 2;
	fr.msg_case = TAPIO__V1__FRAME__MSG_HELLO;
	fr.hello = &h;
	ssize_t n = codec_encode_frame(&fr, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	codec_decoder_init(&d, 0);
	codec_decoder_feed(&d, buf, (size_t)n);
	cr_assert_eq(codec_decoder_next(&d, &f), 1);
	cr_assert_eq(codec_check_hello(f->hello), CODEC_ERR_WIRE_VERSION);
	tapio__v1__frame__free_unpacked(f, NULL);
	codec_decoder_fini(&d);
}

Test(codec, unknown_fields_ignored, .timeout = 10)
{
	struct sample *s = malloc(sizeof(*s));
	struct codec_decoder d;
	Tapio__V1__Frame *f;
	uint8_t *bytes, ext[512];
	size_t len;
	/* field 100 varint 1, field 101 length-delimited "hi" */
	const uint8_t unknown[] = {0xa0, 0x06, 0x01, 0xaa, 0x06, 0x02, 'h', 'i'};

	sample_fill(s, 4, 0);
	bytes = encode(&s->frame, &len);
	memcpy(ext, bytes, len);
	memcpy(ext + len, unknown, sizeof(unknown));
	ext[3] = (uint8_t)(len - 4 + sizeof(unknown));
	codec_decoder_init(&d, 0);
	codec_decoder_feed(&d, ext, len + sizeof(unknown));
	cr_assert_eq(codec_decoder_next(&d, &f), 1);
	cr_assert_eq(f->msg_case, TAPIO__V1__FRAME__MSG_ACK);
	cr_assert_eq(f->ack->durable_sequence, 1000);
	cr_assert_eq(f->base.n_unknown_fields, 0, "unknown fields are dropped");
	tapio__v1__frame__free_unpacked(f, NULL);

	/*
	 * An unknown field inside a sub-message, numbered 0 with a two-byte tag: protobuf-c keeps
	 * it and would re-encode it as a one-byte tag its own parser refuses. Dropped, the frame
	 * re-encodes to bytes that decode again (found by fuzz_codec).
	 */
	const uint8_t field0[] = {0, 0, 0, 14, 0x2a, 12, 0x81, 0x00, 1,
				  2, 3, 4, 5,  6,    7,	 8,    0x10, 0x05};
	codec_decoder_feed(&d, field0, sizeof(field0));
	cr_assert_eq(codec_decoder_next(&d, &f), 1);
	cr_assert_eq(f->msg_case, TAPIO__V1__FRAME__MSG_ACK);
	cr_assert_eq(f->ack->durable_sequence, 5);
	cr_assert_eq(f->ack->base.n_unknown_fields, 0);
	uint8_t again[64];
	ssize_t n0 = codec_encode_frame(f, again, sizeof(again));
	tapio__v1__frame__free_unpacked(f, NULL);
	cr_assert_gt(n0, 0);
	codec_decoder_feed(&d, again, (size_t)n0);
	cr_assert_eq(codec_decoder_next(&d, &f), 1, "a re-encoded frame decodes again");
	cr_assert_eq(f->ack->durable_sequence, 5);
	tapio__v1__frame__free_unpacked(f, NULL);

	/* a message kind from a newer peer: a frame with no known message */
	const uint8_t newer[] = {0, 0, 0, 4, 0xfa, 0x01, 0x01, 0x08};
	codec_decoder_feed(&d, newer, sizeof(newer));
	cr_assert_eq(codec_decoder_next(&d, &f), 1);
	cr_assert_eq(f->msg_case, TAPIO__V1__FRAME__MSG__NOT_SET);
	cr_assert_str_eq(codec_frame_kind(f), "none");
	tapio__v1__frame__free_unpacked(f, NULL);
	codec_decoder_fini(&d);
	free(bytes);
	free(s);
}

Test(codec, encoder_bounds, .timeout = 10)
{
	struct sample *s = malloc(sizeof(*s));
	Tapio__V1__Frame empty = TAPIO__V1__FRAME__INIT;
	uint8_t buf[64];
	size_t need;

	sample_fill(s, 8, 0);
	need = codec_frame_size(&s->frame);
	cr_assert_lt(need, sizeof(buf));
	cr_assert_eq(codec_encode_frame(&s->frame, buf, need - 1), -ENOSPC);
	cr_assert_eq(codec_encode_frame(&s->frame, buf, 0), -ENOSPC);
	cr_assert_eq(codec_encode_frame(&s->frame, buf, need), (ssize_t)need);
	cr_assert_eq(codec_encode_frame(&empty, buf, sizeof(buf)), -EINVAL);
	free(s);
}

Test(codec, growable_buffer, .timeout = 10)
{
	struct sample *s = malloc(sizeof(*s));
	struct codec_buf b;
	struct codec_decoder d;
	Tapio__V1__Frame *f;
	size_t first = 0;

	codec_buf_init(&b);
	for (int kind = 0; kind < KINDS; kind++) {
		sample_fill(s, kind, 0);
		ssize_t n = codec_buf_append_frame(&b, &s->frame);
		cr_assert_eq(n, (ssize_t)codec_frame_size(&s->frame));
		if (kind == 0)
			first = (size_t)n;
	}
	cr_assert_leq(b.len, b.cap);
	codec_decoder_init(&d, 0);
	for (size_t off = 0; off < b.len;) {
		ssize_t n = codec_decoder_feed(&d, b.data + off, b.len - off);
		cr_assert_geq(n, 0);
		off += (size_t)n;
		while (codec_decoder_next(&d, &f) == 1) {
			cr_assert_eq(f->msg_case, (Tapio__V1__Frame__MsgCase)(d.frames));
			tapio__v1__frame__free_unpacked(f, NULL);
		}
	}
	cr_assert_eq(d.frames, KINDS);
	codec_decoder_fini(&d);

	size_t before = b.len;
	codec_buf_consume(&b, first);
	cr_assert_eq(b.len, before - first);
	cr_assert_eq(b.data[0], 0, "the welcome frame's length prefix is now first");
	codec_buf_consume(&b, SIZE_MAX);
	cr_assert_eq(b.len, 0);
	codec_buf_fini(&b);
	cr_assert_null(b.data);
	codec_buf_fini(NULL);
	free(s);
}

/* Decodes one frame and returns the memory it took. */
static size_t unpack_cost(const Tapio__V1__Frame *frame, size_t *payload)
{
	struct codec_buf b;
	struct codec_decoder d;
	Tapio__V1__Frame *f;
	size_t used;

	codec_buf_init(&b);
	cr_assert_gt(codec_buf_append_frame(&b, frame), 0);
	codec_decoder_init(&d, 0);
	cr_assert_eq(codec_decoder_feed(&d, b.data, b.len), (ssize_t)b.len);
	cr_assert_eq(codec_decoder_next(&d, &f), 1, "%s", codec_error_name(d.error));
	tapio__v1__frame__free_unpacked(f, NULL);
	used = d.last_unpack_bytes;
	*payload = b.len - CODEC_HEADER_LEN;
	codec_decoder_fini(&d);
	codec_buf_fini(&b);
	return used;
}

#define BIG_BATCH 2000

Test(codec, real_frames_fit_the_unpack_budget, .timeout = 30)
{
	static Tapio__V1__Occurrence occ[BIG_BATCH];
	static Tapio__V1__Occurrence *ptrs[BIG_BATCH];
	Tapio__V1__OccurrenceError error = TAPIO__V1__OCCURRENCE_ERROR__INIT;
	Tapio__V1__Context ctx = TAPIO__V1__CONTEXT__INIT;
	Tapio__V1__NetworkData net = TAPIO__V1__NETWORK_DATA__INIT;
	Tapio__V1__EventBatch batch = TAPIO__V1__EVENT_BATCH__INIT;
	Tapio__V1__Frame frame = TAPIO__V1__FRAME__INIT;
	struct sample *s = malloc(sizeof(*s));
	size_t payload, used;

	/* the smallest occurrence an agent sends: catalogue constants, id, node, empty data */
	error.code = "CONNECTION_REFUSED";
	ctx.node = "n";
	for (int i = 0; i < BIG_BATCH; i++) {
		tapio__v1__occurrence__init(&occ[i]);
		occ[i].id = "01JDQ4Z8X9K3M5N7P9R1T3V5W7";
		occ[i].source = "tapio";
		occ[i].protocol_version = "1.0";
		occ[i].type = TAPIO__V1__OCCURRENCE_TYPE__OCCURRENCE_TYPE_CONNECTION_REFUSED;
		occ[i].severity = TAPIO__V1__SEVERITY__SEVERITY_WARNING;
		occ[i].outcome = TAPIO__V1__OUTCOME__OUTCOME_FAILURE;
		occ[i].error = &error;
		occ[i].context = &ctx;
		occ[i].data_case = TAPIO__V1__OCCURRENCE__DATA_NETWORK;
		occ[i].network = &net;
		ptrs[i] = &occ[i];
	}
	batch.n_occurrences = BIG_BATCH;
	batch.occurrences = ptrs;
	batch.sequence = 1;
	frame.msg_case = TAPIO__V1__FRAME__MSG_EVENT_BATCH;
	frame.event_batch = &batch;
	used = unpack_cost(&frame, &payload);
	cr_log_info("minimal batch: %zu bytes decode to %zu", payload, used);
	cr_assert_leq(used, payload * CODEC_UNPACK_FACTOR / 2, "%zu bytes took %zu", payload, used);

	for (int kind = 0; kind < KINDS; kind++) {
		sample_fill(s, kind, 0);
		used = unpack_cost(&s->frame, &payload);
		cr_assert_leq(used, (payload * CODEC_UNPACK_FACTOR + CODEC_UNPACK_SLACK) / 2,
			      "kind %d: %zu bytes took %zu", kind, payload, used);
	}
	free(s);
}

Test(codec, decode_amplification_refused, .timeout = 30)
{
	/* EventBatch of 100 000 empty occurrences: 200 KB that would decode to ~20 MB */
	const size_t n = 100000, payload = 2 * n + 4;
	uint8_t *buf = malloc(CODEC_HEADER_LEN + payload);
	struct codec_decoder d;
	Tapio__V1__Frame *f;
	size_t off = 0;

	cr_assert_not_null(buf);
	buf[off++] = (uint8_t)(payload >> 24);
	buf[off++] = (uint8_t)(payload >> 16);
	buf[off++] = (uint8_t)(payload >> 8);
	buf[off++] = (uint8_t)payload;
	buf[off++] = 0x22; /* Frame.event_batch, length-delimited */
	buf[off++] = 0x80 | (uint8_t)((2 * n) & 0x7f);
	buf[off++] = 0x80 | (uint8_t)(((2 * n) >> 7) & 0x7f);
	buf[off++] = (uint8_t)((2 * n) >> 14);
	for (size_t i = 0; i < n; i++) {
		buf[off++] = 0x1a; /* EventBatch.occurrences, empty */
		buf[off++] = 0x00;
	}
	cr_assert_eq(off, CODEC_HEADER_LEN + payload);
	codec_decoder_init(&d, 0);
	for (size_t fed = 0; fed < off;) {
		ssize_t k = codec_decoder_feed(&d, buf + fed, off - fed);
		cr_assert_geq(k, 0);
		fed += (size_t)k;
	}
	cr_assert_eq(codec_decoder_next(&d, &f), CODEC_ERR_FRAME_TOO_COMPLEX);
	cr_assert_null(f);
	cr_assert_leq(d.last_unpack_bytes, payload * CODEC_UNPACK_FACTOR + CODEC_UNPACK_SLACK);
	cr_assert_eq(codec_error_to_proto(CODEC_ERR_FRAME_TOO_COMPLEX),
		     TAPIO__V1__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE);
	cr_assert_str_eq(codec_error_name(CODEC_ERR_FRAME_TOO_COMPLEX), "FRAME_TOO_COMPLEX");
	codec_decoder_fini(&d);
	free(buf);
}

/* Packs an EventBatch of n occurrences (ids "0".."n-1", distinct sizes) into a frame payload. */
static size_t pack_batch(uint8_t *out, size_t n, Tapio__V1__Occurrence *occ, char (*ids)[32])
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__EventBatch b = TAPIO__V1__EVENT_BATCH__INIT;
	Tapio__V1__Occurrence *ptrs[8];

	for (size_t i = 0; i < n; i++) {
		tapio__v1__occurrence__init(&occ[i]);
		snprintf(ids[i], 32, "%zu%.*s", i, (int)i, "xxxxxx");
		occ[i].id = ids[i];
		occ[i].timestamp_ns = 1000 + i;
		ptrs[i] = &occ[i];
	}
	b.session_id = 7;
	b.sequence = 3;
	b.n_occurrences = n;
	b.occurrences = ptrs;
	f.msg_case = TAPIO__V1__FRAME__MSG_EVENT_BATCH;
	f.event_batch = &b;
	return tapio__v1__frame__pack(&f, out);
}

Test(codec, batch_occurrences_slices_the_received_bytes, .timeout = 10)
{
	Tapio__V1__Occurrence occ[4];
	char ids[4][32];
	uint8_t payload[512], one[128], frame[600];
	const uint8_t *ptr[4];
	size_t lens[4], len = pack_batch(payload, 4, occ, ids);
	struct codec_decoder d;
	Tapio__V1__Frame *f;

	cr_assert_eq(codec_batch_occurrences(payload, len, ptr, lens, 4), 4);
	for (size_t i = 0; i < 4; i++) {
		size_t n = tapio__v1__occurrence__pack(&occ[i], one);

		cr_assert_eq(lens[i], n);
		cr_assert_eq(memcmp(ptr[i], one, n), 0);
		cr_assert(ptr[i] > payload && ptr[i] + lens[i] <= payload + len);
	}
	/* more elements than room, a truncated payload, an empty one: refused, never overread */
	cr_assert_eq(codec_batch_occurrences(payload, len, ptr, lens, 3), -1);
	for (size_t cut = 0; cut < len; cut++)
		cr_assert_eq(codec_batch_occurrences(payload, cut, ptr, lens, 4), -1);
	cr_assert_eq(codec_batch_occurrences(payload, 0, ptr, lens, 4), -1);
	/* another Frame field, a second event_batch, an unknown batch field: not the plain shape */
	uint8_t two[1100];
	memcpy(two, payload, len);
	memcpy(two + len, payload, len);
	cr_assert_eq(codec_batch_occurrences(two, 2 * len, ptr, lens, 4), -1);
	uint8_t hello[] = {0x0a, 0x00};
	memcpy(two, hello, sizeof(hello));
	memcpy(two + sizeof(hello), payload, len);
	cr_assert_eq(codec_batch_occurrences(two, len + sizeof(hello), ptr, lens, 4), -1);
	uint8_t batch_unknown[] = {0x22, 0x03, 0xc8, 0x01, 0x00 /* field 25 = 0 */};
	cr_assert_eq(codec_batch_occurrences(batch_unknown, sizeof(batch_unknown), ptr, lens, 4),
		     -1);

	/* the decoder exposes the payload it just unpacked and its unknown-field count */
	codec_decoder_init(&d, 0);
	frame[0] = frame[1] = 0;
	frame[2] = (uint8_t)(len >> 8);
	frame[3] = (uint8_t)len;
	memcpy(frame + 4, payload, len);
	cr_assert_eq(codec_decoder_feed(&d, frame, 4 + len), (ssize_t)(4 + len));
	cr_assert_eq(codec_decoder_next(&d, &f), 1);
	cr_assert_eq(d.last_payload_len, len);
	cr_assert_eq(memcmp(d.last_payload, payload, len), 0);
	cr_assert_eq(d.last_unknown_fields, 0);
	tapio__v1__frame__free_unpacked(f, NULL);
	codec_decoder_fini(&d);
}
