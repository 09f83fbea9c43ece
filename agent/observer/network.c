/* Network observer: judges SYN_SENT outcomes, retransmit bursts and RTT jumps per peer. */
#include "agent/observer/network.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_MS 1000000ull

/* include/net/tcp_states.h */
static const char *const tcp_state_names[] = {
    [1] = "ESTABLISHED",     [2] = "SYN_SENT",	[3] = "SYN_RECV", [4] = "FIN_WAIT1",
    [5] = "FIN_WAIT2",	     [6] = "TIME_WAIT", [7] = "CLOSE",	  [8] = "CLOSE_WAIT",
    [9] = "LAST_ACK",	     [10] = "LISTEN",	[11] = "CLOSING", [12] = "NEW_SYN_RECV",
    [13] = "BOUND_INACTIVE",
};

const char *network_tcp_state_name(unsigned state)
{
	if (state < sizeof(tcp_state_names) / sizeof(tcp_state_names[0]) && tcp_state_names[state])
		return tcp_state_names[state];
	return "UNKNOWN";
}

enum network_verdict network_classify(const void *data, size_t len,
				      const struct tapio_net_event **ev)
{
	const struct tapio_net_event *e = data;

	if (!data || len != sizeof(*e))
		return NETWORK_MALFORMED;
	if (e->family != AF_INET && e->family != AF_INET6)
		return NETWORK_MALFORMED;
	if (ev)
		*ev = e;
	switch (e->kind) {
	case TAPIO_NET_CONNECT_FAIL:
		/* A RST in SYN_SENT (or the errno it produces) is a refusal, whatever else
		 * happened: it must never also be reported as a timeout. */
		if (e->rst_seen || e->sk_err == ECONNREFUSED)
			return NETWORK_REFUSED;
		/* Any other socket error means the SYN got no usable answer (ETIMEDOUT, or an
		 * ICMP error such as EHOSTUNREACH / ENETUNREACH). */
		if (e->sk_err != 0)
			return NETWORK_TIMEOUT;
		/* No error and no RST: the application closed the socket itself. */
		return NETWORK_NONE;
	case TAPIO_NET_RETRANSMIT:
		return NETWORK_RETRANSMIT;
	case TAPIO_NET_RTT_SAMPLE:
		return NETWORK_RTT_SAMPLE;
	default:
		return NETWORK_MALFORMED;
	}
}

static void format_ip(const struct tapio_net_event *ev, const __u8 addr[16], char *out)
{
	int af = ev->family == AF_INET6 ? AF_INET6 : AF_INET;

	if (!inet_ntop(af, addr, out, TAPIO_IP_STR_LEN))
		out[0] = '\0';
}

/* "10.0.0.5:443" or "[fd00::5]:443" */
static void format_endpoint(const struct tapio_net_event *ev, const char *ip, uint16_t port,
			    char *out, size_t len)
{
	if (ev->family == AF_INET6)
		snprintf(out, len, "[%s]:%u", ip, (unsigned)port);
	else
		snprintf(out, len, "%s:%u", ip, (unsigned)port);
}

void network_build_occurrence(const struct tapio_net_event *ev, enum tapio_occ_type type,
			      uint32_t count, uint64_t first_mono_ns, uint64_t last_mono_ns,
			      double baseline_ms, double current_ms, const struct observer_ctx *ctx,
			      struct tapio_occurrence *occ)
{
	uint64_t ts = count ? first_mono_ns : ev->ts_ns;
	struct tapio_occ_network *n;
	char dst[TAPIO_IP_STR_LEN + 8];
	char src[TAPIO_IP_STR_LEN + 8];

	occurrence_init(occ, type, clock_map_to_wall(ctx->clock, ts), ctx->node, ctx->cluster);
	occ->config_generation = ev->config_generation;
	if (count) {
		occ->count = count;
		occ->first_seen_ns = clock_map_to_wall(ctx->clock, first_mono_ns);
		occ->last_seen_ns = clock_map_to_wall(ctx->clock, last_mono_ns);
	}

	n = &occ->data.network;
	n->pid = ev->pid;
	observer_copy_comm(n->comm, ev->comm);
	format_ip(ev, ev->saddr, n->src_ip);
	format_ip(ev, ev->daddr, n->dst_ip);
	n->src_port = ev->sport;
	n->dst_port = ev->dport;
	n->family = ev->family == AF_INET6 ? 6 : 4;
	if (ev->kind == TAPIO_NET_CONNECT_FAIL) {
		snprintf(n->old_state, sizeof(n->old_state), "%s",
			 network_tcp_state_name(ev->old_state));
		snprintf(n->new_state, sizeof(n->new_state), "%s",
			 network_tcp_state_name(ev->new_state));
	}
	n->total_retrans = ev->total_retrans;
	n->snd_cwnd = ev->snd_cwnd;

	format_endpoint(ev, n->dst_ip, n->dst_port, dst, sizeof(dst));
	format_endpoint(ev, n->src_ip, n->src_port, src, sizeof(src));
	switch (type) {
	case TAPIO_OCC_CONNECTION_REFUSED:
		if (count > 1)
			observer_message(occ, "connect to %s refused %u times", dst, count);
		else
			observer_message(occ, "connect to %s refused", dst);
		break;
	case TAPIO_OCC_CONNECTION_TIMEOUT:
		if (count > 1)
			observer_message(
			    occ, "connect to %s failed without reply %u times (%s)", dst, count,
			    strerrorname_np(ev->sk_err) ? strerrorname_np(ev->sk_err) : "?");
		else
			observer_message(occ, "connect to %s failed without reply (%s)", dst,
					 strerrorname_np(ev->sk_err) ? strerrorname_np(ev->sk_err)
								     : "?");
		break;
	case TAPIO_OCC_RETRANSMIT_SPIKE:
		observer_message(occ, "%u retransmits on %s -> %s", count ? count : 1, src, dst);
		break;
	case TAPIO_OCC_RTT_DEGRADATION:
		n->baseline_ms = baseline_ms;
		n->current_ms = current_ms;
		observer_message(occ, "rtt to %s is %.1f ms, baseline %.1f ms", dst, current_ms,
				 baseline_ms);
		break;
	default:
		break;
	}
}

/* ---- state ---- */

/* refusals and timeouts per destination */
struct dest_key {
	uint8_t type; /* TAPIO_OCC_CONNECTION_REFUSED / _TIMEOUT */
	uint8_t _pad;
	uint16_t family;
	uint16_t dport;
	uint16_t _pad2;
	uint8_t daddr[16];
};

/* retransmits per connection */
struct conn_key {
	uint16_t family;
	uint16_t sport;
	uint16_t dport;
	uint16_t _pad;
	uint8_t saddr[16];
	uint8_t daddr[16];
};

/* RTT baselines per remote endpoint */
struct endpoint_key {
	uint16_t family;
	uint16_t dport;
	uint8_t daddr[16];
};

/* An open window: facts of its first record (retransmits: counters of the last one). */
struct window {
	struct tapio_net_event ev;
	uint32_t count;
	uint64_t first_ns;
	uint64_t last_ns;
};

struct endpoint {
	double baseline_us;
	uint32_t samples; /* samples folded into the baseline */
	uint64_t last_seen_ns;
	uint64_t last_emit_ns;
	bool emitted;
};

struct network_observer {
	struct tapio_settings settings;
	struct observer_ctx ctx;
	struct obs_table dests;
	struct obs_table conns;
	struct obs_table endpoints;
};

static size_t addr_len(uint16_t family)
{
	return family == AF_INET6 ? 16 : 4;
}

static void dest_key_of(const struct tapio_net_event *ev, enum tapio_occ_type type,
			struct dest_key *k)
{
	memset(k, 0, sizeof(*k));
	k->type = (uint8_t)type;
	k->family = ev->family;
	k->dport = ev->dport;
	memcpy(k->daddr, ev->daddr, addr_len(ev->family));
}

static void conn_key_of(const struct tapio_net_event *ev, struct conn_key *k)
{
	memset(k, 0, sizeof(*k));
	k->family = ev->family;
	k->sport = ev->sport;
	k->dport = ev->dport;
	memcpy(k->saddr, ev->saddr, addr_len(ev->family));
	memcpy(k->daddr, ev->daddr, addr_len(ev->family));
}

static void endpoint_key_of(const struct tapio_net_event *ev, struct endpoint_key *k)
{
	memset(k, 0, sizeof(*k));
	k->family = ev->family;
	k->dport = ev->dport;
	memcpy(k->daddr, ev->daddr, addr_len(ev->family));
}

struct network_observer *network_observer_new(const struct tapio_settings *s,
					      const struct observer_ctx *ctx)
{
	struct network_observer *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->settings = *s;
	o->ctx = *ctx;
	if (obs_table_init(&o->dests, OBS_TABLE_SLOTS, sizeof(struct dest_key),
			   sizeof(struct window)) < 0 ||
	    obs_table_init(&o->conns, OBS_TABLE_SLOTS, sizeof(struct conn_key),
			   sizeof(struct window)) < 0 ||
	    obs_table_init(&o->endpoints, OBS_TABLE_SLOTS, sizeof(struct endpoint_key),
			   sizeof(struct endpoint)) < 0) {
		network_observer_free(o);
		return NULL;
	}
	return o;
}

void network_observer_free(struct network_observer *o)
{
	if (!o)
		return;
	obs_table_fini(&o->endpoints);
	obs_table_fini(&o->conns);
	obs_table_fini(&o->dests);
	free(o);
}

void network_observer_set_settings(struct network_observer *o, const struct tapio_settings *s)
{
	o->settings = *s;
}

/* Closes a refusal/timeout window: one occurrence if it reached the minimum count. */
static void close_dest_window(struct network_observer *o, enum tapio_occ_type type,
			      const struct window *w)
{
	uint32_t min = o->settings.conn_refused_min_count ? o->settings.conn_refused_min_count : 1;
	struct tapio_occurrence occ;

	if (w->count < min) {
		o->ctx.stats->suppressed += w->count;
		return;
	}
	o->ctx.stats->suppressed += w->count - 1;
	network_build_occurrence(&w->ev, type, w->count, w->first_ns, w->last_ns, 0, 0, &o->ctx,
				 &occ);
	observer_emit(&o->ctx, &occ);
}

/* Closes a retransmit window: a spike only when the burst reached the threshold. */
static void close_conn_window(struct network_observer *o, const struct window *w)
{
	uint32_t threshold = o->settings.retransmit_burst_threshold;
	struct tapio_occurrence occ;

	if (threshold == 0)
		threshold = 1;
	if (w->count < threshold) {
		o->ctx.stats->suppressed += w->count;
		return;
	}
	o->ctx.stats->suppressed += w->count - 1;
	network_build_occurrence(&w->ev, TAPIO_OCC_RETRANSMIT_SPIKE, w->count, w->first_ns,
				 w->last_ns, 0, 0, &o->ctx, &occ);
	observer_emit(&o->ctx, &occ);
}

static void window_start(struct window *w, const struct tapio_net_event *ev)
{
	w->ev = *ev;
	w->count = 1;
	w->first_ns = ev->ts_ns;
	w->last_ns = ev->ts_ns;
}

/* Records ring buffers deliver per CPU, so time may step back a little between records. */
static void window_add(struct window *w, const struct tapio_net_event *ev)
{
	w->count++;
	if (ev->ts_ns < w->first_ns)
		w->first_ns = ev->ts_ns;
	if (ev->ts_ns > w->last_ns)
		w->last_ns = ev->ts_ns;
}

static void handle_connect_fail(struct network_observer *o, const struct tapio_net_event *ev,
				enum tapio_occ_type type)
{
	uint64_t window_ns = (uint64_t)o->settings.conn_refused_window_ms * NS_PER_MS;
	struct tapio_occurrence occ;
	struct dest_key key;
	struct window *w;

	dest_key_of(ev, type, &key);
	w = obs_table_find(&o->dests, &key);
	if (w && ev->ts_ns >= w->first_ns + window_ns) {
		/* The loop has not ticked since this window closed: close it first. */
		close_dest_window(o, type, w);
		window_start(w, ev);
	} else if (w) {
		window_add(w, ev);
	} else {
		w = obs_table_insert(&o->dests, &key);
		if (!w) {
			/* Table full: the fact is reported on its own rather than lost. */
			o->ctx.stats->correlation_drops++;
			network_build_occurrence(ev, type, 1, ev->ts_ns, ev->ts_ns, 0, 0, &o->ctx,
						 &occ);
			observer_emit(&o->ctx, &occ);
			return;
		}
		window_start(w, ev);
	}
	if (window_ns == 0) {
		/* no window configured: every fact is its own occurrence */
		close_dest_window(o, type, w);
		obs_table_remove(&o->dests, &key);
	}
}

static void handle_retransmit(struct network_observer *o, const struct tapio_net_event *ev)
{
	uint64_t window_ns = (uint64_t)o->settings.retransmit_window_ms * NS_PER_MS;
	struct conn_key key;
	struct window *w;

	conn_key_of(ev, &key);
	w = obs_table_find(&o->conns, &key);
	if (w && ev->ts_ns >= w->first_ns + window_ns) {
		close_conn_window(o, w);
		window_start(w, ev);
		return;
	}
	if (w) {
		window_add(w, ev);
		/* the spike reports the connection's counters as of its last retransmit */
		if (ev->ts_ns >= w->last_ns) {
			w->ev.total_retrans = ev->total_retrans;
			w->ev.snd_cwnd = ev->snd_cwnd;
		}
		return;
	}
	w = obs_table_insert(&o->conns, &key);
	if (!w) {
		/* One retransmit alone is not a burst: counted, never reported as a spike. */
		o->ctx.stats->correlation_drops++;
		return;
	}
	window_start(w, ev);
}

static void emit_rtt(struct network_observer *o, const struct tapio_net_event *ev,
		     double baseline_us, double current_us)
{
	struct tapio_occurrence occ;

	network_build_occurrence(ev, TAPIO_OCC_RTT_DEGRADATION, 0, 0, 0, baseline_us / 1000.0,
				 current_us / 1000.0, &o->ctx, &occ);
	observer_emit(&o->ctx, &occ);
}

static void handle_rtt(struct network_observer *o, const struct tapio_net_event *ev)
{
	const struct tapio_settings *s = &o->settings;
	double current = (double)ev->srtt_us;
	double absolute = (double)s->rtt_absolute_ms * 1000.0;
	struct endpoint_key key;
	struct endpoint *e;
	bool trusted, spike;

	endpoint_key_of(ev, &key);
	e = obs_table_find(&o->endpoints, &key);
	if (!e) {
		e = obs_table_insert(&o->endpoints, &key);
		if (!e) {
			/* No room for a baseline: only the absolute threshold can be judged. */
			o->ctx.stats->correlation_drops++;
			if (s->rtt_absolute_ms && current >= absolute)
				emit_rtt(o, ev, 0, current);
			return;
		}
	}
	e->last_seen_ns = ev->ts_ns > e->last_seen_ns ? ev->ts_ns : e->last_seen_ns;

	trusted = e->samples > 0 && e->samples >= s->rtt_baseline_samples &&
		  e->baseline_us <= (double)s->rtt_baseline_max_ms * 1000.0;
	spike =
	    (trusted && s->rtt_spike_ratio > 0 && current >= s->rtt_spike_ratio * e->baseline_us) ||
	    (s->rtt_absolute_ms && current >= absolute);
	if (!spike) {
		/* Only normal samples shape the baseline, so it settles instead of chasing
		 * the degradation it is meant to reveal. */
		if (e->samples == 0)
			e->baseline_us = current;
		else
			e->baseline_us +=
			    (current - e->baseline_us) / (1 << NETWORK_RTT_EWMA_SHIFT);
		e->samples++;
		return;
	}
	if (e->emitted && ev->ts_ns < e->last_emit_ns + NETWORK_RTT_COOLDOWN_NS) {
		o->ctx.stats->suppressed++;
		return;
	}
	e->emitted = true;
	e->last_emit_ns = ev->ts_ns;
	emit_rtt(o, ev, e->samples ? e->baseline_us : 0, current);
}

int network_observer_handle(struct network_observer *o, const void *data, size_t len)
{
	const struct tapio_net_event *ev = NULL;

	o->ctx.stats->records++;
	switch (network_classify(data, len, &ev)) {
	case NETWORK_MALFORMED:
		o->ctx.stats->malformed++;
		return -EINVAL;
	case NETWORK_NONE:
		return 0;
	case NETWORK_REFUSED:
		handle_connect_fail(o, ev, TAPIO_OCC_CONNECTION_REFUSED);
		return 0;
	case NETWORK_TIMEOUT:
		handle_connect_fail(o, ev, TAPIO_OCC_CONNECTION_TIMEOUT);
		return 0;
	case NETWORK_RETRANSMIT:
		handle_retransmit(o, ev);
		return 0;
	case NETWORK_RTT_SAMPLE:
		handle_rtt(o, ev);
		return 0;
	}
	return 0;
}

/* Closes (when `all` or due by now) every window of both window tables. */
static void close_windows(struct network_observer *o, uint64_t now_mono_ns, bool all)
{
	uint64_t dest_ns = (uint64_t)o->settings.conn_refused_window_ms * NS_PER_MS;
	uint64_t conn_ns = (uint64_t)o->settings.retransmit_window_ms * NS_PER_MS;

	for (uint32_t i = 0; i < o->dests.n_slots;) {
		const void *k;
		struct window *w = obs_table_at(&o->dests, i, &k);

		if (w && (all || now_mono_ns >= w->first_ns + dest_ns)) {
			const struct dest_key *dk = k;

			close_dest_window(o, (enum tapio_occ_type)dk->type, w);
			obs_table_remove_at(&o->dests, i);
			continue;
		}
		i++;
	}
	for (uint32_t i = 0; i < o->conns.n_slots;) {
		struct window *w = obs_table_at(&o->conns, i, NULL);

		if (w && (all || now_mono_ns >= w->first_ns + conn_ns)) {
			close_conn_window(o, w);
			obs_table_remove_at(&o->conns, i);
			continue;
		}
		i++;
	}
}

void network_observer_tick(struct network_observer *o, uint64_t now_mono_ns)
{
	close_windows(o, now_mono_ns, false);
	for (uint32_t i = 0; i < o->endpoints.n_slots;) {
		struct endpoint *e = obs_table_at(&o->endpoints, i, NULL);

		if (e && now_mono_ns >= e->last_seen_ns + NETWORK_RTT_IDLE_NS) {
			obs_table_remove_at(&o->endpoints, i);
			continue;
		}
		i++;
	}
}

void network_observer_flush(struct network_observer *o)
{
	close_windows(o, 0, true);
}
