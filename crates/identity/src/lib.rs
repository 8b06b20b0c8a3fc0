//! Who is who in a LimiQuantix cluster. Every certificate is signed by the
//! cluster CA and names its holder by a DNS name the CA alone hands out:
//! `control.limiquantix` (the control plane), `admin.limiquantix` (people
//! calling node daemons directly), `<node id>.node.limiquantix` (a node).
//! Peers check these names instead of network addresses, so a node's
//! certificate is bound to its id wherever it runs.

pub mod ca;
pub mod credentials;
pub mod peer;
pub mod pin;
pub mod tls;
pub mod tokens;

pub const CONTROL_NAME: &str = "control.limiquantix";
pub const ADMIN_NAME: &str = "admin.limiquantix";
const NODE_SUFFIX: &str = ".node.limiquantix";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    Control,
    Admin,
    Node(String),
}

impl PeerIdentity {
    /// The DNS name that stands for this identity in a certificate.
    pub fn dns_name(&self) -> String {
        match self {
            Self::Control => CONTROL_NAME.to_owned(),
            Self::Admin => ADMIN_NAME.to_owned(),
            Self::Node(id) => format!("{id}{NODE_SUFFIX}"),
        }
    }

    pub fn from_dns_name(name: &str) -> Option<Self> {
        match name {
            CONTROL_NAME => Some(Self::Control),
            ADMIN_NAME => Some(Self::Admin),
            _ => {
                let id = name.strip_suffix(NODE_SUFFIX)?;
                // Node ids are UUIDs: nothing else is a node's name.
                let uuid_shaped = id.len() == 36
                    && id.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
                uuid_shaped.then(|| Self::Node(id.to_ascii_lowercase()))
            }
        }
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Control => f.write_str("the control plane"),
            Self::Admin => f.write_str("an admin"),
            Self::Node(id) => write!(f, "node {id}"),
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_identities_and_nothing_else_does() {
        let id = "0d0d0d0d-0000-4000-8000-000000000001";
        for who in [PeerIdentity::Control, PeerIdentity::Admin, PeerIdentity::Node(id.into())] {
            assert_eq!(PeerIdentity::from_dns_name(&who.dns_name()), Some(who));
        }
        for other in ["x.node.limiquantix", "evil.control.limiquantix", "node.limiquantix", "control.limiquantix.evil", ""] {
            assert_eq!(PeerIdentity::from_dns_name(other), None, "{other}");
        }
    }
}
