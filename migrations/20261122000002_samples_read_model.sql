-- Denormalised read table for the samples list and detail pages.

CREATE TABLE samples (
    sample_id         uuid        PRIMARY KEY,
    barcode           text        NOT NULL UNIQUE,
    sample_type       text        NOT NULL,
    status            text        NOT NULL,
    volume_ul         numeric(10, 3) NOT NULL,
    temperature_zone  text        NOT NULL,
    patient_ref       text,
    collected_at      timestamptz,
    collected_by      text,
    rejection_reason  text,
    registered_at     timestamptz NOT NULL,
    registered_by     text        NOT NULL,
    last_changed_at   timestamptz NOT NULL,
    last_changed_by   text        NOT NULL,
    version           bigint      NOT NULL
);

CREATE INDEX samples_barcode_prefix ON samples (barcode text_pattern_ops);
CREATE INDEX samples_recent ON samples (last_changed_at DESC, sample_id);
CREATE INDEX samples_status ON samples (status, last_changed_at DESC);

-- Generated barcodes draw their running number from here (never reused, no lock).
CREATE SEQUENCE barcode_seq;
