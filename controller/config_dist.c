/* Config distribution: active profile, generation, reloads, pushes, convergence. */
#include "controller/config_dist.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/config_generation.h"
#include "common/log.h"
#include "common/occ_proto.h"

#define TAG "config"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

const char *config_dist_result_name(enum config_dist_result r)
{
	switch (r) {
	case CONFIG_DIST_NONE:
		return "none";
	case CONFIG_DIST_LOADED:
		return "loaded";
	case CONFIG_DIST_UNCHANGED:
		return "unchanged";
	case CONFIG_DIST_FAILED:
		return "failed";
	}
	return "unknown";
}

/* ---- pure logic -------------------------------------------------------------------------- */

int config_dist_resolve(const struct profile *p, uint64_t generation, const char *node,
			const struct profile_label *labels, size_t n_labels,
			struct config_dist_push *out)
{
	memset(out, 0, sizeof(*out));
	out->overrides_applied = profile_resolve(p, node, labels, n_labels, &out->settings);
	settings_compile(&out->settings, generation, &out->config);
	return config_hash_settings(&out->settings, out->hash);
}

int config_dist_resolve_agent(const struct profile *p, uint64_t generation,
			      const struct registry_agent *a, struct config_dist_push *out)
{
	struct profile_label labels[REGISTRY_MAX_LIST];
	size_t n = 0;

	for (size_t i = 0; i < a->n_labels && n < REGISTRY_MAX_LIST; i++) {
		labels[n].key = a->labels[i].key;
		labels[n].value = a->labels[i].value ? a->labels[i].value : "";
		n++;
	}
	return config_dist_resolve(p, generation, a->node && a->node[0] ? a->node : NULL, labels, n,
				   out);
}

void config_dist_frame(const struct config_dist_push *push, Tapio__V1__ConfigPush *cp,
		       Tapio__V1__Settings *settings, Tapio__V1__Frame *f)
{
	tapio__v1__config_push__init(cp);
	tapio__v1__frame__init(f);
	settings_to_proto(&push->settings, settings);
	cp->generation = push->config.generation;
	cp->hash = (char *)push->hash;
	cp->config.data = (uint8_t *)&push->config;
	cp->config.len = sizeof(push->config);
	cp->settings = settings;
	f->msg_case = TAPIO__V1__FRAME__MSG_CONFIG_PUSH;
	f->config_push = cp;
}

int config_dist_check_file(const char *path, FILE *out, FILE *errf)
{
	struct profile *p = NULL;
	struct config_dist_push push;
	char err[CONFIG_DIST_MSG_LEN];
	int r;

	r = profile_load_file(path, &p, err, sizeof(err));
	if (r < 0) {
		if (r == -EINVAL)
			fprintf(errf, "%s\n", err);
		else
			fprintf(errf, "%s: %s\n", path, err[0] ? err : strerror(-r));
		return 1;
	}
	r = config_dist_resolve(p, 0, NULL, NULL, 0, &push);
	if (r < 0) {
		fprintf(errf, "%s: hashing the settings: %s\n", path, strerror(-r));
		profile_free(p);
		return 1;
	}
	fprintf(out, "profile %s: ok\n", path);
	fprintf(out, "name:          %s\n", profile_name(p)[0] ? profile_name(p) : "(none)");
	fprintf(out, "overrides:     %zu\n", profile_override_count(p));
	fprintf(out, "content hash:  %s\n", profile_content_hash(p));
	fprintf(out, "default hash:  %s (an agent no override matches)\n", push.hash);
	profile_free(p);
	return 0;
}

bool config_dist_agent_lags(const struct registry_agent *a)
{
	return a->connected && a->expected_hash[0] && strcmp(a->expected_hash, a->config_hash) != 0;
}

/* ---- pushing ----------------------------------------------------------------------------- */

int config_dist_push_agent(struct config_dist *d, struct registry_agent *a, uint64_t now_ns)
{
	struct config_dist_push push;
	Tapio__V1__ConfigPush cp;
	Tapio__V1__Settings settings;
	Tapio__V1__Frame f;
	int r;

	if (!d->profile || !a->connected)
		return 0;
	r = config_dist_resolve_agent(d->profile, d->generation, a, &push);
	if (r < 0) {
		d->push_failures++;
		return r;
	}
	config_dist_frame(&push, &cp, &settings, &f);
	r = d->send ? d->send(d->send_ctx, a, &f) : -ENOTCONN;
	if (r < 0) {
		d->push_failures++;
		LOG_RATELIMITED(LOG_WARN, TAG, "push of generation %llu to agent %s failed: %s",
				(unsigned long long)d->generation, a->id, strerror(-r));
		return r;
	}
	d->pushes++;
	registry_config_expected(a, d->generation, push.hash, now_ns);
	return 0;
}

size_t config_dist_push_all(struct config_dist *d, uint64_t now_ns)
{
	size_t n = 0;

	if (!d->profile)
		return 0;
	for (size_t i = 0; i < d->registry->n_agents; i++) {
		struct registry_agent *a = d->registry->agents[i];

		if (!a->connected) {
			/* what it will get at its next Hello: keeps /v1/agents honest meanwhile */
			struct config_dist_push push;

			if (config_dist_resolve_agent(d->profile, d->generation, a, &push) == 0)
				snprintf(a->expected_hash, sizeof(a->expected_hash), "%s",
					 push.hash);
			a->expected_generation = d->generation;
			continue;
		}
		if (config_dist_push_agent(d, a, now_ns) == 0)
			n++;
	}
	return n;
}

/* ---- reloading --------------------------------------------------------------------------- */

static void set_message(struct config_dist *d, enum config_dist_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_message(struct config_dist *d, enum config_dist_result r, const char *fmt, ...)
{
	va_list ap;

	d->last_result = r;
	d->last_reload_ns = clock_wall_ns();
	va_start(ap, fmt);
	vsnprintf(d->last_message, sizeof(d->last_message), fmt, ap);
	va_end(ap);
}

/* Thread pool: read and validate the file, then persist the generation it would get. */
static void on_reload_work(uv_work_t *w)
{
	struct config_dist *d = container_of(w, struct config_dist, work);

	d->next_profile = NULL;
	d->next_err[0] = '\0';
	d->next_gen_rc = 0;
	d->next_rc = profile_load_file(d->path, &d->next_profile, d->next_err, sizeof(d->next_err));
	if (d->next_rc < 0) {
		if (d->next_rc != -EINVAL && !d->next_err[0])
			snprintf(d->next_err, sizeof(d->next_err), "%s: %s", d->path,
				 strerror(-d->next_rc));
		return;
	}
	d->next_gen_rc = config_generation_next(d->data_dir, profile_content_hash(d->next_profile),
						&d->next_generation);
}

static void start_reload(struct config_dist *d);

static void on_reload_done(uv_work_t *w, int status)
{
	struct config_dist *d = container_of(w, struct config_dist, work);
	struct profile *np = d->next_profile;
	uint64_t now = clock_wall_ns();
	size_t pushed;

	d->work_inflight = false;
	d->next_profile = NULL;
	if (d->closing || status < 0) {
		profile_free(np);
		return;
	}
	d->reloads++;
	if (d->next_rc < 0) {
		d->reload_failures++;
		set_message(d, CONFIG_DIST_FAILED, "%s", d->next_err);
		log_error(TAG, "reload refused, keeping generation %llu (%s): %s",
			  (unsigned long long)d->generation, d->content_hash, d->next_err);
	} else if (d->next_gen_rc < 0) {
		d->reload_failures++;
		set_message(d, CONFIG_DIST_FAILED, "persisting the config generation in %s: %s",
			    d->data_dir, strerror(-d->next_gen_rc));
		log_error(TAG, "reload: %s; keeping generation %llu", d->last_message,
			  (unsigned long long)d->generation);
		profile_free(np);
		np = NULL;
	} else if (strcmp(profile_content_hash(np), d->content_hash) == 0 &&
		   d->next_generation == d->generation) {
		profile_free(d->profile); /* same content; the name may have changed */
		d->profile = np;
		set_message(d, CONFIG_DIST_UNCHANGED, "content unchanged (%s), generation %llu",
			    d->content_hash, (unsigned long long)d->generation);
		log_info(TAG, "reload: %s: content unchanged, nothing pushed", d->path);
	} else {
		profile_free(d->profile);
		d->profile = np;
		d->generation = d->next_generation;
		snprintf(d->content_hash, sizeof(d->content_hash), "%s", profile_content_hash(np));
		d->loaded_ns = now;
		pushed = config_dist_push_all(d, now);
		set_message(d, CONFIG_DIST_LOADED, "generation %llu (%s) pushed to %zu agents",
			    (unsigned long long)d->generation, d->content_hash, pushed);
		log_info(TAG,
			 "reload: %s: profile \"%s\" generation %llu (%s), pushed to %zu agents",
			 d->path, profile_name(np), (unsigned long long)d->generation,
			 d->content_hash, pushed);
	}
	if (d->reload_again) {
		d->reload_again = false;
		start_reload(d);
	}
}

static void start_reload(struct config_dist *d)
{
	int r;

	if (d->closing)
		return;
	if (d->work_inflight) {
		d->reload_again = true;
		return;
	}
	d->reload_started_ns = clock_wall_ns();
	r = uv_queue_work(d->loop, &d->work, on_reload_work, on_reload_done);
	if (r < 0) {
		d->reload_failures++;
		set_message(d, CONFIG_DIST_FAILED, "uv_queue_work: %s", uv_strerror(r));
		log_error(TAG, "reload: %s", d->last_message);
		return;
	}
	d->work_inflight = true;
}

void config_dist_reload(struct config_dist *d)
{
	if (d->profile)
		start_reload(d);
}

static void on_debounce(uv_timer_t *t)
{
	start_reload(container_of(t, struct config_dist, debounce));
}

/*
 * Any event naming the file (written in place, or replaced by an editor's rename), the whole
 * directory (NULL name), or Kubernetes' ConfigMap symlink swap ("..data") restarts the
 * debounce timer; other files in the directory are ignored.
 */
static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
	struct config_dist *d = container_of(h, struct config_dist, watch);

	(void)events;
	if (d->closing)
		return;
	if (status < 0) {
		LOG_RATELIMITED(LOG_WARN, TAG, "watching %s: %s", d->dir, uv_strerror(status));
		return;
	}
	if (filename && strcmp(filename, d->base) != 0 && strncmp(filename, "..", 2) != 0)
		return;
	uv_timer_start(&d->debounce, on_debounce, CONFIG_DIST_DEBOUNCE_MS, 0);
}

static void on_sighup(uv_signal_t *h, int signum)
{
	struct config_dist *d = container_of(h, struct config_dist, sighup);

	(void)signum;
	if (!d->profile) {
		log_info(TAG, "SIGHUP: no --profile, nothing to reload");
		return;
	}
	log_info(TAG, "SIGHUP: reloading %s", d->path);
	start_reload(d);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static int split_path(struct config_dist *d, const char *path)
{
	char *a = strdup(path), *b = strdup(path);
	int r = 0;

	d->path = strdup(path);
	if (!a || !b || !d->path) {
		r = -ENOMEM;
		goto out;
	}
	d->dir = strdup(dirname(a));
	d->base = strdup(basename(b));
	if (!d->dir || !d->base)
		r = -ENOMEM;
out:
	free(a);
	free(b);
	return r;
}

int config_dist_init(struct config_dist *d, uv_loop_t *loop, const char *profile_path,
		     const char *data_dir, struct registry *r, config_dist_send_fn send,
		     void *send_ctx, char *err, size_t errlen)
{
	int rc;

	memset(d, 0, sizeof(*d));
	d->loop = loop;
	d->registry = r;
	d->send = send;
	d->send_ctx = send_ctx;
	err[0] = '\0';
	if (!profile_path) {
		/* SIGHUP (systemctl reload) must not kill a controller that has no profile */
		uv_signal_init(loop, &d->sighup);
		d->open_handles = 1;
		d->handles_open = true;
		uv_signal_start(&d->sighup, on_sighup, SIGHUP);
		return 0;
	}
	if (split_path(d, profile_path) < 0 || !(d->data_dir = strdup(data_dir))) {
		snprintf(err, errlen, "out of memory");
		config_dist_fini(d);
		return -ENOMEM;
	}
	rc = profile_load_file(profile_path, &d->profile, err, errlen);
	if (rc < 0) {
		if (rc != -EINVAL && !err[0])
			snprintf(err, errlen, "%s: %s", profile_path, strerror(-rc));
		config_dist_fini(d);
		return rc;
	}
	rc = config_generation_next(data_dir, profile_content_hash(d->profile), &d->generation);
	if (rc < 0) {
		snprintf(err, errlen, "config generation in %s: %s", data_dir,
			 rc == -EINVAL ? "malformed " CONFIG_GENERATION_FILE : strerror(-rc));
		config_dist_fini(d);
		return rc;
	}
	snprintf(d->content_hash, sizeof(d->content_hash), "%s", profile_content_hash(d->profile));
	d->loaded_ns = clock_wall_ns();
	set_message(d, CONFIG_DIST_LOADED, "generation %llu (%s) loaded at start",
		    (unsigned long long)d->generation, d->content_hash);
	uv_timer_init(loop, &d->debounce);
	uv_signal_init(loop, &d->sighup);
	d->open_handles = 2;
	d->handles_open = true;
	uv_signal_start(&d->sighup, on_sighup, SIGHUP);
	if (uv_fs_event_init(loop, &d->watch) == 0) {
		d->open_handles++;
		d->watching = true;
		rc = uv_fs_event_start(&d->watch, on_fs_event, d->dir, 0);
		if (rc < 0)
			log_warn(TAG, "cannot watch %s (%s): reload with SIGHUP", d->dir,
				 uv_strerror(rc));
	}
	log_info(TAG, "profile %s: \"%s\", %zu overrides, generation %llu (%s)", d->path,
		 profile_name(d->profile), profile_override_count(d->profile),
		 (unsigned long long)d->generation, d->content_hash);
	return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct config_dist *d = h->data;

	d->open_handles--;
}

void config_dist_close(struct config_dist *d)
{
	if (d->closing)
		return;
	d->closing = true;
	if (!d->handles_open)
		return;
	d->debounce.data = d->sighup.data = d->watch.data = d;
	if (d->path)
		uv_close((uv_handle_t *)&d->debounce, on_handle_closed);
	uv_close((uv_handle_t *)&d->sighup, on_handle_closed);
	if (d->watching)
		uv_close((uv_handle_t *)&d->watch, on_handle_closed);
	d->handles_open = false;
}

void config_dist_fini(struct config_dist *d)
{
	if (!d)
		return;
	profile_free(d->profile);
	profile_free(d->next_profile);
	free(d->path);
	free(d->dir);
	free(d->base);
	free(d->data_dir);
	d->profile = d->next_profile = NULL;
	d->path = d->dir = d->base = d->data_dir = NULL;
}

/* ---- JSON -------------------------------------------------------------------------------- */

static json_t *time_or_null(uint64_t ns)
{
	char buf[40];

	if (ns == 0 || clock_format_rfc3339(ns, buf, sizeof(buf)) < 0)
		return json_null();
	return json_string(buf);
}

static json_t *convergence_json(const struct config_dist *d)
{
	json_t *by_hash = json_object(), *lagging = json_array(), *hashes = json_array(), *o;
	size_t connected = 0, converged = 0, n_lag = 0;
	const char *k;
	json_t *v;

	if (!by_hash || !lagging || !hashes)
		goto fail;
	for (size_t i = 0; i < d->registry->n_agents; i++) {
		const struct registry_agent *a = d->registry->agents[i];
		const char *h = a->config_hash[0] ? a->config_hash : "(none)";
		json_t *cnt;

		if (!a->connected)
			continue;
		connected++;
		cnt = json_object_get(by_hash, h);
		json_object_set_new(by_hash, h,
				    json_integer(cnt ? json_integer_value(cnt) + 1 : 1));
		if (config_dist_agent_lags(a)) {
			n_lag++;
			json_array_append_new(
			    lagging,
			    json_pack("{s:s,s:s?,s:s,s:I,s:s,s:I,s:s,s:o}", "agent_id", a->id,
				      "node", a->node, "expected_hash", a->expected_hash,
				      "expected_generation", (json_int_t)a->expected_generation,
				      "applied_hash", a->config_hash, "applied_generation",
				      (json_int_t)a->config_generation, "rejected_reason",
				      a->rejected_generation == a->expected_generation
					  ? a->rejected_reason
					  : "",
				      "pushed_at", time_or_null(a->config_pushed_ns)));
		} else if (a->expected_hash[0]) {
			converged++;
		}
	}
	json_object_foreach(by_hash, k, v)
	{
		json_array_append_new(hashes, json_pack("{s:s,s:O}", "hash", k, "agents", v));
	}
	json_decref(by_hash);
	o = json_pack("{s:I,s:I,s:I,s:o,s:o}", "connected", (json_int_t)connected, "converged",
		      (json_int_t)converged, "lagging", (json_int_t)n_lag, "by_hash", hashes,
		      "lagging_agents", lagging);
	return o;
fail:
	json_decref(by_hash);
	json_decref(lagging);
	json_decref(hashes);
	return NULL;
}

json_t *config_dist_json(const struct config_dist *d, uint64_t now_ns)
{
	json_t *profile = json_null(), *o;

	(void)now_ns;
	if (d->profile)
		profile = json_pack("{s:s,s:s,s:I,s:s,s:o}", "path", d->path, "name",
				    profile_name(d->profile), "overrides",
				    (json_int_t)profile_override_count(d->profile), "content_hash",
				    d->content_hash, "loaded_at", time_or_null(d->loaded_ns));
	o = json_pack("{s:b,s:o,s:I,s:s?,s:{s:s,s:s,s:o},s:I,s:I,s:I,s:I,s:o}", "active",
		      d->profile != NULL, "profile", profile, "generation",
		      (json_int_t)d->generation, "content_hash",
		      d->profile ? d->content_hash : NULL, "last_reload", "result",
		      config_dist_result_name(d->last_result), "message", d->last_message, "at",
		      time_or_null(d->last_reload_ns), "reloads", (json_int_t)d->reloads,
		      "config_reload_failures", (json_int_t)d->reload_failures, "pushes",
		      (json_int_t)d->pushes, "push_failures", (json_int_t)d->push_failures,
		      "convergence", convergence_json(d));
	return o;
}
