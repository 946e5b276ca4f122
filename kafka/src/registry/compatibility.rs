//! Compatibility levels and the checks behind them, using apache-avro's schema resolution.

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use std::fmt;
use std::str::FromStr;

/// Which earlier schemas a new schema must be compatible with, and in which direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    None,
    /// Consumers using the new schema can read data written with the latest one.
    Backward,
    BackwardTransitive,
    /// Consumers using the latest schema can read data written with the new one.
    Forward,
    ForwardTransitive,
    /// Both.
    Full,
    FullTransitive,
}

impl Compatibility {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether every earlier version is checked, not only the latest.
    pub const fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compatibility {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            other => return Err(format!("unknown compatibility level '{other}'")),
        })
    }
}

/// Checks `new` against `existing` (oldest first) at `level`; the messages say what is
/// incompatible with which version.
pub fn check(level: Compatibility, new: &Schema, existing: &[(i32, Schema)]) -> Vec<String> {
    let against: &[(i32, Schema)] = match (level, existing.last()) {
        (Compatibility::None, _) | (_, None) => return Vec::new(),
        (level, Some(_)) if level.transitive() => existing,
        (_, Some(_)) => &existing[existing.len() - 1..],
    };
    let backward = matches!(
        level,
        Compatibility::Backward
            | Compatibility::BackwardTransitive
            | Compatibility::Full
            | Compatibility::FullTransitive
    );
    let forward = matches!(
        level,
        Compatibility::Forward
            | Compatibility::ForwardTransitive
            | Compatibility::Full
            | Compatibility::FullTransitive
    );
    let mut problems = Vec::new();
    for (version, old) in against {
        if backward && let Err(e) = SchemaCompatibility::can_read(old, new) {
            problems.push(format!(
                "the new schema cannot read data written with version {version}: {e}"
            ));
        }
        if forward && let Err(e) = SchemaCompatibility::can_read(new, old) {
            problems.push(format!(
                "version {version} cannot read data written with the new schema: {e}"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"R","namespace":"t","fields":[{fields}]}}"#
        ))
        .expect("valid schema")
    }

    #[test]
    fn adding_a_field_with_a_default_is_backward_and_forward_compatible() {
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        let v2 = schema(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#);
        assert!(check(Compatibility::Full, &v2, &[(1, v1)]).is_empty());
    }

    #[test]
    fn adding_a_field_without_a_default_is_not_backward_compatible() {
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        let v2 = schema(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#);
        assert_eq!(
            check(Compatibility::Backward, &v2, &[(1, v1.clone())]).len(),
            1
        );
        assert!(check(Compatibility::Forward, &v2, &[(1, v1.clone())]).is_empty());
        assert!(check(Compatibility::None, &v2, &[(1, v1)]).is_empty());
    }

    #[test]
    fn changing_a_type_breaks_both_directions() {
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        let v2 = schema(r#"{"name":"a","type":"boolean"}"#);
        assert_eq!(check(Compatibility::Full, &v2, &[(1, v1)]).len(), 2);
    }

    #[test]
    fn transitive_levels_check_every_version() {
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        let v2 = schema(r#"{"name":"b","type":"string","default":""}"#);
        let v3 = schema(r#"{"name":"b","type":"string","default":""},{"name":"c","type":"int"}"#);
        // v3 reads v2 data only if c has a default; against v1 nothing about a matters.
        let history = [(1, v1), (2, v2)];
        assert_eq!(check(Compatibility::Backward, &v3, &history).len(), 1);
        assert_eq!(
            check(Compatibility::BackwardTransitive, &v3, &history).len(),
            2
        );
    }

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!("full_transitive".parse(), Ok(Compatibility::FullTransitive));
        assert!("SOMETIMES".parse::<Compatibility>().is_err());
    }
}
