-- After the stream phase (append_streams_batch.sql or append_streams_single.sql): the
-- events, their outbox rows and the command records of the aggregates that won.
, won AS (
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
)
