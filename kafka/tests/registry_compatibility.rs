//! The registry's compatibility checker against the compatibility vectors of the three
//! reference implementations, case by case with their expected answers. Pure: no database,
//! no network.
//!
//! Each group cites the upstream file it was ported from. The schemas are re-expressed as
//! Avro JSON (upstream builds several of them programmatically); the expected answers are
//! upstream's. `can_read(reader, writer)` is the reader/writer question; the registry levels
//! (`check_compatibility`) are exercised with Confluent's own cases.

use apache_avro::Schema;
use kafka::registry::{Compatibility, can_read, check_compatibility};

fn parse(text: &str) -> Schema {
    Schema::parse_str(text).unwrap_or_else(|e| panic!("schema does not parse: {e}\n{text}"))
}

fn problems(reader: &str, writer: &str) -> Vec<String> {
    can_read(&parse(reader), &parse(writer))
}

/// Runs every (reader, writer) case and fails once, listing every case that gave the wrong
/// answer, so that one wrong rule does not hide the others.
fn expect_all(expect_compatible: bool, cases: &[(&str, &str, &str)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, reader, writer)| problems(reader, writer).is_empty() != expect_compatible)
        .map(|(name, reader, writer)| {
            format!(
                "{name}: reader {reader} / writer {writer}: {:?}",
                problems(reader, writer)
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "expected {}, but:\n{}",
        if expect_compatible {
            "compatible"
        } else {
            "incompatible"
        },
        wrong.join("\n")
    );
}

/// Schemas of Avro's Java test suite, `lang/java/avro/src/test/java/org/apache/avro/TestSchemas.java`
/// (built there with `Schema.create*`), written out as JSON.
mod avro_schemas {
    pub const NULL: &str = r#""null""#;
    pub const BOOLEAN: &str = r#""boolean""#;
    pub const INT: &str = r#""int""#;
    pub const LONG: &str = r#""long""#;
    pub const FLOAT: &str = r#""float""#;
    pub const DOUBLE: &str = r#""double""#;
    pub const STRING: &str = r#""string""#;
    pub const BYTES: &str = r#""bytes""#;
    pub const INT_ARRAY: &str = r#"{"type":"array","items":"int"}"#;
    pub const LONG_ARRAY: &str = r#"{"type":"array","items":"long"}"#;
    pub const STRING_ARRAY: &str = r#"{"type":"array","items":"string"}"#;
    pub const INT_MAP: &str = r#"{"type":"map","values":"int"}"#;
    pub const LONG_MAP: &str = r#"{"type":"map","values":"long"}"#;
    pub const STRING_MAP: &str = r#"{"type":"map","values":"string"}"#;
    pub const ENUM1_AB: &str = r#"{"type":"enum","name":"Enum1","symbols":["A","B"]}"#;
    pub const ENUM1_AB_DEFAULT: &str =
        r#"{"type":"enum","name":"Enum1","symbols":["A","B"],"default":"A"}"#;
    pub const ENUM1_AB_NAMESPACE_1: &str =
        r#"{"type":"enum","name":"Enum1","namespace":"namespace1","symbols":["A","B"]}"#;
    pub const ENUM1_AB_NAMESPACE_2: &str =
        r#"{"type":"enum","name":"Enum1","namespace":"namespace2","symbols":["A","B"]}"#;
    pub const ENUM1_ABC: &str = r#"{"type":"enum","name":"Enum1","symbols":["A","B","C"]}"#;
    pub const ENUM1_BC: &str = r#"{"type":"enum","name":"Enum1","symbols":["B","C"]}"#;
    pub const ENUM2_AB: &str = r#"{"type":"enum","name":"Enum2","symbols":["A","B"]}"#;
    pub const ENUM_ABC_ENUM_DEFAULT_A: &str =
        r#"{"type":"enum","name":"Enum","symbols":["A","B","C"],"default":"A"}"#;
    pub const ENUM_AB_ENUM_DEFAULT_A: &str =
        r#"{"type":"enum","name":"Enum","symbols":["A","B"],"default":"A"}"#;
    pub const ENUM_ABC_ENUM_DEFAULT_A_RECORD: &str = r#"{"type":"record","name":"Record","fields":[
        {"name":"Field","type":{"type":"enum","name":"Schema","symbols":["A","B","C"],"default":"A"}}]}"#;
    pub const ENUM_AB_ENUM_DEFAULT_A_RECORD: &str = r#"{"type":"record","name":"Record","fields":[
        {"name":"Field","type":{"type":"enum","name":"Schema","symbols":["A","B"],"default":"A"}}]}"#;
    pub const ENUM_ABC_FIELD_DEFAULT_B_ENUM_DEFAULT_A_RECORD: &str = r#"{"type":"record","name":"Record","fields":[
        {"name":"Field","type":{"type":"enum","name":"Schema","symbols":["A","B","C"],"default":"A"},"default":"B"}]}"#;
    pub const ENUM_AB_FIELD_DEFAULT_A_ENUM_DEFAULT_B_RECORD: &str = r#"{"type":"record","name":"Record","fields":[
        {"name":"Field","type":{"type":"enum","name":"Schema","symbols":["A","B"],"default":"B"},"default":"A"}]}"#;
    pub const EMPTY_UNION: &str = r#"[]"#;
    pub const INT_UNION: &str = r#"["int"]"#;
    pub const LONG_UNION: &str = r#"["long"]"#;
    pub const FLOAT_UNION: &str = r#"["float"]"#;
    pub const DOUBLE_UNION: &str = r#"["double"]"#;
    pub const STRING_UNION: &str = r#"["string"]"#;
    pub const BYTES_UNION: &str = r#"["bytes"]"#;
    pub const INT_STRING_UNION: &str = r#"["int","string"]"#;
    pub const STRING_INT_UNION: &str = r#"["string","int"]"#;
    pub const INT_FLOAT_UNION: &str = r#"["int","float"]"#;
    pub const INT_LONG_UNION: &str = r#"["int","long"]"#;
    pub const INT_LONG_FLOAT_DOUBLE_UNION: &str = r#"["int","long","float","double"]"#;
    pub const EMPTY_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[]}"#;
    pub const EMPTY_RECORD2: &str = r#"{"type":"record","name":"Record2","fields":[]}"#;
    pub const A_INT_RECORD1: &str =
        r#"{"type":"record","name":"Record1","fields":[{"name":"a","type":"int"}]}"#;
    pub const A_LONG_RECORD1: &str =
        r#"{"type":"record","name":"Record1","fields":[{"name":"a","type":"long"}]}"#;
    pub const A_INT_B_INT_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[
        {"name":"a","type":"int"},{"name":"b","type":"int"}]}"#;
    // "D" + type: the field has a default.
    pub const A_DINT_RECORD1: &str =
        r#"{"type":"record","name":"Record1","fields":[{"name":"a","type":"int","default":0}]}"#;
    pub const A_INT_B_DINT_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[
        {"name":"a","type":"int"},{"name":"b","type":"int","default":0}]}"#;
    pub const A_DINT_B_DINT_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[
        {"name":"a","type":"int","default":0},{"name":"b","type":"int","default":0}]}"#;
    pub const A_DINT_B_DFIXED_4_BYTES_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[
        {"name":"a","type":"int","default":0},{"name":"b","type":{"type":"fixed","name":"Fixed","size":4}}]}"#;
    pub const A_DINT_B_DFIXED_8_BYTES_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[
        {"name":"a","type":"int","default":0},{"name":"b","type":{"type":"fixed","name":"Fixed","size":8}}]}"#;
    pub const A_DINT_B_DINT_STRING_UNION_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[
        {"name":"a","type":"int","default":0},{"name":"b","type":["int","string"],"default":0}]}"#;
    pub const A_DINT_B_DINT_UNION_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[
        {"name":"a","type":"int","default":0},{"name":"b","type":["int"],"default":0}]}"#;
    pub const A_DINT_B_DENUM_1_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[
        {"name":"a","type":"int","default":0},{"name":"b","type":{"type":"enum","name":"Enum1","symbols":["A","B"]}}]}"#;
    pub const A_DINT_B_DENUM_2_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[
        {"name":"a","type":"int","default":0},{"name":"b","type":{"type":"enum","name":"Enum2","symbols":["A","B"]}}]}"#;
    pub const FIXED_4_BYTES: &str = r#"{"type":"fixed","name":"Fixed","size":4}"#;
    pub const FIXED_8_BYTES: &str = r#"{"type":"fixed","name":"Fixed","size":8}"#;
    pub const NS_RECORD1: &str = r#"{"type":"record","name":"Record1","fields":[{"name":"f1","type":["null",
        {"type":"array","items":{"type":"record","name":"InnerRecord1","namespace":"ns1","fields":[{"name":"a","type":"int"}]}}]}]}"#;
    pub const NS_RECORD2: &str = r#"{"type":"record","name":"Record1","fields":[{"name":"f1","type":["null",
        {"type":"array","items":{"type":"record","name":"InnerRecord1","namespace":"ns2","fields":[{"name":"a","type":"int"}]}}]}]}"#;
    pub const WITHOUT_NS: &str =
        r#"{"type":"record","name":"Record","fields":[{"name":"f1","type":"int"}]}"#;
    pub const WITH_NS: &str =
        r#"{"type":"record","name":"ns.Record","fields":[{"name":"f1","type":"int"}]}"#;
    pub const INT_LIST_RECORD: &str = r#"{"type":"record","name":"List","fields":[
        {"name":"head","type":"int"},{"name":"tail","type":"List"}]}"#;
    pub const LONG_LIST_RECORD: &str = r#"{"type":"record","name":"List","fields":[
        {"name":"head","type":"long"},{"name":"tail","type":"List"}]}"#;
}

/// Apache Avro (Java), `lang/java/avro/src/test/java/org/apache/avro/TestSchemaCompatibility*.java`:
/// the reader/writer pairs and their expected COMPATIBLE / INCOMPATIBLE answers. This is the
/// checker Confluent's registry calls.
mod avro_java {
    use super::avro_schemas::*;
    use super::*;

    /// The writer of `TestSchemaCompatibility`'s `validateSchema*` cases (an unnamed record there).
    const OLD_FIELDS_WRITER: &str = r#"{"type":"record","name":"R","fields":[
        {"name":"oldfield1","type":"int"},{"name":"oldfield2","type":"string"}]}"#;

    #[test]
    fn validate_schema_pairs() {
        expect_all(
            true,
            &[
                (
                    "missing field",
                    r#"{"type":"record","name":"R","fields":[{"name":"oldfield1","type":"int"}]}"#,
                    OLD_FIELDS_WRITER,
                ),
                (
                    "missing second field",
                    r#"{"type":"record","name":"R","fields":[{"name":"oldfield2","type":"string"}]}"#,
                    OLD_FIELDS_WRITER,
                ),
                (
                    "all fields",
                    r#"{"type":"record","name":"R","fields":[{"name":"oldfield1","type":"int"},{"name":"oldfield2","type":"string"}]}"#,
                    OLD_FIELDS_WRITER,
                ),
                (
                    "new field with default",
                    r#"{"type":"record","name":"R","fields":[{"name":"oldfield1","type":"int"},{"name":"newfield1","type":"int","default":42}]}"#,
                    OLD_FIELDS_WRITER,
                ),
                ("array writer, array reader", STRING_ARRAY, STRING_ARRAY),
                ("primitive writer", STRING, STRING),
            ],
        );
        expect_all(
            false,
            &[
                (
                    "new field without default",
                    r#"{"type":"record","name":"R","fields":[{"name":"oldfield1","type":"int"},{"name":"newfield1","type":"int"}]}"#,
                    OLD_FIELDS_WRITER,
                ),
                ("array writer, map reader", STRING_MAP, STRING_ARRAY),
                ("primitive writer, other primitive reader", INT, STRING),
            ],
        );
        let found = problems(
            r#"{"type":"record","name":"R","fields":[{"name":"oldfield1","type":"int"},{"name":"newfield1","type":"int"}]}"#,
            OLD_FIELDS_WRITER,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("newfield1"), "{found:?}");
    }

    #[test]
    fn union_reader_must_contain_all_writer_branches() {
        // unionReaderWriterSubsetIncompatibility: the missing branch is the writer's third.
        let found = problems(r#"["int","string"]"#, r#"["int","string","long"]"#);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("/2:"), "{found:?}");
    }

    #[test]
    fn optional_writer_field_cannot_be_read_as_mandatory() {
        // unionWriterSimpleReaderIncompatibility: reader `int`, writer `["null","int"]`
        // (SchemaBuilder's optionalInt): the writer's null branch is unreadable.
        let found = problems(
            r#"{"type":"record","name":"Account","fields":[{"name":"age","type":"int"}]}"#,
            r#"{"type":"record","name":"Account","fields":[{"name":"age","type":["null","int"],"default":null}]}"#,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("/fields/age/0:") && found[0].contains("null"),
            "{found:?}"
        );
    }

    /// `COMPATIBLE_READER_WRITER_TEST_CASES`, in upstream order (reader, writer).
    #[test]
    fn compatible_reader_writer_cases() {
        expect_all(
            true,
            &[
                ("boolean/boolean", BOOLEAN, BOOLEAN),
                ("int/int", INT, INT),
                ("long/int", LONG, INT),
                ("long/long", LONG, LONG),
                ("float/int", FLOAT, INT),
                ("float/long", FLOAT, LONG),
                ("double/long", DOUBLE, LONG),
                ("double/int", DOUBLE, INT),
                ("double/float", DOUBLE, FLOAT),
                ("string/string", STRING, STRING),
                ("bytes/bytes", BYTES, BYTES),
                ("int array/int array", INT_ARRAY, INT_ARRAY),
                ("long array/int array", LONG_ARRAY, INT_ARRAY),
                ("int map/int map", INT_MAP, INT_MAP),
                ("long map/int map", LONG_MAP, INT_MAP),
                ("enum AB/AB", ENUM1_AB, ENUM1_AB),
                ("enum ABC/AB", ENUM1_ABC, ENUM1_AB),
                ("enum AB with default/ABC", ENUM1_AB_DEFAULT, ENUM1_ABC),
                ("enum/enum in namespace1", ENUM1_AB, ENUM1_AB_NAMESPACE_1),
                ("enum in namespace1/enum", ENUM1_AB_NAMESPACE_1, ENUM1_AB),
                (
                    "enum namespace1/namespace2",
                    ENUM1_AB_NAMESPACE_1,
                    ENUM1_AB_NAMESPACE_2,
                ),
                ("string/bytes", STRING, BYTES),
                ("bytes/string", BYTES, STRING),
                ("[]/[]", EMPTY_UNION, EMPTY_UNION),
                ("[float]/[]", FLOAT_UNION, EMPTY_UNION),
                ("[float]/[int]", FLOAT_UNION, INT_UNION),
                ("[float]/[long]", FLOAT_UNION, LONG_UNION),
                ("[float]/[int,long]", FLOAT_UNION, INT_LONG_UNION),
                ("[int]/[int]", INT_UNION, INT_UNION),
                (
                    "[int,string]/[string,int]",
                    INT_STRING_UNION,
                    STRING_INT_UNION,
                ),
                ("[int]/[]", INT_UNION, EMPTY_UNION),
                ("[long]/[]", LONG_UNION, EMPTY_UNION),
                ("[long]/[int]", LONG_UNION, INT_UNION),
                ("[float]/[int] again", FLOAT_UNION, INT_UNION),
                ("[double]/[int]", DOUBLE_UNION, INT_UNION),
                ("[float]/[long] again", FLOAT_UNION, LONG_UNION),
                ("[double]/[long]", DOUBLE_UNION, LONG_UNION),
                ("[float]/[] again", FLOAT_UNION, EMPTY_UNION),
                ("[double]/[float]", DOUBLE_UNION, FLOAT_UNION),
                ("[string]/[]", STRING_UNION, EMPTY_UNION),
                ("[string]/[bytes]", STRING_UNION, BYTES_UNION),
                ("[bytes]/[]", BYTES_UNION, EMPTY_UNION),
                ("[bytes]/[string]", BYTES_UNION, STRING_UNION),
                ("[double]/[int,float]", DOUBLE_UNION, INT_FLOAT_UNION),
                ("float/[int,float]", FLOAT, INT_FLOAT_UNION),
                ("long/[int,long]", LONG, INT_LONG_UNION),
                ("double/[int,float]", DOUBLE, INT_FLOAT_UNION),
                (
                    "double/[int,long,float,double]",
                    DOUBLE,
                    INT_LONG_FLOAT_DOUBLE_UNION,
                ),
                ("float/[float]", FLOAT, FLOAT_UNION),
                ("[int]/int", INT_UNION, INT),
                ("int/[int]", INT, INT_UNION),
                ("fixed 4/fixed 4", FIXED_4_BYTES, FIXED_4_BYTES),
                ("empty record/empty record", EMPTY_RECORD1, EMPTY_RECORD1),
                ("empty record/{a:int}", EMPTY_RECORD1, A_INT_RECORD1),
                ("{a:int}/{a:int}", A_INT_RECORD1, A_INT_RECORD1),
                ("{a:int=0}/{a:int}", A_DINT_RECORD1, A_INT_RECORD1),
                ("{a:int=0}/{a:int=0}", A_DINT_RECORD1, A_DINT_RECORD1),
                ("{a:int}/{a:int=0}", A_INT_RECORD1, A_DINT_RECORD1),
                ("{a:long}/{a:int}", A_LONG_RECORD1, A_INT_RECORD1),
                ("{a:int}/{a:int,b:int}", A_INT_RECORD1, A_INT_B_INT_RECORD1),
                (
                    "{a:int=0}/{a:int,b:int}",
                    A_DINT_RECORD1,
                    A_INT_B_INT_RECORD1,
                ),
                (
                    "{a:int,b:int=0}/{a:int}",
                    A_INT_B_DINT_RECORD1,
                    A_INT_RECORD1,
                ),
                ("{a:int=0,b:int=0}/{}", A_DINT_B_DINT_RECORD1, EMPTY_RECORD1),
                (
                    "{a:int=0,b:int=0}/{a:int}",
                    A_DINT_B_DINT_RECORD1,
                    A_INT_RECORD1,
                ),
                (
                    "{a:int,b:int}/{a:int=0,b:int=0}",
                    A_INT_B_INT_RECORD1,
                    A_DINT_B_DINT_RECORD1,
                ),
                ("int list/int list", INT_LIST_RECORD, INT_LIST_RECORD),
                ("long list/long list", LONG_LIST_RECORD, LONG_LIST_RECORD),
                ("long list/int list", LONG_LIST_RECORD, INT_LIST_RECORD),
                ("null/null", NULL, NULL),
                (
                    "enum AB default A / enum ABC default A, in records",
                    ENUM_AB_ENUM_DEFAULT_A_RECORD,
                    ENUM_ABC_ENUM_DEFAULT_A_RECORD,
                ),
                (
                    "enum AB default B field default A / enum ABC default A field default B",
                    ENUM_AB_FIELD_DEFAULT_A_ENUM_DEFAULT_B_RECORD,
                    ENUM_ABC_FIELD_DEFAULT_B_ENUM_DEFAULT_A_RECORD,
                ),
                (
                    "inner records in different namespaces",
                    NS_RECORD1,
                    NS_RECORD2,
                ),
                ("record without / with namespace", WITHOUT_NS, WITH_NS),
            ],
        );
    }

    /// `TestSchemaCompatibilityTypeMismatch` (reader, writer).
    #[test]
    fn type_mismatch_cases() {
        expect_all(
            false,
            &[
                ("null/int", NULL, INT),
                ("null/long", NULL, LONG),
                ("boolean/int", BOOLEAN, INT),
                ("int/null", INT, NULL),
                ("int/boolean", INT, BOOLEAN),
                ("int/long", INT, LONG),
                ("int/float", INT, FLOAT),
                ("int/double", INT, DOUBLE),
                ("long/float", LONG, FLOAT),
                ("long/double", LONG, DOUBLE),
                ("float/double", FLOAT, DOUBLE),
                ("double/string", DOUBLE, STRING),
                ("fixed/string", FIXED_4_BYTES, STRING),
                ("string/boolean", STRING, BOOLEAN),
                ("string/int", STRING, INT),
                ("bytes/null", BYTES, NULL),
                ("bytes/int", BYTES, INT),
                ("record/int", A_INT_RECORD1, INT),
                ("int array/long array", INT_ARRAY, LONG_ARRAY),
                ("int map/int array", INT_MAP, INT_ARRAY),
                ("int array/int map", INT_ARRAY, INT_MAP),
                ("int map/long map", INT_MAP, LONG_MAP),
                ("int/enum", INT, ENUM2_AB),
                ("enum/int", ENUM2_AB, INT),
                (
                    "float/[int,long,float,double]",
                    FLOAT,
                    INT_LONG_FLOAT_DOUBLE_UNION,
                ),
                ("long/[int,float]", LONG, INT_FLOAT_UNION),
                ("int/[int,float]", INT, INT_FLOAT_UNION),
                ("int list/long list", INT_LIST_RECORD, LONG_LIST_RECORD),
            ],
        );
        // Where upstream pins the location, the message names the same place.
        let located = [
            (INT_ARRAY, LONG_ARRAY, "/items:"),
            (INT_MAP, LONG_MAP, "/values:"),
            (FLOAT, INT_LONG_FLOAT_DOUBLE_UNION, "/3:"),
            (LONG, INT_FLOAT_UNION, "/1:"),
            (INT_LIST_RECORD, LONG_LIST_RECORD, "/fields/head:"),
        ];
        for (reader, writer, path) in located {
            let found = problems(reader, writer);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].starts_with(path), "{path}: {found:?}");
        }
    }

    /// `TestSchemaCompatibilityMissingUnionBranch` (reader, writer).
    #[test]
    fn missing_union_branch_cases() {
        const RECORD1_WITH_INT: &str =
            r#"{"type":"record","name":"Record1","fields":[{"name":"field1","type":"int"}]}"#;
        let union_int_record1 = format!(r#"["int",{RECORD1_WITH_INT}]"#);
        let union_int_record2 = r#"["int",{"type":"record","name":"Record2","fields":[{"name":"field1","type":"int"}]}]"#;
        let union_int_enum1_ab = format!(r#"["int",{ENUM1_AB}]"#);
        let union_int_fixed_4 = format!(r#"["int",{FIXED_4_BYTES}]"#);
        let cases: Vec<(&str, &str, &str, Vec<&str>)> = vec![
            (
                "[int]/[int,string]",
                INT_UNION,
                INT_STRING_UNION,
                vec!["/1:"],
            ),
            (
                "[string]/[int,string]",
                STRING_UNION,
                INT_STRING_UNION,
                vec!["/0:"],
            ),
            (
                "[int]/[int,Record1]",
                INT_UNION,
                &union_int_record1,
                vec!["/1:"],
            ),
            (
                "[int]/[int,Record2]",
                INT_UNION,
                union_int_record2,
                vec!["/1:"],
            ),
            (
                "[int,Record1]/[int,Record2]",
                &union_int_record1,
                union_int_record2,
                vec!["/1:"],
            ),
            (
                "[int]/[int,enum]",
                INT_UNION,
                &union_int_enum1_ab,
                vec!["/1:"],
            ),
            (
                "[int]/[int,fixed]",
                INT_UNION,
                &union_int_fixed_4,
                vec!["/1:"],
            ),
            (
                "[int]/[int,boolean]",
                INT_UNION,
                r#"["int","boolean"]"#,
                vec!["/1:"],
            ),
            ("[int]/[long]", INT_UNION, LONG_UNION, vec!["/0:"]),
            ("[int]/[float]", INT_UNION, FLOAT_UNION, vec!["/0:"]),
            ("[int]/[double]", INT_UNION, DOUBLE_UNION, vec!["/0:"]),
            ("[int]/[bytes]", INT_UNION, BYTES_UNION, vec!["/0:"]),
            (
                "[int]/[int,int array]",
                INT_UNION,
                r#"["int",{"type":"array","items":"int"}]"#,
                vec!["/1:"],
            ),
            (
                "[int]/[int,int map]",
                INT_UNION,
                r#"["int",{"type":"map","values":"int"}]"#,
                vec!["/1:"],
            ),
            (
                "[int]/[int,null]",
                INT_UNION,
                r#"["int","null"]"#,
                vec!["/1:"],
            ),
            (
                "[int]/[int,long,float,double]",
                INT_UNION,
                INT_LONG_FLOAT_DOUBLE_UNION,
                vec!["/1:", "/2:", "/3:"],
            ),
            (
                "record field [int] / [int,string]",
                A_DINT_B_DINT_UNION_RECORD1,
                A_DINT_B_DINT_STRING_UNION_RECORD1,
                vec!["/fields/b/1:"],
            ),
        ];
        let mut wrong = Vec::new();
        for (name, reader, writer, paths) in &cases {
            let found = problems(reader, writer);
            let as_expected = found.len() == paths.len()
                && found.iter().zip(paths).all(|(f, p)| f.starts_with(p));
            if !as_expected {
                wrong.push(format!("{name}: expected at {paths:?}, got {found:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// `TestSchemaCompatibilityMissingEnumSymbols` (reader, writer).
    #[test]
    fn missing_enum_symbol_cases() {
        let record_with = |e: &str| {
            format!(
                r#"{{"type":"record","name":"Record1","fields":[{{"name":"field1","type":{e}}}]}}"#
            )
        };
        let cases = [
            (ENUM1_AB.to_owned(), ENUM1_ABC.to_owned(), "[C]"),
            (ENUM1_BC.to_owned(), ENUM1_ABC.to_owned(), "[A]"),
            (record_with(ENUM1_AB), record_with(ENUM1_ABC), "[C]"),
        ];
        for (reader, writer, missing) in &cases {
            let found = problems(reader, writer);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].contains(missing), "{missing}: {found:?}");
        }
    }

    /// `TestSchemaCompatibilityNameMismatch` (reader, writer).
    #[test]
    fn name_mismatch_cases() {
        expect_all(
            false,
            &[
                ("Enum1/Enum2", ENUM1_AB, ENUM2_AB),
                ("Record2/Record1", EMPTY_RECORD2, EMPTY_RECORD1),
                (
                    "Fixed/AnotherName",
                    FIXED_4_BYTES,
                    r#"{"type":"fixed","name":"AnotherName","size":4}"#,
                ),
                (
                    "field b: Enum1/Enum2",
                    A_DINT_B_DENUM_1_RECORD1,
                    A_DINT_B_DENUM_2_RECORD1,
                ),
            ],
        );
    }

    /// `TestSchemaCompatibilityFixedSizeMismatch` (reader, writer).
    #[test]
    fn fixed_size_mismatch_cases() {
        expect_all(
            false,
            &[
                ("4/8", FIXED_4_BYTES, FIXED_8_BYTES),
                ("8/4", FIXED_8_BYTES, FIXED_4_BYTES),
                (
                    "field b 8/4",
                    A_DINT_B_DFIXED_8_BYTES_RECORD1,
                    A_DINT_B_DFIXED_4_BYTES_RECORD1,
                ),
                (
                    "field b 4/8",
                    A_DINT_B_DFIXED_4_BYTES_RECORD1,
                    A_DINT_B_DFIXED_8_BYTES_RECORD1,
                ),
            ],
        );
    }

    /// `TestSchemaCompatibilityReaderFieldMissingDefaultValue` (reader, writer).
    #[test]
    fn reader_field_missing_default_cases() {
        expect_all(
            false,
            &[
                ("{a:int}/{}", A_INT_RECORD1, EMPTY_RECORD1),
                ("{a:int,b:int=0}/{}", A_INT_B_DINT_RECORD1, EMPTY_RECORD1),
            ],
        );
    }

    /// `TestSchemaCompatibilityEnumDefaults`: what its decoding cases imply for the checker.
    #[test]
    fn enum_default_cases() {
        let record = |field: &str, e: &str, default: &str| {
            format!(
                r#"{{"type":"record","name":"Record1","fields":[{{"name":"{field}","type":{e}{default}}}]}}"#
            )
        };
        // enumDefaultNotAppliedWhenWriterFieldMissing: an enum default is no field default.
        assert!(
            !problems(
                &record("field1", ENUM_AB_ENUM_DEFAULT_A, ""),
                &record("field2", ENUM2_AB, "")
            )
            .is_empty()
        );
        // enumDefaultAppliedWhenNoFieldDefaultDefined / ...WhenCompatibleSymbolIsFound.
        assert!(
            problems(
                &record("field1", ENUM_AB_ENUM_DEFAULT_A, ""),
                &record("field1", ENUM_ABC_ENUM_DEFAULT_A, "")
            )
            .is_empty()
        );
        // enumDefaultAppliedWhenFieldDefaultDefined.
        assert!(
            problems(
                &record("field1", ENUM_AB_ENUM_DEFAULT_A, r#","default":"B""#),
                &record("field1", ENUM_ABC_ENUM_DEFAULT_A, "")
            )
            .is_empty()
        );
        // fieldDefaultNotAppliedForUnknownSymbol: a field default does not stand in for an
        // unknown symbol.
        assert!(
            !problems(
                &record("field1", ENUM1_AB, r#","default":"A""#),
                &record("field1", ENUM1_ABC, "")
            )
            .is_empty()
        );
    }

    /// `TestSchemaCompatibilityMultiple`: nine incompatibilities in one pair, all reported.
    #[test]
    fn multiple_incompatibilities_are_all_reported() {
        let reader = r#"{"type":"record","name":"base","fields":[
            {"name":"check_enum_symbols_field","type":{"type":"enum","name":"check_enum_symbols_type","symbols":["A","C"]}},
            {"name":"check_enum_name_field","type":{"type":"enum","name":"check_enum_name_type","symbols":["A","B","C","D"]}},
            {"name":"type_mismatch_field","type":"string"},
            {"name":"sub_record","type":{"type":"record","name":"sub_record_type","fields":[
                {"name":"identical_1_field","type":"long","default":42},
                {"name":"extra_no_default_field","type":"long"},
                {"name":"fixed_length_mismatch_field","type":{"type":"fixed","name":"fixed_length_mismatch_type","size":4}},
                {"name":"union_missing_branches_field","type":["boolean"]},
                {"name":"reader_union_does_not_support_type_field","type":["boolean"]},
                {"name":"record_fqn_mismatch_field","type":{"type":"record","name":"recordA","namespace":"not_nsA","fields":[
                    {"name":"A_field_0","type":"boolean","default":true},
                    {"name":"array_type_mismatch_field","type":{"type":"array","items":"string"}}]}}]}}]}"#;
        let writer = r#"{"type":"record","name":"base","fields":[
            {"name":"check_enum_symbols_field","type":{"type":"enum","name":"check_enum_symbols_type","symbols":["A","B","C","D"]}},
            {"name":"check_enum_name_field","type":{"type":"enum","name":"check_enum_name_type_ERR","symbols":["A","B","C","D"]}},
            {"name":"type_mismatch_field","type":"long"},
            {"name":"sub_record","type":{"type":"record","name":"sub_record_type","fields":[
                {"name":"identical_1_field","type":"long","default":42},
                {"name":"fixed_length_mismatch_field","type":{"type":"fixed","name":"fixed_length_mismatch_type","size":8}},
                {"name":"union_missing_branches_field","type":["boolean","double","string"]},
                {"name":"reader_union_does_not_support_type_field","type":"long"},
                {"name":"record_fqn_mismatch_field","type":{"type":"record","name":"recordA","namespace":"nsA","fields":[
                    {"name":"A_field_0","type":"boolean","default":true},
                    {"name":"array_type_mismatch_field","type":{"type":"array","items":"boolean"}}]}}]}}]}"#;
        let found = problems(reader, writer);
        let expected = [
            ("/fields/check_enum_symbols_field:", "[B, D]"),
            ("/fields/check_enum_name_field:", "check_enum_name_type_ERR"),
            ("/fields/type_mismatch_field:", "long"),
            (
                "/fields/sub_record/fields/extra_no_default_field:",
                "no default",
            ),
            (
                "/fields/sub_record/fields/fixed_length_mismatch_field:",
                "size",
            ),
            (
                "/fields/sub_record/fields/union_missing_branches_field/1:",
                "double",
            ),
            (
                "/fields/sub_record/fields/union_missing_branches_field/2:",
                "string",
            ),
            (
                "/fields/sub_record/fields/reader_union_does_not_support_type_field:",
                "long",
            ),
            (
                "/fields/sub_record/fields/record_fqn_mismatch_field/fields/array_type_mismatch_field/items:",
                "boolean",
            ),
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for ((path, detail), message) in expected.iter().zip(&found) {
            assert!(
                message.starts_with(path) && message.contains(detail),
                "expected {path} … {detail}, got {message}"
            );
        }
    }
}

/// Confluent, `core/src/test/java/io/confluent/kafka/schemaregistry/avro/AvroCompatibilityTest.java`
/// (schema-registry): the registry levels, with upstream's schema list (oldest first; the last
/// one is the latest version).
mod confluent {
    use super::*;

    use super::confluent_schemas::*;

    const SCHEMA8: &str = r#"{"type":"record","name":"myrecord","fields":[{"type":"string","name":"f1"},
        {"type":"string","name":"f2","default":"foo"},{"type":"string","name":"f3","default":"bar"}]}"#;
    const BAD_DEFAULT_NULL: &str = r#"{"type":"record","name":"myrecord","fields":[{"type":["null","string"],"name":"f1","default":"null"},
        {"type":"string","name":"f2","default":"foo"},{"type":"string","name":"f3","default":"bar"}]}"#;

    fn compatible(level: Compatibility, new: &str, previous: &[&str]) -> bool {
        let history: Vec<(i32, Schema)> = previous
            .iter()
            .zip(1..)
            .map(|(text, version)| (version, parse(text)))
            .collect();
        check_compatibility(level, &parse(new), &history).is_empty()
    }

    #[test]
    fn bad_default_null_still_parses() {
        // testBadDefaultNull: the string "null" as the default of ["null","string"] is accepted.
        parse(BAD_DEFAULT_NULL);
    }

    #[test]
    fn basic_backwards_compatibility() {
        use Compatibility::Backward as B;
        assert!(
            compatible(B, SCHEMA2, &[SCHEMA1]),
            "adding a field with a default"
        );
        assert!(
            !compatible(B, SCHEMA3, &[SCHEMA1]),
            "adding a field without a default"
        );
        assert!(
            compatible(B, SCHEMA4, &[SCHEMA1]),
            "renaming a field with an alias"
        );
        assert!(
            compatible(B, SCHEMA6, &[SCHEMA1]),
            "evolving a field type to a union"
        );
        assert!(
            !compatible(B, SCHEMA1, &[SCHEMA6]),
            "removing a type from a union"
        );
        assert!(
            compatible(B, SCHEMA7, &[SCHEMA6]),
            "adding a type to a union"
        );
        assert!(
            !compatible(B, SCHEMA6, &[SCHEMA7]),
            "removing a type from a union"
        );
        assert!(
            compatible(B, SCHEMA3, &[SCHEMA1, SCHEMA2]),
            "only the latest (schema2) is checked"
        );
    }

    #[test]
    fn basic_backwards_transitive_compatibility() {
        use Compatibility::BackwardTransitive as BT;
        assert!(
            compatible(BT, SCHEMA8, &[SCHEMA1, SCHEMA2]),
            "adding fields with defaults"
        );
        assert!(
            compatible(BT, SCHEMA2, &[SCHEMA1]),
            "adding a field with a default"
        );
        assert!(
            compatible(BT, SCHEMA3, &[SCHEMA2]),
            "removing a default, against one version"
        );
        assert!(
            !compatible(BT, SCHEMA3, &[SCHEMA2, SCHEMA1]),
            "removing a default is not transitively compatible"
        );
    }

    #[test]
    fn basic_forwards_compatibility() {
        use Compatibility::Forward as F;
        assert!(compatible(F, SCHEMA2, &[SCHEMA1]), "adding a field");
        assert!(compatible(F, SCHEMA3, &[SCHEMA1]), "adding a field");
        assert!(compatible(F, SCHEMA3, &[SCHEMA2]), "adding a field");
        assert!(compatible(F, SCHEMA2, &[SCHEMA3]), "adding a field");
        assert!(
            compatible(F, SCHEMA1, &[SCHEMA3, SCHEMA2]),
            "only the latest (schema2) is checked"
        );
    }

    #[test]
    fn basic_forwards_transitive_compatibility() {
        use Compatibility::ForwardTransitive as FT;
        assert!(
            compatible(FT, SCHEMA1, &[SCHEMA8, SCHEMA2]),
            "removing fields with defaults"
        );
        assert!(
            compatible(FT, SCHEMA2, &[SCHEMA3]),
            "adding a default to a field"
        );
        assert!(
            compatible(FT, SCHEMA1, &[SCHEMA2]),
            "removing a field with a default"
        );
        assert!(
            !compatible(FT, SCHEMA1, &[SCHEMA2, SCHEMA3]),
            "removing a default is not transitively compatible"
        );
    }

    #[test]
    fn basic_full_compatibility() {
        use Compatibility::Full as F;
        assert!(
            compatible(F, SCHEMA2, &[SCHEMA1]),
            "adding a field with a default"
        );
        assert!(
            compatible(F, SCHEMA3, &[SCHEMA1, SCHEMA2]),
            "only the latest (schema2) is checked"
        );
        assert!(
            compatible(F, SCHEMA1, &[SCHEMA3, SCHEMA2]),
            "only the latest (schema2) is checked"
        );
    }

    #[test]
    fn basic_full_transitive_compatibility() {
        use Compatibility::FullTransitive as FT;
        assert!(
            compatible(FT, SCHEMA8, &[SCHEMA1, SCHEMA2]),
            "adding fields with defaults"
        );
        assert!(
            compatible(FT, SCHEMA1, &[SCHEMA8, SCHEMA2]),
            "removing fields with defaults"
        );
        assert!(
            compatible(FT, SCHEMA2, &[SCHEMA3]),
            "adding a default to a field"
        );
        assert!(
            compatible(FT, SCHEMA1, &[SCHEMA2]),
            "removing a field with a default"
        );
        assert!(
            compatible(FT, SCHEMA2, &[SCHEMA1]),
            "adding a field with a default"
        );
        assert!(
            compatible(FT, SCHEMA3, &[SCHEMA2]),
            "removing a default from a field"
        );
        assert!(
            !compatible(FT, SCHEMA3, &[SCHEMA2, SCHEMA1]),
            "transitively adding a field without a default"
        );
        assert!(
            !compatible(FT, SCHEMA1, &[SCHEMA2, SCHEMA3]),
            "transitively removing a field without a default"
        );
    }

    #[test]
    fn incompatibility_reasons_name_the_version_and_the_field() {
        let history = [(1, parse(SCHEMA1)), (2, parse(SCHEMA2))];
        let reasons = check_compatibility(Compatibility::FullTransitive, &parse(SCHEMA3), &history);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].contains("version 1") && reasons[0].contains("/fields/f2"),
            "{reasons:?}"
        );
    }
}

/// Karapace, `tests/unit/test_avro_compatibility.py` (Aiven-Open/karapace): the cases it adds
/// to the ones it re-ports from Avro and Confluent (those are above).
mod karapace {
    use super::*;

    // Karapace's copies of Confluent's schemas; its `schema8` has no `f3` (it equals schema2).
    const SCHEMA1: &str = super::confluent_schemas::SCHEMA1;
    const SCHEMA2: &str = super::confluent_schemas::SCHEMA2;
    const SCHEMA3: &str = super::confluent_schemas::SCHEMA3;
    const SCHEMA4: &str = super::confluent_schemas::SCHEMA4;
    const SCHEMA6: &str = super::confluent_schemas::SCHEMA6;
    const SCHEMA7: &str = super::confluent_schemas::SCHEMA7;
    const SCHEMA8: &str = SCHEMA2;

    /// The (reader, writer) pairs of `test_schemaregistry_basic_*` and `test_basic_full*`.
    #[test]
    fn basic_reader_writer_pairs() {
        expect_all(
            true,
            &[
                ("2 reads 1", SCHEMA2, SCHEMA1),
                ("4 reads 1 (alias)", SCHEMA4, SCHEMA1),
                ("6 reads 1 (to union)", SCHEMA6, SCHEMA1),
                ("7 reads 6 (union grows)", SCHEMA7, SCHEMA6),
                ("8 reads 1", SCHEMA8, SCHEMA1),
                ("8 reads 2", SCHEMA8, SCHEMA2),
                ("3 reads 2", SCHEMA3, SCHEMA2),
                ("1 reads 2", SCHEMA1, SCHEMA2),
                ("1 reads 3", SCHEMA1, SCHEMA3),
                ("2 reads 3", SCHEMA2, SCHEMA3),
                ("1 reads 8", SCHEMA1, SCHEMA8),
                ("2 reads 8", SCHEMA2, SCHEMA8),
            ],
        );
        expect_all(
            false,
            &[
                ("3 reads 1 (f2 has no default)", SCHEMA3, SCHEMA1),
                ("1 reads 6 (union shrinks)", SCHEMA1, SCHEMA6),
                ("6 reads 7 (union shrinks)", SCHEMA6, SCHEMA7),
            ],
        );
    }

    /// `test_basic_backwards_compatibility`'s enum-default case. Karapace parses an enum whose
    /// default is not one of its symbols (with `validate_enum_symbols=False`) and calls it
    /// compatible; Confluent (Avro Java) refuses that schema when parsing it. We follow
    /// Confluent: the schema is invalid, so there is nothing to check.
    #[test]
    fn enum_default_outside_the_symbols_is_refused_as_confluent_does() {
        let invalid = r#"{"type":"enum","name":"test_default","symbols":["A"],"default":"B"}"#;
        let correct = r#"{"type":"enum","name":"test_default","symbols":["A"],"default":"A"}"#;
        assert!(Schema::parse_str(invalid).is_err());
        assert!(problems(correct, correct).is_empty());
    }

    /// `test_simple_schema_promotion`.
    #[test]
    fn simple_schema_promotion() {
        let reader = r#"{"name":"foo","type":"record","fields":[{"type":"int","name":"f1"}]}"#;
        let field_alias_reader = r#"{"name":"foo","type":"record","fields":[{"type":"int","name":"bar","aliases":["f1"]}]}"#;
        let record_alias_reader = r#"{"name":"other","type":"record","fields":[{"type":"int","name":"f1"}],"aliases":["foo"]}"#;
        let writer = r#"{"name":"foo","type":"record","fields":[{"type":"int","name":"f1"},{"type":"string","name":"f2"}]}"#;
        expect_all(
            true,
            &[
                ("field alias", field_alias_reader, writer),
                ("record alias", record_alias_reader, writer),
                ("field dropped", reader, writer),
            ],
        );
        expect_all(false, &[("field added without default", writer, reader)]);

        let ca_writer = r#"{"type":"record","name":"CA","namespace":"ns1","fields":[
            {"type":"string","name":"provider"},
            {"type":["null","string"],"name":"name","default":null},
            {"type":["null","string"],"name":"phone","default":null},
            {"type":["null","string"],"name":"email","default":null},
            {"type":["null","string"],"name":"reference","default":null},
            {"type":["null","double"],"name":"price","default":null}]}"#;
        let ca_reader = r#"{"type":"record","name":"CA","namespace":"ns1","fields":[
            {"type":"string","name":"provider"},
            {"type":["null","string"],"name":"name","default":null},
            {"type":["null","string"],"name":"phone","default":null},
            {"type":["null","string"],"name":"email","default":null},
            {"type":["null","string"],"name":"reference","default":null},
            {"type":["null","double"],"name":"price","default":null},
            {"type":["null","string"],"name":"status_date","default":null}]}"#;
        expect_all(true, &[("optional field added", ca_reader, ca_writer)]);
    }

    /// `test_union_to_simple_comparison`: a field's type becoming `["null", type]` is readable.
    #[test]
    fn union_to_simple_comparison() {
        let field_types = [
            r#"{"type":"array","items":"string","name":"fn"}"#,
            r#"{"type":"record","name":"fn","fields":[{"type":"string","name":"inner_rec"}]}"#,
            r#"{"type":"enum","name":"fn","symbols":["foo","bar","baz"]}"#,
            r#"{"type":"fixed","size":16,"name":"fn","aliases":["testalias"]}"#,
            r#""string""#,
            r#"{"type":"map","values":"int","name":"fn"}"#,
        ];
        let mut wrong = Vec::new();
        for field_type in field_types {
            let writer = format!(
                r#"{{"type":"record","name":"name","namespace":"namespace","fields":[{{"type":{field_type},"name":"fn"}}]}}"#
            );
            let reader = format!(
                r#"{{"type":"record","name":"name","namespace":"namespace","fields":[{{"type":["null",{field_type}],"name":"fn"}}]}}"#
            );
            let found = problems(&reader, &writer);
            if !found.is_empty() {
                wrong.push(format!("{field_type}: {found:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// `test_schema_compatibility`'s cases beyond Avro's: `{"type":"null"}` spelt as an object,
    /// `{"type":"string"}` items, and the union subset check on a field's union.
    #[test]
    fn schema_compatibility_extra_cases() {
        expect_all(
            true,
            &[
                (
                    "null object/null object",
                    r#"{"type":"null"}"#,
                    r#"{"type":"null"}"#,
                ),
                (
                    "array of string objects",
                    r#"{"type":"array","items":{"type":"string"}}"#,
                    r#"{"type":"array","items":{"type":"string"}}"#,
                ),
                (
                    "string object",
                    r#"{"type":"string"}"#,
                    r#"{"type":"string"}"#,
                ),
            ],
        );
        expect_all(
            false,
            &[
                (
                    "map reads array",
                    r#"{"type":"map","values":{"type":"string"}}"#,
                    r#"{"type":"array","items":{"type":"string"}}"#,
                ),
                (
                    "int reads string",
                    r#"{"type":"int"}"#,
                    r#"{"type":"string"}"#,
                ),
                (
                    "union subset",
                    r#"["int","string"]"#,
                    r#"["int","string","long"]"#,
                ),
            ],
        );
    }
}

/// Confluent's schema texts, shared with the Karapace group (which copies them).
mod confluent_schemas {
    pub const SCHEMA1: &str =
        r#"{"type":"record","name":"myrecord","fields":[{"type":"string","name":"f1"}]}"#;
    pub const SCHEMA2: &str = r#"{"type":"record","name":"myrecord","fields":[{"type":"string","name":"f1"},
        {"type":"string","name":"f2","default":"foo"}]}"#;
    pub const SCHEMA3: &str = r#"{"type":"record","name":"myrecord","fields":[{"type":"string","name":"f1"},
        {"type":"string","name":"f2"}]}"#;
    pub const SCHEMA4: &str = r#"{"type":"record","name":"myrecord","fields":[{"type":"string","name":"f1_new","aliases":["f1"]}]}"#;
    pub const SCHEMA6: &str = r#"{"type":"record","name":"myrecord","fields":[{"type":["null","string"],"name":"f1","doc":"doc of f1"}]}"#;
    pub const SCHEMA7: &str = r#"{"type":"record","name":"myrecord","fields":[{"type":["null","string","int"],"name":"f1","doc":"doc of f1"}]}"#;
}

/// The cases issue 7 names, and the registry-level consequences it describes.
mod issue_7 {
    use super::*;

    #[test]
    fn reader_int_cannot_read_writer_int_or_string() {
        let found = problems(r#""int""#, r#"["int","string"]"#);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("string"), "{found:?}");
    }

    #[test]
    fn enum_symbol_added_in_writer_needs_a_reader_default() {
        let reader = r#"{"type":"enum","name":"State","symbols":["NEW","DONE"]}"#;
        let reader_with_default =
            r#"{"type":"enum","name":"State","symbols":["NEW","DONE"],"default":"NEW"}"#;
        let writer = r#"{"type":"enum","name":"State","symbols":["NEW","DONE","LOST"]}"#;
        let found = problems(reader, writer);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("LOST"), "{found:?}");
        assert!(problems(reader_with_default, writer).is_empty());
    }

    #[test]
    fn reader_field_without_default_cannot_read_an_optional_writer_field() {
        let reader = r#"{"type":"record","name":"S","fields":[{"name":"note","type":"string"}]}"#;
        let writer = r#"{"type":"record","name":"S","fields":[{"name":"note","type":["null","string"],"default":null}]}"#;
        assert!(!problems(reader, writer).is_empty());
        // The other way round is fine: an optional reader field reads a mandatory one.
        assert!(problems(writer, reader).is_empty());
    }

    #[test]
    fn directions_of_the_levels() {
        // v1 has no `note`; v2 adds it without a default. New readers (v2) cannot read old
        // data (BACKWARD fails); old readers (v1) skip the field (FORWARD passes).
        let v1 = parse(r#"{"type":"record","name":"S","fields":[{"name":"id","type":"string"}]}"#);
        let v2 = parse(
            r#"{"type":"record","name":"S","fields":[{"name":"id","type":"string"},{"name":"note","type":"string"}]}"#,
        );
        let history = [(1, v1)];
        assert!(!check_compatibility(Compatibility::Backward, &v2, &history).is_empty());
        assert!(check_compatibility(Compatibility::Forward, &v2, &history).is_empty());
        assert!(!check_compatibility(Compatibility::Full, &v2, &history).is_empty());
        assert!(check_compatibility(Compatibility::None, &v2, &history).is_empty());
    }

    #[test]
    fn logical_types_follow_their_underlying_type() {
        let date = r#"{"type":"int","logicalType":"date"}"#;
        let millis = r#"{"type":"long","logicalType":"timestamp-millis"}"#;
        let uuid = r#"{"type":"string","logicalType":"uuid"}"#;
        let decimal = r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#;
        expect_all(
            true,
            &[
                ("long reads date", r#""long""#, date),
                ("date reads int", date, r#""int""#),
                ("timestamp reads long", millis, r#""long""#),
                ("string reads uuid", r#""string""#, uuid),
                ("bytes reads decimal", r#""bytes""#, decimal),
            ],
        );
        expect_all(
            false,
            &[
                ("date reads timestamp", date, millis),
                ("int reads timestamp", r#""int""#, millis),
            ],
        );
    }
}

// ---- Cost: a record referred to many times is checked once ------------------------------

/// Twenty nested records, each holding the next one three times: 3^20 paths through the
/// schema. Checked path by path this takes hours (and holds the subject's lock meanwhile);
/// checked pair by pair it takes microseconds. Both an incompatible and a compatible pair.
#[test]
fn deeply_nested_references_are_checked_in_linear_time() {
    fn nested(depth: usize, leaf: &str) -> String {
        let mut schema =
            format!(r#"{{"type":"record","name":"L0","fields":[{{"name":"x","type":"{leaf}"}}]}}"#);
        for level in 1..=depth {
            schema = format!(
                r#"{{"type":"record","name":"L{level}","fields":[{{"name":"a","type":{schema}}},{{"name":"b","type":"L{prev}"}},{{"name":"c","type":"L{prev}"}}]}}"#,
                prev = level - 1
            );
        }
        schema
    }
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let incompatible = problems(&nested(20, "int"), &nested(20, "string"));
        let compatible = problems(&nested(20, "long"), &nested(20, "int"));
        let _ = done_tx.send((incompatible, compatible));
    });
    let (incompatible, compatible) = done
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the check of a 20-deep nested schema did not finish in 20 s");
    assert!(!incompatible.is_empty());
    assert!(
        incompatible.len() < 10,
        "each problem once, not once per path: {incompatible:?}"
    );
    assert!(compatible.is_empty(), "{compatible:?}");
}

/// Avro Java's `lookupWriterField`: a reader field whose name and alias match two writer
/// fields is an error there, so Confluent answers incompatible; so does this checker.
#[test]
fn a_reader_field_matching_two_writer_fields_is_incompatible() {
    let reader =
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","aliases":["b"]}]}"#;
    let writer = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}"#;
    let found = problems(reader, writer);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("matches 2 fields"), "{found:?}");
    let only_alias = r#"{"type":"record","name":"R","fields":[{"name":"b","type":"int"}]}"#;
    assert!(problems(reader, only_alias).is_empty());
}
