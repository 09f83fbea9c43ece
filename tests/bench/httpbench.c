/*
 * httpbench: query latency for scripts/bench-query.sh.
 *
 *   httpbench --port P [--host H] [-n N] [--warmup W] [--deep K] [--budget S] [--save DIR]
 *             PATH...
 *     for each PATH: W untimed then N timed GETs on one keep-alive connection; prints
 *     "http <name> p50_ms=… p99_ms=… n=… bytes=…". With --deep K, first follows next_cursor
 *     K pages from PATH (untimed), then times fetching page K+1 with that cursor. --save DIR
 *     writes the last body of the i-th PATH to DIR/i.body (compared with tapio-querybench's).
 *   httpbench --port P --duration S PATH...
 *     hammer mode: GETs the PATHs round-robin for S seconds, prints the request count.
 *   httpbench --sqlite FILE [-n N] [--warmup W] [--deep K] --type T --node N
 *     the same three queries against SQLite (summary by type per hour over 24 h, the
 *     filtered first page, a keyset page K pages deep), printed the same way. Each run
 *     produces what the API returns: one JSON document in a fresh buffer (the stored JSON of
 *     the rows joined into {"occurrences":[…],"next_cursor":…}; the summary's groups as
 *     {"by":"type",…,"groups":{type:[{"t":…,"count":…}]}}), freed at the end of the run.
 *   Sampling of one query stops early (with at least 3 samples, n= says how many) once it
 *   took more than --budget seconds (default 30): a 10 s query does not run 200 times.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef TAPIO_HAVE_SQLITE
#include <sqlite3.h>
#endif

#include "benchstat.h"

#define now_ns	    bench_now_ns
#define over_budget bench_over_budget
#define warm_enough bench_warm_enough
#define report	    bench_report

/* ---- a minimal HTTP/1.1 keep-alive client -------------------------------------------------- */

struct conn {
	const char *host;
	uint16_t port;
	int fd;
	char *buf; /* response bytes read so far */
	size_t len, cap;
	char *body; /* the last response's body (decoded), NUL terminated */
	size_t body_len, body_cap;
};

static int conn_open(struct conn *c)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};
	int one = 1;

	if (inet_pton(AF_INET, c->host, &sa.sin_addr) != 1) {
		fprintf(stderr, "httpbench: bad host %s (IPv4 address)\n", c->host);
		return -1;
	}
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "httpbench: connect %s:%u: %s\n", c->host, c->port,
			strerror(errno));
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->len = 0;
	return 0;
}

static int reserve(char **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 65536;
	while (ncap < need)
		ncap *= 2;
	char *q = realloc(*p, ncap);
	if (!q)
		return -1;
	*p = q;
	*cap = ncap;
	return 0;
}

/* Reads until at least `need` bytes are buffered. */
static int fill(struct conn *c, size_t need)
{
	while (c->len < need) {
		if (reserve(&c->buf, &c->cap, c->len + 65536) < 0)
			return -1;
		ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
		if (r <= 0) {
			fprintf(stderr, "httpbench: read: %s\n", r == 0 ? "EOF" : strerror(errno));
			return -1;
		}
		c->len += (size_t)r;
	}
	return 0;
}

static int body_add(struct conn *c, const char *p, size_t n)
{
	if (reserve(&c->body, &c->body_cap, c->body_len + n + 1) < 0)
		return -1;
	memcpy(c->body + c->body_len, p, n);
	c->body_len += n;
	c->body[c->body_len] = 0;
	return 0;
}

/* Offset just past the CRLF ending the line at `from` (reading more as needed), or -1. */
static long line_end(struct conn *c, size_t from)
{
	for (;;) {
		for (size_t i = from; i + 1 < c->len; i++)
			if (c->buf[i] == '\r' && c->buf[i + 1] == '\n')
				return (long)(i + 2);
		if (fill(c, c->len + 1) < 0)
			return -1;
	}
}

/* GET path; returns the status and leaves the body in c->body. */
static int http_get(struct conn *c, const char *path)
{
	char req[8192 + 256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n\r\n",
			 path, c->host);
	size_t off = 0, hdr_end, clen = 0;
	bool chunked = false, have_len = false;
	int status;

	if (n < 0 || (size_t)n >= sizeof(req))
		return -1;
	while (off < (size_t)n) {
		ssize_t w = write(c->fd, req + off, (size_t)n - off);
		if (w <= 0) {
			fprintf(stderr, "httpbench: write: %s\n", strerror(errno));
			return -1;
		}
		off += (size_t)w;
	}
	/* headers */
	c->body_len = 0;
	for (;;) {
		char *e;

		if (c->len) {
			c->buf[c->len] = 0;
			if ((e = strstr(c->buf, "\r\n\r\n")) != NULL) {
				hdr_end = (size_t)(e - c->buf) + 4;
				break;
			}
		}
		if (fill(c, c->len + 1) < 0)
			return -1;
	}
	if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	for (char *l = strstr(c->buf, "\r\n") + 2; l < c->buf + hdr_end - 2;
	     l = strstr(l, "\r\n") + 2) {
		if (strncasecmp(l, "content-length:", 15) == 0) {
			clen = strtoull(l + 15, NULL, 10);
			have_len = true;
		} else if (strncasecmp(l, "transfer-encoding:", 18) == 0 &&
			   strstr(l, "chunked") < strstr(l, "\r\n") && strstr(l, "chunked")) {
			chunked = true;
		}
	}
	off = hdr_end;
	if (!chunked) {
		if (!have_len)
			return -1;
		if (fill(c, off + clen) < 0 || body_add(c, c->buf + off, clen) < 0)
			return -1;
		off += clen;
	} else {
		for (;;) {
			long le = line_end(c, off);
			size_t sz;

			if (le < 0)
				return -1;
			sz = strtoull(c->buf + off, NULL, 16);
			off = (size_t)le;
			if (sz == 0) {
				le = line_end(c, off); /* no trailers expected: the final CRLF */
				if (le < 0)
					return -1;
				off = (size_t)le;
				break;
			}
			if (fill(c, off + sz + 2) < 0 || body_add(c, c->buf + off, sz) < 0)
				return -1;
			off += sz + 2;
		}
	}
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
	return status;
}

static int get_ok(struct conn *c, const char *path)
{
	int st = http_get(c, path);

	if (st != 200) {
		fprintf(stderr, "httpbench: GET %s: status %d: %.300s\n", path, st,
			st > 0 && c->body ? c->body : "");
		return -1;
	}
	return 0;
}

static int bench_path(struct conn *c, const char *path, int index, int n, int warmup, int deep,
		      const char *save)
{
	char target[8192], cur[256];
	uint64_t *v = calloc((size_t)n, sizeof(*v));

	if (!v)
		return -1;
	snprintf(target, sizeof(target), "%s", path);
	if (deep > 0) {
		for (int i = 0; i < deep; i++) {
			if (get_ok(c, target) < 0)
				return -1;
			bench_next_cursor(c->body, cur, sizeof(cur));
			if (!cur[0]) {
				fprintf(stderr, "httpbench: %s: no next_cursor after page %d\n",
					path, i + 1);
				return -1;
			}
			snprintf(target, sizeof(target), "%s%scursor=%s", path,
				 strchr(path, '?') ? "&" : "?", cur);
		}
	}
	uint64_t start = now_ns();
	for (int i = 0; i < warmup && !warm_enough(start, i); i++)
		if (get_ok(c, target) < 0)
			return -1;
	int done = 0;
	for (start = now_ns(); done < n && !over_budget(start, done); done++) {
		uint64_t t0 = now_ns();
		if (get_ok(c, target) < 0)
			return -1;
		v[done] = now_ns() - t0;
	}
	if (save && bench_save_body(save, index, c->body, c->body_len) < 0)
		return -1;
	char name[600];
	snprintf(name, sizeof(name), "%s%s", deep > 0 ? "deep:" : "", path);
	report("http", name, v, NULL, (size_t)done, c->body_len);
	free(v);
	return 0;
}

static int hammer(struct conn *c, char **paths, int npaths, double seconds)
{
	uint64_t end = now_ns() + (uint64_t)(seconds * 1e9), count = 0;

	while (now_ns() < end) {
		if (get_ok(c, paths[count % (uint64_t)npaths]) < 0)
			return -1;
		count++;
	}
	printf("hammer requests=%llu seconds=%.1f per_s=%.0f\n", (unsigned long long)count, seconds,
	       (double)count / seconds);
	return 0;
}

/* ---- the SQLite baseline ------------------------------------------------------------------ */

#ifdef TAPIO_HAVE_SQLITE
/* A response body being built; a fresh one per run, as a server builds one per request. */
struct doc {
	char *p;
	size_t len, cap;
};

static int doc_add(struct doc *d, const void *s, size_t n)
{
	if (reserve(&d->p, &d->cap, d->len + n + 1) < 0)
		return -1;
	memcpy(d->p + d->len, s, n);
	d->len += n;
	d->p[d->len] = 0;
	return 0;
}

static int doc_str(struct doc *d, const char *s)
{
	return doc_add(d, s, strlen(s));
}

enum page_kind { PAGE_OCCURRENCES, PAGE_SUMMARY };

struct sql_query {
	const char *name;
	sqlite3_stmt *stmt;
	enum page_kind kind;
	int limit;	   /* PAGE_OCCURRENCES: a full page has a next cursor */
	const char *since; /* PAGE_SUMMARY: the window echoed in the document */
	const char *until;
};

/*
 * Runs q once and builds its document in *d (d->len = 0 first): the occurrences page as
 * the API shapes it, {"occurrences":[json,…],"next_cursor":"<ts>-<id>"|null} (the stored
 * JSON of each row as is; the keyset cursor is the last row's ts and id), or the summary
 * {"by":"type","bucket_s":3600,"since":…,"until":…,"groups":{type:[{"t":…,"count":…}]}}.
 * Returns the number of rows (and *last_ts, the last row's ts), or -1.
 */
static long run_query(const struct sql_query *q, struct doc *d, int64_t *last_ts)
{
	char tmp[160];
	const char *prev_type = NULL;
	char prev[64] = "";
	long rows = 0;
	int r;

	d->len = 0;
	if (q->kind == PAGE_OCCURRENCES) {
		doc_str(d, "{\"occurrences\":[");
	} else {
		snprintf(tmp, sizeof(tmp),
			 "{\"by\":\"type\",\"bucket_s\":3600,\"since\":\"%s\",\"until\":\"%s\","
			 "\"groups\":{",
			 q->since, q->until);
		doc_str(d, tmp);
	}
	while ((r = sqlite3_step(q->stmt)) == SQLITE_ROW) {
		if (q->kind == PAGE_OCCURRENCES) {
			/* columns: id, ts, json */
			if (rows)
				doc_add(d, ",", 1);
			doc_add(d, sqlite3_column_text(q->stmt, 2),
				(size_t)sqlite3_column_bytes(q->stmt, 2));
			*last_ts = sqlite3_column_int64(q->stmt, 1);
			if (rows + 1 == q->limit)
				snprintf(tmp, sizeof(tmp), "%lld-%s", (long long)*last_ts,
					 (const char *)sqlite3_column_text(q->stmt, 0));
		} else {
			/* columns: type, bucket, count; rows ordered by type */
			prev_type = (const char *)sqlite3_column_text(q->stmt, 0);
			if (strcmp(prev, prev_type) != 0) {
				doc_str(d, rows ? "]," : "");
				doc_add(d, "\"", 1);
				doc_str(d, prev_type);
				doc_str(d, "\":[");
				snprintf(prev, sizeof(prev), "%s", prev_type);
			} else {
				doc_add(d, ",", 1);
			}
			snprintf(tmp, sizeof(tmp), "{\"t\":\"%s\",\"count\":%lld}",
				 (const char *)sqlite3_column_text(q->stmt, 1),
				 (long long)sqlite3_column_int64(q->stmt, 2));
			doc_str(d, tmp);
		}
		rows++;
	}
	sqlite3_reset(q->stmt);
	if (q->kind == PAGE_OCCURRENCES) {
		doc_str(d, "],\"next_cursor\":");
		if (rows == q->limit) {
			doc_add(d, "\"", 1);
			doc_str(d, tmp);
			doc_str(d, "\"}");
		} else {
			doc_str(d, "null}");
		}
	} else {
		doc_str(d, rows ? "]}}" : "}}");
	}
	if (!d->p)
		return -1;
	return r == SQLITE_DONE ? rows : -1;
}

static int bench_query(sqlite3 *db, const struct sql_query *q, int index, int n, int warmup,
		       const char *save)
{
	uint64_t *v = calloc((size_t)n, sizeof(*v)), *cpu = calloc((size_t)n, sizeof(*cpu));
	struct doc d = {0};
	size_t bytes = 0;
	int64_t ts;
	long rows = 0;

	if (!v || !cpu)
		goto fail;
	uint64_t start = now_ns();
	int done = 0;
	for (int i = 0; i < warmup && !warm_enough(start, i); i++) {
		if (run_query(q, &d, &ts) < 0)
			goto fail;
		free(d.p);
		d = (struct doc){0};
	}
	for (start = now_ns(); done < n && !over_budget(start, done); done++) {
		uint64_t t0 = now_ns(), c0 = bench_cpu_ns();
		if ((rows = run_query(q, &d, &ts)) < 0)
			goto fail;
		bytes = d.len;
		bool last = done + 1 == n || over_budget(start, done + 1);
		if (!last) {
			free(d.p);
			d = (struct doc){0};
		}
		v[done] = now_ns() - t0;
		cpu[done] = bench_cpu_ns() - c0;
		if (last) {
			/* the last run: keep the document (to save it) outside the timed part */
			if (save && bench_save_body(save, index, d.p, d.len) < 0)
				goto fail;
			free(d.p);
			d = (struct doc){0};
		}
	}
	char full[256];
	snprintf(full, sizeof(full), "%s(rows=%ld)", q->name, rows);
	report("sqlite", full, v, cpu, (size_t)done, bytes);
	free(v);
	free(cpu);
	return 0;
fail:
	fprintf(stderr, "httpbench: sqlite %s: %s\n", q->name, sqlite3_errmsg(db));
	free(d.p);
	free(v);
	free(cpu);
	return -1;
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = NULL;

	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "httpbench: sqlite prepare %s: %s\n", sql, sqlite3_errmsg(db));
		return NULL;
	}
	return s;
}

/* RFC 3339 of ns, floored to the minute (the summary's echoed window). */
static void minute_rfc3339(int64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000ll / 60 * 60);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:00.000000000Z", &tm);
}

static int bench_sqlite(const char *file, int n, int warmup, int deep, const char *type,
			const char *node, const char *save)
{
	sqlite3 *db;
	sqlite3_stmt *sum = NULL, *filt = NULL, *page = NULL;
	int64_t max_ts = 0, since, cursor_ts;
	char since_s[64], until_s[64];
	struct doc d = {0};
	int rc = -1;

	if (sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "httpbench: sqlite open %s: %s\n", file, sqlite3_errmsg(db));
		return -1;
	}
	/* the same page cache budget for every query; reads are from the OS page cache */
	sqlite3_exec(db, "PRAGMA cache_size=-262144", NULL, NULL, NULL);
	sqlite3_stmt *mx = prep(db, "SELECT max(ts) FROM occurrences");
	if (!mx || sqlite3_step(mx) != SQLITE_ROW)
		goto out;
	max_ts = sqlite3_column_int64(mx, 0);
	sqlite3_finalize(mx);
	/* "since=24h" relative to the newest row, like the API's relative to now */
	since = max_ts - 86400ll * 1000000000ll;
	minute_rfc3339(since, since_s, sizeof(since_s));
	minute_rfc3339(max_ts + 60000000000ll, until_s, sizeof(until_s));
	sum = prep(db, "SELECT type, strftime('%Y-%m-%dT%H:00:00.000000000Z', ts / 1000000000, "
		       "'unixepoch') AS bucket, count(*) FROM occurrences WHERE ts >= ?1 "
		       "GROUP BY type, bucket ORDER BY type, bucket");
	filt = prep(db, "SELECT id, ts, json FROM occurrences "
			"WHERE type = ?1 AND node = ?2 ORDER BY ts DESC LIMIT 100");
	page = prep(db, "SELECT id, ts, json FROM occurrences "
			"WHERE ts < ?1 ORDER BY ts DESC LIMIT 100");
	if (!sum || !filt || !page)
		goto out;
	sqlite3_bind_int64(sum, 1, since);
	sqlite3_bind_text(filt, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(filt, 2, node, -1, SQLITE_STATIC);
	struct sql_query qs = {.name = "summary",
			       .stmt = sum,
			       .kind = PAGE_SUMMARY,
			       .since = since_s,
			       .until = until_s},
			 qf = {.name = "filtered", .stmt = filt, .limit = 100},
			 qp = {.name = "deep", .stmt = page, .limit = 100};
	if (bench_query(db, &qs, 0, n, warmup, save) < 0 ||
	    bench_query(db, &qf, 1, n, warmup, save) < 0)
		goto out;
	/* keyset pagination: follow `deep` pages, then time the next one */
	cursor_ts = max_ts + 1;
	for (int i = 0; i < deep; i++) {
		sqlite3_bind_int64(page, 1, cursor_ts);
		if (run_query(&qp, &d, &cursor_ts) < 0)
			goto out;
	}
	sqlite3_bind_int64(page, 1, cursor_ts);
	char name[64];
	snprintf(name, sizeof(name), "deep%d", deep);
	qp.name = name;
	if (bench_query(db, &qp, 2, n, warmup, save) < 0)
		goto out;
	rc = 0;
out:
	free(d.p);
	sqlite3_finalize(sum);
	sqlite3_finalize(filt);
	sqlite3_finalize(page);
	sqlite3_close(db);
	return rc;
}
#endif

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"host", required_argument, NULL, 'H'},   {"port", required_argument, NULL, 'p'},
	    {"n", required_argument, NULL, 'n'},      {"warmup", required_argument, NULL, 'w'},
	    {"deep", required_argument, NULL, 'd'},   {"duration", required_argument, NULL, 'D'},
	    {"sqlite", required_argument, NULL, 's'}, {"type", required_argument, NULL, 't'},
	    {"node", required_argument, NULL, 'N'},   {"budget", required_argument, NULL, 'B'},
	    {"save", required_argument, NULL, 'S'},   {NULL, 0, NULL, 0},
	};
	struct conn c = {.host = "127.0.0.1"};
	const char *sqlite = NULL, *type = NULL, *node = NULL, *save = NULL;
	int n = 100, warmup = 5, deep = 0, ch;
	double duration = 0;

	while ((ch = getopt_long(argc, argv, "n:", lo, NULL)) != -1) {
		switch (ch) {
		case 'H':
			c.host = optarg;
			break;
		case 'p':
			c.port = (uint16_t)atoi(optarg);
			break;
		case 'n':
			n = atoi(optarg);
			break;
		case 'w':
			warmup = atoi(optarg);
			break;
		case 'd':
			deep = atoi(optarg);
			break;
		case 'D':
			duration = atof(optarg);
			break;
		case 's':
			sqlite = optarg;
			break;
		case 't':
			type = optarg;
			break;
		case 'N':
			node = optarg;
			break;
		case 'B':
			bench_budget_s = atof(optarg);
			break;
		case 'S':
			save = optarg;
			break;
		default:
			fprintf(stderr, "usage: see the comment at the top of httpbench.c\n");
			return 2;
		}
	}
	if (n < 1)
		n = 1;
	if (sqlite) {
#ifdef TAPIO_HAVE_SQLITE
		if (!type || !node) {
			fprintf(stderr, "httpbench: --sqlite needs --type and --node\n");
			return 2;
		}
		return bench_sqlite(sqlite, n, warmup, deep, type, node, save) < 0 ? 1 : 0;
#else
		fprintf(stderr, "httpbench: built without SQLite\n");
		return 2;
#endif
	}
	if (!c.port || optind >= argc) {
		fprintf(stderr, "httpbench: needs --port and at least one PATH\n");
		return 2;
	}
	if (conn_open(&c) < 0)
		return 1;
	if (duration > 0)
		return hammer(&c, argv + optind, argc - optind, duration) < 0 ? 1 : 0;
	for (int i = optind; i < argc; i++)
		if (bench_path(&c, argv[i], i - optind, n, warmup, deep, save) < 0)
			return 1;
	return 0;
}
