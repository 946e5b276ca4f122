-- The log-order guard on `events` (20261123000020_log_epoch.sql) checks every insert
-- statement, so its cost is paid by every append; at one client it was a large part of
-- an append's server time. The old body reached the check through four PL/pgSQL calls
-- (the trigger, tracseq_log_xid, tracseq_check_log_order, and tracseq_log_order as a
-- set-returning function scan), each with its own SPI executor start-up, relation locks
-- and plan revalidation, and a tuplestore for the record.
--
-- This body makes the same decision with ONE query in ONE snapshot (the query's own,
-- taken as the old PERFORM's was; pg_current_snapshot() is that snapshot): the append
-- may go on only while
--   * every stored log id (newest event, newest checkpoint) is below next_log_id, the
--     snapshot's xmax plus the offset (the counter is above the stored log), and
--   * the appending transaction's own log id is above the newest checkpoint.
-- These are exactly tracseq_check_log_order's two refusal conditions, negated. Only when
-- the fast path does not pass is the full check run, to refuse with its SQLSTATE TQ001,
-- message and DETAIL (which the store parses), kept in one place. That second look
-- takes a newer snapshot; if the order has become sound by then (the counter climbed
-- past the stored ids in between), the append is let through, which is what the old
-- guard would have decided at that instant. Nothing else can change the verdict in
-- between: the insert already holds its ROW EXCLUSIVE lock on events, so a re-base
-- (EXCLUSIVE) cannot run, and newer checkpoints only make a refusal more likely.
--
-- The trigger (events_log_order_guard) calls the function by name and is unchanged.
CREATE OR REPLACE FUNCTION tracseq_events_log_order_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sound boolean;
BEGIN
    SELECT greatest(ev.newest, cp.newest) < pg_snapshot_xmax(pg_current_snapshot())::text::bigint + o.o
           AND pg_current_xact_id()::text::bigint + o.o > cp.newest
      INTO sound
      FROM (SELECT COALESCE((SELECT l.xid_offset FROM log_epoch l), 0) AS o) o,
           (SELECT COALESCE(max(e.transaction_id), 0) AS newest FROM events e) ev,
           (SELECT COALESCE(max(c.transaction_id), 0) AS newest FROM projection_checkpoints c) cp;
    IF sound IS NOT TRUE THEN
        -- Raises TQ001 with the ids, or passes if the order is sound in a newer snapshot.
        PERFORM tracseq_check_log_order(tracseq_log_xid());
    END IF;
    RETURN NULL;
END
$$;
