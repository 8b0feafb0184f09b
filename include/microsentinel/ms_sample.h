/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The ABI between the collector (bpf/) and every consumer: the layouts of the
 * `ms_sample` record. C, so that the BPF program and C++ include the same file.
 *
 * Layout v2 (this release) adds `direction`; v1 (the previous release) has
 * `pad0[2]` in its place. Both are 320 bytes, so the size alone cannot tell
 * them apart: consumers negotiate the layout from BTF or a capture header.
 *
 * `struct ms_sample` is the layout the collector emits, chosen by
 * MS_SAMPLE_LAYOUT (default 2); its BTF name is what consumers look for.
 */
#ifndef MICROSENTINEL_MS_SAMPLE_H
#define MICROSENTINEL_MS_SAMPLE_H

#if !defined(__bpf__)
#include <linux/types.h>
#endif

#define MS_LBR_MAX 16

#define MS_DIR_RX 0 /* ingress: netif_receive_skb */
#define MS_DIR_TX 1 /* egress: net_dev_queue */

struct ms_lbr_entry {
	__u64 from;
	__u64 to;
};

/* Members shared by every layout, in order. */
#define MS_SAMPLE_HEAD_MEMBERS                                                 \
	__u64 tsc;       /* CLOCK_MONOTONIC ns (bpf_ktime_get_ns) */            \
	__u32 cpu;                                                             \
	__u32 pid;       /* tgid */                                            \
	__u32 tid;                                                             \
	__u32 pmu_event; /* enum ms_pmu_event */                               \
	__u64 ip;                                                              \
	__u64 data_addr; /* 0 when the event has no data address */            \
	__u64 flow_id;   /* 0 when no flow was active on this CPU */           \
	__u32 gso_segs;                                                        \
	__u16 ingress_ifindex;                                                 \
	__u16 numa_node;                                                       \
	__u8 l4_proto;

#define MS_SAMPLE_V1_MEMBERS                                                   \
	MS_SAMPLE_HEAD_MEMBERS                                                 \
	__u8 lbr_nr;                                                           \
	__u8 pad0[2];                                                          \
	struct ms_lbr_entry lbr[MS_LBR_MAX];

#define MS_SAMPLE_V2_MEMBERS                                                   \
	MS_SAMPLE_HEAD_MEMBERS                                                 \
	__u8 direction; /* MS_DIR_RX or MS_DIR_TX */                           \
	__u8 lbr_nr;                                                           \
	__u8 pad0;                                                             \
	struct ms_lbr_entry lbr[MS_LBR_MAX];

struct ms_sample_v1 {
	MS_SAMPLE_V1_MEMBERS
};

struct ms_sample_v2 {
	MS_SAMPLE_V2_MEMBERS
};

#ifndef MS_SAMPLE_LAYOUT
#define MS_SAMPLE_LAYOUT 2
#endif

struct ms_sample {
#if MS_SAMPLE_LAYOUT == 1
	MS_SAMPLE_V1_MEMBERS
#elif MS_SAMPLE_LAYOUT == 2
	MS_SAMPLE_V2_MEMBERS
#else
#error "MS_SAMPLE_LAYOUT must be 1 or 2"
#endif
};

/* Events the collector samples on; `pmu_event` holds one of these. */
enum ms_pmu_event {
	MS_EVT_CPU_CLOCK = 1,    /* software: cpu-clock */
	MS_EVT_PAGE_FAULTS = 2,  /* software: page-faults, data_addr = fault address */
	MS_EVT_CYCLES = 3,       /* hardware */
	MS_EVT_LLC_MISSES = 4,   /* hardware: cache-misses */
	MS_EVT_BRANCH_MISSES = 5 /* hardware */
};

#ifdef __cplusplus
#define MS_STATIC_ASSERT static_assert
#else
#define MS_STATIC_ASSERT _Static_assert
#endif
#define MS_OFFSET(type, member) __builtin_offsetof(struct type, member)

MS_STATIC_ASSERT(sizeof(struct ms_lbr_entry) == 16, "ms_lbr_entry is 16 bytes");

#define MS_ASSERT_HEAD_OFFSETS(type)                                           \
	MS_STATIC_ASSERT(MS_OFFSET(type, tsc) == 0, #type ".tsc");               \
	MS_STATIC_ASSERT(MS_OFFSET(type, cpu) == 8, #type ".cpu");               \
	MS_STATIC_ASSERT(MS_OFFSET(type, pid) == 12, #type ".pid");              \
	MS_STATIC_ASSERT(MS_OFFSET(type, tid) == 16, #type ".tid");              \
	MS_STATIC_ASSERT(MS_OFFSET(type, pmu_event) == 20, #type ".pmu_event");  \
	MS_STATIC_ASSERT(MS_OFFSET(type, ip) == 24, #type ".ip");                \
	MS_STATIC_ASSERT(MS_OFFSET(type, data_addr) == 32, #type ".data_addr");  \
	MS_STATIC_ASSERT(MS_OFFSET(type, flow_id) == 40, #type ".flow_id");      \
	MS_STATIC_ASSERT(MS_OFFSET(type, gso_segs) == 48, #type ".gso_segs");    \
	MS_STATIC_ASSERT(MS_OFFSET(type, ingress_ifindex) == 52,                 \
			 #type ".ingress_ifindex");                                \
	MS_STATIC_ASSERT(MS_OFFSET(type, numa_node) == 54, #type ".numa_node");  \
	MS_STATIC_ASSERT(MS_OFFSET(type, l4_proto) == 56, #type ".l4_proto");    \
	MS_STATIC_ASSERT(MS_OFFSET(type, lbr) == 64, #type ".lbr");              \
	MS_STATIC_ASSERT(sizeof(struct type) == 320, #type " is 320 bytes");

MS_ASSERT_HEAD_OFFSETS(ms_sample_v1)
MS_STATIC_ASSERT(MS_OFFSET(ms_sample_v1, lbr_nr) == 57, "ms_sample_v1.lbr_nr");
MS_STATIC_ASSERT(MS_OFFSET(ms_sample_v1, pad0) == 58, "ms_sample_v1.pad0");

MS_ASSERT_HEAD_OFFSETS(ms_sample_v2)
MS_STATIC_ASSERT(MS_OFFSET(ms_sample_v2, direction) == 57, "ms_sample_v2.direction");
MS_STATIC_ASSERT(MS_OFFSET(ms_sample_v2, lbr_nr) == 58, "ms_sample_v2.lbr_nr");
MS_STATIC_ASSERT(MS_OFFSET(ms_sample_v2, pad0) == 59, "ms_sample_v2.pad0");

MS_ASSERT_HEAD_OFFSETS(ms_sample)

#endif /* MICROSENTINEL_MS_SAMPLE_H */
