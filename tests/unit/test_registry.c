/* The controller registry: agents, heartbeats, sessions and sequence accounting, JSON. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/codec.h"
#include "controller/registry.h"

static struct registry reg;

static void setup(void)
{
	registry_init(&reg);
}

static void teardown(void)
{
	registry_fini(&reg);
}

TestSuite(registry, .init = setup, .fini = teardown);

static struct registry_agent *hello(const char *id, const char *node, uint64_t now)
{
	Tapio__V1__Hello h = TAPIO__V1__HELLO__INIT;
	Tapio__V1__Label l = TAPIO__V1__LABEL__INIT, *lp = &l;
	char *caps[] = {"observer.network", "config.push"};
	struct registry_agent *a = NULL;

	h.wire_version = CODEC_WIRE_VERSION;
	h.agent_id = (char *)id;
	h.node = (char *)node;
	h.cluster = "prod";
	h.version = "0.1.0";
	h.kernel = "6.1.0";
	h.arch = "x86_64";
	h.session_id = 1;
	l.key = "zone";
	l.value = "a";
	h.n_labels = 1;
	h.labels = &lp;
	h.n_capabilities = 2;
	h.capabilities = caps;
	h.config_generation = 2;
	h.config_hash = "sha256:ab";
	cr_assert_eq(registry_hello(&reg, &h, "127.0.0.1:5000", now, &a), 0);
	return a;
}

Test(registry, agents_known_and_connected, .timeout = 10)
{
	struct registry_agent *a = hello("a1", "node-1", 100), *b = hello("b2", "node-2", 200);

	cr_assert_eq(registry_known(&reg), 2);
	cr_assert_eq(registry_connected(&reg), 2);
	cr_assert_eq(registry_find(&reg, "a1"), a);
	cr_assert_null(registry_find(&reg, "zz"));
	cr_assert_eq(a->key, registry_agent_key("a1"));
	cr_assert_neq(a->key, b->key);
	cr_assert_str_eq(a->node, "node-1");
	cr_assert_eq(a->n_labels, 1);
	cr_assert_eq(a->n_capabilities, 2);
	cr_assert_eq(a->config_generation, 2);

	registry_disconnect(&reg, a, 300);
	registry_disconnect(&reg, a, 400); /* idempotent */
	cr_assert_eq(registry_connected(&reg), 1);
	cr_assert_eq(registry_known(&reg), 2, "disconnected agents stay known");
	cr_assert_not(a->connected);
	cr_assert_eq(a->disconnected_ns, 300);

	/* reconnect: same agent object, refreshed identity */
	cr_assert_eq(hello("a1", "node-1b", 500), a);
	cr_assert(a->connected);
	cr_assert_eq(a->connects, 2);
	cr_assert_str_eq(a->node, "node-1b");
	cr_assert_eq(registry_connected(&reg), 2);
	cr_assert_eq(registry_known(&reg), 2);
}

Test(registry, agent_key_is_stable_fnv1a, .timeout = 10)
{
	cr_assert_eq(registry_agent_key(""), 0xcbf29ce484222325ull);
	cr_assert_eq(registry_agent_key("a"), 0xaf63dc4c8601ec8cull);
}

Test(registry, sequence_accounting, .timeout = 10)
{
	struct registry_agent *a = hello("acc", "n", 1);
	struct registry_session *s = registry_session(a, 9, 0, 1);

	cr_assert_not_null(s);
	cr_assert_eq(registry_session(a, 9, 0, 2), s, "same session id, same session");
	registry_session_batch(a, s, SESSION_SEQ_NEXT, 1, 3, 2);
	registry_session_batch(a, s, SESSION_SEQ_NEXT, 2, 3, 3);
	cr_assert_eq(s->last_sequence, 2);
	registry_session_batch(a, s, SESSION_SEQ_GAP, 6, 1, 4); /* 3, 4, 5 missing */
	cr_assert_eq(s->gaps, 1);
	cr_assert_eq(s->gap_sequences, 3);
	cr_assert_eq(s->last_sequence, 6);
	registry_session_batch(a, s, SESSION_SEQ_DUPLICATE, 6, 0, 5);
	registry_session_batch(a, s, SESSION_SEQ_DUPLICATE, 2, 0, 5);
	cr_assert_eq(s->duplicates, 2);
	cr_assert_eq(s->last_sequence, 6, "duplicates do not move the sequence");
	registry_session_batch(a, s, SESSION_SEQ_REGRESSION, 4, 2, 6);
	cr_assert_eq(s->regressions, 1);
	cr_assert_eq(s->last_sequence, 6, "a regression never lowers last_sequence");
	cr_assert_eq(s->batches, 4);
	cr_assert_eq(s->occurrences, 9);
	cr_assert_eq(a->batches, 4);
	cr_assert_eq(a->duplicates, 2);
	cr_assert_eq(a->gaps, 1);
	cr_assert_eq(a->gap_sequences, 3);
	cr_assert_eq(a->regressions, 1);
	cr_assert_eq(a->occurrences, 9);
	registry_session_acked(s, 6);
	registry_session_acked(s, 2);
	cr_assert_eq(s->durable_sequence, 6);
}

Test(registry, session_resumes_from_durable_and_evicts, .timeout = 10)
{
	struct registry_agent *a = hello("ev", "n", 1);
	struct registry_session *s = registry_session(a, 100, 41, 1);

	cr_assert_eq(s->last_sequence, 41, "a resumed session starts at what the store holds");
	cr_assert_eq(s->durable_sequence, 41);
	registry_session_batch(a, s, SESSION_SEQ_NEXT, 42, 1, 1);
	for (uint64_t id = 1; id <= REGISTRY_MAX_SESSIONS + 3; id++)
		cr_assert_not_null(registry_session(a, 1000 + id, 0, 10 + id));
	cr_assert_eq(a->n_sessions, REGISTRY_MAX_SESSIONS);
	cr_assert_null(registry_session_find(a, 100), "least recently active evicted first");
	cr_assert_not_null(registry_session_find(a, 1000 + REGISTRY_MAX_SESSIONS + 3));
}

Test(registry, heartbeat_and_config, .timeout = 10)
{
	struct registry_agent *a = hello("hb", "n", 1);
	Tapio__V1__Heartbeat hb = TAPIO__V1__HEARTBEAT__INIT;
	Tapio__V1__Counters c = TAPIO__V1__COUNTERS__INIT;
	Tapio__V1__TypeCount tc = TAPIO__V1__TYPE_COUNT__INIT, *tcp = &tc;
	Tapio__V1__ObserverState o = TAPIO__V1__OBSERVER_STATE__INIT, *op = &o;
	char *reasons[] = {"node observer: no PMU"};

	c.events = 1000;
	c.lost = 3;
	tc.type = TAPIO__V1__OCCURRENCE_TYPE__OCCURRENCE_TYPE_OOM_KILL;
	tc.count = 2;
	c.n_anomalies = 1;
	c.anomalies = &tcp;
	o.name = "node";
	o.state = TAPIO__V1__OBSERVER_STATUS__OBSERVER_STATUS_UNSUPPORTED;
	o.reason = "no hardware PMU";
	hb.counters = &c;
	hb.n_observers = 1;
	hb.observers = &op;
	hb.n_degraded_reasons = 1;
	hb.degraded_reasons = reasons;
	hb.config_generation = 7;
	hb.config_hash = "sha256:77";
	hb.uptime_ms = 5000;
	cr_assert_eq(registry_heartbeat(a, &hb, 123), 0);
	cr_assert(a->have_heartbeat);
	cr_assert_eq(a->last_heartbeat_ns, 123);
	cr_assert_eq(a->counters.events, 1000);
	cr_assert_eq(a->counters.lost, 3);
	cr_assert_eq(a->counters.anomalies[TAPIO_OCC_OOM_KILL], 2);
	cr_assert_eq(a->n_observers, 1);
	cr_assert_str_eq(a->observers[0].name, "node");
	cr_assert_eq(a->n_degraded, 1);
	cr_assert_eq(a->config_generation, 7);
	cr_assert_str_eq(a->config_hash, "sha256:77");
	registry_config_applied(a, 8, "sha256:88");
	cr_assert_eq(a->config_generation, 8);
	registry_config_rejected(a, 9, "threshold out of range");
	cr_assert_eq(a->rejected_generation, 9);
	cr_assert_str_eq(a->config_hash, "sha256:88", "a rejection keeps the applied config");
}

Test(registry, json_rendering, .timeout = 10)
{
	struct registry_agent *b = hello("b", "node-b", 1000000000ull);
	struct registry_agent *a = hello("a", "node-a", 1000000000ull);
	Tapio__V1__Heartbeat hb = TAPIO__V1__HEARTBEAT__INIT;
	struct registry_session *s;
	json_t *j, *agents, *ja;

	cr_assert_eq(registry_heartbeat(a, &hb, 2000000000ull), 0);
	s = registry_session(a, 5, 0, 1);
	registry_session_batch(a, s, SESSION_SEQ_GAP, 3, 4, 2);
	registry_disconnect(&reg, b, 3000000000ull);
	j = registry_to_json(&reg, 5000000000ull);
	cr_assert_not_null(j);
	cr_assert_eq(json_integer_value(json_object_get(j, "known")), 2);
	cr_assert_eq(json_integer_value(json_object_get(j, "connected")), 1);
	agents = json_object_get(j, "agents");
	cr_assert_eq(json_array_size(agents), 2);
	ja = json_array_get(agents, 0);
	cr_assert_str_eq(json_string_value(json_object_get(ja, "id")), "a", "sorted by id");
	cr_assert(json_is_true(json_object_get(ja, "connected")));
	cr_assert_str_eq(json_string_value(json_object_get(ja, "node")), "node-a");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(ja, "labels"), "zone")),
			 "a");
	cr_assert_float_eq(json_real_value(json_object_get(ja, "last_heartbeat_age_s")), 3.0, 1e-9);
	cr_assert_eq(
	    json_integer_value(json_object_get(json_object_get(ja, "delivery"), "gap_sequences")),
	    2);
	cr_assert_eq(json_array_size(json_object_get(ja, "sessions")), 1);
	cr_assert(json_is_false(json_object_get(json_array_get(agents, 1), "connected")));
	cr_assert(json_is_null(json_object_get(json_array_get(agents, 1), "counters")));
	cr_assert(json_is_false(json_object_get(ja, "stale")), "no staleness rule set");
	json_decref(j);

	/* a connected agent silent for more than stale_after_ns is stale; a disconnected one not */
	reg.stale_after_ns = 2000000000ull;
	cr_assert_not(registry_agent_stale(&reg, a, a->last_seen_ns + 2000000000ull));
	cr_assert(registry_agent_stale(&reg, a, a->last_seen_ns + 2000000001ull));
	cr_assert_not(registry_agent_stale(&reg, b, b->last_seen_ns + 9000000000ull));
	j = registry_to_json(&reg, a->last_seen_ns + 3000000000ull);
	ja = json_array_get(json_object_get(j, "agents"), 0);
	cr_assert(json_is_true(json_object_get(ja, "stale")));
	json_decref(j);
}

Test(registry, bounded_agents_and_strings, .timeout = 10)
{
	char long_node[600];
	struct registry_agent *a, *b, *c, *d = NULL;
	Tapio__V1__Hello h = TAPIO__V1__HELLO__INIT;

	reg.max_agents = 3;
	a = hello("a", "n", 10);
	b = hello("b", "n", 20);
	c = hello("c", "n", 30);
	registry_disconnect(&reg, b, 40);
	registry_disconnect(&reg, c, 50);
	b->last_seen_ns = 40;
	c->last_seen_ns = 35;
	/* a fourth agent evicts the disconnected one seen least recently (c) */
	cr_assert_not_null(hello("d", "n", 60));
	cr_assert_eq(registry_known(&reg), 3);
	cr_assert_eq(reg.evicted, 1);
	cr_assert_null(registry_find(&reg, "c"));
	cr_assert_eq(registry_find(&reg, "a"), a);
	cr_assert_eq(registry_find(&reg, "b"), b);
	/* all connected again: a new agent is refused */
	cr_assert_eq(hello("b", "n", 70), b);
	h.agent_id = "e";
	cr_assert_eq(registry_hello(&reg, &h, "r", 80, &d), -ENOSPC);
	cr_assert_eq(registry_known(&reg), 3);

	memset(long_node, 'x', sizeof(long_node) - 1);
	long_node[sizeof(long_node) - 1] = '\0';
	cr_assert_eq(hello("a", long_node, 90), a);
	cr_assert_eq(strlen(a->node), REGISTRY_MAX_STR, "agent strings are bounded");
}
