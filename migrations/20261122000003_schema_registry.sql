-- The project's own Confluent-compatible Schema Registry (local runs and tests).

-- Each distinct schema once, with its global id; identity is the Avro canonical form.
CREATE TABLE schema_registry_schemas (
    id            serial      PRIMARY KEY,
    canonical     text        NOT NULL UNIQUE,
    schema        text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Versions of each subject.
CREATE TABLE schema_registry_versions (
    subject       text        NOT NULL,
    version       integer     NOT NULL,
    schema_id     integer     NOT NULL REFERENCES schema_registry_schemas (id),
    deleted       boolean     NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, version)
);

CREATE INDEX schema_registry_versions_by_schema ON schema_registry_versions (schema_id);

-- Compatibility levels: the global level under subject '', others per subject.
CREATE TABLE schema_registry_config (
    subject       text        PRIMARY KEY,
    compatibility text        NOT NULL
);

INSERT INTO schema_registry_config (subject, compatibility) VALUES ('', 'BACKWARD');
