-- Flow direction and data objects (upgrade guide, step 2). Idempotent;
-- ClickHouse 22 or later.
--
-- direction: 0 = rx (ingress), 1 = tx (egress). Rows written before this
-- migration read the default, 0: they were all ingress samples.

ALTER TABLE ms_raw_samples ADD COLUMN IF NOT EXISTS direction UInt8 DEFAULT 0;

ALTER TABLE ms_flow_rollup ADD COLUMN IF NOT EXISTS direction UInt8 DEFAULT 0;

-- Memory regions the agent registers (heap, stack, mappings, named objects).
-- An object is written again whenever an agent restarts; ReplacingMergeTree
-- keeps one row per (host, object_id) after merges (query with FINAL).
CREATE TABLE IF NOT EXISTS ms_data_objects
(
    object_id       UInt64,
    host            String,
    mapping         String,
    base            UInt64,
    size            UInt64,
    permissions     String
)
ENGINE = ReplacingMergeTree
ORDER BY (host, object_id);
