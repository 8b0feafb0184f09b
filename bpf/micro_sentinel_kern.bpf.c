// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * MicroSentinel collector. Packet hooks on both paths record, per CPU, which
 * flow the CPU last worked for; a perf_event program turns each PMU or software
 * sample into an ms_sample record carrying that flow, rate-limited per CPU.
 *
 * Built twice from this source: MS_SAMPLE_LAYOUT=2 (this release, with
 * `direction`) and MS_SAMPLE_LAYOUT=1 (the previous release's records).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "microsentinel/flow_id.h"
#include "microsentinel/ms_sample.h"
#include "ms_collector.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define NSEC_PER_SEC 1000000000ULL

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Keeps struct ms_sample in the object's BTF: consumers negotiate from it. */
struct ms_sample *ms_sample_layout __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} ms_samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_config);
} ms_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_counters);
} ms_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_cpu_flow);
} ms_cpu_flow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_bucket);
} ms_bucket SEC(".maps");

/* bpf_read_branch_records writes perf_branch_entry (24 bytes); records keep from/to. */
struct ms_branch_scratch {
	struct perf_branch_entry entries[MS_LBR_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_branch_scratch);
} ms_branch_scratch SEC(".maps");

/* An IPv4 header without options or an IPv6 header, then the L4 ports. */
union ms_l3l4 {
	__u8 version_ihl;
	struct {
		struct iphdr ip;
		__u16 ports[2];
	} v4;
	struct {
		struct ipv6hdr ip;
		__u16 ports[2];
	} v6;
};

/*
 * Reads the L3/L4 headers at `l3` into a flow id; 0 when not IP TCP/UDP.
 * One read covers both cases (packet bytes need bpf_probe_read_kernel);
 * IPv4 options cost a second one.
 */
static __always_inline __u64 ms_parse_flow(const unsigned char *l3, __u8 *l4_proto)
{
	union ms_l3l4 h;

	if (bpf_probe_read_kernel(&h, sizeof(h), l3))
		return 0;
	if ((h.version_ihl >> 4) == 4) {
		__u32 ihl_bytes = (h.version_ihl & 0xf) * 4;
		__u8 proto = h.v4.ip.protocol;

		if (proto != IPPROTO_TCP_ && proto != IPPROTO_UDP_)
			return 0;
		if (h.v4.ip.frag_off & bpf_htons(0x1fff)) /* not the first fragment: no ports */
			return 0;
		if (ihl_bytes < sizeof(h.v4.ip))
			return 0;
		if (ihl_bytes > sizeof(h.v4.ip) &&
		    bpf_probe_read_kernel(h.v4.ports, sizeof(h.v4.ports), l3 + ihl_bytes))
			return 0;
		*l4_proto = proto;
		return ms_flow_id_v4(proto, h.v4.ip.saddr, bpf_ntohs(h.v4.ports[0]),
				     h.v4.ip.daddr, bpf_ntohs(h.v4.ports[1]));
	}
	if ((h.version_ihl >> 4) == 6) {
		__u8 proto = h.v6.ip.nexthdr;

		if (proto != IPPROTO_TCP_ && proto != IPPROTO_UDP_)
			return 0;
		*l4_proto = proto;
		return ms_flow_id(MS_FLOW_FAMILY_IPV6, proto,
				  h.v6.ip.saddr.in6_u.u6_addr32, bpf_ntohs(h.v6.ports[0]),
				  h.v6.ip.daddr.in6_u.u6_addr32, bpf_ntohs(h.v6.ports[1]));
	}
	return 0;
}

/*
 * tp_btf programs read sk_buff fields directly (typed pointer, a plain load);
 * raw_tp ones through bpf_probe_read_kernel. `typed` is a constant at each
 * call site, so the other branch is compiled out.
 */
#define MS_SKB(typed, skb, field) ((typed) ? (skb)->field : BPF_CORE_READ(skb, field))

/*
 * Ingress at netif_receive_skb: skb->data is the L3 header (eth_type_trans
 * pulled L2; network_header is reset only after the tracepoint). Egress at
 * net_dev_queue: skb->data is L2, network_header is set by the IP layer.
 */
static __always_inline void ms_note_packet(struct sk_buff *skb, __u8 direction, const int typed)
{
	__u16 proto = MS_SKB(typed, skb, protocol);
	unsigned char *head;
	const unsigned char *l3;
	struct skb_shared_info *shinfo;
	struct ms_cpu_flow *cf;
	struct ms_flow_ctx *slot;
	__u16 gso_segs = 0;
	__u8 l4_proto = 0;
	__u32 zero = 0;
	__u64 flow_id;
	__u32 head_idx;

	if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6))
		return;
	head = MS_SKB(typed, skb, head);
	if (direction == MS_DIR_RX) {
		l3 = MS_SKB(typed, skb, data);
	} else {
		__u16 nh = MS_SKB(typed, skb, network_header);

		if (nh == (__u16)~0U)
			return;
		l3 = head + nh;
	}
	flow_id = ms_parse_flow(l3, &l4_proto);
	if (!flow_id)
		return;

	cf = bpf_map_lookup_elem(&ms_cpu_flow, &zero);
	if (!cf)
		return;
	/*
	 * GSO skbs are paged in practice (TCP, UDP_SEGMENT and GRO build frags); a
	 * linear one is counted as one segment, which saves a probe read per packet.
	 */
	if (MS_SKB(typed, skb, data_len)) {
		shinfo = (struct skb_shared_info *)(head + MS_SKB(typed, skb, end));
		bpf_probe_read_kernel(&gso_segs, sizeof(gso_segs), &shinfo->gso_segs);
	}

	head_idx = (cf->head + 1) & (MS_FLOW_HISTORY - 1);
	slot = &cf->hist[head_idx];
	slot->flow_id = flow_id;
	slot->gso_segs = gso_segs ? gso_segs : 1;
	if (direction == MS_DIR_RX)
		slot->ifindex = typed ? skb->dev->ifindex : BPF_CORE_READ(skb, dev, ifindex);
	else
		slot->ifindex = MS_SKB(typed, skb, skb_iif);
	slot->l4_proto = l4_proto;
	slot->direction = direction;
	slot->ts_ns = bpf_ktime_get_ns();
	cf->head = head_idx;
	cf->rx_softirq_set = cf->in_rx_softirq;
}

static __always_inline void ms_rx_softirq_begin(unsigned int vec)
{
	struct ms_cpu_flow *cf;
	__u32 zero = 0;

	if (vec != NET_RX_SOFTIRQ)
		return;
	cf = bpf_map_lookup_elem(&ms_cpu_flow, &zero);
	if (!cf)
		return;
	cf->before_rx = cf->hist[cf->head & (MS_FLOW_HISTORY - 1)];
	cf->in_rx_softirq = 1;
	cf->rx_softirq_set = 0;
}

/* The context from before the softirq is current again, with its own age. */
static __always_inline void ms_rx_softirq_end(unsigned int vec)
{
	struct ms_cpu_flow *cf;
	__u32 zero = 0, head_idx;

	if (vec != NET_RX_SOFTIRQ)
		return;
	cf = bpf_map_lookup_elem(&ms_cpu_flow, &zero);
	if (!cf || !cf->in_rx_softirq)
		return;
	cf->in_rx_softirq = 0;
	if (!cf->rx_softirq_set || !cf->before_rx.ts_ns)
		return;
	head_idx = (cf->head + 1) & (MS_FLOW_HISTORY - 1);
	cf->hist[head_idx] = cf->before_rx;
	cf->head = head_idx;
}

/* tp_btf: the default hooks (typed arguments, checked by the verifier). */
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(ms_rx, struct sk_buff *skb)
{
	ms_note_packet(skb, MS_DIR_RX, 1);
	return 0;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(ms_tx, struct sk_buff *skb)
{
	ms_note_packet(skb, MS_DIR_TX, 1);
	return 0;
}

/* raw_tp: the same hooks for kernels without tp_btf (loader --hook raw_tp). */
SEC("raw_tp/netif_receive_skb")
int BPF_PROG(ms_rx_raw, struct sk_buff *skb)
{
	ms_note_packet(skb, MS_DIR_RX, 0);
	return 0;
}

SEC("raw_tp/net_dev_queue")
int BPF_PROG(ms_tx_raw, struct sk_buff *skb)
{
	ms_note_packet(skb, MS_DIR_TX, 0);
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(ms_rx_begin, unsigned int vec)
{
	ms_rx_softirq_begin(vec);
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(ms_rx_end, unsigned int vec)
{
	ms_rx_softirq_end(vec);
	return 0;
}

SEC("raw_tp/softirq_entry")
int BPF_PROG(ms_rx_begin_raw, unsigned int vec)
{
	ms_rx_softirq_begin(vec);
	return 0;
}

SEC("raw_tp/softirq_exit")
int BPF_PROG(ms_rx_end_raw, unsigned int vec)
{
	ms_rx_softirq_end(vec);
	return 0;
}

static __always_inline int ms_take_token(const struct ms_config *cfg, __u64 now)
{
	struct ms_bucket *b;
	__u32 zero = 0;
	__u64 elapsed, cap;

	if (!cfg->budget_per_sec)
		return 1;
	b = bpf_map_lookup_elem(&ms_bucket, &zero);
	if (!b)
		return 0;
	cap = (cfg->burst ? cfg->burst : 1) * NSEC_PER_SEC;
	elapsed = now - b->last_ns;
	if (elapsed > 10 * NSEC_PER_SEC) /* bounds the product below */
		elapsed = 10 * NSEC_PER_SEC;
	b->last_ns = now;
	b->nanotokens += elapsed * cfg->budget_per_sec;
	if (b->nanotokens > cap)
		b->nanotokens = cap;
	if (b->nanotokens < NSEC_PER_SEC)
		return 0;
	b->nanotokens -= NSEC_PER_SEC;
	return 1;
}

/*
 * The newest context that is older than the skid and younger than the TTL: a
 * sample taken a little after its packet still finds its flow.
 */
static __always_inline const struct ms_flow_ctx *
ms_current_flow(const struct ms_cpu_flow *cf, const struct ms_config *cfg, __u64 now)
{
	__u32 i;

#pragma unroll
	for (i = 0; i < MS_FLOW_HISTORY; i++) {
		const struct ms_flow_ctx *c = &cf->hist[(cf->head - i) & (MS_FLOW_HISTORY - 1)];
		__u64 age;

		if (!c->ts_ns || c->ts_ns > now)
			return 0;
		age = now - c->ts_ns;
		if (age > cfg->flow_ttl_ns)
			return 0;
		if (age >= cfg->skid_ns)
			return c;
	}
	return 0;
}

/*
 * Waking the consumer per record costs an irq_work each time; it polls with a
 * short timeout anyway, so wake it only once a few records (4 KiB, ~12) wait.
 */
#define MS_WAKEUP_BYTES (4 << 10)

static __always_inline __u64 ms_wakeup_flags(void)
{
	return bpf_ringbuf_query(&ms_samples, BPF_RB_AVAIL_DATA) >= MS_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
										      : BPF_RB_NO_WAKEUP;
}

static __always_inline void ms_copy_branches(struct bpf_perf_event_data *ctx, struct ms_sample *s)
{
	struct ms_branch_scratch *b;
	__u32 zero = 0, i, nr;
	long bytes;

	b = bpf_map_lookup_elem(&ms_branch_scratch, &zero);
	if (!b)
		return;
	bytes = bpf_read_branch_records(ctx, b->entries, sizeof(b->entries), 0);
	if (bytes <= 0)
		return;
	nr = bytes / sizeof(b->entries[0]);
	for (i = 0; i < MS_LBR_MAX; i++) {
		if (i >= nr)
			break;
		s->lbr[i].from = b->entries[i].from;
		s->lbr[i].to = b->entries[i].to;
	}
	s->lbr_nr = nr < MS_LBR_MAX ? nr : MS_LBR_MAX;
}

/* The bpf cookie of each perf event link is its enum ms_pmu_event. */
SEC("perf_event")
int ms_on_sample(struct bpf_perf_event_data *ctx)
{
	__u32 zero = 0;
	struct ms_config *cfg = bpf_map_lookup_elem(&ms_config, &zero);
	struct ms_counters *cnt = bpf_map_lookup_elem(&ms_counters, &zero);
	const struct ms_cpu_flow *cf;
	const struct ms_flow_ctx *flow = 0;
	struct ms_sample *s;
	__u64 now, pid_tgid, event;

	if (!cfg || !cnt || cfg->paused)
		return 0;
	now = bpf_ktime_get_ns();
	if (!ms_take_token(cfg, now)) {
		cnt->throttled++;
		return 0;
	}
	s = bpf_ringbuf_reserve(&ms_samples, sizeof(*s), 0);
	if (!s) {
		cnt->ringbuf_full++;
		return 0;
	}
	__builtin_memset(s, 0, sizeof(*s));

	event = bpf_get_attach_cookie(ctx);
	pid_tgid = bpf_get_current_pid_tgid();
	s->tsc = now;
	s->cpu = bpf_get_smp_processor_id();
	s->pid = pid_tgid >> 32;
	s->tid = (__u32)pid_tgid;
	s->pmu_event = (__u32)event;
	s->ip = PT_REGS_IP(&ctx->regs);
	/* Only these events set the sample address; for others it is stale. */
	if (event == MS_EVT_PAGE_FAULTS || event == MS_EVT_LLC_MISSES)
		s->data_addr = ctx->addr;
	s->numa_node = bpf_get_numa_node_id();
	if (cfg->lbr)
		ms_copy_branches(ctx, s);

	cf = bpf_map_lookup_elem(&ms_cpu_flow, &zero);
	if (cf)
		flow = ms_current_flow(cf, cfg, now);
	if (flow) {
		s->flow_id = flow->flow_id;
		s->gso_segs = flow->gso_segs;
		s->ingress_ifindex = flow->ifindex;
		s->l4_proto = flow->l4_proto;
#if MS_SAMPLE_LAYOUT >= 2
		s->direction = flow->direction;
#endif
	}
	bpf_ringbuf_submit(s, ms_wakeup_flags());
	cnt->emitted++;
	return 0;
}
