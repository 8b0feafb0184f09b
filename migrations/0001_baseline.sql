-- MicroSentinel baseline schema: the tables as they were before the flow
-- direction / data object release. Idempotent; ClickHouse 22 or later.
--
-- Sorting keys follow the queries: one host, a time range, then flows.
-- Timestamps are wall-clock nanoseconds (the agent adds the boot-to-wall offset).
-- non_replicated_deduplication_window lets a retried batch that carries the
-- same insert_deduplication_token be dropped instead of stored twice.

CREATE TABLE IF NOT EXISTS ms_raw_samples
(
    ts              DateTime64(9) CODEC(DoubleDelta, ZSTD(1)),
    host            LowCardinality(String),
    cpu             UInt32,
    pid             UInt32,
    tid             UInt32,
    pmu_event       UInt32,
    ip              UInt64,
    data_addr       UInt64,
    flow_id         UInt64,
    gso_segs        UInt32,
    ingress_ifindex UInt16,
    numa_node       UInt16,
    l4_proto        UInt8,
    lbr_nr          UInt8,
    data_object_id  UInt64
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (host, ts, flow_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS ms_flow_rollup
(
    window_start    DateTime64(9) CODEC(DoubleDelta, ZSTD(1)),
    host            LowCardinality(String),
    flow_id         UInt64,
    pmu_event       UInt32,
    numa_node       UInt16,
    function        UInt64,
    data_object_id  UInt64,
    samples         UInt64,
    norm_cost       Float64
)
ENGINE = MergeTree
PARTITION BY toDate(window_start)
ORDER BY (host, window_start, flow_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Last branch records (LBR) of a sample: from[i] -> to[i], newest first.
CREATE TABLE IF NOT EXISTS ms_stack_traces
(
    ts              DateTime64(9) CODEC(DoubleDelta, ZSTD(1)),
    host            LowCardinality(String),
    flow_id         UInt64,
    pid             UInt32,
    tid             UInt32,
    stack_id        UInt64,
    branch_from     Array(UInt64),
    branch_to       Array(UInt64)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (host, ts, flow_id)
SETTINGS non_replicated_deduplication_window = 1000;
