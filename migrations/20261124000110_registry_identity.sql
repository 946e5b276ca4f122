-- A schema's identity becomes its full text without whitespace (defaults, doc, aliases,
-- logical types and custom properties count), as in Confluent's registry, instead of the
-- Avro Parsing Canonical Form, which made "remove a default" look like no change.
-- Rows stored before hold the old form (identity_form 1); the registry recomputes them
-- from their text when it starts (RegistryStore::upgrade_identities). The default stays 1,
-- so rows an older registry binary still writes during a rolling upgrade are upgraded
-- too; the new code writes identity_form = 2 explicitly.
ALTER TABLE schema_registry_schemas ADD COLUMN identity_form smallint NOT NULL DEFAULT 1;
