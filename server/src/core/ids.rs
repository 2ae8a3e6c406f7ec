//! Identifier newtypes. Parsed once at the edge; the core never sees raw strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An identifier that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: use 1–64 characters from A–Z, a–z, 0–9, '_' and '-'")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                if valid_id(&value) {
                    Ok(Self(value))
                } else {
                    Err(InvalidId { kind: $kind, value })
                }
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::try_from(s.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A ward office or branch office (拠点).
    SiteId, "site id"
);
id_type!(
    /// A queue (待ち行列) within a site.
    QueueId, "queue id"
);
id_type!(
    /// A counter (窓口) within a site.
    CounterId, "counter id"
);
id_type!(
    /// A procedure (手続) code.
    ProcedureCode, "procedure code"
);
id_type!(
    /// A life event (ライフイベント) id.
    LifeEventId, "life event id"
);
id_type!(
    /// A yes/no question of a life event.
    QuestionId, "question id"
);
id_type!(
    /// A ticket dispenser (発券機) within a site.
    DispenserId, "dispenser id"
);
id_type!(
    /// A printer agent (the small PC beside a dispenser that drives its printer).
    PrinterId, "printer agent id"
);
id_type!(
    /// A ticket's stable id (a UUID), distinct from its short display number.
    TicketId, "ticket id"
);

/// The number printed on a ticket and called out in the lobby ("A012", "123").
/// Unique per site and business day.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct TicketNumber(pub String);

impl fmt::Display for TicketNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TicketNumber {
    pub fn format(prefix: &str, value: u32) -> Self {
        if prefix.is_empty() {
            Self(value.to_string())
        } else {
            Self(format!("{prefix}{value:03}"))
        }
    }
}

/// A text in Japanese and English; Japanese is shown first.
pub use madoguchi_wire::I18n;
