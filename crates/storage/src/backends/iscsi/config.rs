//! The parts of an iSCSI pool's config, checked: they reach libiscsi, QEMU's
//! option strings and libvirt XML, so nothing that could change their
//! meaning (separators, option syntax, control characters) passes.

use crate::error::{Result, StorageError};

pub const DEFAULT_PORT: u16 = 3260;
/// RFC 7143 asks for CHAP secrets of at least 96 bits; targets cap them.
const CHAP_SECRET_MIN: usize = 12;
const CHAP_SECRET_MAX: usize = 255;

/// `host:port` of a target portal (`[v6]:port` for IPv6; 3260 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portal {
    pub host: String,
    pub port: u16,
}

impl Portal {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || StorageError::invalid(format!("iSCSI portal {text:?} is not host[:port] (IPv6 as [addr]:port)"));
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
            v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (v6.to_owned(), port)
        } else {
            match text.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (text.to_owned(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
            None => DEFAULT_PORT,
        };
        if !crate::net::is_host(&host) {
            return Err(bad());
        }
        Ok(Self { host, port })
    }

    /// As libiscsi and QEMU take it.
    pub fn address(&self) -> String {
        format!("{}:{}", crate::net::bracketed(&self.host), self.port)
    }
}

/// At most this many portals per pool.
const MAX_PORTALS: usize = 8;

/// A pool's portals, in the order they are tried: at least one, no repeats.
pub fn parse_portals(texts: &[String]) -> Result<Vec<Portal>> {
    if texts.is_empty() {
        return Err(StorageError::invalid("an iSCSI pool needs the target's portal (host[:port]), or several"));
    }
    if texts.len() > MAX_PORTALS {
        return Err(StorageError::invalid(format!("an iSCSI pool takes at most {MAX_PORTALS} portals, not {}", texts.len())));
    }
    let mut portals: Vec<Portal> = Vec::with_capacity(texts.len());
    for text in texts {
        let portal = Portal::parse(text)?;
        if portals.contains(&portal) {
            return Err(StorageError::invalid(format!("iSCSI portal {portal} is given twice")));
        }
        portals.push(portal);
    }
    Ok(portals)
}

impl std::fmt::Display for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address())
    }
}

/// An iSCSI name in one of RFC 3720's forms: `iqn.YYYY-MM.reversed.domain[:suffix]`,
/// `eui.` + 16 hex digits, `naa.` + 16 or 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IscsiName(String);

impl IscsiName {
    pub fn parse(text: &str) -> Result<Self> {
        let hex = |s: &str, lens: &[usize]| lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
        let ok = if let Some(rest) = text.strip_prefix("iqn.") {
            let (date, name) = rest.split_at(rest.len().min(7));
            let date_ok = date.len() == 7
                && date.as_bytes()[4] == b'-'
                && date[..4].bytes().all(|b| b.is_ascii_digit())
                && date[5..].bytes().all(|b| b.is_ascii_digit());
            let name_ok = name.starts_with('.')
                && name.len() > 1
                && name[1..].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b));
            date_ok && name_ok && text.len() <= 223
        } else if let Some(h) = text.strip_prefix("eui.") {
            hex(h, &[16])
        } else if let Some(h) = text.strip_prefix("naa.") {
            hex(h, &[16, 32])
        } else {
            false
        };
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(StorageError::invalid(format!(
                "{text:?} is not an iSCSI name: iqn.YYYY-MM.reversed.domain[:name] (lower case), eui.<16 hex> or naa.<16 or 32 hex>"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IscsiName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A CHAP user and secret. The secret is printable ASCII of 12 to 255
/// characters and is never shown (Debug redacts it). With mutual CHAP, the
/// target's own user and secret, which it must prove it knows.
#[derive(Clone)]
pub struct Chap {
    pub username: String,
    secret: String,
    pub mutual: Option<Box<Chap>>,
}

impl Chap {
    pub fn new(username: &str, secret: &str) -> Result<Self> {
        if username.is_empty() || username.len() > 255 || !username.bytes().all(|b| b.is_ascii_graphic()) || username.contains([',', '=']) {
            return Err(StorageError::invalid("the CHAP user name must be 1 to 255 printable characters, without ',' or '='"));
        }
        if !(CHAP_SECRET_MIN..=CHAP_SECRET_MAX).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(StorageError::invalid(format!(
                "the CHAP secret must be {CHAP_SECRET_MIN} to {CHAP_SECRET_MAX} printable characters"
            )));
        }
        Ok(Self { username: username.to_owned(), secret: secret.to_owned(), mutual: None })
    }

    /// Adds mutual CHAP: the target's credentials. RFC 7143 forbids using one
    /// secret in both directions.
    pub fn with_mutual(mut self, target: Chap) -> Result<Self> {
        if target.secret == self.secret {
            return Err(StorageError::invalid("the mutual CHAP secret must differ from the CHAP secret (RFC 7143)"));
        }
        self.mutual = Some(Box::new(target));
        Ok(self)
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Debug for Chap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chap").field("username", &self.username).field("secret", &"<redacted>").field("mutual", &self.mutual).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portals_parse_with_default_port_and_refuse_other_shapes() {
        assert_eq!(Portal::parse("10.0.0.5").unwrap(), Portal { host: "10.0.0.5".into(), port: 3260 });
        assert_eq!(Portal::parse("san01.example.com:3261").unwrap().address(), "san01.example.com:3261");
        assert_eq!(Portal::parse("[fd00::1]:3260").unwrap().address(), "[fd00::1]:3260");
        for bad in ["", "san 01:3260", "san;rm:3260", "-san:3260", "san:0", "san:70000", "san:32a", "fd00::1", "[fd00::1", "[x]:3260", "san:3260,1"] {
            assert!(Portal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iscsi_names_take_the_three_forms_only() {
        for ok in ["iqn.2024-01.io.limiquantix:tgt1", "iqn.2001-04.com.example", "eui.02004567a425678d", "naa.52004567ba64678d", "naa.6001405abcdef0123456789abcdef012"] {
            assert!(IscsiName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "iqn.2024-1.io.x", "iqn.2024-01", "iqn.2024-01.IO.X", "iqn.2024-01.io.x y", "iqn.2024-01.io.x,lun=2", "eui.123", "naa.zz004567ba64678d", "tgt1"] {
            assert!(IscsiName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chap_secrets_have_bounds_and_never_show() {
        assert!(Chap::new("lquser", "").is_err());
        assert!(Chap::new("lquser", "short").is_err());
        assert!(Chap::new("lquser", &"x".repeat(256)).is_err());
        assert!(Chap::new("lquser", "line\nbreak12345").is_err());
        assert!(Chap::new("", "a-long-enough-secret").is_err());
        assert!(Chap::new("user,x=1", "a-long-enough-secret").is_err());
        let chap = Chap::new("lquser", "a-long-enough-secret").unwrap();
        assert!(!format!("{chap:?}").contains("long-enough"));
        let same = Chap::new("array", "a-long-enough-secret").unwrap();
        assert!(chap.clone().with_mutual(same).unwrap_err().to_string().contains("must differ"));
        let mutual = chap.with_mutual(Chap::new("array", "the-targets-secret").unwrap()).unwrap();
        assert!(!format!("{mutual:?}").contains("targets-secret"));
    }

    #[test]
    fn portal_lists_are_one_to_eight_distinct_portals() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_portals(&list(&["10.0.0.5", "10.0.1.5:3261"])).unwrap().len(), 2);
        assert!(parse_portals(&[]).is_err());
        assert!(parse_portals(&list(&["10.0.0.5", "10.0.0.5:3260"])).unwrap_err().to_string().contains("twice"));
        assert!(parse_portals(&list(&["10.0.0.5", "10.0.0.6;reboot"])).is_err());
        let nine: Vec<String> = (1..=9).map(|i| format!("10.0.0.{i}")).collect();
        assert!(parse_portals(&nine).unwrap_err().to_string().contains("at most 8"));
    }
}
