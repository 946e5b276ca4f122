-- The log's order survives a move to a new cluster (reasoning: event-sourcing/src/follow.rs).
--
-- Followers read the log in (transaction_id, position) order. A logical dump/restore or
-- a logical-replication move lands in a cluster whose transaction-id counter starts
-- again near zero, so new events would sort before every saved checkpoint and never be
-- read. Log ids are therefore the cluster's transaction id plus an offset kept here.
-- While the counter (plus offset) is not above every stored id, appends and followers
-- refuse with SQLSTATE TQ001; the re-base (tracseq_rebase_log_xid) raises the offset
-- past everything stored, once, and everything works again.

CREATE TABLE log_epoch (
    -- At most one row: the key can only be true.
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    xid_offset  bigint      NOT NULL CHECK (xid_offset >= 0),
    rebased_at  timestamptz NOT NULL DEFAULT now()
);

-- Zero keeps every id already stored in this cluster valid as it is.
INSERT INTO log_epoch (xid_offset) VALUES (0);

-- Lowering the offset would hand out ids below ones already handed out: a follower past
-- them would skip the new events. Only the re-base changes it, and only upwards.
CREATE FUNCTION tracseq_log_epoch_only_up() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.xid_offset < OLD.xid_offset THEN
        RAISE EXCEPTION 'the log''s xid offset only ever increases (it is %)', OLD.xid_offset
            USING HINT = 'run SELECT * FROM tracseq_rebase_log_xid() instead';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER log_epoch_only_up BEFORE UPDATE OR DELETE ON log_epoch
    FOR EACH ROW EXECUTE FUNCTION tracseq_log_epoch_only_up();

-- These run on every append and every follower read. PL/pgSQL, not SQL: a SQL function
-- that cannot be inlined is planned again on every call (about a millisecond here),
-- while PL/pgSQL keeps its plans for the session.
--
-- A missing row counts as offset 0 (a restore that did not copy it): if that puts the
-- counter below stored ids, the order check below refuses, so it cannot pass unnoticed.
CREATE FUNCTION tracseq_log_xid_offset() RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN COALESCE((SELECT xid_offset FROM log_epoch), 0);
END
$$;

-- The calling transaction's log id: what events.transaction_id records.
CREATE FUNCTION tracseq_log_xid() RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL UNSAFE AS $$
BEGIN
    RETURN pg_current_xact_id()::text::bigint + COALESCE((SELECT xid_offset FROM log_epoch), 0);
END
$$;

ALTER TABLE events ALTER COLUMN transaction_id SET DEFAULT tracseq_log_xid();

-- Where the log stands, all from the caller's one snapshot (STABLE): a stored id read
-- here was committed before the snapshot, so in an intact cluster it is below the
-- snapshot's xmax, and next_log_id is above it. Checkpoints are ids of events a follower
-- read below its horizon, so they are below next_log_id too.
CREATE FUNCTION tracseq_log_order(
    OUT xid_offset bigint,
    OUT newest_event bigint,
    OUT newest_checkpoint bigint,
    -- One past the newest finished transaction (the snapshot's xmax; reading it takes
    -- no xid): every committed id is below it.
    OUT next_log_id bigint,
    -- Followers read below this: the oldest transaction still running.
    OUT horizon bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT s.o,
           COALESCE((SELECT max(e.transaction_id) FROM events e), 0),
           COALESCE((SELECT max(c.transaction_id) FROM projection_checkpoints c), 0),
           pg_snapshot_xmax(s.snap)::text::bigint + s.o,
           pg_snapshot_xmin(s.snap)::text::bigint + s.o
      INTO xid_offset, newest_event, newest_checkpoint, next_log_id, horizon
      FROM (SELECT COALESCE((SELECT l.xid_offset FROM log_epoch l), 0) AS o,
                   pg_current_snapshot() AS snap) s;
END
$$;

-- Refuses (SQLSTATE TQ001) when the counter is at or below stored ids; returns the
-- followers' horizon otherwise. With own_log_id (an appending transaction's id), also
-- refuses when that id is at or below a saved checkpoint: in an intact cluster it never
-- is (that is the follower's guarantee), and it catches a transaction that started
-- before a restarted counter climbed past the stored ids. The DETAIL is read by the
-- store (event-sourcing/src/log_epoch.rs); keep its shape.
CREATE FUNCTION tracseq_check_log_order(own_log_id bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    o record;
    newest bigint;
    current_id bigint;
BEGIN
    SELECT * INTO o FROM tracseq_log_order();
    IF greatest(o.newest_event, o.newest_checkpoint) >= o.next_log_id THEN
        newest := greatest(o.newest_event, o.newest_checkpoint);
        current_id := o.next_log_id;
    ELSIF own_log_id IS NOT NULL AND own_log_id <= o.newest_checkpoint THEN
        newest := o.newest_checkpoint;
        current_id := own_log_id;
    ELSE
        RETURN o.horizon;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'TQ001',
        MESSAGE = format('event log order broken: the transaction-id counter (log id %s) '
            'is not above stored log ids (newest %s), as after a logical dump/restore or '
            'replication to a new cluster; new events would be invisible to followers',
            current_id, newest),
        DETAIL = format('newest_stored=%s current=%s', newest, current_id),
        HINT = 'run the re-base once: SELECT * FROM tracseq_rebase_log_xid();';
END
$$;

-- Every insert into events, by the store or anyone else, is checked once per statement:
-- an event appended after a restart but before the re-base would sort below saved
-- checkpoints and be lost to followers for good.
CREATE FUNCTION tracseq_events_log_order_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tracseq_check_log_order(tracseq_log_xid());
    RETURN NULL;
END
$$;

CREATE TRIGGER events_log_order_guard BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION tracseq_events_log_order_guard();

-- The re-base: raises the offset so that every transaction that can still write (all
-- have ids at or above the oldest running one once the lock is held) gets a log id above
-- every stored event and checkpoint. Idempotent; the offset never goes down.
--
-- The EXCLUSIVE lock waits for every transaction that has written to events and keeps
-- new writers out until commit, so no event is in flight under the old offset; a writer
-- that waited for it takes its statement snapshot after the lock is released and so sees
-- the new offset. Reads go on meanwhile.
CREATE FUNCTION tracseq_rebase_log_xid(
    OUT old_offset bigint,
    OUT new_offset bigint,
    OUT newest_stored bigint,
    OUT next_log_id bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    oldest_running bigint;
BEGIN
    -- Under REPEATABLE READ the snapshot may predate the lock and miss events committed
    -- while waiting; READ COMMITTED takes a fresh one for each statement below.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'run tracseq_rebase_log_xid() under READ COMMITTED, not %',
            current_setting('transaction_isolation');
    END IF;
    LOCK TABLE events IN EXCLUSIVE MODE;
    SELECT tracseq_log_xid_offset(),
           greatest(COALESCE((SELECT max(transaction_id) FROM events), 0),
                    COALESCE((SELECT max(transaction_id) FROM projection_checkpoints), 0)),
           pg_snapshot_xmin(pg_current_snapshot())::text::bigint
      INTO old_offset, newest_stored, oldest_running;
    new_offset := greatest(old_offset, newest_stored - oldest_running + 1);
    INSERT INTO log_epoch AS l (xid_offset) VALUES (new_offset)
        ON CONFLICT (singleton) DO UPDATE SET xid_offset = EXCLUDED.xid_offset,
            rebased_at = now()
        WHERE l.xid_offset < EXCLUDED.xid_offset;
    next_log_id := pg_snapshot_xmax(pg_current_snapshot())::text::bigint + new_offset;
END
$$;
