-- The stream phase for a round of exactly ONE request (see append_streams_batch.sql for
-- how the statement is put together; the parameters are the same).
--
-- This is the form every append takes at low concurrency, where the statement's fixed
-- cost is the latency. With one aggregate there is one stream row, so the fixed lock
-- order holds trivially and the batch form's `locked` step (an extra index scan, a
-- FOR UPDATE lock written to WAL before the update locks the same row again, a sort and
-- an initplan) buys nothing. The compare-and-set is the row's own: the insert for
-- expected version 0 does nothing if the row exists (or waits for a concurrent inserter
-- and then does nothing), and the update matches only `version = expected`, which READ
-- COMMITTED re-checks on the newest row version after waiting for a concurrent writer.
-- Either is this statement's only wait in the stream phase, and `won`
-- (append_writes.sql) is still an array built from both, so nothing is written before
-- the stream row is held: the deadlock argument of append.rs is unchanged.
WITH created AS (
    INSERT INTO streams (aggregate_id, aggregate_type, version)
    SELECT r.aggregate_id, r.aggregate_type, r.new_version
    FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[])
        AS r(aggregate_id, aggregate_type, expected, new_version)
    WHERE r.expected = 0
    ON CONFLICT (aggregate_id) DO NOTHING
    RETURNING aggregate_id
), advanced AS (
    UPDATE streams s
    SET version = r.new_version, updated_at = now()
    FROM unnest($1::uuid[], $3::bigint[], $4::bigint[]) AS r(aggregate_id, expected, new_version)
    WHERE s.aggregate_id = r.aggregate_id AND r.expected > 0 AND s.version = r.expected
    RETURNING s.aggregate_id
)
