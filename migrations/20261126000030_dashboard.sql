-- Samples per status, kept by the samples projection in the transaction that changes a
-- sample's row, so the dashboard never counts a million rows.
CREATE TABLE sample_status_counts (
    status  text   PRIMARY KEY,
    samples bigint NOT NULL DEFAULT 0
);

INSERT INTO sample_status_counts (status, samples)
SELECT status, count(*) FROM samples GROUP BY status;
