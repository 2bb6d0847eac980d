-- database
CREATE DATABASE IF NOT EXISTS `uptake` ON CLUSTER 'uptake';

-- migrations table
CREATE TABLE IF NOT EXISTS schema_migrations_local ON CLUSTER 'uptake' (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY version;

CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER 'uptake' AS schema_migrations_local
ENGINE = Distributed('uptake', 'uptake', 'schema_migrations_local', rand());

-- 1: events, failed events and event ids
CREATE TABLE IF NOT EXISTS events_local ON CLUSTER 'uptake' (
    event_id FixedString(16),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tool LowCardinality(String),
    action LowCardinality(String),
    user_id FixedString(16),
    org_unit LowCardinality(String),
    feature LowCardinality(String),
    client LowCardinality(String),
    property_keys Array(LowCardinality(String)),
    property_values Array(String)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tool, org_unit, toDate(occurred_at), user_id)
TTL toDateTime(occurred_at) + INTERVAL 396 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS events ON CLUSTER 'uptake' AS events_local
ENGINE = Distributed('uptake', 'uptake', 'events_local', cityHash64(user_id));

CREATE TABLE IF NOT EXISTS failed_events_local ON CLUSTER 'uptake' (
    received_at DateTime64(3, 'UTC'),
    batch_id String,
    event_index UInt32,
    field LowCardinality(String),
    code LowCardinality(String),
    reason String,
    client LowCardinality(String),
    payload String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (code, received_at)
TTL toDateTime(received_at) + INTERVAL 30 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS failed_events ON CLUSTER 'uptake' AS failed_events_local
ENGINE = Distributed('uptake', 'uptake', 'failed_events_local', rand());

CREATE TABLE IF NOT EXISTS event_ids_local ON CLUSTER 'uptake' (
    event_id FixedString(16),
    received_at DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY event_id
TTL toDateTime(received_at) + INTERVAL 35 DAY;

CREATE TABLE IF NOT EXISTS event_ids ON CLUSTER 'uptake' AS event_ids_local
ENGINE = Distributed('uptake', 'uptake', 'event_ids_local', rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS event_ids_mv ON CLUSTER 'uptake' TO event_ids_local AS
SELECT event_id, received_at FROM events_local;

-- 2: KPI aggregates: user hours, user days, first seen
CREATE TABLE IF NOT EXISTS kpi_user_hours_local ON CLUSTER 'uptake' (
    tool LowCardinality(String),
    hour DateTime('UTC'),
    user_id FixedString(16),
    org_unit LowCardinality(String),
    action LowCardinality(String),
    feature LowCardinality(String),
    first_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    events SimpleAggregateFunction(sum, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (tool, hour, user_id, org_unit, action, feature)
TTL hour + INTERVAL 396 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS kpi_user_hours ON CLUSTER 'uptake' AS kpi_user_hours_local
ENGINE = Distributed('uptake', 'uptake', 'kpi_user_hours_local', cityHash64(user_id));

CREATE TABLE IF NOT EXISTS kpi_user_days_local ON CLUSTER 'uptake' (
    tool LowCardinality(String),
    day Date,
    user_id FixedString(16),
    org_unit LowCardinality(String),
    action LowCardinality(String)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (tool, day, user_id, action, org_unit)
TTL day + INTERVAL 396 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS kpi_user_days ON CLUSTER 'uptake' AS kpi_user_days_local
ENGINE = Distributed('uptake', 'uptake', 'kpi_user_days_local', cityHash64(user_id));

CREATE TABLE IF NOT EXISTS kpi_first_seen_local ON CLUSTER 'uptake' (
    tool LowCardinality(String),
    user_id FixedString(16),
    action LowCardinality(String),
    first_at SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (tool, user_id, action);

CREATE TABLE IF NOT EXISTS kpi_first_seen ON CLUSTER 'uptake' AS kpi_first_seen_local
ENGINE = Distributed('uptake', 'uptake', 'kpi_first_seen_local', cityHash64(user_id));

CREATE TABLE IF NOT EXISTS kpi_backfill_local ON CLUSTER 'uptake' (
    month UInt32,
    cutoff DateTime64(3, 'UTC'),
    done_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', done_at)
ORDER BY month;

CREATE TABLE IF NOT EXISTS kpi_backfill ON CLUSTER 'uptake' AS kpi_backfill_local
ENGINE = Distributed('uptake', 'uptake', 'kpi_backfill_local', rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_user_hours_mv ON CLUSTER 'uptake' TO kpi_user_hours_local AS
SELECT tool, toStartOfHour(occurred_at) AS hour, user_id, org_unit,
       action, feature, min(occurred_at) AS first_at, max(occurred_at) AS last_at,
       toUInt64(count()) AS events
FROM events_local 
GROUP BY tool, hour, user_id, org_unit, action, feature;

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_user_days_mv ON CLUSTER 'uptake' TO kpi_user_days_local AS
SELECT DISTINCT tool, toDate(occurred_at) AS day, user_id, org_unit,
       action
FROM events_local;

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_first_seen_mv ON CLUSTER 'uptake' TO kpi_first_seen_local AS
SELECT tool, user_id, action, min(occurred_at) AS first_at
FROM events_local 
GROUP BY tool, user_id, action;

INSERT INTO kpi_backfill (month, cutoff) SELECT 0, now64(3) WHERE (SELECT count() FROM kpi_backfill WHERE month = 0) = 0;

-- 3: adoption activities
CREATE TABLE IF NOT EXISTS activities_local ON CLUSTER 'uptake' (
    id String,
    version UInt64,
    deleted UInt8,
    tool LowCardinality(String),
    kind LowCardinality(String),
    title String,
    link String,
    org_units Array(String),
    start_at DateTime64(3, 'UTC'),
    end_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    recorded_at DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version)
ORDER BY id;

CREATE TABLE IF NOT EXISTS activities ON CLUSTER 'uptake' AS activities_local
ENGINE = Distributed('uptake', 'uptake', 'activities_local', rand());

-- 4: event ids and KPI aggregates rolled up by the writer (embedded): no statements for this store

-- 5: parts written and merged in small blocks (embedded): no statements for this store

-- 6: events merged column by column (embedded): no statements for this store

-- 7: events and event ids merged about ten parts at a time (embedded): no statements for this store
