-- The unique claims, released claims and snapshots of the aggregates that won, for a
-- round that releases a claim or writes a snapshot.
, released AS (
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
