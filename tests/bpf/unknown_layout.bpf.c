// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Test fixture: a collector-shaped object whose struct ms_sample matches no
 * known layout (a future or foreign one). The loader must refuse it.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct ms_sample {
	__u64 tsc;
	__u32 cpu;
	__u32 flags;
	__u64 ip;
};

struct ms_sample *ms_sample_layout __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} ms_samples SEC(".maps");

SEC("perf_event")
int ms_on_sample(void *ctx)
{
	struct ms_sample *s = bpf_ringbuf_reserve(&ms_samples, sizeof(*s), 0);

	if (!s)
		return 0;
	s->tsc = bpf_ktime_get_ns();
	s->cpu = bpf_get_smp_processor_id();
	s->flags = 0;
	s->ip = 0;
	bpf_ringbuf_submit(s, 0);
	return 0;
}
