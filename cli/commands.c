/*
 * The CLI's read commands: status, recent, watch, agents, query (health lives in health.c,
 * the MCP server in mcp.c). Every command prints a one-line error and returns an exit status.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "common/clock.h"
#include "common/occ_json.h"

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("tapio: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void report_malformed(const struct source_stats *st)
{
	if (st->malformed)
		fprintf(stderr, "tapio: skipped %zu malformed line%s; first at %s\n", st->malformed,
			st->malformed == 1 ? "" : "s", st->first_bad);
}

/* Local load with stats (for status), filtered in place. */
static int load_local(const struct cli_ctx *ctx, const struct occ_filter *f, struct occ_list *out,
		      struct source_stats *st, char *err, size_t errlen)
{
	int rc = source_load_dir(ctx->data_dir, out, st);
	size_t i, k = 0;

	if (rc) {
		snprintf(err, errlen, "data dir %s: %s", ctx->data_dir, strerror(-rc));
		return -1;
	}
	report_malformed(st);
	for (i = 0; i < out->n; i++) {
		if (occ_filter_match(f, &out->v[i]))
			out->v[k++] = out->v[i];
	}
	out->n = k;
	if (f->limit && out->n > f->limit) { /* keep the newest */
		memmove(out->v, out->v + (out->n - f->limit), f->limit * sizeof(out->v[0]));
		out->n = f->limit;
	}
	return 0;
}

int cli_load(const struct cli_ctx *ctx, const struct occ_filter *f, struct occ_list *out, char *err,
	     size_t errlen)
{
	struct source_stats st;

	if (ctx->controller)
		return controller_fetch(ctx->controller, f, out, err, errlen);
	return load_local(ctx, f, out, &st, err, errlen);
}

json_t *occ_to_json(const struct tapio_occurrence *o)
{
	char buf[TAPIO_OCC_JSON_MAX];
	ssize_t n = occ_json_write(o, buf, sizeof(buf));

	if (n < 0)
		return NULL;
	return json_loadb(buf, (size_t)n, 0, NULL);
}

struct strbuf {
	char *p;
	size_t len;
	size_t n;
};

static void __attribute__((format(printf, 2, 3))) sb_add(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (b->n + 1 >= b->len)
		return;
	va_start(ap, fmt);
	w = vsnprintf(b->p + b->n, b->len - b->n, fmt, ap);
	va_end(ap);
	if (w > 0)
		b->n = (size_t)w >= b->len - b->n ? b->len - 1 : b->n + (size_t)w;
}

void occ_detail(const struct tapio_occurrence *o, char *buf, size_t len)
{
	struct strbuf sb = {buf, len, 0};

#define ADD(...) sb_add(&sb, __VA_ARGS__)
	buf[0] = '\0';
	switch (tapio_catalogue[o->type].observer) {
	case TAPIO_OBS_NETWORK: {
		const struct tapio_occ_network *d = &o->data.network;

		ADD("dst %s:%u src %s:%u", d->dst_ip, d->dst_port, d->src_ip, d->src_port);
		if (o->type == TAPIO_OCC_RTT_DEGRADATION)
			ADD(" rtt %.1fms baseline %.1fms", d->current_ms, d->baseline_ms);
		if (o->type == TAPIO_OCC_RETRANSMIT_SPIKE)
			ADD(" retrans %" PRIu32, d->total_retrans);
		ADD(" comm %s pid %" PRIu32, d->comm, d->pid);
		break;
	}
	case TAPIO_OBS_CONTAINER: {
		const struct tapio_occ_container *d = &o->data.container;

		ADD("comm %s pid %" PRIu32, d->comm, d->pid);
		if (o->type == TAPIO_OCC_OOM_KILL)
			ADD(" usage %" PRIu64 " limit %" PRIu64, d->memory_usage_bytes,
			    d->memory_limit_bytes);
		else if (d->signal)
			ADD(" signal %" PRId32, d->signal);
		else
			ADD(" exit %" PRId32, d->exit_code);
		if (d->cgroup_path[0])
			ADD(" cgroup %s", d->cgroup_path);
		break;
	}
	case TAPIO_OBS_STORAGE: {
		const struct tapio_occ_storage *d = &o->data.storage;

		ADD("dev %" PRIu32 ":%" PRIu32 " %s %" PRIu32 "B", d->dev_major, d->dev_minor,
		    d->opcode, d->bytes);
		if (o->type == TAPIO_OCC_IO_ERROR)
			ADD(" error %" PRId32, d->error_code);
		else
			ADD(" latency %.1fms", d->latency_ms);
		ADD(" comm %s", d->comm);
		break;
	}
	case TAPIO_OBS_NODE:
	default: {
		const struct tapio_occ_node *d = &o->data.node;

		if (o->type == TAPIO_OCC_MEMORY_PRESSURE)
			ADD("psi some %.1f%% full %.1f%%", d->memory_some_avg10,
			    d->memory_full_avg10);
		else
			ADD("cpu %" PRId32 " ipc %.2f stall %.1f%%", d->cpu, d->ipc, d->stall_pct);
		break;
	}
	}
	if (o->count)
		ADD(" x%" PRIu32, o->count);
#undef ADD
}

/* "2026-11-25T13:39:52.123Z" */
static void short_time(uint64_t ns, char *buf, size_t len)
{
	char full[40];

	clock_format_rfc3339(ns, full, sizeof(full));
	snprintf(buf, len, "%.23sZ", full);
}

static void fmt_age(uint64_t now_ns, uint64_t t_ns, char *buf, size_t len)
{
	uint64_t s = now_ns > t_ns ? (now_ns - t_ns) / 1000000000ULL : 0;

	if (s < 120)
		snprintf(buf, len, "%" PRIu64 "s ago", s);
	else if (s < 7200)
		snprintf(buf, len, "%" PRIu64 "m ago", s / 60);
	else if (s < 172800)
		snprintf(buf, len, "%" PRIu64 "h ago", s / 3600);
	else
		snprintf(buf, len, "%" PRIu64 "d ago", s / 86400);
}

static int print_json(json_t *doc)
{
	char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (!s) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	printf("%s\n", s);
	free(s);
	return CLI_EXIT_OK;
}

/* Prints a controller document's top-level keys as "key  value" lines. */
static void print_kv(json_t *doc)
{
	const char *k;
	json_t *v;
	struct table t;
	const char *hdr[2] = {"KEY", "VALUE"};

	table_init(&t, 2, hdr);
	json_object_foreach(doc, k, v)
	{
		char *s = json_is_string(v) ? strdup(json_string_value(v))
					    : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		const char *row[2] = {k, s};

		table_add(&t, row);
		free(s);
	}
	table_print(&t, stdout);
	table_fini(&t);
}

/* ---- status ---- */

int cmd_status(const struct cli_ctx *ctx, const struct cli_opts *o)
{
	uint64_t by_type[TAPIO_OCC__COUNT] = {0}, by_sev[TAPIO_SEV__COUNT] = {0};
	struct occ_list l = {0};
	struct source_stats st;
	struct occ_filter all;
	char err[1024], a[64], b[64], age[32];
	int rc = CLI_EXIT_OK;
	size_t i;

	if (ctx->controller) {
		json_t *doc = controller_get_json(ctx->controller, "/v1/status", err, sizeof(err));

		if (!doc) {
			cli_error("%s", err);
			return CLI_EXIT_FAIL;
		}
		if (ctx->json)
			rc = print_json(doc);
		else
			print_kv(doc);
		json_decref(doc);
		return rc;
	}
	occ_filter_init(&all);
	if (load_local(ctx, &all, &l, &st, err, sizeof(err)) != 0) {
		cli_error("%s", err);
		return CLI_EXIT_FAIL;
	}
	for (i = 0; i < l.n; i++) {
		by_type[l.v[i].type]++;
		by_sev[l.v[i].severity]++;
	}
	if (l.n) {
		clock_format_rfc3339(l.v[0].timestamp_ns, a, sizeof(a));
		clock_format_rfc3339(l.v[l.n - 1].timestamp_ns, b, sizeof(b));
	}
	if (ctx->json) {
		json_t *doc = json_object(), *bt = json_object(), *bs = json_object();

		json_object_set_new(doc, "source", json_string("local"));
		json_object_set_new(doc, "data_dir", json_string(ctx->data_dir));
		json_object_set_new(doc, "files", json_integer(st.files));
		json_object_set_new(doc, "occurrences", json_integer((json_int_t)l.n));
		json_object_set_new(doc, "malformed", json_integer((json_int_t)st.malformed));
		json_object_set_new(doc, "torn", json_integer((json_int_t)st.torn));
		json_object_set_new(doc, "first", l.n ? json_string(a) : json_null());
		json_object_set_new(doc, "last", l.n ? json_string(b) : json_null());
		json_object_set_new(
		    doc, "newest_age_s",
		    l.n ? json_real((double)(ctx->now_ns > l.v[l.n - 1].timestamp_ns
						 ? ctx->now_ns - l.v[l.n - 1].timestamp_ns
						 : 0) /
				    1e9)
			: json_null());
		for (i = 0; i < TAPIO_OCC__COUNT; i++) {
			if (by_type[i])
				json_object_set_new(bt, tapio_occ_type_name(i),
						    json_integer((json_int_t)by_type[i]));
		}
		for (i = 0; i < TAPIO_SEV__COUNT; i++) {
			if (by_sev[i])
				json_object_set_new(bs, tapio_severity_name(i),
						    json_integer((json_int_t)by_sev[i]));
		}
		json_object_set_new(doc, "by_type", bt);
		json_object_set_new(doc, "by_severity", bs);
		rc = print_json(doc);
		json_decref(doc);
	} else {
		struct table t;
		char files[32], count[32], bad[64];

		table_init(&t, 2, NULL); /* no header: a key/value block */
		snprintf(files, sizeof(files), "%u", st.files);
		snprintf(count, sizeof(count), "%zu", l.n);
		snprintf(bad, sizeof(bad), "%zu malformed, %zu partial", st.malformed, st.torn);
		if (l.n)
			fmt_age(ctx->now_ns, l.v[l.n - 1].timestamp_ns, age, sizeof(age));
		{
			const char *rows[][2] = {
			    {"data dir", ctx->data_dir}, {"files", files},
			    {"occurrences", count},	 {"skipped lines", bad},
			    {"first", l.n ? a : "-"},	 {"last", l.n ? b : "-"},
			    {"newest", l.n ? age : "-"},
			};

			for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
				table_add(&t, rows[i]);
		}
		table_print(&t, stdout);
		table_fini(&t);
		if (l.n) {
			const char *ht[2] = {"TYPE", "COUNT"}, *hs[2] = {"SEVERITY", "COUNT"};

			printf("\n");
			table_init(&t, 2, ht);
			for (i = 0; i < TAPIO_OCC__COUNT; i++) {
				const char *row[2] = {tapio_occ_type_name(i), count};

				if (!by_type[i])
					continue;
				snprintf(count, sizeof(count), "%" PRIu64, by_type[i]);
				table_add(&t, row);
			}
			table_print(&t, stdout);
			table_fini(&t);
			printf("\n");
			table_init(&t, 2, hs);
			for (i = 0; i < TAPIO_SEV__COUNT; i++) {
				const char *row[2] = {tapio_severity_name(i), count};

				if (!by_sev[i])
					continue;
				snprintf(count, sizeof(count), "%" PRIu64, by_sev[i]);
				table_add(&t, row);
			}
			table_print(&t, stdout);
			table_fini(&t);
		}
	}
	occ_list_fini(&l);
	return rc;
}

/* ---- recent ---- */

static void print_occ_json_line(const struct tapio_occurrence *o)
{
	char buf[TAPIO_OCC_JSON_MAX];

	if (occ_json_write(o, buf, sizeof(buf)) > 0)
		printf("%s\n", buf);
}

int cmd_recent(const struct cli_ctx *ctx, const struct cli_opts *o)
{
	struct occ_list l = {0};
	char err[1024];
	struct table t;
	const char *hdr[5] = {"TIME", "SEVERITY", "TYPE", "NODE", "DETAIL"};
	size_t i;

	if (cli_load(ctx, &o->filter, &l, err, sizeof(err)) != 0) {
		cli_error("%s", err);
		return CLI_EXIT_FAIL;
	}
	if (o->filter.limit && l.n > o->filter.limit) {
		memmove(l.v, l.v + (l.n - o->filter.limit), o->filter.limit * sizeof(l.v[0]));
		l.n = o->filter.limit;
	}
	if (ctx->json) {
		for (i = l.n; i-- > 0;)
			print_occ_json_line(&l.v[i]);
		occ_list_fini(&l);
		return CLI_EXIT_OK;
	}
	if (l.n == 0) {
		printf("no occurrences\n");
		occ_list_fini(&l);
		return CLI_EXIT_OK;
	}
	table_init(&t, 5, hdr);
	for (i = l.n; i-- > 0;) {
		char ts[40], det[512];
		const char *row[5] = {ts, tapio_severity_name(l.v[i].severity),
				      tapio_occ_type_name(l.v[i].type), l.v[i].node, det};

		short_time(l.v[i].timestamp_ns, ts, sizeof(ts));
		occ_detail(&l.v[i], det, sizeof(det));
		table_add(&t, row);
	}
	table_print(&t, stdout);
	table_fini(&t);
	occ_list_fini(&l);
	return CLI_EXIT_OK;
}

/* ---- watch ---- */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct watch_state {
	const struct cli_ctx *ctx;
	const struct occ_filter *filter;
};

/* Streaming lines can't know future widths, so columns are fixed at the catalogue's widths. */
static void watch_print(const struct tapio_occurrence *o, void *arg)
{
	struct watch_state *w = arg;
	char ts[40], det[512];

	if (!occ_filter_match(w->filter, o))
		return;
	if (w->ctx->json) {
		print_occ_json_line(o);
	} else {
		short_time(o->timestamp_ns, ts, sizeof(ts));
		occ_detail(o, det, sizeof(det));
		printf("%-24s  %-8s  %-33s  %-16s  %s\n", ts, tapio_severity_name(o->severity),
		       tapio_occ_type_name(o->type), o->node, det);
	}
	fflush(stdout);
}

#define SEEN_RING 4096

/* Controller mode: poll /v1/occurrences every second from the newest time seen on; ids at
 * the boundary timestamp are remembered so nothing is printed twice. */
static int watch_controller(const struct cli_ctx *ctx, const struct cli_opts *o,
			    struct watch_state *w)
{
	static char seen[SEEN_RING][TAPIO_ULID_LEN + 1];
	size_t seen_n = 0;
	uint64_t since = ctx->now_ns;
	char err[1024];

	while (!stop_requested) {
		struct occ_filter f = o->filter;
		struct occ_list l = {0};
		struct timespec ts = {1, 0};

		f.since_ns = since;
		f.limit = 0;
		if (controller_fetch(ctx->controller, &f, &l, err, sizeof(err)) != 0) {
			cli_error("%s", err);
			occ_list_fini(&l);
			return CLI_EXIT_FAIL;
		}
		for (size_t i = 0; i < l.n; i++) {
			bool dup = false;

			for (size_t k = 0; k < seen_n && k < SEEN_RING; k++) {
				if (!strcmp(seen[k], l.v[i].id)) {
					dup = true;
					break;
				}
			}
			if (dup)
				continue;
			memcpy(seen[seen_n++ % SEEN_RING], l.v[i].id, sizeof(seen[0]));
			watch_print(&l.v[i], w);
			if (l.v[i].timestamp_ns > since)
				since = l.v[i].timestamp_ns;
		}
		occ_list_fini(&l);
		nanosleep(&ts, NULL);
	}
	return CLI_EXIT_OK;
}

int cmd_watch(const struct cli_ctx *ctx, const struct cli_opts *o)
{
	struct watch_state w = {ctx, &o->filter};
	struct sigaction sa;
	struct stat sb;
	struct tail t;
	int rc = CLI_EXIT_OK, e;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: the sleep returns at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (ctx->controller)
		return watch_controller(ctx, o, &w);
	e = stat(ctx->data_dir, &sb) != 0 ? errno : (S_ISDIR(sb.st_mode) ? 0 : ENOTDIR);
	if (e) {
		cli_error("data dir %s: %s", ctx->data_dir, strerror(e));
		return CLI_EXIT_FAIL;
	}
	tail_init(&t, ctx->data_dir);
	tail_start(&t, false);
	/* Printed once the follower is positioned: everything appended from now on is shown
	 * (scripts and tests can wait for this line). */
	fprintf(stderr, "tapio: watching %s (Ctrl-C to stop)\n", t.path);
	fflush(stderr);
	while (!stop_requested) {
		struct timespec ts = {0, 200 * 1000000L};

		tail_poll(&t, watch_print, &w);
		nanosleep(&ts, NULL);
	}
	tail_poll(&t, watch_print, &w);
	tail_fini(&t);
	fflush(stdout);
	return rc;
}

/* ---- agents ---- */

/*
 * After `tapio agents` against a controller: which config each connected agent runs and who
 * lags behind (GET /v1/config). Controllers without a profile (or older ones) print nothing.
 */
static void print_convergence(const char *controller)
{
	char err[1024];
	json_t *doc = controller_get_json(controller, "/v1/config", err, sizeof(err));
	json_t *conv, *it;
	size_t i;

	if (!doc || !json_is_true(json_object_get(doc, "active"))) {
		json_decref(doc);
		return;
	}
	conv = json_object_get(doc, "convergence");
	printf("\nconfig generation %lld (profile %s): %lld of %lld connected agents converged\n",
	       (long long)json_integer_value(json_object_get(doc, "generation")),
	       json_string_value(json_object_get(json_object_get(doc, "profile"), "name")) ?: "-",
	       (long long)json_integer_value(json_object_get(conv, "converged")),
	       (long long)json_integer_value(json_object_get(conv, "connected")));
	json_array_foreach(json_object_get(conv, "by_hash"), i, it)
	    printf("  %-72s %lld agents\n", json_string_value(json_object_get(it, "hash")) ?: "-",
		   (long long)json_integer_value(json_object_get(it, "agents")));
	json_array_foreach(json_object_get(conv, "lagging_agents"), i, it)
	{
		char *line = json_dumps(it, JSON_COMPACT);

		printf("  lagging: %s\n", line ? line : "?");
		free(line);
	}
	json_decref(doc);
}

int cmd_agents(const struct cli_ctx *ctx, const struct cli_opts *o)
{
	struct occ_list l = {0};
	struct occ_filter all;
	char err[1024];
	size_t i;
	int rc = CLI_EXIT_OK;

	if (ctx->controller) {
		json_t *doc = controller_get_json(ctx->controller, "/v1/agents", err, sizeof(err));
		json_t *arr, *it;
		static const char *const hdr[] = {"node",      "agent_id",	  "version",
						  "connected", "heartbeat_age_s", "config",
						  "converged"};
		struct table t;

		if (!doc) {
			cli_error("%s", err);
			return CLI_EXIT_FAIL;
		}
		if (ctx->json) {
			rc = print_json(doc);
			json_decref(doc);
			return rc;
		}
		arr = json_object_get(doc, "agents");
		if (!json_is_array(arr)) {
			cli_error("controller: response to /v1/agents has no \"agents\" array");
			json_decref(doc);
			return CLI_EXIT_FAIL;
		}
		if (json_array_size(arr) == 0) {
			printf("no agents\n");
			json_decref(doc);
			return CLI_EXIT_OK;
		}
		table_init(&t, 7, hdr);
		json_array_foreach(arr, i, it)
		{
			json_t *cfg = json_object_get(it, "config");
			json_t *age = json_object_get(it, "last_heartbeat_age_s");
			json_t *conv = json_object_get(cfg, "converged");
			const char *hash = json_string_value(json_object_get(cfg, "hash"));
			char agebuf[32], cfgbuf[64];
			const char *cells[7];

			if (json_is_number(age))
				snprintf(agebuf, sizeof(agebuf), "%.1f", json_number_value(age));
			else
				snprintf(agebuf, sizeof(agebuf), "-");
			/* "g<generation> <first 12 hex digits of the applied hash>" */
			if (hash && strncmp(hash, "sha256:", 7) == 0 && strlen(hash) >= 19)
				snprintf(cfgbuf, sizeof(cfgbuf), "g%lld %.12s",
					 (long long)json_integer_value(
					     json_object_get(cfg, "generation")),
					 hash + 7);
			else
				snprintf(cfgbuf, sizeof(cfgbuf), "-");
			cells[0] = json_string_value(json_object_get(it, "node"));
			cells[1] = json_string_value(json_object_get(it, "agent_id"));
			cells[2] = json_string_value(json_object_get(it, "version"));
			cells[3] = json_is_true(json_object_get(it, "connected")) ? "yes" : "no";
			cells[4] = agebuf;
			cells[5] = cfgbuf;
			cells[6] =
			    json_is_boolean(conv) ? (json_is_true(conv) ? "yes" : "no") : "-";
			for (int c = 0; c < 7; c++)
				if (!cells[c])
					cells[c] = "-";
			table_add(&t, cells);
		}
		table_print(&t, stdout);
		table_fini(&t);
		json_decref(doc);
		print_convergence(ctx->controller);
		return CLI_EXIT_OK;
	}
	occ_filter_init(&all);
	if (cli_load(ctx, &all, &l, err, sizeof(err)) != 0) {
		cli_error("%s", err);
		return CLI_EXIT_FAIL;
	}
	{
		/* Local files come from one agent; still, list every node name seen. */
		json_t *nodes = json_object(), *arr = json_array(), *n;
		const char *name;

		for (i = 0; i < l.n; i++) {
			char ts[40];

			n = json_object_get(nodes, l.v[i].node);
			if (!n) {
				n = json_object();
				json_object_set_new(n, "node", json_string(l.v[i].node));
				json_object_set_new(n, "occurrences", json_integer(0));
				json_object_set_new(nodes, l.v[i].node, n);
			}
			json_object_set_new(
			    n, "occurrences",
			    json_integer(json_integer_value(json_object_get(n, "occurrences")) +
					 1));
			clock_format_rfc3339(l.v[i].timestamp_ns, ts, sizeof(ts));
			json_object_set_new(n, "last_seen", json_string(ts));
		}
		json_object_foreach(nodes, name, n)
		{
			json_array_append(arr, n);
		}
		if (ctx->json) {
			json_t *doc = json_object();

			json_object_set_new(doc, "source", json_string("local"));
			json_object_set(doc, "agents", arr);
			rc = print_json(doc);
			json_decref(doc);
		} else if (json_array_size(arr) == 0) {
			printf("no agents (no occurrences in %s)\n", ctx->data_dir);
		} else {
			const char *hdr[4] = {"NODE", "OCCURRENCES", "LAST SEEN", "AGE"};
			struct table t;
			json_t *it;

			table_init(&t, 4, hdr);
			json_array_foreach(arr, i, it)
			{
				char cnt[32], age[32];
				uint64_t ns = 0;
				const char *row[4] = {
				    json_string_value(json_object_get(it, "node")), cnt,
				    json_string_value(json_object_get(it, "last_seen")), age};

				snprintf(cnt, sizeof(cnt), "%" JSON_INTEGER_FORMAT,
					 json_integer_value(json_object_get(it, "occurrences")));
				clock_parse_rfc3339(row[2], &ns);
				fmt_age(ctx->now_ns, ns, age, sizeof(age));
				table_add(&t, row);
			}
			table_print(&t, stdout);
			table_fini(&t);
		}
		json_decref(arr);
		json_decref(nodes);
	}
	occ_list_fini(&l);
	return rc;
}

/* ---- query ---- */

static const char *group_key(const struct tapio_occurrence *o, const char *by)
{
	if (!strcmp(by, "type"))
		return tapio_occ_type_name(o->type);
	if (!strcmp(by, "severity"))
		return tapio_severity_name(o->severity);
	return o->node;
}

int cmd_query(const struct cli_ctx *ctx, const struct cli_opts *o)
{
	uint64_t bucket = o->bucket_ns;
	json_t *doc = NULL, *groups;
	const char *key;
	char err[1024];
	int rc = CLI_EXIT_OK;
	size_t i;

	if (ctx->controller && (o->filter.type >= 0 || o->filter.node || o->filter.severity >= 0)) {
		cli_error("query --type/--node/--severity work on local files only (the "
			  "controller's /v1/summary has no filters)");
		return CLI_EXIT_USAGE;
	}
	if (ctx->controller) {
		char q[1024] = "/v1/summary", tmp[64];

		http_query_add(q, sizeof(q), "by", o->by);
		uint64_t s = bucket / 1000000000ULL;

		/* the API takes durations ("1m" .. "24h"): use the largest exact unit */
		if (s % 3600 == 0)
			snprintf(tmp, sizeof(tmp), "%" PRIu64 "h", s / 3600);
		else if (s % 60 == 0)
			snprintf(tmp, sizeof(tmp), "%" PRIu64 "m", s / 60);
		else
			snprintf(tmp, sizeof(tmp), "%" PRIu64 "s", s);
		http_query_add(q, sizeof(q), "bucket", tmp);
		clock_format_rfc3339(o->filter.since_ns, tmp, sizeof(tmp));
		http_query_add(q, sizeof(q), "since", tmp);
		if (o->filter.until_ns) {
			clock_format_rfc3339(o->filter.until_ns, tmp, sizeof(tmp));
			http_query_add(q, sizeof(q), "until", tmp);
		}
		doc = controller_get_json(ctx->controller, q, err, sizeof(err));
		if (!doc) {
			cli_error("%s", err);
			return CLI_EXIT_FAIL;
		}
		if (!json_is_object(json_object_get(doc, "groups"))) {
			cli_error("controller: response to /v1/summary has no \"groups\" object");
			json_decref(doc);
			return CLI_EXIT_FAIL;
		}
	} else {
		struct occ_list l = {0};
		struct occ_filter f = o->filter;

		f.limit = 0;
		if (cli_load(ctx, &f, &l, err, sizeof(err)) != 0) {
			cli_error("%s", err);
			return CLI_EXIT_FAIL;
		}
		doc = json_object();
		groups = json_object();
		json_object_set_new(doc, "by", json_string(o->by));
		json_object_set_new(doc, "bucket_s",
				    json_integer((json_int_t)(bucket / 1000000000ULL)));
		json_object_set_new(doc, "groups", groups);
		for (i = 0; i < l.n; i++) { /* sorted by time: buckets come in order */
			const char *g = group_key(&l.v[i], o->by);
			uint64_t b = l.v[i].timestamp_ns / bucket * bucket;
			json_t *arr = json_object_get(groups, g), *last;
			char ts[40];

			if (!arr) {
				arr = json_array();
				json_object_set_new(groups, g, arr);
			}
			clock_format_rfc3339(b, ts, sizeof(ts));
			last = json_array_get(arr, json_array_size(arr) - 1);
			if (last && !strcmp(json_string_value(json_object_get(last, "t")), ts)) {
				json_object_set_new(
				    last, "count",
				    json_integer(
					json_integer_value(json_object_get(last, "count")) + 1));
			} else {
				last = json_object();
				json_object_set_new(last, "t", json_string(ts));
				json_object_set_new(last, "count", json_integer(1));
				json_array_append_new(arr, last);
			}
		}
		occ_list_fini(&l);
	}
	groups = json_object_get(doc, "groups");
	if (ctx->json) {
		rc = print_json(doc);
	} else if (json_object_size(groups) == 0) {
		printf("no occurrences\n");
	} else {
		const char *hdr[3] = {"GROUP", "BUCKET", "COUNT"};
		struct table t;
		json_t *arr, *it;

		table_init(&t, 3, hdr);
		json_object_foreach(groups, key, arr)
		{
			json_array_foreach(arr, i, it)
			{
				char cnt[32];
				const char *row[3] = {
				    key, json_string_value(json_object_get(it, "t")), cnt};

				snprintf(cnt, sizeof(cnt), "%" JSON_INTEGER_FORMAT,
					 json_integer_value(json_object_get(it, "count")));
				table_add(&t, row);
			}
		}
		table_print(&t, stdout);
		table_fini(&t);
	}
	json_decref(doc);
	return rc;
}
