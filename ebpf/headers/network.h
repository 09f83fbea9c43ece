/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Network observer record: one struct for all kinds, shared verbatim with userspace. */
#ifndef TAPIO_NETWORK_H
#define TAPIO_NETWORK_H

#include "tapio_types.h"

enum tapio_net_kind {
	TAPIO_NET_CONNECT_FAIL = 1, /* SYN_SENT -> CLOSE: sk_err/rst_seen tell refused vs timeout */
	TAPIO_NET_RETRANSMIT = 2,   /* one tcp_retransmit_skb */
	TAPIO_NET_RTT_SAMPLE = 3,   /* srtt of a live (or closing) connection */
};

struct tapio_net_event {
	__u64 config_generation;
	__u64 ts_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 kind;  /* enum tapio_net_kind */
	__u32 pid;   /* tgid that called connect() (0 if unknown) */
	__u32 tid;
	__u32 srtt_us;	     /* smoothed RTT in microseconds (tp->srtt_us >> 3) */
	__u32 total_retrans; /* tp->total_retrans */
	__u32 snd_cwnd;
	__s32 sk_err;	/* sk->sk_err at the transition (ECONNREFUSED, ETIMEDOUT, ...) */
	__u16 family;	/* AF_INET (2) or AF_INET6 (10) */
	__u16 sport;	/* host byte order */
	__u16 dport;	/* host byte order */
	__u8 old_state; /* TCP_* state numbers as in the kernel */
	__u8 new_state;
	__u8 rst_seen; /* a RST arrived while in SYN_SENT */
	__u8 _pad[3];
	__u8 saddr[16]; /* IPv4 in the first 4 bytes, network byte order */
	__u8 daddr[16];
	char comm[TAPIO_COMM_LEN];
};

TAPIO_STATIC_ASSERT(sizeof(struct tapio_net_event) == 104, "tapio_net_event ABI size");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_net_event, config_generation) == 0,
		    "config_generation first");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_net_event, kind) == 16, "kind offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_net_event, family) == 44, "family offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_net_event, saddr) == 56, "saddr offset");
TAPIO_STATIC_ASSERT(TAPIO_OFFSETOF(struct tapio_net_event, comm) == 88, "comm offset");

#endif
