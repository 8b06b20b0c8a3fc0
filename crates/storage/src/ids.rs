//! Typed identifiers and the user-visible name rule (DESIGN.md rule 1).
//!
//! Pools and volumes are identified by UUIDs chosen by the caller; every backend
//! object is named from those UUIDs, never from user text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StorageError;

fn parse_uuid(what: &str, s: &str) -> Result<Uuid, StorageError> {
    // Only the canonical hyphenated form: other spellings (braces, urn:) of the
    // same UUID would let one volume be addressed under several ids.
    let parsed = (s.len() == 36)
        .then(|| Uuid::try_parse(s).ok())
        .flatten()
        .filter(|u| !u.is_nil());
    parsed.ok_or_else(|| {
        StorageError::invalid(format!(
            "{what} id {s:?} is not a UUID; use the form 123e4567-e89b-12d3-a456-426614174000"
        ))
    })
}

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
            /// The same id for the same name within `namespace`, always
            /// (UUID v5): for things named elsewhere, such as a LUN by its WWN.
            pub fn derived(namespace: &Uuid, name: &str) -> Self {
                Self(Uuid::new_v5(namespace, name.as_bytes()))
            }
        }

        impl FromStr for $name {
            type Err = StorageError;
            fn from_str(s: &str) -> Result<Self, StorageError> {
                parse_uuid($what, s).map(Self)
            }
        }

        impl TryFrom<String> for $name {
            type Error = StorageError;
            fn try_from(s: String) -> Result<Self, StorageError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self)
            }
        }
    };
}

uuid_id!(PoolId, "pool");
uuid_id!(VolumeId, "volume");

/// A user-visible name (snapshots on the node; pools and volumes in the control
/// plane): `^[a-z0-9][a-z0-9._-]{0,62}$`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

pub const NAME_MAX_LEN: usize = 63;

impl Name {
    pub fn parse(what: &str, s: &str) -> Result<Self, StorageError> {
        let bad = |why: &str| {
            StorageError::invalid(format!(
                "{what} name {s:?} is invalid: {why}; use 1 to {NAME_MAX_LEN} characters \
                 from a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
            ))
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() > NAME_MAX_LEN {
            return Err(bad(&format!("it is {} characters long", s.len())));
        }
        let first = s.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(bad("it must start with a lowercase letter or a digit"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
        {
            return Err(bad(&format!("the character {c:?} is not allowed")));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = StorageError;
    fn try_from(s: String) -> Result<Self, StorageError> {
        Self::parse("", &s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["a", "0", "web-01", "db_backup.2026", &"x".repeat(63)] {
            assert!(Name::parse("snapshot", ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "", "a/b", "..", "../x", "a b", "<x>", "a&b", "it's", "\"q\"", "-rf", ".hidden",
            "Upper", "é", &"x".repeat(64), "a\nb", "a\0b",
        ] {
            let err = Name::parse("snapshot", bad).unwrap_err();
            assert!(matches!(err, StorageError::InvalidArgument(_)), "{bad:?}");
            assert!(err.to_string().contains("snapshot name"), "{err}");
        }
    }

    #[test]
    fn ids_accept_only_canonical_uuids() {
        let id: VolumeId = "123e4567-e89b-12d3-a456-426614174000".parse().unwrap();
        assert_eq!(id.to_string(), "123e4567-e89b-12d3-a456-426614174000");
        let upper: VolumeId = "123E4567-E89B-12D3-A456-426614174000".parse().unwrap();
        assert_eq!(upper, id);
        for bad in [
            "",
            "vol1",
            "../../etc/passwd",
            "{123e4567-e89b-12d3-a456-426614174000}",
            "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
            "123e4567e89b12d3a456426614174000",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert!(bad.parse::<VolumeId>().is_err(), "{bad:?}");
        }
    }
}
