-- Flow direction and data objects for a cluster: ../202501_direction_and_data_objects.sql
-- on the replicated local tables and their Distributed tables (a Distributed
-- table keeps its own column list, so both are altered). Idempotent; ClickHouse 22+.

ALTER TABLE ms_raw_samples_local ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS direction UInt8 DEFAULT 0;

ALTER TABLE ms_raw_samples ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS direction UInt8 DEFAULT 0;

ALTER TABLE ms_flow_rollup_local ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS direction UInt8 DEFAULT 0;

ALTER TABLE ms_flow_rollup ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS direction UInt8 DEFAULT 0;

CREATE TABLE IF NOT EXISTS ms_data_objects_local ON CLUSTER '{cluster}'
(
    object_id       UInt64,
    host            String,
    mapping         String,
    base            UInt64,
    size            UInt64,
    permissions     String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/ms_data_objects_local', '{replica}')
ORDER BY (host, object_id);

CREATE TABLE IF NOT EXISTS ms_data_objects ON CLUSTER '{cluster}' AS ms_data_objects_local
ENGINE = Distributed('{cluster}', currentDatabase(), ms_data_objects_local, cityHash64(host));
