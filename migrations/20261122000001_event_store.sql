-- The event store: an append-only log of every event of every aggregate.

CREATE TABLE events (
    -- Global position: unique and increasing in insertion order, but NOT in commit order.
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction's id (xid8 as bigint). Followers read in
    -- (transaction_id, position) order and only below the oldest running transaction,
    -- which is what makes following the log gap-free (see event-sourcing/src/follow.rs).
    transaction_id  bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    aggregate_type  text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (aggregate_id, version)
);

CREATE INDEX events_log_order ON events (transaction_id, position);
CREATE INDEX events_type_time ON events (event_type, recorded_at);

-- One row per aggregate: its current version. Appends compare-and-set this row, so two
-- writers at the same expected version serialise on it and exactly one wins.
CREATE TABLE streams (
    aggregate_id    uuid        PRIMARY KEY,
    aggregate_type  text        NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox: a row per event, written in the same statement as the event.
CREATE TABLE outbox (
    position        bigint      PRIMARY KEY,
    event_id        uuid        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);

CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;

-- Idempotent commands: a command id is recorded with the outcome of its first success.
CREATE TABLE commands (
    command_id      uuid        PRIMARY KEY,
    aggregate_type  text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    first_version   bigint      NOT NULL,
    last_version    bigint      NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- Values that must be unique across aggregates (e.g. a barcode), claimed atomically with
-- the events that introduce them.
CREATE TABLE unique_claims (
    scope           text        NOT NULL,
    value           text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, value)
);

-- Latest snapshot per aggregate.
CREATE TABLE snapshots (
    aggregate_id     uuid        PRIMARY KEY,
    aggregate_type   text        NOT NULL,
    version          bigint      NOT NULL,
    state_version    integer     NOT NULL,
    state            jsonb       NOT NULL,
    taken_at         timestamptz NOT NULL DEFAULT now()
);

-- Where each projection has got to in the log, updated in the same transaction as its rows.
CREATE TABLE projection_checkpoints (
    projection      text        PRIMARY KEY,
    transaction_id  bigint      NOT NULL,
    position        bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
