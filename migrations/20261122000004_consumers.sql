-- Kafka consumers: what each has applied (de-duplication) and what it gave up on.

-- Written in the same transaction as the consumer's read-table changes: an event whose
-- id is here for a consumer has been applied by it, so a redelivery changes nothing.
CREATE TABLE processed_events (
    consumer      text        NOT NULL,
    event_id      uuid        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Messages a consumer could not process; also published to laboratory.dead-letter.
CREATE TABLE dead_letters (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer         text        NOT NULL,
    topic            text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    kafka_offset     bigint      NOT NULL,
    message_key      text,
    payload          bytea       NOT NULL,
    event_type       text,
    event_id         uuid,
    error            text        NOT NULL,
    attempts         integer     NOT NULL,
    first_failed_at  timestamptz NOT NULL,
    last_failed_at   timestamptz NOT NULL,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'reprocessed')),
    reprocessed_at   timestamptz,
    UNIQUE (consumer, topic, kafka_partition, kafka_offset)
);

CREATE INDEX dead_letters_pending ON dead_letters (consumer, id) WHERE status = 'pending';
CREATE INDEX dead_letters_by_type ON dead_letters (event_type, id);
