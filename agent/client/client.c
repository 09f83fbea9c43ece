/*
 * Controller client: batching, sequencing, the unacknowledged queue (memory + spool), the
 * session state machine (connect, Hello/Welcome, batches, acks, heartbeats, config pushes)
 * and reconnects with backoff. Everything runs on the caller's loop; spool I/O runs as one
 * threadpool job at a time.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/utsname.h>

#include "agent/client/client.h"
#include "agent/client/spool.h"
#include "common/clock.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/occ_proto.h"
#include "common/tls.h"

#define TAG		 "client"
#define WRITE_HIGH_BYTES (4u << 20) /* bytes queued on the socket before we wait */
#define LOAD_MAX_BYTES	 (1u << 20) /* payload read from the spool per job */
#define READ_BUF_BYTES	 (64u << 10)

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/*
 * Room in front of a pre-packed batch for its frame header: length, Frame.event_batch key and
 * length, EventBatch.session_id and .sequence (keys and varints at their largest).
 */
#define PK_HEAD_MAX (CODEC_HEADER_LEN + 1 + 5 + 1 + 10 + 1 + 10)
/*
 * Pre-packed batch buffers are sized in steps of this: a steady sender's batches then come in
 * a few sizes, so malloc reuses the ones acked batches free as exact fits instead of searching
 * through as many sizes as there were batches (the capacity beyond the batch, ~5 %, is the
 * price; the queue bound counts frame bytes, as for every batch).
 */
#define PK_CAP_STEP 4096u

/*
 * A refcounted encoded frame: held by the queue, a socket write and a spool append. data
 * points into mem: at its start, or behind unused header room for a pre-packed batch, which is
 * built in place (client_packed_reserve) and gets its header written in front when sealed.
 */
struct bbuf {
	int refs;
	uint32_t len;
	uint8_t *data;
	uint8_t mem[];
};

static struct bbuf *bbuf_new(size_t len)
{
	struct bbuf *b = malloc(sizeof(*b) + len);

	if (b) {
		b->refs = 1;
		b->len = (uint32_t)len;
		b->data = b->mem;
	}
	return b;
}

static struct bbuf *bbuf_get(struct bbuf *b)
{
	__atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
	return b;
}

static void bbuf_put(struct bbuf *b)
{
	if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(b);
}

/* One unacknowledged sealed batch. */
struct entry {
	uint64_t seq;
	uint32_t count;
	uint32_t len;
	struct bbuf *buf;  /* NULL when only in the spool (or lost) */
	bool spooled;	   /* the append completed */
	bool sent;	   /* written on this session's connection, not yet confirmed */
	bool ever_sent;	   /* written at least once (resend accounting) */
	bool lost;	   /* neither in memory nor in the spool (counted) */
	bool spool_failed; /* the append failed: memory is the only copy */
};

/* Evicted batches that may have reached the controller: Welcome/Ack decides. */
struct limbo {
	uint64_t seq;
	uint32_t count;
	uint64_t *counter; /* where it counts when it turns out lost */
};

struct append {
	uint64_t seq;
	uint32_t count;
	struct bbuf *buf;
};

struct loaded {
	uint64_t seq;
	struct bbuf *buf;
};

/* One spool job: inputs filled on the loop, run on the threadpool, results back on the loop. */
struct job {
	uv_work_t work;
	struct client *c;
	struct append *appends;
	size_t nappends;
	int append_err;
	size_t appended; /* appends[0..appended) are on disk */
	uint64_t ack;	 /* 0 = none */
	int ack_err;
	uint64_t load_from, load_to; /* load_from 0 = none */
	struct loaded *loads;
	size_t nloads, loadcap;
	int load_err;
	struct spool_evicted ev;
	uint64_t spool_bytes;
};

struct conn {
	uv_tcp_t tcp;
	uv_connect_t creq;
	struct client *c;
	struct codec_decoder dec;
	bool welcomed;
	bool closing;
	size_t write_bytes;
	struct tls_conn *tls; /* NULL without TLS */
	uint8_t rbuf[READ_BUF_BYTES];
};

struct wreq {
	uv_write_t req;
	struct conn *conn;
	struct bbuf *buf;
};

struct client {
	uv_loop_t *loop;
	struct client_options o; /* strings point into the copies below */
	char *strs[8 + 2 * CLIENT_MAX_LABELS + CLIENT_MAX_CAPABILITIES];
	size_t nstrs;
	char kernel[65], arch[65];
	char config_hash[80];
	uint64_t config_generation;
	uint64_t session;
	uint64_t next_seq;
	uint64_t acked;
	uint64_t start_ms;
	uint64_t rng;

	/* open batch */
	struct tapio_occurrence *open;
	uint32_t nopen, open_cap;
	Tapio__V1__Occurrence *msgs;
	Tapio__V1__Occurrence **ptrs;
	struct occ_proto_scratch *scratch;
	uint8_t *enc; /* encode scratch buffer */
	size_t enccap;
	/*
	 * open batch of pre-packed occurrences (client_packed_reserve): EventBatch field-3
	 * elements written in place at pkb->mem + PK_HEAD_MAX by the sender; the frame header
	 * goes in front when sealed, so the sealed buffer is the batch itself (no copy)
	 */
	struct bbuf *pkb;
	size_t pklen, pkcap; /* bytes committed, room behind the header room */
	size_t pkres;	     /* bytes of the reserved, not yet committed occurrence */
	size_t pkhint;	     /* room for the next batch: the last one's size and some slack */
	uint32_t npk;

	/* unacknowledged batches, ordered by seq (ring, cap a power of two) */
	struct entry *ents;
	size_t head, n, cap;
	uint64_t mem_bytes;
	size_t evict_hint; /* entries before this index hold no buffer */
	uint64_t send_seq; /* next sequence to write on the connection */
	struct limbo *limbo;
	size_t nlimbo, limbocap;
	struct loaded *reload; /* batches read back from the spool, ordered */
	size_t nreload, reloadpos;

	/* spool */
	struct spool *spool;
	struct append *appends;
	size_t nappends, appendcap;
	uint64_t ack_pending;
	bool load_wanted;
	struct job *job; /* in flight */

	/* connection */
	struct conn *conn;
	int conns_open; /* connection handles not yet closed */
	uv_getaddrinfo_t gai;
	bool resolving;
	uint32_t attempt;
	bool wire_refused;
	bool started;
	uint32_t hb_ms;
	struct tls_ctx *tls; /* NULL without TLS */

	uv_timer_t batch_timer, hb_timer, retry_timer, hs_timer;
	uv_idle_t kick;
	int handles_open;
	bool handles_closing;
	bool closing;
	client_closed_fn closed_cb;
	void *closed_arg;

	struct client_stats st;
};

static void kick_send(struct client *c);
static void kick_spool(struct client *c);
static void on_kick(uv_idle_t *h);
static void conn_drop(struct conn *k, const char *why);
static void maybe_finish_close(struct client *c);

/* ---- small helpers ----------------------------------------------------------------------- */

static uint64_t rng_next(struct client *c)
{
	/* xorshift64*: jitter only, not security */
	c->rng ^= c->rng >> 12;
	c->rng ^= c->rng << 25;
	c->rng ^= c->rng >> 27;
	return c->rng * 0x2545F4914F6CDD1Dull;
}

static const char *keep(struct client *c, const char *s)
{
	char *d;

	if (!s)
		return NULL;
	if (c->nstrs == sizeof(c->strs) / sizeof(c->strs[0]))
		return NULL;
	d = strdup(s);
	if (d)
		c->strs[c->nstrs++] = d;
	return d;
}

static struct entry *ent_at(struct client *c, size_t i)
{
	return &c->ents[(c->head + i) & (c->cap - 1)];
}

static int ent_push(struct client *c, const struct entry *e)
{
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 64;
		struct entry *p = malloc(ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		for (size_t i = 0; i < c->n; i++)
			p[i] = *ent_at(c, i);
		free(c->ents);
		c->ents = p;
		c->cap = ncap;
		c->head = 0;
	}
	c->ents[(c->head + c->n) & (c->cap - 1)] = *e;
	c->n++;
	return 0;
}

static void ent_pop(struct client *c)
{
	struct entry *e = ent_at(c, 0);

	if (e->buf) {
		c->mem_bytes -= e->len;
		bbuf_put(e->buf);
	}
	c->head = (c->head + 1) & (c->cap - 1);
	c->n--;
	if (c->evict_hint)
		c->evict_hint--;
}

/* First index whose seq >= seq (c->n when none). */
static size_t ent_find(struct client *c, uint64_t seq)
{
	size_t lo = 0, hi = c->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ent_at(c, mid)->seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void count_lost(struct client *c, uint64_t seq, uint32_t count, uint64_t *counter)
{
	*counter += count;
	if (c->o.on_dropped)
		c->o.on_dropped(c->o.arg, seq, count);
}

static void count_acked(struct client *c, uint64_t seq, uint32_t count)
{
	c->st.batches_acked++;
	c->st.occurrences_acked += count;
	if (c->o.on_acked)
		c->o.on_acked(c->o.arg, seq, count);
}

/*
 * The front entry leaves the queue without an ack. If it was written to the controller it may
 * still have been stored: the next Ack or Welcome decides (limbo); otherwise it is lost now.
 */
static void evict_front(struct client *c, uint64_t *counter)
{
	struct entry *e = ent_at(c, 0);

	if (e->lost) {
		/* already counted */
	} else if (e->sent) {
		if (c->nlimbo == c->limbocap) {
			size_t ncap = c->limbocap ? c->limbocap * 2 : 16;
			struct limbo *p = realloc(c->limbo, ncap * sizeof(*p));
			if (!p) {
				count_lost(c, e->seq, e->count, counter);
				goto pop;
			}
			c->limbo = p;
			c->limbocap = ncap;
		}
		c->limbo[c->nlimbo++] = (struct limbo){e->seq, e->count, counter};
	} else {
		count_lost(c, e->seq, e->count, counter);
	}
pop:
	ent_pop(c);
}

/* Resolves limbo entries: <= acked were stored; with final, the rest are lost. */
static void limbo_resolve(struct client *c, uint64_t acked, bool final)
{
	size_t keep_n = 0;

	for (size_t i = 0; i < c->nlimbo; i++) {
		struct limbo *l = &c->limbo[i];
		if (l->seq <= acked)
			count_acked(c, l->seq, l->count);
		else if (final)
			count_lost(c, l->seq, l->count, l->counter);
		else
			c->limbo[keep_n++] = *l;
	}
	c->nlimbo = keep_n;
}

static void release_acked(struct client *c, uint64_t seq)
{
	while (c->n > 0 && ent_at(c, 0)->seq <= seq) {
		struct entry *e = ent_at(c, 0);
		if (!e->lost)
			count_acked(c, e->seq, e->count);
		ent_pop(c);
	}
	while (c->reloadpos < c->nreload && c->reload[c->reloadpos].seq <= seq)
		bbuf_put(c->reload[c->reloadpos++].buf);
	limbo_resolve(c, seq, false);
	if (seq > c->acked)
		c->acked = seq;
	if (c->spool && seq > c->ack_pending)
		c->ack_pending = seq;
	if (c->send_seq <= seq)
		c->send_seq = seq + 1;
}

/* Keeps the memory queue under its bound (oldest buffers first). */
static void enforce_memory(struct client *c)
{
	while (c->mem_bytes > c->o.queue_max_bytes && c->n > 0) {
		if (!c->spool) {
			evict_front(c, &c->st.dropped_queue);
			continue;
		}
		size_t i = c->evict_hint;
		while (i < c->n && !ent_at(c, i)->buf)
			i++;
		if (i >= c->n)
			break;
		struct entry *e = ent_at(c, i);
		bbuf_put(e->buf);
		e->buf = NULL;
		c->mem_bytes -= e->len;
		if (e->spool_failed) {
			/* the append failed: this was the only copy */
			e->lost = true;
			count_lost(c, e->seq, e->count, &c->st.dropped_spool_error);
		}
		c->evict_hint = i + 1;
	}
}

static void schedule_kick(struct client *c)
{
	if (!c->handles_closing)
		uv_idle_start(&c->kick, on_kick);
}

/* ---- batching ---------------------------------------------------------------------------- */

/* Encodes the open struct batch as a frame into c->enc. Returns its size or -errno. */
static ssize_t encode_open(struct client *c)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__EventBatch b = TAPIO__V1__EVENT_BATCH__INIT;
	ssize_t n;

	for (uint32_t i = 0; i < c->nopen; i++) {
		occ_to_proto(&c->open[i], &c->msgs[i], &c->scratch[i]);
		c->ptrs[i] = &c->msgs[i];
	}
	b.session_id = c->session;
	b.sequence = c->next_seq;
	b.n_occurrences = c->nopen;
	b.occurrences = c->ptrs;
	f.msg_case = TAPIO__V1__FRAME__MSG_EVENT_BATCH;
	f.event_batch = &b;
	/* encode once into the scratch buffer (packed-size computation is the costly part) */
	n = codec_encode_frame(&f, c->enc, c->enccap);
	if (n == -ENOSPC) {
		size_t size = codec_frame_size(&f);
		uint8_t *p = realloc(c->enc, size);
		if (p) {
			c->enc = p;
			c->enccap = size;
			n = codec_encode_frame(&f, c->enc, c->enccap);
		}
	}
	return n;
}

static size_t varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/*
 * Finishes the open pre-packed batch in place: the header of Frame{event_batch = EventBatch{
 * session_id, sequence, then the occurrences exactly as submitted}} (the field order and
 * encoding protobuf-c itself produces) is written right in front of the occurrences. Returns
 * the buffer (the caller owns it; c no longer holds it) or NULL (batch lost).
 */
static struct bbuf *finish_packed(struct client *c)
{
	struct bbuf *b = c->pkb, *s;
	size_t inner = c->pklen, cap = c->pkcap, payload, hlen;
	uint8_t head[PK_HEAD_MAX], *p = head;

	c->pkb = NULL;
	c->pkcap = 0;
	if (c->session)
		inner += 1 + varint_size(c->session);
	if (c->next_seq)
		inner += 1 + varint_size(c->next_seq);
	payload = 1 + varint_size(inner) + inner;
	if (payload > CODEC_MAX_FRAME_LIMIT) {
		free(b);
		return NULL;
	}
	*p++ = (uint8_t)(payload >> 24);
	*p++ = (uint8_t)(payload >> 16);
	*p++ = (uint8_t)(payload >> 8);
	*p++ = (uint8_t)payload;
	*p++ = (TAPIO__V1__FRAME__MSG_EVENT_BATCH << 3) | 2;
	p = put_varint(p, inner);
	if (c->session) {
		*p++ = (1 << 3) | 0; /* EventBatch.session_id */
		p = put_varint(p, c->session);
	}
	if (c->next_seq) {
		*p++ = (2 << 3) | 0; /* EventBatch.sequence */
		p = put_varint(p, c->next_seq);
	}
	hlen = (size_t)(p - head);
	memcpy(b->mem + PK_HEAD_MAX - hlen, head, hlen);
	b->len = (uint32_t)(hlen + c->pklen);
	/* the queue holds it until acked: an odd, much smaller batch hands back its tail */
	if (cap - c->pklen > c->pklen / 4 && (s = realloc(b, sizeof(*b) + PK_HEAD_MAX + c->pklen)))
		b = s;
	b->data = b->mem + PK_HEAD_MAX - hlen;
	/* the next batch is likely alike: room for it at once (a little more, for variance) */
	c->pkhint = c->pklen + c->pklen / 32;
	return b;
}

static void seal(struct client *c)
{
	uint32_t count = c->nopen ? c->nopen : c->npk;
	struct entry e = {0};
	struct bbuf *buf;
	size_t size;
	ssize_t n;

	if (count == 0)
		return;
	uv_timer_stop(&c->batch_timer);
	if (c->nopen) {
		n = encode_open(c);
		buf = n > 0 ? bbuf_new((size_t)n) : NULL;
		if (buf)
			memcpy(buf->data, c->enc, (size_t)n);
	} else {
		buf = finish_packed(c);
	}
	c->nopen = 0;
	c->npk = 0;
	c->pklen = 0;
	if (!buf) {
		count_lost(c, c->next_seq, count, &c->st.dropped_queue);
		c->next_seq++;
		return;
	}
	size = buf->len;
	e.seq = c->next_seq++;
	e.count = count;
	e.len = (uint32_t)size;
	e.buf = buf;
	if (ent_push(c, &e) < 0) {
		bbuf_put(buf);
		count_lost(c, e.seq, e.count, &c->st.dropped_queue);
		return;
	}
	c->mem_bytes += size;
	c->st.batches_sealed++;
	if (c->o.on_sealed)
		c->o.on_sealed(c->o.arg, e.seq, e.count);
	if (c->spool) {
		if (c->nappends == c->appendcap) {
			size_t ncap = c->appendcap ? c->appendcap * 2 : 64;
			struct append *p = realloc(c->appends, ncap * sizeof(*p));
			if (!p) {
				LOG_RATELIMITED(LOG_WARN, TAG,
						"out of memory queueing spool append");
				goto out;
			}
			c->appends = p;
			c->appendcap = ncap;
		}
		c->appends[c->nappends++] = (struct append){e.seq, e.count, bbuf_get(buf)};
	}
out:
	enforce_memory(c);
	schedule_kick(c);
}

static void on_batch_timer(uv_timer_t *t)
{
	seal(container_of(t, struct client, batch_timer));
}

/* The open batch grows on demand up to batch_max, so idle clients stay small. */
static int grow_open(struct client *c)
{
	uint32_t ncap = c->open_cap ? c->open_cap * 2 : 16;
	struct tapio_occurrence *o;
	Tapio__V1__Occurrence *m, **p;
	struct occ_proto_scratch *sc;

	if (ncap > c->o.batch_max)
		ncap = c->o.batch_max;
	o = realloc(c->open, ncap * sizeof(*o));
	if (o)
		c->open = o;
	m = realloc(c->msgs, ncap * sizeof(*m));
	if (m)
		c->msgs = m;
	p = realloc(c->ptrs, ncap * sizeof(*p));
	if (p)
		c->ptrs = p;
	sc = realloc(c->scratch, ncap * sizeof(*sc));
	if (sc)
		c->scratch = sc;
	if (!o || !m || !p || !sc)
		return -ENOMEM;
	c->open_cap = ncap;
	return 0;
}

int client_submit(struct client *c, const struct tapio_occurrence *occ)
{
	if (c->closing) {
		c->st.dropped_closing++;
		return -ESHUTDOWN;
	}
	if (c->npk)
		seal(c); /* keep submit order: the pre-packed batch goes first */
	if (c->nopen == c->open_cap && grow_open(c) < 0) {
		count_lost(c, 0, 1, &c->st.dropped_queue);
		return -ENOMEM;
	}
	c->open[c->nopen++] = *occ;
	c->st.submitted++;
	if (c->nopen == 1)
		uv_timer_start(&c->batch_timer, on_batch_timer, c->o.batch_max_ms, 0);
	if (c->nopen >= c->o.batch_max)
		seal(c);
	return 0;
}

int client_packed_reserve(struct client *c, size_t len, uint8_t **out)
{
	size_t need;
	uint8_t *p;

	if (c->closing) {
		c->st.dropped_closing++;
		return -ESHUTDOWN;
	}
	if (len == 0 || len > CLIENT_MAX_PACKED_BYTES)
		return -EINVAL;
	if (c->nopen)
		seal(c); /* keep submit order: the struct batch goes first */
	need = c->pklen + 1 + varint_size(len) + len;
	if (need > c->pkcap) {
		size_t ncap = c->pkcap ? need + need / 2 : c->pkhint;
		struct bbuf *b;

		if (ncap < need)
			ncap = need;
		ncap = (ncap + PK_CAP_STEP - 1) / PK_CAP_STEP * PK_CAP_STEP;
		if (!(b = realloc(c->pkb, sizeof(*b) + PK_HEAD_MAX + ncap))) {
			count_lost(c, 0, 1, &c->st.dropped_queue);
			return -ENOMEM;
		}
		b->refs = 1; /* c's alone until sealed */
		c->pkb = b;
		c->pkcap = ncap;
	}
	p = c->pkb->mem + PK_HEAD_MAX + c->pklen;
	*p++ = (3 << 3) | 2; /* EventBatch.occurrences */
	p = put_varint(p, len);
	c->pkres = (size_t)(p - (c->pkb->mem + PK_HEAD_MAX + c->pklen)) + len;
	*out = p;
	return 0;
}

void client_packed_commit(struct client *c)
{
	c->pklen += c->pkres;
	c->pkres = 0;
	c->npk++;
	c->st.submitted++;
	if (c->npk == 1)
		uv_timer_start(&c->batch_timer, on_batch_timer, c->o.batch_max_ms, 0);
	if (c->npk >= c->o.batch_max || c->pklen >= CLIENT_PACKED_SEAL_BYTES)
		seal(c);
}

int client_submit_packed(struct client *c, const uint8_t *bytes, size_t len)
{
	uint8_t *p;
	int ret = client_packed_reserve(c, len, &p);

	if (ret < 0)
		return ret;
	memcpy(p, bytes, len);
	client_packed_commit(c);
	return 0;
}

void client_flush(struct client *c)
{
	seal(c);
}

/* ---- spool jobs -------------------------------------------------------------------------- */

static void on_load_record(void *arg, const struct spool_record *rec, const uint8_t *payload)
{
	struct job *j = arg;
	struct bbuf *b;

	if (j->load_err)
		return;
	if (j->nloads == j->loadcap) {
		size_t ncap = j->loadcap ? j->loadcap * 2 : 64;
		struct loaded *p = realloc(j->loads, ncap * sizeof(*p));
		if (!p) {
			j->load_err = -ENOMEM;
			return;
		}
		j->loads = p;
		j->loadcap = ncap;
	}
	b = bbuf_new(rec->len);
	if (!b) {
		j->load_err = -ENOMEM;
		return;
	}
	memcpy(b->data, payload, rec->len);
	j->loads[j->nloads++] = (struct loaded){rec->seq, b};
}

static void on_job_work(uv_work_t *w)
{
	struct job *j = container_of(w, struct job, work);
	struct spool *s = j->c->spool;

	for (size_t i = 0; i < j->nappends; i++) {
		struct append *a = &j->appends[i];
		int ret = spool_append(s, a->seq, a->count, a->buf->data, a->buf->len, &j->ev);
		if (ret < 0) {
			j->append_err = ret;
			break;
		}
		j->appended = i + 1;
	}
	if (j->appended) {
		int ret = spool_sync(s);
		if (ret < 0)
			j->append_err = ret;
	}
	if (j->ack)
		j->ack_err = spool_ack(s, j->ack);
	if (j->load_from) {
		ssize_t n =
		    spool_read(s, j->load_from, j->load_to, LOAD_MAX_BYTES, on_load_record, j);
		if (n < 0)
			j->load_err = (int)n;
	}
	j->spool_bytes = spool_bytes(s);
}

static void job_free(struct job *j)
{
	for (size_t i = 0; i < j->nappends; i++)
		bbuf_put(j->appends[i].buf);
	for (size_t i = 0; i < j->nloads; i++)
		bbuf_put(j->loads[i].buf);
	free(j->appends);
	free(j->loads);
	free(j);
}

static void on_job_done(uv_work_t *w, int status)
{
	struct job *j = container_of(w, struct job, work);
	struct client *c = j->c;

	c->job = NULL;
	c->st.spool_bytes = j->spool_bytes;
	for (size_t i = 0; i < j->nappends; i++) {
		size_t k = ent_find(c, j->appends[i].seq);
		struct entry *e = k < c->n ? ent_at(c, k) : NULL;

		if (!e || e->seq != j->appends[i].seq)
			continue; /* acked or evicted meanwhile */
		if (i < j->appended) {
			e->spooled = true;
		} else if (!e->buf && !e->lost) {
			e->lost = true;
			count_lost(c, e->seq, e->count, &c->st.dropped_spool_error);
		} else {
			e->spool_failed = true;
		}
	}
	if (j->append_err < 0)
		LOG_RATELIMITED(LOG_WARN, TAG, "spool append: %s (batches kept in memory only)",
				strerror(-j->append_err));
	if (j->ack_err < 0)
		LOG_RATELIMITED(LOG_WARN, TAG, "spool ack marker: %s", strerror(-j->ack_err));
	if (j->ev.batches) {
		LOG_RATELIMITED(LOG_WARN, TAG,
				"spool full: dropped %" PRIu64 " oldest batches (%" PRIu64
				" occurrences)",
				j->ev.batches, j->ev.occurrences);
		while (c->n > 0 && ent_at(c, 0)->seq <= j->ev.hi_seq)
			evict_front(c, &c->st.dropped_spool);
		while (c->reloadpos < c->nreload && c->reload[c->reloadpos].seq <= j->ev.hi_seq)
			bbuf_put(c->reload[c->reloadpos++].buf);
		if (c->send_seq <= j->ev.hi_seq)
			c->send_seq = j->ev.hi_seq + 1;
	}
	if (j->load_from) {
		if (j->load_err < 0)
			LOG_RATELIMITED(LOG_WARN, TAG, "spool read: %s", strerror(-j->load_err));
		/* replace the reload window with what was read */
		for (size_t i = c->reloadpos; i < c->nreload; i++)
			bbuf_put(c->reload[i].buf);
		free(c->reload);
		c->reload = j->loads;
		c->nreload = j->nloads;
		c->reloadpos = 0;
		j->loads = NULL;
		j->nloads = 0;
		if (c->nreload == 0) {
			/* unreadable or missing: mark the batch lost rather than stall the session */
			LOG_RATELIMITED(LOG_ERROR, TAG,
					"batch %" PRIu64 " cannot be read back from the spool",
					j->load_from);
			size_t k = ent_find(c, j->load_from);
			struct entry *e = k < c->n ? ent_at(c, k) : NULL;
			if (e && e->seq == j->load_from && !e->buf && !e->lost) {
				e->lost = true;
				count_lost(c, e->seq, e->count, &c->st.dropped_spool_error);
			}
		}
	}
	(void)status;
	job_free(j);
	enforce_memory(c);
	kick_spool(c);
	kick_send(c);
	maybe_finish_close(c);
}

static void kick_spool(struct client *c)
{
	struct job *j;

	if (!c->spool || c->job)
		return;
	if (!c->nappends && !c->ack_pending && !c->load_wanted)
		return;
	j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->c = c;
	j->appends = c->appends;
	j->nappends = c->nappends;
	c->appends = NULL;
	c->nappends = c->appendcap = 0;
	j->ack = c->ack_pending;
	c->ack_pending = 0;
	if (c->load_wanted && !c->closing) {
		j->load_from = c->send_seq;
		j->load_to = c->next_seq - 1;
	}
	c->load_wanted = false;
	c->job = j;
	if (uv_queue_work(c->loop, &j->work, on_job_work, on_job_done) < 0) {
		c->job = NULL;
		job_free(j);
	}
}

/* ---- connection -------------------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status)
{
	struct wreq *w = container_of(req, struct wreq, req);
	struct conn *k = w->conn;
	struct client *c = k->c;

	k->write_bytes -= w->buf->len;
	bbuf_put(w->buf);
	free(w);
	if (status < 0) {
		if (status != UV_ECANCELED) {
			c->st.send_failures++;
			conn_drop(k, uv_strerror(status));
		}
		return;
	}
	if (!k->closing)
		kick_send(c);
}

static int conn_write_raw(struct conn *k, struct bbuf *buf);

/* Writes whatever ciphertext TLS has queued (handshake, records, alerts). */
static int tls_flush(struct conn *k)
{
	size_t n = tls_conn_output_pending(k->tls);
	struct bbuf *b;
	int ret;

	if (!n)
		return 0;
	b = bbuf_new(n);
	if (!b)
		return -ENOMEM;
	b->len = (uint32_t)tls_conn_output_read(k->tls, b->data, n);
	ret = conn_write_raw(k, b);
	bbuf_put(b);
	return ret;
}

/* Queues buf (a reference is taken) on the connection. Returns 0 or a negative error. */
static int conn_write(struct conn *k, struct bbuf *buf)
{
	int ret;

	if (!k->tls)
		return conn_write_raw(k, buf);
	ret = tls_conn_write(k->tls, buf->data, buf->len);
	if (ret < 0)
		return ret == -EPROTO ? -ECONNRESET : ret;
	return tls_flush(k);
}

static int conn_write_raw(struct conn *k, struct bbuf *buf)
{
	struct wreq *w = malloc(sizeof(*w));
	uv_buf_t ub;
	int ret;

	if (!w)
		return -ENOMEM;
	w->conn = k;
	w->buf = bbuf_get(buf);
	ub = uv_buf_init((char *)buf->data, buf->len);
	ret = uv_write(&w->req, (uv_stream_t *)&k->tcp, &ub, 1, on_write);
	if (ret < 0) {
		bbuf_put(buf);
		free(w);
		return ret;
	}
	k->write_bytes += buf->len;
	return 0;
}

static int conn_send_frame(struct conn *k, const Tapio__V1__Frame *f)
{
	size_t size = codec_frame_size(f);
	struct bbuf *b = bbuf_new(size);
	int ret;

	if (!b)
		return -ENOMEM;
	if (codec_encode_frame(f, b->data, size) < 0) {
		bbuf_put(b);
		return -EMSGSIZE;
	}
	ret = conn_write(k, b);
	bbuf_put(b);
	if (ret < 0) {
		k->c->st.send_failures++;
		conn_drop(k, uv_strerror(ret));
	}
	return ret;
}

static struct bbuf *reload_take(struct client *c, uint64_t seq)
{
	while (c->reloadpos < c->nreload && c->reload[c->reloadpos].seq < seq)
		bbuf_put(c->reload[c->reloadpos++].buf);
	if (c->reloadpos < c->nreload && c->reload[c->reloadpos].seq == seq) {
		struct bbuf *b = c->reload[c->reloadpos++].buf;
		return b; /* the caller owns this reference */
	}
	return NULL;
}

static void kick_send(struct client *c)
{
	struct conn *k = c->conn;
	size_t i;

	if (!k || !k->welcomed || k->closing)
		return;
	i = ent_find(c, c->send_seq);
	while (i < c->n && k->write_bytes < WRITE_HIGH_BYTES) {
		struct entry *e = ent_at(c, i);
		struct bbuf *b = NULL;
		int ret;

		if (e->lost) {
			i++;
			c->send_seq = e->seq + 1;
			continue;
		}
		if (e->buf) {
			b = bbuf_get(e->buf);
		} else {
			b = reload_take(c, e->seq);
			if (!b) {
				c->load_wanted = true;
				kick_spool(c);
				return;
			}
		}
		ret = conn_write(k, b);
		bbuf_put(b);
		if (ret < 0) {
			c->st.send_failures++;
			conn_drop(k, uv_strerror(ret));
			return;
		}
		c->st.batches_sent++;
		if (e->ever_sent)
			c->st.batches_resent++;
		e->sent = true;
		e->ever_sent = true;
		c->send_seq = e->seq + 1;
		i++;
	}
}

static uint32_t backoff_ms(struct client *c)
{
	uint64_t cap = c->o.backoff_min_ms;

	if (c->wire_refused)
		return c->o.backoff_max_ms;
	for (uint32_t i = 0; i < c->attempt && cap < c->o.backoff_max_ms; i++)
		cap *= 2;
	if (cap > c->o.backoff_max_ms)
		cap = c->o.backoff_max_ms;
	if (c->attempt < 64)
		c->attempt++;
	return (uint32_t)(rng_next(c) % (cap + 1)); /* full jitter */
}

static void start_connect(struct client *c);

static void on_retry_timer(uv_timer_t *t)
{
	struct client *c = container_of(t, struct client, retry_timer);

	c->st.reconnects++;
	start_connect(c);
}

static void schedule_reconnect(struct client *c)
{
	uint32_t ms;

	if (c->closing)
		return;
	ms = backoff_ms(c);
	log_debug(TAG, "reconnecting in %u ms", ms);
	uv_timer_start(&c->retry_timer, on_retry_timer, ms, 0);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *k = container_of(h, struct conn, tcp);
	struct client *c = k->c;

	codec_decoder_fini(&k->dec);
	tls_conn_free(k->tls);
	free(k);
	c->conns_open--;
	if (c->closing)
		maybe_finish_close(c);
	else
		schedule_reconnect(c);
}

static void conn_drop(struct conn *k, const char *why)
{
	struct client *c = k->c;

	if (k->closing)
		return;
	k->closing = true;
	if (k->welcomed) {
		LOG_RATELIMITED(LOG_WARN, TAG, "connection to %s:%u lost: %s", c->o.host, c->o.port,
				why);
	} else {
		LOG_RATELIMITED(LOG_WARN, TAG, "cannot connect to %s:%u: %s", c->o.host, c->o.port,
				why);
	}
	c->st.connected = false;
	if (c->conn == k)
		c->conn = NULL;
	uv_timer_stop(&c->hb_timer);
	uv_timer_stop(&c->hs_timer);
	if (k->tls && tls_conn_established(k->tls) && tls_conn_shutdown(k->tls) == 0) {
		/* best-effort close_notify: only when nothing else is queued on the socket */
		uint8_t note[128];
		uv_buf_t b = uv_buf_init(
		    (char *)note, (unsigned)tls_conn_output_read(k->tls, note, sizeof(note)));

		if (b.len)
			uv_try_write((uv_stream_t *)&k->tcp, &b, 1);
	}
	uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
}

static void send_hello(struct conn *k)
{
	struct client *c = k->c;
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__Hello h = TAPIO__V1__HELLO__INIT;
	Tapio__V1__Resume r = TAPIO__V1__RESUME__INIT;
	Tapio__V1__Label labels[CLIENT_MAX_LABELS];
	Tapio__V1__Label *lp[CLIENT_MAX_LABELS];
	char *caps[CLIENT_MAX_CAPABILITIES];
	size_t nl = 0, nc = 0;

	for (size_t i = 0; i < CLIENT_MAX_CAPABILITIES && c->o.capabilities[i]; i++)
		caps[nc++] = (char *)c->o.capabilities[i];
	for (size_t i = 0; i < CLIENT_MAX_LABELS && c->o.label_keys[i]; i++) {
		tapio__v1__label__init(&labels[nl]);
		labels[nl].key = (char *)c->o.label_keys[i];
		labels[nl].value = (char *)(c->o.label_values[i] ? c->o.label_values[i] : "");
		lp[nl] = &labels[nl];
		nl++;
	}
	h.wire_version = CODEC_WIRE_VERSION;
	h.agent_id = (char *)c->o.agent_id;
	h.node = (char *)c->o.node;
	h.cluster = (char *)c->o.cluster;
	h.version = (char *)c->o.version;
	h.kernel = c->kernel;
	h.arch = c->arch;
	h.n_capabilities = nc;
	h.capabilities = caps;
	h.n_labels = nl;
	h.labels = lp;
	h.session_id = c->session;
	for (size_t i = 0; i < c->n; i++) {
		if (!ent_at(c, i)->lost) {
			r.oldest_unacked_sequence = ent_at(c, i)->seq;
			break;
		}
	}
	r.next_sequence = c->next_seq;
	h.resume = &r;
	h.token = (char *)c->o.token;
	h.config_generation = c->config_generation;
	h.config_hash = c->config_hash;
	h.max_frame_bytes = CODEC_DEFAULT_MAX_FRAME;
	f.msg_case = TAPIO__V1__FRAME__MSG_HELLO;
	f.hello = &h;
	conn_send_frame(k, &f);
}

static void on_hb_timer(uv_timer_t *t)
{
	struct client *c = container_of(t, struct client, hb_timer);
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__Heartbeat hb = TAPIO__V1__HEARTBEAT__INIT;
	Tapio__V1__Counters ct = TAPIO__V1__COUNTERS__INIT;
	Tapio__V1__TypeCount tc[TAPIO_OCC__COUNT], *tcp[TAPIO_OCC__COUNT];
	Tapio__V1__ObserverState os[TAPIO_OBS__COUNT], *osp[TAPIO_OBS__COUNT];
	char *degraded[CLIENT_MAX_DEGRADED];
	struct client_heartbeat in;
	size_t ntc = 0, nos = 0, nd = 0;

	if (!c->conn || !c->conn->welcomed)
		return;
	memset(&in, 0, sizeof(in));
	if (c->o.counters)
		c->o.counters(c->o.arg, &in);
	for (int i = 0; i < TAPIO_OCC__COUNT; i++) {
		if (!in.anomalies[i])
			continue;
		tapio__v1__type_count__init(&tc[ntc]);
		tc[ntc].type = (Tapio__V1__OccurrenceType)(i + 1);
		tc[ntc].count = in.anomalies[i];
		tcp[ntc] = &tc[ntc];
		ntc++;
	}
	for (int i = 0; i < TAPIO_OBS__COUNT && in.observers[i].name; i++) {
		tapio__v1__observer_state__init(&os[nos]);
		os[nos].name = (char *)in.observers[i].name;
		os[nos].state = in.observers[i].state;
		os[nos].reason = (char *)(in.observers[i].reason ? in.observers[i].reason : "");
		osp[nos] = &os[nos];
		nos++;
	}
	for (int i = 0; i < CLIENT_MAX_DEGRADED && in.degraded[i]; i++)
		degraded[nd++] = (char *)in.degraded[i];
	ct.events = in.events;
	ct.n_anomalies = ntc;
	ct.anomalies = tcp;
	ct.lost = in.lost;
	ct.malformed = in.malformed;
	ct.correlation_drops = in.correlation_drops;
	ct.sink_writes = in.sink_writes;
	ct.sink_drops = in.sink_drops;
	ct.send_failures = c->st.send_failures;
	ct.queue_depth = c->n;
	ct.queue_drops = c->st.dropped_queue + c->st.dropped_spool_error + c->st.dropped_closing;
	ct.spool_bytes = c->st.spool_bytes;
	ct.spool_drops = c->st.dropped_spool;
	hb.timestamp_ns = clock_wall_ns();
	hb.counters = &ct;
	hb.n_observers = nos;
	hb.observers = osp;
	hb.config_generation = c->config_generation;
	hb.config_hash = c->config_hash;
	hb.n_degraded_reasons = nd;
	hb.degraded_reasons = degraded;
	hb.uptime_ms = uv_now(c->loop) - c->start_ms;
	f.msg_case = TAPIO__V1__FRAME__MSG_HEARTBEAT;
	f.heartbeat = &hb;
	conn_send_frame(c->conn, &f);
}

static void on_welcome(struct conn *k, const Tapio__V1__Welcome *w)
{
	struct client *c = k->c;

	if (codec_check_welcome(w) < 0) {
		log_error(TAG, "controller %s:%u speaks wire version %u, this agent %u: refusing",
			  c->o.host, c->o.port, w->wire_version, CODEC_WIRE_VERSION);
		c->wire_refused = true;
		conn_drop(k, "wire version mismatch");
		return;
	}
	if (!w->session_accepted || (w->session_id && w->session_id != c->session)) {
		log_warn(TAG, "controller did not accept session %016" PRIx64, c->session);
		conn_drop(k, "session refused");
		return;
	}
	uv_timer_stop(&c->hs_timer);
	k->welcomed = true;
	c->wire_refused = false;
	c->attempt = 0;
	c->st.connects++;
	c->st.connected = true;
	if (w->last_acked_sequence >= c->next_seq) {
		log_warn(TAG,
			 "controller has session %016" PRIx64 " up to %" PRIu64
			 ", beyond our next sequence %" PRIu64 ": continuing after it",
			 c->session, w->last_acked_sequence, c->next_seq);
		c->next_seq = w->last_acked_sequence + 1;
	}
	release_acked(c, w->last_acked_sequence);
	limbo_resolve(c, w->last_acked_sequence, true);
	/*
	 * Whatever is still queued is not durable at the controller: until it is written on
	 * this connection, dropping it loses it (a later cumulative Ack may jump a gap).
	 */
	for (size_t i = 0; i < c->n; i++)
		ent_at(c, i)->sent = false;
	c->send_seq = c->n ? ent_at(c, 0)->seq : c->next_seq;
	log_info(TAG,
		 "connected to %s:%u (controller %s), session %016" PRIx64 " %s, acked %" PRIu64
		 ", %zu batches to send",
		 c->o.host, c->o.port, w->controller_id, c->session,
		 w->session_resumed ? "resumed" : "new", w->last_acked_sequence, c->n);
	c->hb_ms = w->heartbeat_interval_ms ? w->heartbeat_interval_ms : c->o.heartbeat_interval_ms;
	uv_timer_start(&c->hb_timer, on_hb_timer, c->hb_ms, c->hb_ms);
	kick_spool(c);
	kick_send(c);
}

static void on_config_push(struct conn *k, const Tapio__V1__ConfigPush *p)
{
	struct client *c = k->c;
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__ConfigApplied ap = TAPIO__V1__CONFIG_APPLIED__INIT;
	Tapio__V1__ConfigRejected rj = TAPIO__V1__CONFIG_REJECTED__INIT;
	char reason[256] = "config push not supported by this agent";
	int ret = -ENOTSUP;

	if (c->o.on_config)
		ret = c->o.on_config(c->o.arg, p, reason, sizeof(reason));
	if (ret == 0) {
		client_set_config(c, p->generation, p->hash);
		c->st.configs_applied++;
		ap.generation = p->generation;
		ap.hash = p->hash;
		f.msg_case = TAPIO__V1__FRAME__MSG_CONFIG_APPLIED;
		f.config_applied = &ap;
		log_info(TAG, "config generation %" PRIu64 " (%s) applied", p->generation, p->hash);
	} else {
		c->st.configs_rejected++;
		rj.generation = p->generation;
		rj.hash = p->hash;
		rj.reason = reason;
		f.msg_case = TAPIO__V1__FRAME__MSG_CONFIG_REJECTED;
		f.config_rejected = &rj;
		log_warn(TAG, "config generation %" PRIu64 " rejected: %s", p->generation, reason);
	}
	conn_send_frame(k, &f);
}

static void on_frame(struct conn *k, const Tapio__V1__Frame *f)
{
	struct client *c = k->c;

	if (!k->welcomed && f->msg_case != TAPIO__V1__FRAME__MSG_WELCOME &&
	    f->msg_case != TAPIO__V1__FRAME__MSG_ERROR) {
		conn_drop(k, "frame before Welcome");
		return;
	}
	switch (f->msg_case) {
	case TAPIO__V1__FRAME__MSG_WELCOME:
		if (k->welcomed) {
			conn_drop(k, "second Welcome");
			return;
		}
		on_welcome(k, f->welcome);
		break;
	case TAPIO__V1__FRAME__MSG_ACK:
		if (f->ack->session_id && f->ack->session_id != c->session) {
			LOG_RATELIMITED(LOG_WARN, TAG, "ack for session %016" PRIx64 " ignored",
					f->ack->session_id);
			break;
		}
		if (f->ack->durable_sequence >= c->next_seq) {
			conn_drop(k, "ack beyond the last sequence sent");
			return;
		}
		release_acked(c, f->ack->durable_sequence);
		kick_spool(c);
		kick_send(c);
		break;
	case TAPIO__V1__FRAME__MSG_CONFIG_PUSH:
		on_config_push(k, f->config_push);
		break;
	case TAPIO__V1__FRAME__MSG_ERROR:
		c->st.errors_received++;
		if (f->error->code == TAPIO__V1__ERROR_CODE__ERROR_CODE_WIRE_VERSION ||
		    f->error->code == TAPIO__V1__ERROR_CODE__ERROR_CODE_AUTH) {
			/* will not fix itself: retry only at the long back-off */
			log_error(TAG,
				  "controller refused this agent (%s): %s; retrying every %u ms",
				  codec_error_code_name(f->error->code), f->error->message,
				  c->o.backoff_max_ms);
			c->wire_refused = true;
		} else {
			log_warn(TAG, "controller error %s: %s",
				 codec_error_code_name(f->error->code), f->error->message);
		}
		conn_drop(k, "controller sent an error");
		break;
	default:
		LOG_RATELIMITED(LOG_WARN, TAG, "unexpected %s frame from the controller ignored",
				codec_frame_kind(f));
		break;
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *k = container_of(h, struct conn, tcp);

	*buf = uv_buf_init((char *)k->rbuf, sizeof(k->rbuf));
}

/* Decodes and handles plaintext. */
static void feed_plain(struct conn *k, const uint8_t *data, size_t len)
{
	size_t off = 0;

	while (off < len && !k->closing) {
		ssize_t used = codec_decoder_feed(&k->dec, data + off, len - off);
		Tapio__V1__Frame *f;
		int ret = 0;

		if (used < 0) {
			conn_drop(k, codec_error_name((int)used));
			return;
		}
		off += (size_t)used;
		while (!k->closing && (ret = codec_decoder_next(&k->dec, &f)) == 1) {
			on_frame(k, f);
			tapio__v1__frame__free_unpacked(f, NULL);
		}
		if (!k->closing && ret < 0) {
			conn_drop(k, codec_error_name(ret));
			return;
		}
	}
}

/* A TLS failure will not fix itself (certificates, names): log it clearly, back off long. */
static void tls_failed(struct conn *k)
{
	struct client *c = k->c;
	enum tls_fail why = tls_conn_fail_reason(k->tls);
	char msg[240];

	c->st.tls_failures++;
	c->st.send_failures++;
	snprintf(msg, sizeof(msg), "TLS with %s:%u failed (%s): %s", c->o.host, c->o.port,
		 tls_fail_name(why), tls_conn_error(k->tls));
	if (why != TLS_FAIL_INTERNAL && why != TLS_FAIL_PROTOCOL) {
		LOG_RATELIMITED(LOG_ERROR, TAG, "%s; retrying every %u ms", msg,
				c->o.backoff_max_ms);
		c->wire_refused = true;
	}
	tls_flush(k); /* the alert, if any (best effort: the handle closes next) */
	conn_drop(k, msg);
}

static void feed_tls(struct conn *k, const uint8_t *data, size_t len)
{
	uint8_t plain[16384];
	ssize_t n;

	if (tls_conn_feed(k->tls, data, len) < 0) {
		conn_drop(k, "out of memory");
		return;
	}
	while (!k->closing && (n = tls_conn_read(k->tls, plain, sizeof(plain))) > 0)
		feed_plain(k, plain, (size_t)n);
	if (k->closing)
		return;
	if (n == -EPIPE) {
		conn_drop(k, "closed by the controller (TLS close_notify)");
		return;
	}
	if (n < 0) {
		tls_failed(k);
		return;
	}
	if (tls_flush(k) < 0)
		conn_drop(k, "write failed");
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *k = container_of(s, struct conn, tcp);

	if (nread < 0) {
		conn_drop(k, nread == UV_EOF ? "closed by the controller" : uv_strerror(nread));
		return;
	}
	if (k->tls)
		feed_tls(k, (const uint8_t *)buf->base, (size_t)nread);
	else
		feed_plain(k, (const uint8_t *)buf->base, (size_t)nread);
}

static void on_hs_timer(uv_timer_t *t)
{
	struct client *c = container_of(t, struct client, hs_timer);

	if (c->conn && !c->conn->welcomed) {
		c->st.send_failures++;
		conn_drop(c->conn, "no Welcome in time");
	}
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *k = container_of(req, struct conn, creq);
	struct client *c = k->c;

	if (k->closing)
		return;
	if (status < 0) {
		c->st.send_failures++;
		conn_drop(k, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&k->tcp, 1);
	uv_tcp_keepalive(&k->tcp, 1, 60); /* a vanished controller host is noticed */
	if (uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read) < 0) {
		conn_drop(k, "read start failed");
		return;
	}
	uv_timer_start(&c->hs_timer, on_hs_timer, CLIENT_HANDSHAKE_TIMEOUT_MS, 0);
	if (c->tls) {
		k->tls = tls_conn_new(c->tls);
		if (!k->tls || tls_conn_start(k->tls) < 0 || tls_flush(k) < 0) {
			c->st.send_failures++;
			conn_drop(k, "TLS setup failed");
			return;
		}
	}
	send_hello(k); /* with TLS: held until the handshake completes */
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct client *c = container_of(req, struct client, gai);
	struct conn *k;
	int ret;

	c->resolving = false;
	if (c->closing) {
		uv_freeaddrinfo(res);
		maybe_finish_close(c);
		return;
	}
	if (status < 0 || !res) {
		c->st.send_failures++;
		LOG_RATELIMITED(LOG_WARN, TAG, "resolve %s: %s", c->o.host, uv_strerror(status));
		uv_freeaddrinfo(res);
		schedule_reconnect(c);
		return;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		uv_freeaddrinfo(res);
		schedule_reconnect(c);
		return;
	}
	k->c = c;
	codec_decoder_init(&k->dec, CODEC_DEFAULT_MAX_FRAME);
	uv_tcp_init(c->loop, &k->tcp);
	c->conn = k;
	c->conns_open++;
	ret = uv_tcp_connect(&k->creq, &k->tcp, res->ai_addr, on_connect);
	uv_freeaddrinfo(res);
	if (ret < 0) {
		c->st.send_failures++;
		conn_drop(k, uv_strerror(ret));
	}
}

static void start_connect(struct client *c)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	char port[8];
	int ret;

	if (c->closing || c->conn || c->resolving)
		return;
	snprintf(port, sizeof(port), "%u", c->o.port);
	ret = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->o.host, port, &hints);
	if (ret < 0) {
		c->st.send_failures++;
		schedule_reconnect(c);
		return;
	}
	c->resolving = true;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void on_kick(uv_idle_t *h)
{
	struct client *c = container_of(h, struct client, kick);

	uv_idle_stop(h);
	kick_spool(c);
	kick_send(c);
}

int client_parse_endpoint(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hl;
	char *end;
	unsigned long p;

	if (!s || !*s)
		return -EINVAL;
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen)
		return -EINVAL;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p == 0 || p > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

static void client_free(struct client *c)
{
	while (c->n)
		ent_pop(c);
	free(c->ents);
	for (size_t i = 0; i < c->nappends; i++)
		bbuf_put(c->appends[i].buf);
	free(c->appends);
	for (size_t i = c->reloadpos; i < c->nreload; i++)
		bbuf_put(c->reload[i].buf);
	free(c->reload);
	free(c->limbo);
	spool_close(c->spool);
	free(c->open);
	free(c->msgs);
	free(c->ptrs);
	free(c->scratch);
	free(c->enc);
	free(c->pkb);
	for (size_t i = 0; i < c->nstrs; i++)
		free(c->strs[i]);
	tls_ctx_free(c->tls);
	free(c);
}

struct client *client_new(uv_loop_t *loop, const struct client_options *o, char *err, size_t errlen)
{
	struct client *c = calloc(1, sizeof(*c));
	struct utsname u;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->loop = loop;
	c->o = *o;
	c->o.host = keep(c, o->host ? o->host : "");
	c->o.agent_id = keep(c, o->agent_id ? o->agent_id : "");
	c->o.node = keep(c, o->node ? o->node : "");
	c->o.cluster = keep(c, o->cluster ? o->cluster : "");
	c->o.version = keep(c, o->version ? o->version : TAPIO_VERSION);
	c->o.token = keep(c, o->token ? o->token : "");
	c->o.spool_dir = NULL;
	for (size_t i = 0; i < CLIENT_MAX_CAPABILITIES; i++)
		c->o.capabilities[i] = keep(c, o->capabilities[i]);
	for (size_t i = 0; i < CLIENT_MAX_LABELS; i++) {
		c->o.label_keys[i] = keep(c, o->label_keys[i]);
		c->o.label_values[i] = keep(c, o->label_values[i]);
	}
	if (!c->o.host || !c->o.agent_id || !c->o.node || !c->o.cluster || !c->o.version ||
	    !c->o.token) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (!o->host || !*o->host || !o->port) {
		snprintf(err, errlen, "controller host and port are required");
		goto fail;
	}
	c->o.tls_ca = c->o.tls_cert = c->o.tls_key = c->o.tls_server_name = NULL;
	if (o->tls_ca && *o->tls_ca) {
		struct tls_client_options to = {
		    .ca_file = o->tls_ca,
		    .server_name =
			o->tls_server_name && *o->tls_server_name ? o->tls_server_name : o->host,
		    .cert_file = o->tls_cert,
		    .key_file = o->tls_key};

		c->tls = tls_ctx_new_client(&to, err, errlen);
		if (!c->tls)
			goto fail;
	} else if ((o->tls_cert && *o->tls_cert) || (o->tls_key && *o->tls_key)) {
		snprintf(err, errlen, "a TLS client certificate needs the CA file (tls-ca) too");
		goto fail;
	}
	if (!c->o.heartbeat_interval_ms)
		c->o.heartbeat_interval_ms = CLIENT_DEFAULT_HEARTBEAT_MS;
	if (!c->o.batch_max)
		c->o.batch_max = CLIENT_DEFAULT_BATCH_MAX;
	if (!c->o.batch_max_ms)
		c->o.batch_max_ms = CLIENT_DEFAULT_BATCH_MAX_MS;
	if (!c->o.queue_max_bytes)
		c->o.queue_max_bytes = CLIENT_DEFAULT_QUEUE_BYTES;
	if (!c->o.spool_max_bytes)
		c->o.spool_max_bytes = CLIENT_DEFAULT_SPOOL_BYTES;
	if (!c->o.backoff_min_ms)
		c->o.backoff_min_ms = CLIENT_BACKOFF_MIN_MS;
	if (!c->o.backoff_max_ms)
		c->o.backoff_max_ms = CLIENT_BACKOFF_MAX_MS;
	if (c->o.backoff_max_ms < c->o.backoff_min_ms)
		c->o.backoff_max_ms = c->o.backoff_min_ms;

	if (grow_open(c) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (uname(&u) == 0) {
		snprintf(c->kernel, sizeof(c->kernel), "%s", u.release);
		snprintf(c->arch, sizeof(c->arch), "%s", u.machine);
	}
	if (getrandom(&c->rng, sizeof(c->rng), 0) != sizeof(c->rng) || c->rng == 0)
		c->rng = clock_wall_ns() | 1;
	c->next_seq = 1;
	if (o->spool_dir) {
		struct spool_options so = {.dir = o->spool_dir,
					   .max_bytes = c->o.spool_max_bytes,
					   .segment_bytes = o->spool_segment_bytes,
					   .fsync = o->spool_fsync};
		const struct spool_record *rec;
		size_t nrec;

		if (spool_open(&so, &c->spool, err, errlen) < 0)
			goto fail;
		c->session = spool_session_id(c->spool);
		c->acked = spool_acked(c->spool);
		c->next_seq = spool_last_seq(c->spool) + 1;
		c->st.spool_bytes = spool_bytes(c->spool);
		c->st.spool_repaired_bytes = spool_repaired_bytes(c->spool);
		rec = spool_recovered(c->spool, &nrec);
		for (size_t i = 0; i < nrec; i++) {
			struct entry e = {.seq = rec[i].seq,
					  .count = rec[i].count,
					  .len = rec[i].len,
					  .spooled = true};
			if (ent_push(c, &e) < 0) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
		}
	} else {
		do {
			c->session = rng_next(c);
		} while (c->session == 0);
	}
	c->send_seq = c->n ? ent_at(c, 0)->seq : c->next_seq;
	uv_timer_init(loop, &c->batch_timer);
	uv_timer_init(loop, &c->hb_timer);
	uv_timer_init(loop, &c->retry_timer);
	uv_timer_init(loop, &c->hs_timer);
	uv_idle_init(loop, &c->kick);
	c->handles_open = 5;
	c->start_ms = uv_now(loop);
	return c;
fail:
	client_free(c);
	return NULL;
}

int client_start(struct client *c)
{
	if (c->started || c->closing)
		return -EALREADY;
	c->started = true;
	start_connect(c);
	return 0;
}

void client_set_config(struct client *c, uint64_t generation, const char *hash)
{
	c->config_generation = generation;
	snprintf(c->config_hash, sizeof(c->config_hash), "%s", hash ? hash : "");
}

uint64_t client_session_id(const struct client *c)
{
	return c->session;
}

uint64_t client_queue_bytes(const struct client *c)
{
	return c->mem_bytes;
}

void client_counters(const struct client *c, struct client_stats *out)
{
	*out = c->st;
	out->queue_depth = 0;
	for (size_t i = 0; i < c->n; i++)
		out->queue_depth += !c->ents[(c->head + i) & (c->cap - 1)].lost;
	out->queue_bytes = c->mem_bytes;
	out->next_sequence = c->next_seq;
	out->acked_sequence = c->acked;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct client *c = h->data;

	c->handles_open--;
	maybe_finish_close(c);
}

static void maybe_finish_close(struct client *c)
{
	client_closed_fn cb;
	void *arg;

	if (!c->closing || c->conn || c->conns_open || c->resolving || c->job)
		return;
	if (c->spool && (c->nappends || c->ack_pending)) {
		kick_spool(c);
		return;
	}
	if (!c->handles_closing) {
		uv_handle_t *hs[] = {(uv_handle_t *)&c->batch_timer, (uv_handle_t *)&c->hb_timer,
				     (uv_handle_t *)&c->retry_timer, (uv_handle_t *)&c->hs_timer,
				     (uv_handle_t *)&c->kick};
		for (size_t i = 0; i < 5; i++) {
			hs[i]->data = c;
			uv_close(hs[i], on_handle_closed);
		}
		c->handles_closing = true;
		return;
	}
	if (c->handles_open > 0)
		return;
	cb = c->closed_cb;
	arg = c->closed_arg;
	client_free(c);
	if (cb)
		cb(arg);
}

void client_close(struct client *c, client_closed_fn cb, void *arg)
{
	uint64_t batches = 0, occs = 0;

	if (c->closing)
		return;
	seal(c);
	for (size_t i = 0; i < c->n; i++) {
		const struct entry *e = ent_at(c, i);
		if (!e->lost) {
			batches++;
			occs += e->count;
		}
	}
	if (batches && c->spool)
		log_info(TAG,
			 "closing with %" PRIu64 " unacknowledged batches (%" PRIu64
			 " occurrences) kept in the spool",
			 batches, occs);
	else if (batches)
		log_warn(TAG,
			 "closing with %" PRIu64 " unacknowledged batches (%" PRIu64
			 " occurrences) and no spool: they are lost",
			 batches, occs);
	c->closing = true;
	c->closed_cb = cb;
	c->closed_arg = arg;
	uv_timer_stop(&c->retry_timer);
	uv_timer_stop(&c->batch_timer);
	uv_timer_stop(&c->hb_timer);
	uv_timer_stop(&c->hs_timer);
	uv_idle_stop(&c->kick);
	if (c->resolving)
		uv_cancel((uv_req_t *)&c->gai);
	if (c->conn)
		conn_drop(c->conn, "client closing");
	kick_spool(c);
	maybe_finish_close(c);
}
