/*
 * Occurrence ↔ JSON. The writer is hand-written and allocation-free (it runs per occurrence
 * on the agent's loop); the parser uses jansson and inverts the writer exactly, so
 * write → parse → write is byte-identical. Layout and keys: docs/occurrences.md.
 */
#include "occ_json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "ulid.h"

/* ---- writer ---- */

/*
 * The writer's cursor. Each value reserves its worst case once (a string: 6 bytes per byte of
 * its array, a number its widest text) and is then written without further checks. Summed
 * over an occurrence those worst cases stay below TAPIO_OCC_JSON_MAX, so a caller's buffer of
 * that size never runs out early; a smaller buffer is written through a scratch copy (see
 * occ_json_write), which keeps -ENOSPC exact.
 */
struct jw {
	char *o;   /* next byte */
	char *end; /* where the NUL goes: the last byte of the buffer */
	bool full;
};

__extension__ typedef unsigned __int128 u128;

static inline bool jw_room(struct jw *w, size_t n)
{
	if (w->full || (size_t)(w->end - w->o) < n) {
		w->full = true;
		return false;
	}
	return true;
}

static inline void jw_raw(struct jw *w, const char *s, size_t n)
{
	if (!jw_room(w, n))
		return;
	memcpy(w->o, s, n);
	w->o += n;
}

/* A string literal and its length, known at compile time. */
#define LIT(s) s, sizeof(s) - 1
/* A key as it follows an earlier member: ,"key": */
#define KEY(k) LIT(",\"" k "\":")

static inline void jw_lit(struct jw *w, const char *s)
{
	jw_raw(w, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when s[0] starts none. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		need = 2;
	else if (c >= 0xe0 && c <= 0xef)
		need = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 4;
	else
		return 0;
	/* the second byte's range rules out overlongs, surrogates and > U+10FFFF */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need;
}

/* Bytes a JSON string takes as they are: printable ASCII except '"' and '\\'. */
static const bool json_plain[256] = {
    [0x20 ... 0x21] = true,
    [0x23 ... 0x5b] = true,
    [0x5d ... 0x7e] = true,
};

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t x;

	memcpy(&x, p, sizeof(x));
	return x;
}

/* Nonzero when a byte of x is zero. */
static inline uint64_t zero_byte(uint64_t x)
{
	return (x - ONES) & ~x & HIGHS;
}

/*
 * Nonzero when a byte of x is not json_plain: below 0x20 (NUL included), 0x7f and above, '"'
 * or '\\'. Each test is exact as a whole (a borrow or carry only follows a byte that is itself
 * caught).
 */
static inline uint64_t special8(uint64_t x)
{
	uint64_t ctl_or_high = ((x - ONES * 0x20) & ~x) | (x + ONES) | x;

	return (ctl_or_high & HIGHS) | zero_byte(x ^ (ONES * '"')) | zero_byte(x ^ (ONES * '\\'));
}

/*
 * Writes a JSON string from at most max bytes of s (a fixed char array, maybe unterminated).
 * Clean runs are copied a word at a time; a word is only read when every byte before it was
 * plain, so nothing past the array and no word after the terminating NUL's is read.
 */
static void jw_str(struct jw *w, const char *s, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	char *o;

	if (!jw_room(w, 2 + 6 * max))
		return;
	o = w->o;
	*o++ = '"';
	for (;;) {
		unsigned char c;
		uint64_t x;
		size_t seq;

		while (i + 8 <= max && !special8(x = load64(p + i))) {
			memcpy(o, &x, sizeof(x));
			o += 8;
			i += 8;
		}
		while (i < max && json_plain[p[i]])
			*o++ = (char)p[i++];
		if (i == max || (c = p[i]) == '\0')
			break;
		/* a NUL inside the sequence fails its continuation-byte test: the end stays put */
		if (c >= 0x80 && (seq = utf8_seq_len(p + i, max - i)) > 0) {
			memcpy(o, p + i, seq);
			o += seq;
			i += seq;
			continue;
		}
		if (c == '"' || c == '\\') {
			o[0] = '\\';
			o[1] = (char)c;
			o += 2;
		} else {
			/* control characters and DEL as \u00XX; a byte outside valid UTF-8 as
			 * U+F7XX, mapped back by the parser */
			memcpy(o, c >= 0x80 ? "\\uf7" : "\\u00", 4);
			o[4] = hex[c >> 4];
			o[5] = hex[c & 15];
			o += 6;
		}
		i++;
	}
	*o++ = '"';
	w->o = o;
}

#define JW_STR(w, field) jw_str(w, field, sizeof(field))

static inline void jw_kstr(struct jw *w, const char *key, size_t klen, const char *s, size_t max)
{
	jw_raw(w, key, klen);
	jw_str(w, s, max);
}

static const char digits2[200] = "00010203040506070809101112131415161718192021222324252627282930"
				 "31323334353637383940414243444546474849505152535455565758596061"
				 "62636465666768697071727374757677787980818283848586878889909192"
				 "93949596979899";

/* Writes the decimal digits of v at o (at most 20 bytes); returns the end (no printf). */
static inline char *put_u64(char *o, uint64_t v)
{
	char tmp[20], *p = tmp + sizeof(tmp);
	size_t n;

	while (v >= 100) {
		p -= 2;
		memcpy(p, digits2 + 2 * (v % 100), 2);
		v /= 100;
	}
	if (v >= 10) {
		p -= 2;
		memcpy(p, digits2 + 2 * v, 2);
	} else {
		*--p = (char)('0' + v);
	}
	n = (size_t)(tmp + sizeof(tmp) - p);
	memcpy(o, p, n);
	return o + n;
}

static inline void jw_u64(struct jw *w, uint64_t v)
{
	if (jw_room(w, 20))
		w->o = put_u64(w->o, v);
}

static inline void jw_ku64(struct jw *w, const char *key, size_t klen, uint64_t v)
{
	if (!jw_room(w, klen + 20))
		return;
	memcpy(w->o, key, klen);
	w->o = put_u64(w->o + klen, v);
}

static inline void jw_ki64(struct jw *w, const char *key, size_t klen, int64_t v)
{
	if (!jw_room(w, klen + 21))
		return;
	memcpy(w->o, key, klen);
	w->o += klen;
	if (v < 0) {
		*w->o++ = '-';
		w->o = put_u64(w->o, (uint64_t)0 - (uint64_t)v);
	} else {
		w->o = put_u64(w->o, (uint64_t)v);
	}
}

/* 10^0 … 10^21 */
static const u128 pow10_128[22] = {
    1ull,
    10ull,
    100ull,
    1000ull,
    10000ull,
    100000ull,
    1000000ull,
    10000000ull,
    100000000ull,
    1000000000ull,
    10000000000ull,
    100000000000ull,
    1000000000000ull,
    10000000000000ull,
    100000000000000ull,
    1000000000000000ull,
    10000000000000000ull,
    100000000000000000ull,
    1000000000000000000ull,
    10000000000000000000ull,
    (u128)10000000000000000000ull * 10,
    (u128)10000000000000000000ull * 100,
};

int occ_json_format_double_exact(double v, char *out)
{
	uint64_t bits, m;
	unsigned sh;
	int e2, x0;
	char *o = out;

	if (v == 0) { /* -0 too */
		*o = '0';
		return 1;
	}
	if (!(fabs(v) >= 1e-4 && fabs(v) < 1e15)) /* NaN fails too */
		return 0;
	memcpy(&bits, &v, sizeof(bits));
	/* |v| = m / 2^sh exactly: a normal double, m with its implicit bit, 3 <= sh <= 66 */
	m = (bits & ((1ull << 52) - 1)) | 1ull << 52;
	e2 = (int)(bits >> 52 & 0x7ff) - 1023; /* floor(log2 |v|) */
	sh = (unsigned)(52 - e2);
	/* floor(e2 · log10 2): floor(log10 |v|) is x0 or x0 + 1 */
	x0 = (e2 * 78913) >> 18;
	for (int prec = 15; prec <= 17; prec++) {
		const uint64_t lo = (uint64_t)pow10_128[prec - 1], hi = (uint64_t)pow10_128[prec];
		u128 n, r, half = (u128)1 << (sh - 1);
		uint64_t q;
		int x = x0, s, last, len;
		char dig[17];

		/* q = floor(|v| · 10^s), s = prec - 1 - x, with prec digits: x is the exponent */
		for (;;) {
			s = prec - 1 - x; /* 0 <= s <= 21 */
			n = (u128)m * pow10_128[s];
			q = (uint64_t)(n >> sh);
			if (q < hi || x > x0)
				break;
			x++;
		}
		if (q < lo || q >= hi)
			return 0; /* cannot happen; decline rather than trust it */
		/* round half to even on the exact remainder, as glibc's printf does */
		r = n & (((u128)1 << sh) - 1);
		if (r > half || (r == half && (q & 1)))
			q++;
		/* does the decimal q · 10^-s read back as v (strtod: nearest, ties to even)? Its
		 * neighbours' midpoints are (2m ± 1) / 2^(sh+1); below a power of two the lower
		 * one is (4m - 1) / 2^(sh+2). */
		if (prec < 17) {
			u128 qd = (u128)q << (sh + 1), up = (u128)(2 * m + 1) * pow10_128[s], down;
			bool even = !(m & 1), ok;

			if (m == 1ull << 52) {
				qd <<= 1;
				up <<= 1;
				down = (u128)(4 * m - 1) * pow10_128[s];
			} else {
				down = (u128)(2 * m - 1) * pow10_128[s];
			}
			ok = (qd < up && qd > down) || (even && (qd == up || qd == down));
			if (!ok)
				continue;
		}
		if (q == hi) { /* rounded up to the next power of ten */
			q = lo;
			x++;
		}
		if (x >= prec)
			return 0; /* %g would switch to an exponent */
		/* %.{prec}g in fixed notation: the prec digits of q, the point after x + 1 of
		 * them (or "0." and -x - 1 zeros), trailing zeros of the fraction dropped */
		for (int i = prec - 1; i >= 0; i--) {
			dig[i] = (char)('0' + q % 10);
			q /= 10;
		}
		last = prec - 1;
		while (last > 0 && last > x && dig[last] == '0')
			last--;
		if (bits >> 63)
			*o++ = '-';
		if (x >= 0) {
			memcpy(o, dig, (size_t)x + 1);
			o += x + 1;
			if (last > x) {
				*o++ = '.';
				memcpy(o, dig + x + 1, (size_t)(last - x));
				o += last - x;
			}
		} else {
			memcpy(o, "0.000", (size_t)(1 - x));
			o += 1 - x;
			memcpy(o, dig, (size_t)last + 1);
			o += last + 1;
		}
		len = (int)(o - out);
		return len;
	}
	return 0;
}

/* The general case: the shortest of %.15g/%.16g/%.17g that reads back as v. */
static int dbl_printf(double v, char *out)
{
	int n = 0;

	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(out, 32, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			break;
	}
	return n;
}

int occ_json_format_double(double v, char *out)
{
	int n;

	if (!isfinite(v)) {
		memcpy(out, "null", 4);
		return 4;
	}
	if (v == 0)
		v = 0;
	n = occ_json_format_double_exact(v, out);
	return n > 0 ? n : dbl_printf(v, out);
}

/*
 * Shortest of %.15g/%.16g/%.17g that reads back as the same double, so values stay
 * readable ("ipc":1.25) and still round-trip. -0 is written as 0 (JSON "-0" would read back
 * as the integer 0 and break write→parse→write identity); NaN/Inf, which JSON cannot hold,
 * as null.
 */
static void jw_kdbl(struct jw *w, const char *key, size_t klen, double v)
{
	if (!jw_room(w, klen + 32))
		return;
	memcpy(w->o, key, klen);
	w->o += klen;
	w->o += occ_json_format_double(v, w->o);
}

static void jw_ktime(struct jw *w, const char *key, size_t klen, uint64_t ns)
{
	int n;

	if (!jw_room(w, klen + 33))
		return;
	memcpy(w->o, key, klen);
	w->o += klen;
	*w->o++ = '"';
	n = clock_format_rfc3339(ns, w->o, 31);
	w->o += n > 0 ? n : 0;
	*w->o++ = '"';
}

static void write_network(struct jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_network *n = &occ->data.network;

	jw_ku64(w, KEY("pid"), n->pid);
	jw_kstr(w, KEY("comm"), n->comm, sizeof(n->comm));
	jw_kstr(w, KEY("src_ip"), n->src_ip, sizeof(n->src_ip));
	jw_kstr(w, KEY("dst_ip"), n->dst_ip, sizeof(n->dst_ip));
	jw_ku64(w, KEY("src_port"), n->src_port);
	jw_ku64(w, KEY("dst_port"), n->dst_port);
	if (n->family == 4)
		jw_raw(w, LIT(",\"family\":\"ipv4\",\"protocol\":\"tcp\""));
	else if (n->family == 6)
		jw_raw(w, LIT(",\"family\":\"ipv6\",\"protocol\":\"tcp\""));
	else
		jw_raw(w, LIT(",\"family\":\"unknown\",\"protocol\":\"tcp\""));
	if (n->old_state[0])
		jw_kstr(w, KEY("old_state"), n->old_state, sizeof(n->old_state));
	if (n->new_state[0])
		jw_kstr(w, KEY("new_state"), n->new_state, sizeof(n->new_state));
	jw_ku64(w, KEY("total_retrans"), n->total_retrans);
	jw_ku64(w, KEY("snd_cwnd"), n->snd_cwnd);
	if (occ->type == TAPIO_OCC_RTT_DEGRADATION) {
		jw_kdbl(w, KEY("baseline_ms"), n->baseline_ms);
		jw_kdbl(w, KEY("current_ms"), n->current_ms);
	}
}

static void write_container(struct jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_container *c = &occ->data.container;

	jw_ku64(w, KEY("pid"), c->pid);
	jw_ku64(w, KEY("tid"), c->tid);
	jw_kstr(w, KEY("comm"), c->comm, sizeof(c->comm));
	jw_ki64(w, KEY("exit_code"), c->exit_code);
	jw_ki64(w, KEY("signal"), c->signal);
	if (c->core_dumped)
		jw_raw(w, LIT(",\"core_dumped\":true"));
	else
		jw_raw(w, LIT(",\"core_dumped\":false"));
	jw_ku64(w, KEY("cgroup_id"), c->cgroup_id);
	jw_kstr(w, KEY("cgroup_path"), c->cgroup_path, sizeof(c->cgroup_path));
	jw_ku64(w, KEY("memory_usage_bytes"), c->memory_usage_bytes);
	jw_ku64(w, KEY("memory_limit_bytes"), c->memory_limit_bytes);
	jw_ku64(w, KEY("rss_bytes"), c->rss_bytes);
}

static void write_storage(struct jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_storage *s = &occ->data.storage;

	jw_ku64(w, KEY("pid"), s->pid);
	jw_kstr(w, KEY("comm"), s->comm, sizeof(s->comm));
	jw_ku64(w, KEY("dev_major"), s->dev_major);
	jw_ku64(w, KEY("dev_minor"), s->dev_minor);
	jw_ku64(w, KEY("sector"), s->sector);
	jw_ku64(w, KEY("bytes"), s->bytes);
	jw_kstr(w, KEY("opcode"), s->opcode, sizeof(s->opcode));
	jw_kdbl(w, KEY("latency_ms"), s->latency_ms);
	jw_ki64(w, KEY("error_code"), s->error_code);
}

static void write_node(struct jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_node *n = &occ->data.node;

	jw_ki64(w, KEY("cpu"), n->cpu);
	if (occ->type == TAPIO_OCC_MEMORY_PRESSURE) {
		jw_kdbl(w, KEY("memory_some_avg10"), n->memory_some_avg10);
		jw_kdbl(w, KEY("memory_full_avg10"), n->memory_full_avg10);
		return;
	}
	jw_ku64(w, KEY("cycles"), n->cycles);
	jw_ku64(w, KEY("instructions"), n->instructions);
	jw_ku64(w, KEY("stall_cycles"), n->stall_cycles);
	jw_kdbl(w, KEY("ipc"), n->ipc);
	jw_kdbl(w, KEY("stall_pct"), n->stall_pct);
}

/* The document into buf[0..len) (len >= 1); returns its length or -ENOSPC. */
static ssize_t write_occurrence(const struct tapio_occurrence *occ, char *buf, size_t len)
{
	const struct tapio_catalogue_entry *cat = &tapio_catalogue[occ->type];
	struct jw w = {.o = buf, .end = buf + len - 1};

	jw_raw(&w, LIT("{\"id\":"));
	JW_STR(&w, occ->id);
	jw_ktime(&w, KEY("timestamp"), occ->timestamp_ns);
	jw_raw(&w, LIT(",\"source\":\"tapio\",\"type\":\""));
	jw_lit(&w, cat->type);
	jw_raw(&w, LIT("\",\"severity\":\""));
	jw_lit(&w, tapio_severity_name(occ->severity));
	jw_raw(&w, LIT("\",\"outcome\":\""));
	jw_lit(&w, tapio_outcome_name(occ->outcome));
	jw_raw(&w, LIT("\",\"protocol_version\":\"1.0\",\"error\":{\"code\":\""));
	jw_lit(&w, cat->error_code);
	jw_raw(&w, LIT("\",\"message\":"));
	JW_STR(&w, occ->error_message);
	jw_raw(&w, LIT("},\"context\":{\"cluster\":"));
	JW_STR(&w, occ->cluster);
	jw_raw(&w, LIT(",\"node\":"));
	JW_STR(&w, occ->node);
	jw_raw(&w, LIT("},\"data\":{\"config_generation\":"));
	jw_u64(&w, occ->config_generation);
	switch (cat->observer) {
	case TAPIO_OBS_NETWORK:
		write_network(&w, occ);
		break;
	case TAPIO_OBS_CONTAINER:
		write_container(&w, occ);
		break;
	case TAPIO_OBS_STORAGE:
		write_storage(&w, occ);
		break;
	case TAPIO_OBS_NODE:
	default:
		write_node(&w, occ);
		break;
	}
	if (occ->count > 0) {
		jw_ku64(&w, KEY("count"), occ->count);
		jw_ktime(&w, KEY("first_seen"), occ->first_seen_ns);
		jw_ktime(&w, KEY("last_seen"), occ->last_seen_ns);
	}
	jw_raw(&w, LIT("}}"));
	if (w.full)
		return -ENOSPC;
	*w.o = '\0';
	return w.o - buf;
}

ssize_t occ_json_write(const struct tapio_occurrence *occ, char *buf, size_t len)
{
	char scratch[TAPIO_OCC_JSON_MAX];
	ssize_t n;

	if (len > 0)
		buf[0] = '\0';
	if ((unsigned)occ->type >= TAPIO_OCC__COUNT)
		return -EINVAL;
	if (len >= TAPIO_OCC_JSON_MAX) {
		n = write_occurrence(occ, buf, len);
		if (n < 0)
			buf[0] = '\0';
		return n;
	}
	/* a small buffer: the values' worst cases may not fit where the text itself would */
	n = write_occurrence(occ, scratch, sizeof(scratch));
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	memcpy(buf, scratch, (size_t)n + 1);
	return n;
}

/* ---- parser ---- */

struct jp {
	char *err;
	size_t errlen;
	const char *section; /* "", "error.", "context.", "data." */
};

__attribute__((format(printf, 3, 4))) static bool jp_fail(struct jp *p, const char *key,
							  const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!p->err || !p->errlen)
		return false;
	n = snprintf(p->err, p->errlen, "%s%s: ", p->section, key);
	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return false;
}

static json_t *jp_get(struct jp *p, json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		jp_fail(p, key, "missing");
	return v;
}

/* Copies a JSON string into a fixed field, turning U+F780..U+F7FF back into raw bytes. */
static bool jp_str(struct jp *p, json_t *obj, const char *key, char *dst, size_t dstlen)
{
	json_t *v = jp_get(p, obj, key);
	const unsigned char *s;
	size_t n, o = 0;

	if (!v)
		return false;
	if (!json_is_string(v))
		return jp_fail(p, key, "expected a string");
	s = (const unsigned char *)json_string_value(v);
	n = json_string_length(v);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (c == 0xef && i + 2 < n && (s[i + 1] == 0x9e || s[i + 1] == 0x9f) &&
		    s[i + 2] >= 0x80 && s[i + 2] <= 0xbf) {
			c = (unsigned char)(0x80 | ((s[i + 1] & 1) << 6) | (s[i + 2] & 0x3f));
			i += 2;
		}
		if (o + 1 >= dstlen)
			return jp_fail(p, key, "longer than %zu bytes", dstlen - 1);
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return true;
}

static bool jp_int(struct jp *p, json_t *obj, const char *key, int64_t min, int64_t max,
		   int64_t *out)
{
	json_t *v = jp_get(p, obj, key);
	json_int_t x;

	if (!v)
		return false;
	if (!json_is_integer(v))
		return jp_fail(p, key, "expected an integer");
	x = json_integer_value(v);
	if (x < min || x > max)
		return jp_fail(p, key, "%lld out of range %lld..%lld", (long long)x, (long long)min,
			       (long long)max);
	*out = x;
	return true;
}

#define JP_UINT(p, obj, key, field)                                                                \
	({                                                                                         \
		int64_t _v = 0;                                                                    \
		bool _ok = jp_int(                                                                 \
		    p, obj, key, 0,                                                                \
		    sizeof(field) >= 8 ? INT64_MAX : (int64_t)((1ull << (8 * sizeof(field))) - 1), \
		    &_v);                                                                          \
		if (_ok)                                                                           \
			field = (__typeof__(field))_v;                                             \
		_ok;                                                                               \
	})

static bool jp_i32(struct jp *p, json_t *obj, const char *key, int32_t *out)
{
	int64_t v = 0;

	if (!jp_int(p, obj, key, INT32_MIN, INT32_MAX, &v))
		return false;
	*out = (int32_t)v;
	return true;
}

/* Any JSON number; null stands for a value JSON cannot hold (NaN, ±Inf) and reads as NaN. */
static bool jp_dbl(struct jp *p, json_t *obj, const char *key, double *out)
{
	json_t *v = jp_get(p, obj, key);

	if (!v)
		return false;
	if (json_is_null(v))
		*out = NAN;
	else if (json_is_number(v))
		*out = json_number_value(v);
	else
		return jp_fail(p, key, "expected a number");
	return true;
}

static bool jp_time(struct jp *p, json_t *obj, const char *key, uint64_t *out)
{
	json_t *v = jp_get(p, obj, key);

	if (!v)
		return false;
	if (!json_is_string(v))
		return jp_fail(p, key, "expected an RFC 3339 string");
	if (clock_parse_rfc3339(json_string_value(v), out) != 0)
		return jp_fail(p, key, "not an RFC 3339 timestamp: '%.40s'", json_string_value(v));
	return true;
}

/* A string that must equal one of a closed set; returns the index or -1 (error set). */
static int jp_enum(struct jp *p, json_t *obj, const char *key, int (*parse)(const char *))
{
	json_t *v = jp_get(p, obj, key);
	int r;

	if (!v)
		return -1;
	if (!json_is_string(v)) {
		jp_fail(p, key, "expected a string");
		return -1;
	}
	r = parse(json_string_value(v));
	if (r < 0)
		jp_fail(p, key, "unknown value '%.64s'", json_string_value(v));
	return r;
}

static int family_parse(const char *s)
{
	return strcmp(s, "ipv4") == 0	   ? 4
	       : strcmp(s, "ipv6") == 0	   ? 6
	       : strcmp(s, "unknown") == 0 ? 0
					   : -1;
}

static int protocol_parse(const char *s)
{
	return strcmp(s, "tcp") == 0 ? 0 : -1;
}

/* Optional string: absent means "". */
static bool jp_opt_str(struct jp *p, json_t *obj, const char *key, char *dst, size_t dstlen)
{
	if (!json_object_get(obj, key)) {
		dst[0] = '\0';
		return true;
	}
	if (!jp_str(p, obj, key, dst, dstlen))
		return false;
	if (!dst[0])
		return jp_fail(p, key, "empty (omit the key instead)");
	return true;
}

static bool parse_network(struct jp *p, json_t *d, struct tapio_occurrence *occ)
{
	struct tapio_occ_network *n = &occ->data.network;
	int fam;

	if (!JP_UINT(p, d, "pid", n->pid) || !jp_str(p, d, "comm", n->comm, sizeof(n->comm)) ||
	    !jp_str(p, d, "src_ip", n->src_ip, sizeof(n->src_ip)) ||
	    !jp_str(p, d, "dst_ip", n->dst_ip, sizeof(n->dst_ip)) ||
	    !JP_UINT(p, d, "src_port", n->src_port) || !JP_UINT(p, d, "dst_port", n->dst_port))
		return false;
	if ((fam = jp_enum(p, d, "family", family_parse)) < 0)
		return false;
	n->family = (uint8_t)fam;
	if (jp_enum(p, d, "protocol", protocol_parse) < 0)
		return false;
	if (!jp_opt_str(p, d, "old_state", n->old_state, sizeof(n->old_state)) ||
	    !jp_opt_str(p, d, "new_state", n->new_state, sizeof(n->new_state)) ||
	    !JP_UINT(p, d, "total_retrans", n->total_retrans) ||
	    !JP_UINT(p, d, "snd_cwnd", n->snd_cwnd))
		return false;
	if (occ->type == TAPIO_OCC_RTT_DEGRADATION)
		return jp_dbl(p, d, "baseline_ms", &n->baseline_ms) &&
		       jp_dbl(p, d, "current_ms", &n->current_ms);
	return true;
}

static bool parse_container(struct jp *p, json_t *d, struct tapio_occurrence *occ)
{
	struct tapio_occ_container *c = &occ->data.container;
	json_t *v;

	if (!JP_UINT(p, d, "pid", c->pid) || !JP_UINT(p, d, "tid", c->tid) ||
	    !jp_str(p, d, "comm", c->comm, sizeof(c->comm)) ||
	    !jp_i32(p, d, "exit_code", &c->exit_code) || !jp_i32(p, d, "signal", &c->signal))
		return false;
	if (!(v = jp_get(p, d, "core_dumped")))
		return false;
	if (!json_is_boolean(v))
		return jp_fail(p, "core_dumped", "expected true or false");
	c->core_dumped = json_is_true(v);
	return JP_UINT(p, d, "cgroup_id", c->cgroup_id) &&
	       jp_str(p, d, "cgroup_path", c->cgroup_path, sizeof(c->cgroup_path)) &&
	       JP_UINT(p, d, "memory_usage_bytes", c->memory_usage_bytes) &&
	       JP_UINT(p, d, "memory_limit_bytes", c->memory_limit_bytes) &&
	       JP_UINT(p, d, "rss_bytes", c->rss_bytes);
}

static bool parse_storage(struct jp *p, json_t *d, struct tapio_occurrence *occ)
{
	struct tapio_occ_storage *s = &occ->data.storage;

	return JP_UINT(p, d, "pid", s->pid) && jp_str(p, d, "comm", s->comm, sizeof(s->comm)) &&
	       JP_UINT(p, d, "dev_major", s->dev_major) &&
	       JP_UINT(p, d, "dev_minor", s->dev_minor) && JP_UINT(p, d, "sector", s->sector) &&
	       JP_UINT(p, d, "bytes", s->bytes) &&
	       jp_str(p, d, "opcode", s->opcode, sizeof(s->opcode)) &&
	       jp_dbl(p, d, "latency_ms", &s->latency_ms) &&
	       jp_i32(p, d, "error_code", &s->error_code);
}

static bool parse_node(struct jp *p, json_t *d, struct tapio_occurrence *occ)
{
	struct tapio_occ_node *n = &occ->data.node;

	if (!jp_i32(p, d, "cpu", &n->cpu))
		return false;
	if (occ->type == TAPIO_OCC_MEMORY_PRESSURE)
		return jp_dbl(p, d, "memory_some_avg10", &n->memory_some_avg10) &&
		       jp_dbl(p, d, "memory_full_avg10", &n->memory_full_avg10);
	return JP_UINT(p, d, "cycles", n->cycles) &&
	       JP_UINT(p, d, "instructions", n->instructions) &&
	       JP_UINT(p, d, "stall_cycles", n->stall_cycles) && jp_dbl(p, d, "ipc", &n->ipc) &&
	       jp_dbl(p, d, "stall_pct", &n->stall_pct);
}

static json_t *jp_object(struct jp *p, json_t *obj, const char *key)
{
	json_t *v = jp_get(p, obj, key);

	if (v && !json_is_object(v)) {
		jp_fail(p, key, "expected an object");
		return NULL;
	}
	return v;
}

static bool parse_top(struct jp *p, json_t *root, struct tapio_occurrence *occ)
{
	json_t *v, *err, *ctx, *data;
	int t, sev, out;
	bool ok;

	if (!jp_str(p, root, "id", occ->id, sizeof(occ->id)))
		return false;
	if (ulid_validate(occ->id) != 0)
		return jp_fail(p, "id", "not a ULID: '%s'", occ->id);
	if (!jp_time(p, root, "timestamp", &occ->timestamp_ns))
		return false;
	if (!(v = jp_get(p, root, "source")))
		return false;
	if (!json_is_string(v) || strcmp(json_string_value(v), "tapio") != 0)
		return jp_fail(p, "source", "expected \"tapio\"");
	if ((t = jp_enum(p, root, "type", tapio_occ_type_parse)) < 0)
		return false;
	occ->type = (enum tapio_occ_type)t;
	if ((sev = jp_enum(p, root, "severity", tapio_severity_parse)) < 0 ||
	    (out = jp_enum(p, root, "outcome", tapio_outcome_parse)) < 0)
		return false;
	occ->severity = (enum tapio_severity)sev;
	occ->outcome = (enum tapio_outcome)out;
	if (!(v = jp_get(p, root, "protocol_version")))
		return false;
	/* additive evolution within major version 1 */
	if (!json_is_string(v) || strncmp(json_string_value(v), "1.", 2) != 0)
		return jp_fail(p, "protocol_version", "unsupported (expected \"1.x\")");

	if (!(err = jp_object(p, root, "error")))
		return false;
	p->section = "error.";
	if (!(v = jp_get(p, err, "code")))
		return false;
	if (!json_is_string(v) ||
	    strcmp(json_string_value(v), tapio_catalogue[occ->type].error_code) != 0)
		return jp_fail(p, "code", "expected \"%s\" for %s",
			       tapio_catalogue[occ->type].error_code,
			       tapio_catalogue[occ->type].type);
	if (!jp_str(p, err, "message", occ->error_message, sizeof(occ->error_message)))
		return false;
	p->section = "";

	if (!(ctx = jp_object(p, root, "context")))
		return false;
	p->section = "context.";
	if (!jp_str(p, ctx, "cluster", occ->cluster, sizeof(occ->cluster)) ||
	    !jp_str(p, ctx, "node", occ->node, sizeof(occ->node)))
		return false;
	p->section = "";

	if (!(data = jp_object(p, root, "data")))
		return false;
	p->section = "data.";
	if (!JP_UINT(p, data, "config_generation", occ->config_generation))
		return false;
	switch (tapio_catalogue[occ->type].observer) {
	case TAPIO_OBS_NETWORK:
		ok = parse_network(p, data, occ);
		break;
	case TAPIO_OBS_CONTAINER:
		ok = parse_container(p, data, occ);
		break;
	case TAPIO_OBS_STORAGE:
		ok = parse_storage(p, data, occ);
		break;
	case TAPIO_OBS_NODE:
	default:
		ok = parse_node(p, data, occ);
		break;
	}
	if (!ok)
		return false;
	if (json_object_get(data, "count")) {
		if (!JP_UINT(p, data, "count", occ->count))
			return false;
		if (occ->count == 0)
			return jp_fail(p, "count", "must be >= 1 when present");
		if (!jp_time(p, data, "first_seen", &occ->first_seen_ns) ||
		    !jp_time(p, data, "last_seen", &occ->last_seen_ns))
			return false;
	} else if (json_object_get(data, "first_seen") || json_object_get(data, "last_seen")) {
		return jp_fail(p, "count", "missing (first_seen/last_seen need it)");
	}
	return true;
}

int occ_json_parse(const char *json, size_t len, struct tapio_occurrence *occ, char *err,
		   size_t errlen)
{
	struct jp p = {.err = err, .errlen = errlen, .section = ""};
	json_error_t jerr;
	json_t *root;
	int rc = -EINVAL;

	if (err && errlen)
		err[0] = '\0';
	memset(occ, 0, sizeof(*occ));
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (err && errlen)
			snprintf(err, errlen, "invalid JSON at column %d: %s", jerr.column,
				 jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		if (err && errlen)
			snprintf(err, errlen, "expected a JSON object");
		goto out;
	}
	if (parse_top(&p, root, occ))
		rc = 0;
out:
	json_decref(root);
	if (rc != 0)
		memset(occ, 0, sizeof(*occ));
	return rc;
}
