-- The unique claims of the aggregates that won, for a round that releases no claim and
-- writes no snapshot (nearly every one). $21..$28 (snapshots, releases) are then empty
-- and not referenced: their types come with the statement. Leaving out the release's
-- DELETE and the snapshot's upsert, which would do nothing, saves their executor
-- start-up on every append (see append_claims_releases_snapshots.sql for the other
-- form).
, claimed AS (
    INSERT INTO unique_claims (scope, value, aggregate_id)
    SELECT u.scope, u.value, u.aggregate_id
    FROM unnest($18::text[], $19::text[], $20::uuid[]) AS u(scope, value, aggregate_id)
    WHERE u.aggregate_id = ANY ((SELECT ids FROM won)::uuid[])
    ORDER BY u.scope, u.value
)
