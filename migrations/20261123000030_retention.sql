-- Retention (event-sourcing/src/retention.rs) deletes old rows in small batches, oldest
-- first. Each batch finds its rows through one of these indexes instead of scanning the
-- table, so a batch stays a short statement however large the table has grown.

-- Published outbox rows by when they were published. Parked and unpublished rows are
-- never deleted, so they are left out of the index (it stays the size of what can go).
-- published_at is already in the relay's partial-index predicates, so marking a row
-- published costs no extra HOT-update loss.
CREATE INDEX outbox_published_at ON outbox (published_at)
    WHERE published_at IS NOT NULL AND parked_at IS NULL;

-- De-duplication records by age.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- Idempotency records by age.
CREATE INDEX commands_recorded_at ON commands (recorded_at);
