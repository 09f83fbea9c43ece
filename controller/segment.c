/* Segment file format: header, records with length + CRC, per-segment index, safe writes. */
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libdeflate.h>

static const char seg_magic[8] = {'T', 'A', 'P', 'I', 'O', 'S', 'E', 'G'};
static const char idx_magic[8] = {'T', 'A', 'P', 'I', 'O', 'I', 'D', 'X'};

#define IDX_FIXED_SIZE	  208u
#define IDX_NODE_SIZE	  16u
#define IDX_SESSION_SIZE  24u
#define IDX_SPARSE_SIZE	  24u
#define IDX_POSTING_SIZE  5u /* u32 offset + u8 (type << 4 | severity) */
#define IDX_MAX_FILE_SIZE (256u << 20)

uint32_t seg_crc32(const void *buf, size_t len)
{
	/* libdeflate's crc32 is zlib's CRC-32, with PCLMULQDQ folding where the CPU has it
	 * (8x zlib's speed on record-sized inputs here); size_t lengths, no chunking */
	return libdeflate_crc32(0, buf, len);
}

void seg_file_name(char *buf, size_t len, uint64_t id, const char *ext)
{
	snprintf(buf, len, "seg-%020llu.%s", (unsigned long long)id, ext);
}

void seg_header_encode(uint8_t out[SEG_HEADER_SIZE], uint64_t segment_id, uint64_t created_ns)
{
	memset(out, 0, SEG_HEADER_SIZE);
	memcpy(out, seg_magic, 8);
	seg_put_u32(out + 8, SEG_VERSION);
	seg_put_u32(out + 12, SEG_HEADER_SIZE);
	seg_put_u64(out + 16, segment_id);
	seg_put_u64(out + 24, created_ns);
	seg_put_u32(out + 60, seg_crc32(out, 60));
}

int seg_header_decode(const uint8_t in[SEG_HEADER_SIZE], uint64_t *segment_id, uint64_t *created_ns,
		      uint32_t *version)
{
	uint32_t v = seg_get_u32(in + 8);

	if (memcmp(in, seg_magic, 8) != 0 || (v != 1 && v != SEG_VERSION) ||
	    seg_get_u32(in + 12) != SEG_HEADER_SIZE || seg_get_u32(in + 60) != seg_crc32(in, 60))
		return -EBADMSG;
	*segment_id = seg_get_u64(in + 16);
	*created_ns = seg_get_u64(in + 24);
	*version = v;
	return 0;
}

void seg_record_encode(uint8_t *out, const struct store_record_meta *m, uint8_t flags,
		       uint32_t back, const void *payload, size_t len)
{
	seg_record_encode_nocrc(out, m, flags, back, payload, len);
	seg_record_set_crc(out);
}

void seg_record_set_crc(uint8_t *rec)
{
	seg_put_u32(rec + 4, seg_crc32(rec + SEG_REC_PREFIX, seg_get_u32(rec)));
}

void seg_record_encode_nocrc(uint8_t *out, const struct store_record_meta *m, uint8_t flags,
			     uint32_t back, const void *payload, size_t len)
{
	uint8_t *meta = out + SEG_REC_PREFIX, *data = meta + SEG_META_SIZE;

	seg_put_u64(meta, m->timestamp_ns);
	meta[8] = m->type;
	meta[9] = m->severity;
	meta[10] = flags;
	meta[11] = 0;
	seg_put_u32(meta + 12, m->node_id);
	seg_put_u32(meta + 16, back);
	if (flags & SEG_FLAG_IDENT) {
		seg_put_u64(data, m->agent_key);
		seg_put_u64(data + 8, m->session_id);
		seg_put_u64(data + 16, m->sequence);
		data += SEG_IDENT_SIZE;
	}
	seg_put_u32(out, (uint32_t)(data - meta + len));
	if (len)
		memcpy(data, payload, len);
	seg_put_u32(out + 4, 0);
}

int seg_head_decode(const uint8_t *p, size_t avail, uint32_t version, struct seg_head *h)
{
	const uint8_t *meta = p + SEG_REC_PREFIX;
	size_t need;

	h->len = seg_get_u32(p);
	h->crc = seg_get_u32(p + 4);
	h->flags = meta[10];
	if (version == 1)
		h->flags |= SEG_FLAG_IDENT;
	need = seg_head_need(version, h->flags);
	h->meta_len = (uint32_t)(need - SEG_REC_PREFIX);
	if (h->len < h->meta_len || h->len > SEG_REC_MAX_LEN)
		return -1;
	if (need > avail)
		return (int)need;
	h->m.timestamp_ns = seg_get_u64(meta);
	h->m.type = meta[8];
	h->m.severity = meta[9];
	h->m.node_id = seg_get_u32(meta + 12);
	h->back = version == 1 ? 0 : seg_get_u32(meta + 16);
	if (h->flags & SEG_FLAG_IDENT) {
		const uint8_t *id = meta + (version == 1 ? 16 : SEG_META_SIZE);

		h->m.agent_key = seg_get_u64(id);
		h->m.session_id = seg_get_u64(id + 8);
		h->m.sequence = seg_get_u64(id + 16);
	} else {
		h->m.agent_key = h->m.session_id = h->m.sequence = 0;
	}
	return 0;
}

const char *seg_check_name(enum seg_check c)
{
	switch (c) {
	case SEG_REC_OK:
		return "ok";
	case SEG_REC_SHORT_PREFIX:
		return "torn record prefix";
	case SEG_REC_BAD_LENGTH:
		return "record length out of range";
	case SEG_REC_SHORT:
		return "torn record (shorter than its length)";
	case SEG_REC_BAD_CRC:
		return "CRC mismatch";
	case SEG_REC_BAD_META:
		return "type or severity out of range";
	case SEG_REC_INCOMPLETE_BATCH:
		return "incomplete batch (no batch-end record)";
	}
	return "unknown";
}

void seg_index_init(struct seg_index *idx, uint64_t segment_id, uint64_t created_ns,
		    uint32_t sparse_every)
{
	memset(idx, 0, sizeof(*idx));
	idx->segment_id = segment_id;
	idx->created_ns = created_ns;
	idx->file_size = SEG_HEADER_SIZE;
	idx->min_ts = UINT64_MAX;
	idx->sparse_every = sparse_every ? sparse_every : SEG_SPARSE_EVERY;
	idx->has_postings = true;
}

static void postings_free(struct seg_index *idx)
{
	for (size_t i = 0; i < idx->n_nodes; i++) {
		free(idx->nodes[i].post_off);
		free(idx->nodes[i].post_ts);
		idx->nodes[i].post_off = NULL;
		idx->nodes[i].post_ts = NULL;
		idx->nodes[i].cap_post = 0;
	}
}

void seg_index_fini(struct seg_index *idx)
{
	if (!idx)
		return;
	if (idx->nodes)
		postings_free(idx);
	free(idx->nodes);
	free(idx->sessions);
	free(idx->sparse);
	idx->nodes = NULL;
	idx->sessions = NULL;
	idx->sparse = NULL;
	idx->n_nodes = idx->n_sessions = idx->n_sparse = 0;
	idx->cap_nodes = idx->cap_sessions = idx->cap_sparse = 0;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	void *p = realloc(*arr, ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* Binary search; returns the index of node_id or where it would be inserted. */
static size_t node_pos(const struct seg_index *idx, uint32_t node_id, bool *found)
{
	size_t lo = 0, hi = idx->n_nodes;
	/* records come in runs of one node (a batch): try the entry the last record used */
	if (idx->hint_node < hi && idx->nodes[idx->hint_node].node_id == node_id) {
		*found = true;
		return idx->hint_node;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (idx->nodes[mid].node_id < node_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < idx->n_nodes && idx->nodes[lo].node_id == node_id;
	return lo;
}

static int session_cmp(const struct seg_session *s, uint64_t agent, uint64_t session)
{
	if (s->agent_key != agent)
		return s->agent_key < agent ? -1 : 1;
	if (s->session_id != session)
		return s->session_id < session ? -1 : 1;
	return 0;
}

static size_t session_pos(const struct seg_index *idx, uint64_t agent, uint64_t session,
			  bool *found)
{
	size_t lo = 0, hi = idx->n_sessions;
	if (idx->hint_session < hi &&
	    session_cmp(&idx->sessions[idx->hint_session], agent, session) == 0) {
		*found = true;
		return idx->hint_session;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (session_cmp(&idx->sessions[mid], agent, session) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < idx->n_sessions && session_cmp(&idx->sessions[lo], agent, session) == 0;
	return lo;
}

/* Room for `need` postings in n's two arrays. Returns 0 or -ENOMEM (n unchanged). */
static int post_reserve(struct seg_node_count *n, size_t need)
{
	if (need <= n->cap_post)
		return 0;
	size_t ncap = n->cap_post ? n->cap_post * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	uint32_t *o = realloc(n->post_off, ncap * sizeof(*o));
	if (!o)
		return -ENOMEM;
	n->post_off = o;
	uint8_t *t = realloc(n->post_ts, ncap);
	if (!t)
		return -ENOMEM; /* post_off is merely larger than cap_post says */
	n->post_ts = t;
	n->cap_post = ncap;
	return 0;
}

int seg_index_add(struct seg_index *idx, const struct store_record_meta *m, uint64_t offset,
		  uint64_t size)
{
	bool found;
	size_t pos = node_pos(idx, m->node_id, &found);
	if (!found) {
		if (grow((void **)&idx->nodes, &idx->cap_nodes, idx->n_nodes + 1,
			 sizeof(*idx->nodes)))
			return -ENOMEM;
		memmove(&idx->nodes[pos + 1], &idx->nodes[pos],
			(idx->n_nodes - pos) * sizeof(*idx->nodes));
		idx->nodes[pos] = (struct seg_node_count){.node_id = m->node_id, .count = 0};
		idx->n_nodes++;
	}
	if (idx->has_postings && offset > UINT32_MAX) {
		/* u32 offsets: a segment grown past 4 GiB is scanned by blocks instead */
		postings_free(idx);
		idx->has_postings = false;
	}
	if (idx->has_postings && post_reserve(&idx->nodes[pos], idx->nodes[pos].count + 1))
		return -ENOMEM;
	size_t spos = session_pos(idx, m->agent_key, m->session_id, &found);
	if (!found) {
		if (grow((void **)&idx->sessions, &idx->cap_sessions, idx->n_sessions + 1,
			 sizeof(*idx->sessions)))
			return -ENOMEM;
		memmove(&idx->sessions[spos + 1], &idx->sessions[spos],
			(idx->n_sessions - spos) * sizeof(*idx->sessions));
		idx->sessions[spos] = (struct seg_session){
		    .agent_key = m->agent_key, .session_id = m->session_id, .max_sequence = 0};
		idx->n_sessions++;
	}
	/* a block starts every sparse_every records: n_sparse blocks cover the records so far */
	if (idx->n_sparse == 0 || idx->records == (uint64_t)idx->n_sparse * idx->sparse_every) {
		if (grow((void **)&idx->sparse, &idx->cap_sparse, idx->n_sparse + 1,
			 sizeof(*idx->sparse)))
			return -ENOMEM;
		idx->sparse[idx->n_sparse++] =
		    (struct seg_sparse){.offset = offset, .min_ts = UINT64_MAX, .max_ts = 0};
	}
	/* all allocations done: now account, so a failure above leaves the index unchanged */
	if (idx->has_postings) {
		struct seg_node_count *nd = &idx->nodes[pos];
		nd->post_off[nd->count] = (uint32_t)offset;
		nd->post_ts[nd->count] = seg_post_pack(m->type, m->severity);
	}
	idx->nodes[pos].count++;
	idx->hint_node = pos;
	idx->hint_session = spos;
	if (m->sequence > idx->sessions[spos].max_sequence)
		idx->sessions[spos].max_sequence = m->sequence;
	struct seg_sparse *blk = &idx->sparse[idx->n_sparse - 1];
	if (m->timestamp_ns < blk->min_ts)
		blk->min_ts = m->timestamp_ns;
	if (m->timestamp_ns > blk->max_ts)
		blk->max_ts = m->timestamp_ns;
	if (m->timestamp_ns < idx->min_ts)
		idx->min_ts = m->timestamp_ns;
	if (m->timestamp_ns > idx->max_ts)
		idx->max_ts = m->timestamp_ns;
	if (m->type < TAPIO_OCC__COUNT)
		idx->by_type[m->type]++;
	if (m->severity < TAPIO_SEV__COUNT)
		idx->by_severity[m->severity]++;
	idx->records++;
	idx->file_size = offset + size;
	return 0;
}

uint64_t seg_index_node_count(const struct seg_index *idx, uint32_t node_id)
{
	bool found;
	size_t pos = node_pos(idx, node_id, &found);
	return found ? idx->nodes[pos].count : 0;
}

const struct seg_node_count *seg_index_node(const struct seg_index *idx, uint32_t node_id)
{
	bool found;
	size_t pos = node_pos(idx, node_id, &found);
	return found && idx->nodes[pos].count ? &idx->nodes[pos] : NULL;
}

int seg_index_copy(const struct seg_index *src, struct seg_index *dst)
{
	*dst = *src;
	dst->nodes = NULL;
	dst->sessions = NULL;
	dst->sparse = NULL;
	dst->n_nodes = dst->n_sessions = dst->n_sparse = 0;
	dst->cap_nodes = dst->cap_sessions = dst->cap_sparse = 0;
	if ((src->n_nodes && !(dst->nodes = calloc(src->n_nodes, sizeof(*dst->nodes)))) ||
	    (src->n_sessions &&
	     !(dst->sessions = malloc(src->n_sessions * sizeof(*dst->sessions)))) ||
	    (src->n_sparse && !(dst->sparse = malloc(src->n_sparse * sizeof(*dst->sparse)))))
		goto nomem;
	dst->cap_nodes = src->n_nodes;
	for (size_t i = 0; i < src->n_nodes; i++) {
		const struct seg_node_count *a = &src->nodes[i];
		struct seg_node_count *b = &dst->nodes[i];
		dst->n_nodes = i + 1;
		b->node_id = a->node_id;
		b->count = a->count;
		if (!src->has_postings || !a->count)
			continue;
		if (post_reserve(b, a->count))
			goto nomem;
		memcpy(b->post_off, a->post_off, a->count * sizeof(*b->post_off));
		memcpy(b->post_ts, a->post_ts, a->count);
	}
	dst->n_sessions = dst->cap_sessions = src->n_sessions;
	dst->n_sparse = dst->cap_sparse = src->n_sparse;
	if (src->n_sessions)
		memcpy(dst->sessions, src->sessions, src->n_sessions * sizeof(*dst->sessions));
	if (src->n_sparse)
		memcpy(dst->sparse, src->sparse, src->n_sparse * sizeof(*dst->sparse));
	return 0;
nomem:
	seg_index_fini(dst);
	return -ENOMEM;
}

bool seg_index_may_match(const struct seg_index *idx, uint64_t since, uint64_t until,
			 uint32_t type_mask, uint32_t sev_mask, int64_t node_id)
{
	if (idx->records == 0)
		return false;
	if (idx->max_ts < since || idx->min_ts >= until)
		return false;
	if (type_mask) {
		bool any = false;
		for (unsigned t = 0; t < TAPIO_OCC__COUNT; t++)
			any |= (type_mask & (1u << t)) && idx->by_type[t];
		if (!any)
			return false;
	}
	if (sev_mask) {
		bool any = false;
		for (unsigned s = 0; s < TAPIO_SEV__COUNT; s++)
			any |= (sev_mask & (1u << s)) && idx->by_severity[s];
		if (!any)
			return false;
	}
	if (node_id >= 0 && (node_id > UINT32_MAX || !seg_index_node_count(idx, (uint32_t)node_id)))
		return false;
	return true;
}

int seg_index_encode(const struct seg_index *idx, uint8_t **out, size_t *len)
{
	size_t n = IDX_FIXED_SIZE + idx->n_nodes * IDX_NODE_SIZE +
		   idx->n_sessions * IDX_SESSION_SIZE + idx->n_sparse * IDX_SPARSE_SIZE +
		   (idx->has_postings ? IDX_POSTING_SIZE * idx->records : 0) + 4;
	uint8_t *b = calloc(1, n);
	if (!b)
		return -ENOMEM;
	memcpy(b, idx_magic, 8);
	seg_put_u32(b + 8, SEG_IDX_VERSION);
	seg_put_u32(b + 12, idx->has_postings ? SEG_IDX_POSTINGS : 0);
	seg_put_u64(b + 16, idx->segment_id);
	seg_put_u64(b + 24, idx->created_ns);
	seg_put_u64(b + 32, idx->file_size);
	seg_put_u64(b + 40, idx->records);
	seg_put_u64(b + 48, idx->min_ts);
	seg_put_u64(b + 56, idx->max_ts);
	for (unsigned t = 0; t < TAPIO_OCC__COUNT; t++)
		seg_put_u64(b + 64 + 8 * t, idx->by_type[t]);
	for (unsigned s = 0; s < TAPIO_SEV__COUNT; s++)
		seg_put_u64(b + 152 + 8 * s, idx->by_severity[s]);
	seg_put_u32(b + 192, (uint32_t)idx->n_nodes);
	seg_put_u32(b + 196, (uint32_t)idx->n_sessions);
	seg_put_u32(b + 200, (uint32_t)idx->n_sparse);
	seg_put_u32(b + 204, idx->sparse_every);
	uint8_t *p = b + IDX_FIXED_SIZE;
	for (size_t i = 0; i < idx->n_nodes; i++, p += IDX_NODE_SIZE) {
		seg_put_u32(p, idx->nodes[i].node_id);
		seg_put_u64(p + 8, idx->nodes[i].count);
	}
	for (size_t i = 0; i < idx->n_sessions; i++, p += IDX_SESSION_SIZE) {
		seg_put_u64(p, idx->sessions[i].agent_key);
		seg_put_u64(p + 8, idx->sessions[i].session_id);
		seg_put_u64(p + 16, idx->sessions[i].max_sequence);
	}
	for (size_t i = 0; i < idx->n_sparse; i++, p += IDX_SPARSE_SIZE) {
		seg_put_u64(p, idx->sparse[i].offset);
		seg_put_u64(p + 8, idx->sparse[i].min_ts);
		seg_put_u64(p + 16, idx->sparse[i].max_ts);
	}
	for (size_t i = 0; idx->has_postings && i < idx->n_nodes; i++) {
		const struct seg_node_count *nd = &idx->nodes[i];
		for (uint64_t k = 0; k < nd->count; k++, p += 4)
			seg_put_u32(p, nd->post_off[k]);
		if (nd->count)
			memcpy(p, nd->post_ts, nd->count);
		p += nd->count;
	}
	seg_put_u32(p, seg_crc32(b, n - 4));
	*out = b;
	*len = n;
	return 0;
}

int seg_index_decode(const uint8_t *b, size_t len, struct seg_index *idx)
{
	if (len < IDX_FIXED_SIZE + 4 || memcmp(b, idx_magic, 8) != 0 ||
	    seg_get_u32(b + 8) != SEG_IDX_VERSION || (seg_get_u32(b + 12) & ~SEG_IDX_POSTINGS))
		return -EBADMSG;
	if (seg_get_u32(b + len - 4) != seg_crc32(b, len - 4))
		return -EBADMSG;
	bool postings = seg_get_u32(b + 12) & SEG_IDX_POSTINGS;
	uint64_t n_nodes = seg_get_u32(b + 192), n_sessions = seg_get_u32(b + 196),
		 n_sparse = seg_get_u32(b + 200), records = seg_get_u64(b + 40);
	uint32_t every = seg_get_u32(b + 204);
	uint64_t fixed = IDX_FIXED_SIZE + n_nodes * IDX_NODE_SIZE + n_sessions * IDX_SESSION_SIZE +
			 n_sparse * IDX_SPARSE_SIZE + 4;
	/* records bounded by the file length first, so the size sum cannot overflow */
	if (fixed > len || every == 0 || (postings && records > len / IDX_POSTING_SIZE) ||
	    fixed + (postings ? records * IDX_POSTING_SIZE : 0) != len)
		return -EBADMSG;
	seg_index_init(idx, seg_get_u64(b + 16), seg_get_u64(b + 24), every);
	idx->has_postings = postings;
	idx->file_size = seg_get_u64(b + 32);
	idx->records = records;
	idx->min_ts = seg_get_u64(b + 48);
	idx->max_ts = seg_get_u64(b + 56);
	for (unsigned t = 0; t < TAPIO_OCC__COUNT; t++)
		idx->by_type[t] = seg_get_u64(b + 64 + 8 * t);
	for (unsigned s = 0; s < TAPIO_SEV__COUNT; s++)
		idx->by_severity[s] = seg_get_u64(b + 152 + 8 * s);
	if ((n_nodes && !(idx->nodes = calloc(n_nodes, sizeof(*idx->nodes)))) ||
	    (n_sessions && !(idx->sessions = calloc(n_sessions, sizeof(*idx->sessions)))) ||
	    (n_sparse && !(idx->sparse = calloc(n_sparse, sizeof(*idx->sparse))))) {
		seg_index_fini(idx);
		return -ENOMEM;
	}
	idx->n_nodes = idx->cap_nodes = n_nodes;
	idx->n_sessions = idx->cap_sessions = n_sessions;
	idx->n_sparse = idx->cap_sparse = n_sparse;
	const uint8_t *p = b + IDX_FIXED_SIZE;
	uint64_t sum = 0;
	for (size_t i = 0; i < n_nodes; i++, p += IDX_NODE_SIZE) {
		idx->nodes[i].node_id = seg_get_u32(p);
		idx->nodes[i].count = seg_get_u64(p + 8);
		if (idx->nodes[i].count > records - sum ||
		    (i && idx->nodes[i].node_id <= idx->nodes[i - 1].node_id))
			goto bad;
		sum += idx->nodes[i].count;
	}
	if (sum != records)
		goto bad;
	for (size_t i = 0; i < n_sessions; i++, p += IDX_SESSION_SIZE) {
		idx->sessions[i].agent_key = seg_get_u64(p);
		idx->sessions[i].session_id = seg_get_u64(p + 8);
		idx->sessions[i].max_sequence = seg_get_u64(p + 16);
	}
	for (size_t i = 0; i < n_sparse; i++, p += IDX_SPARSE_SIZE) {
		idx->sparse[i].offset = seg_get_u64(p);
		idx->sparse[i].min_ts = seg_get_u64(p + 8);
		idx->sparse[i].max_ts = seg_get_u64(p + 16);
	}
	/* structural sanity: sparse offsets inside the data and ascending */
	for (size_t i = 0; i < n_sparse; i++) {
		if (idx->sparse[i].offset < SEG_HEADER_SIZE ||
		    idx->sparse[i].offset >= idx->file_size ||
		    (i && idx->sparse[i].offset <= idx->sparse[i - 1].offset))
			goto bad;
	}
	/* postings: ascending offsets inside the data, valid type and severity */
	for (size_t i = 0; postings && i < n_nodes; i++) {
		struct seg_node_count *nd = &idx->nodes[i];
		if (!nd->count)
			continue;
		if (post_reserve(nd, nd->count)) {
			seg_index_fini(idx);
			return -ENOMEM;
		}
		for (uint64_t k = 0; k < nd->count; k++, p += 4) {
			nd->post_off[k] = seg_get_u32(p);
			if (nd->post_off[k] < SEG_HEADER_SIZE ||
			    nd->post_off[k] >= idx->file_size ||
			    (k && nd->post_off[k] <= nd->post_off[k - 1]))
				goto bad;
		}
		for (uint64_t k = 0; k < nd->count; k++, p++) {
			nd->post_ts[k] = *p;
			if ((*p >> 4) >= TAPIO_OCC__COUNT || (*p & 0x0f) >= TAPIO_SEV__COUNT)
				goto bad;
		}
	}
	return 0;
bad:
	seg_index_fini(idx);
	return -EBADMSG;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int seg_write_file_atomic(int dirfd, const char *name, const void *buf, size_t len, bool sync)
{
	char tmp[256];
	int err = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	err = write_all(fd, buf, len);
	if (!err && sync && fsync(fd) != 0)
		err = -errno;
	if (close(fd) != 0 && !err)
		err = -errno;
	if (!err && renameat(dirfd, tmp, dirfd, name) != 0)
		err = -errno;
	if (!err && sync && fsync(dirfd) != 0)
		err = -errno;
	if (err)
		unlinkat(dirfd, tmp, 0);
	return err;
}

int seg_read_file(int dirfd, const char *name, size_t max, uint8_t **out, size_t *len)
{
	struct stat st;
	int err = 0;
	uint8_t *buf = NULL;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		err = -errno;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		err = -EFBIG;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*out = buf;
	*len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return err;
}

int seg_map(int fd, size_t len, const uint8_t **out)
{
	void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	/* a segment is data the store can reread at any time: keep it out of core dumps */
	madvise(m, len, MADV_DONTDUMP);
	*out = m;
	return 0;
}

void seg_unmap(const uint8_t *map, size_t len)
{
	if (map)
		munmap((void *)map, len);
}

int seg_reader_init(struct seg_reader *r, int fd, uint64_t end, size_t cap)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->end = end;
	r->cap = cap ? cap : (1u << 20);
	r->buf = malloc(r->cap);
	return r->buf ? 0 : -ENOMEM;
}

void seg_reader_init_map(struct seg_reader *r, const uint8_t *map, uint64_t end)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->map = map;
	r->end = end;
}

void seg_reader_fini(struct seg_reader *r)
{
	free(r->buf);
	r->buf = NULL;
}

int seg_reader_fill(struct seg_reader *r, uint64_t off, size_t len, bool backward,
		    const uint8_t **p)
{
	if (off > r->end || len > r->end - off)
		return -ENODATA;
	if (len > r->cap) {
		uint8_t *nb = realloc(r->buf, len);
		if (!nb)
			return -ENOMEM;
		r->buf = nb;
		r->cap = len;
	}
	uint64_t start = off;
	if (backward && off + len > r->cap)
		start = off + len - r->cap;
	else if (backward)
		start = 0;
	size_t want = r->cap;
	if (want > r->end - start)
		want = (size_t)(r->end - start);
	size_t got = 0;
	while (got < want) {
		ssize_t n = pread(r->fd, r->buf + got, want - got, (off_t)(start + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	r->buf_off = start;
	r->buf_len = got;
	if (off + len > start + got)
		return -ENODATA;
	*p = r->buf + (off - start);
	return 0;
}

int seg_recover_scan(int fd, uint32_t version, uint64_t file_size, struct seg_index *idx,
		     uint64_t *good_end, enum seg_check *why)
{
	struct seg_reader r;
	int err = seg_reader_init(&r, fd, file_size, 0);
	if (err)
		return err;

	/*
	 * Records of one batch are only kept if the batch's last record (SEG_FLAG_BATCH_END)
	 * is intact: a batch is acknowledged as a whole, so a half-written batch must vanish
	 * whole or the resent batch would be dropped as a duplicate. Records are buffered
	 * (offset, size, meta) until their batch completes. A format-2 record without its
	 * identity takes it from the record `back` bytes before it, which must be the last one
	 * of the same batch that carried one.
	 */
	struct pend {
		struct store_record_meta m;
		uint64_t off, size;
	} *pend = NULL;
	size_t n_pend = 0, cap_pend = 0, ident = 0; /* pend[ident]: the identity in force */
	uint64_t off = SEG_HEADER_SIZE, end = SEG_HEADER_SIZE;
	enum seg_check problem = SEG_REC_OK;

	while (off < file_size) {
		const uint8_t *p;
		if (file_size - off < SEG_REC_PREFIX) {
			problem = SEG_REC_SHORT_PREFIX;
			break;
		}
		err = seg_reader_get(&r, off, SEG_REC_PREFIX, false, &p);
		if (err)
			goto out;
		/* the length first: the meta's own size depends on its flags byte */
		uint32_t len = seg_get_u32(p);
		if (len < seg_head_need(version, 0) - SEG_REC_PREFIX || len > SEG_REC_MAX_LEN) {
			problem = SEG_REC_BAD_LENGTH;
			break;
		}
		if (file_size - off - SEG_REC_PREFIX < len) {
			problem = SEG_REC_SHORT;
			break;
		}
		err = seg_reader_get(&r, off, SEG_REC_PREFIX + len, false, &p);
		if (err)
			goto out;
		struct seg_head h;
		if (seg_head_decode(p, SEG_REC_PREFIX + len, version, &h) != 0) {
			problem = SEG_REC_BAD_LENGTH;
			break;
		}
		if (seg_crc32(p + SEG_REC_PREFIX, len) != h.crc) {
			problem = SEG_REC_BAD_CRC;
			break;
		}
		if (h.m.type >= TAPIO_OCC__COUNT || h.m.severity >= TAPIO_SEV__COUNT) {
			problem = SEG_REC_BAD_META;
			break;
		}
		if (h.flags & SEG_FLAG_IDENT) {
			if (h.back != 0) {
				problem = SEG_REC_BAD_META;
				break;
			}
		} else if (n_pend == 0 || off - pend[ident].off != h.back) {
			problem = SEG_REC_BAD_META; /* no identity in this batch to take */
			break;
		} else {
			h.m.agent_key = pend[ident].m.agent_key;
			h.m.session_id = pend[ident].m.session_id;
			h.m.sequence = pend[ident].m.sequence;
		}
		if (grow((void **)&pend, &cap_pend, n_pend + 1, sizeof(*pend))) {
			err = -ENOMEM;
			goto out;
		}
		if (h.flags & SEG_FLAG_IDENT)
			ident = n_pend;
		pend[n_pend++] = (struct pend){.m = h.m, .off = off, .size = SEG_REC_PREFIX + len};
		off += SEG_REC_PREFIX + len;
		if (h.flags & SEG_FLAG_BATCH_END) {
			for (size_t i = 0; i < n_pend; i++) {
				err = seg_index_add(idx, &pend[i].m, pend[i].off, pend[i].size);
				if (err)
					goto out;
			}
			n_pend = 0;
			end = off;
		}
	}
	if (problem == SEG_REC_OK && n_pend)
		problem = SEG_REC_INCOMPLETE_BATCH;
	*good_end = end;
	*why = problem;
out:
	free(pend);
	seg_reader_fini(&r);
	return err;
}
