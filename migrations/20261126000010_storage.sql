-- Storage: the read tables of storage units, and where every sample is.
--
-- Nothing here enforces an invariant: the event store does (unique claims on positions
-- and slots; see cqrs/src/storage/mod.rs). These tables are projections and may briefly
-- lag the log; two samples of different streams may even be applied out of their
-- commit order, so a position is not unique here.

CREATE TABLE storage_units (
    unit_id             uuid        PRIMARY KEY,
    kind                text        NOT NULL CHECK (kind IN ('freezer', 'rack', 'box')),
    code                text        NOT NULL,
    name                text        NOT NULL,
    temperature_zone    text        NOT NULL,
    parent_id           uuid,
    slot                integer,
    slots               integer,
    grid_rows           integer,
    grid_columns        integer,
    -- Positions: a box's grid; racks and freezers sum their boxes' on read.
    capacity            integer     NOT NULL DEFAULT 0,
    decommissioned_at   timestamptz,
    decommission_reason text,
    last_celsius        numeric(5, 1),
    last_measured_at    timestamptz,
    open_excursion_id   uuid,
    created_at          timestamptz NOT NULL,
    created_by          text        NOT NULL,
    last_changed_at     timestamptz NOT NULL,
    last_changed_by     text        NOT NULL,
    version             bigint      NOT NULL
);

CREATE INDEX storage_units_code ON storage_units (code);
CREATE INDEX storage_units_children ON storage_units (parent_id, slot);
CREATE INDEX storage_units_kind_zone ON storage_units (kind, temperature_zone) WHERE decommissioned_at IS NULL;

-- Samples in each box, kept by the samples projection in the transaction that moves a
-- sample's row, so it never counts an event twice.
CREATE TABLE box_occupancy (
    box_id   uuid    PRIMARY KEY,
    occupied integer NOT NULL DEFAULT 0
);

CREATE TABLE temperature_excursions (
    excursion_id    uuid          PRIMARY KEY,
    unit_id         uuid          NOT NULL,
    celsius         numeric(5, 1) NOT NULL,
    allowed_min     numeric(5, 1) NOT NULL,
    allowed_max     numeric(5, 1) NOT NULL,
    measured_at     timestamptz   NOT NULL,
    raised_at       timestamptz   NOT NULL,
    resolved_at     timestamptz,
    resolved_by     text,
    resolution_note text
);

CREATE INDEX temperature_excursions_open ON temperature_excursions (raised_at DESC) WHERE resolved_at IS NULL;
CREATE INDEX temperature_excursions_unit ON temperature_excursions (unit_id, raised_at DESC);

ALTER TABLE samples
    ADD COLUMN box_id       uuid,
    ADD COLUMN position     text,
    ADD COLUMN stored_at    timestamptz,
    ADD COLUMN holder_id    uuid,
    ADD COLUMN holder       text,
    ADD COLUMN holder_since timestamptz,
    ADD COLUMN parent_id    uuid;

CREATE INDEX samples_in_box ON samples (box_id, position) WHERE box_id IS NOT NULL;
CREATE INDEX samples_children ON samples (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX samples_type_recent ON samples (sample_type, last_changed_at DESC);
CREATE INDEX samples_zone_recent ON samples (temperature_zone, last_changed_at DESC);
CREATE INDEX samples_patient ON samples (patient_ref) WHERE patient_ref IS NOT NULL;
