/*
 * Where the CLI's occurrences come from: the agent's JSON-lines files under a data dir
 * (current + rotated, docs/agent.md) or a controller's query API over HTTP (docs/cli.md).
 */
#ifndef TAPIO_CLI_SOURCE_H
#define TAPIO_CLI_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/occurrence.h"

struct occ_list {
	struct tapio_occurrence *v;
	size_t n;
	size_t cap;
};

/* Appends a copy of *o. Returns 0 or -ENOMEM. */
int occ_list_push(struct occ_list *l, const struct tapio_occurrence *o);
/* Sorts oldest first (timestamp, then id). */
void occ_list_sort(struct occ_list *l);
void occ_list_fini(struct occ_list *l);

/* A selection; zero/-1/NULL fields select everything. */
struct occ_filter {
	uint64_t since_ns; /* inclusive; 0 = no bound */
	uint64_t until_ns; /* exclusive; 0 = no bound */
	int type;	   /* enum tapio_occ_type or -1 */
	int severity;	   /* enum tapio_severity or -1: this one or worse */
	const char *node;  /* exact match or NULL */
	size_t limit;	   /* 0 = unlimited */
};

void occ_filter_init(struct occ_filter *f);
bool occ_filter_match(const struct occ_filter *f, const struct tapio_occurrence *o);

/* What loading a data dir saw. */
struct source_stats {
	unsigned files;
	size_t lines;
	size_t malformed;
	size_t torn;	     /* trailing partial lines ignored */
	char first_bad[512]; /* "path:line: reason" of the first malformed line */
};

#define SOURCE_CURRENT "occurrences.jsonl"

/*
 * Reads every occurrence in dir (rotated files oldest first, then the current one) into
 * *out, sorted by time. A trailing partial line is ignored; a malformed line is skipped and
 * counted in *st. Returns 0, or -errno when dir cannot be read (a missing current file is
 * not an error).
 */
int source_load_dir(const char *dir, struct occ_list *out, struct source_stats *st);

/* Paths of the files source_load_dir reads, oldest first; caller frees each and the array. */
int source_list_files(const char *dir, char ***paths, size_t *n);

/*
 * Follows <dir>/occurrences.jsonl like `tail -F`: starts at the current end (or at 0 when
 * from_start), survives rotation by rename (the inode changes → drain the old file, reopen)
 * and truncation. Only complete lines are delivered.
 */
struct tail {
	char path[4096];
	int fd;
	ino_t ino;
	dev_t dev;
	off_t off;
	char *part; /* incomplete line carried between polls */
	size_t part_len;
	size_t part_cap;
	bool part_over;	 /* the pending line outgrew any valid occurrence */
	bool skip_to_nl; /* started in the middle of a line */
	size_t malformed;
};

typedef void (*tail_cb)(const struct tapio_occurrence *o, void *arg);

void tail_init(struct tail *t, const char *dir);
/* Opens the current file if it exists; positions at its end unless from_start. */
void tail_start(struct tail *t, bool from_start);
/* Reads what was appended since the last call and calls cb per parsed line. Returns the
 * number of occurrences delivered. */
int tail_poll(struct tail *t, tail_cb cb, void *arg);
void tail_fini(struct tail *t);

/*
 * Parses a time: relative to now ("30s", "15m", "24h", "7d": that long ago) or RFC 3339.
 * Returns 0 and *ns, or -EINVAL.
 */
int source_parse_time(const char *s, uint64_t now_ns, uint64_t *ns);
/* Parses a duration ("30s", "15m", "24h", "7d"; a bare number means seconds). */
int source_parse_duration(const char *s, uint64_t *ns);

/*
 * HTTP GET of base + path_and_query. On success returns 0 with the HTTP status and a
 * NUL-terminated body (caller frees). On transport failure returns -1 with a one-line
 * reason in err.
 */
int http_get(const char *base, const char *path_and_query, long *status, char **body, char *err,
	     size_t errlen);

/* Appends "key=<url-escaped value>" to a query string buffer (with '?' or '&'). */
int http_query_add(char *q, size_t qlen, const char *key, const char *value);

/*
 * GET a JSON document from the controller. A non-2xx response with an error envelope
 * becomes "controller: CODE: message" in err. Returns a new reference, or NULL with err set.
 */
json_t *controller_get_json(const char *base, const char *path_and_query, char *err, size_t errlen);

/*
 * Fetches occurrences matching f from /v1/occurrences, following next_cursor until
 * f->limit (0 = all) is reached. Returns 0 or -1 with err set.
 */
int controller_fetch(const char *base, const struct occ_filter *f, struct occ_list *out, char *err,
		     size_t errlen);

#endif
