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

struct jw {
	char *buf;
	size_t len; /* capacity, NUL included */
	size_t pos;
	bool full;
};

static void jw_raw(struct jw *w, const char *s, size_t n)
{
	if (w->full)
		return;
	if (w->pos + n >= w->len) {
		w->full = true;
		return;
	}
	memcpy(w->buf + w->pos, s, n);
	w->pos += n;
}

static void jw_lit(struct jw *w, const char *s)
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

/* Writes a JSON string from at most max bytes of s (a fixed char array, maybe unterminated). */
static void jw_str(struct jw *w, const char *s, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strnlen(s, max), i = 0, run = 0;

	jw_raw(w, "\"", 1);
	while (i < n) {
		unsigned char c = p[i];
		char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
		size_t seq;

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			run++;
			i++;
			continue;
		}
		if (c >= 0x80 && (seq = utf8_seq_len(p + i, n - i)) > 0) {
			run += seq;
			i += seq;
			continue;
		}
		/* flush the printable run, then the escape */
		jw_raw(w, (const char *)p + i - run, run);
		run = 0;
		if (c == '"' || c == '\\') {
			esc[1] = (char)c;
			jw_raw(w, esc, 2);
		} else if (c >= 0x80) {
			/* a byte outside valid UTF-8 → U+F7XX, mapped back by the parser */
			esc[2] = 'f';
			esc[3] = '7';
			jw_raw(w, esc, 6);
		} else {
			jw_raw(w, esc, 6); /* control characters and DEL */
		}
		i++;
	}
	jw_raw(w, (const char *)p + i - run, run);
	jw_raw(w, "\"", 1);
}

#define JW_STR(w, field) jw_str(w, field, sizeof(field))

static void jw_key(struct jw *w, const char *key)
{
	jw_raw(w, ",\"", 2);
	jw_lit(w, key);
	jw_raw(w, "\":", 2);
}

static void jw_kstr(struct jw *w, const char *key, const char *s, size_t max)
{
	jw_key(w, key);
	jw_str(w, s, max);
}

/* Decimal digits of v into the end of tmp[24]; returns the first digit (no printf: hot path). */
static char *u64_digits(uint64_t v, char tmp[24])
{
	char *p = tmp + 24;

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return p;
}

static void jw_u64(struct jw *w, uint64_t v)
{
	char tmp[24];
	char *p = u64_digits(v, tmp);

	jw_raw(w, p, (size_t)(tmp + 24 - p));
}

static void jw_ku64(struct jw *w, const char *key, uint64_t v)
{
	jw_key(w, key);
	jw_u64(w, v);
}

static void jw_ki64(struct jw *w, const char *key, int64_t v)
{
	jw_key(w, key);
	if (v < 0) {
		jw_raw(w, "-", 1);
		jw_u64(w, (uint64_t)0 - (uint64_t)v);
	} else {
		jw_u64(w, (uint64_t)v);
	}
}

/*
 * Shortest of %.15g/%.16g/%.17g that reads back as the same double, so values stay
 * readable ("ipc":1.25) and still round-trip. -0 is written as 0 (JSON "-0" would read back
 * as the integer 0 and break write→parse→write identity); NaN/Inf, which JSON cannot hold,
 * as null.
 */
static void jw_kdbl(struct jw *w, const char *key, double v)
{
	char tmp[32];
	int n = 0;

	jw_key(w, key);
	if (!isfinite(v)) {
		jw_lit(w, "null");
		return;
	}
	if (v == 0)
		v = 0;
	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	jw_raw(w, tmp, (size_t)n);
}

static void jw_ktime(struct jw *w, const char *key, uint64_t ns)
{
	char tmp[40];
	int n = clock_format_rfc3339(ns, tmp, sizeof(tmp));

	jw_key(w, key);
	jw_raw(w, "\"", 1);
	jw_raw(w, tmp, n > 0 ? (size_t)n : 0);
	jw_raw(w, "\"", 1);
}

static const char *family_name(uint8_t family)
{
	return family == 4 ? "ipv4" : family == 6 ? "ipv6" : "unknown";
}

static void write_network(struct jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_network *n = &occ->data.network;

	jw_ku64(w, "pid", n->pid);
	jw_kstr(w, "comm", n->comm, sizeof(n->comm));
	jw_kstr(w, "src_ip", n->src_ip, sizeof(n->src_ip));
	jw_kstr(w, "dst_ip", n->dst_ip, sizeof(n->dst_ip));
	jw_ku64(w, "src_port", n->src_port);
	jw_ku64(w, "dst_port", n->dst_port);
	jw_key(w, "family");
	jw_raw(w, "\"", 1);
	jw_lit(w, family_name(n->family));
	jw_raw(w, "\"", 1);
	jw_kstr(w, "protocol", "tcp", 4);
	if (n->old_state[0])
		jw_kstr(w, "old_state", n->old_state, sizeof(n->old_state));
	if (n->new_state[0])
		jw_kstr(w, "new_state", n->new_state, sizeof(n->new_state));
	jw_ku64(w, "total_retrans", n->total_retrans);
	jw_ku64(w, "snd_cwnd", n->snd_cwnd);
	if (occ->type == TAPIO_OCC_RTT_DEGRADATION) {
		jw_kdbl(w, "baseline_ms", n->baseline_ms);
		jw_kdbl(w, "current_ms", n->current_ms);
	}
}

static void write_container(struct jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_container *c = &occ->data.container;

	jw_ku64(w, "pid", c->pid);
	jw_ku64(w, "tid", c->tid);
	jw_kstr(w, "comm", c->comm, sizeof(c->comm));
	jw_ki64(w, "exit_code", c->exit_code);
	jw_ki64(w, "signal", c->signal);
	jw_key(w, "core_dumped");
	jw_lit(w, c->core_dumped ? "true" : "false");
	jw_ku64(w, "cgroup_id", c->cgroup_id);
	jw_kstr(w, "cgroup_path", c->cgroup_path, sizeof(c->cgroup_path));
	jw_ku64(w, "memory_usage_bytes", c->memory_usage_bytes);
	jw_ku64(w, "memory_limit_bytes", c->memory_limit_bytes);
	jw_ku64(w, "rss_bytes", c->rss_bytes);
}

static void write_storage(struct jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_storage *s = &occ->data.storage;

	jw_ku64(w, "pid", s->pid);
	jw_kstr(w, "comm", s->comm, sizeof(s->comm));
	jw_ku64(w, "dev_major", s->dev_major);
	jw_ku64(w, "dev_minor", s->dev_minor);
	jw_ku64(w, "sector", s->sector);
	jw_ku64(w, "bytes", s->bytes);
	jw_kstr(w, "opcode", s->opcode, sizeof(s->opcode));
	jw_kdbl(w, "latency_ms", s->latency_ms);
	jw_ki64(w, "error_code", s->error_code);
}

static void write_node(struct jw *w, const struct tapio_occurrence *occ)
{
	const struct tapio_occ_node *n = &occ->data.node;

	jw_ki64(w, "cpu", n->cpu);
	if (occ->type == TAPIO_OCC_MEMORY_PRESSURE) {
		jw_kdbl(w, "memory_some_avg10", n->memory_some_avg10);
		jw_kdbl(w, "memory_full_avg10", n->memory_full_avg10);
		return;
	}
	jw_ku64(w, "cycles", n->cycles);
	jw_ku64(w, "instructions", n->instructions);
	jw_ku64(w, "stall_cycles", n->stall_cycles);
	jw_kdbl(w, "ipc", n->ipc);
	jw_kdbl(w, "stall_pct", n->stall_pct);
}

ssize_t occ_json_write(const struct tapio_occurrence *occ, char *buf, size_t len)
{
	struct jw w = {.buf = buf, .len = len};
	const struct tapio_catalogue_entry *cat;

	if (len > 0)
		buf[0] = '\0';
	if ((unsigned)occ->type >= TAPIO_OCC__COUNT)
		return -EINVAL;
	cat = &tapio_catalogue[occ->type];

	jw_lit(&w, "{\"id\":");
	JW_STR(&w, occ->id);
	jw_ktime(&w, "timestamp", occ->timestamp_ns);
	jw_lit(&w, ",\"source\":\"tapio\",\"type\":\"");
	jw_lit(&w, cat->type);
	jw_lit(&w, "\",\"severity\":\"");
	jw_lit(&w, tapio_severity_name(occ->severity));
	jw_lit(&w, "\",\"outcome\":\"");
	jw_lit(&w, tapio_outcome_name(occ->outcome));
	jw_lit(&w, "\",\"protocol_version\":\"1.0\",\"error\":{\"code\":\"");
	jw_lit(&w, cat->error_code);
	jw_lit(&w, "\",\"message\":");
	JW_STR(&w, occ->error_message);
	jw_lit(&w, "},\"context\":{\"cluster\":");
	JW_STR(&w, occ->cluster);
	jw_lit(&w, ",\"node\":");
	JW_STR(&w, occ->node);
	jw_lit(&w, "},\"data\":{\"config_generation\":");
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
		jw_ku64(&w, "count", occ->count);
		jw_ktime(&w, "first_seen", occ->first_seen_ns);
		jw_ktime(&w, "last_seen", occ->last_seen_ns);
	}
	jw_lit(&w, "}}");
	if (w.full) {
		if (len > 0)
			buf[0] = '\0';
		return -ENOSPC;
	}
	buf[w.pos] = '\0';
	return (ssize_t)w.pos;
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
