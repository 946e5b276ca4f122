//! Value types of the storage hierarchy, each built only by parsing.

use crate::sample::{ParseError, TemperatureZone, bounded_text};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Identity of a storage unit (a freezer, a rack or a box).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnitId(Uuid);

impl UnitId {
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

impl Default for UnitId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for UnitId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(Self).map_err(|_| {
            ParseError::new(format!("'{s}' is not a storage unit id (expected a UUID)"))
        })
    }
}

/// What a unit is; it decides what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// Holds racks, one per numbered slot.
    Freezer,
    /// Holds boxes, one per numbered slot; sits in a freezer slot.
    Rack,
    /// Holds samples in a grid of positions; sits in a rack slot.
    Box,
}

impl UnitKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Freezer => "freezer",
            Self::Rack => "rack",
            Self::Box => "box",
        }
    }

    /// The kind a unit of this kind sits in.
    pub const fn parent(self) -> Option<Self> {
        match self {
            Self::Freezer => None,
            Self::Rack => Some(Self::Freezer),
            Self::Box => Some(Self::Rack),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "freezer" => Ok(Self::Freezer),
            "rack" => Ok(Self::Rack),
            "box" => Ok(Self::Box),
            other => Err(ParseError::new(format!(
                "unknown kind of storage unit '{other}'; expected freezer, rack or box"
            ))),
        }
    }
}

impl fmt::Display for UnitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

bounded_text!(
    /// A unit's name as people call it ("Freezer 3, room 2.14"); can be changed.
    UnitName,
    "name",
    100,
    |c| !c.is_control()
);

/// A unit's barcode, printed on its label and scanned in scanner flows: 3 to 32
/// characters of `A-Z`, `0-9`, `-`, `_`, `.`, stored upper-case. Never changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UnitCode(String);

impl UnitCode {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let code = raw.trim().to_ascii_uppercase();
        if code.len() < 3 || code.len() > 32 {
            return Err(ParseError::new(format!(
                "a unit barcode has 3 to 32 characters, got {}",
                code.chars().count()
            )));
        }
        if let Some(bad) = code
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(ParseError::new(format!(
                "a unit barcode may hold letters, digits, '-', '_' and '.', not {bad:?}"
            )));
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for UnitCode {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UnitCode> for String {
    fn from(value: UnitCode) -> Self {
        value.0
    }
}

/// A box's grid: rows lettered from `A`, columns numbered from 1 (`A1` … `J10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grid {
    pub rows: u8,
    pub columns: u8,
}

impl Grid {
    pub const MAX_ROWS: u8 = 26;
    pub const MAX_COLUMNS: u8 = 24;

    pub fn new(rows: u8, columns: u8) -> Result<Self, ParseError> {
        if rows == 0 || rows > Self::MAX_ROWS {
            return Err(ParseError::new(format!(
                "a box has 1 to {} rows, got {rows}",
                Self::MAX_ROWS
            )));
        }
        if columns == 0 || columns > Self::MAX_COLUMNS {
            return Err(ParseError::new(format!(
                "a box has 1 to {} columns, got {columns}",
                Self::MAX_COLUMNS
            )));
        }
        Ok(Self { rows, columns })
    }

    /// `9x9`, `10x10`, `8x12` (rows × columns).
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let text = raw.trim().to_ascii_lowercase().replace('×', "x");
        let (rows, columns) = text.split_once('x').ok_or_else(|| {
            ParseError::new(format!(
                "a box size is rows x columns, e.g. 9x9 or 8x12, got '{}'",
                raw.trim()
            ))
        })?;
        let number = |s: &str| {
            s.trim().parse::<u8>().map_err(|_| {
                ParseError::new(format!(
                    "a box size is rows x columns, e.g. 9x9 or 8x12, got '{}'",
                    raw.trim()
                ))
            })
        };
        Self::new(number(rows)?, number(columns)?)
    }

    pub const fn capacity(self) -> u32 {
        self.rows as u32 * self.columns as u32
    }

    /// Every position, row by row: `A1, A2, … B1, …`.
    pub fn positions(self) -> impl Iterator<Item = Position> {
        (0..self.rows)
            .flat_map(move |row| (1..=self.columns).map(move |column| Position { row, column }))
    }

    pub fn contains(self, position: Position) -> bool {
        position.row < self.rows && position.column >= 1 && position.column <= self.columns
    }
}

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}", self.rows, self.columns)
    }
}

/// A position in a box: row letter and column number, `A1`, `J10`. Row 0 is `A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Position {
    row: u8,
    column: u8,
}

impl Position {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let text = raw.trim().to_ascii_uppercase();
        let invalid = || {
            ParseError::new(format!(
                "'{}' is not a box position; a position is a row letter and a column number, e.g. A1 or J10",
                raw.trim()
            ))
        };
        let mut chars = text.chars();
        let letter = chars.next().ok_or_else(invalid)?;
        if !letter.is_ascii_uppercase() {
            return Err(invalid());
        }
        let digits = chars.as_str();
        if digits.is_empty() || digits.len() > 2 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid());
        }
        let column: u8 = digits.parse().map_err(|_| invalid())?;
        if column == 0 {
            return Err(invalid());
        }
        Ok(Self {
            row: letter as u8 - b'A',
            column,
        })
    }

    pub const fn row(self) -> u8 {
        self.row
    }
    pub const fn column(self) -> u8 {
        self.column
    }
    pub fn row_letter(self) -> char {
        (b'A' + self.row) as char
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.row_letter(), self.column)
    }
}

impl TryFrom<String> for Position {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Position> for String {
    fn from(value: Position) -> Self {
        value.to_string()
    }
}

impl FromStr for Position {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A temperature in degrees Celsius, exact to a tenth of a degree; never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Celsius {
    tenths: i32,
}

impl Celsius {
    pub const fn from_tenths(tenths: i32) -> Self {
        Self { tenths }
    }
    pub const fn tenths(self) -> i32 {
        self.tenths
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let text = raw
            .trim()
            .trim_end_matches("°C")
            .trim_end_matches('C')
            .trim()
            .replace('\u{2212}', "-");
        let invalid = || {
            ParseError::new(format!(
                "'{}' is not a temperature in °C (e.g. -80.5 or 4)",
                raw.trim()
            ))
        };
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(&text)),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if whole.is_empty()
            || whole.len() > 3
            || fraction.len() > 1
            || !whole
                .chars()
                .chain(fraction.chars())
                .all(|c| c.is_ascii_digit())
        {
            return Err(invalid());
        }
        let whole: i32 = whole.parse().map_err(|_| invalid())?;
        let fraction: i32 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| invalid())?
        };
        let tenths = whole * 10 + fraction;
        let tenths = if negative { -tenths } else { tenths };
        if !(-2000..=1000).contains(&tenths) {
            return Err(ParseError::new(format!(
                "{} °C is outside what a lab thermometer reads (−200 to 100 °C)",
                raw.trim()
            )));
        }
        Ok(Self { tenths })
    }
}

impl fmt::Display for Celsius {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.tenths < 0 { "-" } else { "" };
        let abs = self.tenths.unsigned_abs();
        if abs.is_multiple_of(10) {
            write!(f, "{sign}{}", abs / 10)
        } else {
            write!(f, "{sign}{}.{}", abs / 10, abs % 10)
        }
    }
}

impl TryFrom<String> for Celsius {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Celsius> for String {
    fn from(value: Celsius) -> Self {
        value.to_string()
    }
}

/// The range of temperatures a zone tolerates, inclusive. Outside it, a reading is an
/// excursion. Ranges follow common biobank practice (ISBER): ultra-low freezers alarm
/// above −60 °C, freezers above −10 °C, fridges outside 2–8 °C, rooms outside 15–25 °C,
/// incubators outside 35–39 °C.
pub fn tolerated(zone: TemperatureZone) -> (Celsius, Celsius) {
    let (low, high) = match zone {
        TemperatureZone::Minus80 => (-900, -600),
        TemperatureZone::Minus20 => (-300, -100),
        TemperatureZone::Plus4 => (20, 80),
        TemperatureZone::RoomTemperature => (150, 250),
        TemperatureZone::Plus37 => (350, 390),
    };
    (Celsius::from_tenths(low), Celsius::from_tenths(high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn positions_parse_and_print() {
        assert_eq!(
            Position::parse(" j10 ").map(|p| p.to_string()),
            Ok("J10".into())
        );
        for bad in ["", "1A", "A0", "A", "AA1", "A100", "é1"] {
            assert!(Position::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn grids_know_their_positions() {
        let grid = Grid::parse("9x9").expect("grid");
        assert_eq!(grid.capacity(), 81);
        assert_eq!(grid.positions().count(), 81);
        assert!(grid.contains(Position::parse("I9").expect("pos")));
        assert!(!grid.contains(Position::parse("J1").expect("pos")));
        assert!(!grid.contains(Position::parse("A10").expect("pos")));
        assert_eq!(Grid::parse("8 × 12").map(|g| g.capacity()), Ok(96));
        assert!(Grid::parse("0x9").is_err());
        assert!(Grid::parse("ten by ten").is_err());
    }

    #[test]
    fn celsius_is_exact_to_a_tenth() {
        assert_eq!(Celsius::parse("-80.5").map(|c| c.tenths()), Ok(-805));
        assert_eq!(
            Celsius::parse("−20 °C").map(|c| c.to_string()),
            Ok("-20".into())
        );
        assert_eq!(
            Celsius::parse("+4.0").map(|c| c.to_string()),
            Ok("4".into())
        );
        assert_eq!(
            Celsius::parse("-0.5").map(|c| c.to_string()),
            Ok("-0.5".into())
        );
        for bad in ["", "-", "4.25", "abc", "-300", "1e3"] {
            assert!(Celsius::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn every_zone_tolerates_its_own_temperature() {
        for zone in TemperatureZone::ALL {
            let (low, high) = tolerated(*zone);
            assert!(low < high, "{zone}");
        }
    }

    proptest! {
        #[test]
        fn positions_round_trip(row in 0u8..26, column in 1u8..100) {
            let p = Position { row, column };
            prop_assert_eq!(Position::parse(&p.to_string()), Ok(p));
        }

        #[test]
        fn celsius_round_trips(tenths in -2000i32..=1000) {
            let c = Celsius::from_tenths(tenths);
            prop_assert_eq!(Celsius::parse(&c.to_string()), Ok(c));
        }
    }
}
