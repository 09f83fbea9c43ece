/* The ingest server: connections, session protocol, store appends, durable Acks. */
#include "controller/ingest.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/occ_proto.h"
#include "common/occ_wire.h"
#include "controller/session.h"

#define TAG		 "ingest"
#define SWEEP_MS	 1000
#define CLOSING_GRACE_MS 5000 /* an Error nobody reads is abandoned after this */

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct conn {
	uv_tcp_t tcp;
	struct ingest *in;
	struct conn *prev, *next;   /* in->conns */
	struct conn *wprev, *wnext; /* in->ack_waiters */
	bool waiting;		    /* on in->ack_waiters */
	struct codec_decoder dec;
	struct session sess;
	struct registry_agent *agent; /* set by Hello */
	uint64_t agent_key;
	uint64_t accepted_ms, last_frame_ms, closing_ms;
	uint64_t ack_ticket, ack_seq; /* Ack ack_seq once ticket is durable */
	struct codec_buf out;	      /* queued, not yet handed to libuv */
	struct codec_buf wbuf;	      /* being written */
	uv_write_t wreq;
	bool writing, handle_closing, close_after_write, paused, sent_batch;
	struct tls_conn *tls; /* NULL on a plaintext listener */
	char remote[56];
};

static uint64_t now_ms(void)
{
	return clock_mono_ns() / 1000000ull;
}

void ingest_options_defaults(struct ingest_options *o)
{
	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	o->port = INGEST_DEFAULT_PORT;
	o->backlog = INGEST_DEFAULT_BACKLOG;
	o->max_frame = CODEC_DEFAULT_MAX_FRAME;
	o->hello_timeout_ms = INGEST_DEFAULT_HELLO_MS;
	o->idle_timeout_ms = INGEST_DEFAULT_IDLE_MS;
	o->heartbeat_interval_ms = INGEST_DEFAULT_HB_MS;
	o->max_output_bytes = INGEST_DEFAULT_MAX_OUT;
	o->high_water_bytes = INGEST_DEFAULT_HIGH_WATER;
	o->low_water_bytes = INGEST_DEFAULT_LOW_WATER;
	o->controller_id = "tapio-controller";
}

static void maybe_stopped(struct ingest *in);
static void request_commit(struct ingest *in);

/* ---- lists ------------------------------------------------------------------------------ */

static void waiters_remove(struct ingest *in, struct conn *c)
{
	if (!c->waiting)
		return;
	if (c->wprev)
		c->wprev->wnext = c->wnext;
	else
		in->ack_waiters = c->wnext;
	if (c->wnext)
		c->wnext->wprev = c->wprev;
	c->wprev = c->wnext = NULL;
	c->waiting = false;
}

static void waiters_add(struct ingest *in, struct conn *c)
{
	if (c->waiting)
		return;
	c->wprev = NULL;
	c->wnext = in->ack_waiters;
	if (in->ack_waiters)
		in->ack_waiters->wprev = c;
	in->ack_waiters = c;
	c->waiting = true;
}

/* ---- closing ----------------------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = container_of((uv_tcp_t *)h, struct conn, tcp);
	struct ingest *in = c->in;

	codec_decoder_fini(&c->dec);
	codec_buf_fini(&c->out);
	codec_buf_fini(&c->wbuf);
	tls_conn_free(c->tls);
	free(c);
	in->stats.closed++;
	in->stats.current--;
	maybe_stopped(in);
}

static void conn_close(struct conn *c)
{
	struct ingest *in = c->in;

	if (c->handle_closing)
		return;
	c->handle_closing = true;
	session_closing(&c->sess);
	waiters_remove(in, c);
	if (c->prev)
		c->prev->next = c->next;
	else
		in->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	if (c->agent && c->agent->owner == c) {
		c->agent->owner = NULL;
		registry_disconnect(in->registry, c->agent, clock_wall_ns());
	}
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* ---- output ------------------------------------------------------------------------------ */

static void conn_flush(struct conn *c);

static void on_write(uv_write_t *req, int status)
{
	struct conn *c = container_of(req, struct conn, wreq);

	c->writing = false;
	if (c->handle_closing)
		return;
	if (status < 0) {
		log_debug(TAG, "write to %s failed: %s", c->remote, uv_strerror(status));
		conn_close(c);
		return;
	}
	c->in->stats.bytes_out += c->wbuf.len;
	codec_buf_consume(&c->wbuf, c->wbuf.len);
	if (c->wbuf.cap > 4096)
		codec_buf_fini(&c->wbuf);
	if (c->out.len || (c->tls && tls_conn_output_pending(c->tls))) {
		conn_flush(c);
		return;
	}
	if (c->out.cap > 4096)
		codec_buf_fini(&c->out);
	if (c->close_after_write)
		conn_close(c);
}

/*
 * TLS: encrypts the queued frames and moves every pending ciphertext byte (frames, handshake
 * messages, alerts, close_notify) into the idle write buffer. Returns 0 or -1 (closed).
 */
static int tls_stage(struct conn *c)
{
	size_t n;
	int r;

	if (c->out.len) {
		r = tls_conn_write(c->tls, c->out.data, c->out.len);
		if (r < 0 && r != -EPIPE) {
			LOG_RATELIMITED(LOG_WARN, TAG, "%s: TLS write: %s", c->remote,
					r == -ENOMEM ? "out of memory" : tls_conn_error(c->tls));
			conn_close(c);
			return -1;
		}
		codec_buf_consume(&c->out, c->out.len);
	}
	if (c->close_after_write)
		tls_conn_shutdown(c->tls);
	n = tls_conn_output_pending(c->tls);
	if (n > c->wbuf.cap) {
		uint8_t *p = realloc(c->wbuf.data, n);

		if (!p) {
			conn_close(c);
			return -1;
		}
		c->wbuf.data = p;
		c->wbuf.cap = n;
	}
	c->wbuf.len = tls_conn_output_read(c->tls, c->wbuf.data, n);
	return 0;
}

static void conn_flush(struct conn *c)
{
	struct codec_buf t;
	uv_buf_t b;
	int r;

	if (c->writing || c->handle_closing)
		return;
	if (c->tls) {
		if (tls_stage(c) < 0 || c->wbuf.len == 0)
			return;
	} else {
		if (c->out.len == 0)
			return;
		t = c->wbuf;
		c->wbuf = c->out;
		c->out = t;
	}
	b = uv_buf_init((char *)c->wbuf.data, (unsigned int)c->wbuf.len);
	r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (r < 0) {
		log_debug(TAG, "uv_write to %s: %s", c->remote, uv_strerror(r));
		conn_close(c);
		return;
	}
	c->writing = true;
}

/*
 * Queues one frame. A peer whose unsent output would pass max_output_bytes never reads what
 * we send: it is disconnected and counted. Returns 0, or -1 when the connection was closed.
 */
static int conn_send(struct conn *c, const Tapio__V1__Frame *f)
{
	struct ingest *in = c->in;
	ssize_t n;

	if (c->handle_closing)
		return -1;
	if (c->out.len + c->wbuf.len + codec_frame_size(f) > in->opt.max_output_bytes) {
		in->stats.output_overflows++;
		LOG_RATELIMITED(LOG_WARN, TAG,
				"%s: unsent output over %zu bytes (peer does not read); "
				"disconnecting",
				c->remote, in->opt.max_output_bytes);
		conn_close(c);
		return -1;
	}
	n = codec_buf_append_frame(&c->out, f);
	if (n < 0) {
		LOG_RATELIMITED(LOG_ERROR, TAG, "%s: encoding %s frame: %s", c->remote,
				codec_frame_kind(f), strerror((int)-n));
		conn_close(c);
		return -1;
	}
	in->stats.frames_out++;
	conn_flush(c);
	return 0;
}

/* Sends Error(code, why), stops reading and closes once it is written. */
static void conn_fail(struct conn *c, Tapio__V1__ErrorCode code, const char *why)
{
	struct ingest *in = c->in;
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__Error e = TAPIO__V1__ERROR__INIT;

	if (c->handle_closing || c->sess.state == SESSION_CLOSING)
		return;
	if ((unsigned)code < INGEST_ERROR_CODES)
		in->stats.errors_sent[code]++;
	LOG_RATELIMITED(LOG_WARN, TAG, "%s: %s: %s; disconnecting", c->remote,
			codec_error_code_name(code), why);
	session_closing(&c->sess);
	waiters_remove(in, c);
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->closing_ms = now_ms();
	e.code = code;
	e.message = (char *)why;
	f.msg_case = TAPIO__V1__FRAME__MSG_ERROR;
	f.error = &e;
	if (conn_send(c, &f) < 0)
		return;
	c->close_after_write = true;
	if (c->tls) {
		/* close_notify after the Error (now, or once the Error is encrypted) */
		if (!c->out.len)
			tls_conn_shutdown(c->tls);
		conn_flush(c);
	}
	if (!c->writing)
		conn_close(c);
}

/* ---- acks and commits -------------------------------------------------------------------- */

static void send_ack(struct conn *c, uint64_t seq)
{
	struct ingest *in = c->in;
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__Ack a = TAPIO__V1__ACK__INIT;
	struct registry_session *s;
	uint64_t durable = 0;

	if (store_session_durable(in->store, c->agent_key, c->sess.session_id, &durable) &&
	    durable > seq)
		seq = durable;
	a.session_id = c->sess.session_id;
	a.durable_sequence = seq;
	f.msg_case = TAPIO__V1__FRAME__MSG_ACK;
	f.ack = &a;
	s = c->agent ? registry_session_find(c->agent, c->sess.session_id) : NULL;
	if (s)
		registry_session_acked(s, seq);
	in->stats.acks++;
	conn_send(c, &f);
}

/* Acks seq as soon as store ticket `ticket` is durable (now, or after a commit). */
static void want_ack(struct conn *c, uint64_t seq, uint64_t ticket)
{
	struct ingest *in = c->in;

	if (ticket <= store_durable_ticket(in->store) && !c->waiting) {
		send_ack(c, seq);
		return;
	}
	if (!c->waiting || ticket > c->ack_ticket)
		c->ack_ticket = ticket;
	if (!c->waiting || seq > c->ack_seq)
		c->ack_seq = seq;
	waiters_add(in, c);
	request_commit(in);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void resume_conn(struct conn *c)
{
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/*
 * Pauses batch readers while more than high_water_bytes wait for the next commit (appended
 * after the in-flight commit took its group), and resumes them below low_water_bytes, which
 * happens as soon as the next commit takes the group. Counting only the waiting bytes lets
 * the loop fill one group while the thread pool writes and fsyncs the previous one; counting
 * every undurable byte made the two take turns (readers paused for the whole commit after
 * each one). Undurable memory stays bounded: one group in flight plus one waiting, each at
 * most high_water_bytes plus the frames already read.
 */
static void backpressure_update(struct ingest *in)
{
	uint64_t pending = in->stats.appended_bytes -
			   (in->commit_inflight ? in->commit_mark_bytes : in->stats.durable_bytes);

	if (!in->stats.backpressure && pending > in->opt.high_water_bytes) {
		in->stats.backpressure = true;
		in->stats.backpressure_events++;
		for (struct conn *c = in->conns; c; c = c->next) {
			if (c->sent_batch && !c->paused && c->sess.state == SESSION_ESTABLISHED) {
				uv_read_stop((uv_stream_t *)&c->tcp);
				c->paused = true;
			}
		}
		LOG_RATELIMITED(LOG_WARN, TAG, "store behind by %llu bytes: pausing batch readers",
				(unsigned long long)pending);
	} else if (in->stats.backpressure && pending < in->opt.low_water_bytes) {
		uint64_t now = now_ms();

		in->stats.backpressure = false;
		for (struct conn *c = in->conns; c; c = c->next) {
			if (!c->paused)
				continue;
			c->paused = false;
			c->last_frame_ms = now;
			if (!in->stopping && c->sess.state == SESSION_ESTABLISHED)
				resume_conn(c);
		}
	}
}

static void fail_waiters(struct ingest *in, const char *why)
{
	while (in->ack_waiters) {
		struct conn *c = in->ack_waiters;

		waiters_remove(in, c);
		conn_fail(c, TAPIO__V1__ERROR_CODE__ERROR_CODE_INTERNAL, why);
	}
}

static void on_commit(struct store *s, int status, uint64_t durable, void *ctx)
{
	struct ingest *in = ctx;
	struct conn *c, *next;

	in->commit_inflight = false;
	if (status < 0) {
		in->stats.commit_failures++;
		log_error(TAG, "store commit failed: %s; refusing batches until restart",
			  strerror(-status));
		fail_waiters(in, "store failure");
		maybe_stopped(in);
		return;
	}
	in->stats.commits++;
	if (durable >= in->commit_mark_ticket)
		in->stats.durable_bytes = in->commit_mark_bytes;
	/* the next group first: the disk waits for it, the Acks below do not need to */
	if (store_appended_ticket(s) > durable)
		request_commit(in);
	for (c = in->ack_waiters; c; c = next) {
		next = c->wnext;
		if (c->ack_ticket <= durable) {
			waiters_remove(in, c);
			send_ack(c, c->ack_seq);
		}
	}
	backpressure_update(in); /* after the next commit took its group */
	maybe_stopped(in);
}

static void request_commit(struct ingest *in)
{
	int r;

	if (in->commit_inflight)
		return; /* on_commit starts the next group */
	if (store_appended_ticket(in->store) <= store_durable_ticket(in->store))
		return;
	in->commit_mark_ticket = store_appended_ticket(in->store);
	in->commit_mark_bytes = in->stats.appended_bytes;
	r = store_commit_async(in->store, in->loop, on_commit, in);
	if (r < 0) {
		in->stats.commit_failures++;
		LOG_RATELIMITED(LOG_ERROR, TAG, "store_commit_async: %s", strerror(-r));
		fail_waiters(in, "store failure");
		return;
	}
	in->commit_inflight = true;
}

/* ---- frames ------------------------------------------------------------------------------ */

/*
 * Converts, validates and appends every occurrence of b as one store batch (one commit group,
 * so dedupe by batch stays exact). Invalid occurrences are dropped and counted: wrong
 * evidence is never stored, and refusing the whole batch would make the agent resend it
 * forever. Returns 0 and *stored, or -errno from the store or allocation.
 */
/*
 * An upper bound on the packed size of any occurrence occ_to_proto() builds, so append_batch
 * can pack straight into its scratch without a get_packed_size() pass. Occurrence has no
 * repeated field: each field costs at most 2 tag bytes + 10 value or length-prefix bytes, plus
 * (strings) its bytes, which are borrowed from the C struct (so within its size), or the two
 * short constants and the catalogue's error code; 256 covers those and the sub-message headers.
 */
static size_t occ_pack_bound(void)
{
	static const ProtobufCMessageDescriptor *const descs[] = {
	    &tapio__v1__occurrence__descriptor,	      &tapio__v1__context__descriptor,
	    &tapio__v1__occurrence_error__descriptor, &tapio__v1__network_data__descriptor,
	    &tapio__v1__container_data__descriptor,   &tapio__v1__storage_data__descriptor,
	    &tapio__v1__node_data__descriptor,
	};
	size_t fields = 0, code = 0;

	for (size_t i = 0; i < sizeof(descs) / sizeof(descs[0]); i++)
		fields += descs[i]->n_fields;
	for (int t = 0; t < TAPIO_OCC__COUNT; t++)
		if (tapio_catalogue[t].error_code && strlen(tapio_catalogue[t].error_code) > code)
			code = strlen(tapio_catalogue[t].error_code);
	return sizeof(struct tapio_occurrence) + 12 * fields + code + 256;
}

/* Grows the array *arr of elem-byte elements to ncap of them. Returns 0 or -ENOMEM. */
static int grow_to(void *arr, size_t elem, size_t ncap)
{
	void *p, **slot = arr;

	if (!(p = realloc(*slot, ncap * elem)))
		return -ENOMEM;
	*slot = p;
	return 0;
}

/* Grows the append_batch scratch arrays to hold n records. Returns 0 or -ENOMEM. */
static int scratch_reserve(struct ingest *in, size_t n)
{
	size_t ncap = in->sc_cap ? in->sc_cap : 64;

	if (n <= in->sc_cap)
		return 0;
	while (ncap < n)
		ncap *= 2;
	/* each grown array stays valid (and larger) if a later one fails; sc_cap is the least */
	if (grow_to(&in->sc_meta, sizeof(*in->sc_meta), ncap) ||
	    grow_to(&in->sc_rec, sizeof(*in->sc_rec), ncap) ||
	    grow_to(&in->sc_len, sizeof(*in->sc_len), ncap) ||
	    grow_to(&in->sc_off, sizeof(*in->sc_off), ncap) ||
	    grow_to(&in->sc_wire, sizeof(*in->sc_wire), ncap) ||
	    grow_to(&in->sc_wire_len, sizeof(*in->sc_wire_len), ncap) ||
	    grow_to(&in->sc_fast, sizeof(*in->sc_fast), ncap) ||
	    grow_to(&in->sc_nodes, sizeof(*in->sc_nodes), ncap))
		return -ENOMEM;
	in->sc_cap = ncap;
	return 0;
}

/*
 * Packs occ canonically at in->sc_bytes + off (growing it) and sets *sz. Returns 0 or -ENOMEM.
 */
static int repack(struct ingest *in, const struct tapio_occurrence *occ, size_t off, size_t *sz)
{
	Tapio__V1__Occurrence msg;
	struct occ_proto_scratch scratch;

	occ_to_proto(occ, &msg, &scratch);
	/* twice the bound free: a wrong bound aborts below before it could overflow */
	if (off + 2 * in->pack_bound > in->sc_bytes_cap) {
		size_t ncap = in->sc_bytes_cap ? in->sc_bytes_cap * 2 : 65536;
		uint8_t *p;

		while (ncap < off + 2 * in->pack_bound)
			ncap *= 2;
		p = realloc(in->sc_bytes, ncap);
		if (!p)
			return -ENOMEM;
		in->sc_bytes = p;
		in->sc_bytes_cap = ncap;
	}
	*sz = tapio__v1__occurrence__pack(&msg, in->sc_bytes + off);
	if (*sz > in->pack_bound) {
		log_error(TAG, "packed occurrence of %zu bytes over the bound %zu", *sz,
			  in->pack_bound);
		abort();
	}
	return 0;
}

/*
 * Finds the received bytes of every occurrence of b (the frame just decoded by c's decoder)
 * in in->sc_wire/sc_wire_len. Returns true when every occurrence has its slice; false when
 * the frame had unknown fields (they are never stored) or is not the plain shape
 * codec_batch_occurrences slices, and then every occurrence is re-encoded instead.
 */
static bool wire_slices(struct conn *c, const Tapio__V1__EventBatch *b)
{
	struct ingest *in = c->in;
	ssize_t n;

	if (c->dec.last_unknown_fields || !c->dec.last_payload)
		return false;
	n = codec_batch_occurrences(c->dec.last_payload, c->dec.last_payload_len, in->sc_wire,
				    in->sc_wire_len, b->n_occurrences);
	return n >= 0 && (size_t)n == b->n_occurrences;
}

/*
 * Occurrence i of b, converted (into *tmp) and validated. Returns it, or NULL with the reason
 * in err.
 */
static const struct tapio_occurrence *batch_occurrence(const Tapio__V1__EventBatch *b, size_t i,
						       struct tapio_occurrence *tmp, char *err,
						       size_t errlen)
{
	if (!b->occurrences[i] || occ_from_proto(b->occurrences[i], tmp, err, errlen) < 0)
		return NULL;
	return occurrence_validate(tmp, err, errlen) < 0 ? NULL : tmp;
}

/*
 * Occurrence i of a fast-path batch decoded again into *tmp from its received bytes (which the
 * fast path decoded once already, so this cannot fail): for the rare uses of the whole
 * occurrence after the fast path kept only its summary. Validates it into err when asked.
 */
static const struct tapio_occurrence *
fast_again(struct ingest *in, size_t i, struct tapio_occurrence *tmp, char *err, size_t errlen)
{
	if (occ_wire_decode_occurrence(in->sc_wire[i], in->sc_wire_len[i], tmp) < 0) {
		snprintf(err, errlen, "fast path decode not repeatable");
		return NULL;
	}
	if (err && occurrence_validate(tmp, err, errlen) == 0)
		snprintf(err, errlen, "fast path validation not repeatable");
	return tmp;
}

/*
 * Converts, validates and appends every occurrence of b as one store batch (one commit group,
 * so dedupe by batch stays exact). Invalid occurrences are dropped and counted: wrong
 * evidence is never stored, and refusing the whole batch would make the agent resend it
 * forever. The payload stored for a valid occurrence is the exact packed Occurrence the agent
 * sent (its slice of the frame), so nothing is encoded again; it is re-encoded from the
 * validated message only when the frame had unknown fields or an unusual shape, or when the
 * slice is longer than any canonical encoding could be (repeated fields), so a stored payload
 * never carries bytes we did not understand and never exceeds pack_bound. With `fast` (the
 * fast path's summary of each occurrence, decoded and validated by drain_fast, in->sc_wire
 * holding their slices) b carries only the batch's numbers. Returns 0 and *stored, or -errno
 * from the store or allocation. Allocates nothing in the steady state: the arrays and any
 * packed bytes live in the ingest's scratch.
 */
static int append_batch(struct conn *c, const Tapio__V1__EventBatch *b,
			const struct ingest_fast_occ *fast, uint64_t *stored)
{
	struct ingest *in = c->in;
	size_t n = b->n_occurrences, k = 0, total = 0, packed = 0;
	struct tapio_occurrence tmp;
	uint32_t node_id = 0, last_run = 0;
	char last_node[TAPIO_NAME_LEN];
	bool have_node = false, sliced;
	char err[160];
	int r;

	*stored = 0;
	if (n == 0)
		return 0;
	if ((r = scratch_reserve(in, n)) < 0)
		return r;
	sliced = fast || wire_slices(c, b);
	for (size_t i = 0; i < n; i++) {
		struct store_record_meta *m = &in->sc_meta[k];
		const struct tapio_occurrence *occ = NULL;
		const char *node;
		bool same_node;
		size_t sz;

		if (fast && !fast[i].valid)
			(void)fast_again(in, i, &tmp, err, sizeof(err));
		else if (!fast)
			occ = batch_occurrence(b, i, &tmp, err, sizeof(err));
		if (fast ? !fast[i].valid : !occ) {
			in->stats.invalid_occurrences++;
			c->agent->invalid_occurrences++;
			LOG_RATELIMITED(LOG_WARN, TAG,
					"%s: agent %s: dropped invalid occurrence: %s", c->remote,
					c->agent->id, err);
			continue;
		}
		/* an agent's batch almost always names one node: intern it once per run */
		node = fast ? in->sc_nodes[fast[i].node_run] : occ->node;
		same_node = have_node &&
			    (fast ? fast[i].node_run == last_run : strcmp(last_node, node) == 0);
		if (!same_node) {
			if (store_node_intern(in->store, node, &node_id) < 0) {
				in->stats.invalid_occurrences++;
				c->agent->invalid_occurrences++;
				LOG_RATELIMITED(LOG_WARN, TAG,
						"%s: agent %s: dropped occurrence: node table full",
						c->remote, c->agent->id);
				have_node = false;
				continue;
			}
			if (fast)
				last_run = fast[i].node_run;
			else
				memcpy(last_node, node, sizeof(last_node));
			have_node = true;
		}
		if (sliced && in->sc_wire_len[i] <= in->pack_bound) {
			sz = in->sc_wire_len[i];
			in->sc_rec[k] = in->sc_wire[i];
		} else {
			if (!occ && !(occ = fast_again(in, i, &tmp, NULL, 0)))
				return -EPROTO;
			if ((r = repack(in, occ, packed, &sz)) < 0)
				return r;
			in->sc_rec[k] = NULL; /* in sc_bytes, which may still move */
			in->sc_off[k] = packed;
			packed += sz;
		}
		in->sc_len[k] = sz;
		if (fast) {
			m->timestamp_ns = fast[i].timestamp_ns;
			m->type = fast[i].type;
			m->severity = fast[i].severity;
		} else {
			m->timestamp_ns = occ->timestamp_ns;
			m->type = (uint8_t)occ->type;
			m->severity = (uint8_t)occ->severity;
		}
		m->node_id = node_id;
		m->agent_key = c->agent_key;
		m->session_id = c->sess.session_id;
		m->sequence = b->sequence;
		total += sz;
		k++;
	}
	if (k == 0)
		return 0;
	for (size_t i = 0; packed && i < k; i++) /* the re-encoded ones, in sc_bytes */
		if (!in->sc_rec[i])
			in->sc_rec[i] = in->sc_bytes + in->sc_off[i];
	r = store_append_batch(in->store, in->sc_meta, in->sc_rec, in->sc_len, k);
	if (r < 0)
		return r;
	for (size_t i = 0; in->aggregate && i < k; i++)
		aggregate_add(in->aggregate, &in->sc_meta[i]);
	/* one identity: every record of the batch shares it (seg_record_size) */
	in->stats.appended_bytes += total + k * SEG_REC_OVERHEAD + SEG_IDENT_SIZE;
	in->stats.occurrences += k;
	*stored = k;
	if (in->sc_bytes_cap > (16u << 20)) {
		/* one huge batch does not pin its buffer forever */
		free(in->sc_bytes);
		in->sc_bytes = NULL;
		in->sc_bytes_cap = 0;
	}
	return 0;
}

static void on_batch(struct conn *c, const Tapio__V1__EventBatch *b,
		     const struct ingest_fast_occ *fast)
{
	struct ingest *in = c->in;
	uint64_t now = clock_wall_ns(), durable = 0, seq = b->sequence, stored = 0;
	uint64_t sid = c->sess.session_id;
	struct registry_session *rs;
	enum session_seq k;
	int r;

	in->stats.batches++;
	c->sent_batch = true;
	session_batch_accepted(&c->sess, seq);
	store_session_durable(in->store, c->agent_key, sid, &durable);
	rs = registry_session(c->agent, sid, durable, now);
	if (!rs) {
		conn_fail(c, TAPIO__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
		return;
	}
	k = session_classify_seq(rs->last_sequence, seq,
				 store_batch_seen(in->store, c->agent_key, sid, seq));
	if (k == SESSION_SEQ_DUPLICATE) {
		in->stats.duplicates++;
		registry_session_batch(c->agent, rs, k, seq, 0, now);
		want_ack(c, seq, durable >= seq ? 0 : store_appended_ticket(in->store));
		return;
	}
	if (k == SESSION_SEQ_GAP) {
		in->stats.gaps++;
		in->stats.gap_sequences += seq - rs->last_sequence - 1;
	} else if (k == SESSION_SEQ_REGRESSION) {
		in->stats.regressions++;
	}
	r = append_batch(c, b, fast, &stored);
	if (r < 0) {
		LOG_RATELIMITED(LOG_ERROR, TAG, "store_append_batch: %s", strerror(-r));
		conn_fail(c, TAPIO__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "store failure");
		return;
	}
	/* registry_session() above may have been the only lookup: rs is still valid here */
	registry_session_batch(c->agent, rs, k, seq, stored, now);
	want_ack(c, seq, store_appended_ticket(in->store));
	if (c->handle_closing)
		return;
	backpressure_update(in);
	if (in->stats.backpressure && !c->paused && c->sess.state == SESSION_ESTABLISHED) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->paused = true;
	}
}

static void on_hello(struct conn *c, const Tapio__V1__Hello *h)
{
	struct ingest *in = c->in;
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__Welcome w = TAPIO__V1__WELCOME__INIT;
	struct registry_agent *a = registry_find(in->registry, h->agent_id);
	uint64_t now = clock_wall_ns(), durable = 0;
	bool resumed;
	int r;

	if (in->token && !tls_token_equal(h->token, in->token)) {
		conn_fail(c, TAPIO__V1__ERROR_CODE__ERROR_CODE_AUTH, "wrong or missing token");
		return;
	}
	if (a && a->owner && a->owner != (void *)c) {
		struct conn *old = a->owner;

		in->stats.superseded++;
		LOG_RATELIMITED(LOG_WARN, TAG,
				"agent %s reconnected from %s: closing its old connection from %s",
				h->agent_id, c->remote, old->remote);
		conn_close(old);
	}
	r = registry_hello(in->registry, h, c->remote, now, &a);
	if (r == -ENOSPC) {
		conn_fail(c, TAPIO__V1__ERROR_CODE__ERROR_CODE_OVERLOADED,
			  "registry full: too many connected agents");
		return;
	}
	if (r < 0) {
		conn_fail(c, TAPIO__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
		return;
	}
	a->owner = c;
	c->agent = a;
	c->agent_key = a->key;
	resumed = store_session_durable(in->store, a->key, h->session_id, &durable) ||
		  registry_session_find(a, h->session_id) != NULL;
	if (!registry_session(a, h->session_id, durable, now)) {
		conn_fail(c, TAPIO__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
		return;
	}
	session_established(&c->sess, h->session_id);
	in->stats.hellos++;
	log_debug(TAG, "%s: hello from agent %s (node %s, session %llu, durable %llu)", c->remote,
		  h->agent_id, h->node, (unsigned long long)h->session_id,
		  (unsigned long long)durable);
	w.controller_id = in->controller_id;
	w.wire_version = CODEC_WIRE_VERSION;
	w.session_accepted = true;
	w.heartbeat_interval_ms = in->opt.heartbeat_interval_ms;
	w.session_id = h->session_id;
	w.session_resumed = resumed;
	w.last_acked_sequence = durable;
	w.max_frame_bytes = in->opt.max_frame;
	f.msg_case = TAPIO__V1__FRAME__MSG_WELCOME;
	f.welcome = &w;
	if (conn_send(c, &f) == 0 && in->on_welcome)
		in->on_welcome(in, a, in->welcome_ctx);
}

int ingest_send_agent(struct ingest *in, struct registry_agent *a, const Tapio__V1__Frame *f)
{
	struct conn *c = a ? a->owner : NULL;

	(void)in;
	if (!c || c->handle_closing || c->sess.state != SESSION_ESTABLISHED)
		return -ENOTCONN;
	return conn_send(c, f) == 0 ? 0 : -EPIPE;
}

/* Handles one frame; `fast`: the batch's occurrences' summary when the fast path decoded it. */
static void handle_frame(struct conn *c, const Tapio__V1__Frame *f,
			 const struct ingest_fast_occ *fast)
{
	struct ingest *in = c->in;
	Tapio__V1__ErrorCode code = TAPIO__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED;
	const char *why = "";

	in->stats.frames_in++;
	c->last_frame_ms = now_ms();
	if (c->agent)
		c->agent->last_seen_ns = clock_wall_ns();
	switch (session_classify(&c->sess, f, &code, &why)) {
	case SESSION_ACT_HELLO:
		on_hello(c, f->hello);
		break;
	case SESSION_ACT_HEARTBEAT:
		in->stats.heartbeats++;
		if (registry_heartbeat(c->agent, f->heartbeat, clock_wall_ns()) < 0)
			conn_fail(c, TAPIO__V1__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
		break;
	case SESSION_ACT_BATCH:
		on_batch(c, f->event_batch, fast);
		break;
	case SESSION_ACT_CONFIG_APPLIED:
		in->stats.config_applied++;
		registry_config_applied(c->agent, f->config_applied->generation,
					f->config_applied->hash);
		break;
	case SESSION_ACT_CONFIG_REJECTED:
		in->stats.config_rejected++;
		registry_config_rejected(c->agent, f->config_rejected->generation,
					 f->config_rejected->reason);
		LOG_RATELIMITED(LOG_WARN, TAG, "agent %s rejected config generation %llu: %s",
				c->agent->id, (unsigned long long)f->config_rejected->generation,
				f->config_rejected->reason);
		break;
	case SESSION_ACT_PEER_ERROR:
		in->stats.peer_errors++;
		LOG_RATELIMITED(LOG_WARN, TAG, "%s: agent sent error %s: %s", c->remote,
				codec_error_code_name(f->error->code), f->error->message);
		conn_close(c);
		break;
	case SESSION_ACT_IGNORE:
		break;
	case SESSION_ACT_REFUSE:
		if (code == TAPIO__V1__ERROR_CODE__ERROR_CODE_WIRE_VERSION) {
			char msg[96];

			snprintf(msg, sizeof(msg),
				 "controller speaks wire version %u, agent sent %u",
				 CODEC_WIRE_VERSION, f->hello->wire_version);
			conn_fail(c, code, msg);
			break;
		}
		conn_fail(c, code, why);
		break;
	}
}

/* ---- reading ----------------------------------------------------------------------------- */

static const char *decode_why(int err)
{
	switch (err) {
	case CODEC_ERR_FRAME_EMPTY:
		return "frame length 0";
	case CODEC_ERR_FRAME_TOO_LARGE:
		return "frame length over the maximum";
	case CODEC_ERR_MALFORMED:
		return "frame payload is not a tapio.v1.Frame";
	case CODEC_ERR_NOMEM:
		return "out of memory";
	default:
		return codec_error_name(err);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = container_of((uv_tcp_t *)h, struct conn, tcp);

	buf->base = (char *)c->in->rbuf;
	/*
	 * this iteration's read budget spent: no buffer, so libuv reads nothing and calls
	 * on_read with UV_ENOBUFS; the socket stays ready and is read next iteration, after the
	 * loop has run the commit completions that arrived meanwhile (a loop that read everything
	 * ready first delayed them by 8 ms per 60 ms commit at full load, and the writer with them)
	 */
	buf->len = c->in->iter_bytes < INGEST_ITER_BYTES ? INGEST_READ_BUF : 0;
}

static void on_iter(uv_prepare_t *h)
{
	struct ingest *in = container_of(h, struct ingest, iter);

	in->iter_bytes = 0;
}

/*
 * The EventBatch fast path (common/occ_wire.h): when the next complete frame is a batch in
 * the canonical shape, decodes it straight from the wire (no protobuf-c, nothing allocated in
 * the steady state) and handles it. Each occurrence is checked where it lies in the frame
 * (occ_wire_iter_check: parsed and validated without building its struct) and only what
 * append_batch needs of it is kept (in->sc_fast, in->sc_nodes); nothing is counted or
 * interned before the frame is handled.
 * Returns 1 when it did, 0 when there is no complete frame or the frame is for the generic
 * decoder, which then handles it exactly as before (errors, counters, Error frames). The
 * summaries never take more memory than the generic decode of the same frame may
 * (codec_unpack_budget).
 */
static int drain_fast(struct conn *c)
{
	struct ingest *in = c->in;
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__EventBatch eb = TAPIO__V1__EVENT_BATCH__INIT;
	struct occ_wire_summary one;
	struct occ_wire_batch b;
	struct occ_wire_iter it;
	const uint8_t *payload = NULL;
	size_t len = 0, budget, runs = 0;
	int r;

	if (codec_decoder_peek(&c->dec, &payload, &len) != 1 ||
	    occ_wire_batch_scan(payload, len, &b) < 0 ||
	    b.n > codec_unpack_budget(len) / sizeof(struct tapio_occurrence) ||
	    (b.n && scratch_reserve(in, b.n) < 0))
		return 0;
	budget = codec_unpack_budget(len);
	occ_wire_iter_init(&it, &b);
	for (size_t i = 0; (r = occ_wire_iter_check(&it, &b, budget, &one, &in->sc_wire[i],
						    &in->sc_wire_len[i])) == 1;
	     i++) {
		struct ingest_fast_occ *fo = &in->sc_fast[i];
		char *run = runs ? in->sc_nodes[runs - 1] : NULL;

		/* the reason is derived again only if the batch is handled (fast_again) */
		fo->valid = one.valid;
		if (!fo->valid)
			continue;
		fo->timestamp_ns = one.timestamp_ns;
		fo->type = one.type;
		fo->severity = one.severity;
		/* a run's name is NUL-padded: equal when the bytes match and the name ends there */
		if (!run || run[one.node_len] != '\0' ||
		    !occ_bytes_equal(run, one.node, one.node_len)) {
			run = in->sc_nodes[runs++];
			memset(run, 0, TAPIO_NAME_LEN);
			memcpy(run, one.node, one.node_len);
		}
		fo->node_run = (uint32_t)(runs - 1);
	}
	if (r < 0)
		return 0;
	codec_decoder_consume(&c->dec, b.unpack_bytes);
	eb.session_id = b.session_id;
	eb.sequence = b.sequence;
	eb.n_occurrences = b.n;
	f.msg_case = TAPIO__V1__FRAME__MSG_EVENT_BATCH;
	f.event_batch = &eb;
	handle_frame(c, &f, in->sc_fast);
	codec_arena_reset(&in->arena);
	return 1;
}

/* Handles every complete frame the decoder holds. Returns 0, or -1 once c is closing. */
static int drain(struct conn *c)
{
	for (;;) {
		Tapio__V1__Frame *f;
		int r;

		if (drain_fast(c)) {
			if (c->handle_closing || c->sess.state == SESSION_CLOSING)
				return -1;
			continue;
		}
		r = codec_decoder_next_arena(&c->dec, &c->in->arena, &f);
		if (r <= 0)
			codec_arena_reset(&c->in->arena);
		if (r < 0) {
			conn_fail(c, codec_error_to_proto(r), decode_why(r));
			return -1;
		}
		if (r == 0)
			return 0;
		handle_frame(c, f, NULL);
		codec_arena_reset(&c->in->arena);
		if (c->handle_closing || c->sess.state == SESSION_CLOSING)
			return -1;
	}
}

/* Decodes and handles plaintext bytes. Returns 0, or -1 once c is closing. */
static int feed_plain(struct conn *c, const uint8_t *p, size_t left)
{
	while (left > 0) {
		ssize_t n = codec_decoder_feed(&c->dec, p, left);

		if (n < 0) {
			conn_fail(c, codec_error_to_proto((int)n), decode_why((int)n));
			return -1;
		}
		p += n;
		left -= (size_t)n;
		if (drain(c) < 0)
			return -1;
		if (n == 0)
			break; /* cannot happen: a waiting frame was just drained */
	}
	return 0;
}

static uint32_t addr_hash(const char *remote)
{
	uint32_t h = 2166136261u; /* FNV-1a over the address without the port */
	const char *end = strrchr(remote, ':');

	for (const char *p = remote; *p && p != end; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h;
}

/* True when this peer address was not told about this reason within the last minute. */
static bool peer_log_ok(struct ingest *in, const char *remote, enum tls_fail why)
{
	uint32_t h = addr_hash(remote);
	uint64_t now = now_ms();
	struct ingest_peer_log *slot = &in->peer_log[h % INGEST_PEER_LOG_SLOTS];

	if (slot->addr_hash == h && slot->reason == (uint8_t)why && now - slot->at_ms < 60000)
		return false;
	slot->addr_hash = h;
	slot->reason = (uint8_t)why;
	slot->at_ms = now;
	return true;
}

/* The TLS layer failed: count, log once per peer and reason, send the alert and close. */
static void tls_failed(struct conn *c)
{
	struct ingest *in = c->in;
	enum tls_fail why = tls_conn_fail_reason(c->tls);

	if (c->sess.state == SESSION_AWAIT_HELLO && !tls_conn_established(c->tls)) {
		in->stats.tls_handshake_failures++;
		if ((unsigned)why < TLS_FAIL__COUNT)
			in->stats.tls_failures[why]++;
	} else {
		in->stats.tls_errors++;
	}
	if (peer_log_ok(in, c->remote, why))
		log_warn(TAG, "%s: TLS handshake refused (%s): %s; disconnecting", c->remote,
			 tls_fail_name(why), tls_conn_error(c->tls));
	session_closing(&c->sess);
	waiters_remove(in, c);
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->closing_ms = now_ms();
	c->close_after_write = true;
	conn_flush(c); /* the alert, when OpenSSL queued one */
	if (!c->writing)
		conn_close(c);
}

/* Decrypts ciphertext and handles the plaintext. Returns 0, or -1 once c is closing. */
static int feed_tls(struct conn *c, const uint8_t *p, size_t len)
{
	bool was_established = tls_conn_established(c->tls);
	ssize_t n;

	if (tls_conn_feed(c->tls, p, len) < 0) {
		conn_close(c);
		return -1;
	}
	while ((n = tls_conn_read(c->tls, c->in->tbuf, INGEST_READ_BUF)) > 0) {
		if (feed_plain(c, c->in->tbuf, (size_t)n) < 0)
			return -1;
	}
	if (!was_established && tls_conn_established(c->tls)) {
		char name[64];

		c->in->stats.tls_handshakes++;
		log_debug(TAG, "%s: TLS established, client certificate '%s'", c->remote,
			  tls_conn_peer_name(c->tls, name, sizeof(name)));
	}
	if (n == -EPIPE) { /* close_notify: the agent is done */
		conn_close(c);
		return -1;
	}
	if (n < 0) {
		tls_failed(c);
		return -1;
	}
	conn_flush(c); /* handshake messages */
	return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = container_of((uv_tcp_t *)s, struct conn, tcp);
	const uint8_t *p = (const uint8_t *)buf->base;

	if (nread == 0 || nread == UV_ENOBUFS) /* ENOBUFS: budget spent (on_alloc) */
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			log_debug(TAG, "read from %s: %s", c->remote, uv_strerror((int)nread));
		conn_close(c);
		return;
	}
	c->in->stats.bytes_in += (uint64_t)nread;
	c->in->iter_bytes += (uint64_t)nread;
	if (c->tls ? feed_tls(c, p, (size_t)nread) < 0 : feed_plain(c, p, (size_t)nread) < 0)
		return;
	if (codec_decoder_pending(&c->dec) == 0 && c->dec.buf) {
		/* nothing partial held: give the buffer back so idle agents cost almost nothing */
		codec_decoder_fini(&c->dec);
		codec_decoder_init(&c->dec, c->in->opt.max_frame);
	}
}

/* ---- accepting, sweeping, stopping ------------------------------------------------------- */

static void on_connection(uv_stream_t *server, int status)
{
	struct ingest *in = container_of((uv_tcp_t *)server, struct ingest, server);
	struct sockaddr_storage ss;
	int namelen = sizeof(ss), r;
	struct conn *c;

	if (status < 0) {
		in->stats.accept_errors++;
		LOG_RATELIMITED(LOG_WARN, TAG, "accept: %s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		in->stats.accept_errors++;
		LOG_RATELIMITED(LOG_ERROR, TAG, "accept: out of memory");
		return;
	}
	c->in = in;
	uv_tcp_init(in->loop, &c->tcp);
	in->stats.current++;
	in->stats.accepted++;
	session_init(&c->sess);
	codec_decoder_init(&c->dec, in->opt.max_frame);
	c->accepted_ms = c->last_frame_ms = now_ms();
	c->next = in->conns;
	if (in->conns)
		in->conns->prev = c;
	in->conns = c;
	r = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (r < 0 || in->stopping) {
		if (r < 0) {
			in->stats.accept_errors++;
			LOG_RATELIMITED(LOG_WARN, TAG, "uv_accept: %s", uv_strerror(r));
		}
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (in->opt.tls && !(c->tls = tls_conn_new(in->opt.tls))) {
		in->stats.accept_errors++;
		LOG_RATELIMITED(LOG_ERROR, TAG, "accept: out of memory for TLS");
		conn_close(c);
		return;
	}
	snprintf(c->remote, sizeof(c->remote), "?");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &namelen) == 0) {
		char ip[INET6_ADDRSTRLEN] = "";

		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;

			uv_ip6_name(a6, ip, sizeof(ip));
			snprintf(c->remote, sizeof(c->remote), "[%s]:%u", ip, ntohs(a6->sin6_port));
		} else {
			struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

			uv_ip4_name(a4, ip, sizeof(ip));
			snprintf(c->remote, sizeof(c->remote), "%s:%u", ip, ntohs(a4->sin_port));
		}
	}
	r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (r < 0) {
		LOG_RATELIMITED(LOG_WARN, TAG, "uv_read_start: %s", uv_strerror(r));
		conn_close(c);
	}
}

static void on_sweep(uv_timer_t *t)
{
	struct ingest *in = container_of(t, struct ingest, sweep);
	uint64_t now = now_ms();
	struct conn *c, *next;

	for (c = in->conns; c; c = next) {
		next = c->next;
		if (c->handle_closing)
			continue;
		if (c->sess.state == SESSION_CLOSING) {
			if (now - c->closing_ms >= CLOSING_GRACE_MS)
				conn_close(c);
			continue;
		}
		if (c->paused)
			continue;
		if (c->sess.state == SESSION_AWAIT_HELLO &&
		    now - c->accepted_ms >= in->opt.hello_timeout_ms) {
			in->stats.hello_timeouts++;
			conn_fail(c, TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE,
				  "no hello within the hello timeout");
		} else if (c->sess.state == SESSION_ESTABLISHED &&
			   now - c->last_frame_ms >= in->opt.idle_timeout_ms) {
			in->stats.idle_timeouts++;
			conn_fail(c, TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE,
				  "no frame within the idle timeout");
		}
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	struct ingest *in = h->data;

	in->handles_open--;
	maybe_stopped(in);
}

static void maybe_stopped(struct ingest *in)
{
	struct conn *c, *next;

	if (!in->stopping)
		return;
	if (!in->closing_handles) {
		if (in->commit_inflight)
			return;
		request_commit(in);
		if (in->commit_inflight)
			return;
		in->closing_handles = true;
		for (c = in->conns; c; c = next) {
			next = c->next;
			conn_close(c);
		}
		if (!uv_is_closing((uv_handle_t *)&in->sweep))
			uv_close((uv_handle_t *)&in->sweep, on_handle_closed);
		if (!uv_is_closing((uv_handle_t *)&in->iter))
			uv_close((uv_handle_t *)&in->iter, on_handle_closed);
		return;
	}
	if (in->handles_open == 0 && in->stats.current == 0 && in->on_stopped) {
		void (*cb)(struct ingest *, void *) = in->on_stopped;

		in->on_stopped = NULL;
		cb(in, in->stopped_ctx);
	}
}

void ingest_stop(struct ingest *in, void (*cb)(struct ingest *in, void *ctx), void *ctx)
{
	if (in->stopping)
		return;
	in->stopping = true;
	in->on_stopped = cb;
	in->stopped_ctx = ctx;
	if (!uv_is_closing((uv_handle_t *)&in->server))
		uv_close((uv_handle_t *)&in->server, on_handle_closed);
	for (struct conn *c = in->conns; c; c = c->next)
		if (!c->handle_closing)
			uv_read_stop((uv_stream_t *)&c->tcp);
	maybe_stopped(in);
	/* everything may already be closed; the callbacks run on the next loop turn */
}

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss)
{
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return -EINVAL;
}

int ingest_start(struct ingest *in, uv_loop_t *loop, const struct ingest_options *o,
		 struct store *store, struct registry *registry, struct aggregate *aggregate)
{
	struct ingest_options d;
	struct sockaddr_storage ss;
	int namelen = sizeof(ss), r;

	ingest_options_defaults(&d);
	memset(in, 0, sizeof(*in));
	in->loop = loop;
	in->opt = *o;
	if (!in->opt.host)
		in->opt.host = d.host;
	if (!in->opt.backlog)
		in->opt.backlog = d.backlog;
	if (!in->opt.max_frame)
		in->opt.max_frame = d.max_frame;
	if (!in->opt.hello_timeout_ms)
		in->opt.hello_timeout_ms = d.hello_timeout_ms;
	if (!in->opt.idle_timeout_ms)
		in->opt.idle_timeout_ms = d.idle_timeout_ms;
	if (!in->opt.heartbeat_interval_ms)
		in->opt.heartbeat_interval_ms = d.heartbeat_interval_ms;
	if (!in->opt.max_output_bytes)
		in->opt.max_output_bytes = d.max_output_bytes;
	if (!in->opt.high_water_bytes)
		in->opt.high_water_bytes = d.high_water_bytes;
	if (!in->opt.low_water_bytes || in->opt.low_water_bytes > in->opt.high_water_bytes)
		in->opt.low_water_bytes = in->opt.high_water_bytes / 4;
	in->store = store;
	in->registry = registry;
	registry->stale_after_ns = 3ull * in->opt.heartbeat_interval_ms * 1000000ull;
	in->aggregate = aggregate;
	if (parse_addr(in->opt.host, in->opt.port, &ss) < 0)
		return -EINVAL;
	in->controller_id = strdup(o->controller_id ? o->controller_id : d.controller_id);
	in->host = strdup(in->opt.host);
	in->token = o->token && o->token[0] ? strdup(o->token) : NULL;
	in->rbuf = malloc(INGEST_READ_BUF);
	in->pack_bound = occ_pack_bound();
	in->tbuf = o->tls ? malloc(INGEST_READ_BUF) : NULL;
	if (!in->controller_id || !in->host || !in->rbuf || (o->tls && !in->tbuf) ||
	    (o->token && o->token[0] && !in->token)) {
		ingest_fini(in);
		return -ENOMEM;
	}
	in->opt.host = in->host;
	in->opt.controller_id = in->controller_id;
	in->opt.token = in->token;
	uv_tcp_init(loop, &in->server);
	uv_timer_init(loop, &in->sweep);
	uv_prepare_init(loop, &in->iter);
	in->server.data = in;
	in->sweep.data = in;
	in->iter.data = in;
	in->handles_open = 3;
	r = uv_tcp_bind(&in->server, (const struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&in->server, in->opt.backlog, on_connection);
	if (r == 0)
		r = uv_tcp_getsockname(&in->server, (struct sockaddr *)&ss, &namelen);
	if (r < 0) {
		uv_close((uv_handle_t *)&in->server, on_handle_closed);
		uv_close((uv_handle_t *)&in->sweep, on_handle_closed);
		uv_close((uv_handle_t *)&in->iter, on_handle_closed);
		return r;
	}
	in->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						  : ((struct sockaddr_in *)&ss)->sin_port);
	in->listening = true;
	uv_timer_start(&in->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
	uv_unref((uv_handle_t *)&in->sweep);
	uv_prepare_start(&in->iter, on_iter);
	uv_unref((uv_handle_t *)&in->iter);
	return 0;
}

int ingest_port(const struct ingest *in)
{
	return in->port;
}

void ingest_fini(struct ingest *in)
{
	if (!in)
		return;
	free(in->controller_id);
	free(in->host);
	free(in->token);
	free(in->rbuf);
	free(in->tbuf);
	in->tbuf = NULL;
	codec_arena_fini(&in->arena);
	free(in->sc_meta);
	free(in->sc_rec);
	free(in->sc_len);
	free(in->sc_off);
	free(in->sc_wire);
	free(in->sc_wire_len);
	free(in->sc_fast);
	free(in->sc_nodes);
	free(in->sc_bytes);
	in->sc_meta = NULL;
	in->sc_rec = NULL;
	in->sc_len = in->sc_off = in->sc_wire_len = NULL;
	in->sc_wire = NULL;
	in->sc_fast = NULL;
	in->sc_nodes = NULL;
	in->sc_bytes = NULL;
	in->sc_cap = in->sc_bytes_cap = 0;
	in->controller_id = in->host = in->token = NULL;
	in->rbuf = NULL;
}

const struct ingest_stats *ingest_get_stats(const struct ingest *in)
{
	return &in->stats;
}

json_t *ingest_stats_json(const struct ingest *in)
{
	const struct ingest_stats *s = &in->stats;
	json_t *errors = json_object(), *o;

	if (!errors)
		return NULL;
	for (int i = 1; i < INGEST_ERROR_CODES; i++)
		json_object_set_new(errors, codec_error_code_name((Tapio__V1__ErrorCode)i),
				    json_integer((json_int_t)s->errors_sent[i]));
	o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "accepted",
		      (json_int_t)s->accepted, "closed", (json_int_t)s->closed, "current",
		      (json_int_t)s->current, "accept_errors", (json_int_t)s->accept_errors,
		      "frames_in", (json_int_t)s->frames_in, "frames_out",
		      (json_int_t)s->frames_out, "bytes_in", (json_int_t)s->bytes_in, "bytes_out",
		      (json_int_t)s->bytes_out, "hellos", (json_int_t)s->hellos, "heartbeats",
		      (json_int_t)s->heartbeats, "batches", (json_int_t)s->batches, "occurrences",
		      (json_int_t)s->occurrences, "acks", (json_int_t)s->acks);
	if (!o) {
		json_decref(errors);
		return NULL;
	}
	json_object_set_new(o, "duplicates", json_integer((json_int_t)s->duplicates));
	json_object_set_new(o, "gaps", json_integer((json_int_t)s->gaps));
	json_object_set_new(o, "gap_sequences", json_integer((json_int_t)s->gap_sequences));
	json_object_set_new(o, "regressions", json_integer((json_int_t)s->regressions));
	json_object_set_new(o, "invalid_occurrences",
			    json_integer((json_int_t)s->invalid_occurrences));
	json_object_set_new(o, "config_applied", json_integer((json_int_t)s->config_applied));
	json_object_set_new(o, "config_rejected", json_integer((json_int_t)s->config_rejected));
	json_object_set_new(o, "errors_sent", errors);
	json_object_set_new(o, "peer_errors", json_integer((json_int_t)s->peer_errors));
	json_object_set_new(o, "hello_timeouts", json_integer((json_int_t)s->hello_timeouts));
	json_object_set_new(o, "idle_timeouts", json_integer((json_int_t)s->idle_timeouts));
	json_object_set_new(o, "output_overflows", json_integer((json_int_t)s->output_overflows));
	json_object_set_new(o, "superseded", json_integer((json_int_t)s->superseded));
	json_object_set_new(o, "commits", json_integer((json_int_t)s->commits));
	json_object_set_new(o, "commit_failures", json_integer((json_int_t)s->commit_failures));
	json_object_set_new(o, "backpressure_events",
			    json_integer((json_int_t)s->backpressure_events));
	json_object_set_new(o, "backpressure", json_boolean(s->backpressure));
	json_object_set_new(o, "tls", json_boolean(in->opt.tls != NULL));
	json_object_set_new(o, "tls_handshakes", json_integer((json_int_t)s->tls_handshakes));
	json_object_set_new(o, "tls_handshake_failures",
			    json_integer((json_int_t)s->tls_handshake_failures));
	json_object_set_new(o, "tls_errors", json_integer((json_int_t)s->tls_errors));
	{
		json_t *by = json_object();

		for (int i = 1; by && i < TLS_FAIL__COUNT; i++)
			json_object_set_new(by, tls_fail_name((enum tls_fail)i),
					    json_integer((json_int_t)s->tls_failures[i]));
		if (by)
			json_object_set_new(o, "tls_failures", by);
	}
	json_object_set_new(o, "pending_bytes",
			    json_integer((json_int_t)(s->appended_bytes - s->durable_bytes)));
	return o;
}
