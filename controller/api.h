/*
 * The query API's handlers (docs/api.md): /v1/status, /v1/agents, /v1/occurrences,
 * /v1/summary, /metrics and the dashboard at /. Independent of the HTTP library: a request
 * goes in as path, query and what the client accepts; a whole response (status, content
 * type, body, optional cursor header) comes out. controller/http.c does the transport.
 *
 * Work per request is bounded: an occurrences page decodes at most `limit` (<= 1000)
 * records, found through the store's segment and block indexes; summaries come from the
 * in-memory aggregate; nothing blocks on disk writes (the scan reads durable records under
 * the store's own lock while commits proceed in the thread pool).
 *
 * Threading: loop thread only.
 */
#ifndef TAPIO_CONTROLLER_API_H
#define TAPIO_CONTROLLER_API_H

#include <stdbool.h>
#include <stddef.h>

#include "controller/params.h"

struct controller;

/*
 * Samples of the ingest counter for occurrences_per_s in /v1/status, taken lazily by the
 * requests themselves (no timer): the rate covers the last 5..10 s of whoever polls.
 */
struct api_rate {
	uint64_t prev_ns, prev_occ;
	uint64_t cur_ns, cur_occ;
};

struct api_request {
	const char *path; /* without the query string */
	size_t path_len;
	const char *query; /* after '?', NULL when none */
	size_t query_len;
	bool ndjson;		  /* Accept names application/x-ndjson */
	const char *http_address; /* "HOST:PORT" the API listens on, for /v1/status */
	struct api_rate *rate;	  /* owned by the server; NULL → average since start */
};

struct api_response {
	int status;
	const char *content_type; /* static string */
	char *body;		  /* malloc'd; api_response_fini frees it */
	size_t len;
	char next_cursor[PARAMS_CURSOR_MAX]; /* non-empty: send X-Tapio-Next-Cursor */
};

/*
 * Answers one GET request against controller c. Never fails: errors become the documented
 * envelope with their status (400, 404, 503, 500). *rs is initialised here.
 */
void api_handle(struct controller *c, const struct api_request *rq, struct api_response *rs);

/*
 * Fills *rs with the error envelope {"error":{"code":code,"message":…}} and status. Used by
 * the transport for 405 and request limits too.
 */
void api_error(struct api_response *rs, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Frees the body. NULL-safe, idempotent. */
void api_response_fini(struct api_response *rs);

#endif
