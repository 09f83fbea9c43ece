/*
 * The agent's libuv loop. Ring buffers are polled level-triggered with a bounded budget per
 * callback, so leftovers fire again on the next iteration and one busy source cannot starve
 * the others. Observers emit into on_emit, which encodes JSON once for the JSON sinks (stdout,
 * file) and submits the occurrence struct itself to the controller sink; sinks only copy into
 * bounded buffers, so nothing on this path blocks or waits for the network.
 */
#include "agent/agent.h"

#include <inttypes.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/applied_config.h"
#include "agent/observer/container.h"
#include "agent/observer/network.h"
#include "agent/observer/node.h"
#include "agent/observer/storage.h"
#include "agent/sink/controller.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/occ_json.h"
#include "common/occ_proto.h"
#include "common/settings.h"

#define TAG		     "agent"
#define CONFIG_GENERATION    1	   /* a standalone agent's local config; reloads count on */
#define LOCAL_GENERATION     0	   /* controller mode: the local file, before any push */
#define DRAIN_ROUNDS	     64	   /* at shutdown: up to 64 × budget records per observer */
#define SHUTDOWN_DEADLINE_MS 10000 /* a sink stuck in a write (stalled reader) ends here */

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct agent_poll {
	uv_poll_t handle;
	struct agent *agent;
	enum tapio_observer obs;
	bool active;
};

struct agent {
	uv_loop_t loop;
	bool loop_ready;
	struct agent_config cfg;
	struct clock_map clock;
	struct tapio_config kcfg;
	uint64_t generation;
	struct loader *loader;

	struct network_observer *network;
	struct container_observer *container;
	struct storage_observer *storage;
	struct node_observer *node;
	struct observer_stats stats[TAPIO_OBS__COUNT];
	struct observer_ctx ctx[TAPIO_OBS__COUNT];

	struct agent_poll polls[TAPIO_OBS__COUNT];
	uv_timer_t tick;
	uv_timer_t stats_timer;
	uv_signal_t sigint;
	uv_signal_t sigterm;
	uv_signal_t sighup;
	uv_timer_t deadline;
	unsigned open_handles;

	struct sink *sinks[AGENT_MAX_SINKS];
	struct sink_counters final_sinks[AGENT_MAX_SINKS]; /* kept after a sink is closed */
	struct agent_sink_slot {
		struct agent *agent;
		unsigned index;
	} sink_slots[AGENT_MAX_SINKS];
	const char *sink_names[AGENT_MAX_SINKS];
	bool sink_json[AGENT_MAX_SINKS]; /* takes JSON lines (stdout, file) */
	unsigned n_sinks;
	unsigned open_sinks;
	bool has_json;

	/* controller sink (also in sinks[]); NULL when there is none or once it is closing */
	struct sink *ctl;
	int ctl_index;
	char ctl_host[AGENT_CONTROLLER_LEN];
	char spool_dir[PATH_MAX];
	struct client_stats ctl_final; /* the client's counters when its close began */
	uint64_t ctl_dropped;
	uint64_t ctl_acked;
	char degraded[TAPIO_OBS__COUNT][256];
	bool poll_failed[TAPIO_OBS__COUNT];
	char config_hash[CONFIG_HASH_LEN];
	/* restored from <data-dir>/applied-config at start, not yet confirmed by a push */
	bool stale_config;
	/* persisting controller pushes off the loop: one write in flight, the latest queued */
	struct agent_persist *persist;
	bool persist_again;
	struct tapio_settings persist_settings;
	uint64_t persist_generation;
	char persist_hash[CONFIG_HASH_LEN];

	uint64_t encode_errors;
	uint64_t occurrences;
	uint64_t ticks;
	uint64_t last_clock_sync_ns;
	bool psi_missing_logged;
	bool stopping;
	char line[TAPIO_OCC_JSON_MAX];
};

/* ---- emission ---- */

static void on_emit(void *emit_ctx, const struct tapio_occurrence *occ)
{
	struct agent *a = emit_ctx;
	bool handed = false;

	/* The controller gets the struct itself (protobuf in the client); JSON only for the JSON
	 * sinks. Both only copy: the network is never waited for here. */
	if (a->ctl) {
		sink_controller_submit(a->ctl, occ);
		handed = true;
	}
	if (a->has_json) {
		ssize_t n = occ_json_write(occ, a->line, sizeof(a->line));

		if (n < 0) {
			a->encode_errors++;
			LOG_RATELIMITED(LOG_ERROR, TAG, "occ_json_write(%s): %s",
					tapio_occ_type_name(occ->type), strerror((int)-n));
		} else {
			for (unsigned i = 0; i < a->n_sinks; i++)
				if (a->sinks[i] && a->sink_json[i])
					sink_write(a->sinks[i], a->line, (size_t)n);
			handed = true;
		}
	}
	if (handed)
		a->occurrences++;
}

static void on_record(void *ctx, enum tapio_observer obs, const void *data, size_t len)
{
	struct agent *a = ctx;

	switch (obs) {
	case TAPIO_OBS_NETWORK:
		network_observer_handle(a->network, data, len);
		break;
	case TAPIO_OBS_CONTAINER:
		container_observer_handle(a->container, data, len);
		break;
	case TAPIO_OBS_STORAGE:
		storage_observer_handle(a->storage, data, len);
		break;
	case TAPIO_OBS_NODE:
		node_observer_handle(a->node, data, len);
		break;
	default:
		break;
	}
}

/* ---- polling ---- */

static void on_ring_readable(uv_poll_t *h, int status, int events)
{
	struct agent_poll *p = container_of(h, struct agent_poll, handle);
	int rc;

	if (status < 0) {
		LOG_RATELIMITED(LOG_ERROR, TAG, "poll %s ring: %s", tapio_observer_name(p->obs),
				uv_strerror(status));
		return;
	}
	rc = loader_consume(p->agent->loader, p->obs, AGENT_CONSUME_BUDGET);
	if (rc < 0)
		LOG_RATELIMITED(LOG_ERROR, TAG, "loader_consume(%s): %s",
				tapio_observer_name(p->obs), strerror(-rc));
}

static void drain_rings(struct agent *a)
{
	for (int obs = 0; obs < TAPIO_OBS__COUNT; obs++) {
		if (!a->polls[obs].active)
			continue;
		for (int round = 0; round < DRAIN_ROUNDS; round++) {
			int rc = loader_consume(a->loader, (enum tapio_observer)obs,
						AGENT_CONSUME_BUDGET);
			if (rc < AGENT_CONSUME_BUDGET)
				break;
		}
	}
}

/* ---- timers ---- */

static void feed_psi(struct agent *a, uint64_t now)
{
	char buf[512];
	ssize_t n;
	int fd = open(AGENT_PSI_PATH, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		if (!a->psi_missing_logged)
			log_warn(
			    TAG,
			    "%s: %s; memory_pressure is not observed (kernel without PSI or psi=0)",
			    AGENT_PSI_PATH, strerror(errno));
		a->psi_missing_logged = true;
		return;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	node_observer_psi(a->node, buf, (size_t)n, now);
}

static void on_tick(uv_timer_t *t)
{
	struct agent *a = container_of(t, struct agent, tick);
	uint64_t now = clock_mono_ns();

	a->ticks++;
	/* BPF programs wake the loop only once a batch of records is waiting (see
	 * ebpf/common.bpf.h tapio_submit); a trickle is picked up here, at most one tick late. */
	for (int obs = 0; obs < TAPIO_OBS__COUNT; obs++)
		if (a->polls[obs].active)
			loader_consume(a->loader, (enum tapio_observer)obs, AGENT_CONSUME_BUDGET);
	network_observer_tick(a->network, now);
	container_observer_tick(a->container, now);
	storage_observer_tick(a->storage, now);
	node_observer_tick(a->node, now);
	if (a->cfg.settings.node_enabled && a->ticks % AGENT_PSI_EVERY_TICKS == 0 &&
	    !a->psi_missing_logged)
		feed_psi(a, now);
	if (now - a->last_clock_sync_ns >= AGENT_CLOCK_RESYNC_MS * 1000000ull) {
		int rc = clock_map_sync(&a->clock);
		if (rc < 0)
			LOG_RATELIMITED(LOG_WARN, TAG, "clock_map_sync: %s", strerror(-rc));
		a->last_clock_sync_ns = now;
	}
}

void agent_counters_snapshot(struct agent *a, struct agent_counters *out)
{
	memset(out, 0, sizeof(*out));
	for (int obs = 0; obs < TAPIO_OBS__COUNT; obs++) {
		const struct observer_stats *s = &a->stats[obs];
		out->events[obs] = s->records;
		out->malformed += s->malformed;
		out->correlation_drops += s->correlation_drops;
		out->suppressed += s->suppressed;
		for (int t = 0; t < TAPIO_OCC__COUNT; t++)
			out->anomalies[t] += s->anomalies[t];
		if (a->loader && loader_ring_fd(a->loader, (enum tapio_observer)obs) >= 0)
			loader_kcounters(a->loader, (enum tapio_observer)obs, out->kernel[obs]);
	}
	out->encode_errors = a->encode_errors;
	out->occurrences = a->occurrences;
	out->n_sinks = a->n_sinks;
	for (unsigned i = 0; i < a->n_sinks; i++) {
		out->sink_names[i] = a->sink_names[i];
		out->sinks[i] = a->sinks[i] ? a->sinks[i]->counters : a->final_sinks[i];
	}
	out->has_controller = a->ctl_index >= 0;
	if (a->ctl)
		client_counters(sink_controller_client(a->ctl), &out->controller);
	else
		out->controller = a->ctl_final;
	out->controller_dropped = a->ctl_dropped;
	out->controller_acked = a->ctl_acked;
	out->config_generation = a->generation;
	snprintf(out->config_hash, sizeof(out->config_hash), "%s", a->config_hash);
}

static void log_stats(struct agent *a, const char *what)
{
	struct agent_counters c;
	char buf[1536];
	size_t n = 0;
	uint64_t k[TAPIO_KC__COUNT] = {0};

#define PUT(...)                                                                      \
	do {                                                                          \
		if (n < sizeof(buf))                                                  \
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, __VA_ARGS__); \
	} while (0)

	agent_counters_snapshot(a, &c);
	PUT("%s: events", what);
	for (int obs = 0; obs < TAPIO_OBS__COUNT; obs++) {
		PUT(" %s=%llu", tapio_observer_name((enum tapio_observer)obs),
		    (unsigned long long)c.events[obs]);
		for (int i = 0; i < TAPIO_KC__COUNT; i++)
			k[i] += c.kernel[obs][i];
	}
	PUT("; anomalies");
	for (int t = 0; t < TAPIO_OCC__COUNT; t++) {
		const char *name = tapio_occ_type_name((enum tapio_occ_type)t);
		const char *dot = strrchr(name, '.');
		if (c.anomalies[t])
			PUT(" %s=%llu", dot ? dot + 1 : name, (unsigned long long)c.anomalies[t]);
	}
	PUT(" total=%llu", (unsigned long long)c.occurrences);
	PUT("; kernel lost=%llu map_full=%llu correlation_miss=%llu",
	    (unsigned long long)k[TAPIO_KC_RINGBUF_LOST], (unsigned long long)k[TAPIO_KC_MAP_FULL],
	    (unsigned long long)k[TAPIO_KC_CORRELATION_MISS]);
	PUT("; malformed=%llu correlation_drops=%llu suppressed=%llu",
	    (unsigned long long)c.malformed, (unsigned long long)c.correlation_drops,
	    (unsigned long long)c.suppressed);
	if (c.encode_errors)
		PUT(" encode_errors=%llu", (unsigned long long)c.encode_errors);
	for (unsigned i = 0; i < c.n_sinks; i++)
		PUT("; sink %s writes=%llu drops=%llu bytes=%llu", c.sink_names[i],
		    (unsigned long long)c.sinks[i].writes, (unsigned long long)c.sinks[i].drops,
		    (unsigned long long)c.sinks[i].bytes);
	if (c.has_controller)
		PUT("; controller connected=%s acked=%llu dropped=%llu queue_depth=%llu "
		    "spool_bytes=%llu send_failures=%llu reconnects=%llu",
		    c.controller.connected ? "yes" : "no", (unsigned long long)c.controller_acked,
		    (unsigned long long)c.controller_dropped,
		    (unsigned long long)c.controller.queue_depth,
		    (unsigned long long)c.controller.spool_bytes,
		    (unsigned long long)c.controller.send_failures,
		    (unsigned long long)c.controller.reconnects);
#undef PUT
	log_info(TAG, "%s", buf);
}

static void on_stats(uv_timer_t *t)
{
	log_stats(container_of(t, struct agent, stats_timer), "stats");
}

/* ---- shutdown ---- */

static void on_handle_closed(uv_handle_t *h)
{
	struct agent *a = h->data;

	a->open_handles--;
}

static void close_handle(struct agent *a, uv_handle_t *h)
{
	if (h->loop && !uv_is_closing(h)) {
		h->data = a;
		uv_close(h, on_handle_closed);
	}
}

static void on_sink_closed(void *arg, const struct sink_counters *final)
{
	struct agent_sink_slot *slot = arg;
	struct agent *a = slot->agent;

	a->final_sinks[slot->index] = *final;
	if ((int)slot->index == a->ctl_index)
		log_info(TAG,
			 "sink controller closed: submitted=%llu acked=%llu dropped=%llu "
			 "(unacknowledged batches stay in %s)",
			 (unsigned long long) final->writes, (unsigned long long)a->ctl_acked,
			 (unsigned long long)a->ctl_dropped, a->spool_dir);
	else
		log_info(TAG, "sink %s closed: writes=%llu drops=%llu bytes=%llu",
			 a->sink_names[slot->index], (unsigned long long) final->writes,
			 (unsigned long long) final->drops, (unsigned long long) final->bytes);
	a->open_sinks--;
	if (a->open_sinks == 0) {
		log_info(TAG, "sinks flushed and closed");
		close_handle(a, (uv_handle_t *)&a->deadline);
	}
}

static void on_deadline(uv_timer_t *t)
{
	struct agent *a = container_of(t, struct agent, deadline);

	log_error(
	    TAG,
	    "shutdown: %u sink(s) still writing after %d ms (stalled stdout reader or disk?); "
	    "exiting with unwritten lines",
	    a->open_sinks, SHUTDOWN_DEADLINE_MS);
	_exit(1);
}

void agent_stop(struct agent *a)
{
	if (a->stopping)
		return;
	a->stopping = true;
	log_info(TAG, "shutting down: draining ring buffers, flushing observers and sinks");
	for (int obs = 0; obs < TAPIO_OBS__COUNT; obs++)
		if (a->polls[obs].active)
			uv_poll_stop(&a->polls[obs].handle);
	uv_timer_stop(&a->tick);
	uv_timer_stop(&a->stats_timer);
	drain_rings(a);
	network_observer_flush(a->network);
	container_observer_flush(a->container);
	storage_observer_flush(a->storage);
	node_observer_flush(a->node);
	log_stats(a, "final");

	if (a->n_sinks && uv_timer_init(&a->loop, &a->deadline) == 0) {
		a->open_handles++;
		uv_timer_start(&a->deadline, on_deadline, SHUTDOWN_DEADLINE_MS, 0);
		uv_unref((uv_handle_t *)&a->deadline); /* pending writes keep the loop alive */
	}
	if (a->ctl) {
		client_counters(sink_controller_client(a->ctl), &a->ctl_final);
		a->ctl = NULL;
	}
	for (unsigned i = 0; i < a->n_sinks; i++) {
		struct sink *s = a->sinks[i];
		a->final_sinks[i] = s->counters; /* updated again by on_sink_closed */
		a->sinks[i] = NULL;
		a->sink_slots[i].agent = a;
		a->sink_slots[i].index = i;
		sink_close(s, on_sink_closed, &a->sink_slots[i]);
	}
	for (int obs = 0; obs < TAPIO_OBS__COUNT; obs++)
		if (a->polls[obs].active)
			close_handle(a, (uv_handle_t *)&a->polls[obs].handle);
	close_handle(a, (uv_handle_t *)&a->tick);
	close_handle(a, (uv_handle_t *)&a->stats_timer);
	close_handle(a, (uv_handle_t *)&a->sigint);
	close_handle(a, (uv_handle_t *)&a->sigterm);
	close_handle(a, (uv_handle_t *)&a->sighup);
}

static void reload(struct agent *a);

static void on_signal(uv_signal_t *h, int signum)
{
	struct agent *a = h->data;

	if (signum == SIGHUP) {
		log_info(TAG, "received SIGHUP: reloading %s",
			 a->cfg.config_file[0] ? a->cfg.config_file
					       : "(no config file; flags only)");
		reload(a);
		return;
	}
	log_info(TAG, "received %s", signum == SIGINT ? "SIGINT" : "SIGTERM");
	agent_stop(a);
}

/* ---- applying settings (SIGHUP reload, controller ConfigPush) ---- */

int agent_apply_settings(struct agent *a, const struct tapio_settings *s, uint64_t generation,
			 const char *hash, char *err, size_t errlen)
{
	char computed[CONFIG_HASH_LEN];
	int rc;

	if (!hash || !*hash) {
		rc = config_hash_settings(s, computed);
		if (rc < 0) {
			snprintf(err, errlen, "hashing the settings: %s", strerror(-rc));
			return rc;
		}
		hash = computed;
	}
	settings_compile(s, generation, &a->kcfg);
	rc = a->loader ? loader_apply_config(a->loader, &a->kcfg) : 0;
	if (rc < 0) {
		snprintf(err, errlen, "writing the kernel config carriers: %s", strerror(-rc));
		settings_compile(&a->cfg.settings, a->generation, &a->kcfg);
		if (a->loader)
			loader_apply_config(a->loader, &a->kcfg);
		return rc;
	}
	if (s->pmc_interval_ms != a->cfg.settings.pmc_interval_ms)
		log_warn(TAG, "node.pmc_interval_ms %u takes effect at restart (running with %u)",
			 s->pmc_interval_ms, a->cfg.settings.pmc_interval_ms);
	a->generation = generation;
	a->cfg.settings = *s;
	snprintf(a->config_hash, sizeof(a->config_hash), "%s", hash);
	network_observer_set_settings(a->network, &a->cfg.settings);
	container_observer_set_settings(a->container, &a->cfg.settings);
	storage_observer_set_settings(a->storage, &a->cfg.settings);
	node_observer_set_settings(a->node, &a->cfg.settings);
	node_observer_set_generation(a->node, a->generation);
	if (a->ctl)
		client_set_config(sink_controller_client(a->ctl), a->generation, a->config_hash);
	return 0;
}

/* ---- persisting the applied config (<data-dir>/applied-config) ---- */

struct agent_persist {
	uv_work_t req;
	struct agent *agent;
	struct tapio_settings settings;
	uint64_t generation;
	char hash[CONFIG_HASH_LEN];
	int rc;
};

static void on_persist_work(uv_work_t *w)
{
	struct agent_persist *p = container_of(w, struct agent_persist, req);

	p->rc = applied_config_save(p->agent->cfg.data_dir, &p->settings, p->generation, p->hash);
}

static void persist_start(struct agent *a);

static void on_persist_done(uv_work_t *w, int status)
{
	struct agent_persist *p = container_of(w, struct agent_persist, req);
	struct agent *a = p->agent;

	if (status < 0 || p->rc < 0)
		log_error(TAG, "saving %s/" APPLIED_CONFIG_FILE " (generation %" PRIu64 "): %s",
			  a->cfg.data_dir, p->generation,
			  status < 0 ? uv_strerror(status) : strerror(-p->rc));
	else
		log_debug(TAG, "saved config generation %" PRIu64 " to %s/" APPLIED_CONFIG_FILE,
			  p->generation, a->cfg.data_dir);
	a->persist = NULL;
	free(p);
	if (a->persist_again) {
		a->persist_again = false;
		persist_start(a);
	}
}

static void persist_start(struct agent *a)
{
	struct agent_persist *p;
	int rc;

	if (a->persist) {
		a->persist_again = true; /* written after the one in flight, so the latest wins */
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		log_error(TAG, "saving the applied config: out of memory");
		return;
	}
	p->agent = a;
	p->settings = a->persist_settings;
	p->generation = a->persist_generation;
	memcpy(p->hash, a->persist_hash, sizeof(p->hash));
	rc = uv_queue_work(&a->loop, &p->req, on_persist_work, on_persist_done);
	if (rc < 0) {
		log_error(TAG, "saving the applied config: uv_queue_work: %s", uv_strerror(rc));
		free(p);
		return;
	}
	a->persist = p;
}

/* Queues the config now in effect for <data-dir>/applied-config. */
static void persist_applied(struct agent *a)
{
	a->persist_settings = a->cfg.settings;
	a->persist_generation = a->generation;
	memcpy(a->persist_hash, a->config_hash, sizeof(a->persist_hash));
	persist_start(a);
}

/*
 * Controller mode only: the config last pushed by a controller, if one was saved, replaces
 * the local file's settings before anything is compiled, and stays flagged stale_config in
 * heartbeats until the controller pushes again.
 */
static void restore_applied(struct agent *a)
{
	struct tapio_settings s;
	uint64_t gen;
	char hash[CONFIG_HASH_LEN];
	int rc = applied_config_load(a->cfg.data_dir, &s, &gen, hash);

	if (rc == -ENOENT)
		return;
	if (rc < 0) {
		log_warn(TAG, "ignoring %s/" APPLIED_CONFIG_FILE ": %s; using the local config",
			 a->cfg.data_dir, rc == -EINVAL ? "malformed" : strerror(-rc));
		return;
	}
	a->cfg.settings = s;
	a->generation = gen;
	memcpy(a->config_hash, hash, sizeof(a->config_hash));
	a->stale_config = true;
	log_info(TAG,
		 "restored config generation %" PRIu64 " (%s) from %s/" APPLIED_CONFIG_FILE
		 "; reported as stale_config until the controller pushes",
		 gen, hash, a->cfg.data_dir);
}

/* ---- controller client callbacks ---- */

/*
 * ConfigPush: the settings are the source of truth (the compiled bytes are checked for shape
 * only; the agent compiles its own so an agent and a controller of different builds agree on
 * meaning, not on bytes). The hash must be the settings' content hash.
 */
static int on_config_push(void *arg, const Tapio__V1__ConfigPush *p, char *reason, size_t len)
{
	struct agent *a = arg;
	struct tapio_settings s;
	struct tapio_config kc;
	char hash[CONFIG_HASH_LEN];
	int rc;

	if (a->stopping) {
		snprintf(reason, len, "agent is shutting down");
		return -ESHUTDOWN;
	}
	if (a->stale_config) {
		log_info(TAG,
			 "controller push received: config restored at start is no longer stale");
		a->stale_config = false;
	}
	if (p->generation == 0) {
		snprintf(reason, len, "generation 0 is not a config generation");
		return -EINVAL;
	}
	if (!p->settings) {
		snprintf(reason, len, "config push without settings");
		return -EINVAL;
	}
	if (p->config.len && config_from_proto(p, &kc, reason, len) < 0)
		return -EINVAL;
	if (settings_from_proto(p->settings, &s, reason, len) < 0 ||
	    settings_validate(&s, reason, len) < 0)
		return -EINVAL;
	rc = config_hash_settings(&s, hash);
	if (rc < 0) {
		snprintf(reason, len, "hashing the settings: %s", strerror(-rc));
		return rc;
	}
	if (p->hash && p->hash[0] && strcmp(p->hash, hash) != 0) {
		snprintf(reason, len, "hash %s does not match the pushed settings (%s)", p->hash,
			 hash);
		return -EINVAL;
	}
	if (p->generation == a->generation && strcmp(hash, a->config_hash) == 0) {
		log_debug(TAG, "controller: config generation %llu (%s) already applied",
			  (unsigned long long)p->generation, hash);
		return 0;
	}
	rc = agent_apply_settings(a, &s, p->generation, hash, reason, len);
	if (rc < 0)
		return rc;
	persist_applied(a);
	log_info(TAG, "controller: applied config generation %llu (%s)",
		 (unsigned long long)p->generation, hash);
	return 0;
}

static void on_ctl_dropped(void *arg, uint64_t seq, uint32_t count)
{
	struct agent *a = arg;

	(void)seq;
	a->ctl_dropped += count;
}

static void on_ctl_acked(void *arg, uint64_t seq, uint32_t count)
{
	struct agent *a = arg;

	(void)seq;
	a->ctl_acked += count;
}

static bool observer_enabled(const struct agent *a, enum tapio_observer obs);

/* The state an operator sees: the loader's, "disabled" by config, "failed" if unpollable. */
static enum observer_state effective_state(const struct agent *a, enum tapio_observer obs,
					   const char **reason)
{
	const struct loader_status *st = a->loader ? loader_get_status(a->loader, obs) : NULL;

	*reason = st ? st->reason : "not loaded";
	if (!st)
		return OBSERVER_FAILED;
	if (a->poll_failed[obs]) {
		*reason = "polling the ring buffer failed";
		return OBSERVER_FAILED;
	}
	if (!observer_enabled(a, obs) &&
	    (st->state == OBSERVER_RUNNING || st->state == OBSERVER_DEGRADED))
		return OBSERVER_DISABLED;
	return st->state;
}

static Tapio__V1__ObserverStatus wire_state(enum observer_state s)
{
	switch (s) {
	case OBSERVER_RUNNING:
		return TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_RUNNING;
	case OBSERVER_DEGRADED:
		return TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_DEGRADED;
	case OBSERVER_DISABLED:
		return TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_DISABLED;
	case OBSERVER_UNSUPPORTED:
		return TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_UNSUPPORTED;
	case OBSERVER_FAILED:
		return TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_FAILED;
	}
	return TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_UNSPECIFIED;
}

/*
 * Heartbeat counters. The wire Counters message has one kernel "lost" and one
 * "correlation_drops": kernel map_full (a kernel correlation table was full) is added to the
 * userspace correlation drops; correlation_miss (an end without a start) is not a loss and
 * stays in the stats line only.
 */
static void on_heartbeat(void *arg, struct client_heartbeat *hb)
{
	struct agent *a = arg;
	struct agent_counters c;
	size_t nd = 0;

	agent_counters_snapshot(a, &c);
	for (int obs = 0; obs < TAPIO_OBS__COUNT; obs++) {
		enum tapio_observer o = (enum tapio_observer)obs;
		const char *reason;
		enum observer_state st = effective_state(a, o, &reason);

		hb->events += c.events[obs];
		hb->lost += c.kernel[obs][TAPIO_KC_RINGBUF_LOST];
		hb->correlation_drops += c.kernel[obs][TAPIO_KC_MAP_FULL];
		hb->observers[obs].name = tapio_observer_name(o);
		hb->observers[obs].state = wire_state(st);
		hb->observers[obs].reason = reason;
		if ((st == OBSERVER_DEGRADED || st == OBSERVER_FAILED ||
		     st == OBSERVER_UNSUPPORTED) &&
		    nd < CLIENT_MAX_DEGRADED) {
			snprintf(a->degraded[obs], sizeof(a->degraded[obs]), "observer %s %s: %s",
				 tapio_observer_name(o), observer_state_name(st), reason);
			hb->degraded[nd++] = a->degraded[obs];
		}
	}
	if (a->stale_config && nd < CLIENT_MAX_DEGRADED)
		hb->degraded[nd++] = "stale_config";
	for (int t = 0; t < TAPIO_OCC__COUNT; t++)
		hb->anomalies[t] = c.anomalies[t];
	hb->malformed = c.malformed;
	hb->correlation_drops += c.correlation_drops;
	for (unsigned i = 0; i < c.n_sinks; i++) {
		hb->sink_writes += c.sinks[i].writes;
		hb->sink_drops += c.sinks[i].drops;
	}
}

/* ---- reload ---- */

/*
 * SIGHUP: re-reads the config file with the original flags on top. Observer settings take
 * effect at once under the next config generation (carriers rewritten, no reload or
 * re-attach); in controller mode they apply only before the first push (as generation 0),
 * afterwards the controller's generation stays. Log level and stats interval always. Identity, sinks and file bounds need a
 * restart. A bad file is refused and the running config stays.
 */
static void reload(struct agent *a)
{
	struct agent_config *nc = malloc(sizeof(*nc));
	char err[512];
	int rc;

	if (!nc) {
		log_error(TAG, "reload: out of memory");
		return;
	}
	rc = agent_config_parse(a->cfg.argc, a->cfg.argv, nc, stderr, err, sizeof(err));
	if (rc != AGENT_CONFIG_RUN) {
		log_error(TAG, "reload refused: %s; keeping config generation %llu", err,
			  (unsigned long long)a->generation);
		goto out;
	}
	if (nc->sinks != a->cfg.sinks || strcmp(nc->data_dir, a->cfg.data_dir) != 0 ||
	    strcmp(nc->node_name, a->cfg.node_name) != 0 ||
	    strcmp(nc->cluster, a->cfg.cluster) != 0 ||
	    nc->file_max_bytes != a->cfg.file_max_bytes ||
	    nc->file_max_files != a->cfg.file_max_files ||
	    strcmp(nc->controller, a->cfg.controller) != 0 ||
	    strcmp(nc->spool_dir, a->cfg.spool_dir) != 0 ||
	    nc->heartbeat_interval_s != a->cfg.heartbeat_interval_s ||
	    nc->spool_max_bytes != a->cfg.spool_max_bytes ||
	    nc->queue_max_bytes != a->cfg.queue_max_bytes || strcmp(nc->tls_ca, a->cfg.tls_ca) ||
	    strcmp(nc->tls_cert, a->cfg.tls_cert) || strcmp(nc->tls_key, a->cfg.tls_key) ||
	    strcmp(nc->tls_server_name, a->cfg.tls_server_name) || strcmp(nc->token, a->cfg.token))
		log_warn(TAG,
			 "reload: sinks, data_dir, node_name, cluster, file bounds and controller "
			 "settings change only at restart");
	if (nc->log_level != a->cfg.log_level) {
		log_set_level((enum log_level)nc->log_level);
		a->cfg.log_level = nc->log_level;
	}
	if (nc->stats_interval_s != a->cfg.stats_interval_s) {
		a->cfg.stats_interval_s = nc->stats_interval_s;
		uv_timer_stop(&a->stats_timer);
		if (nc->stats_interval_s)
			uv_timer_start(&a->stats_timer, on_stats, nc->stats_interval_s * 1000ull,
				       nc->stats_interval_s * 1000ull);
	}
	if (a->ctl && a->generation != LOCAL_GENERATION) {
		/* generations are the controller's: a local change under its number would make
		 * one generation name two configs, and under a new number could collide with
		 * the controller's next one */
		log_info(TAG,
			 "reload: observer settings follow the controller (config generation "
			 "%llu); the file's observer settings are not applied while it manages "
			 "this agent",
			 (unsigned long long)a->generation);
		goto out;
	}
	if (memcmp(&nc->settings, &a->cfg.settings, sizeof(nc->settings)) == 0) {
		log_info(TAG, "reload: observer settings unchanged (config generation %llu)",
			 (unsigned long long)a->generation);
		goto out;
	}
	/* controller mode before any push: still the local config, still generation 0 */
	if (agent_apply_settings(a, &nc->settings, a->ctl ? LOCAL_GENERATION : a->generation + 1,
				 NULL, err, sizeof(err)) < 0)
		log_error(TAG, "reload: %s; keeping generation %llu", err,
			  (unsigned long long)a->generation);
	else
		log_info(TAG, "reload: applied config generation %llu",
			 (unsigned long long)a->generation);
out:
	free(nc);
}

/* ---- setup ---- */

static int add_sink(struct agent *a, struct sink *s, const char *name, bool json)
{
	a->sinks[a->n_sinks] = s;
	a->sink_names[a->n_sinks] = name;
	a->sink_json[a->n_sinks] = json;
	a->has_json |= json;
	a->n_sinks++;
	a->open_sinks++;
	return 0;
}

static void release(struct agent *a)
{
	bool closed = false;

	a->ctl = NULL;
	for (unsigned i = 0; i < a->n_sinks; i++) {
		if (a->sinks[i]) {
			sink_close(a->sinks[i], NULL, NULL); /* nothing written yet */
			a->sinks[i] = NULL;
			closed = true;
		}
	}
	a->n_sinks = 0;
	/* The controller client closes its handles asynchronously: let the loop finish that. */
	if (closed && a->loop_ready)
		uv_run(&a->loop, UV_RUN_DEFAULT);
	loader_free(a->loader);
	a->loader = NULL;
	network_observer_free(a->network);
	container_observer_free(a->container);
	storage_observer_free(a->storage);
	node_observer_free(a->node);
	a->network = NULL;
	a->container = NULL;
	a->storage = NULL;
	a->node = NULL;
}

struct agent *agent_new(const struct agent_config *cfg, char *err, size_t errlen)
{
	struct agent *a = calloc(1, sizeof(*a));
	int rc, kerr = 0;
	char lerr[256] = "";

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->cfg = *cfg;
	rc = uv_loop_init(&a->loop);
	if (rc < 0) {
		snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
		free(a);
		return NULL;
	}
	a->loop_ready = true;
	rc = clock_map_sync(&a->clock);
	if (rc < 0) {
		snprintf(err, errlen, "clock_map_sync: %s", strerror(-rc));
		goto fail;
	}
	a->last_clock_sync_ns = clock_mono_ns();
	/* in controller mode every generation number is the controller's (ConfigPush); the
	 * local file runs as generation 0 until the first push or a restored applied-config */
	a->generation =
	    (a->cfg.sinks & AGENT_SINK_CONTROLLER) ? LOCAL_GENERATION : CONFIG_GENERATION;
	a->ctl_index = -1;
	rc = config_hash_settings(&a->cfg.settings, a->config_hash);
	if (rc < 0) {
		snprintf(err, errlen, "hashing the settings: %s", strerror(-rc));
		goto fail;
	}
	if (a->cfg.sinks & AGENT_SINK_CONTROLLER)
		restore_applied(a);
	settings_compile(&a->cfg.settings, a->generation, &a->kcfg);

	for (int obs = 0; obs < TAPIO_OBS__COUNT; obs++) {
		a->ctx[obs].node = a->cfg.node_name;
		a->ctx[obs].cluster = a->cfg.cluster;
		a->ctx[obs].clock = &a->clock;
		a->ctx[obs].emit = on_emit;
		a->ctx[obs].emit_ctx = a;
		a->ctx[obs].stats = &a->stats[obs];
	}
	a->network = network_observer_new(&a->cfg.settings, &a->ctx[TAPIO_OBS_NETWORK]);
	a->container = container_observer_new(&a->cfg.settings, &a->ctx[TAPIO_OBS_CONTAINER]);
	a->storage = storage_observer_new(&a->cfg.settings, &a->ctx[TAPIO_OBS_STORAGE]);
	a->node = node_observer_new(&a->cfg.settings, &a->ctx[TAPIO_OBS_NODE]);
	if (!a->network || !a->container || !a->storage || !a->node) {
		snprintf(err, errlen, "creating observers: out of memory");
		goto fail;
	}
	node_observer_set_generation(a->node, a->generation);

	/* Sinks before BPF: a bad data dir fails fast without touching the kernel. */
	if (a->cfg.sinks & AGENT_SINK_STDOUT) {
		struct sink *s = sink_stdout_new(&a->loop, STDOUT_FILENO, SINK_STDOUT_QUEUE_BYTES);
		if (!s) {
			snprintf(err, errlen, "stdout sink: out of memory");
			goto fail;
		}
		add_sink(a, s, "stdout", true);
	}
	if (a->cfg.sinks & AGENT_SINK_FILE) {
		struct sink_file_options fo = {
		    .dir = a->cfg.data_dir,
		    .max_bytes = a->cfg.file_max_bytes,
		    .max_files = a->cfg.file_max_files,
		};
		struct sink *s = sink_file_new(&a->loop, &fo, err, errlen);
		if (!s)
			goto fail;
		add_sink(a, s, "file", true);
	}
	if (a->cfg.sinks & AGENT_SINK_CONTROLLER) {
		struct client_options co = {
		    .agent_id = a->cfg.agent_id,
		    .node = a->cfg.node_name,
		    .cluster = a->cfg.cluster,
		    .capabilities = {"observer.network", "observer.container", "observer.storage",
				     "observer.node", "config.push"},
		    .heartbeat_interval_ms = a->cfg.heartbeat_interval_s * 1000u,
		    .queue_max_bytes = a->cfg.queue_max_bytes,
		    .spool_dir =
			agent_config_spool_dir(&a->cfg, a->spool_dir, sizeof(a->spool_dir)),
		    .spool_max_bytes = a->cfg.spool_max_bytes,
		    .spool_fsync = true,
		    .token = a->cfg.token,
		    .tls_ca = a->cfg.tls_ca,
		    .tls_cert = a->cfg.tls_cert,
		    .tls_key = a->cfg.tls_key,
		    .tls_server_name = a->cfg.tls_server_name,
		    .counters = on_heartbeat,
		    .on_config = on_config_push,
		    .on_acked = on_ctl_acked,
		    .on_dropped = on_ctl_dropped,
		    .arg = a,
		};
		struct sink *s;

		if (client_parse_endpoint(a->cfg.controller, a->ctl_host, sizeof(a->ctl_host),
					  &co.port) < 0) {
			snprintf(err, errlen, "invalid controller address '%s'", a->cfg.controller);
			goto fail;
		}
		/* the default spool lives in the data dir: create it (one level) like the file
		 * sink does; the client creates the spool dir itself */
		if (!a->cfg.spool_dir[0] && mkdir(a->cfg.data_dir, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "controller sink: mkdir %s: %s", a->cfg.data_dir,
				 strerror(errno));
			goto fail;
		}
		co.host = a->ctl_host;
		s = sink_controller_new(&a->loop, &co, err, errlen);
		if (!s)
			goto fail;
		a->ctl = s;
		a->ctl_index = (int)a->n_sinks;
		add_sink(a, s, "controller", false);
		client_set_config(sink_controller_client(s), a->generation, a->config_hash);
	}

	a->loader = loader_new(&a->kcfg, a->cfg.settings.pmc_interval_ms, on_record, a, &kerr, lerr,
			       sizeof(lerr));
	if (!a->loader) {
		const char *hint =
		    (kerr == -EPERM || kerr == -EACCES)
			? " (run as root or grant CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)"
			: "";
		snprintf(err, errlen, "cannot load BPF programs: %s%s",
			 lerr[0] ? lerr : strerror(kerr < 0 ? -kerr : EINVAL), hint);
		goto fail;
	}
	return a;
fail:
	release(a);
	uv_loop_close(&a->loop);
	free(a);
	return NULL;
}

static bool observer_enabled(const struct agent *a, enum tapio_observer obs)
{
	switch (obs) {
	case TAPIO_OBS_NETWORK:
		return a->cfg.settings.network_enabled;
	case TAPIO_OBS_CONTAINER:
		return a->cfg.settings.container_enabled;
	case TAPIO_OBS_STORAGE:
		return a->cfg.settings.storage_enabled;
	case TAPIO_OBS_NODE:
		return a->cfg.settings.node_enabled;
	default:
		return false;
	}
}

int agent_run(struct agent *a)
{
	char ready[256];
	size_t n = 0;
	int rc;

	log_info(TAG,
		 "tapio-agent %s node=%s cluster=%s agent_id=%s config_generation=%" PRIu64 "%s%s",
		 TAPIO_VERSION, a->cfg.node_name, a->cfg.cluster[0] ? a->cfg.cluster : "-",
		 a->cfg.agent_id, a->generation, a->cfg.config_file[0] ? " config=" : "",
		 a->cfg.config_file);
	if (a->ctl_index >= 0)
		log_info(TAG,
			 "controller sink: %s, heartbeat %us, spool %s (max %llu bytes, fsync), "
			 "memory queue max %llu bytes",
			 a->cfg.controller, a->cfg.heartbeat_interval_s, a->spool_dir,
			 (unsigned long long)a->cfg.spool_max_bytes,
			 (unsigned long long)a->cfg.queue_max_bytes);
	n += (size_t)snprintf(ready, sizeof(ready), "tapio-agent ready:");
	for (int obs = 0; obs < TAPIO_OBS__COUNT; obs++) {
		const struct loader_status *st =
		    loader_get_status(a->loader, (enum tapio_observer)obs);
		const char *name = tapio_observer_name((enum tapio_observer)obs);
		int fd = loader_ring_fd(a->loader, (enum tapio_observer)obs);
		const char *reason;
		const char *state =
		    observer_state_name(effective_state(a, (enum tapio_observer)obs, &reason));

		if (st && st->reason[0])
			log_info(TAG, "observer %s: %s: %s (%u/%u programs attached)", name, state,
				 st->reason, st->programs_attached, st->programs_total);
		else if (st)
			log_info(TAG, "observer %s: %s (%u/%u programs attached)", name, state,
				 st->programs_attached, st->programs_total);
		if (fd >= 0) {
			struct agent_poll *p = &a->polls[obs];
			p->agent = a;
			p->obs = (enum tapio_observer)obs;
			rc = uv_poll_init(&a->loop, &p->handle, fd);
			if (rc == 0) {
				a->open_handles++;
				rc = uv_poll_start(&p->handle, UV_READABLE, on_ring_readable);
			}
			if (rc < 0) {
				log_error(TAG, "observer %s: polling ring fd %d: %s", name, fd,
					  uv_strerror(rc));
				close_handle(a, (uv_handle_t *)&p->handle);
				a->poll_failed[obs] = true;
				state = "failed";
			} else {
				p->active = true;
			}
		}
		n += (size_t)snprintf(ready + n, sizeof(ready) - n, " %s=%s", name, state);
	}

	if ((rc = uv_timer_init(&a->loop, &a->tick)) < 0 ||
	    (rc = uv_timer_start(&a->tick, on_tick, AGENT_TICK_MS, AGENT_TICK_MS)) < 0)
		goto setup_failed;
	a->open_handles++;
	if ((rc = uv_timer_init(&a->loop, &a->stats_timer)) < 0)
		goto setup_failed;
	a->open_handles++;
	if (a->cfg.stats_interval_s > 0 &&
	    (rc = uv_timer_start(&a->stats_timer, on_stats, a->cfg.stats_interval_s * 1000ull,
				 a->cfg.stats_interval_s * 1000ull)) < 0)
		goto setup_failed;
	if ((rc = uv_signal_init(&a->loop, &a->sigint)) < 0)
		goto setup_failed;
	a->open_handles++;
	a->sigint.data = a;
	if ((rc = uv_signal_start(&a->sigint, on_signal, SIGINT)) < 0)
		goto setup_failed;
	if ((rc = uv_signal_init(&a->loop, &a->sigterm)) < 0)
		goto setup_failed;
	a->open_handles++;
	a->sigterm.data = a;
	if ((rc = uv_signal_start(&a->sigterm, on_signal, SIGTERM)) < 0)
		goto setup_failed;
	if ((rc = uv_signal_init(&a->loop, &a->sighup)) < 0)
		goto setup_failed;
	a->open_handles++;
	a->sighup.data = a;
	if ((rc = uv_signal_start(&a->sighup, on_signal, SIGHUP)) < 0)
		goto setup_failed;

	log_info(TAG, "%s", ready);
	uv_run(&a->loop, UV_RUN_DEFAULT);
	goto close_loop;

setup_failed:
	log_error(TAG, "loop setup: %s", uv_strerror(rc));
	agent_stop(a);
	uv_run(&a->loop, UV_RUN_DEFAULT);
close_loop:
	a->loop_ready = false;
	if (uv_loop_close(&a->loop) != 0) {
		log_error(TAG, "uv_loop_close: handles still open (%u) — unclean shutdown",
			  a->open_handles);
		return -EBUSY;
	}
	if (rc < 0)
		return rc;
	log_info(TAG, "stopped cleanly");
	return 0;
}

void agent_free(struct agent *a)
{
	if (!a)
		return;
	release(a);
	if (a->loop_ready)
		uv_loop_close(&a->loop);
	free(a);
}
