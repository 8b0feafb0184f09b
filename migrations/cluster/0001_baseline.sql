-- MicroSentinel baseline schema for a cluster: the same tables as
-- ../0001_baseline.sql, as replicated local tables (*_local) on every node plus
-- a Distributed table of the plain name over them. Idempotent; ClickHouse 22+.
--
-- '{cluster}', '{shard}' and '{replica}' are server macros (<macros> in the
-- server config). micro_sentinel_migrate --cluster NAME replaces '{cluster}'
-- with NAME; the others stay macros. Rows are sharded by host, so one host's
-- samples live on one shard and per-host queries touch one shard.

CREATE TABLE IF NOT EXISTS ms_raw_samples_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/ms_raw_samples_local', '{replica}')
PARTITION BY toDate(ts)
ORDER BY (host, ts, flow_id);

CREATE TABLE IF NOT EXISTS ms_raw_samples ON CLUSTER '{cluster}' AS ms_raw_samples_local
ENGINE = Distributed('{cluster}', currentDatabase(), ms_raw_samples_local, cityHash64(host));

CREATE TABLE IF NOT EXISTS ms_flow_rollup_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/ms_flow_rollup_local', '{replica}')
PARTITION BY toDate(window_start)
ORDER BY (host, window_start, flow_id);

CREATE TABLE IF NOT EXISTS ms_flow_rollup ON CLUSTER '{cluster}' AS ms_flow_rollup_local
ENGINE = Distributed('{cluster}', currentDatabase(), ms_flow_rollup_local, cityHash64(host));

CREATE TABLE IF NOT EXISTS ms_stack_traces_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/ms_stack_traces_local', '{replica}')
PARTITION BY toDate(ts)
ORDER BY (host, ts, flow_id);

CREATE TABLE IF NOT EXISTS ms_stack_traces ON CLUSTER '{cluster}' AS ms_stack_traces_local
ENGINE = Distributed('{cluster}', currentDatabase(), ms_stack_traces_local, cityHash64(host));
