/* Query-string parsing for the HTTP query API: pure, bounded, refuses anything unexpected. */
#include "controller/params.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"

#define CURSOR_VERSION 1u
#define CURSOR_FIELDS  7u
#define CURSOR_RAW     (1u + CURSOR_FIELDS * 8u + 4u)

static int fail(struct params_error *err, enum params_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct params_error *err, enum params_status st, const char *fmt, ...)
{
	va_list ap;

	err->status = st;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long params_unescape(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	if (cap == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)in[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return -1;
			hi = hexval(in[i + 1]);
			lo = hexval(in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		if (c == 0 || o + 1 >= cap)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (long)o;
}

/* "<digits><unit>" with unit s, m, h or d (and "ms" refused): seconds. */
static int parse_unit_duration(const char *s, uint64_t *secs)
{
	uint64_t v = 0, mult;
	size_t i = 0;

	while (s[i] >= '0' && s[i] <= '9') {
		if (v > 1000000000ull)
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
		i++;
	}
	if (i == 0 || s[i] == '\0' || s[i + 1] != '\0')
		return -EINVAL;
	switch (s[i]) {
	case 's':
		mult = 1;
		break;
	case 'm':
		mult = 60;
		break;
	case 'h':
		mult = 3600;
		break;
	case 'd':
		mult = 86400;
		break;
	default:
		return -EINVAL;
	}
	if (v == 0)
		return -EINVAL;
	*secs = v * mult;
	return 0;
}

int params_parse_time(const char *s, uint64_t now_ns, uint64_t *ns)
{
	uint64_t secs;

	if (!s[0])
		return -EINVAL;
	if (s[0] >= '0' && s[0] <= '9' && strchr(s, '-') == NULL && strchr(s, ':') == NULL) {
		if (parse_unit_duration(s, &secs) < 0 || secs * 1000000000ull > now_ns)
			return -EINVAL;
		*ns = now_ns - secs * 1000000000ull;
		return 0;
	}
	if (clock_parse_rfc3339(s, ns) < 0 || *ns == 0)
		return -EINVAL;
	return 0;
}

int params_parse_duration_s(const char *s, uint64_t *secs)
{
	return parse_unit_duration(s, secs);
}

/* ---- the query-string walker ------------------------------------------------------------- */

struct param_spec {
	const char *name;
	char *value; /* PARAMS_MAX_VALUE bytes */
	bool seen;
};

/*
 * Splits query into name=value pairs, decodes both and stores each value in the matching
 * spec; unknown, repeated, empty and undecodable parameters are refused by name.
 */
static int walk(const char *query, size_t len, struct param_spec *specs, size_t n,
		struct params_error *err)
{
	char name[64];
	size_t i = 0;

	if (len > PARAMS_MAX_QUERY)
		return fail(err, PARAMS_BAD_PARAMETER, "query string longer than %d bytes",
			    PARAMS_MAX_QUERY);
	while (query && i < len) {
		size_t end = i, eq;
		struct param_spec *sp = NULL;
		long nl;

		while (end < len && query[end] != '&')
			end++;
		if (end == i) {
			i = end + 1;
			continue;
		}
		eq = i;
		while (eq < end && query[eq] != '=')
			eq++;
		nl = params_unescape(query + i, eq - i, name, sizeof(name));
		if (nl <= 0)
			return fail(err, PARAMS_BAD_PARAMETER, "malformed parameter name");
		for (size_t k = 0; k < n; k++)
			if (strcmp(specs[k].name, name) == 0)
				sp = &specs[k];
		if (!sp)
			return fail(err, PARAMS_BAD_PARAMETER, "unknown parameter '%.40s'", name);
		if (sp->seen)
			return fail(err, PARAMS_BAD_PARAMETER,
				    "parameter '%s' given more than once", sp->name);
		sp->seen = true;
		if (eq >= end ||
		    params_unescape(query + eq + 1, end - eq - 1, sp->value, PARAMS_MAX_VALUE) <= 0)
			return fail(err, PARAMS_BAD_PARAMETER,
				    "parameter '%s' needs a non-empty, well-formed value",
				    sp->name);
		i = end + 1;
	}
	return 0;
}

int params_parse_none(const char *query, size_t len, struct params_error *err)
{
	memset(err, 0, sizeof(*err));
	return walk(query, len, NULL, 0, err);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* Comma-separated full type names → mask. */
static int parse_types(const char *s, uint32_t *mask)
{
	char one[64];

	*mask = 0;
	while (*s) {
		size_t n = strcspn(s, ",");
		int t;

		if (n == 0 || n >= sizeof(one))
			return -EINVAL;
		memcpy(one, s, n);
		one[n] = '\0';
		t = tapio_occ_type_parse(one);
		if (t < 0)
			return -EINVAL;
		*mask |= 1u << t;
		s += n;
		if (*s == ',') {
			s++;
			if (!*s)
				return -EINVAL;
		}
	}
	return *mask ? 0 : -EINVAL;
}

int params_parse_occurrences(const char *query, size_t len, uint64_t now_ns, struct occ_params *out,
			     struct params_error *err)
{
	char v_since[PARAMS_MAX_VALUE], v_until[PARAMS_MAX_VALUE], v_type[PARAMS_MAX_VALUE];
	char v_node[PARAMS_MAX_VALUE], v_sev[PARAMS_MAX_VALUE], v_limit[PARAMS_MAX_VALUE];
	char v_cursor[PARAMS_MAX_VALUE];
	struct param_spec specs[] = {
	    {"since", v_since, false},	 {"until", v_until, false},  {"type", v_type, false},
	    {"node", v_node, false},	 {"severity", v_sev, false}, {"limit", v_limit, false},
	    {"cursor", v_cursor, false},
	};
	uint64_t h = 14695981039346656037ull;
	int r;

	memset(err, 0, sizeof(*err));
	memset(out, 0, sizeof(*out));
	out->min_severity = -1;
	out->limit = PARAMS_LIMIT_DEFAULT;
	r = walk(query, len, specs, sizeof(specs) / sizeof(specs[0]), err);
	if (r < 0)
		return r;
	if (specs[0].seen && params_parse_time(v_since, now_ns, &out->since_ns) < 0)
		return fail(err, PARAMS_BAD_PARAMETER,
			    "parameter 'since': want RFC 3339 or a duration like 15m, 24h, 7d");
	if (specs[1].seen && params_parse_time(v_until, now_ns, &out->until_ns) < 0)
		return fail(err, PARAMS_BAD_PARAMETER,
			    "parameter 'until': want RFC 3339 or a duration like 15m, 24h, 7d");
	if (out->until_ns && out->since_ns >= out->until_ns)
		return fail(err, PARAMS_BAD_PARAMETER, "parameter 'since' must be before 'until'");
	if (specs[2].seen && parse_types(v_type, &out->type_mask) < 0)
		return fail(err, PARAMS_BAD_PARAMETER,
			    "parameter 'type': want full type names (kernel.<observer>.<anomaly>), "
			    "comma separated");
	if (specs[3].seen) {
		if (strlen(v_node) >= sizeof(out->node))
			return fail(err, PARAMS_BAD_PARAMETER,
				    "parameter 'node': longer than %d bytes", TAPIO_NAME_LEN - 1);
		memcpy(out->node, v_node, strlen(v_node) + 1);
		out->has_node = true;
	}
	if (specs[4].seen) {
		out->min_severity = tapio_severity_parse(v_sev);
		if (out->min_severity < 0)
			return fail(err, PARAMS_BAD_PARAMETER,
				    "parameter 'severity': want debug, info, warning, error or "
				    "critical");
	}
	if (specs[5].seen) {
		size_t n = strspn(v_limit, "0123456789");
		unsigned long v = 0;

		for (size_t i = 0; i < n && i < 6; i++)
			v = v * 10 + (unsigned long)(v_limit[i] - '0');
		if (n == 0 || v_limit[n] || n > 5 || v < 1 || v > PARAMS_LIMIT_MAX)
			return fail(err, PARAMS_BAD_PARAMETER,
				    "parameter 'limit': want an integer in 1..%d",
				    PARAMS_LIMIT_MAX);
		out->limit = (uint32_t)v;
	}
	/* the filters as given identify the query; the cursor must come from the same one */
	h = fnv1a(h, "s", 1);
	if (specs[0].seen)
		h = fnv1a(h, v_since, strlen(v_since));
	h = fnv1a(h, "u", 1);
	if (specs[1].seen)
		h = fnv1a(h, v_until, strlen(v_until));
	h = fnv1a(h, &out->type_mask, sizeof(out->type_mask));
	h = fnv1a(h, &out->min_severity, sizeof(out->min_severity));
	h = fnv1a(h, "n", 1);
	if (out->has_node)
		h = fnv1a(h, out->node, strlen(out->node) + 1);
	out->query_hash = h;
	if (specs[6].seen) {
		if (params_cursor_decode(v_cursor, &out->cursor) < 0)
			return fail(err, PARAMS_BAD_CURSOR, "parameter 'cursor': does not decode");
		if (out->cursor.query_hash != h)
			return fail(err, PARAMS_BAD_CURSOR,
				    "parameter 'cursor': belongs to another query (the filters "
				    "must not change between pages)");
		/* the window the first page resolved stays fixed */
		out->since_ns = out->cursor.since_ns;
		out->until_ns = out->cursor.until_ns;
		out->has_cursor = true;
	}
	return 0;
}

int params_parse_summary(const char *query, size_t len, uint64_t now_ns, struct summary_params *out,
			 struct params_error *err)
{
	char v_by[PARAMS_MAX_VALUE], v_bucket[PARAMS_MAX_VALUE], v_since[PARAMS_MAX_VALUE];
	char v_until[PARAMS_MAX_VALUE];
	struct param_spec specs[] = {
	    {"by", v_by, false},
	    {"bucket", v_bucket, false},
	    {"since", v_since, false},
	    {"until", v_until, false},
	};
	const uint64_t minute = 60ull * 1000000000ull;
	uint64_t secs = 60;
	int r;

	memset(err, 0, sizeof(*err));
	memset(out, 0, sizeof(*out));
	r = walk(query, len, specs, sizeof(specs) / sizeof(specs[0]), err);
	if (r < 0)
		return r;
	if (!specs[0].seen)
		return fail(err, PARAMS_BAD_PARAMETER,
			    "parameter 'by' is required: type, node or severity");
	if (strcmp(v_by, "type") == 0)
		out->by = AGG_BY_TYPE;
	else if (strcmp(v_by, "node") == 0)
		out->by = AGG_BY_NODE;
	else if (strcmp(v_by, "severity") == 0)
		out->by = AGG_BY_SEVERITY;
	else
		return fail(err, PARAMS_BAD_PARAMETER,
			    "parameter 'by': want type, node or severity");
	if (specs[1].seen &&
	    (parse_unit_duration(v_bucket, &secs) < 0 || secs % 60 || secs > 86400))
		return fail(err, PARAMS_BAD_PARAMETER,
			    "parameter 'bucket': want whole minutes from 1m to 24h");
	out->bucket_s = (uint32_t)secs;
	out->since_ns = now_ns > 86400ull * 1000000000ull ? now_ns - 86400ull * 1000000000ull : 0;
	out->until_ns = now_ns;
	if (specs[2].seen && params_parse_time(v_since, now_ns, &out->since_ns) < 0)
		return fail(err, PARAMS_BAD_PARAMETER,
			    "parameter 'since': want RFC 3339 or a duration like 15m, 24h, 7d");
	if (specs[3].seen && params_parse_time(v_until, now_ns, &out->until_ns) < 0)
		return fail(err, PARAMS_BAD_PARAMETER,
			    "parameter 'until': want RFC 3339 or a duration like 15m, 24h, 7d");
	/* whole minutes: the aggregate counts minutes, so the window is widened to them */
	out->since_ns -= out->since_ns % minute;
	if (out->until_ns % minute)
		out->until_ns += minute - out->until_ns % minute;
	if (out->since_ns >= out->until_ns)
		return fail(err, PARAMS_BAD_PARAMETER, "parameter 'since' must be before 'until'");
	return 0;
}

/* ---- cursor ------------------------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t check32(const uint8_t *p, size_t n)
{
	uint64_t h = fnv1a(14695981039346656037ull, p, n);

	return (uint32_t)(h ^ (h >> 32));
}

size_t params_cursor_encode(const struct params_cursor *c, char *buf, size_t len)
{
	uint8_t raw[CURSOR_RAW + 2] = {0};
	const uint64_t f[CURSOR_FIELDS] = {c->upper_segment, c->upper_offset, c->last_segment,
					   c->last_offset,   c->since_ns,     c->until_ns,
					   c->query_hash};
	uint32_t ck;
	size_t o = 0;

	raw[0] = CURSOR_VERSION;
	for (unsigned i = 0; i < CURSOR_FIELDS; i++)
		put64(raw + 1 + 8 * i, f[i]);
	ck = check32(raw, CURSOR_RAW - 4);
	for (int i = 0; i < 4; i++)
		raw[CURSOR_RAW - 4 + i] = (uint8_t)(ck >> (8 * i));
	for (size_t i = 0; i < CURSOR_RAW && o + 4 < len; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		size_t left = CURSOR_RAW - i;

		buf[o++] = b64[(v >> 18) & 63];
		buf[o++] = b64[(v >> 12) & 63];
		if (left > 1)
			buf[o++] = b64[(v >> 6) & 63];
		if (left > 2)
			buf[o++] = b64[v & 63];
	}
	if (len)
		buf[o < len ? o : len - 1] = '\0';
	return o;
}

int params_cursor_decode(const char *s, struct params_cursor *c)
{
	const size_t want = (CURSOR_RAW * 4 + 2) / 3;
	uint8_t raw[CURSOR_RAW + 3] = {0};
	uint32_t acc = 0, ck;
	size_t o = 0, n = strlen(s);
	int bits = 0;

	if (n != want)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		const char *p = strchr(b64, s[i]);

		if (!s[i] || !p)
			return -EINVAL;
		acc = (acc << 6) | (uint32_t)(p - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			raw[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (o != CURSOR_RAW || acc != 0 || raw[0] != CURSOR_VERSION)
		return -EINVAL;
	ck = check32(raw, CURSOR_RAW - 4);
	for (int i = 0; i < 4; i++)
		if (raw[CURSOR_RAW - 4 + i] != (uint8_t)(ck >> (8 * i)))
			return -EINVAL;
	c->upper_segment = get64(raw + 1);
	c->upper_offset = get64(raw + 9);
	c->last_segment = get64(raw + 17);
	c->last_offset = get64(raw + 25);
	c->since_ns = get64(raw + 33);
	c->until_ns = get64(raw + 41);
	c->query_hash = get64(raw + 49);
	if (c->last_segment > c->upper_segment ||
	    (c->last_segment == c->upper_segment && c->last_offset > c->upper_offset))
		return -EINVAL;
	if (c->until_ns && c->since_ns >= c->until_ns)
		return -EINVAL;
	return 0;
}
