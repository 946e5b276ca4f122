-- The relay claims outbox rows with a lease instead of holding a transaction open while
-- it talks to Kafka (an open transaction holds an xid, and every log follower waits for
-- the oldest one). Rows that cannot be encoded are parked with the reason, for operators.

ALTER TABLE outbox
    ADD COLUMN leased_until timestamptz,
    ADD COLUMN leased_by    uuid,
    ADD COLUMN attempts     integer NOT NULL DEFAULT 0,
    ADD COLUMN parked_at    timestamptz,
    ADD COLUMN park_reason  text;

DROP INDEX outbox_unpublished;
-- What the relay may claim.
CREATE INDEX outbox_pending ON outbox (position) WHERE published_at IS NULL AND parked_at IS NULL;
-- What operators look at.
CREATE INDEX outbox_parked ON outbox (position) WHERE published_at IS NULL AND parked_at IS NOT NULL;
