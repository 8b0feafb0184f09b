-- The pre-migration schema (../../migrations/0001_baseline.sql: no direction,
-- no ms_data_objects) in a form Debian's clickhouse-server 18.16 accepts:
-- DateTime (seconds) instead of DateTime64(9), String instead of
-- LowCardinality(String), no codecs, no deduplication window setting.
-- Tests use it to meet the writer with a schema older than the agent.

CREATE TABLE IF NOT EXISTS ms_raw_samples
(
    ts              DateTime,
    host            String,
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
ENGINE = MergeTree()
PARTITION BY toDate(ts)
ORDER BY (host, ts, flow_id);

CREATE TABLE IF NOT EXISTS ms_flow_rollup
(
    window_start    DateTime,
    host            String,
    flow_id         UInt64,
    pmu_event       UInt32,
    numa_node       UInt16,
    function        UInt64,
    data_object_id  UInt64,
    samples         UInt64,
    norm_cost       Float64
)
ENGINE = MergeTree()
PARTITION BY toDate(window_start)
ORDER BY (host, window_start, flow_id);

CREATE TABLE IF NOT EXISTS ms_stack_traces
(
    ts              DateTime,
    host            String,
    flow_id         UInt64,
    pid             UInt32,
    tid             UInt32,
    stack_id        UInt64,
    branch_from     Array(UInt64),
    branch_to       Array(UInt64)
)
ENGINE = MergeTree()
PARTITION BY toDate(ts)
ORDER BY (host, ts, flow_id);
