#!/usr/bin/env bash
# Sets up and runs MicroSentinel on this host with its embedded defaults: loads
# the collector, runs the agent for a while (Prometheus metrics on
# 127.0.0.1:9105, no ClickHouse) while some loopback traffic flows, prints the
# costliest flows per direction, and unloads the collector. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${MICROSENTINEL_QUICKSTART_SECONDS:-20}
pin_dir=/sys/fs/bpf/micro_sentinel_quickstart

scripts/setup.sh

loader=build/examples/loader/micro_sentinel_loader
agent=build/examples/agent/micro_sentinel_agent
"$loader" --object build/bpf/micro_sentinel_kern.bpf.o --pin-dir "$pin_dir"
trap '"$loader" --unload --pin-dir "$pin_dir"' EXIT

"$agent" --pin-dir "$pin_dir" --duration "$seconds" &
agent_pid=$!

# Traffic to watch: scraping the agent's own metrics is loopback TCP both ways.
end=$((SECONDS + seconds - 2))
sleep 1
while ((SECONDS < end)) && kill -0 "$agent_pid" 2>/dev/null; do
  curl -s -o /dev/null http://127.0.0.1:9105/metrics || true
done
echo "quickstart: a sample of the agent's metrics:"
curl -s http://127.0.0.1:9105/metrics | grep -E '^micro_sentinel_(flow_cost\{.*direction="(rx|tx)"|sample_layout_info|samples_total)' | head -8 || true
wait "$agent_pid"
