/*
 * The controller client against a minimal in-test controller peer over real loopback TCP.
 * The peer is built from common/codec.h: it decodes frames, answers Hello with Welcome
 * (carrying its durable sequence for the session), stores new batches and acks them.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/client/client.h"
#include "agent/sink/controller.h"
#include "common/occ_json.h"
#include "common/codec.h"
#include "common/occ_proto.h"
#include "common/ulid.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct rx {
	uint64_t session;
	uint64_t seq;
	uint32_t count;
};

struct peer;

struct pconn {
	uv_tcp_t tcp;
	struct peer *p;
	struct codec_decoder dec;
	uint32_t batches; /* received on this connection */
	bool closing;
	struct pconn *next;
};

struct peer {
	uv_loop_t *loop;
	uv_tcp_t srv;
	bool listening;
	bool srv_closing;
	uint16_t port;
	struct pconn *conns;
	uint64_t session;
	uint64_t durable;     /* highest stored sequence of `session` */
	bool ack;	      /* store and ack batches (false: receive and forget) */
	uint32_t close_after; /* drop a connection after this many batches on it (0 = never) */
	uint32_t hellos;
	uint32_t welcomes;
	struct rx *rx; /* every batch received, duplicates included */
	size_t nrx, rxcap;
	struct tapio_occurrence *occs; /* stored occurrences, in sequence order */
	size_t nocc, occcap;
	uint64_t heartbeats;
	uint32_t config_answers;
	bool config_applied;
	bool refuse; /* answer Hello with Error{WIRE_VERSION} */
	uint64_t hb_events;
	uint64_t hb_queue_depth;
	uint32_t hb_observers;
};

static uv_loop_t loop;
static uv_timer_t tick;

static void on_tick(uv_timer_t *t)
{
}

static void setup(void)
{
	cr_assert_eq(uv_loop_init(&loop), 0);
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 5, 5);
}

static void on_tick_closed(uv_handle_t *h)
{
}

static void close_leftover(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h)) {
		(*(int *)arg)++;
		uv_close(h, NULL);
	}
}

/* A test that failed half-way leaves handles open: close them so the run ends, and say so. */
static void teardown_loop(void)
{
	int leftover = 0;

	uv_close((uv_handle_t *)&tick, on_tick_closed);
	uv_walk(&loop, close_leftover, &leftover);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0, "loop still has requests");
	cr_assert_eq(leftover, 0, "%d handles were left open", leftover);
}

typedef bool (*pred_fn)(void *arg);

static bool run_until(pred_fn pred, void *arg, uint64_t timeout_ms)
{
	uint64_t end = uv_now(&loop) + timeout_ms;

	while (!pred(arg)) {
		if (uv_now(&loop) > end)
			return false;
		uv_run(&loop, UV_RUN_ONCE);
	}
	return true;
}

static void run_for(uint64_t ms)
{
	uint64_t end;

	uv_update_time(&loop);
	end = uv_now(&loop) + ms;
	while (uv_now(&loop) < end)
		uv_run(&loop, UV_RUN_ONCE);
}

/* ---- the peer ---------------------------------------------------------------------------- */

static void pconn_closed(uv_handle_t *h)
{
	struct pconn *k = container_of(h, struct pconn, tcp);
	struct pconn **pp = &k->p->conns;

	while (*pp && *pp != k)
		pp = &(*pp)->next;
	if (*pp)
		*pp = k->next;
	codec_decoder_fini(&k->dec);
	free(k);
}

static void pconn_close(struct pconn *k)
{
	if (k->closing)
		return;
	k->closing = true;
	uv_close((uv_handle_t *)&k->tcp, pconn_closed);
}

static void peer_send(struct pconn *k, const Tapio__V1__Frame *f)
{
	uint8_t buf[256];
	ssize_t n = codec_encode_frame(f, buf, sizeof(buf));
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);

	cr_assert_gt(n, 0);
	/* small frames: a blocking-enough try_write on loopback */
	cr_assert_eq(uv_try_write((uv_stream_t *)&k->tcp, &b, 1), n);
}

static void peer_frame(struct pconn *k, Tapio__V1__Frame *f)
{
	struct peer *p = k->p;
	Tapio__V1__Frame out = TAPIO__V1__FRAME__INIT;

	switch (f->msg_case) {
	case TAPIO__V1__FRAME__MSG_HELLO: {
		Tapio__V1__Welcome w = TAPIO__V1__WELCOME__INIT;

		p->hellos++;
		cr_assert_eq(codec_check_hello(f->hello), 0);
		if (p->refuse) {
			Tapio__V1__Error e = TAPIO__V1__ERROR__INIT;

			e.code = TAPIO__V1__ERROR_CODE__ERROR_CODE_WIRE_VERSION;
			e.message = "controller speaks wire version 2";
			out.msg_case = TAPIO__V1__FRAME__MSG_ERROR;
			out.error = &e;
			peer_send(k, &out);
			pconn_close(k);
			return;
		}
		cr_assert_str_eq(f->hello->node, "node-a");
		cr_assert_str_eq(f->hello->agent_id, "agent-a");
		cr_assert_neq(f->hello->session_id, 0);
		if (f->hello->session_id != p->session) {
			p->session = f->hello->session_id;
			p->durable = 0;
		}
		w.controller_id = "peer";
		w.wire_version = CODEC_WIRE_VERSION;
		w.session_accepted = true;
		w.session_id = p->session;
		w.last_acked_sequence = p->durable;
		w.heartbeat_interval_ms = 50;
		out.msg_case = TAPIO__V1__FRAME__MSG_WELCOME;
		out.welcome = &w;
		peer_send(k, &out);
		p->welcomes++;
		break;
	}
	case TAPIO__V1__FRAME__MSG_EVENT_BATCH: {
		Tapio__V1__EventBatch *b = f->event_batch;
		Tapio__V1__Ack a = TAPIO__V1__ACK__INIT;

		if (p->nrx == p->rxcap) {
			p->rxcap = p->rxcap ? p->rxcap * 2 : 256;
			p->rx = realloc(p->rx, p->rxcap * sizeof(*p->rx));
		}
		p->rx[p->nrx++] =
		    (struct rx){b->session_id, b->sequence, (uint32_t)b->n_occurrences};
		cr_assert_eq(b->session_id, p->session);
		/* without ack the peer behaves like a controller that never made it durable */
		if (p->ack && b->sequence > p->durable) {
			for (size_t i = 0; i < b->n_occurrences; i++) {
				char err[128];
				if (p->nocc == p->occcap) {
					p->occcap = p->occcap ? p->occcap * 2 : 1024;
					p->occs = realloc(p->occs, p->occcap * sizeof(*p->occs));
				}
				cr_assert_eq(occ_from_proto(b->occurrences[i], &p->occs[p->nocc],
							    err, sizeof(err)),
					     0, "%s", err);
				p->nocc++;
			}
			p->durable = b->sequence;
		}
		k->batches++;
		if (p->close_after && k->batches >= p->close_after) {
			pconn_close(k);
			return;
		}
		if (p->ack) {
			a.session_id = p->session;
			a.durable_sequence = p->durable;
			out.msg_case = TAPIO__V1__FRAME__MSG_ACK;
			out.ack = &a;
			peer_send(k, &out);
		}
		break;
	}
	case TAPIO__V1__FRAME__MSG_HEARTBEAT:
		p->heartbeats++;
		p->hb_events = f->heartbeat->counters->events;
		p->hb_queue_depth = f->heartbeat->counters->queue_depth;
		p->hb_observers = (uint32_t)f->heartbeat->n_observers;
		break;
	case TAPIO__V1__FRAME__MSG_CONFIG_APPLIED:
		p->config_answers++;
		p->config_applied = true;
		break;
	case TAPIO__V1__FRAME__MSG_CONFIG_REJECTED:
		p->config_answers++;
		p->config_applied = false;
		break;
	default:
		cr_assert_fail("unexpected frame %s", codec_frame_kind(f));
	}
}

static void palloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	static char buf[65536];

	*b = uv_buf_init(buf, sizeof(buf));
}

static void pread_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct pconn *k = container_of(s, struct pconn, tcp);
	size_t off = 0;

	if (n < 0) {
		pconn_close(k);
		return;
	}
	while (off < (size_t)n && !k->closing) {
		ssize_t used =
		    codec_decoder_feed(&k->dec, (uint8_t *)b->base + off, (size_t)n - off);
		Tapio__V1__Frame *f;

		cr_assert_geq(used, 0, "peer decoder: %s", codec_error_name((int)used));
		off += (size_t)used;
		while (!k->closing && codec_decoder_next(&k->dec, &f) == 1) {
			peer_frame(k, f);
			tapio__v1__frame__free_unpacked(f, NULL);
		}
	}
}

static void on_peer_conn(uv_stream_t *srv, int status)
{
	struct peer *p = container_of(srv, struct peer, srv);
	struct pconn *k = calloc(1, sizeof(*k));

	cr_assert_eq(status, 0);
	k->p = p;
	codec_decoder_init(&k->dec, 0);
	uv_tcp_init(p->loop, &k->tcp);
	cr_assert_eq(uv_accept(srv, (uv_stream_t *)&k->tcp), 0);
	k->next = p->conns;
	p->conns = k;
	uv_read_start((uv_stream_t *)&k->tcp, palloc, pread_cb);
}

static void peer_listen(struct peer *p)
{
	struct sockaddr_in a;
	struct sockaddr_storage got;
	int len = sizeof(got);

	uv_ip4_addr("127.0.0.1", p->port, &a);
	cr_assert_eq(uv_tcp_init(p->loop, &p->srv), 0);
	cr_assert_eq(uv_tcp_bind(&p->srv, (struct sockaddr *)&a, 0), 0);
	cr_assert_eq(uv_listen((uv_stream_t *)&p->srv, 16, on_peer_conn), 0);
	uv_tcp_getsockname(&p->srv, (struct sockaddr *)&got, &len);
	p->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
	p->listening = true;
}

static void on_srv_closed(uv_handle_t *h)
{
	struct peer *p = container_of(h, struct peer, srv);

	p->srv_closing = false;
}

static bool peer_closed(void *arg)
{
	struct peer *p = arg;
	return !p->srv_closing && !p->conns;
}

/* Stops listening and drops every connection. */
static void peer_stop(struct peer *p)
{
	if (p->listening) {
		p->listening = false;
		p->srv_closing = true;
		uv_close((uv_handle_t *)&p->srv, on_srv_closed);
	}
	for (struct pconn *k = p->conns; k; k = k->next)
		pconn_close(k);
	cr_assert(run_until(peer_closed, p, 2000));
}

static void peer_init(struct peer *p)
{
	memset(p, 0, sizeof(*p));
	p->loop = &loop;
	p->ack = true;
	peer_listen(p);
}

static void peer_fini(struct peer *p)
{
	peer_stop(p);
	free(p->rx);
	free(p->occs);
}

/* ---- client helpers ---------------------------------------------------------------------- */

static struct client_options opts(const struct peer *p)
{
	struct client_options o = {0};

	o.host = "127.0.0.1";
	o.port = p->port;
	o.agent_id = "agent-a";
	o.node = "node-a";
	o.cluster = "test";
	o.capabilities[0] = "config.push";
	o.batch_max = 50;
	o.batch_max_ms = 10;
	o.backoff_min_ms = 5;
	o.backoff_max_ms = 50;
	o.heartbeat_interval_ms = 50;
	return o;
}

static void make_occ(struct tapio_occurrence *o, uint32_t i)
{
	enum tapio_occ_type t = (enum tapio_occ_type)(i % TAPIO_OCC__COUNT);

	occurrence_init(o, t, 1700000000000000000ull + i * 1000ull, "node-a", "test");
	o->config_generation = 7;
	snprintf(o->error_message, sizeof(o->error_message), "occurrence %u", i);
	switch (tapio_catalogue[t].observer) {
	case TAPIO_OBS_NETWORK:
		o->data.network.pid = 1000 + i;
		snprintf(o->data.network.comm, sizeof(o->data.network.comm), "curl");
		snprintf(o->data.network.src_ip, sizeof(o->data.network.src_ip), "10.0.0.1");
		snprintf(o->data.network.dst_ip, sizeof(o->data.network.dst_ip), "10.0.0.%u",
			 i % 250);
		o->data.network.src_port = (uint16_t)(40000 + i % 1000);
		o->data.network.dst_port = 443;
		o->data.network.family = 4;
		break;
	case TAPIO_OBS_CONTAINER:
		o->data.container.pid = 2000 + i;
		o->data.container.tid = 2000 + i;
		snprintf(o->data.container.comm, sizeof(o->data.container.comm), "java");
		o->data.container.exit_code = -1;
		o->data.container.signal = 9;
		o->data.container.cgroup_id = 4242 + i;
		snprintf(o->data.container.cgroup_path, sizeof(o->data.container.cgroup_path),
			 "/kubepods/pod%u", i);
		break;
	case TAPIO_OBS_STORAGE:
		o->data.storage.pid = 3000 + i;
		snprintf(o->data.storage.comm, sizeof(o->data.storage.comm), "postgres");
		o->data.storage.dev_major = 8;
		o->data.storage.sector = i * 8ull;
		o->data.storage.bytes = 4096;
		snprintf(o->data.storage.opcode, sizeof(o->data.storage.opcode), "write");
		o->data.storage.latency_ms = 75.5 + i;
		break;
	default:
		if (t == TAPIO_OCC_MEMORY_PRESSURE) {
			o->data.node.cpu = -1;
			o->data.node.memory_some_avg10 = 42.5;
			o->data.node.memory_full_avg10 = 12.25;
			break;
		}
		o->data.node.cpu = (int32_t)(i % 2);
		o->data.node.cycles = 1000000ull + i;
		o->data.node.instructions = 500000ull + i;
		o->data.node.ipc = 0.5;
		o->data.node.stall_pct = 45.0;
		break;
	}
}

static void submit_n(struct client *c, struct tapio_occurrence *sent, uint32_t from, uint32_t n)
{
	for (uint32_t i = from; i < from + n; i++) {
		make_occ(&sent[i], i);
		cr_assert_eq(client_submit(c, &sent[i]), 0);
	}
}

struct wait_rx {
	struct peer *p;
	size_t nocc;
};

static bool got_occs(void *arg)
{
	struct wait_rx *w = arg;
	return w->p->nocc >= w->nocc;
}

struct wait_idle {
	struct client *c;
};

static bool client_drained(void *arg)
{
	struct client_stats st;

	client_counters(((struct wait_idle *)arg)->c, &st);
	return st.queue_depth == 0 && st.connected;
}

static bool three_hellos(void *arg)
{
	return ((struct peer *)arg)->hellos >= 3;
}

static bool flag_set(void *arg)
{
	return *(bool *)arg;
}

static void on_closed(void *arg)
{
	*(bool *)arg = true;
}

static void close_client(struct client *c)
{
	bool done = false;

	client_close(c, on_closed, &done);
	cr_assert(run_until(flag_set, &done, 5000), "client did not close");
}

static void assert_same_occ(const struct tapio_occurrence *a, const struct tapio_occurrence *b)
{
	cr_assert_str_eq(a->id, b->id);
	cr_assert_eq(a->timestamp_ns, b->timestamp_ns);
	cr_assert_eq(a->type, b->type);
	cr_assert_eq(a->severity, b->severity);
	cr_assert_eq(a->outcome, b->outcome);
	cr_assert_str_eq(a->error_message, b->error_message);
	cr_assert_str_eq(a->node, b->node);
	cr_assert_str_eq(a->cluster, b->cluster);
	cr_assert_eq(a->config_generation, b->config_generation);
	for (size_t i = 0; i < sizeof(a->data); i++)
		cr_assert_eq(((const uint8_t *)&a->data)[i], ((const uint8_t *)&b->data)[i],
			     "data of %s (%s) differs at byte %zu", a->id,
			     tapio_occ_type_name(a->type), i);
}

/* Batches received in order: each connection's stream starts at the peer's durable + 1 and
 * increases by one. */
static void assert_monotonic(const struct peer *p)
{
	for (size_t i = 1; i < p->nrx; i++) {
		if (p->rx[i].seq != p->rx[i - 1].seq + 1)
			cr_assert_leq(p->rx[i].seq, p->rx[i - 1].seq,
				      "sequence jumped from %lu to %lu",
				      (unsigned long)p->rx[i - 1].seq, (unsigned long)p->rx[i].seq);
	}
}

static char *make_tmpdir(void)
{
	char *d = strdup("/tmp/tapio-client-XXXXXX");

	cr_assert_not_null(mkdtemp(d));
	return d;
}

static void rm_rf(char *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
	free(dir);
}

/* ---- tests ------------------------------------------------------------------------------- */

TestSuite(client, .init = setup, .fini = teardown_loop, .timeout = 60);

Test(client, batches_in_order_with_intact_occurrences)
{
	enum { N = 1037 };
	static struct tapio_occurrence sent[N];
	struct peer p;
	struct client_options o;
	struct client *c;
	struct client_stats st;
	char err[256];

	peer_init(&p);
	o = opts(&p);
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(client_start(c), 0);
	submit_n(c, sent, 0, N);
	struct wait_idle wi = {c};
	struct wait_rx w = {&p, N};
	cr_assert(run_until(got_occs, &w, 10000), "peer got %zu of %d", p.nocc, N);
	cr_assert(run_until(client_drained, &wi, 5000));
	run_for(120); /* a couple of heartbeats */

	cr_assert_eq(p.nocc, N);
	for (size_t i = 0; i < N; i++)
		assert_same_occ(&p.occs[i], &sent[i]);
	cr_assert_eq(p.rx[0].seq, 1);
	for (size_t i = 0; i < p.nrx; i++) {
		cr_assert_eq(p.rx[i].seq, i + 1);
		cr_assert_eq(p.rx[i].session, client_session_id(c));
		cr_assert_leq(p.rx[i].count, 50);
	}
	cr_assert_eq(p.nrx, (N + 49) / 50);
	cr_assert_geq(p.heartbeats, 1);
	client_counters(c, &st);
	cr_assert_eq(st.submitted, N);
	cr_assert_eq(st.occurrences_acked, N);
	cr_assert_eq(st.batches_acked, p.nrx);
	cr_assert_eq(st.batches_resent, 0);
	cr_assert_eq(st.dropped_queue + st.dropped_spool, 0);
	cr_assert_eq(st.queue_bytes, 0);
	close_client(c);
	peer_fini(&p);
}

/* Pre-packed and struct submissions, interleaved: every occurrence arrives intact, in order. */
Test(client, submit_packed_keeps_order_and_bytes)
{
	enum { N = 301 };
	static struct tapio_occurrence sent[N];
	static uint8_t buf[4096];
	struct peer p;
	struct client_options o;
	struct client *c;
	struct client_stats st;
	char err[256];

	peer_init(&p);
	o = opts(&p);
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(client_start(c), 0);
	for (uint32_t i = 0; i < N; i++) {
		make_occ(&sent[i], i);
		if ((i / 7) % 2) {
			cr_assert_eq(client_submit(c, &sent[i]), 0);
			continue;
		}
		Tapio__V1__Occurrence msg;
		struct occ_proto_scratch scratch;
		size_t len;

		occ_to_proto(&sent[i], &msg, &scratch);
		len = tapio__v1__occurrence__get_packed_size(&msg);
		cr_assert_leq(len, sizeof(buf));
		tapio__v1__occurrence__pack(&msg, buf);
		cr_assert_eq(client_submit_packed(c, buf, len), 0);
	}
	cr_assert_eq(client_submit_packed(c, buf, 0), -EINVAL);
	cr_assert_eq(client_submit_packed(c, buf, CLIENT_MAX_PACKED_BYTES + 1), -EINVAL);
	struct wait_idle wi = {c};
	struct wait_rx w = {&p, N};
	cr_assert(run_until(got_occs, &w, 10000), "peer got %zu of %d", p.nocc, N);
	cr_assert(run_until(client_drained, &wi, 5000));
	cr_assert_eq(p.nocc, N);
	for (size_t i = 0; i < N; i++)
		assert_same_occ(&p.occs[i], &sent[i]);
	for (size_t i = 0; i < p.nrx; i++) {
		cr_assert_eq(p.rx[i].seq, i + 1);
		cr_assert_eq(p.rx[i].session, client_session_id(c));
	}
	client_counters(c, &st);
	cr_assert_eq(st.submitted, N);
	cr_assert_eq(st.occurrences_acked, N);
	cr_assert_eq(st.dropped_queue + st.dropped_spool, 0);
	close_client(c);
	peer_fini(&p);
}

Test(client, reconnects_and_resends_with_same_session_and_sequence)
{
	enum { N = 2000 };
	static struct tapio_occurrence sent[N];
	struct peer p;
	struct client_options o;
	struct client *c;
	struct client_stats st;
	char err[256];

	peer_init(&p);
	p.ack = false;	   /* nothing is acked before the drop: everything must be resent */
	p.close_after = 7; /* the peer hangs up mid-stream */
	o = opts(&p);
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	client_start(c);
	submit_n(c, sent, 0, N);
	struct wait_rx w = {&p, N};
	/* after a few hang-ups, let the peer store, ack and stay */
	cr_assert(run_until(three_hellos, &p, 10000));
	cr_assert_eq(p.nocc, 0);
	p.ack = true;
	p.close_after = 0;
	cr_assert(run_until(got_occs, &w, 10000), "peer got %zu of %d", p.nocc, N);
	struct wait_idle wi = {c};
	cr_assert(run_until(client_drained, &wi, 5000));

	cr_assert_geq(p.hellos, 2, "the client reconnected");
	cr_assert_eq(p.nocc, N);
	for (size_t i = 0; i < N; i++)
		assert_same_occ(&p.occs[i], &sent[i]);
	/* every (session, seq) the peer saw twice is the same batch: same count */
	for (size_t i = 0; i < p.nrx; i++) {
		cr_assert_eq(p.rx[i].session, client_session_id(c));
		for (size_t k = 0; k < i; k++)
			if (p.rx[k].seq == p.rx[i].seq)
				cr_assert_eq(p.rx[k].count, p.rx[i].count);
	}
	cr_assert_gt(p.nrx, (size_t)(N / 50), "some batches were received twice");
	assert_monotonic(&p);
	client_counters(c, &st);
	cr_assert_gt(st.batches_resent, 0);
	cr_assert_geq(st.reconnects, 1);
	cr_assert_eq(st.occurrences_acked, N);
	cr_assert_eq(st.dropped_queue + st.dropped_spool, 0);
	close_client(c);
	peer_fini(&p);
}

Test(client, outage_never_blocks_and_delivers_everything_later)
{
	enum { N = 3000 };
	static struct tapio_occurrence sent[N];
	struct peer p;
	struct client_options o;
	struct client *c;
	struct client_stats st;
	char err[256];

	peer_init(&p);
	o = opts(&p);
	peer_stop(&p); /* the controller is down */
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	client_start(c);
	for (int round = 0; round < 6; round++) {
		uint64_t t0 = uv_hrtime();
		submit_n(c, sent, (uint32_t)round * (N / 6), N / 6);
		/* 500 submits including seals: far below any blocking connect or write */
		cr_assert_lt(uv_hrtime() - t0, 50ull * 1000 * 1000);
		run_for(40);
	}
	client_counters(c, &st);
	cr_assert_eq(st.connects, 0);
	cr_assert_geq(st.send_failures, 2, "connect attempts kept failing");
	cr_assert_eq(st.queue_depth, N / 50);
	peer_listen(&p); /* same port */
	struct wait_rx w = {&p, N};
	cr_assert(run_until(got_occs, &w, 10000), "peer got %zu of %d", p.nocc, N);
	for (size_t i = 0; i < N; i++)
		assert_same_occ(&p.occs[i], &sent[i]);
	for (size_t i = 0; i < p.nrx; i++)
		cr_assert_eq(p.rx[i].seq, i + 1);
	close_client(c);
	peer_fini(&p);
}

Test(client, tiny_spool_bound_counts_exactly_what_is_missing)
{
	enum { N = 4000 };
	static struct tapio_occurrence sent[N];
	struct peer p;
	struct client_options o;
	struct client *c;
	struct client_stats st;
	char err[256];
	char *dir = make_tmpdir();

	peer_init(&p);
	o = opts(&p);
	peer_stop(&p);
	o.spool_dir = dir;
	o.spool_max_bytes = 64 << 10;
	o.spool_segment_bytes = 8 << 10;
	o.queue_max_bytes = 16 << 10;
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	client_start(c);
	for (int round = 0; round < 8; round++) {
		submit_n(c, sent, (uint32_t)round * (N / 8), N / 8);
		run_for(30);
	}
	client_flush(c);
	run_for(100);
	client_counters(c, &st);
	cr_assert_gt(st.dropped_spool, 0, "the bound was exceeded");
	cr_assert_leq(st.spool_bytes, (64 << 10) + (8 << 10) + 16384);
	peer_listen(&p);
	struct wait_idle wi = {c};
	cr_assert(run_until(client_drained, &wi, 10000));
	client_counters(c, &st);
	cr_assert_eq(p.nocc + st.dropped_spool, N, "peer %zu + dropped %lu != %d", p.nocc,
		     (unsigned long)st.dropped_spool, N);
	cr_assert_eq(st.occurrences_acked, p.nocc);
	/* the oldest were dropped: what arrived is the newest suffix, intact and in order */
	for (size_t i = 0; i < p.nocc; i++)
		assert_same_occ(&p.occs[i], &sent[N - p.nocc + i]);
	close_client(c);
	peer_fini(&p);
	rm_rf(dir);
}

Test(client, restart_resends_spooled_batches_with_original_identity)
{
	enum { N = 1500 };
	static struct tapio_occurrence sent[N + 100];
	struct peer p;
	struct client_options o;
	struct client *c;
	struct client_stats st;
	uint64_t session;
	char err[256];
	char *dir = make_tmpdir();

	peer_init(&p);
	o = opts(&p);
	o.spool_dir = dir;
	o.spool_fsync = true;
	/* first life: the controller takes the first 10 batches, then goes away */
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	session = client_session_id(c);
	client_start(c);
	submit_n(c, sent, 0, 500);
	cr_assert(run_until(got_occs, &(struct wait_rx){&p, 500}, 10000));
	struct wait_idle wi = {c};
	cr_assert(run_until(client_drained, &wi, 5000));
	peer_stop(&p);
	submit_n(c, sent, 500, N - 500);
	run_for(50);
	close_client(c); /* the agent exits with 20 batches unacknowledged */

	/* second life on the same spool */
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(client_session_id(c), session, "session id persisted with the spool");
	client_counters(c, &st);
	cr_assert_eq(st.queue_depth, (N - 500) / 50);
	cr_assert_eq(st.next_sequence, N / 50 + 1);
	peer_listen(&p);
	client_start(c);
	submit_n(c, sent, N, 100); /* new evidence continues the sequence */
	cr_assert(run_until(got_occs, &(struct wait_rx){&p, N + 100}, 10000));
	wi.c = c;
	cr_assert(run_until(client_drained, &wi, 5000));
	cr_assert_eq(p.nocc, N + 100);
	for (size_t i = 0; i < N + 100; i++)
		assert_same_occ(&p.occs[i], &sent[i]);
	for (size_t i = 0; i < p.nrx; i++) {
		cr_assert_eq(p.rx[i].session, session);
		cr_assert_eq(p.rx[i].seq, i + 1, "batch %zu has seq %lu", i,
			     (unsigned long)p.rx[i].seq);
	}
	close_client(c);

	/* third life: everything was acked, nothing is resent */
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	client_counters(c, &st);
	cr_assert_eq(st.queue_depth, 0);
	cr_assert_eq(st.next_sequence, (N + 100) / 50 + 1);
	close_client(c);
	peer_fini(&p);
	rm_rf(dir);
}

static int accept_config(void *arg, const Tapio__V1__ConfigPush *push, char *reason, size_t len)
{
	if (push->generation == 13) {
		snprintf(reason, len, "generation 13 is unlucky");
		return -EINVAL;
	}
	return 0;
}

Test(client, config_push_is_answered)
{
	struct peer p;
	struct client_options o;
	struct client *c;
	struct client_stats st;
	char err[256];

	peer_init(&p);
	o = opts(&p);
	o.on_config = accept_config;
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	client_start(c);
	struct wait_idle wi = {c};
	cr_assert(run_until(client_drained, &wi, 5000));
	cr_assert_not_null(p.conns);
	for (uint64_t gen = 12; gen <= 13; gen++) {
		Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
		Tapio__V1__ConfigPush push = TAPIO__V1__CONFIG_PUSH__INIT;
		uint32_t before = p.config_answers;

		push.generation = gen;
		push.hash = "sha256:00";
		f.msg_case = TAPIO__V1__FRAME__MSG_CONFIG_PUSH;
		f.config_push = &push;
		peer_send(p.conns, &f);
		run_for(50);
		cr_assert_eq(p.config_answers, before + 1);
		cr_assert_eq(p.config_applied, gen == 12);
	}
	client_counters(c, &st);
	cr_assert_eq(st.configs_applied, 1);
	cr_assert_eq(st.configs_rejected, 1);
	close_client(c);
	peer_fini(&p);
}

Test(client, parse_endpoint)
{
	char host[64];
	uint16_t port;

	cr_assert_eq(client_parse_endpoint("127.0.0.1:7070", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "127.0.0.1");
	cr_assert_eq(port, 7070);
	cr_assert_eq(client_parse_endpoint("[::1]:9", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "::1");
	cr_assert_eq(port, 9);
	cr_assert_eq(client_parse_endpoint("host", host, sizeof(host), &port), -EINVAL);
	cr_assert_eq(client_parse_endpoint("host:0", host, sizeof(host), &port), -EINVAL);
	cr_assert_eq(client_parse_endpoint("host:70000", host, sizeof(host), &port), -EINVAL);
	cr_assert_eq(client_parse_endpoint(":80", host, sizeof(host), &port), -EINVAL);
}

static void on_sink_closed(void *arg, const struct sink_counters *final)
{
	struct sink_counters *out = arg;

	*out = *final;
	out->rotations = 1; /* marks "closed" */
}

static bool sink_done(void *arg)
{
	return ((struct sink_counters *)arg)->rotations == 1;
}

Test(client, controller_sink_delivers_json_lines_and_occurrences)
{
	enum { N = 230 };
	static struct tapio_occurrence sent[N];
	struct peer p;
	struct client_options o;
	struct sink_counters final = {0};
	struct sink *s;
	char line[TAPIO_OCC_JSON_MAX];
	char err[256];

	peer_init(&p);
	o = opts(&p);
	s = sink_controller_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(s, "%s", err);
	cr_assert_str_eq(s->ops->name, "controller");
	for (uint32_t i = 0; i < N; i++) {
		ssize_t n;

		make_occ(&sent[i], i);
		if (i % 2) {
			cr_assert_eq(sink_controller_submit(s, &sent[i]), 0);
			continue;
		}
		n = occ_json_write(&sent[i], line, sizeof(line));
		cr_assert_gt(n, 0);
		cr_assert_eq(sink_write(s, line, (size_t)n), 0);
	}
	cr_assert_eq(sink_write(s, "{not json", 9), -EINVAL);
	sink_flush(s);
	cr_assert(run_until(got_occs, &(struct wait_rx){&p, N}, 10000));
	for (size_t i = 0; i < N; i++)
		assert_same_occ(&p.occs[i], &sent[i]);
	sink_close(s, on_sink_closed, &final);
	cr_assert(run_until(sink_done, &final, 5000));
	cr_assert_eq(final.writes, N);
	cr_assert_eq(final.drops, 1);
	cr_assert_eq(final.errors, 1);
	peer_fini(&p);
}

static bool connected(void *arg)
{
	struct client_stats st;

	client_counters(arg, &st);
	return st.connected;
}

Test(client, wire_version_error_slows_retries_to_the_long_backoff)
{
	struct peer p;
	struct client_options o;
	struct client *c;
	struct client_stats st;
	char err[256];

	peer_init(&p);
	p.refuse = true;
	o = opts(&p);
	o.backoff_min_ms = 2;
	o.backoff_max_ms = 300;
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	client_start(c);
	run_for(700);
	/* at the short back-off this would be hundreds of attempts */
	cr_assert_geq(p.hellos, 1);
	cr_assert_leq(p.hellos, 4, "%u attempts in 700 ms", p.hellos);
	client_counters(c, &st);
	cr_assert_eq(st.connects, 0);
	cr_assert_geq(st.errors_received, 1);
	p.refuse = false; /* the controller was upgraded */
	cr_assert(run_until(connected, c, 2000));
	close_client(c);
	peer_fini(&p);
}

static void fill_counters(void *arg, struct client_heartbeat *hb)
{
	hb->events = 42;
	hb->anomalies[TAPIO_OCC_OOM_KILL] = 3;
	hb->observers[0] = (struct client_observer_state){
	    "network", TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_RUNNING, NULL};
	hb->observers[1] = (struct client_observer_state){
	    "node", TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_UNSUPPORTED, "no PMU"};
}

static bool got_heartbeat(void *arg)
{
	return ((struct peer *)arg)->heartbeats > 0;
}

Test(client, heartbeats_carry_agent_and_client_counters)
{
	struct peer p;
	struct client_options o;
	struct client *c;
	char err[256];

	peer_init(&p);
	o = opts(&p);
	o.counters = fill_counters;
	c = client_new(&loop, &o, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	client_start(c);
	cr_assert(run_until(got_heartbeat, &p, 2000));
	cr_assert_eq(p.hb_events, 42);
	cr_assert_eq(p.hb_observers, 2);
	cr_assert_eq(p.hb_queue_depth, 0);
	close_client(c);
	peer_fini(&p);
}
