/*
 * Query-string parsing and validation for the HTTP query API (docs/api.md): percent-decoding,
 * relative and RFC 3339 times, type/severity/node filters, limits, and the opaque pagination
 * cursor. Pure functions (no I/O, no store): every input is hostile until proven otherwise.
 */
#ifndef TAPIO_CONTROLLER_PARAMS_H
#define TAPIO_CONTROLLER_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/occurrence.h"
#include "controller/aggregate.h"

#define PARAMS_MAX_QUERY     4096 /* longest query string accepted */
#define PARAMS_MAX_VALUE     1024 /* longest decoded parameter value */
#define PARAMS_LIMIT_DEFAULT 100
#define PARAMS_LIMIT_MAX     1000
#define PARAMS_CURSOR_MAX    128 /* encoded cursor length + NUL fits in this */

enum params_status {
	PARAMS_OK = 0,
	PARAMS_BAD_PARAMETER, /* 400 BAD_PARAMETER */
	PARAMS_BAD_CURSOR,    /* 400 BAD_CURSOR */
};

struct params_error {
	enum params_status status;
	char message[256]; /* names the parameter */
};

/*
 * Where a paginated scan stands: the upper bound fixed by the first page (store position of
 * the newest record then), the position of the last record returned, the time window
 * resolved by the first page (relative times do not slide between pages) and a hash of the
 * filters, so a cursor cannot be replayed against another query.
 */
struct params_cursor {
	uint64_t upper_segment, upper_offset;
	uint64_t last_segment, last_offset;
	uint64_t since_ns, until_ns;
	uint64_t query_hash;
};

struct occ_params {
	uint64_t since_ns;  /* 0 → no lower bound */
	uint64_t until_ns;  /* exclusive; 0 → no upper bound */
	uint32_t type_mask; /* bit (1 << type); 0 → all */
	int min_severity;   /* -1 → any */
	bool has_node;
	char node[TAPIO_NAME_LEN];
	uint32_t limit;
	bool has_cursor;
	struct params_cursor cursor; /* valid with has_cursor */
	uint64_t query_hash;	     /* of the filters as given (not limit, not cursor) */
};

struct summary_params {
	enum aggregate_by by;
	uint32_t bucket_s;
	uint64_t since_ns; /* floored to the minute */
	uint64_t until_ns; /* ceiled to the minute, exclusive */
};

/*
 * Decodes one percent-encoded component ('+' is a space) of len bytes into out (NUL
 * terminated, at most cap - 1 bytes). Returns the decoded length, or -1 for a malformed
 * escape, an embedded NUL or a value that does not fit.
 */
long params_unescape(const char *in, size_t len, char *out, size_t cap);

/*
 * A time parameter: RFC 3339, or a relative duration back from now_ns ("30s", "15m", "24h",
 * "7d"; a positive integer and one unit). Returns 0 and *ns, or -EINVAL.
 */
int params_parse_time(const char *s, uint64_t now_ns, uint64_t *ns);

/* A duration "1m" .. "24h" (s, m, h, d units) into seconds. Returns 0 or -EINVAL. */
int params_parse_duration_s(const char *s, uint64_t *secs);

/*
 * GET /v1/occurrences: since, until, type (comma-separated full type names), node, severity
 * (minimum), limit (1..1000, default 100), cursor. query is the raw query string (without
 * '?', may be NULL). Returns 0 and *out, or -EINVAL with *err filled (unknown, repeated or
 * empty parameter, bad value, since >= until, a cursor that does not decode or belongs to
 * other filters).
 */
int params_parse_occurrences(const char *query, size_t len, uint64_t now_ns, struct occ_params *out,
			     struct params_error *err);

/*
 * GET /v1/summary: by (required), bucket (default 1m, 1m..24h, whole minutes), since
 * (default 24h), until (default now). Returns 0 and *out, or -EINVAL with *err.
 */
int params_parse_summary(const char *query, size_t len, uint64_t now_ns, struct summary_params *out,
			 struct params_error *err);

/* Endpoints without parameters: any parameter is refused. Returns 0 or -EINVAL with *err. */
int params_parse_none(const char *query, size_t len, struct params_error *err);

/* Encodes c as URL-safe base64 text into buf (>= PARAMS_CURSOR_MAX). Returns the length. */
size_t params_cursor_encode(const struct params_cursor *c, char *buf, size_t len);

/* Decodes a cursor; returns 0, or -EINVAL (bad length, alphabet, version or checksum). */
int params_cursor_decode(const char *s, struct params_cursor *c);

#endif
