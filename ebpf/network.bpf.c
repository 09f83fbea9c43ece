// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Network observer: TCP connect outcomes (refused vs timed out), retransmits and smoothed RTT
 * samples. Thresholds that need history (bursts, baselines) are judged in userspace.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "ebpf/common.bpf.h"
#include "ebpf/headers/network.h"

#define AF_INET	 2
#define AF_INET6 10

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Who called connect(): recorded in process context when the socket enters SYN_SENT. */
struct connect_owner {
	__u32 pid;
	__u32 tid;
	__u8 rst_seen;
	__u8 _pad[7];
	char comm[TAPIO_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock * */
	__type(value, struct connect_owner);
} connect_owner SEC(".maps");

/* Last RTT sample per socket, for cfg.rtt_sample_interval_ns rate limiting. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock * */
	__type(value, __u64);
} rtt_last SEC(".maps");

static __always_inline void fill_tuple(struct tapio_net_event *e, const struct sock *sk)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	e->family = family;
	/* inet_sport, unlike skc_num, survives inet_put_port() on the way to CLOSE */
	e->sport = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

static __always_inline void fill_tcp(struct tapio_net_event *e, const struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	e->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	e->total_retrans = BPF_CORE_READ(tp, total_retrans);
	e->snd_cwnd = BPF_CORE_READ(tp, snd_cwnd);
}

static __always_inline bool is_tcp(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

static __always_inline void emit_rtt(const struct tapio_config *cfg, const struct sock *sk,
				     int oldstate, int newstate)
{
	struct tapio_net_event *e = tapio_reserve(&events, struct tapio_net_event);

	if (!e)
		return;
	e->config_generation = cfg->generation;
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = TAPIO_NET_RTT_SAMPLE;
	e->old_state = oldstate;
	e->new_state = newstate;
	fill_tuple(e, sk);
	fill_tcp(e, sk);
	tapio_submit(&events, e);
}

static __always_inline void emit_connect_fail(const struct tapio_config *cfg, const struct sock *sk,
					      __u64 key, int newstate)
{
	struct connect_owner *own = bpf_map_lookup_elem(&connect_owner, &key);
	struct tapio_net_event *e = tapio_reserve(&events, struct tapio_net_event);
	__u64 id;

	if (!e)
		return;
	e->config_generation = cfg->generation;
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = TAPIO_NET_CONNECT_FAIL;
	e->sk_err = BPF_CORE_READ(sk, sk_err);
	e->old_state = TCP_SYN_SENT;
	e->new_state = newstate;
	if (own) {
		e->pid = own->pid;
		e->tid = own->tid;
		e->rst_seen = own->rst_seen;
		__builtin_memcpy(e->comm, own->comm, sizeof(e->comm));
	} else {
		/* connect() happened before load: the current task is the best witness left */
		tapio_count(TAPIO_KC_CORRELATION_MISS);
		id = bpf_get_current_pid_tgid();
		e->pid = id >> 32;
		e->tid = (__u32)id;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	}
	fill_tuple(e, sk);
	fill_tcp(e, sk);
	/*
	 * close() or connect(AF_UNSPEC) during SYN_SENT leaves sk_err at 0 with no RST: the
	 * application gave up, the network did not fail. Not a fact worth reporting.
	 */
	if (e->sk_err == 0 && !e->rst_seen) {
		bpf_ringbuf_discard(e, 0);
		return;
	}
	tapio_submit(&events, e);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_inet_sock_set_state, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	struct tapio_config cfg;
	__u64 key = (__u64)sk;
	__u64 id;

	if (!tapio_config_load(&cfg, TAPIO_F_NET_CONNECT | TAPIO_F_NET_RTT))
		return 0;
	if (!is_tcp(sk))
		return 0;

	if (newstate == TCP_SYN_SENT) {
		struct connect_owner own = {};

		if (!(cfg.flags & TAPIO_F_NET_CONNECT))
			return 0;
		id = bpf_get_current_pid_tgid();
		own.pid = id >> 32;
		own.tid = (__u32)id;
		bpf_get_current_comm(own.comm, sizeof(own.comm));
		if (bpf_map_update_elem(&connect_owner, &key, &own, BPF_ANY))
			tapio_count(TAPIO_KC_MAP_FULL);
		return 0;
	}

	if (oldstate == TCP_SYN_SENT) {
		if (newstate == TCP_CLOSE && (cfg.flags & TAPIO_F_NET_CONNECT))
			emit_connect_fail(&cfg, sk, key, newstate);
		bpf_map_delete_elem(&connect_owner, &key);
		return 0;
	}

	if (oldstate == TCP_ESTABLISHED) {
		/* the connection is closing: one last RTT sample for the peer's baseline */
		if (cfg.flags & TAPIO_F_NET_RTT)
			emit_rtt(&cfg, sk, oldstate, newstate);
		bpf_map_delete_elem(&rtt_last, &key);
	}
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(handle_tcp_receive_reset, struct sock *sk)
{
	struct tapio_config cfg;
	struct connect_owner *own;
	__u64 key = (__u64)sk;

	if (!tapio_config_load(&cfg, TAPIO_F_NET_CONNECT))
		return 0;
	if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_SYN_SENT)
		return 0;
	own = bpf_map_lookup_elem(&connect_owner, &key);
	if (own)
		own->rst_seen = 1;
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_tcp_retransmit_skb, const struct sock *sk, const struct sk_buff *skb)
{
	struct tapio_config cfg;
	struct tapio_net_event *e;
	__u8 state;

	if (!tapio_config_load(&cfg, TAPIO_F_NET_RETRANS))
		return 0;
	e = tapio_reserve(&events, struct tapio_net_event);
	if (!e)
		return 0;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	e->config_generation = cfg.generation;
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = TAPIO_NET_RETRANSMIT;
	e->old_state = state;
	e->new_state = state;
	/* the tracepoint's `err` argument is recent; leaving it unread keeps older kernels */
	fill_tuple(e, sk);
	fill_tcp(e, sk);
	tapio_submit(&events, e);
	return 0;
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(handle_tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	struct tapio_config cfg;
	__u64 key = (__u64)sk;
	__u64 now, *last;
	__u8 state;

	if (!tapio_config_load(&cfg, TAPIO_F_NET_RTT))
		return 0;
	now = bpf_ktime_get_ns();
	last = bpf_map_lookup_elem(&rtt_last, &key);
	if (last && now - *last < cfg.rtt_sample_interval_ns)
		return 0;
	if (BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) == 0)
		return 0; /* no RTT measured yet */
	if (last)
		*last = now;
	else if (bpf_map_update_elem(&rtt_last, &key, &now, BPF_ANY))
		tapio_count(TAPIO_KC_MAP_FULL);
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	emit_rtt(&cfg, sk, state, state);
	return 0;
}
