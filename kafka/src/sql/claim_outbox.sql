-- Leases the oldest claimable outbox rows to relay $3 for $2 seconds and returns their
-- events. One statement, so its transaction ends before any network I/O.
-- A row is left out when its aggregate has an older unpublished row outside this claim
-- (leased by another relay, locked by a concurrent claim, or parked): per-aggregate order.
-- Rows waiting behind a parked row, or behind a row another relay is sending, are not
-- even candidates: otherwise a long tail of one blocked aggregate would fill every batch
-- and stall the whole outbox.
WITH candidates AS (
    SELECT o.position, o.aggregate_id
    FROM outbox o
    WHERE o.published_at IS NULL
      AND o.parked_at IS NULL
      AND (o.leased_until IS NULL OR o.leased_until < clock_timestamp())
      AND NOT EXISTS (
          SELECT 1 FROM outbox b
          WHERE b.aggregate_id = o.aggregate_id
            AND b.published_at IS NULL
            AND b.position < o.position
            AND (b.parked_at IS NOT NULL OR b.leased_until >= clock_timestamp())
      )
    ORDER BY o.position
    LIMIT $1
    FOR UPDATE OF o SKIP LOCKED
), blockers AS (
    SELECT o.aggregate_id, min(o.position) AS first_blocked
    FROM outbox o
    WHERE o.published_at IS NULL
      AND o.aggregate_id IN (SELECT aggregate_id FROM candidates)
      AND o.position < (SELECT max(position) FROM candidates)
      AND o.position NOT IN (SELECT position FROM candidates)
    GROUP BY o.aggregate_id
), leased AS (
    UPDATE outbox o
    SET leased_until = clock_timestamp() + make_interval(secs => $2::float8),
        leased_by = $3,
        attempts = o.attempts + 1
    FROM candidates c
    LEFT JOIN blockers b ON b.aggregate_id = c.aggregate_id
    WHERE o.position = c.position
      AND (b.first_blocked IS NULL OR c.position < b.first_blocked)
    RETURNING o.position
)
SELECT e.position, e.transaction_id, e.aggregate_type, e.aggregate_id, e.version, e.event_id,
       e.event_type, e.schema_version, e.payload, e.metadata, e.recorded_at
FROM leased l
JOIN events e ON e.position = l.position
ORDER BY l.position
