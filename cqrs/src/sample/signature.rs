//! Electronic signatures on QC decisions (21 CFR Part 11 §11.50, §11.200).
//!
//! A [`Signature`] binds who signed (the account's stable id and the printed name), when,
//! and what the signature means (performed, reviewed, approved) into the QC event itself,
//! so the record and its signature cannot be separated (§11.70). In a stored payload and
//! in the Avro record the signature is four flat fields, `signed_by_id`, `signed_by`,
//! `signature_meaning` and `signed_at`; all four are absent (null) only for QC decisions
//! recorded before signatures existed.

use super::ParseError;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// What a signature means (§11.50(a)(3)): the signer's responsibility for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMeaning {
    /// I did the work this record describes.
    Performed,
    /// I checked the work someone else did.
    Reviewed,
    /// I release the result: it is fit for use.
    Approved,
}

impl SignatureMeaning {
    pub const ALL: &'static [Self] = &[Self::Performed, Self::Reviewed, Self::Approved];

    /// The stable code, as stored and sent: `performed`, `reviewed`, `approved`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Performed => "performed",
            Self::Reviewed => "reviewed",
            Self::Approved => "approved",
        }
    }

    /// What a person reads when choosing a meaning.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Performed => "Performed: I did this QC",
            Self::Reviewed => "Reviewed: I checked this QC",
            Self::Approved => "Approved: I release this decision",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let wanted = raw.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ParseError {
                message: if wanted.is_empty() {
                    "choose what your signature means: performed, reviewed or approved".into()
                } else {
                    format!(
                        "unknown signature meaning '{wanted}'; expected one of performed, reviewed, approved"
                    )
                },
            })
    }
}

impl fmt::Display for SignatureMeaning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignatureMeaning {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An electronic signature, as the edge issues it once it has verified the signer's
/// password (§11.200(a)): the domain only carries it into the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The signer's account.
    pub signer_id: Uuid,
    /// The signer's printed name (§11.50(a)(1)).
    pub signer_name: String,
    pub meaning: SignatureMeaning,
    /// When it was signed (UTC).
    pub signed_at: DateTime<Utc>,
}

impl Signature {
    /// A signature made at `signed_at`, kept to the microsecond: the precision of the
    /// Avro record, so the stored event and its published record agree.
    pub fn new(
        signer_id: Uuid,
        signer_name: impl Into<String>,
        meaning: SignatureMeaning,
        signed_at: DateTime<Utc>,
    ) -> Self {
        Self {
            signer_id,
            signer_name: signer_name.into(),
            meaning,
            signed_at: signed_at.trunc_subsecs(6),
        }
    }
}

impl fmt::Display for Signature {
    /// `Signed by Ana Müller (approved) at 2026-11-23 10:00 UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signed by {} ({}) at {}",
            self.signer_name,
            self.meaning,
            self.signed_at.format("%Y-%m-%d %H:%M UTC")
        )
    }
}

/// An optional signature as four flat payload fields (`#[serde(flatten, with = ..)]`),
/// named as in the Avro records. None writes no field; reading, all four or none must be
/// there (null counts as absent): a partial signature is an error, never read as none.
pub(crate) mod flat {
    use super::{Signature, SignatureMeaning};
    use chrono::{DateTime, Utc};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use uuid::Uuid;

    #[derive(Serialize, Deserialize)]
    struct Fields {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed_by_id: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed_by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature_meaning: Option<SignatureMeaning>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed_at: Option<DateTime<Utc>>,
    }

    pub fn serialize<S: Serializer>(
        signature: &Option<Signature>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let fields = match signature {
            Some(s) => Fields {
                signed_by_id: Some(s.signer_id),
                signed_by: Some(s.signer_name.clone()),
                signature_meaning: Some(s.meaning),
                signed_at: Some(s.signed_at),
            },
            None => Fields {
                signed_by_id: None,
                signed_by: None,
                signature_meaning: None,
                signed_at: None,
            },
        };
        fields.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Signature>, D::Error> {
        let fields = Fields::deserialize(deserializer)?;
        match (
            fields.signed_by_id,
            fields.signed_by,
            fields.signature_meaning,
            fields.signed_at,
        ) {
            (Some(signer_id), Some(signer_name), Some(meaning), Some(signed_at)) => {
                Ok(Some(Signature {
                    signer_id,
                    signer_name,
                    meaning,
                    signed_at,
                }))
            }
            (None, None, None, None) => Ok(None),
            _ => Err(D::Error::custom(
                "a signature needs all of signed_by_id, signed_by, signature_meaning and signed_at",
            )),
        }
    }
}
