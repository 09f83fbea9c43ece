/*
 * Occurrence sources for the CLI: the agent's JSON-lines files (read whole, or followed like
 * `tail -F`) and the controller's query API (libcurl GET + jansson).
 */
#include "cli/source.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/clock.h"
#include "common/occ_json.h"

int occ_list_push(struct occ_list *l, const struct tapio_occurrence *o)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct tapio_occurrence *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *o;
	return 0;
}

static int cmp_occ(const void *a, const void *b)
{
	const struct tapio_occurrence *x = a, *y = b;

	if (x->timestamp_ns != y->timestamp_ns)
		return x->timestamp_ns < y->timestamp_ns ? -1 : 1;
	return strcmp(x->id, y->id);
}

void occ_list_sort(struct occ_list *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(l->v[0]), cmp_occ);
}

void occ_list_fini(struct occ_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

void occ_filter_init(struct occ_filter *f)
{
	memset(f, 0, sizeof(*f));
	f->type = -1;
	f->severity = -1;
}

bool occ_filter_match(const struct occ_filter *f, const struct tapio_occurrence *o)
{
	if (f->since_ns && o->timestamp_ns < f->since_ns)
		return false;
	if (f->until_ns && o->timestamp_ns >= f->until_ns)
		return false;
	if (f->type >= 0 && (int)o->type != f->type)
		return false;
	if (f->severity >= 0 && (int)o->severity < f->severity)
		return false;
	if (f->node && strcmp(f->node, o->node) != 0)
		return false;
	return true;
}

/* ---- local files ---- */

static int cmp_rot_desc(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? 1 : (x > y ? -1 : 0);
}

int source_list_files(const char *dir, char ***paths, size_t *n)
{
	DIR *d = opendir(dir);
	long *nums = NULL;
	size_t nn = 0, cap = 0, i;
	char **out = NULL;
	char buf[4096];
	struct dirent *de;
	struct stat st;
	int err = 0;

	*paths = NULL;
	*n = 0;
	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		const char *p = de->d_name;
		size_t cl = strlen(SOURCE_CURRENT);
		char *end;
		long v;

		if (strncmp(p, SOURCE_CURRENT ".", cl + 1) != 0 ||
		    !isdigit((unsigned char)p[cl + 1]))
			continue;
		errno = 0;
		v = strtol(p + cl + 1, &end, 10);
		if (*end || errno || v <= 0)
			continue;
		if (nn == cap) {
			long *t = realloc(nums, (cap ? cap * 2 : 16) * sizeof(*t));

			if (!t) {
				err = -ENOMEM;
				goto out;
			}
			nums = t;
			cap = cap ? cap * 2 : 16;
		}
		nums[nn++] = v;
	}
	if (nn)
		qsort(nums, nn, sizeof(*nums), cmp_rot_desc);
	out = calloc(nn + 1, sizeof(*out));
	if (!out) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < nn; i++) {
		snprintf(buf, sizeof(buf), "%s/%s.%ld", dir, SOURCE_CURRENT, nums[i]);
		out[(*n)++] = strdup(buf);
	}
	snprintf(buf, sizeof(buf), "%s/%s", dir, SOURCE_CURRENT);
	if (stat(buf, &st) == 0)
		out[(*n)++] = strdup(buf);
	for (i = 0; i < *n; i++) {
		if (!out[i])
			err = -ENOMEM;
	}
	*paths = out;
out:
	free(nums);
	closedir(d);
	return err;
}

static void note_malformed(struct source_stats *st, const char *path, size_t lineno,
			   const char *reason)
{
	if (st->malformed++ == 0)
		snprintf(st->first_bad, sizeof(st->first_bad), "%s:%zu: %s", path, lineno, reason);
}

static bool blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!isspace((unsigned char)s[i]))
			return false;
	}
	return true;
}

static int load_file(const char *path, struct occ_list *out, struct source_stats *st)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t len;
	int err = 0;

	if (!f)
		return errno == ENOENT ? 0 : -errno; /* rotated away between list and open */
	st->files++;
	while ((len = getline(&line, &cap, f)) > 0) {
		struct tapio_occurrence o;
		char why[256];

		lineno++;
		if (line[len - 1] != '\n') {
			st->torn++; /* being written, or cut by a crash: not evidence yet */
			break;
		}
		line[--len] = '\0';
		if (blank(line, (size_t)len))
			continue;
		st->lines++;
		if (occ_json_parse(line, (size_t)len, &o, why, sizeof(why)) != 0) {
			note_malformed(st, path, lineno, why);
			continue;
		}
		if (occ_list_push(out, &o) != 0) {
			err = -ENOMEM;
			break;
		}
	}
	free(line);
	fclose(f);
	return err;
}

int source_load_dir(const char *dir, struct occ_list *out, struct source_stats *st)
{
	char **paths;
	size_t n, i;
	struct stat sb;
	int err;

	memset(st, 0, sizeof(*st));
	if (stat(dir, &sb) != 0)
		return -errno;
	if (!S_ISDIR(sb.st_mode))
		return -ENOTDIR;
	err = source_list_files(dir, &paths, &n);
	if (err)
		return err;
	for (i = 0; i < n; i++) {
		if (!err)
			err = load_file(paths[i], out, st);
		free(paths[i]);
	}
	free(paths);
	occ_list_sort(out);
	return err;
}

/* ---- follower ---- */

void tail_init(struct tail *t, const char *dir)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->path, sizeof(t->path), "%s/%s", dir, SOURCE_CURRENT);
	t->fd = -1;
}

static void tail_open(struct tail *t, bool at_end)
{
	struct stat st;

	t->fd = open(t->path, O_RDONLY | O_CLOEXEC);
	if (t->fd < 0)
		return;
	if (fstat(t->fd, &st) != 0) {
		close(t->fd);
		t->fd = -1;
		return;
	}
	t->ino = st.st_ino;
	t->dev = st.st_dev;
	t->off = at_end ? st.st_size : 0;
	t->part_len = 0;
	t->part_over = false;
	t->skip_to_nl = false;
	if (at_end && st.st_size > 0) {
		char last;

		if (pread(t->fd, &last, 1, st.st_size - 1) == 1 && last != '\n')
			t->skip_to_nl = true;
	}
}

void tail_start(struct tail *t, bool from_start)
{
	tail_open(t, !from_start);
}

static int tail_line(struct tail *t, const char *line, size_t len, tail_cb cb, void *arg)
{
	struct tapio_occurrence o;
	char why[256];

	if (blank(line, len))
		return 0;
	if (occ_json_parse(line, len, &o, why, sizeof(why)) != 0) {
		t->malformed++;
		return 0;
	}
	cb(&o, arg);
	return 1;
}

/* Keeps bytes of a line that has not ended yet; past 4 × TAPIO_OCC_JSON_MAX the line is
 * hopeless and only its end is awaited (then counted as malformed). */
static void part_append(struct tail *t, const char *data, size_t n)
{
	size_t need = t->part_len + n;

	if (t->part_over || need > TAPIO_OCC_JSON_MAX * 4) {
		t->part_over = true;
		return;
	}
	if (need > t->part_cap) {
		char *p = realloc(t->part, TAPIO_OCC_JSON_MAX * 4);

		if (!p) {
			t->part_over = true;
			return;
		}
		t->part = p;
		t->part_cap = TAPIO_OCC_JSON_MAX * 4;
	}
	memcpy(t->part + t->part_len, data, n);
	t->part_len = need;
}

static int tail_drain(struct tail *t, tail_cb cb, void *arg)
{
	char buf[65536];
	int delivered = 0;
	ssize_t r;

	while ((r = pread(t->fd, buf, sizeof(buf), t->off)) > 0) {
		size_t start = 0;

		t->off += r;
		for (size_t i = 0; i < (size_t)r; i++) {
			if (buf[i] != '\n')
				continue;
			if (t->skip_to_nl) {
				t->skip_to_nl =
				    false; /* the tail of a line begun before we started */
			} else if (t->part_len || t->part_over) {
				part_append(t, buf + start, i - start);
				if (t->part_over)
					t->malformed++;
				else
					delivered += tail_line(t, t->part, t->part_len, cb, arg);
			} else {
				delivered += tail_line(t, buf + start, i - start, cb, arg);
			}
			t->part_len = 0;
			t->part_over = false;
			start = i + 1;
		}
		if (start < (size_t)r && !t->skip_to_nl)
			part_append(t, buf + start, (size_t)r - start);
	}
	return delivered;
}

int tail_poll(struct tail *t, tail_cb cb, void *arg)
{
	struct stat now, cur;
	int delivered = 0;

	if (t->fd < 0) {
		tail_open(t, false); /* appeared after we started: read it from the start */
		if (t->fd < 0)
			return 0;
	}
	if (fstat(t->fd, &cur) == 0 && cur.st_size < t->off) {
		t->off = 0; /* truncated in place */
		t->part_len = 0;
		t->part_over = false;
		t->skip_to_nl = false;
	}
	delivered += tail_drain(t, cb, arg);
	if (stat(t->path, &now) != 0 || now.st_ino != t->ino || now.st_dev != t->dev) {
		/* Rotated by rename: the old file is complete (the sink rotates between whole
		 * lines), so drain it once more, then follow the new current file from 0. */
		delivered += tail_drain(t, cb, arg);
		close(t->fd);
		t->fd = -1;
		tail_open(t, false);
		if (t->fd >= 0)
			delivered += tail_drain(t, cb, arg);
	}
	return delivered;
}

void tail_fini(struct tail *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	free(t->part);
	t->part = NULL;
}

/* ---- times ---- */

int source_parse_duration(const char *s, uint64_t *ns)
{
	char *end;
	unsigned long long v;
	uint64_t unit;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (!*end || !strcmp(end, "s"))
		unit = 1000000000ULL;
	else if (!strcmp(end, "m"))
		unit = 60ULL * 1000000000ULL;
	else if (!strcmp(end, "h"))
		unit = 3600ULL * 1000000000ULL;
	else if (!strcmp(end, "d"))
		unit = 86400ULL * 1000000000ULL;
	else
		return -EINVAL;
	if (v > UINT64_MAX / unit)
		return -EINVAL;
	*ns = v * unit;
	return 0;
}

int source_parse_time(const char *s, uint64_t now_ns, uint64_t *ns)
{
	uint64_t d;

	if (source_parse_duration(s, &d) == 0) {
		*ns = d >= now_ns ? 1 : now_ns - d;
		return 0;
	}
	return clock_parse_rfc3339(s, ns) == 0 ? 0 : -EINVAL;
}

/* ---- HTTP (libcurl) ---- */

struct body {
	char *p;
	size_t len;
};

#define HTTP_MAX_BODY (256u << 20)

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct body *b = arg;
	size_t n = size * nmemb;
	char *p;

	if (b->len + n > HTTP_MAX_BODY)
		return 0; /* aborts the transfer: a runaway response */
	p = realloc(b->p, b->len + n + 1);
	if (!p)
		return 0;
	memcpy(p + b->len, data, n);
	b->p = p;
	b->len += n;
	b->p[b->len] = '\0';
	return n;
}

int http_get(const char *base, const char *path_and_query, long *status, char **body, char *err,
	     size_t errlen)
{
	static bool inited;
	struct body b = {0};
	char url[8192];
	size_t bl = strlen(base);
	CURLcode rc;
	CURL *c;

	if (!inited) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		inited = true;
	}
	while (bl && base[bl - 1] == '/')
		bl--;
	snprintf(url, sizeof(url), "%.*s%s", (int)bl, base, path_and_query);
	c = curl_easy_init();
	if (!c) {
		snprintf(err, errlen, "controller: cannot initialise libcurl");
		return -1;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "tapio/" TAPIO_VERSION);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "controller %s: %s", url, curl_easy_strerror(rc));
		curl_easy_cleanup(c);
		free(b.p);
		return -1;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(c);
	if (!b.p)
		b.p = calloc(1, 1);
	if (!b.p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*body = b.p;
	return 0;
}

int http_query_add(char *q, size_t qlen, const char *key, const char *value)
{
	size_t used = strlen(q);
	char *esc = curl_easy_escape(NULL, value, 0);
	int n;

	if (!esc)
		return -ENOMEM;
	n = snprintf(q + used, qlen - used, "%c%s=%s", strchr(q, '?') ? '&' : '?', key, esc);
	curl_free(esc);
	return n < 0 || (size_t)n >= qlen - used ? -ENOSPC : 0;
}

json_t *controller_get_json(const char *base, const char *path_and_query, char *err, size_t errlen)
{
	json_error_t jerr;
	char *body = NULL;
	long status = 0;
	json_t *doc;

	if (http_get(base, path_and_query, &status, &body, err, errlen) != 0)
		return NULL;
	doc = json_loads(body, 0, &jerr);
	if (status < 200 || status > 299) {
		json_t *e = doc ? json_object_get(doc, "error") : NULL;
		const char *code = json_string_value(json_object_get(e, "code"));
		const char *msg = json_string_value(json_object_get(e, "message"));

		if (code)
			snprintf(err, errlen, "controller: %s: %s", code, msg ? msg : "");
		else
			snprintf(err, errlen, "controller: HTTP %ld for %s", status,
				 path_and_query);
		json_decref(doc);
		free(body);
		return NULL;
	}
	free(body);
	if (!doc) {
		snprintf(err, errlen, "controller: invalid JSON in the response to %s: %s",
			 path_and_query, jerr.text);
		return NULL;
	}
	return doc;
}

#define CONTROLLER_PAGE_MAX 1000

int controller_fetch(const char *base, const struct occ_filter *f, struct occ_list *out, char *err,
		     size_t errlen)
{
	char cursor[512] = "";
	size_t got = 0;

	for (;;) {
		char q[2048] = "/v1/occurrences", tmp[64];
		json_t *doc, *arr, *it, *next;
		size_t i;

		if (f->since_ns) {
			clock_format_rfc3339(f->since_ns, tmp, sizeof(tmp));
			http_query_add(q, sizeof(q), "since", tmp);
		}
		if (f->until_ns) {
			clock_format_rfc3339(f->until_ns, tmp, sizeof(tmp));
			http_query_add(q, sizeof(q), "until", tmp);
		}
		if (f->type >= 0)
			http_query_add(q, sizeof(q), "type", tapio_occ_type_name(f->type));
		if (f->node)
			http_query_add(q, sizeof(q), "node", f->node);
		if (f->severity >= 0)
			http_query_add(q, sizeof(q), "severity", tapio_severity_name(f->severity));
		/* the API serves at most CONTROLLER_PAGE_MAX per page (docs/api.md) */
		snprintf(tmp, sizeof(tmp), "%zu",
			 f->limit && f->limit - got < CONTROLLER_PAGE_MAX ? f->limit - got
									  : CONTROLLER_PAGE_MAX);
		http_query_add(q, sizeof(q), "limit", tmp);
		if (cursor[0])
			http_query_add(q, sizeof(q), "cursor", cursor);
		doc = controller_get_json(base, q, err, errlen);
		if (!doc)
			return -1;
		arr = json_object_get(doc, "occurrences");
		if (!json_is_array(arr)) {
			snprintf(err, errlen,
				 "controller: response to /v1/occurrences has no "
				 "\"occurrences\" array");
			json_decref(doc);
			return -1;
		}
		json_array_foreach(arr, i, it)
		{
			struct tapio_occurrence o;
			char why[256];
			char *s = json_dumps(it, JSON_COMPACT);

			if (!s || occ_json_parse(s, strlen(s), &o, why, sizeof(why)) != 0) {
				snprintf(err, errlen, "controller: occurrence %zu: %s", got,
					 s ? why : "out of memory");
				free(s);
				json_decref(doc);
				return -1;
			}
			free(s);
			if (occ_list_push(out, &o) != 0) {
				snprintf(err, errlen, "out of memory");
				json_decref(doc);
				return -1;
			}
			got++;
		}
		next = json_object_get(doc, "next_cursor");
		if (!json_is_string(next) || json_array_size(arr) == 0 ||
		    (f->limit && got >= f->limit)) {
			json_decref(doc);
			break;
		}
		snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
		json_decref(doc);
	}
	occ_list_sort(out);
	return 0;
}
