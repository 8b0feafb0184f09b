// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Test fixture: empty programs on the collector's packet hooks, the baseline
 * the collector's per-packet cost is compared with.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/netif_receive_skb")
int empty_rx(void *ctx)
{
	return 0;
}

SEC("tp_btf/net_dev_queue")
int empty_tx(void *ctx)
{
	return 0;
}

SEC("raw_tp/netif_receive_skb")
int empty_rx_raw(void *ctx)
{
	return 0;
}

SEC("raw_tp/net_dev_queue")
int empty_tx_raw(void *ctx)
{
	return 0;
}
