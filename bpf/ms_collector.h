/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The collector's maps other than the sample ring, shared by the BPF program
 * and the loader. The sample record itself is include/microsentinel/ms_sample.h.
 */
#ifndef MICROSENTINEL_BPF_MS_COLLECTOR_H
#define MICROSENTINEL_BPF_MS_COLLECTOR_H

#if !defined(__bpf__)
#include <linux/types.h>
#endif

/* Map and program names: the loader and consumers find them by these. */
#define MS_MAP_SAMPLES "ms_samples"
#define MS_MAP_CONFIG "ms_config"
#define MS_MAP_COUNTERS "ms_counters"
#define MS_MAP_CPU_FLOW "ms_cpu_flow"
#define MS_PROG_SAMPLE "ms_on_sample"

/* ms_config[0]; the loader writes it, and it may be changed at run time. */
struct ms_config {
	__u64 budget_per_sec; /* per-CPU samples/s; 0 = no limit */
	__u64 burst;          /* token bucket depth, samples */
	__u64 flow_ttl_ns;    /* a flow context older than this is no flow */
	__u64 skid_ns;        /* contexts newer than now - skid_ns are skipped */
	/*
	 * Set on a collector being replaced or unloaded: its links are released
	 * only after an RCU grace period, which takes seconds on a busy machine,
	 * and its records must stop at once.
	 */
	__u32 paused;
	__u32 lbr; /* copy the sample's branch stack (hardware events opened with one) */
};

/* ms_counters: per CPU, summed by user space. */
struct ms_counters {
	__u64 emitted;      /* records submitted to ms_samples */
	__u64 throttled;    /* samples dropped by the token bucket */
	__u64 ringbuf_full; /* samples dropped: ms_samples had no room */
};

/* What a CPU last did for the network: one packet hook invocation. */
struct ms_flow_ctx {
	__u64 flow_id;
	__u64 ts_ns; /* bpf_ktime_get_ns at the hook; 0 = empty slot */
	__u32 gso_segs;
	__u16 ifindex;
	__u8 l4_proto;
	__u8 direction; /* MS_DIR_RX or MS_DIR_TX */
};

#define MS_FLOW_HISTORY 8 /* power of two */

/*
 * ms_cpu_flow[0], per CPU: the newest context is hist[head]. Packet receive
 * processing runs in the NET_RX softirq, often right inside the sender's
 * dev_queue_xmit (loopback, veth): contexts set there hold only until the
 * softirq ends, when the one the CPU had before (`before_rx`) is current again.
 */
struct ms_cpu_flow {
	struct ms_flow_ctx hist[MS_FLOW_HISTORY];
	struct ms_flow_ctx before_rx;
	__u32 head;
	__u8 in_rx_softirq;
	__u8 rx_softirq_set; /* a context was set during this NET_RX softirq */
	__u8 pad[2];
};

/* Per-CPU token bucket state, in nano-tokens so refills need no division. */
struct ms_bucket {
	__u64 nanotokens;
	__u64 last_ns;
};

#endif /* MICROSENTINEL_BPF_MS_COLLECTOR_H */
