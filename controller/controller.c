/* The controller process: store + aggregate + registry + ingest on one libuv loop. */
#include "controller/controller.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/clock.h"
#include "common/codec.h"
#include "common/log.h"

#define TAG "controller"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

void controller_options_defaults(struct controller_options *o)
{
	memset(o, 0, sizeof(*o));
	ingest_options_defaults(&o->ingest);
	store_options_defaults(&o->store);
	http_options_defaults(&o->http);
	o->stats_interval_ms = 60000;
	o->maintain_interval_ms = 10000;
}

static void log_stats(struct controller *c)
{
	const struct ingest_stats *s = ingest_get_stats(&c->ingest);
	struct store_stats st;
	char errs[256];
	int n = 0;

	store_stats(c->store, &st);
	errs[0] = '\0';
	for (int i = 1; i < INGEST_ERROR_CODES && n >= 0 && (size_t)n < sizeof(errs); i++)
		if (s->errors_sent[i])
			n += snprintf(errs + n, sizeof(errs) - (size_t)n, " %s=%llu",
				      codec_error_code_name((Tapio__V1__ErrorCode)i),
				      (unsigned long long)s->errors_sent[i]);
	log_info(TAG,
		 "stats: connections=%llu agents=%zu/%zu frames_in=%llu frames_out=%llu "
		 "bytes_in=%llu batches=%llu occurrences=%llu acks=%llu duplicates=%llu "
		 "gaps=%llu regressions=%llu invalid=%llu errors:%s timeouts=%llu "
		 "overflows=%llu commits=%llu fsyncs=%llu rotations=%llu records=%llu "
		 "segments=%llu backpressure=%s backpressure_events=%llu",
		 (unsigned long long)s->current, registry_connected(&c->registry),
		 registry_known(&c->registry), (unsigned long long)s->frames_in,
		 (unsigned long long)s->frames_out, (unsigned long long)s->bytes_in,
		 (unsigned long long)s->batches, (unsigned long long)s->occurrences,
		 (unsigned long long)s->acks, (unsigned long long)s->duplicates,
		 (unsigned long long)s->gaps, (unsigned long long)s->regressions,
		 (unsigned long long)s->invalid_occurrences, errs[0] ? errs : " none",
		 (unsigned long long)(s->hello_timeouts + s->idle_timeouts),
		 (unsigned long long)s->output_overflows, (unsigned long long)st.commits,
		 (unsigned long long)st.fsyncs, (unsigned long long)st.rotations,
		 (unsigned long long)st.records, (unsigned long long)st.segments,
		 s->backpressure ? "on" : "off", (unsigned long long)s->backpressure_events);
}

static void on_stats(uv_timer_t *t)
{
	log_stats(container_of(t, struct controller, stats_timer));
}

static void on_maintain(uv_timer_t *t)
{
	struct controller *c = container_of(t, struct controller, maintain_timer);
	int r;

	if (store_commit_busy(c->store))
		return;
	r = store_maintain(c->store);
	if (r < 0 && r != -EBUSY)
		LOG_RATELIMITED(LOG_ERROR, TAG, "store_maintain: %s", strerror(-r));
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct controller *c = h->data;

	log_info(TAG, "%s: stopping (finishing the commit in flight)", strsignal(signum));
	controller_stop(c);
}

/*
 * SIGUSR1: the full status (ingest counters, store, every agent) as one JSON line on stderr
 * right after a log line announcing it (log lines are capped at 1 KB; the status is not).
 */
static void on_status_signal(uv_signal_t *h, int signum)
{
	struct controller *c = h->data;
	json_t *j = controller_status_json(c);
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	if (text) {
		log_info(TAG, "status (SIGUSR1) as JSON on the next line");
		fprintf(stderr, "%s\n", text);
	} else
		log_error(TAG, "status: out of memory");
	free(text);
	json_decref(j);
}

static void on_ingest_stopped(struct ingest *in, void *ctx)
{
	struct controller *c = ctx;

	if (c->ingest_started)
		log_stats(c);
	uv_close((uv_handle_t *)&c->sigint, NULL);
	uv_close((uv_handle_t *)&c->sigterm, NULL);
	uv_close((uv_handle_t *)&c->sigusr1, NULL);
	uv_close((uv_handle_t *)&c->stats_timer, NULL);
	uv_close((uv_handle_t *)&c->maintain_timer, NULL);
	config_dist_close(&c->config);
}

static int send_to_agent(void *ctx, struct registry_agent *a, const Tapio__V1__Frame *f)
{
	return ingest_send_agent(ctx, a, f);
}

static void on_welcome(struct ingest *in, struct registry_agent *a, void *ctx)
{
	struct controller *c = ctx;

	(void)in;
	config_dist_push_agent(&c->config, a, clock_wall_ns());
}

void controller_stop(struct controller *c)
{
	if (c->stopping)
		return;
	c->stopping = true;
	http_stop(&c->http);
	if (c->ingest_started) {
		ingest_stop(&c->ingest, on_ingest_stopped, c);
	} else if (c->handles_inited) {
		on_ingest_stopped(&c->ingest, c);
	}
}

int controller_open(struct controller *c, uv_loop_t *loop, const struct controller_options *o)
{
	int r;

	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->opt = *o;
	if (!c->opt.stats_interval_ms)
		c->opt.stats_interval_ms = 60000;
	if (!c->opt.maintain_interval_ms)
		c->opt.maintain_interval_ms = 10000;
	c->started_ns = clock_wall_ns();
	registry_init(&c->registry);
	r = store_open(&c->opt.store, &c->store);
	if (r < 0) {
		log_error(TAG, "store_open %s: %s", c->opt.store.dir,
			  r == -EBUSY ? "locked by another process" : strerror(-r));
		return r;
	}
	c->aggregate = aggregate_new();
	if (!c->aggregate)
		return -ENOMEM;
	r = aggregate_rebuild(c->aggregate, c->store, clock_wall_ns());
	if (r < 0) {
		log_error(TAG, "aggregate_rebuild: %s", strerror(-r));
		return r;
	}
	{
		char err[600];

		r = config_dist_init(&c->config, loop, c->opt.profile_path, c->opt.store.dir,
				     &c->registry, send_to_agent, &c->ingest, err, sizeof(err));
		if (r < 0) {
			log_error(TAG, "profile: %s", err);
			return r;
		}
	}
	uv_signal_init(loop, &c->sigint);
	uv_signal_init(loop, &c->sigterm);
	uv_signal_init(loop, &c->sigusr1);
	uv_timer_init(loop, &c->stats_timer);
	uv_timer_init(loop, &c->maintain_timer);
	c->sigint.data = c->sigterm.data = c->sigusr1.data = c;
	c->handles_inited = true;
	if (c->opt.tls.cert_file) {
		char err[600];

		c->tls = tls_ctx_new_server(&c->opt.tls, err, sizeof(err));
		if (!c->tls) {
			log_error(TAG, "ingest TLS: %s", err);
			c->stopping = true;
			on_ingest_stopped(&c->ingest, c);
			return -EINVAL;
		}
		c->opt.ingest.tls = c->tls;
	} else if (!c->opt.plaintext) {
		log_warn(TAG,
			 "ingest link is PLAINTEXT%s: evidence%s travel%s unencrypted; "
			 "use --tls-cert/--tls-key (docs/security.md) or say --plaintext",
			 c->opt.ingest.token ? " with a token" : "",
			 c->opt.ingest.token ? " and the token" : "",
			 c->opt.ingest.token ? "" : "s");
	}
	r = ingest_start(&c->ingest, loop, &c->opt.ingest, c->store, &c->registry, c->aggregate);
	if (r < 0) {
		log_error(TAG, "listen on %s:%d: %s", c->opt.ingest.host ? c->opt.ingest.host : "?",
			  c->opt.ingest.port, uv_strerror(r));
		c->stopping = true;
		on_ingest_stopped(&c->ingest, c);
		return r;
	}
	c->ingest_started = true;
	c->ingest.on_welcome = on_welcome;
	c->ingest.welcome_ctx = c;
	r = http_start(&c->http, loop, &c->opt.http, c);
	if (r < 0) {
		controller_stop(c);
		return r;
	}
	uv_signal_start(&c->sigint, on_signal, SIGINT);
	uv_signal_start(&c->sigterm, on_signal, SIGTERM);
	uv_signal_start(&c->sigusr1, on_status_signal, SIGUSR1);
	uv_timer_start(&c->stats_timer, on_stats, c->opt.stats_interval_ms,
		       c->opt.stats_interval_ms);
	uv_timer_start(&c->maintain_timer, on_maintain, c->opt.maintain_interval_ms,
		       c->opt.maintain_interval_ms);
	return 0;
}

int controller_close(struct controller *c)
{
	int r;

	ingest_fini(&c->ingest);
	tls_ctx_free(c->tls);
	c->tls = NULL;
	config_dist_fini(&c->config);
	registry_fini(&c->registry);
	aggregate_free(c->aggregate);
	c->aggregate = NULL;
	r = store_close(c->store);
	c->store = NULL;
	if (r < 0)
		log_error(TAG, "store_close: %s", strerror(-r));
	return r;
}

json_t *controller_status_json(struct controller *c)
{
	struct store_stats st;
	char since[40] = "";
	json_t *o;

	store_stats(c->store, &st);
	clock_format_rfc3339(c->started_ns, since, sizeof(since));
	o = json_pack(
	    "{s:{s:s,s:s,s:s,s:s,s:i},s:o,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:o}",
	    "controller", "id", c->ingest.controller_id ? c->ingest.controller_id : "", "version",
	    TAPIO_VERSION, "started", since, "data_dir", c->opt.store.dir ? c->opt.store.dir : "",
	    "port", ingest_port(&c->ingest), "ingest", ingest_stats_json(&c->ingest), "store",
	    "segments", (json_int_t)st.segments, "bytes", (json_int_t)st.bytes, "records",
	    (json_int_t)st.records, "commits", (json_int_t)st.commits, "fsyncs",
	    (json_int_t)st.fsyncs, "rotations", (json_int_t)st.rotations, "pending_bytes",
	    (json_int_t)st.pending_bytes, "deleted_segments", (json_int_t)st.deleted_segments,
	    "corrupt_reads", (json_int_t)st.corrupt_reads, "registry",
	    registry_to_json(&c->registry, clock_wall_ns()));
	if (o)
		json_object_set_new(o, "config", config_dist_json(&c->config, clock_wall_ns()));
	return o;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn(TAG, "setrlimit(RLIMIT_NOFILE, %llu): %s",
				 (unsigned long long)rl.rlim_max, strerror(errno));
		else
			log_debug(TAG, "RLIMIT_NOFILE raised from %llu to %llu",
				  (unsigned long long)was, (unsigned long long)rl.rlim_max);
	}
}

int controller_run(const struct controller_options *o)
{
	struct controller c;
	uv_loop_t loop;
	int r, rc = 0;

	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	r = uv_loop_init(&loop);
	if (r < 0) {
		log_error(TAG, "uv_loop_init: %s", uv_strerror(r));
		return 1;
	}
	r = controller_open(&c, &loop, o);
	if (r == 0) {
		bool v6 = strchr(c.ingest.opt.host, ':') != NULL;

		log_info(TAG, "tapio-controller ready: listening on %s%s%s:%d%s, data in %s",
			 v6 ? "[" : "", c.ingest.opt.host, v6 ? "]" : "", ingest_port(&c.ingest),
			 !c.tls			 ? " (plaintext)"
			 : tls_ctx_mutual(c.tls) ? " (TLS 1.3, client certificates required)"
						 : " (TLS 1.3)",
			 o->store.dir);
	} else
		rc = 1;
	uv_run(&loop, UV_RUN_DEFAULT);
	if (controller_close(&c) < 0)
		rc = 1;
	r = uv_loop_close(&loop);
	if (r < 0) {
		log_error(TAG, "uv_loop_close: %s (handles left open)", uv_strerror(r));
		rc = 1;
	}
	if (rc == 0)
		log_info(TAG, "stopped cleanly");
	return rc;
}
