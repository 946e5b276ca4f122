-- A realistic lab, loaded in SQL for web/benches/lab_scale.rs: 200 freezers (120 at
-- −80 °C, 40 at −20 °C, 30 at 4 °C, 10 at room temperature) × 10 racks × 10 boxes =
-- 20,000 boxes, alternating 9×9 and 10×10; 1,000,000 samples, the first 800,000 stored
-- 40 to a box, the rest registered, received, validated (not stored), rejected or
-- disposed. The event log, the claims and the read tables are written together, exactly
-- as the application writes them, so they agree.

CREATE TEMP TABLE lab_freezers AS
SELECT i,
       md5('freezer-' || i)::uuid AS id,
       'FRZ-' || lpad(i::text, 3, '0') AS code,
       CASE WHEN i <= 120 THEN 'MINUS_80' WHEN i <= 160 THEN 'MINUS_20'
            WHEN i <= 190 THEN 'PLUS_4' ELSE 'ROOM_TEMPERATURE' END AS zone
FROM generate_series(1, 200) AS i;

CREATE TEMP TABLE lab_racks AS
SELECT f.i, j, md5('rack-' || f.i || '-' || j)::uuid AS id,
       'RCK-' || lpad(f.i::text, 3, '0') || '-' || lpad(j::text, 2, '0') AS code,
       f.id AS parent, f.zone
FROM lab_freezers f, generate_series(1, 10) AS j;

CREATE TEMP TABLE lab_boxes AS
SELECT b, md5('box-' || b)::uuid AS id, 'BOX-' || lpad(b::text, 5, '0') AS code,
       r.id AS parent, k AS slot, r.zone,
       CASE WHEN b % 2 = 0 THEN 10 ELSE 9 END AS side
FROM (SELECT r.*, k, ((r.i - 1) * 10 + (r.j - 1)) * 10 + k AS b
      FROM lab_racks r, generate_series(1, 10) AS k) r;
CREATE UNIQUE INDEX ON lab_boxes (b);

-- Samples: n ≤ 800,000 stored in box (n - 1) / 40 + 1 at its ((n - 1) % 40)-th position.
CREATE TEMP TABLE lab_samples AS
SELECT n,
       md5('sample-' || n)::uuid AS id,
       'LAB-' || lpad(n::text, 7, '0') AS barcode,
       (ARRAY['BLOOD','PLASMA','SERUM','DNA','RNA','TISSUE','URINE','SALIVA','CSF','SWAB','CELLS','STOOL'])[n % 12 + 1] AS sample_type,
       CASE WHEN n <= 800000 THEN bx.zone ELSE 'MINUS_80' END AS zone,
       CASE WHEN n <= 800000 THEN 'in_storage'
            ELSE (ARRAY['registered','received','validated','rejected','disposed'])[n % 5 + 1] END AS status,
       bx.id AS box_id, bx.code AS box_code,
       CASE WHEN n <= 800000 THEN
            chr(65 + ((n - 1) % 40) / bx.side) || (((n - 1) % 40) % bx.side + 1)::text END AS position,
       'MRN-' || (n % 50000)::text AS patient,
       timestamptz '2026-01-01 00:00:00+00' + (n * interval '20 seconds') AS at
FROM generate_series(1, 1000000) AS n
LEFT JOIN lab_boxes bx ON n <= 800000 AND bx.b = (n - 1) / 40 + 1;

-- The events. Metadata as the store writes it; one loader command per event.
CREATE TEMP TABLE lab_events (
    aggregate_type text, aggregate_id uuid, version bigint, event_type text,
    schema_version int, payload jsonb, at timestamptz
);

INSERT INTO lab_events
SELECT 'StorageUnit', id, 1, 'FreezerCreated', 1,
       jsonb_build_object('storage_unit_id', id, 'code', code, 'name', 'Freezer ' || i,
                          'temperature_zone', zone, 'slots', 10),
       timestamptz '2025-12-01 00:00:00+00'
FROM lab_freezers;
INSERT INTO lab_events
SELECT 'StorageUnit', id, 1, 'RackCreated', 1,
       jsonb_build_object('storage_unit_id', id, 'code', code, 'name', code,
                          'temperature_zone', zone, 'parent_id', parent, 'slot', j, 'slots', 10),
       timestamptz '2025-12-01 00:00:01+00'
FROM lab_racks;
INSERT INTO lab_events
SELECT 'StorageUnit', id, 1, 'BoxCreated', 1,
       jsonb_build_object('storage_unit_id', id, 'code', code, 'name', code,
                          'temperature_zone', zone, 'parent_id', parent, 'slot', slot,
                          'rows', side, 'columns', side),
       timestamptz '2025-12-01 00:00:02+00'
FROM lab_boxes;

INSERT INTO lab_events
SELECT 'Sample', id, 1, 'SampleRegistered', 2,
       jsonb_build_object('sample_id', id, 'barcode', barcode, 'sample_type', sample_type,
                          'volume_ul', '500', 'temperature_zone', zone, 'patient_ref', patient,
                          'collected_at', NULL, 'collected_by', NULL),
       at
FROM lab_samples;
INSERT INTO lab_events
SELECT 'Sample', id, 2, 'SampleReceived', 2, jsonb_build_object('notes', NULL), at + interval '1 minute'
FROM lab_samples WHERE status <> 'registered';
INSERT INTO lab_events
SELECT 'Sample', id, 3, 'SampleValidated', 2,
       jsonb_build_object('notes', NULL, 'signed_by_id', '00000000-0000-4000-8000-00000000a11c',
                          'signed_by', 'Loader', 'signature_meaning', 'performed',
                          'signed_at', to_char((at + interval '2 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
       at + interval '2 minutes'
FROM lab_samples WHERE status IN ('in_storage', 'validated', 'disposed');
INSERT INTO lab_events
SELECT 'Sample', id, 3, 'SampleRejected', 2,
       jsonb_build_object('reason', 'haemolysed', 'signed_by_id', '00000000-0000-4000-8000-00000000a11c',
                          'signed_by', 'Loader', 'signature_meaning', 'performed',
                          'signed_at', to_char((at + interval '2 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
       at + interval '2 minutes'
FROM lab_samples WHERE status = 'rejected';
INSERT INTO lab_events
SELECT 'Sample', id, 4, 'SampleStored', 2,
       jsonb_build_object('box_id', box_id, 'box_code', box_code, 'position', position),
       at + interval '3 minutes'
FROM lab_samples WHERE status = 'in_storage';
INSERT INTO lab_events
SELECT 'Sample', id, 4, 'SampleDisposed', 2,
       jsonb_build_object('reason', 'used up', 'from_box_id', NULL, 'from_position', NULL,
                          'signed_by_id', '00000000-0000-4000-8000-00000000a11c',
                          'signed_by', 'Loader', 'signature_meaning', 'performed',
                          'signed_at', to_char((at + interval '3 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
       at + interval '3 minutes'
FROM lab_samples WHERE status = 'disposed';

INSERT INTO events (aggregate_type, aggregate_id, version, event_id, event_type,
                    schema_version, payload, metadata, recorded_at)
SELECT aggregate_type, aggregate_id, version,
       md5('event-' || aggregate_id || '-' || version)::uuid, event_type, schema_version, payload,
       jsonb_build_object('user', 'Loader', 'command_id', md5('cmd-' || aggregate_id || '-' || version)::uuid,
                          'correlation_id', md5('cmd-' || aggregate_id || '-' || version)::uuid,
                          'causation_id', md5('cmd-' || aggregate_id || '-' || version)::uuid),
       at
FROM lab_events ORDER BY at, aggregate_id, version;

INSERT INTO streams (aggregate_id, aggregate_type, version)
SELECT aggregate_id, min(aggregate_type), max(version) FROM lab_events GROUP BY aggregate_id;

INSERT INTO unique_claims (scope, value, aggregate_id)
SELECT 'barcode', barcode, id FROM lab_samples
UNION ALL SELECT 'storage-position', box_id || '/' || position, id FROM lab_samples WHERE status = 'in_storage'
UNION ALL SELECT 'unit-code', code, id FROM lab_freezers
UNION ALL SELECT 'unit-code', code, id FROM lab_racks
UNION ALL SELECT 'unit-code', code, id FROM lab_boxes
UNION ALL SELECT 'storage-slot', parent || '/' || j, id FROM lab_racks
UNION ALL SELECT 'storage-slot', parent || '/' || slot, id FROM lab_boxes;

-- The read tables, as the projections would have left them.
INSERT INTO storage_units (unit_id, kind, code, name, temperature_zone, parent_id, slot, slots,
                           grid_rows, grid_columns, capacity, created_at, created_by,
                           last_changed_at, last_changed_by, version)
SELECT id, 'freezer', code, 'Freezer ' || i, zone, NULL::uuid, NULL::int, 10, NULL::int, NULL::int, 0,
       timestamptz '2025-12-01 00:00:00+00', 'Loader', timestamptz '2025-12-01 00:00:00+00', 'Loader', 1
FROM lab_freezers
UNION ALL
SELECT id, 'rack', code, code, zone, parent, j, 10, NULL::int, NULL::int, 0,
       timestamptz '2025-12-01 00:00:01+00', 'Loader', timestamptz '2025-12-01 00:00:01+00', 'Loader', 1
FROM lab_racks
UNION ALL
SELECT id, 'box', code, code, zone, parent, slot, NULL::int, side, side, side * side,
       timestamptz '2025-12-01 00:00:02+00', 'Loader', timestamptz '2025-12-01 00:00:02+00', 'Loader', 1
FROM lab_boxes;

INSERT INTO box_occupancy (box_id, occupied)
SELECT box_id, count(*) FROM lab_samples WHERE status = 'in_storage' GROUP BY box_id;

INSERT INTO samples (sample_id, barcode, sample_type, status, volume_ul, temperature_zone,
                     patient_ref, collected_at, collected_by, rejection_reason, registered_at,
                     registered_by, last_changed_at, last_changed_by, version, box_id, position,
                     stored_at)
SELECT id, barcode, sample_type, status, 500, zone, patient, NULL, NULL,
       CASE WHEN status = 'rejected' THEN 'haemolysed' END, at, 'Loader',
       at + CASE status WHEN 'registered' THEN interval '0' WHEN 'received' THEN interval '1 minute'
                        WHEN 'validated' THEN interval '2 minutes' WHEN 'rejected' THEN interval '2 minutes'
                        ELSE interval '3 minutes' END,
       'Loader',
       CASE status WHEN 'registered' THEN 1 WHEN 'received' THEN 2 WHEN 'validated' THEN 3
                   WHEN 'rejected' THEN 3 ELSE 4 END,
       CASE WHEN status = 'in_storage' THEN box_id END,
       CASE WHEN status = 'in_storage' THEN position END,
       CASE WHEN status = 'in_storage' THEN at + interval '3 minutes' END
FROM lab_samples;

DELETE FROM sample_status_counts;
INSERT INTO sample_status_counts (status, samples)
SELECT status, count(*) FROM samples GROUP BY status;

-- The projections start after everything loaded.
INSERT INTO projection_checkpoints (projection, transaction_id, position)
SELECT p, (SELECT max(transaction_id) FROM events), (SELECT max(position) FROM events)
FROM unnest(ARRAY['samples', 'storage']) AS p
ON CONFLICT (projection) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, position = EXCLUDED.position;
