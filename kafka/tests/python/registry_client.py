#!/usr/bin/env python3
"""Drives our schema registry with Confluent's own Python client, as a third party would.

    registry_client.py --registry URL [--token TOKEN]

Goes through SchemaRegistryClient's register, lookup, latest and numbered versions,
compatibility tests and levels, soft and permanent deletes of a version and of a subject,
and reading a soft-deleted version's schema by id with a fresh (uncached) client. Prints
one JSON line per step that passed, {"step": "..."}; on the first wrong answer it exits
non-zero with the step and what came back on stderr.

kafka/tests/third_party.rs runs it; ./deploy-phase7.sh test installs the package.
"""

import argparse
import json
import sys

try:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError
except ImportError as error:
    sys.exit(
        f"registry_client.py: the Python package confluent-kafka with its schema registry "
        f"extras is missing ({error}); ./deploy-phase7.sh test installs it "
        f"(python3 -m pip install 'confluent-kafka[avro,schemaregistry]')"
    )

SUBJECT = "tubes-value"


def record(*fields):
    return Schema(
        json.dumps(
            {
                "type": "record",
                "name": "Tube",
                "namespace": "org.example",
                "fields": list(fields),
            }
        ),
        "AVRO",
    )


V1 = record({"name": "barcode", "type": "string"})
V2 = record(
    {"name": "barcode", "type": "string"},
    {"name": "volume", "type": "long", "default": 0},
)
# A new field without a default: readers of it cannot read v2's data (BACKWARD).
BREAKING = record(
    {"name": "barcode", "type": "string"},
    {"name": "volume", "type": "long", "default": 0},
    {"name": "zone", "type": "string"},
)


def step(name):
    print(json.dumps({"step": name}), flush=True)


def fail(name, detail):
    sys.exit(f"registry_client.py: step {name!r} failed: {detail}")


def expect(name, condition, detail):
    if not condition:
        fail(name, detail)


def expect_error(name, call, status, code):
    try:
        got = call()
    except SchemaRegistryError as error:
        expect(
            name,
            (error.http_status_code, error.error_code) == (status, code),
            f"wanted HTTP {status} / {code}, got {error.http_status_code} / {error.error_code}: "
            f"{error.error_message}",
        )
        return error
    fail(name, f"wanted HTTP {status} / {code}, got an answer: {got!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument(
        "--token",
        help="the registry's SCHEMA_REGISTRY_TOKEN, sent as Authorization: Bearer",
    )
    args = parser.parse_args()
    conf = {"url": args.registry}
    if args.token:
        # The client's static bearer token; it insists on a logical cluster, which it
        # sends as a header our registry ignores.
        conf.update(
            {
                "bearer.auth.credentials.source": "STATIC_TOKEN",
                "bearer.auth.token": args.token,
                "bearer.auth.logical.cluster": "local",
            }
        )
    client = SchemaRegistryClient(conf)

    id1 = client.register_schema(SUBJECT, V1)
    id2 = client.register_schema(SUBJECT, V2)
    expect("register", id1 != id2, f"two schemas, one id {id1}")
    again = client.register_schema(SUBJECT, V1)
    expect("register", again == id1, f"re-registering gave {again}, not {id1}")
    expect(
        "register",
        client.register_schema("other-value", V1) == id1,
        "the same schema under another subject keeps its id",
    )
    step("register")

    found = client.lookup_schema(SUBJECT, V2)
    expect(
        "lookup_schema",
        (found.schema_id, found.version, found.subject) == (id2, 2, SUBJECT),
        f"{found}",
    )
    expect_error(
        "lookup_schema", lambda: client.lookup_schema(SUBJECT, BREAKING), 404, 40403
    )
    step("lookup_schema")

    latest = client.get_latest_version(SUBJECT)
    expect("get_latest_version", (latest.schema_id, latest.version) == (id2, 2), f"{latest}")
    first = client.get_version(SUBJECT, 1)
    expect(
        "get_version",
        first.schema_id == id1 and json.loads(first.schema.schema_str) == json.loads(V1.schema_str),
        f"{first}",
    )
    expect_error("get_version", lambda: SchemaRegistryClient(conf).get_version(SUBJECT, 9), 404, 40402)
    step("get_version")

    expect("get_compatibility", client.get_compatibility() == "BACKWARD", "global level")
    expect_error("get_compatibility", lambda: client.get_compatibility(SUBJECT), 404, 40408)
    expect(
        "test_compatibility",
        client.test_compatibility(SUBJECT, V2) is True,
        "v2 against itself",
    )
    expect(
        "test_compatibility",
        client.test_compatibility(SUBJECT, BREAKING) is False,
        "a new field without a default is not BACKWARD compatible",
    )
    expect_error("register", lambda: client.register_schema(SUBJECT, BREAKING), 409, 40901)
    step("test_compatibility")

    # The client hands back the response body, Confluent's {"compatibility": level}.
    answer = client.set_compatibility(SUBJECT, "FORWARD")
    expect("set_compatibility", answer == {"compatibility": "FORWARD"}, f"{answer!r}")
    expect("set_compatibility", client.get_compatibility(SUBJECT) == "FORWARD", "read back")
    expect(
        "test_compatibility",
        client.test_compatibility(SUBJECT, BREAKING) is True,
        "FORWARD: old readers ignore the new field",
    )
    id3 = client.register_schema(SUBJECT, BREAKING)
    step("set_compatibility")

    # Soft delete of a version: hidden from the subject, still readable by id.
    expect_error("delete_version", lambda: client.delete_version(SUBJECT, 3, permanent=True), 404, 40407)
    expect("delete_version", client.delete_version(SUBJECT, 3) == 3, "soft delete answers 3")
    expect("delete_version", client.get_versions(SUBJECT) == [1, 2], "version 3 hidden")
    expect(
        "delete_version",
        client.get_versions(SUBJECT, deleted=True) == [1, 2, 3],
        "version 3 listed with deleted=true",
    )
    fresh = SchemaRegistryClient(conf)
    expect(
        "delete_version",
        json.loads(fresh.get_schema(id3).schema_str) == json.loads(BREAKING.schema_str),
        "a soft-deleted version's schema stays readable by id",
    )
    expect("delete_version", client.delete_version(SUBJECT, 3, permanent=True) == 3, "permanent")
    expect(
        "delete_version",
        client.get_versions(SUBJECT, deleted=True) == [1, 2],
        "version 3 gone for good",
    )
    step("delete_version")

    # Soft, then permanent delete of the subject.
    expect_error("delete_subject", lambda: client.delete_subject(SUBJECT, permanent=True), 404, 40405)
    expect("delete_subject", client.delete_subject(SUBJECT) == [1, 2], "soft delete answers [1, 2]")
    expect("delete_subject", SUBJECT not in client.get_subjects(), "hidden from the listing")
    expect("delete_subject", SUBJECT in client.get_subjects(deleted=True), "listed with deleted=true")
    expect(
        "delete_subject",
        json.loads(SchemaRegistryClient(conf).get_schema(id2).schema_str) == json.loads(V2.schema_str),
        "a soft-deleted subject's schema stays readable by id",
    )
    expect_error("delete_subject", lambda: client.delete_subject(SUBJECT), 404, 40404)
    expect(
        "delete_subject",
        client.delete_subject(SUBJECT, permanent=True) == [1, 2],
        "permanent delete answers [1, 2]",
    )
    expect("delete_subject", SUBJECT not in client.get_subjects(deleted=True), "gone for good")
    expect_error("delete_subject", lambda: SchemaRegistryClient(conf).get_versions(SUBJECT), 404, 40401)
    # id1 is still used by other-value, so it answers; id2 is used by nothing any more.
    SchemaRegistryClient(conf).get_schema(id1)
    expect_error("delete_subject", lambda: SchemaRegistryClient(conf).get_schema(id2), 404, 40403)
    step("delete_subject")


if __name__ == "__main__":
    main()
