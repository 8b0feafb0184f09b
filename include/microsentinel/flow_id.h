/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The flow id: a hash of the canonical 5-tuple, identical for both directions
 * of one connection. C, so that the collector (bpf/) and user space compute the
 * same value from the same tuple; `direction` in ms_sample says which way.
 *
 * Inputs: addresses as four 32-bit words exactly as they sit in the packet
 * (network byte order; IPv4 uses word 0 and leaves words 1..3 zero), ports in
 * host byte order. The endpoint that compares lower (address words, then port)
 * goes first, so swapping source and destination gives the same id.
 */
#ifndef MICROSENTINEL_FLOW_ID_H
#define MICROSENTINEL_FLOW_ID_H

#if !defined(__bpf__)
#include <linux/types.h>
#endif

#define MS_FLOW_FAMILY_IPV4 4
#define MS_FLOW_FAMILY_IPV6 6

#define MS_FLOW_INLINE static __inline__ __attribute__((always_inline))

/* murmur3's 64-bit finalizer: every input bit reaches every output bit. */
MS_FLOW_INLINE __u64 ms_flow_mix(__u64 h, __u64 v)
{
	h ^= v;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* 1 when endpoint a sorts before endpoint b. */
MS_FLOW_INLINE int ms_flow_endpoint_less(const __u32 *a_addr, __u16 a_port,
					 const __u32 *b_addr, __u16 b_port)
{
	if (a_addr[0] != b_addr[0])
		return a_addr[0] < b_addr[0];
	if (a_addr[1] != b_addr[1])
		return a_addr[1] < b_addr[1];
	if (a_addr[2] != b_addr[2])
		return a_addr[2] < b_addr[2];
	if (a_addr[3] != b_addr[3])
		return a_addr[3] < b_addr[3];
	return a_port < b_port;
}

/* Never 0: 0 in ms_sample.flow_id means "no flow". */
MS_FLOW_INLINE __u64 ms_flow_id(__u8 family, __u8 l4_proto,
				const __u32 *saddr, __u16 sport,
				const __u32 *daddr, __u16 dport)
{
	const __u32 *lo_addr = saddr, *hi_addr = daddr;
	__u16 lo_port = sport, hi_port = dport;
	__u64 h;

	if (ms_flow_endpoint_less(daddr, dport, saddr, sport)) {
		lo_addr = daddr;
		hi_addr = saddr;
		lo_port = dport;
		hi_port = sport;
	}
	h = ms_flow_mix(0x4d53464c4f574944ULL, ((__u64)family << 8) | l4_proto);
	h = ms_flow_mix(h, ((__u64)lo_addr[0] << 32) | lo_addr[1]);
	h = ms_flow_mix(h, ((__u64)lo_addr[2] << 32) | lo_addr[3]);
	h = ms_flow_mix(h, ((__u64)hi_addr[0] << 32) | hi_addr[1]);
	h = ms_flow_mix(h, ((__u64)hi_addr[2] << 32) | hi_addr[3]);
	h = ms_flow_mix(h, ((__u64)lo_port << 16) | hi_port);
	return h ? h : 1;
}

/* IPv4: addresses as in struct in_addr.s_addr (network byte order). */
MS_FLOW_INLINE __u64 ms_flow_id_v4(__u8 l4_proto, __u32 saddr, __u16 sport,
				   __u32 daddr, __u16 dport)
{
	__u32 s[4] = {saddr, 0, 0, 0};
	__u32 d[4] = {daddr, 0, 0, 0};

	return ms_flow_id(MS_FLOW_FAMILY_IPV4, l4_proto, s, sport, d, dport);
}

#endif /* MICROSENTINEL_FLOW_ID_H */
