//! Join tokens (one node enrols once) and API tokens (people and tools).
//! Only a hash of a token's secret is ever stored.

use anyhow::bail;

const JOIN_PREFIX: &str = "lqjoin";
const API_PREFIX: &str = "lqt";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf).expect("the system's random source");
    crate::hex(&buf)
}

/// A join token: `lqjoin.<id>.<secret>.<ca sha256>`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub secret: String,
    pub ca_sha256: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken").field("id", &self.id).field("ca_sha256", &self.ca_sha256).finish_non_exhaustive()
    }
}

impl JoinToken {
    pub fn new(ca_sha256: &str) -> Self {
        Self { id: random_hex(ID_BYTES), secret: random_hex(SECRET_BYTES), ca_sha256: ca_sha256.to_owned() }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        match parts.as_slice() {
            [JOIN_PREFIX, id, secret, ca]
                if is_hex(id, ID_BYTES * 2) && is_hex(secret, SECRET_BYTES * 2) && is_hex(ca, 64) =>
            {
                Ok(Self { id: (*id).into(), secret: (*secret).into(), ca_sha256: (*ca).into() })
            }
            _ => bail!("not a join token (expected lqjoin.<id>.<secret>.<ca sha256>, as `lqctl node join-token create` prints)"),
        }
    }

    pub fn secret_hash(&self) -> String {
        crate::sha256_hex(self.secret.as_bytes())
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{JOIN_PREFIX}.{}.{}.{}", self.id, self.secret, self.ca_sha256)
    }
}

/// An API (bearer) token: `lqt.<id>.<secret>`. The id is public (lists,
/// revocation); the whole token is the credential.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ApiToken {
    pub fn new() -> Self {
        Self { id: random_hex(ID_BYTES), secret: random_hex(SECRET_BYTES) }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().split('.').collect::<Vec<_>>().as_slice() {
            [API_PREFIX, id, secret] if is_hex(id, ID_BYTES * 2) && is_hex(secret, SECRET_BYTES * 2) => {
                Some(Self { id: (*id).into(), secret: (*secret).into() })
            }
            _ => None,
        }
    }

    pub fn secret_hash(&self) -> String {
        crate::sha256_hex(self.secret.as_bytes())
    }
}

impl Default for ApiToken {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{API_PREFIX}.{}.{}", self.id, self.secret)
    }
}

/// Compares two hashes in time independent of where they differ.
pub fn hashes_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_malformed_ones_are_refused() {
        let j = JoinToken::new(&"ab".repeat(32));
        assert_eq!(JoinToken::parse(&j.to_string()).unwrap(), j);
        assert!(!format!("{j:?}").contains(&j.secret), "Debug hides the secret");
        let a = ApiToken::new();
        assert_eq!(ApiToken::parse(&a.to_string()), Some(a.clone()));
        assert_ne!(ApiToken::new().secret, a.secret);
        for bad in ["", "lqt", "lqt.x.y", &format!("lqt.{}.{}", a.id, "z".repeat(64)), &format!("lqjoin.{}.{}", a.id, a.secret)] {
            assert_eq!(ApiToken::parse(bad), None, "{bad}");
            assert!(JoinToken::parse(bad).is_err(), "{bad}");
        }
        assert!(hashes_match(&a.secret_hash(), &a.secret_hash()));
        assert!(!hashes_match(&a.secret_hash(), &ApiToken::new().secret_hash()));
    }
}
