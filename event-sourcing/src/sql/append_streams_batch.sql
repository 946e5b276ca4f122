-- Appends a batch of requests in one statement (and so one commit).
-- $1..$4: one row per request (aggregate id, type, expected version, new version); the
-- caller guarantees each aggregate appears at most once.
-- Only aggregates whose stream row is compare-and-set here ("won") get anything written.
--
-- Lock order (see append.rs): every row lock and every wait on another transaction's
-- stream row is taken in aggregate_id order, and all of them before anything else is
-- written. `locked` locks the existing stream rows in aggregate_id order (LockRows sits
-- above the Sort); `created` only starts once `locked` is complete (its input is sorted
-- and filtered through an ARRAY initplan over `locked`) and inserts new stream rows in
-- aggregate_id order; `won` is an array built from both, so every later step waits for
-- the whole stream phase before writing.
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
), won AS (
    SELECT ARRAY(SELECT aggregate_id FROM created UNION ALL SELECT aggregate_id FROM advanced)
        AS ids
), appended AS (
    -- The log id once per statement (an initplan) rather than the column default's
    -- function call per row; the same value either way. The insert's statement trigger
    -- refuses (TQ001) while the log needs a re-base (see follow.rs).
    INSERT INTO events (transaction_id, aggregate_type, aggregate_id, version, event_id,
                        event_type, schema_version, payload, metadata)
    SELECT (SELECT tracseq_log_xid()), e.aggregate_type, e.aggregate_id, e.version,
           e.event_id, e.event_type, e.schema_version, e.payload::jsonb, e.metadata::jsonb
    FROM unnest($5::text[], $6::uuid[], $7::bigint[], $8::uuid[], $9::text[], $10::int[],
                $11::text[], $12::text[])
        WITH ORDINALITY AS e(aggregate_type, aggregate_id, version, event_id, event_type,
                             schema_version, payload, metadata, ord)
    WHERE e.aggregate_id = ANY ((SELECT ids FROM won)::uuid[])
    ORDER BY e.ord
    RETURNING position, transaction_id, aggregate_type, aggregate_id, event_id
), outboxed AS (
    INSERT INTO outbox (position, event_id, aggregate_type, aggregate_id)
    SELECT position, event_id, aggregate_type, aggregate_id FROM appended
), commanded AS (
    INSERT INTO commands (command_id, aggregate_type, aggregate_id, first_version, last_version,
                          command_name, fingerprint, principal, outcome, request_known)
    SELECT c.command_id, c.aggregate_type, c.aggregate_id, c.first_version, c.last_version,
           c.command_name, c.fingerprint, c.principal, 'succeeded', true
    FROM unnest($13::uuid[], $14::text[], $15::uuid[], $16::bigint[], $17::bigint[],
                $29::text[], $30::text[], $31::text[])
        AS c(command_id, aggregate_type, aggregate_id, first_version, last_version,
             command_name, fingerprint, principal)
    WHERE c.aggregate_id = ANY ((SELECT ids FROM won)::uuid[])
    ORDER BY c.command_id
), released AS (
    -- Only the releasing aggregate's own claims: the owner check is in the key.
    DELETE FROM unique_claims c
    USING unnest($26::text[], $27::text[], $28::uuid[]) AS u(scope, value, aggregate_id)
    WHERE c.scope = u.scope AND c.value = u.value AND c.aggregate_id = u.aggregate_id
      AND u.aggregate_id = ANY ((SELECT ids FROM won)::uuid[])
    RETURNING c.scope
), claimed AS (
    -- After every release (the count is an initplan, evaluated before the first row is
    -- inserted), so a value released in this statement can be claimed in it: the unique
    -- check does not count a row this transaction has deleted.
    INSERT INTO unique_claims (scope, value, aggregate_id)
    SELECT u.scope, u.value, u.aggregate_id
    FROM unnest($18::text[], $19::text[], $20::uuid[]) AS u(scope, value, aggregate_id)
    WHERE u.aggregate_id = ANY ((SELECT ids FROM won)::uuid[])
      AND (SELECT count(*) FROM released) >= 0
    ORDER BY u.scope, u.value
), snapshotted AS (
    INSERT INTO snapshots (aggregate_id, aggregate_type, version, state_version, state)
    SELECT s.aggregate_id, s.aggregate_type, s.version, s.state_version, s.state::jsonb
    FROM unnest($21::uuid[], $22::text[], $23::bigint[], $24::int[], $25::text[])
        AS s(aggregate_id, aggregate_type, version, state_version, state)
    WHERE s.aggregate_id = ANY ((SELECT ids FROM won)::uuid[])
    ON CONFLICT (aggregate_id) DO UPDATE
        SET version = EXCLUDED.version, state_version = EXCLUDED.state_version,
            state = EXCLUDED.state, taken_at = now()
        WHERE snapshots.version < EXCLUDED.version
)
SELECT aggregate_id, position, transaction_id FROM appended
