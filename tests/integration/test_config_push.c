/*
 * Config distribution against the real tapio-controller process (--profile): the push after
 * Welcome, per-node and per-label overrides reaching only the matching agents, reloads on
 * SIGHUP and on a file change (editor-style rename), a refused reload that changes nothing
 * and is reported in the status JSON (SIGUSR1), ConfigApplied/ConfigRejected in the
 * registry's convergence view, the generation kept across a controller restart, and
 * --check-profile / a bad --profile at start. Agents are raw sockets speaking the wire
 * protocol, so the test sees exactly the frames an agent gets.
 */
#include <criterion/criterion.h>
#include <jansson.h>

#include "common/config_hash.h"
#include "common/occ_proto.h"
#include "common/profile.h"
#include "common/settings.h"
#include "controller_harness.h"

#define PROFILE_V1                              \
	"version: 1\n"                          \
	"name: itest\n"                         \
	"defaults:\n"                           \
	"  storage: {warning_ms: 60}\n"         \
	"overrides:\n"                          \
	"  - match: {node: \"db-*\"}\n"         \
	"    network: {enabled: false}\n"       \
	"  - match: {labels: {role: ingest}}\n" \
	"    container: {ignored_exit_codes: [3]}\n"

#define PROFILE_V2                              \
	"version: 1\n"                          \
	"name: itest\n"                         \
	"defaults:\n"                           \
	"  storage: {warning_ms: 75}\n"         \
	"overrides:\n"                          \
	"  - match: {node: \"db-*\"}\n"         \
	"    network: {enabled: false}\n"       \
	"  - match: {labels: {role: ingest}}\n" \
	"    container: {ignored_exit_codes: [3]}\n"

#define PROFILE_BAD "version: 1\ndefaults:\n  storage: {warning_ms: 0}\n"

static struct ctl ctl;
static char profile_path[400];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* Writes text to a temp file and renames it over path, as editors and config managers do. */
static void replace_file(const char *path, const char *text)
{
	char tmp[520];

	snprintf(tmp, sizeof(tmp), "%s.swp", path);
	write_file(tmp, text);
	cr_assert_eq(rename(tmp, path), 0);
}

/* The hash an agent with this node/label must get from profile text. */
static void expected_hash(const char *text, const char *node, const char *role,
			  char out[CONFIG_HASH_LEN])
{
	struct profile *p;
	struct profile_label l = {"role", role};
	char err[256];

	cr_assert_eq(profile_load_string("t", text, strlen(text), &p, err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(profile_hash_for(p, node, &l, role ? 1 : 0, out), 0);
	profile_free(p);
}

/* Hello with node and an optional role label; returns after the Welcome. */
static int agent_hello(const char *id, const char *node, const char *role)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT, *w;
	Tapio__V1__Hello h = TAPIO__V1__HELLO__INIT;
	Tapio__V1__Label l = TAPIO__V1__LABEL__INIT, *lp = &l;
	int fd = cli_connect(ctl.port);

	h.wire_version = CODEC_WIRE_VERSION;
	h.agent_id = (char *)id;
	h.node = (char *)node;
	h.cluster = "test";
	h.version = "test";
	h.session_id = 77;
	if (role) {
		l.key = "role";
		l.value = (char *)role;
		h.n_labels = 1;
		h.labels = &lp;
	}
	f.msg_case = TAPIO__V1__FRAME__MSG_HELLO;
	f.hello = &h;
	cr_assert_eq(cli_send(fd, &f), 0);
	cr_assert_eq(cli_recv(fd, &w), 1, "no Welcome");
	cr_assert_eq(w->msg_case, TAPIO__V1__FRAME__MSG_WELCOME);
	tapio__v1__frame__free_unpacked(w, NULL);
	return fd;
}

/* Sets the receive timeout of fd. */
static void recv_timeout(int fd, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* Next frame must be a ConfigPush: checks it is self-consistent, returns it (free it). */
static Tapio__V1__Frame *expect_push(int fd)
{
	Tapio__V1__Frame *f;
	struct tapio_settings s;
	struct tapio_config kc;
	char hash[CONFIG_HASH_LEN], err[200];

	recv_timeout(fd, 5000);
	cr_assert_eq(cli_recv(fd, &f), 1, "no ConfigPush within 5 s");
	cr_assert_eq(f->msg_case, TAPIO__V1__FRAME__MSG_CONFIG_PUSH, "got %s", codec_frame_kind(f));
	cr_assert_not_null(f->config_push->settings);
	cr_assert_eq(settings_from_proto(f->config_push->settings, &s, err, sizeof(err)), 0);
	cr_assert_eq(settings_validate(&s, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_hash_settings(&s, hash), 0);
	cr_assert_str_eq(f->config_push->hash, hash);
	cr_assert_eq(config_from_proto(f->config_push, &kc, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kc.generation, f->config_push->generation);
	return f;
}

/* Nothing arrives on fd within ms. */
static void expect_silence(int fd, int ms)
{
	Tapio__V1__Frame *f = NULL;
	int r;

	recv_timeout(fd, ms);
	r = cli_recv(fd, &f);
	cr_assert(r == -EAGAIN || r == -EWOULDBLOCK, "expected no frame, got %d (%s)", r,
		  f ? codec_frame_kind(f) : "-");
}

static void send_applied(int fd, uint64_t gen, const char *hash)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__ConfigApplied a = TAPIO__V1__CONFIG_APPLIED__INIT;

	a.generation = gen;
	a.hash = (char *)hash;
	f.msg_case = TAPIO__V1__FRAME__MSG_CONFIG_APPLIED;
	f.config_applied = &a;
	cr_assert_eq(cli_send(fd, &f), 0);
}

static void send_rejected(int fd, uint64_t gen, const char *hash, const char *reason)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;
	Tapio__V1__ConfigRejected r = TAPIO__V1__CONFIG_REJECTED__INIT;

	r.generation = gen;
	r.hash = (char *)hash;
	r.reason = (char *)reason;
	f.msg_case = TAPIO__V1__FRAME__MSG_CONFIG_REJECTED;
	f.config_rejected = &r;
	cr_assert_eq(cli_send(fd, &f), 0);
}

/* SIGUSR1 → the status JSON line in the log (new reference). */
static json_t *status_json(void)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		char *log0 = ctl_read_log(&ctl);
		size_t off = strlen(log0);

		free(log0);
		kill(ctl.pid, SIGUSR1);
		for (int i = 0; i < 200; i++) {
			char *l = ctl_read_log(&ctl),
			     *p = strlen(l) > off ? strchr(l + off, '{') : NULL;
			char *nl = p ? strchr(p, '\n') : NULL;

			if (p && nl) {
				json_error_t e;
				json_t *j;

				*nl = '\0';
				j = json_loads(p, 0, &e);
				free(l);
				if (j)
					return j;
				break;
			}
			free(l);
			usleep(10000);
		}
	}
	cr_assert_fail("no status JSON after SIGUSR1");
	return NULL;
}

static json_t *agent_entry(json_t *status, const char *id)
{
	json_t *agents = json_object_get(json_object_get(status, "registry"), "agents"), *a;
	size_t i;

	json_array_foreach(agents, i, a) if (strcmp(json_string_value(json_object_get(a, "id")),
						    id) == 0) return a;
	cr_assert_fail("agent %s not in the registry", id);
	return NULL;
}

/* GET path from the controller's HTTP API on port; returns the malloc'd response. */
static char *http_get(int port, const char *path)
{
	char req[256], *buf = calloc(1, 1 << 20);
	size_t n = 0;
	ssize_t r;
	int fd = cli_connect(port);

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	cr_assert_eq(cli_send_raw(fd, req, strlen(req)), 0);
	while (n < (1u << 20) - 1 && (r = recv(fd, buf + n, (1u << 20) - 1 - n, 0)) > 0)
		n += (size_t)r;
	close(fd);
	return buf;
}

/* The HTTP port from "http API listening on 127.0.0.1:PORT". */
static int http_port(void)
{
	char *l = ctl_read_log(&ctl), *p = strstr(l, "http API listening on 127.0.0.1:");
	int port;

	cr_assert_not_null(p, "no http API line");
	port = atoi(p + strlen("http API listening on 127.0.0.1:"));
	free(l);
	return port;
}

static void setup(void)
{
	ctl_mkroot(&ctl, "cfgpush");
	snprintf(profile_path, sizeof(profile_path), "%s/profile.yaml", ctl.dir);
}

static void teardown(void)
{
	if (ctl.pid > 0)
		ctl_stop(&ctl, SIGTERM);
	ctl_rmroot(&ctl);
}

TestSuite(config_push, .init = setup, .fini = teardown, .timeout = 60);

Test(config_push, push_on_hello_resolves_per_node_and_label)
{
	char h_db[CONFIG_HASH_LEN], h_web[CONFIG_HASH_LEN], h_ing[CONFIG_HASH_LEN];
	Tapio__V1__Frame *f;
	struct tapio_settings s;
	char err[128];

	write_file(profile_path, PROFILE_V1);
	ctl_start(&ctl, "--profile", profile_path, "--http", "127.0.0.1:0", NULL);
	expected_hash(PROFILE_V1, "db-1", NULL, h_db);
	expected_hash(PROFILE_V1, "web-1", NULL, h_web);
	expected_hash(PROFILE_V1, "web-2", "ingest", h_ing);
	cr_assert_str_neq(h_db, h_web);
	cr_assert_str_neq(h_ing, h_web);

	int db = agent_hello("a-db", "db-1", NULL);
	int web = agent_hello("a-web", "web-1", NULL);
	int ing = agent_hello("a-ing", "web-2", "ingest");

	f = expect_push(db);
	cr_assert_eq(f->config_push->generation, 1);
	cr_assert_str_eq(f->config_push->hash, h_db);
	settings_from_proto(f->config_push->settings, &s, err, sizeof(err));
	cr_assert_not(s.network_enabled, "db-* override disables network");
	cr_assert_eq(s.storage_warning_ms, 60);
	tapio__v1__frame__free_unpacked(f, NULL);

	f = expect_push(web);
	cr_assert_str_eq(f->config_push->hash, h_web);
	settings_from_proto(f->config_push->settings, &s, err, sizeof(err));
	cr_assert(s.network_enabled, "the db-* override must not reach web-1");
	cr_assert_eq(s.n_ignored_exit_codes, 0);
	tapio__v1__frame__free_unpacked(f, NULL);

	f = expect_push(ing);
	cr_assert_str_eq(f->config_push->hash, h_ing);
	settings_from_proto(f->config_push->settings, &s, err, sizeof(err));
	cr_assert_eq(s.n_ignored_exit_codes, 1);
	cr_assert_eq(s.ignored_exit_codes[0], 3);
	tapio__v1__frame__free_unpacked(f, NULL);

	/* applied by two, rejected by one: the convergence view says who lags and why */
	send_applied(db, 1, h_db);
	send_applied(web, 1, h_web);
	send_rejected(ing, 1, h_ing, "test says no");
	usleep(200000);
	json_t *st = status_json(), *cfg = json_object_get(st, "config");
	json_t *conv = json_object_get(cfg, "convergence");

	cr_assert(json_is_true(json_object_get(cfg, "active")));
	cr_assert_eq(json_integer_value(json_object_get(cfg, "generation")), 1);
	cr_assert_eq(json_integer_value(json_object_get(conv, "connected")), 3);
	cr_assert_eq(json_integer_value(json_object_get(conv, "converged")), 2);
	cr_assert_eq(json_integer_value(json_object_get(conv, "lagging")), 1);
	json_t *lag = json_array_get(json_object_get(conv, "lagging_agents"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(lag, "agent_id")), "a-ing");
	cr_assert_str_eq(json_string_value(json_object_get(lag, "expected_hash")), h_ing);
	cr_assert_str_eq(json_string_value(json_object_get(lag, "rejected_reason")),
			 "test says no");
	json_t *adb = json_object_get(agent_entry(st, "a-db"), "config");
	cr_assert(json_is_true(json_object_get(adb, "converged")));
	cr_assert_str_eq(json_string_value(json_object_get(adb, "expected_hash")), h_db);
	cr_assert(json_is_string(json_object_get(adb, "applied_at")));
	json_decref(st);

	/* the same view over HTTP: GET /v1/config, /v1/agents and /metrics */
	int hp = http_port();
	char *body = http_get(hp, "/v1/config");
	cr_assert(strstr(body, "200 OK"), "%.300s", body);
	json_t *j = json_loads(strstr(body, "\r\n\r\n") + 4, 0, NULL);
	cr_assert_not_null(j, "%.300s", body);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "profile"), "name")),
			 "itest");
	cr_assert_eq(
	    json_integer_value(json_object_get(json_object_get(j, "convergence"), "lagging")), 1);
	json_decref(j);
	free(body);
	body = http_get(hp, "/v1/agents");
	cr_assert(strstr(body, "\"expected_hash\""), "%.300s", body);
	free(body);
	body = http_get(hp, "/metrics");
	cr_assert(strstr(body, "\ntapio_config_generation 1\n"), "%.2000s", body);
	cr_assert(strstr(body, "\ntapio_config_agents_lagging 1\n"));
	cr_assert(strstr(body, "\ntapio_config_reload_failures_total 0\n"));
	free(body);
	close(db);
	close(web);
	close(ing);
}

Test(config_push, sighup_change_pushes_bad_reload_changes_nothing)
{
	char h1[CONFIG_HASH_LEN], h2[CONFIG_HASH_LEN];
	Tapio__V1__Frame *f;

	write_file(profile_path, PROFILE_V1);
	ctl_start(&ctl, "--profile", profile_path, NULL);
	expected_hash(PROFILE_V1, "web-1", NULL, h1);
	expected_hash(PROFILE_V2, "web-1", NULL, h2);
	int fd = agent_hello("a-web", "web-1", NULL);

	f = expect_push(fd);
	cr_assert_eq(f->config_push->generation, 1);
	tapio__v1__frame__free_unpacked(f, NULL);
	send_applied(fd, 1, h1);

	/* a bad file: SIGHUP (and the file event) refuse it, nothing is pushed */
	write_file(profile_path, PROFILE_BAD);
	kill(ctl.pid, SIGHUP);
	expect_silence(fd, 1000);
	json_t *st = status_json(), *cfg = json_object_get(st, "config");
	json_t *last = json_object_get(cfg, "last_reload");

	cr_assert_str_eq(json_string_value(json_object_get(last, "result")), "failed");
	cr_assert(strstr(json_string_value(json_object_get(last, "message")), "profile.yaml:3:") !=
		      NULL,
		  "message: %s", json_string_value(json_object_get(last, "message")));
	cr_assert_geq(json_integer_value(json_object_get(cfg, "config_reload_failures")), 1);
	cr_assert_eq(json_integer_value(json_object_get(cfg, "generation")), 1);
	cr_assert(json_is_string(json_object_get(last, "at")));
	json_decref(st);
	cr_assert(ctl_log_has(&ctl, "reload refused, keeping generation 1"));

	/* a good change on SIGHUP: generation 2 with the new settings */
	write_file(profile_path, PROFILE_V2);
	kill(ctl.pid, SIGHUP);
	f = expect_push(fd);
	cr_assert_eq(f->config_push->generation, 2);
	cr_assert_str_eq(f->config_push->hash, h2);
	tapio__v1__frame__free_unpacked(f, NULL);
	/* the file event of the same write may trigger one more read: same content, no push */
	expect_silence(fd, 800);
	close(fd);
}

Test(config_push, file_change_by_rename_pushes_and_restart_keeps_generation)
{
	char h2[CONFIG_HASH_LEN];
	Tapio__V1__Frame *f;

	write_file(profile_path, PROFILE_V1);
	ctl_start(&ctl, "--profile", profile_path, NULL);
	expected_hash(PROFILE_V2, "db-9", NULL, h2);
	int fd = agent_hello("a-db", "db-9", NULL);

	f = expect_push(fd);
	cr_assert_eq(f->config_push->generation, 1);
	tapio__v1__frame__free_unpacked(f, NULL);

	/* no signal: the directory watch sees the rename and reloads after the debounce */
	replace_file(profile_path, PROFILE_V2);
	f = expect_push(fd);
	cr_assert_eq(f->config_push->generation, 2);
	cr_assert_str_eq(f->config_push->hash, h2);
	tapio__v1__frame__free_unpacked(f, NULL);
	/* touching it (same content) pushes nothing */
	replace_file(profile_path, PROFILE_V2);
	expect_silence(fd, 800);
	close(fd);

	/* restart with the same profile: the generation is not reset */
	cr_assert_eq(ctl_stop(&ctl, SIGTERM), 0);
	ctl_start(&ctl, "--profile", profile_path, NULL);
	fd = agent_hello("a-db", "db-9", NULL);
	f = expect_push(fd);
	cr_assert_eq(f->config_push->generation, 2, "generation after restart: %llu",
		     (unsigned long long)f->config_push->generation);
	cr_assert_str_eq(f->config_push->hash, h2);
	tapio__v1__frame__free_unpacked(f, NULL);
	close(fd);

	/* restart with other content: one bump */
	write_file(profile_path, PROFILE_V1);
	cr_assert_eq(ctl_stop(&ctl, SIGTERM), 0);
	ctl_start(&ctl, "--profile", profile_path, NULL);
	fd = agent_hello("a-db", "db-9", NULL);
	f = expect_push(fd);
	cr_assert_eq(f->config_push->generation, 3);
	tapio__v1__frame__free_unpacked(f, NULL);
	close(fd);
}

Test(config_push, without_profile_nothing_is_pushed)
{
	ctl_start(&ctl, NULL);
	int fd = agent_hello("a-web", "web-1", NULL);

	expect_silence(fd, 1000);
	/* systemctl reload without a profile: logged, the controller keeps running */
	kill(ctl.pid, SIGHUP);
	usleep(300000);
	cr_assert(ctl_alive(&ctl), "SIGHUP killed a controller without --profile");
	cr_assert(ctl_log_has(&ctl, "no --profile, nothing to reload"));
	json_t *st = status_json(), *cfg = json_object_get(st, "config");

	cr_assert(json_is_false(json_object_get(cfg, "active")));
	cr_assert(json_is_null(json_object_get(cfg, "profile")));
	json_decref(st);
	close(fd);
}

/* Runs the controller binary with args, returns its exit code; stderr into out. */
static int run_ctl(const char *const *args, char *out, size_t len)
{
	char cmd[2048];
	size_t n = (size_t)snprintf(cmd, sizeof(cmd), "%s", CTL_BIN);
	FILE *p;
	size_t got;
	int st;

	for (int i = 0; args[i]; i++)
		n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " '%s'", args[i]);
	snprintf(cmd + n, sizeof(cmd) - n, " 2>&1");
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	got = fread(out, 1, len - 1, p);
	out[got] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(config_push, check_profile_and_bad_profile_at_start)
{
	char out[4096], bad[520], hash[CONFIG_HASH_LEN];
	struct profile *p;
	char err[200];

	write_file(profile_path, PROFILE_V1);
	snprintf(bad, sizeof(bad), "%s/bad.yaml", ctl.dir);
	write_file(bad, PROFILE_BAD);
	cr_assert_eq(profile_load_string("t", PROFILE_V1, strlen(PROFILE_V1), &p, err, sizeof(err)),
		     0);
	snprintf(hash, sizeof(hash), "%s", profile_content_hash(p));
	profile_free(p);

	const char *check_ok[] = {"--check-profile", profile_path, NULL};
	cr_assert_eq(run_ctl(check_ok, out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "name:          itest"), "%s", out);
	cr_assert(strstr(out, "overrides:     2"), "%s", out);
	cr_assert(strstr(out, hash), "%s", out);

	const char *check_bad[] = {"--check-profile", bad, NULL};
	cr_assert_eq(run_ctl(check_bad, out, sizeof(out)), 1, "%s", out);
	cr_assert(strstr(out, "bad.yaml:3:") && strstr(out, "defaults.storage.warning_ms"), "%s",
		  out);

	const char *start_bad[] = {"--data-dir",  ctl.data,    "--http", "off", "--listen",
				   "127.0.0.1:0", "--profile", bad,	 NULL};
	cr_assert_eq(run_ctl(start_bad, out, sizeof(out)), 2, "%s", out);
	cr_assert(strstr(out, "bad.yaml:3:"), "%s", out);
}
