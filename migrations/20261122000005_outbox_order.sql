-- The relay checks that no earlier event of the same aggregate is still unpublished
-- before it publishes a later one.
CREATE INDEX outbox_unpublished_by_aggregate ON outbox (aggregate_id, position) WHERE published_at IS NULL;
