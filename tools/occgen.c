/* Realistic synthetic occurrences for tapio-loadgen and tapio-storegen (see occgen.h). */
#include "tools/occgen.h"

#include <stdio.h>

#include "common/clock.h"

void occgen_seed(struct occgen *g, uint64_t seed)
{
	g->rng = seed * 0x9E3779B97F4A7C15ull + 1;
}

uint32_t occgen_below(struct occgen *g, uint32_t n)
{
	return (uint32_t)(occgen_rnd(g) % n);
}

static const char *net_comms[] = {"curl",    "envoy",	    "java",	 "nginx",
				  "python3", "grpc-server", "redis-cli", "node"};
static const char *ct_comms[] = {"java", "postgres", "python3", "ruby", "node", "worker"};
static const char *st_comms[] = {"postgres", "mysqld", "etcd", "kafka", "jbd2/sda1-8"};
static const char *opcodes[] = {"read", "write", "flush", "discard"};

static void make_ip(struct occgen *g, char *buf, size_t len, bool v6)
{
	if (v6)
		snprintf(buf, len, "fd00::%x:%x", occgen_below(g, 0xffff), occgen_below(g, 0xffff));
	else
		snprintf(buf, len, "10.%u.%u.%u", occgen_below(g, 256), occgen_below(g, 256),
			 1 + occgen_below(g, 254));
}

void occgen_fill(struct occgen *g, struct tapio_occurrence *o, uint32_t i, const char *cluster)
{
	enum tapio_occ_type t = (enum tapio_occ_type)(i % TAPIO_OCC__COUNT);
	uint64_t now = clock_wall_ns();

	occurrence_init(o, t, now, "node", cluster);
	o->config_generation = 1;
	switch (tapio_catalogue[t].observer) {
	case TAPIO_OBS_NETWORK: {
		struct tapio_occ_network *n = &o->data.network;
		bool v6 = occgen_below(g, 5) == 0;

		n->pid = 1000 + occgen_below(g, 60000);
		snprintf(n->comm, sizeof(n->comm), "%s", net_comms[occgen_below(g, 8)]);
		n->family = v6 ? 6 : 4;
		make_ip(g, n->src_ip, sizeof(n->src_ip), v6);
		make_ip(g, n->dst_ip, sizeof(n->dst_ip), v6);
		n->src_port = (uint16_t)(32768 + occgen_below(g, 28000));
		n->dst_port = (uint16_t[]){80, 443, 5432, 6379, 8080, 9092}[occgen_below(g, 6)];
		if (t == TAPIO_OCC_CONNECTION_REFUSED || t == TAPIO_OCC_CONNECTION_TIMEOUT) {
			snprintf(n->old_state, sizeof(n->old_state), "SYN_SENT");
			snprintf(n->new_state, sizeof(n->new_state), "CLOSE");
		}
		if (t == TAPIO_OCC_CONNECTION_REFUSED && occgen_below(g, 3) == 0) {
			o->count = 2 + occgen_below(g, 20);
			o->first_seen_ns = now - 900000000ull;
			o->last_seen_ns = now;
		}
		if (t == TAPIO_OCC_RETRANSMIT_SPIKE) {
			n->total_retrans = 5 + occgen_below(g, 50);
			n->snd_cwnd = 1 + occgen_below(g, 10);
			o->count = n->total_retrans;
			o->first_seen_ns = now - 500000000ull;
			o->last_seen_ns = now;
		}
		if (t == TAPIO_OCC_RTT_DEGRADATION) {
			n->baseline_ms = 1.0 + occgen_below(g, 40);
			n->current_ms = n->baseline_ms * (2.0 + occgen_below(g, 8));
		}
		snprintf(o->error_message, sizeof(o->error_message), "%s:%u", n->dst_ip,
			 n->dst_port);
		break;
	}
	case TAPIO_OBS_CONTAINER: {
		struct tapio_occ_container *c = &o->data.container;

		c->pid = 1000 + occgen_below(g, 60000);
		c->tid = c->pid;
		snprintf(c->comm, sizeof(c->comm), "%s", ct_comms[occgen_below(g, 6)]);
		c->cgroup_id = 10000 + occgen_below(g, 100000);
		snprintf(c->cgroup_path, sizeof(c->cgroup_path),
			 "/kubepods.slice/kubepods-burstable.slice/kubepods-pod%08x.slice",
			 (unsigned)occgen_rnd(g));
		if (t == TAPIO_OCC_OOM_KILL) {
			c->signal = 9;
			c->exit_code = 0; /* killed: no exit status (docs/occurrences.md) */
			c->memory_limit_bytes = (64ull + occgen_below(g, 4032)) << 20;
			c->memory_usage_bytes = c->memory_limit_bytes;
			c->rss_bytes = c->memory_limit_bytes - (occgen_below(g, 16) << 20);
		} else if (occgen_below(g, 2)) {
			c->signal = (int32_t[]){6, 9, 11, 15}[occgen_below(g, 4)];
			c->exit_code = 0; /* killed: no exit status (docs/occurrences.md) */
			c->core_dumped = c->signal == 6 || c->signal == 11;
			o->severity = TAPIO_SEV_ERROR;
		} else {
			c->exit_code = 1 + (int32_t)occgen_below(g, 255);
			o->severity = TAPIO_SEV_WARNING;
		}
		break;
	}
	case TAPIO_OBS_STORAGE: {
		struct tapio_occ_storage *s = &o->data.storage;

		s->pid = 100 + occgen_below(g, 60000);
		snprintf(s->comm, sizeof(s->comm), "%s", st_comms[occgen_below(g, 5)]);
		s->dev_major = (uint32_t[]){8, 259, 253}[occgen_below(g, 3)];
		s->dev_minor = occgen_below(g, 16);
		s->sector = occgen_rnd(g) % (1ull << 31);
		s->bytes = 512u << occgen_below(g, 9);
		snprintf(s->opcode, sizeof(s->opcode), "%s", opcodes[occgen_below(g, 4)]);
		if (t == TAPIO_OCC_IO_ERROR) {
			s->error_code = -(int32_t)(uint32_t[]){5, 61, 110}[occgen_below(g, 3)];
			s->latency_ms = occgen_below(g, 30000) / 10.0;
		} else {
			s->latency_ms = 50.0 + occgen_below(g, 4000) / 10.0;
			o->severity =
			    s->latency_ms >= 200.0 ? TAPIO_SEV_CRITICAL : TAPIO_SEV_WARNING;
		}
		break;
	}
	default: {
		struct tapio_occ_node *n = &o->data.node;

		if (t == TAPIO_OCC_MEMORY_PRESSURE) {
			n->cpu = -1;
			n->memory_some_avg10 = 10.0 + occgen_below(g, 900) / 10.0;
			n->memory_full_avg10 = n->memory_some_avg10 / 2;
		} else {
			n->cpu = (int32_t)occgen_below(g, 64);
			n->cycles = 1000000000ull + occgen_below(g, 1000000000);
			n->instructions = n->cycles / (1 + occgen_below(g, 4));
			n->stall_cycles = n->cycles / (2 + occgen_below(g, 3));
			n->ipc = (double)n->instructions / (double)n->cycles;
			n->stall_pct = 100.0 * (double)n->stall_cycles / (double)n->cycles;
		}
		break;
	}
	}
}
