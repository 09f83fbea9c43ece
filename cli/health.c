/*
 * `tapio health` and the MCP node_health tool: per observer, what happened in the window and
 * a verdict. The rules are documented in docs/cli.md ("health"); keep both in step.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "common/clock.h"

#define NS_PER_S		  1000000000ULL
#define HEALTH_CRITICAL_RECENT_NS (15ULL * 60 * NS_PER_S)
#define HEALTH_WARN_PER_HOUR	  10

static const char *const verdicts[] = {"ok", "degraded", "critical"};

static const char *top_key_name(enum tapio_observer o)
{
	switch (o) {
	case TAPIO_OBS_NETWORK:
		return "destination";
	case TAPIO_OBS_CONTAINER:
		return "comm";
	case TAPIO_OBS_STORAGE:
		return "device";
	default:
		return "cpu";
	}
}

static void top_key_value(const struct tapio_occurrence *o, char *buf, size_t len)
{
	switch (tapio_catalogue[o->type].observer) {
	case TAPIO_OBS_NETWORK:
		if (o->data.network.family == 6)
			snprintf(buf, len, "[%s]:%u", o->data.network.dst_ip,
				 o->data.network.dst_port);
		else
			snprintf(buf, len, "%s:%u", o->data.network.dst_ip,
				 o->data.network.dst_port);
		break;
	case TAPIO_OBS_CONTAINER:
		snprintf(buf, len, "%s", o->data.container.comm);
		break;
	case TAPIO_OBS_STORAGE:
		snprintf(buf, len, "%" PRIu32 ":%" PRIu32, o->data.storage.dev_major,
			 o->data.storage.dev_minor);
		break;
	default:
		if (o->data.node.cpu < 0)
			snprintf(buf, len, "node");
		else
			snprintf(buf, len, "%" PRId32, o->data.node.cpu);
		break;
	}
}

static json_t *observer_health(const struct occ_list *occs, enum tapio_observer obs,
			       uint64_t now_ns, uint64_t window_ns, int *verdict)
{
	uint64_t from = now_ns > window_ns ? now_ns - window_ns : 0;
	uint64_t crit_from =
	    now_ns > HEALTH_CRITICAL_RECENT_NS ? now_ns - HEALTH_CRITICAL_RECENT_NS : 0;
	uint64_t counts[TAPIO_OCC__COUNT] = {0}, sev[TAPIO_SEV__COUNT] = {0};
	uint64_t total = 0, last = 0, recent_crit = 0;
	json_t *h = json_object(), *c = json_object(), *s = json_object(), *reasons = json_array();
	int top = -1;
	size_t i;

	for (i = 0; i < occs->n; i++) {
		const struct tapio_occurrence *o = &occs->v[i];

		if (tapio_catalogue[o->type].observer != obs || o->timestamp_ns > now_ns)
			continue;
		if (o->severity == TAPIO_SEV_CRITICAL && o->timestamp_ns >= crit_from)
			recent_crit++;
		if (o->timestamp_ns < from)
			continue;
		counts[o->type]++;
		sev[o->severity]++;
		total++;
		if (o->timestamp_ns > last)
			last = o->timestamp_ns;
	}
	for (i = 0; i < TAPIO_OCC__COUNT; i++) {
		if (tapio_catalogue[i].observer != obs)
			continue;
		json_object_set_new(c, tapio_occ_type_name(i), json_integer((json_int_t)counts[i]));
		if (counts[i] && (top < 0 || counts[i] > counts[top]))
			top = (int)i;
	}
	for (i = 0; i < TAPIO_SEV__COUNT; i++) {
		if (sev[i])
			json_object_set_new(s, tapio_severity_name(i),
					    json_integer((json_int_t)sev[i]));
	}
	*verdict = 0;
	if (recent_crit) {
		char r[128];

		snprintf(r, sizeof(r), "%" PRIu64 " critical in the last 15m", recent_crit);
		json_array_append_new(reasons, json_string(r));
		*verdict = 2;
	}
	if (sev[TAPIO_SEV_ERROR] + sev[TAPIO_SEV_CRITICAL]) {
		char r[128];

		snprintf(r, sizeof(r), "%" PRIu64 " error/critical in the window",
			 sev[TAPIO_SEV_ERROR] + sev[TAPIO_SEV_CRITICAL]);
		json_array_append_new(reasons, json_string(r));
		if (*verdict < 1)
			*verdict = 1;
	}
	if (window_ns &&
	    (double)sev[TAPIO_SEV_WARNING] * 3600e9 / (double)window_ns >= HEALTH_WARN_PER_HOUR) {
		char r[128];

		snprintf(r, sizeof(r), "%" PRIu64 " warnings in the window (>= %d/h)",
			 sev[TAPIO_SEV_WARNING], HEALTH_WARN_PER_HOUR);
		json_array_append_new(reasons, json_string(r));
		if (*verdict < 1)
			*verdict = 1;
	}
	json_object_set_new(h, "observer", json_string(tapio_observer_name(obs)));
	json_object_set_new(h, "verdict", json_string(verdicts[*verdict]));
	json_object_set_new(h, "total", json_integer((json_int_t)total));
	json_object_set_new(h, "counts", c);
	json_object_set_new(h, "by_severity", s);
	if (last) {
		char ts[40];

		clock_format_rfc3339(last, ts, sizeof(ts));
		json_object_set_new(h, "last_seen", json_string(ts));
	} else {
		json_object_set_new(h, "last_seen", json_null());
	}
	if (top >= 0) {
		json_t *keys = json_object(), *t = json_object(), *v;
		const char *best = NULL, *k;
		json_int_t best_n = 0;

		for (i = 0; i < occs->n; i++) {
			const struct tapio_occurrence *o = &occs->v[i];
			char kv[128];

			if ((int)o->type != top || o->timestamp_ns < from ||
			    o->timestamp_ns > now_ns)
				continue;
			top_key_value(o, kv, sizeof(kv));
			v = json_object_get(keys, kv);
			json_object_set_new(keys, kv,
					    json_integer(v ? json_integer_value(v) + 1 : 1));
		}
		json_object_foreach(keys, k, v)
		{
			/* ties go to the smaller value, so the answer does not depend on hashing */
			if (json_integer_value(v) > best_n ||
			    (json_integer_value(v) == best_n && best && strcmp(k, best) < 0)) {
				best = k;
				best_n = json_integer_value(v);
			}
		}
		json_object_set_new(t, "type", json_string(tapio_occ_type_name(top)));
		json_object_set_new(t, "count", json_integer((json_int_t)counts[top]));
		json_object_set_new(t, "key", json_string(top_key_name(obs)));
		json_object_set_new(t, "value", json_string(best ? best : ""));
		json_object_set_new(t, "value_count", json_integer(best_n));
		json_object_set_new(h, "top", t);
		json_decref(keys);
	} else {
		json_object_set_new(h, "top", json_null());
	}
	json_object_set_new(h, "reasons", reasons);
	return h;
}

json_t *health_compute(const struct occ_list *occs, int observer, uint64_t now_ns,
		       uint64_t window_ns)
{
	json_t *doc = json_object(), *arr = json_array();
	int worst = 0;
	char ts[40];

	for (int o = 0; o < TAPIO_OBS__COUNT; o++) {
		int v;

		if (observer >= 0 && o != observer)
			continue;
		json_array_append_new(arr, observer_health(occs, o, now_ns, window_ns, &v));
		if (v > worst)
			worst = v;
	}
	clock_format_rfc3339(now_ns, ts, sizeof(ts));
	json_object_set_new(doc, "verdict", json_string(verdicts[worst]));
	json_object_set_new(doc, "now", json_string(ts));
	json_object_set_new(doc, "window_s", json_integer((json_int_t)(window_ns / NS_PER_S)));
	json_object_set_new(doc, "observers", arr);
	return doc;
}

static void age(uint64_t now_ns, const char *ts, char *buf, size_t len)
{
	uint64_t t, s;

	if (!ts || clock_parse_rfc3339(ts, &t) != 0) {
		snprintf(buf, len, "never");
		return;
	}
	s = now_ns > t ? (now_ns - t) / NS_PER_S : 0;
	if (s < 120)
		snprintf(buf, len, "%" PRIu64 "s ago", s);
	else if (s < 7200)
		snprintf(buf, len, "%" PRIu64 "m ago", s / 60);
	else if (s < 172800)
		snprintf(buf, len, "%" PRIu64 "h ago", s / 3600);
	else
		snprintf(buf, len, "%" PRIu64 "d ago", s / 86400);
}

void health_print(const json_t *health)
{
	const char *hdr[6] = {"OBSERVER", "VERDICT", "TOTAL", "LAST SEEN", "TOP TYPE", "TOP KEY"};
	json_t *arr = json_object_get(health, "observers"), *it, *cnt;
	uint64_t now = 0;
	struct table t;
	const char *k;
	size_t i;

	clock_parse_rfc3339(json_string_value(json_object_get(health, "now")), &now);
	printf("verdict: %s (window %" JSON_INTEGER_FORMAT "s)\n\n",
	       json_string_value(json_object_get(health, "verdict")),
	       json_integer_value(json_object_get(health, "window_s")));
	table_init(&t, 6, hdr);
	json_array_foreach(arr, i, it)
	{
		json_t *top = json_object_get(it, "top");
		char total[32], seen[32], key[256] = "-";
		const char *row[6] = {json_string_value(json_object_get(it, "observer")),
				      json_string_value(json_object_get(it, "verdict")),
				      total,
				      seen,
				      top ? json_string_value(json_object_get(top, "type")) : "-",
				      key};

		snprintf(total, sizeof(total), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(json_object_get(it, "total")));
		age(now, json_string_value(json_object_get(it, "last_seen")), seen, sizeof(seen));
		if (top)
			snprintf(key, sizeof(key), "%s %s (%" JSON_INTEGER_FORMAT ")",
				 json_string_value(json_object_get(top, "key")),
				 json_string_value(json_object_get(top, "value")),
				 json_integer_value(json_object_get(top, "value_count")));
		table_add(&t, row);
	}
	table_print(&t, stdout);
	table_fini(&t);

	{
		const char *h2[3] = {"OBSERVER", "TYPE", "COUNT"};
		bool any = false;

		table_init(&t, 3, h2);
		json_array_foreach(arr, i, it)
		{
			json_t *v;

			json_object_foreach(json_object_get(it, "counts"), k, v)
			{
				char n[32];
				const char *row[3] = {
				    json_string_value(json_object_get(it, "observer")), k, n};

				snprintf(n, sizeof(n), "%" JSON_INTEGER_FORMAT,
					 json_integer_value(v));
				table_add(&t, row);
				any = true;
			}
		}
		if (any) {
			printf("\n");
			table_print(&t, stdout);
		}
		table_fini(&t);
	}
	json_array_foreach(arr, i, it)
	{
		size_t j;

		json_array_foreach(json_object_get(it, "reasons"), j, cnt)
		{
			printf("%s %s: %s\n", json_string_value(json_object_get(it, "observer")),
			       json_string_value(json_object_get(it, "verdict")),
			       json_string_value(cnt));
		}
	}
}

int cmd_health(const struct cli_ctx *ctx, const struct cli_opts *o)
{
	struct occ_filter f;
	struct occ_list l = {0};
	uint64_t span =
	    o->window_ns > HEALTH_CRITICAL_RECENT_NS ? o->window_ns : HEALTH_CRITICAL_RECENT_NS;
	int observer = -1, rc = CLI_EXIT_OK;
	char err[1024];
	json_t *h;

	if (o->positional) {
		observer = tapio_observer_parse(o->positional);
		if (observer < 0) {
			cli_error("unknown observer '%s' (expected network, container, storage or "
				  "node)",
				  o->positional);
			return CLI_EXIT_USAGE;
		}
	}
	occ_filter_init(&f);
	f.since_ns = ctx->now_ns > span ? ctx->now_ns - span : 1;
	f.node = o->filter.node;
	if (cli_load(ctx, &f, &l, err, sizeof(err)) != 0) {
		cli_error("%s", err);
		return CLI_EXIT_FAIL;
	}
	h = health_compute(&l, observer, ctx->now_ns, o->window_ns);
	if (ctx->json) {
		char *s = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);

		if (s)
			printf("%s\n", s);
		else
			rc = CLI_EXIT_FAIL;
		free(s);
	} else {
		health_print(h);
	}
	json_decref(h);
	occ_list_fini(&l);
	return rc;
}
