-- Appends a round of requests in one statement (and so one commit); the statement is
-- put together in append.rs from this file or append_streams_single.sql (the stream
-- phase), then append_writes.sql, then append_claims.sql or append_claims_releases.sql,
-- then append_result.sql. Parameters are the same in every form.
--
-- $1..$4: one row per request (aggregate id, type, expected version, new version); the
-- caller guarantees each aggregate appears at most once.
-- Only aggregates whose stream row is compare-and-set here ("won") get anything written.
--
-- Lock order (see append.rs): every row lock and every wait on another transaction's
-- stream row is taken in aggregate_id order, and all of them before anything else is
-- written. `locked` locks the existing stream rows in aggregate_id order (LockRows sits
-- above the Sort); `created` only starts once `locked` is complete (its input is sorted
-- and filtered through an ARRAY initplan over `locked`) and inserts new stream rows in
-- aggregate_id order; `won` (append_writes.sql) is an array built from both, so every
-- later step waits for the whole stream phase before writing.
WITH req AS (
    SELECT *
    FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[])
        AS r(aggregate_id, aggregate_type, expected, new_version)
), locked AS MATERIALIZED (
    SELECT aggregate_id, version
    FROM streams
    WHERE aggregate_id = ANY($1::uuid[])
    ORDER BY aggregate_id
    FOR UPDATE
), created AS (
    INSERT INTO streams (aggregate_id, aggregate_type, version)
    SELECT aggregate_id, aggregate_type, new_version FROM req
    WHERE expected = 0
      AND aggregate_id <> ALL (ARRAY(SELECT aggregate_id FROM locked))
    ORDER BY aggregate_id
    ON CONFLICT (aggregate_id) DO NOTHING
    RETURNING aggregate_id
), advanced AS (
    UPDATE streams s
    SET version = r.new_version, updated_at = now()
    FROM req r JOIN locked l USING (aggregate_id)
    WHERE s.aggregate_id = r.aggregate_id AND r.expected > 0
      AND s.version = r.expected AND l.version = r.expected
    RETURNING s.aggregate_id
)
