-- Time travel: which samples ever went into, or left, a box. A box "as of" an instant
-- folds those samples' streams up to it (lab/src/history.rs).
CREATE INDEX events_sample_box ON events ((payload->>'box_id'), recorded_at)
    WHERE aggregate_type = 'Sample';
CREATE INDEX events_sample_from_box ON events ((payload->>'from_box_id'), recorded_at)
    WHERE aggregate_type = 'Sample';
