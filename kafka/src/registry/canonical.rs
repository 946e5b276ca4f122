//! Schema identity: the text that decides whether two registered schemas are "the same
//! schema" (same id, no new version, no compatibility check), with and without Confluent's
//! opt-in `?normalize=true`.
//!
//! # Identity ([`identity`])
//!
//! Confluent identifies an Avro schema by its full text as Avro re-serialises it: defaults,
//! `doc`, aliases, logical types, `order` and custom properties all count. It does **not**
//! use Avro's "Parsing Canonical Form" (apache-avro's `Schema::canonical_form()`), which drops
//! exactly those; using it made "remove a default" re-use the old id and skip the
//! compatibility check that Confluent answers with a 409.
//!
//! Here the identity is the schema's JSON value re-serialised without whitespace and with the
//! keys of every object in sorted order. Sorted, not original, key order, for two reasons:
//!
//! - Confluent's identity does not depend on key order either: it re-serialises the parsed
//!   schema in Avro's own fixed key order, so `{"name":"R","type":"record",...}` and
//!   `{"type":"record","name":"R",...}` get the same id there. Key order carries no meaning
//!   anywhere in an Avro schema (fields and symbols are arrays, whose order is kept).
//! - The workspace's `serde_json` is built without `preserve_order`, and turning that feature
//!   on would change, through feature unification, the key order of every JSON document the
//!   workspace's crates write (API bodies, stored payloads). Sorting needs no feature at all.
//!
//! Deliberate differences from Confluent, all in the direction of *more* distinct ids (never
//! merging two schemas Confluent keeps apart): Avro Java also writes `{"type":"int"}` as
//! `"int"`, drops `"order":"ascending"` (the default) and writes nested names relative to the
//! enclosing namespace; here those spellings stay distinct. Registering one of them after the
//! other adds a version (which passes any compatibility check, being equivalent) instead of
//! returning the existing id. `?normalize=true` ([`normalized`]) makes them equal.
//!
//! # Normalisation ([`normalized`], for `?normalize=true`)
//!
//! Follows Confluent's `AvroSchemaUtils.toNormalizedString` (used by `AvroSchema.normalize()`):
//!
//! - named types (record, enum, fixed) are written with their **full name** first
//!   (`{"name":"ns.R","type":"record",...}`), never with a separate `namespace`; a named type
//!   that appears again is written as its quoted full name; references are fully qualified;
//! - primitive types without properties become their bare name (`{"type":"string"}` →
//!   `"string"`); Avro's reserved attributes that have no meaning on a primitive, array or map
//!   (`doc`, `name`, `namespace`, `aliases`, ...) are dropped as Avro's parser drops them;
//! - a logical type follows `type` (`"logicalType"`, and for `decimal` `"precision"` and,
//!   when not 0, `"scale"`);
//! - then `symbols` / `size` / `fields`, `doc` (when not empty), `aliases` (full names,
//!   sorted), the enum `default`, and the custom properties **sorted by key**;
//! - a field is `{"name","type"}`, then `order` (only when not the default `ascending`, as
//!   Confluent's stored text after its re-parse), `doc`, `aliases` (sorted), `default`, and its
//!   custom properties sorted by key.
//!
//! Confluent then stores Avro's re-serialisation of that text; only equality matters for the
//! registry's identity, and two schemas normalise to the same text here exactly when they do
//! there, for the cases tested below.

use serde_json::{Map, Value};

/// The text a schema is stored and compared under (see the module documentation).
pub fn identity(text: &str) -> Result<String, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the schema is not valid JSON: {e}"))?;
    let mut out = String::new();
    write_sorted(&value, &mut out);
    Ok(out)
}

/// Compact JSON with every object's keys sorted, whatever order `serde_json`'s map keeps
/// (it keeps insertion order if any crate in a build enables its `preserve_order`).
fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_sorted(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The normalised form of a schema, for `?normalize=true` (see the module documentation).
pub fn normalized(text: &str) -> Result<String, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the schema is not valid JSON: {e}"))?;
    let mut out = String::new();
    Normalizer {
        defined: Vec::new(),
    }
    .build(&value, None, &mut out)?;
    Ok(out)
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Attributes Avro's parser gives a meaning to (Avro Java's `SCHEMA_RESERVED`); on a
/// primitive, array or map the ones that do not apply are dropped, not kept as properties.
const SCHEMA_RESERVED: [&str; 10] = [
    "doc",
    "fields",
    "items",
    "name",
    "namespace",
    "size",
    "symbols",
    "values",
    "type",
    "aliases",
];

const FIELD_RESERVED: [&str; 6] = ["name", "type", "doc", "default", "aliases", "order"];

const LOGICAL_TYPES: [&str; 13] = [
    "decimal",
    "big-decimal",
    "uuid",
    "date",
    "time-millis",
    "time-micros",
    "timestamp-millis",
    "timestamp-micros",
    "timestamp-nanos",
    "local-timestamp-millis",
    "local-timestamp-micros",
    "local-timestamp-nanos",
    "duration",
];

struct Normalizer {
    /// Full names of the named types already written out.
    defined: Vec<String>,
}

fn json(value: &Value) -> String {
    // A `Value` always serialises.
    serde_json::to_string(value).unwrap_or_default()
}

fn quoted(s: &str) -> String {
    json(&Value::String(s.to_owned()))
}

fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn namespace_of(full: &str) -> Option<&str> {
    full.rsplit_once('.').map(|(ns, _)| ns)
}

/// The logical type written right after `type`, with the keys it consumes.
fn logical(obj: &Map<String, Value>, out: &mut String) -> Vec<&'static str> {
    let Some(Value::String(lt)) = obj.get("logicalType") else {
        return Vec::new();
    };
    if !LOGICAL_TYPES.contains(&lt.as_str()) {
        // Unknown logical types stay ordinary properties, as in Avro.
        return Vec::new();
    }
    out.push_str(",\"logicalType\":");
    out.push_str(&quoted(lt));
    if lt == "decimal" {
        if let Some(p) = obj.get("precision") {
            out.push_str(",\"precision\":");
            out.push_str(&json(p));
        }
        if let Some(s) = obj.get("scale").filter(|s| s.as_i64() != Some(0)) {
            out.push_str(",\"scale\":");
            out.push_str(&json(s));
        }
        return vec!["logicalType", "precision", "scale"];
    }
    vec!["logicalType"]
}

/// Custom properties, sorted by key (serde_json's map iterates in key order).
fn props(obj: &Map<String, Value>, reserved: &[&str], consumed: &[&str], out: &mut String) {
    for (key, value) in obj {
        if reserved.contains(&key.as_str()) || consumed.contains(&key.as_str()) {
            continue;
        }
        out.push(',');
        out.push_str(&quoted(key));
        out.push(':');
        out.push_str(&json(value));
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

impl Normalizer {
    fn build(&mut self, schema: &Value, ns: Option<&str>, out: &mut String) -> Result<(), String> {
        match schema {
            Value::String(name) => {
                out.push_str(&quoted(&self.reference(name, ns)));
                Ok(())
            }
            Value::Array(branches) => {
                out.push('[');
                for (i, branch) in branches.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.build(branch, ns, out)?;
                }
                out.push(']');
                Ok(())
            }
            Value::Object(obj) => self.object(obj, ns, out),
            other => Err(format!("not an Avro schema: {other}")),
        }
    }

    fn reference(&self, name: &str, ns: Option<&str>) -> String {
        if PRIMITIVES.contains(&name) {
            return name.to_owned();
        }
        let qualified = full_name(name, ns);
        if self.defined.contains(&qualified) || !self.defined.iter().any(|d| d == name) {
            qualified
        } else {
            name.to_owned()
        }
    }

    fn object(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        out: &mut String,
    ) -> Result<(), String> {
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            // `{"type": {...}}` or `{"type": [...]}`: the wrapper adds nothing.
            Some(nested @ (Value::Object(_) | Value::Array(_))) => {
                return self.build(nested, ns, out);
            }
            _ => return Err("a schema object needs a \"type\"".to_owned()),
        };
        match ty {
            "record" | "error" | "enum" | "fixed" => self.named(ty, obj, ns, out),
            "array" | "map" => {
                let (key, items) = if ty == "array" {
                    ("items", obj.get("items"))
                } else {
                    ("values", obj.get("values"))
                };
                let items = items.ok_or_else(|| format!("an {ty} needs \"{key}\""))?;
                out.push_str(&format!("{{\"type\":\"{ty}\",\"{key}\":"));
                self.build(items, ns, out)?;
                let consumed = logical(obj, out);
                props(obj, &SCHEMA_RESERVED, &consumed, out);
                out.push('}');
                Ok(())
            }
            t if PRIMITIVES.contains(&t) => {
                let mut rest = String::new();
                let consumed = logical(obj, &mut rest);
                props(obj, &SCHEMA_RESERVED, &consumed, &mut rest);
                if rest.is_empty() {
                    out.push_str(&quoted(t));
                } else {
                    out.push_str(&format!("{{\"type\":\"{t}\"{rest}}}"));
                }
                Ok(())
            }
            // `{"type": "SomeNamedType"}`: a reference.
            name => {
                out.push_str(&quoted(&self.reference(name, ns)));
                Ok(())
            }
        }
    }

    fn named(
        &mut self,
        ty: &str,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        out: &mut String,
    ) -> Result<(), String> {
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a {ty} needs a \"name\""))?;
        let own_ns = match obj.get("namespace") {
            Some(Value::String(n)) => Some(n.as_str()),
            Some(Value::Null) => None,
            _ => ns,
        };
        let full = full_name(name, own_ns);
        if self.defined.contains(&full) {
            out.push_str(&quoted(&full));
            return Ok(());
        }
        self.defined.push(full.clone());
        let inner_ns = namespace_of(&full).map(str::to_owned);
        let inner_ns = inner_ns.as_deref();
        out.push_str(&format!("{{\"name\":{},\"type\":\"{ty}\"", quoted(&full)));
        match ty {
            "enum" => {
                out.push_str(",\"symbols\":");
                out.push_str(&json(
                    obj.get("symbols").unwrap_or(&Value::Array(Vec::new())),
                ));
            }
            "fixed" => {
                out.push_str(",\"size\":");
                out.push_str(&json(obj.get("size").unwrap_or(&Value::Null)));
            }
            _ => {
                out.push_str(",\"fields\":[");
                let fields = match obj.get("fields") {
                    Some(Value::Array(fields)) => fields.as_slice(),
                    _ => return Err(format!("record {full} needs \"fields\"")),
                };
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.field(field, inner_ns, out)?;
                }
                out.push(']');
            }
        }
        let consumed = logical(obj, out);
        if let Some(doc) = obj.get("doc").filter(|d| d.as_str() != Some("")) {
            out.push_str(",\"doc\":");
            out.push_str(&json(doc));
        }
        let mut aliases: Vec<String> = string_list(obj.get("aliases"))
            .iter()
            .map(|a| full_name(a, inner_ns))
            .collect();
        if !aliases.is_empty() {
            aliases.sort();
            aliases.dedup();
            out.push_str(",\"aliases\":");
            out.push_str(&json(&Value::from(aliases)));
        }
        let mut reserved = SCHEMA_RESERVED.to_vec();
        if ty == "enum" {
            if let Some(default) = obj.get("default") {
                out.push_str(",\"default\":");
                out.push_str(&json(default));
            }
            reserved.push("default");
        }
        props(obj, &reserved, &consumed, out);
        out.push('}');
        Ok(())
    }

    fn field(&mut self, field: &Value, ns: Option<&str>, out: &mut String) -> Result<(), String> {
        let Value::Object(obj) = field else {
            return Err("a record field must be an object".to_owned());
        };
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a record field needs a \"name\"")?;
        let ty = obj
            .get("type")
            .ok_or_else(|| format!("field {name} needs a \"type\""))?;
        out.push_str(&format!("{{\"name\":{},\"type\":", quoted(name)));
        self.build(ty, ns, out)?;
        if let Some(order) = obj.get("order").filter(|o| o.as_str() != Some("ascending")) {
            out.push_str(",\"order\":");
            out.push_str(&json(order));
        }
        if let Some(doc) = obj.get("doc") {
            out.push_str(",\"doc\":");
            out.push_str(&json(doc));
        }
        let mut aliases = string_list(obj.get("aliases"));
        if !aliases.is_empty() {
            aliases.sort();
            aliases.dedup();
            out.push_str(",\"aliases\":");
            out.push_str(&json(&Value::from(aliases)));
        }
        if let Some(default) = obj.get("default") {
            out.push_str(",\"default\":");
            out.push_str(&json(default));
        }
        props(obj, &FIELD_RESERVED, &[], out);
        out.push('}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"type":"record","name":"Sample","namespace":"lab","fields":[
        {"name":"id","type":"string"},
        {"name":"volume","type":"int","default":0}]}"#;

    fn id(text: &str) -> String {
        identity(text).expect("valid JSON")
    }

    fn with_volume(field: &str) -> String {
        format!(
            r#"{{"type":"record","name":"Sample","namespace":"lab","fields":[{{"name":"id","type":"string"}},{field}]}}"#
        )
    }

    #[test]
    fn formatting_alone_does_not_change_the_identity() {
        let compact = r#"{"type":"record","name":"Sample","namespace":"lab","fields":[{"name":"id","type":"string"},{"name":"volume","type":"int","default":0}]}"#;
        assert_eq!(id(BASE), id(compact));
        // Nor does key order, as in Confluent (which re-serialises in Avro's own order).
        let reordered = r#"{"fields":[{"type":"string","name":"id"},{"default":0,"name":"volume","type":"int"}],"namespace":"lab","name":"Sample","type":"record"}"#;
        assert_eq!(id(BASE), id(reordered));
    }

    #[test]
    fn every_attribute_avro_keeps_changes_the_identity() {
        let base = id(BASE);
        let changed = [
            (
                "default changed",
                r#"{"name":"volume","type":"int","default":1}"#,
            ),
            ("default removed", r#"{"name":"volume","type":"int"}"#),
            (
                "doc added",
                r#"{"name":"volume","type":"int","default":0,"doc":"µl"}"#,
            ),
            (
                "alias added",
                r#"{"name":"volume","type":"int","default":0,"aliases":["vol"]}"#,
            ),
            (
                "logicalType added",
                r#"{"name":"volume","type":{"type":"int","logicalType":"date"},"default":0}"#,
            ),
            (
                "custom property added",
                r#"{"name":"volume","type":"int","default":0,"unit":"ul"}"#,
            ),
            (
                "order added",
                r#"{"name":"volume","type":"int","default":0,"order":"descending"}"#,
            ),
        ];
        for (what, field) in changed {
            assert_ne!(base, id(&with_volume(field)), "{what}");
        }
        // The same field spelled the same way is the same schema.
        assert_eq!(
            base,
            id(&with_volume(
                r#"{"name":"volume","type":"int","default":0}"#
            ))
        );
    }

    #[test]
    fn doc_changes_change_the_identity() {
        let a = r#"{"type":"enum","name":"E","symbols":["A"],"doc":"one"}"#;
        let b = r#"{"type":"enum","name":"E","symbols":["A"],"doc":"two"}"#;
        assert_ne!(id(a), id(b));
    }

    #[test]
    fn identity_refuses_what_is_not_json() {
        assert!(identity("{not json").is_err());
        assert!(normalized("{not json").is_err());
    }

    #[test]
    fn normalize_writes_primitives_by_name() {
        assert_eq!(normalized(r#"{"type":"string"}"#).unwrap(), r#""string""#);
        assert_eq!(
            normalized(r#"{"type":"string"}"#),
            normalized(r#""string""#)
        );
        // Without normalisation they are different texts, hence different schemas.
        assert_ne!(id(r#"{"type":"string"}"#), id(r#""string""#));
        // A primitive with a property keeps it.
        assert_eq!(
            normalized(r#"{"type":"long","connect.version":1,"connect.name":"T"}"#).unwrap(),
            r#"{"type":"long","connect.name":"T","connect.version":1}"#
        );
    }

    #[test]
    fn normalize_qualifies_names_and_orders_keys() {
        let a = r#"{"namespace":"lab","name":"Sample","type":"record","fields":[
            {"type":{"type":"enum","name":"State","symbols":["NEW","DONE"]},"name":"state"},
            {"name":"previous","type":["null","State"],"default":null}]}"#;
        let b = r#"{"type":"record","name":"lab.Sample","fields":[
            {"name":"state","type":{"name":"lab.State","type":"enum","symbols":["NEW","DONE"]}},
            {"default":null,"type":["null",{"type":"lab.State"}],"name":"previous"}]}"#;
        let expected = r#"{"name":"lab.Sample","type":"record","fields":[{"name":"state","type":{"name":"lab.State","type":"enum","symbols":["NEW","DONE"]}},{"name":"previous","type":["null","lab.State"],"default":null}]}"#;
        assert_eq!(normalized(a).unwrap(), expected);
        assert_eq!(normalized(b).unwrap(), expected);
    }

    #[test]
    fn normalize_keeps_what_identity_keeps() {
        let plain = normalized(BASE).unwrap();
        for field in [
            r#"{"name":"volume","type":"int"}"#,
            r#"{"name":"volume","type":"int","default":0,"doc":"d"}"#,
            r#"{"name":"volume","type":"int","default":0,"aliases":["v"]}"#,
            r#"{"name":"volume","type":{"type":"int","logicalType":"date"},"default":0}"#,
            r#"{"name":"volume","type":"int","default":0,"unit":"ul"}"#,
        ] {
            assert_ne!(plain, normalized(&with_volume(field)).unwrap(), "{field}");
        }
        // The default order and the order of aliases do not count.
        assert_eq!(
            normalized(&with_volume(
                r#"{"name":"volume","type":"int","default":0,"order":"ascending","aliases":["b","a"]}"#
            )),
            normalized(&with_volume(
                r#"{"name":"volume","type":"int","default":0,"aliases":["a","b"]}"#
            ))
        );
    }

    #[test]
    fn normalize_matches_confluents_example_with_connect_properties() {
        // The shape of Confluent's AvroSchemaTest.testNormalizationPreservesMetadataForPrimitiveTypes:
        // custom properties on a nested primitive and on records survive, sorted by key.
        let text = r#"{"connect.name":"s.Envelope","fields":[{"default":null,"name":"before",
            "type":["null",{"connect.name":"s.Value","fields":[{"name":"created_at",
            "type":{"connect.name":"T","connect.version":1,"type":"long"}}],"name":"Value","type":"record"}]},
            {"default":null,"name":"after","type":["null","Value"]}],"name":"Envelope","namespace":"s","type":"record"}"#;
        assert_eq!(
            normalized(text).unwrap(),
            r#"{"name":"s.Envelope","type":"record","fields":[{"name":"before","type":["null",{"name":"s.Value","type":"record","fields":[{"name":"created_at","type":{"type":"long","connect.name":"T","connect.version":1}}],"connect.name":"s.Value"}],"default":null},{"name":"after","type":["null","s.Value"],"default":null}],"connect.name":"s.Envelope"}"#
        );
    }
}
