-- The latest snapshot of an aggregate (first row, if any) and the events after it.
WITH snap AS (
    SELECT version, state_version, state FROM snapshots WHERE aggregate_id = $1
)
SELECT true AS is_snapshot, version, NULL::text AS event_type, state_version AS schema_version, state AS payload
FROM snap
UNION ALL
SELECT false, version, event_type, schema_version, payload
FROM events
WHERE aggregate_id = $1 AND version > COALESCE((SELECT version FROM snap), 0)
ORDER BY is_snapshot DESC, version
