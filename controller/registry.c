/* Agents, sessions and their accounting (see registry.h). */
#include "controller/registry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

void registry_init(struct registry *r)
{
	memset(r, 0, sizeof(*r));
	r->max_agents = REGISTRY_MAX_AGENTS;
}

static void pairs_clear(struct registry_pair *p, size_t *n)
{
	for (size_t i = 0; i < *n; i++) {
		free(p[i].key);
		free(p[i].value);
		p[i].key = p[i].value = NULL;
	}
	*n = 0;
}

static void agent_free(struct registry_agent *a)
{
	struct registry_session *s, *next;

	if (!a)
		return;
	for (s = a->sessions; s; s = next) {
		next = s->next;
		free(s);
	}
	pairs_clear(a->labels, &a->n_labels);
	pairs_clear(a->capabilities, &a->n_capabilities);
	pairs_clear(a->degraded, &a->n_degraded);
	free(a->id);
	free(a->node);
	free(a->cluster);
	free(a->version);
	free(a->kernel);
	free(a->arch);
	free(a);
}

void registry_fini(struct registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_agents; i++)
		agent_free(r->agents[i]);
	free(r->agents);
	memset(r, 0, sizeof(*r));
}

uint64_t registry_agent_key(const char *agent_id)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const unsigned char *p = (const unsigned char *)agent_id; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ull;
	}
	return h;
}

struct registry_agent *registry_find(const struct registry *r, const char *agent_id)
{
	for (size_t i = 0; i < r->n_agents; i++)
		if (strcmp(r->agents[i]->id, agent_id) == 0)
			return r->agents[i];
	return NULL;
}

/* Replaces *dst with a copy of src ("" for NULL). Returns 0 or -ENOMEM (dst unchanged). */
static int set_str(char **dst, const char *src)
{
	char *c = strndup(src ? src : "", REGISTRY_MAX_STR);

	if (!c)
		return -ENOMEM;
	free(*dst);
	*dst = c;
	return 0;
}

static void copy_fixed(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static int pair_set(struct registry_pair *p, const char *key, const char *value)
{
	p->key = strndup(key ? key : "", REGISTRY_MAX_STR);
	p->value = value ? strndup(value, REGISTRY_MAX_STR) : NULL;
	if (!p->key || (value && !p->value)) {
		free(p->key);
		free(p->value);
		p->key = p->value = NULL;
		return -ENOMEM;
	}
	return 0;
}

static int hello_lists(struct registry_agent *a, const Tapio__V1__Hello *h)
{
	pairs_clear(a->labels, &a->n_labels);
	pairs_clear(a->capabilities, &a->n_capabilities);
	for (size_t i = 0; i < h->n_labels && a->n_labels < REGISTRY_MAX_LIST; i++) {
		if (!h->labels[i])
			continue;
		if (pair_set(&a->labels[a->n_labels], h->labels[i]->key, h->labels[i]->value))
			return -ENOMEM;
		a->n_labels++;
	}
	for (size_t i = 0; i < h->n_capabilities && a->n_capabilities < REGISTRY_MAX_LIST; i++) {
		if (pair_set(&a->capabilities[a->n_capabilities], h->capabilities[i], NULL))
			return -ENOMEM;
		a->n_capabilities++;
	}
	return 0;
}

/* Forgets the disconnected agent seen least recently. Returns 0, or -ENOSPC if none. */
static int evict_agent(struct registry *r)
{
	size_t victim = r->n_agents;

	for (size_t i = 0; i < r->n_agents; i++)
		if (!r->agents[i]->connected &&
		    (victim == r->n_agents ||
		     r->agents[i]->last_seen_ns < r->agents[victim]->last_seen_ns))
			victim = i;
	if (victim == r->n_agents)
		return -ENOSPC;
	agent_free(r->agents[victim]);
	r->agents[victim] = r->agents[--r->n_agents];
	r->evicted++;
	return 0;
}

int registry_hello(struct registry *r, const Tapio__V1__Hello *h, const char *remote,
		   uint64_t now_ns, struct registry_agent **out)
{
	struct registry_agent *a = registry_find(r, h->agent_id);
	bool created = false;

	if (!a) {
		if (r->max_agents && r->n_agents >= r->max_agents && evict_agent(r) < 0)
			return -ENOSPC;
		if (r->n_agents == r->cap_agents) {
			size_t cap = r->cap_agents ? r->cap_agents * 2 : 16;
			struct registry_agent **p = realloc(r->agents, cap * sizeof(*p));

			if (!p)
				return -ENOMEM;
			r->agents = p;
			r->cap_agents = cap;
		}
		a = calloc(1, sizeof(*a));
		if (!a || set_str(&a->id, h->agent_id)) {
			free(a);
			return -ENOMEM;
		}
		a->key = registry_agent_key(a->id);
		a->first_seen_ns = now_ns;
		r->agents[r->n_agents++] = a;
		created = true;
	}
	if (set_str(&a->node, h->node) || set_str(&a->cluster, h->cluster) ||
	    set_str(&a->version, h->version) || set_str(&a->kernel, h->kernel) ||
	    set_str(&a->arch, h->arch) || hello_lists(a, h)) {
		if (created) {
			r->n_agents--;
			agent_free(a);
		}
		return -ENOMEM;
	}
	copy_fixed(a->remote, sizeof(a->remote), remote);
	a->config_generation = h->config_generation;
	copy_fixed(a->config_hash, sizeof(a->config_hash), h->config_hash);
	if (!a->connected)
		r->connected++;
	a->connected = true;
	a->connects++;
	a->connected_since_ns = now_ns;
	a->last_seen_ns = now_ns;
	*out = a;
	return 0;
}

void registry_disconnect(struct registry *r, struct registry_agent *a, uint64_t now_ns)
{
	if (!a || !a->connected)
		return;
	a->connected = false;
	a->disconnected_ns = now_ns;
	r->connected--;
}

int registry_heartbeat(struct registry_agent *a, const Tapio__V1__Heartbeat *hb, uint64_t now_ns)
{
	const Tapio__V1__Counters *c = hb->counters;

	a->have_heartbeat = true;
	a->heartbeats++;
	a->last_heartbeat_ns = now_ns;
	a->last_seen_ns = now_ns;
	a->uptime_ms = hb->uptime_ms;
	a->config_generation = hb->config_generation;
	copy_fixed(a->config_hash, sizeof(a->config_hash), hb->config_hash);
	memset(&a->counters, 0, sizeof(a->counters));
	if (c) {
		a->counters.events = c->events;
		a->counters.lost = c->lost;
		a->counters.malformed = c->malformed;
		a->counters.correlation_drops = c->correlation_drops;
		a->counters.sink_writes = c->sink_writes;
		a->counters.sink_drops = c->sink_drops;
		a->counters.send_failures = c->send_failures;
		a->counters.queue_depth = c->queue_depth;
		a->counters.queue_drops = c->queue_drops;
		a->counters.spool_bytes = c->spool_bytes;
		a->counters.spool_drops = c->spool_drops;
		for (size_t i = 0; i < c->n_anomalies; i++) {
			int t = c->anomalies[i] ? (int)c->anomalies[i]->type - 1 : -1;

			if (t >= 0 && t < TAPIO_OCC__COUNT)
				a->counters.anomalies[t] = c->anomalies[i]->count;
		}
	}
	a->n_observers = 0;
	for (size_t i = 0; i < hb->n_observers && a->n_observers < REGISTRY_MAX_OBSERVERS; i++) {
		struct registry_observer *o = &a->observers[a->n_observers];

		if (!hb->observers[i])
			continue;
		copy_fixed(o->name, sizeof(o->name), hb->observers[i]->name);
		o->state = hb->observers[i]->state;
		copy_fixed(o->reason, sizeof(o->reason), hb->observers[i]->reason);
		a->n_observers++;
	}
	pairs_clear(a->degraded, &a->n_degraded);
	for (size_t i = 0; i < hb->n_degraded_reasons && a->n_degraded < REGISTRY_MAX_LIST; i++) {
		if (pair_set(&a->degraded[a->n_degraded], hb->degraded_reasons[i], NULL))
			return -ENOMEM;
		a->n_degraded++;
	}
	return 0;
}

void registry_config_applied(struct registry_agent *a, uint64_t generation, const char *hash)
{
	a->config_generation = generation;
	copy_fixed(a->config_hash, sizeof(a->config_hash), hash);
	a->config_applied_ns = clock_wall_ns();
}

void registry_config_expected(struct registry_agent *a, uint64_t generation, const char *hash,
			      uint64_t now_ns)
{
	a->expected_generation = generation;
	copy_fixed(a->expected_hash, sizeof(a->expected_hash), hash);
	a->config_pushed_ns = now_ns;
}

void registry_config_rejected(struct registry_agent *a, uint64_t generation, const char *reason)
{
	a->rejected_generation = generation;
	copy_fixed(a->rejected_reason, sizeof(a->rejected_reason), reason);
}

struct registry_session *registry_session_find(struct registry_agent *a, uint64_t session_id)
{
	for (struct registry_session *s = a->sessions; s; s = s->next)
		if (s->session_id == session_id)
			return s;
	return NULL;
}

static void evict_oldest(struct registry_agent *a)
{
	struct registry_session **pp, **oldest = NULL;

	for (pp = &a->sessions; *pp; pp = &(*pp)->next)
		if (!oldest || (*pp)->last_active_ns < (*oldest)->last_active_ns)
			oldest = pp;
	if (oldest) {
		struct registry_session *victim = *oldest;

		*oldest = victim->next;
		free(victim);
		a->n_sessions--;
	}
}

struct registry_session *registry_session(struct registry_agent *a, uint64_t session_id,
					  uint64_t durable, uint64_t now_ns)
{
	struct registry_session *s = registry_session_find(a, session_id);

	if (s)
		return s;
	if (a->n_sessions >= REGISTRY_MAX_SESSIONS)
		evict_oldest(a);
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->session_id = session_id;
	s->last_sequence = durable;
	s->durable_sequence = durable;
	s->started_ns = now_ns;
	s->last_active_ns = now_ns;
	s->next = a->sessions;
	a->sessions = s;
	a->n_sessions++;
	return s;
}

void registry_session_batch(struct registry_agent *a, struct registry_session *s,
			    enum session_seq k, uint64_t sequence, uint64_t occurrences,
			    uint64_t now_ns)
{
	s->last_active_ns = now_ns;
	a->last_seen_ns = now_ns;
	switch (k) {
	case SESSION_SEQ_DUPLICATE:
		s->duplicates++;
		a->duplicates++;
		return;
	case SESSION_SEQ_GAP:
		s->gaps++;
		a->gaps++;
		s->gap_sequences += sequence - s->last_sequence - 1;
		a->gap_sequences += sequence - s->last_sequence - 1;
		break;
	case SESSION_SEQ_REGRESSION:
		s->regressions++;
		a->regressions++;
		break;
	case SESSION_SEQ_NEXT:
		break;
	}
	s->batches++;
	a->batches++;
	s->occurrences += occurrences;
	a->occurrences += occurrences;
	if (sequence > s->last_sequence)
		s->last_sequence = sequence;
}

void registry_session_acked(struct registry_session *s, uint64_t sequence)
{
	if (sequence > s->durable_sequence)
		s->durable_sequence = sequence;
}

size_t registry_known(const struct registry *r)
{
	return r->n_agents;
}

size_t registry_connected(const struct registry *r)
{
	return r->connected;
}

/* ---- JSON -------------------------------------------------------------------------------- */

static json_t *time_json(uint64_t ns)
{
	char buf[40];

	if (ns == 0 || clock_format_rfc3339(ns, buf, sizeof(buf)) < 0)
		return json_null();
	return json_string(buf);
}

static const char *observer_status_name(int st)
{
	switch (st) {
	case TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_RUNNING:
		return "running";
	case TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_DISABLED:
		return "disabled";
	case TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_UNSUPPORTED:
		return "unsupported";
	case TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_DEGRADED:
		return "degraded";
	case TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_FAILED:
		return "failed";
	default:
		return "unspecified";
	}
}

/* session_id is a random 64-bit value: a decimal string, since JSON integers past 2^63 don't
 * survive most parsers (jansson included). */
static json_t *session_json(const struct registry_session *s)
{
	char id[24];

	snprintf(id, sizeof(id), "%" PRIu64, (uint64_t)s->session_id);
	return json_pack(
	    "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}", "session_id", id, "last_sequence",
	    (json_int_t)s->last_sequence, "durable_sequence", (json_int_t)s->durable_sequence,
	    "batches", (json_int_t)s->batches, "occurrences", (json_int_t)s->occurrences, "gaps",
	    (json_int_t)s->gaps, "gap_sequences", (json_int_t)s->gap_sequences, "duplicates",
	    (json_int_t)s->duplicates, "regressions", (json_int_t)s->regressions, "started",
	    time_json(s->started_ns), "last_active", time_json(s->last_active_ns));
}

static json_t *counters_json(const struct registry_counters *c)
{
	json_t *an = json_object();
	json_t *o;

	for (int t = 0; an && t < TAPIO_OCC__COUNT; t++)
		if (c->anomalies[t])
			json_object_set_new(an, tapio_occ_type_name(t),
					    json_integer((json_int_t)c->anomalies[t]));
	o = json_pack(
	    "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o*}", "events", (json_int_t)c->events,
	    "lost", (json_int_t)c->lost, "malformed", (json_int_t)c->malformed, "correlation_drops",
	    (json_int_t)c->correlation_drops, "sink_writes", (json_int_t)c->sink_writes,
	    "sink_drops", (json_int_t)c->sink_drops, "send_failures", (json_int_t)c->send_failures,
	    "queue_depth", (json_int_t)c->queue_depth, "queue_drops", (json_int_t)c->queue_drops,
	    "spool_bytes", (json_int_t)c->spool_bytes, "spool_drops", (json_int_t)c->spool_drops,
	    "anomalies", an);
	return o;
}

json_t *registry_agent_to_json(const struct registry_agent *a, uint64_t now_ns)
{
	json_t *o, *labels = json_object(), *caps = json_array(), *obs = json_array();
	json_t *degraded = json_array(), *sessions = json_array(), *hb_age;

	if (!labels || !caps || !obs || !degraded || !sessions)
		goto fail;
	for (size_t i = 0; i < a->n_labels; i++)
		json_object_set_new(labels, a->labels[i].key,
				    json_string(a->labels[i].value ? a->labels[i].value : ""));
	for (size_t i = 0; i < a->n_capabilities; i++)
		json_array_append_new(caps, json_string(a->capabilities[i].key));
	for (size_t i = 0; i < a->n_observers; i++)
		json_array_append_new(obs, json_pack("{s:s,s:s,s:s}", "name", a->observers[i].name,
						     "state",
						     observer_status_name(a->observers[i].state),
						     "reason", a->observers[i].reason));
	for (size_t i = 0; i < a->n_degraded; i++)
		json_array_append_new(degraded, json_string(a->degraded[i].key));
	for (const struct registry_session *s = a->sessions; s; s = s->next)
		json_array_append_new(sessions, session_json(s));
	if (a->have_heartbeat && now_ns >= a->last_heartbeat_ns)
		hb_age = json_real((double)(now_ns - a->last_heartbeat_ns) / 1e9);
	else
		hb_age = json_null();
	o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:o,s:o,s:o,s:o,s:o,s:o}", "id", a->id,
		      "node", a->node, "cluster", a->cluster, "version", a->version, "kernel",
		      a->kernel, "arch", a->arch, "remote", a->remote, "connected", a->connected,
		      "connects", (json_int_t)a->connects, "first_seen",
		      time_json(a->first_seen_ns), "connected_since",
		      time_json(a->connected ? a->connected_since_ns : 0), "disconnected_at",
		      time_json(a->connected ? 0 : a->disconnected_ns), "last_seen",
		      time_json(a->last_seen_ns), "last_heartbeat", time_json(a->last_heartbeat_ns),
		      "last_heartbeat_age_s", hb_age);
	if (!o)
		goto fail;
	json_object_set_new(o, "labels", labels);
	json_object_set_new(o, "capabilities", caps);
	json_object_set_new(o, "observers", obs);
	json_object_set_new(o, "degraded_reasons", degraded);
	json_object_set_new(o, "uptime_ms", json_integer((json_int_t)a->uptime_ms));
	json_object_set_new(o, "heartbeats", json_integer((json_int_t)a->heartbeats));
	json_object_set_new(o, "counters",
			    a->have_heartbeat ? counters_json(&a->counters) : json_null());
	json_object_set_new(
	    o, "config",
	    json_pack("{s:I,s:s,s:I,s:s,s:o,s:I,s:o,s:o,s:o}", "generation",
		      (json_int_t)a->config_generation, "hash", a->config_hash,
		      "rejected_generation", (json_int_t)a->rejected_generation, "rejected_reason",
		      a->rejected_reason, "applied_at", time_json(a->config_applied_ns),
		      "expected_generation", (json_int_t)a->expected_generation, "expected_hash",
		      a->expected_hash[0] ? json_string(a->expected_hash) : json_null(),
		      "pushed_at", time_json(a->config_pushed_ns), "converged",
		      a->expected_hash[0]
			  ? json_boolean(strcmp(a->expected_hash, a->config_hash) == 0)
			  : json_null()));
	json_object_set_new(
	    o, "delivery",
	    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "batches", (json_int_t)a->batches,
		      "occurrences", (json_int_t)a->occurrences, "duplicates",
		      (json_int_t)a->duplicates, "gaps", (json_int_t)a->gaps, "gap_sequences",
		      (json_int_t)a->gap_sequences, "regressions", (json_int_t)a->regressions,
		      "invalid_occurrences", (json_int_t)a->invalid_occurrences));
	json_object_set_new(o, "sessions", sessions);
	return o;
fail:
	json_decref(labels);
	json_decref(caps);
	json_decref(obs);
	json_decref(degraded);
	json_decref(sessions);
	return NULL;
}

bool registry_agent_stale(const struct registry *r, const struct registry_agent *a, uint64_t now_ns)
{
	return a->connected && r->stale_after_ns && now_ns > a->last_seen_ns &&
	       now_ns - a->last_seen_ns > r->stale_after_ns;
}

json_t *registry_agent_json(const struct registry *r, const struct registry_agent *a,
			    uint64_t now_ns)
{
	json_t *o = registry_agent_to_json(a, now_ns);

	if (o)
		json_object_set_new(o, "stale", json_boolean(registry_agent_stale(r, a, now_ns)));
	return o;
}

static int by_id(const void *x, const void *y)
{
	const struct registry_agent *const *a = x, *const *b = y;

	return strcmp((*a)->id, (*b)->id);
}

json_t *registry_to_json(const struct registry *r, uint64_t now_ns)
{
	json_t *arr = json_array(), *o;
	struct registry_agent **sorted = NULL;

	if (!arr)
		return NULL;
	if (r->n_agents) {
		sorted = malloc(r->n_agents * sizeof(*sorted));
		if (!sorted) {
			json_decref(arr);
			return NULL;
		}
		memcpy(sorted, r->agents, r->n_agents * sizeof(*sorted));
		qsort(sorted, r->n_agents, sizeof(*sorted), by_id);
	}
	for (size_t i = 0; i < r->n_agents; i++) {
		json_t *a = registry_agent_json(r, sorted[i], now_ns);

		if (!a || json_array_append_new(arr, a)) {
			free(sorted);
			json_decref(arr);
			return NULL;
		}
	}
	free(sorted);
	o = json_pack("{s:I,s:I,s:I,s:o}", "known", (json_int_t)r->n_agents, "connected",
		      (json_int_t)r->connected, "evicted", (json_int_t)r->evicted, "agents", arr);
	return o;
}
