//! Value types of a sample, each built only by parsing so that a value that exists is valid.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Why a raw input could not become a value; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Identity of a sample aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SampleId(Uuid);

impl SampleId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for SampleId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SampleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SampleId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| ParseError::new(format!("'{s}' is not a sample id (expected a UUID)")))
    }
}

/// A tube's barcode: 3 to 64 characters of `A-Z`, `0-9`, `-`, `_` and `.`, stored upper-case.
/// Scanners add stray whitespace and some send lower case; both are normalised away.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Barcode(String);

impl Barcode {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let value = raw.trim().to_ascii_uppercase();
        if value.is_empty() {
            return Err(ParseError::new("barcode is empty"));
        }
        let len = value.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            return Err(ParseError::new(format!(
                "barcode must be {} to {} characters long, got {len}",
                Self::MIN_LEN,
                Self::MAX_LEN
            )));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(ParseError::new(format!(
                "barcode may contain only letters, digits, '-', '_' and '.', found {bad:?}"
            )));
        }
        Ok(Self(value))
    }

    /// The barcode printed for a tube that arrived without one: `LAB-<TYPE>-<YYYYMMDD>-<seq>`.
    pub fn generate(sample_type: SampleType, date: NaiveDate, sequence: u64) -> Self {
        Self(format!(
            "LAB-{}-{}-{sequence:06}",
            sample_type.code(),
            date.format("%Y%m%d")
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Barcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Barcode {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Barcode> for String {
    fn from(value: Barcode) -> Self {
        value.0
    }
}

macro_rules! labelled_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $($variant:ident => $code:literal, $label:literal, [$($alias:literal),*]),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $code)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// Stable upper-case code, used in storage and messages.
            pub const fn code(self) -> &'static str {
                match self { $(Self::$variant => $code),+ }
            }

            /// What a person reads.
            pub const fn label(self) -> &'static str {
                match self { $(Self::$variant => $label),+ }
            }

            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                let wanted = raw.trim();
                if wanted.is_empty() {
                    return Err(ParseError::new(concat!($what, " is empty")));
                }
                let normalised: String = wanted
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != '°')
                    .map(|c| if c == '\u{2212}' { '-' } else { c })
                    .collect::<String>()
                    .to_ascii_uppercase();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| {
                        let accepted: &[&str] = match v { $(Self::$variant => &[$code, $($alias),*]),+ };
                        accepted.iter().any(|a| a.eq_ignore_ascii_case(&normalised))
                    })
                    .ok_or_else(|| {
                        let known: Vec<&str> = Self::ALL.iter().map(|v| v.code()).collect();
                        ParseError::new(format!(
                            concat!("unknown ", $what, " '{}'; expected one of {}"),
                            wanted,
                            known.join(", ")
                        ))
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.label())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

labelled_enum! {
    /// What is in the tube.
    SampleType, "sample type" {
        Blood => "BLOOD", "Blood", ["WHOLEBLOOD"],
        Plasma => "PLASMA", "Plasma", [],
        Serum => "SERUM", "Serum", [],
        Dna => "DNA", "DNA", [],
        Rna => "RNA", "RNA", [],
        Tissue => "TISSUE", "Tissue", [],
        Urine => "URINE", "Urine", [],
        Saliva => "SALIVA", "Saliva", [],
        Csf => "CSF", "Cerebrospinal fluid", ["CEREBROSPINALFLUID"],
        Swab => "SWAB", "Swab", [],
        Cells => "CELLS", "Cells", ["CELL"],
        Stool => "STOOL", "Stool", [],
    }
}

labelled_enum! {
    /// The temperature a sample must be kept at.
    TemperatureZone, "temperature zone" {
        Minus80 => "MINUS_80", "−80 °C", ["-80", "-80C", "MINUS80", "ULTRALOW"],
        Minus20 => "MINUS_20", "−20 °C", ["-20", "-20C", "MINUS20", "FREEZER"],
        Plus4 => "PLUS_4", "4 °C", ["4", "4C", "+4", "+4C", "PLUS4", "FRIDGE"],
        RoomTemperature => "ROOM_TEMPERATURE", "room temperature", ["RT", "ROOM", "ROOMTEMPERATURE", "AMBIENT"],
        Plus37 => "PLUS_37", "37 °C", ["37", "37C", "+37", "+37C", "PLUS37", "INCUBATOR"],
    }
}

/// A volume in microlitres, exact to the nanolitre (three decimals); never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VolumeUl {
    nanolitres: u64,
}

impl VolumeUl {
    /// One litre: no tube we track holds more.
    pub const MAX_UL: u64 = 1_000_000;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(ParseError::new("volume is empty"));
        }
        if text.starts_with('-') {
            return Err(ParseError::new(format!(
                "volume must be greater than zero, got {text} µL"
            )));
        }
        let invalid = || {
            ParseError::new(format!(
                "volume '{text}' is not a number of microlitres (e.g. 250 or 12.5)"
            ))
        };
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let digits_only = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !digits_only(whole)
            || !digits_only(fraction)
        {
            return Err(invalid());
        }
        if fraction.len() > 3 {
            return Err(ParseError::new(format!(
                "volume '{text}' has more than three decimals; the finest unit is 0.001 µL"
            )));
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else if whole.len() > 7 {
            u64::MAX
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        if whole > Self::MAX_UL {
            return Err(ParseError::new(format!(
                "volume must be at most {} µL, got {text}",
                Self::MAX_UL
            )));
        }
        let mut frac = 0u64;
        for (i, c) in fraction.chars().enumerate() {
            frac += u64::from(c.to_digit(10).unwrap_or(0)) * 10u64.pow(2 - i as u32);
        }
        let nanolitres = whole * 1000 + frac;
        if nanolitres == 0 {
            return Err(ParseError::new("volume must be greater than zero"));
        }
        if nanolitres > Self::MAX_UL * 1000 {
            return Err(ParseError::new(format!(
                "volume must be at most {} µL, got {text}",
                Self::MAX_UL
            )));
        }
        Ok(Self { nanolitres })
    }

    pub const fn nanolitres(self) -> u64 {
        self.nanolitres
    }

    /// A volume of `nanolitres`, if more than zero and at most [`Self::MAX_UL`].
    pub fn from_nanolitres(nanolitres: u64) -> Option<Self> {
        (nanolitres > 0 && nanolitres <= Self::MAX_UL * 1000).then_some(Self { nanolitres })
    }
}

impl fmt::Display for VolumeUl {
    /// Microlitres without trailing zeros: `250`, `12.5`, `0.001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.nanolitres / 1000;
        let frac = self.nanolitres % 1000;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:03}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// A volume that may be zero: what is left in a tube after aliquots were taken.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Volume {
    nanolitres: u64,
}

impl Volume {
    pub const fn from_nanolitres(nanolitres: u64) -> Self {
        Self { nanolitres }
    }
    pub const fn nanolitres(self) -> u64 {
        self.nanolitres
    }
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let text = raw.trim();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if !text.is_empty()
            && fraction.len() <= 3
            && whole.chars().chain(fraction.chars()).all(|c| c == '0')
        {
            return Ok(Self::default());
        }
        VolumeUl::parse(raw).map(Self::from)
    }
}

impl From<VolumeUl> for Volume {
    fn from(value: VolumeUl) -> Self {
        Self::from_nanolitres(value.nanolitres())
    }
}

impl fmt::Display for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match VolumeUl::from_nanolitres(self.nanolitres) {
            Some(volume) => volume.fmt(f),
            None if self.nanolitres == 0 => f.write_str("0"),
            None => write!(f, "{}", self.nanolitres / 1000),
        }
    }
}

impl TryFrom<String> for Volume {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Volume> for String {
    fn from(value: Volume) -> Self {
        value.to_string()
    }
}

impl TryFrom<String> for VolumeUl {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<VolumeUl> for String {
    fn from(value: VolumeUl) -> Self {
        value.to_string()
    }
}

macro_rules! bounded_text {
    ($(#[$meta:meta])* $name:ident, $what:literal, $max:expr, $allowed:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                let value = raw.trim();
                if value.is_empty() {
                    return Err(ParseError::new(concat!($what, " is empty")));
                }
                if value.chars().count() > Self::MAX_LEN {
                    return Err(ParseError::new(format!(
                        concat!($what, " must be at most {} characters"),
                        Self::MAX_LEN
                    )));
                }
                let allowed: fn(char) -> bool = $allowed;
                if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
                    return Err(ParseError::new(format!(
                        concat!($what, " contains a character that is not allowed: {:?}"),
                        bad
                    )));
                }
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}
pub(crate) use bounded_text;

bounded_text!(
    /// Reference to the patient a sample was taken from (e.g. a medical record number).
    PatientRef,
    "patient reference",
    64,
    |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
);

bounded_text!(
    /// Free text a person wrote (a reason, a note, a name); no control characters.
    Note,
    "text",
    500,
    |c| !c.is_control()
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn barcode_is_trimmed_and_upper_cased() {
        assert_eq!(
            Barcode::parse("  lab-001 \n").map(|b| b.to_string()),
            Ok("LAB-001".into())
        );
    }

    #[test]
    fn barcode_rejects_bad_characters_and_lengths() {
        assert!(Barcode::parse("").is_err());
        assert!(Barcode::parse("AB").is_err());
        assert!(Barcode::parse(&"A".repeat(65)).is_err());
        let err = Barcode::parse("LAB 001").unwrap_err();
        assert!(err.message.contains("' '"), "{err}");
    }

    #[test]
    fn generated_barcode_follows_the_lab_pattern() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 22).expect("valid date");
        let barcode = Barcode::generate(SampleType::Plasma, date, 42);
        assert_eq!(barcode.as_str(), "LAB-PLASMA-20261122-000042");
        assert_eq!(Barcode::parse(barcode.as_str()), Ok(barcode));
    }

    #[test]
    fn enums_accept_codes_labels_and_aliases() {
        assert_eq!(SampleType::parse("dna"), Ok(SampleType::Dna));
        assert_eq!(SampleType::parse(" Blood "), Ok(SampleType::Blood));
        assert_eq!(
            TemperatureZone::parse("-80 °C"),
            Ok(TemperatureZone::Minus80)
        );
        assert_eq!(
            TemperatureZone::parse("−20 °C"),
            Ok(TemperatureZone::Minus20)
        );
        assert_eq!(
            TemperatureZone::parse("rt"),
            Ok(TemperatureZone::RoomTemperature)
        );
        assert_eq!(TemperatureZone::parse("PLUS_4"), Ok(TemperatureZone::Plus4));
        let err = SampleType::parse("lava").unwrap_err();
        assert!(err.message.contains("unknown sample type 'lava'"), "{err}");
        assert!(err.message.contains("BLOOD"), "{err}");
    }

    #[test]
    fn every_enum_value_parses_from_its_code_and_label() {
        for t in SampleType::ALL {
            assert_eq!(SampleType::parse(t.code()), Ok(*t));
            assert_eq!(SampleType::parse(t.label()), Ok(*t));
        }
        for z in TemperatureZone::ALL {
            assert_eq!(TemperatureZone::parse(z.code()), Ok(*z));
            assert_eq!(TemperatureZone::parse(z.label()), Ok(*z));
        }
    }

    #[test]
    fn volume_parses_exact_decimals() {
        let v = |s: &str| VolumeUl::parse(s).map(|v| v.nanolitres());
        assert_eq!(v("250"), Ok(250_000));
        assert_eq!(v("12.5"), Ok(12_500));
        assert_eq!(v("0.001"), Ok(1));
        assert_eq!(v(".5"), Ok(500));
        assert_eq!(v("1000000"), Ok(1_000_000_000));
        assert!(v("0").is_err());
        assert!(v("-5").unwrap_err().message.contains("greater than zero"));
        assert!(v("1.0001").is_err());
        assert!(v("1e3").is_err());
        assert!(v("1000000.001").is_err());
        assert!(v("99999999999999999999999").is_err());
        assert!(v(".").is_err());
    }

    #[test]
    fn volume_displays_without_trailing_zeros() {
        let show = |s: &str| VolumeUl::parse(s).map(|v| v.to_string());
        assert_eq!(show("250.000"), Ok("250".into()));
        assert_eq!(show("12.50"), Ok("12.5".into()));
        assert_eq!(show("0.010"), Ok("0.01".into()));
    }

    #[test]
    fn note_rejects_empty_and_control_characters() {
        assert!(Note::parse("   ").is_err());
        assert!(Note::parse("bad\u{0007}").is_err());
        assert!(Note::parse(&"x".repeat(501)).is_err());
        assert_eq!(
            Note::parse(" haemolysed ").map(|n| n.to_string()),
            Ok("haemolysed".into())
        );
    }

    proptest! {
        #[test]
        fn any_valid_barcode_round_trips(raw in "[A-Za-z0-9_.-]{3,64}") {
            let barcode = Barcode::parse(&raw).expect("valid barcode");
            prop_assert_eq!(barcode.as_str(), raw.to_ascii_uppercase());
            let json = serde_json::to_string(&barcode).expect("serialise");
            prop_assert_eq!(serde_json::from_str::<Barcode>(&json).expect("deserialise"), barcode);
        }

        #[test]
        fn barcode_with_any_other_character_is_rejected(
            prefix in "[A-Z0-9]{1,20}",
            bad in "[^A-Za-z0-9_.\\-\\s]",
            suffix in "[A-Z0-9]{1,20}",
        ) {
            let raw = format!("{prefix}{bad}{suffix}");
            prop_assert!(Barcode::parse(&raw).is_err());
        }

        #[test]
        fn generated_barcodes_always_parse(seq in 0u64..10_000_000, days in 0i64..20_000) {
            let date = NaiveDate::from_ymd_opt(2000, 1, 1).expect("date") + chrono::Days::new(days as u64);
            for t in SampleType::ALL {
                let generated = Barcode::generate(*t, date, seq);
                prop_assert_eq!(Barcode::parse(generated.as_str()), Ok(generated.clone()));
            }
        }

        #[test]
        fn volume_display_parse_round_trips(nl in 1u64..=1_000_000_000) {
            let text = format!("{}.{:03}", nl / 1000, nl % 1000);
            let volume = VolumeUl::parse(&text).expect("valid volume");
            prop_assert_eq!(volume.nanolitres(), nl);
            prop_assert_eq!(VolumeUl::parse(&volume.to_string()), Ok(volume));
        }

        #[test]
        fn volume_parser_never_panics(raw in "\\PC{0,40}") {
            let _ = VolumeUl::parse(&raw);
            let _ = SampleType::parse(&raw);
            let _ = TemperatureZone::parse(&raw);
        }
    }
}
