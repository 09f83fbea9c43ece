/*
 * controller/config_dist.c: which agent gets which settings (node glob, labels, both), the
 * ConfigPush frame, pushes to connected agents only, expected vs applied (convergence JSON),
 * init/reload/watch on a real loop with a real data dir (generation persisted, a bad reload
 * keeps the running profile, an editor's rename is seen), --check-profile; and
 * agent/applied_config.c (the agent's persisted copy) round trip and refusals.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/applied_config.h"
#include "common/occ_proto.h"
#include "controller/config_dist.h"

#define PROFILE                                             \
	"version: 1\n"                                      \
	"name: unit\n"                                      \
	"defaults: {storage: {warning_ms: 40}}\n"           \
	"overrides:\n"                                      \
	"  - match: {node: \"db-*\"}\n"                     \
	"    storage: {warning_ms: 20, critical_ms: 100}\n" \
	"  - match: {labels: {role: ingest}}\n"             \
	"    network: {enabled: false}\n"                   \
	"  - match: {node: db-7, labels: {role: ingest}}\n" \
	"    storage: {critical_ms: 150}\n"

static struct profile *load(const char *text)
{
	struct profile *p;
	char err[256];

	cr_assert_eq(profile_load_string("unit", text, strlen(text), &p, err, sizeof(err)), 0, "%s",
		     err);
	return p;
}

Test(config_dist, resolve_by_node_glob_and_label, .timeout = 10)
{
	struct profile *p = load(PROFILE);
	struct profile_label ingest = {"role", "ingest"}, other = {"role", "web"};
	struct config_dist_push x;
	char h[CONFIG_HASH_LEN];

	/* no match: defaults */
	cr_assert_eq(config_dist_resolve(p, 5, "web-1", NULL, 0, &x), 0);
	cr_assert_eq(x.overrides_applied, 0);
	cr_assert_eq(x.settings.storage_warning_ms, 40);
	cr_assert(x.settings.network_enabled);
	cr_assert_eq(x.config.generation, 5);
	cr_assert_eq(x.config.abi_version, TAPIO_ABI_VERSION);
	cr_assert_eq(profile_hash_for(p, "web-1", NULL, 0, h), 0);
	cr_assert_str_eq(x.hash, h);

	/* node glob */
	config_dist_resolve(p, 5, "db-1", NULL, 0, &x);
	cr_assert_eq(x.overrides_applied, 1);
	cr_assert_eq(x.settings.storage_warning_ms, 20);
	cr_assert_eq(x.settings.storage_critical_ms, 100);
	cr_assert(x.settings.network_enabled);

	/* label only, and a label with another value */
	config_dist_resolve(p, 5, "web-1", &ingest, 1, &x);
	cr_assert_eq(x.overrides_applied, 1);
	cr_assert_not(x.settings.network_enabled);
	cr_assert_eq(x.config.flags & TAPIO_F_NET_CONNECT, 0, "network off in the carrier");
	config_dist_resolve(p, 5, "web-1", &other, 1, &x);
	cr_assert_eq(x.overrides_applied, 0);

	/* both: all three apply in order, later wins key by key */
	config_dist_resolve(p, 5, "db-7", &ingest, 1, &x);
	cr_assert_eq(x.overrides_applied, 3);
	cr_assert_eq(x.settings.storage_warning_ms, 20);
	cr_assert_eq(x.settings.storage_critical_ms, 150);
	cr_assert_not(x.settings.network_enabled);

	/* no node name matches no glob */
	config_dist_resolve(p, 5, NULL, NULL, 0, &x);
	cr_assert_eq(x.overrides_applied, 0);
	profile_free(p);
}

/* A fake transport: records who got which frame. */
struct sent {
	int n;
	char ids[8][32];
	char hashes[8][CONFIG_HASH_LEN];
	uint64_t gens[8];
	struct tapio_settings settings[8];
	int fail_for; /* index of the agent whose send fails, -1 none */
};

static int fake_send(void *ctx, struct registry_agent *a, const Tapio__V1__Frame *f)
{
	struct sent *s = ctx;
	char err[128];
	uint8_t buf[1024];
	size_t len = tapio__v1__frame__pack(f, buf);
	Tapio__V1__Frame *back = tapio__v1__frame__unpack(NULL, len, buf);

	cr_assert_not_null(back, "the push must encode and decode");
	cr_assert_eq(back->msg_case, TAPIO__V1__FRAME__MSG_CONFIG_PUSH);
	if (s->fail_for >= 0 && strcmp(a->id, s->ids[s->fail_for]) == 0) {
		tapio__v1__frame__free_unpacked(back, NULL);
		return -ENOTCONN;
	}
	cr_assert_lt(s->n, 8);
	snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", a->id);
	snprintf(s->hashes[s->n], sizeof(s->hashes[0]), "%s", back->config_push->hash);
	s->gens[s->n] = back->config_push->generation;
	cr_assert_eq(
	    settings_from_proto(back->config_push->settings, &s->settings[s->n], err, sizeof(err)),
	    0);
	cr_assert_eq(back->config_push->config.len, sizeof(struct tapio_config));
	s->n++;
	tapio__v1__frame__free_unpacked(back, NULL);
	return 0;
}

static struct registry_agent *hello(struct registry *r, const char *id, const char *node,
				    const char *role)
{
	Tapio__V1__Hello h = TAPIO__V1__HELLO__INIT;
	Tapio__V1__Label l = TAPIO__V1__LABEL__INIT, *lp = &l;
	struct registry_agent *a;

	h.wire_version = 1;
	h.agent_id = (char *)id;
	h.node = (char *)node;
	h.session_id = 1;
	if (role) {
		l.key = "role";
		l.value = (char *)role;
		h.labels = &lp;
		h.n_labels = 1;
	}
	cr_assert_eq(registry_hello(r, &h, "127.0.0.1:1", 1000, &a), 0);
	return a;
}

struct tmp {
	char dir[64], data[96], path[128];
};

static void tmp_make(struct tmp *t)
{
	snprintf(t->dir, sizeof(t->dir), "/tmp/tapio-cdist-XXXXXX");
	cr_assert_not_null(mkdtemp(t->dir));
	snprintf(t->data, sizeof(t->data), "%s/data", t->dir);
	snprintf(t->path, sizeof(t->path), "%s/profile.yaml", t->dir);
	cr_assert_eq(mkdir(t->data, 0755), 0);
}

static void tmp_rm(struct tmp *t)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	cr_assert_eq(system(cmd), 0);
}

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* Runs the loop until cond(d) or ~3 s. */
static void run_until(uv_loop_t *loop, struct config_dist *d, bool (*cond)(struct config_dist *))
{
	for (int i = 0; i < 300 && !cond(d); i++) {
		uv_run(loop, UV_RUN_NOWAIT);
		usleep(10000);
	}
}

static uint64_t want_reloads;
static bool reloaded(struct config_dist *d)
{
	return d->reloads >= want_reloads && !d->work_inflight;
}

static void close_all(uv_loop_t *loop, struct config_dist *d)
{
	config_dist_close(d);
	uv_run(loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(loop), 0, "every handle closed");
	config_dist_fini(d);
}

Test(config_dist, pushes_go_to_connected_agents_with_their_settings, .timeout = 30)
{
	struct tmp t;
	struct registry r;
	struct config_dist d;
	struct sent s = {.fail_for = -1};
	uv_loop_t loop;
	char err[512];
	struct registry_agent *db, *web, *ing, *gone;

	tmp_make(&t);
	put(t.path, PROFILE);
	registry_init(&r);
	uv_loop_init(&loop);
	db = hello(&r, "a-db", "db-1", NULL);
	web = hello(&r, "a-web", "web-1", NULL);
	ing = hello(&r, "a-ing", "web-2", "ingest");
	gone = hello(&r, "a-gone", "db-2", NULL);
	registry_disconnect(&r, gone, 2000);
	cr_assert_eq(
	    config_dist_init(&d, &loop, t.path, t.data, &r, fake_send, &s, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_eq(d.generation, 1);

	cr_assert_eq(config_dist_push_all(&d, 3000), 3);
	cr_assert_eq(s.n, 3);
	for (int i = 0; i < s.n; i++) {
		cr_assert_eq(s.gens[i], 1);
		if (strcmp(s.ids[i], "a-db") == 0) {
			cr_assert_eq(s.settings[i].storage_warning_ms, 20);
			cr_assert(s.settings[i].network_enabled);
		} else if (strcmp(s.ids[i], "a-ing") == 0) {
			cr_assert_not(s.settings[i].network_enabled);
			cr_assert_eq(s.settings[i].storage_warning_ms, 40);
		} else {
			cr_assert_str_eq(s.ids[i], "a-web");
			cr_assert(s.settings[i].network_enabled);
			cr_assert_eq(s.settings[i].storage_warning_ms, 40);
		}
	}
	/* expectations recorded for everyone, pushed only to the connected */
	{
		char h[CONFIG_HASH_LEN];

		cr_assert_eq(profile_hash_for(d.profile, "db-1", NULL, 0, h), 0);
		cr_assert_str_eq(db->expected_hash, h);
		cr_assert_eq(db->expected_generation, 1);
	}
	cr_assert_eq(db->config_pushed_ns, 3000);
	cr_assert_eq(gone->config_pushed_ns, 0);
	cr_assert(gone->expected_hash[0], "a disconnected agent still has an expected hash");
	cr_assert_eq(d.pushes, 3);

	/* convergence: nobody applied yet → 3 lagging; then db and web apply */
	cr_assert(config_dist_agent_lags(db));
	cr_assert_not(config_dist_agent_lags(gone), "disconnected agents never lag");
	registry_config_applied(db, 1, db->expected_hash);
	registry_config_applied(web, 1, web->expected_hash);
	registry_config_rejected(ing, 1, "nope");
	cr_assert_not(config_dist_agent_lags(db));
	json_t *j = config_dist_json(&d, 0), *conv = json_object_get(j, "convergence");

	cr_assert_eq(json_integer_value(json_object_get(conv, "connected")), 3);
	cr_assert_eq(json_integer_value(json_object_get(conv, "converged")), 2);
	cr_assert_eq(json_integer_value(json_object_get(conv, "lagging")), 1);
	json_t *lag = json_array_get(json_object_get(conv, "lagging_agents"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(lag, "agent_id")), "a-ing");
	cr_assert_str_eq(json_string_value(json_object_get(lag, "rejected_reason")), "nope");
	cr_assert_eq(json_array_size(json_object_get(conv, "by_hash")), 3, "db, web, (none)");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "profile"), "name")),
			 "unit");
	json_decref(j);

	/* a failing send is counted and records no expectation change */
	s.fail_for = 0;
	s.n = 0;
	snprintf(s.ids[0], sizeof(s.ids[0]), "a-web");
	web->config_pushed_ns = 7;
	cr_assert_lt(config_dist_push_agent(&d, web, 9000), 0);
	cr_assert_eq(d.push_failures, 1);
	cr_assert_eq(web->config_pushed_ns, 7);

	close_all(&loop, &d);
	registry_fini(&r);
	tmp_rm(&t);
}

Test(config_dist, inactive_without_profile, .timeout = 10)
{
	struct registry r;
	struct config_dist d;
	struct sent s = {.fail_for = -1};
	uv_loop_t loop;
	char err[64];

	registry_init(&r);
	uv_loop_init(&loop);
	hello(&r, "a", "db-1", NULL);
	cr_assert_eq(
	    config_dist_init(&d, &loop, NULL, "/nonexistent", &r, fake_send, &s, err, sizeof(err)),
	    0);
	cr_assert_eq(config_dist_push_all(&d, 1), 0);
	cr_assert_eq(s.n, 0);
	config_dist_reload(&d);
	json_t *j = config_dist_json(&d, 0);
	cr_assert(json_is_false(json_object_get(j, "active")));
	json_decref(j);
	close_all(&loop, &d);
	registry_fini(&r);
}

Test(config_dist, reload_bad_keeps_good_bumps_and_watch_sees_rename, .timeout = 30)
{
	struct tmp t;
	struct registry r;
	struct config_dist d;
	struct sent s = {.fail_for = -1};
	uv_loop_t loop;
	char err[512], tmpf[200];
	const char *hash1;

	tmp_make(&t);
	put(t.path, PROFILE);
	registry_init(&r);
	uv_loop_init(&loop);
	hello(&r, "a-web", "web-1", NULL);
	cr_assert_eq(
	    config_dist_init(&d, &loop, t.path, t.data, &r, fake_send, &s, err, sizeof(err)), 0,
	    "%s", err);
	hash1 = profile_content_hash(d.profile);
	cr_assert_str_eq(d.content_hash, hash1);

	/* bad file: refused, counted, the running profile stays */
	put(t.path, "version: 1\nbogus: 2\n");
	want_reloads = 1;
	config_dist_reload(&d);
	run_until(&loop, &d, reloaded);
	cr_assert_eq(d.last_result, CONFIG_DIST_FAILED);
	cr_assert_eq(d.reload_failures, 1);
	cr_assert(strstr(d.last_message, "profile.yaml:2:") != NULL, "%s", d.last_message);
	cr_assert_eq(d.generation, 1);
	cr_assert_eq(s.n, 0);
	cr_assert_not_null(d.profile);

	/* an editor's rename: the watch triggers a reload on its own (debounced) */
	snprintf(tmpf, sizeof(tmpf), "%s/.profile.yaml.swp", t.dir);
	put(tmpf, "version: 1\ndefaults: {storage: {warning_ms: 33}}\n");
	want_reloads = d.reloads + 1;
	cr_assert_eq(rename(tmpf, t.path), 0);
	run_until(&loop, &d, reloaded);
	cr_assert_eq(d.last_result, CONFIG_DIST_LOADED, "%s", d.last_message);
	cr_assert_eq(d.generation, 2);
	cr_assert_eq(s.n, 1);
	cr_assert_eq(s.gens[0], 2);
	cr_assert_eq(s.settings[0].storage_warning_ms, 33);

	/* same content again: unchanged, nothing pushed */
	want_reloads = d.reloads + 1;
	config_dist_reload(&d);
	run_until(&loop, &d, reloaded);
	cr_assert_eq(d.last_result, CONFIG_DIST_UNCHANGED);
	cr_assert_eq(s.n, 1);
	close_all(&loop, &d);

	/* a new controller on the same data dir and file keeps generation 2 */
	uv_loop_init(&loop);
	cr_assert_eq(
	    config_dist_init(&d, &loop, t.path, t.data, &r, fake_send, &s, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_eq(d.generation, 2);
	close_all(&loop, &d);

	/* a bad profile at init is refused with its location */
	put(t.path, "version: 1\ndefaults: {storage: {warning_ms: 0}}\n");
	uv_loop_init(&loop);
	cr_assert_eq(
	    config_dist_init(&d, &loop, t.path, t.data, &r, fake_send, &s, err, sizeof(err)),
	    -EINVAL);
	cr_assert(strstr(err, "profile.yaml:2:") && strstr(err, "warning_ms"), "%s", err);
	cr_assert_eq(uv_loop_close(&loop), 0);
	registry_fini(&r);
	tmp_rm(&t);
}

Test(config_dist, check_file_prints_summary, .timeout = 10)
{
	struct tmp t;
	char out[2048] = "", errs[1024] = "";
	FILE *o, *e;

	tmp_make(&t);
	put(t.path, PROFILE);
	o = fmemopen(out, sizeof(out), "w");
	e = fmemopen(errs, sizeof(errs), "w");
	cr_assert_eq(config_dist_check_file(t.path, o, e), 0);
	fflush(o);
	cr_assert(strstr(out, "name:          unit"), "%s", out);
	cr_assert(strstr(out, "overrides:     3"), "%s", out);
	cr_assert(strstr(out, "content hash:  sha256:"), "%s", out);
	put(t.path, "version: 2\n");
	cr_assert_eq(config_dist_check_file(t.path, o, e), 1);
	fflush(e);
	cr_assert(strstr(errs, "profile.yaml:1:"), "%s", errs);
	fclose(o);
	fclose(e);
	tmp_rm(&t);
}

/* ---- agent/applied_config.c ---- */

Test(applied_config, round_trip_and_refusals, .timeout = 10)
{
	struct tmp t;
	struct tapio_settings s, back;
	char hash[CONFIG_HASH_LEN], h2[CONFIG_HASH_LEN], path[160];
	uint64_t gen = 0;

	tmp_make(&t);
	cr_assert_eq(applied_config_load(t.data, &back, &gen, h2), -ENOENT);
	settings_defaults(&s);
	s.network_enabled = false;
	s.n_ignored_exit_codes = 2;
	s.ignored_exit_codes[0] = 42;
	s.ignored_exit_codes[1] = 7;
	s.rtt_spike_ratio = 3.5;
	cr_assert_eq(config_hash_settings(&s, hash), 0);
	cr_assert_eq(applied_config_save(t.data, &s, 0, hash), -EINVAL, "generation 0");
	cr_assert_eq(applied_config_save(t.data, &s, 9, "sha256:nothex"), -EINVAL);
	cr_assert_eq(applied_config_save(t.data, &s, 9, hash), 0);
	cr_assert_eq(applied_config_load(t.data, &back, &gen, h2), 0);
	cr_assert_eq(gen, 9);
	cr_assert_str_eq(h2, hash);
	cr_assert_eq(config_hash_settings(&back, h2), 0);
	cr_assert_str_eq(h2, hash, "settings survive byte for byte in meaning");
	cr_assert_not(back.network_enabled);
	cr_assert_eq(back.rtt_spike_ratio, 3.5);

	/* a hash that does not belong to the settings is refused */
	snprintf(path, sizeof(path), "%s/" APPLIED_CONFIG_FILE, t.data);
	s.storage_warning_ms = 51;
	cr_assert_eq(applied_config_save(t.data, &s, 10, hash), 0);
	cr_assert_eq(applied_config_load(t.data, &back, &gen, h2), -EINVAL);
	/* garbage */
	put(path, "tapio-applied-config 1\ngeneration x\n");
	cr_assert_eq(applied_config_load(t.data, &back, &gen, h2), -EINVAL);
	put(path, "hello\n");
	cr_assert_eq(applied_config_load(t.data, &back, &gen, h2), -EINVAL);
	tmp_rm(&t);
}
