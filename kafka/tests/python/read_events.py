#!/usr/bin/env python3
"""Reads TracSeq events off a Kafka topic the way a third-party consumer would.

    read_events.py --brokers HOST:PORT --registry URL --topic T --expect N

Uses Confluent's own Python client (confluent-kafka) and its Schema Registry
AvroDeserializer against our registry, and prints one JSON line per message:

    {"record_name": "org.tracseq.laboratory.SampleRegistered", "schema_id": 1,
     "partition": 0, "offset": 0, "key": "...", "headers": {...}, "value": {...}}

Values are made JSON-safe: Decimal -> str (scale kept, e.g. "10.250"),
datetime -> ISO 8601, UUID -> str. Exits non-zero with a message on stderr if
fewer than N messages arrive within the timeout (60 s by default).

kafka/tests/third_party.rs runs it; ./deploy-phase7.sh test installs the package.
"""

import argparse
import datetime
import decimal
import json
import struct
import sys
import time
import uuid

try:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    from confluent_kafka.schema_registry import (
        SchemaRegistryClient,
        topic_record_subject_name_strategy,
    )
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext
except ImportError as error:
    sys.exit(
        f"read_events.py: the Python package confluent-kafka with its Avro extras is missing "
        f"({error}); ./deploy-phase7.sh test installs it "
        f"(python3 -m pip install 'confluent-kafka[avro,schemaregistry]')"
    )


def json_safe(value):
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def record_name(registry, schema_ids, raw):
    """The writer schema's full name, from the schema id in the Confluent framing."""
    if raw is None or len(raw) < 5 or raw[0] != 0:
        raise ValueError(f"not in the Confluent wire format: {raw[:8]!r}")
    (schema_id,) = struct.unpack(">I", raw[1:5])
    if schema_id not in schema_ids:
        schema = json.loads(registry.get_schema(schema_id).schema_str)
        name = schema["name"]
        if "." not in name and schema.get("namespace"):
            name = f"{schema['namespace']}.{name}"
        schema_ids[schema_id] = name
    return schema_id, schema_ids[schema_id]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True, help="bootstrap servers, HOST:PORT")
    parser.add_argument("--registry", required=True, help="schema registry URL")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True, help="messages to wait for")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args()

    registry = SchemaRegistryClient({"url": args.registry})
    # Our producer registers subjects as <topic>-<record full name>; the deserializer
    # only needs the schema id, but is told the strategy as a real consumer would be.
    deserializer = AvroDeserializer(
        registry, conf={"subject.name.strategy": topic_record_subject_name_strategy}
    )
    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": f"read-events-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # Only matters for a group join; assign() below avoids one.
            "session.timeout.ms": 6000,
        }
    )
    deadline = time.monotonic() + args.timeout
    try:
        metadata = consumer.list_topics(args.topic, timeout=max(1.0, args.timeout / 4))
        topic = metadata.topics.get(args.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            sys.exit(f"read_events.py: topic {args.topic} not found on {args.brokers}")
        partitions = sorted(topic.partitions)
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])

        schema_ids = {}
        count = 0
        at_end = set()
        # Read at least --expect messages, then on until every partition is at its end.
        while time.monotonic() < deadline and (count < args.expect or len(at_end) < len(partitions)):
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                    continue
                sys.exit(f"read_events.py: consumer error: {message.error()}")
            at_end.discard(message.partition())
            raw = message.value()
            schema_id, name = record_name(registry, schema_ids, raw)
            ctx = SerializationContext(message.topic(), MessageField.VALUE, message.headers())
            value = deserializer(raw, ctx)
            key = message.key()
            line = {
                "record_name": name,
                "schema_id": schema_id,
                "partition": message.partition(),
                "offset": message.offset(),
                "key": key.decode("utf-8") if key is not None else None,
                "headers": {
                    k: (v.decode("utf-8") if v is not None else None)
                    for k, v in (message.headers() or [])
                },
                "value": json_safe(value),
            }
            print(json.dumps(line, sort_keys=True), flush=True)
            count += 1
    finally:
        consumer.close()

    if count < args.expect:
        sys.exit(
            f"read_events.py: only {count} of {args.expect} messages arrived on "
            f"{args.topic} within {args.timeout:g} s"
        )


if __name__ == "__main__":
    main()
