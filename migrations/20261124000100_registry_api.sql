-- The schema registry's modes (Confluent's READWRITE, READONLY, READONLY_OVERRIDE, IMPORT):
-- the global mode under subject '', others per subject. READONLY refuses registrations and
-- deletions; IMPORT lets a registration carry its own id and version (for copying a
-- registry's contents) and skips the compatibility check.
CREATE TABLE schema_registry_modes (
    subject       text        PRIMARY KEY,
    mode          text        NOT NULL
);

INSERT INTO schema_registry_modes (subject, mode) VALUES ('', 'READWRITE');
