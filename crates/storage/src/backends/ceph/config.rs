//! Checking a Ceph pool config before anything is contacted, and the files
//! qemu-img needs to reach the cluster (a conf naming a 0600 keyring, so the
//! key is never on a command line).

use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::fsutil::{self, atomic_write};
use crate::ids::PoolId;
use crate::model::CephPoolConfig;

const DEFAULT_MON_PORT: u16 = 6789;

fn ceph_name(what: &str, s: &str, max: usize) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid(format!(
            "{what} {s:?} is invalid: use 1 to {max} characters from A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        )))
    }
}

/// Ceph's two wire protocols; a monitor listens for each on its own port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonProtocol {
    V1,
    V2,
}

/// A monitor as librados should be told: with its protocol, so a refused
/// key is reported at once instead of retried until the mount timeout.
pub fn monitor_addr(m: &str) -> Result<String> {
    let (proto, host, port) = parse_monitor_with_protocol(m)?;
    let p = match proto {
        MonProtocol::V1 => "v1",
        MonProtocol::V2 => "v2",
    };
    Ok(format!("{p}:{host}:{port}"))
}

/// "host:port" (or "host", port 6789; "[v6addr]:port" for IPv6), optionally
/// "v1:" or "v2:" first. Without a prefix, port 3300 is msgr2, others msgr1.
pub fn parse_monitor_with_protocol(m: &str) -> Result<(MonProtocol, String, u16)> {
    let (explicit, rest) = match (m.strip_prefix("v1:"), m.strip_prefix("v2:")) {
        (Some(r), _) => (Some(MonProtocol::V1), r),
        (_, Some(r)) => (Some(MonProtocol::V2), r),
        _ => (None, m),
    };
    let (host, port) = parse_host_port(rest)?;
    let proto = explicit.unwrap_or(if port == 3300 { MonProtocol::V2 } else { MonProtocol::V1 });
    Ok((proto, host, port))
}

/// A monitor's host and port, whatever its protocol.
pub fn parse_monitor(m: &str) -> Result<(String, u16)> {
    parse_monitor_with_protocol(m).map(|(_, host, port)| (host, port))
}

/// "host:port" (or "host", port 6789; "[v6addr]:port" for IPv6).
fn parse_host_port(m: &str) -> Result<(String, u16)> {
    let bad = |why: &str| StorageError::invalid(format!("monitor {m:?} is invalid: {why}; write host:port, e.g. 10.0.0.1:6789"));
    let (host, port) = if let Some(rest) = m.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        h.parse::<std::net::Ipv6Addr>().map_err(|_| bad("not an IPv6 address inside [ ]"))?;
        match after.strip_prefix(':') {
            Some(p) => (format!("[{h}]"), p),
            None if after.is_empty() => (format!("[{h}]"), ""),
            None => return Err(bad("junk after ']'")),
        }
    } else {
        match m.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p),
            None => (m.to_owned(), ""),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (host.starts_with('[') || host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')));
    if !host_ok {
        return Err(bad("not a host name or address"));
    }
    let port = if port.is_empty() { DEFAULT_MON_PORT } else { port.parse().ok().filter(|p| *p > 0).ok_or_else(|| bad("bad port"))? };
    Ok((host, port))
}

/// A cephx key: base64 of 28 bytes (type, creation time, length, 16-byte secret).
fn check_key(key: &str) -> Result<()> {
    let bad = || StorageError::invalid("the Ceph key is not a valid cephx key (base64, as `ceph auth get-key` prints it)");
    let decoded = decode_base64(key.trim()).ok_or_else(bad)?;
    if decoded.len() != 28 {
        return Err(bad());
    }
    Ok(())
}

pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.as_bytes();
    let pad = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 || bytes[..bytes.len() - pad].contains(&b'=') {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        let mut real = 0;
        for &c in chunk {
            n <<= 6;
            if c != b'=' {
                n |= value(c)?;
                real += 1;
            }
        }
        let full = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&full[..real - 1]);
    }
    Some(out)
}

/// Every field checked; the error names the field and says what is allowed.
pub fn validate(cfg: &CephPoolConfig) -> Result<()> {
    if cfg.monitors.is_empty() {
        return Err(StorageError::invalid("a Ceph pool needs at least one monitor (host:port)"));
    }
    for m in &cfg.monitors {
        parse_monitor(m)?;
    }
    ceph_name("Ceph pool name", &cfg.ceph_pool, 100)?;
    if !cfg.rados_namespace.is_empty() {
        ceph_name("RADOS namespace", &cfg.rados_namespace, 100)?;
    }
    ceph_name("Ceph client id", &cfg.client_id, 64)?;
    check_key(cfg.key.expose())
}

/// The conf and keyring files qemu-img uses to reach the pool's cluster.
pub struct ClientFiles {
    pub conf: PathBuf,
    pub keyring: PathBuf,
}

impl ClientFiles {
    /// Where the pool's files are (whether or not they exist).
    pub fn at(dir: &Path, pool: PoolId) -> Self {
        Self { conf: dir.join(format!("{pool}.conf")), keyring: dir.join(format!("{pool}.keyring")) }
    }

    pub fn write(dir: &Path, pool: PoolId, cfg: &CephPoolConfig) -> Result<Self> {
        // It holds keyrings.
        fsutil::ensure_private_dir(dir)?;
        let Self { conf, keyring } = Self::at(dir, pool);
        let monitors: Vec<String> = cfg.monitors.iter().map(|m| monitor_addr(m)).collect::<Result<_>>()?;
        atomic_write(&keyring, format!("[client.{}]\n\tkey = {}\n", cfg.client_id, cfg.key.expose()).as_bytes(), 0o600)?;
        let text = format!(
            "[global]\nmon host = {}\nkeyring = {}\nlog to stderr = false\nerr to stderr = false\n",
            monitors.join(","),
            keyring.display()
        );
        atomic_write(&conf, text.as_bytes(), 0o600)?;
        Ok(Self { conf, keyring })
    }

    /// Removes both files; one that cannot be removed is logged (it holds
    /// the key, so an operator must know).
    pub fn remove(&self) {
        for path in [&self.conf, &self.keyring] {
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a Ceph client file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Secret;

    fn cfg() -> CephPoolConfig {
        CephPoolConfig {
            monitors: vec!["10.0.0.1:6789".into(), "[fd00::1]:3300".into(), "mon3.example.com".into()],
            ceph_pool: "vms".into(),
            client_id: "libvirt".into(),
            rados_namespace: String::new(),
            create_if_missing: false,
            key: Secret::new("AQBJpPVoAAAAABAA0fTgUiJ2TNvWDCS5FdO+0A==".into()),
        }
    }

    #[test]
    fn monitors_get_their_protocol() {
        assert_eq!(monitor_addr("10.0.0.1:6789").unwrap(), "v1:10.0.0.1:6789");
        assert_eq!(monitor_addr("10.0.0.1:3300").unwrap(), "v2:10.0.0.1:3300");
        assert_eq!(monitor_addr("v2:10.0.0.1:4000").unwrap(), "v2:10.0.0.1:4000");
        assert_eq!(monitor_addr("mon1").unwrap(), "v1:mon1:6789");
    }

    #[test]
    fn a_good_config_passes() {
        validate(&cfg()).unwrap();
        assert_eq!(parse_monitor("mon3.example.com").unwrap(), ("mon3.example.com".into(), 6789));
        assert_eq!(parse_monitor("[fd00::1]:3300").unwrap(), ("[fd00::1]".into(), 3300));
    }

    /// A change that spoils a config, and the field its error must name.
    type BadField = (Box<dyn Fn(&mut CephPoolConfig)>, &'static str);

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<BadField> = vec![
            (Box::new(|c| c.ceph_pool = "vms;rm -rf".into()), "Ceph pool name"),
            (Box::new(|c| c.ceph_pool = "".into()), "Ceph pool name"),
            (Box::new(|c| c.ceph_pool = "a/b".into()), "Ceph pool name"),
            (Box::new(|c| c.rados_namespace = "ns with space".into()), "RADOS namespace"),
            (Box::new(|c| c.client_id = "admin\n".into()), "Ceph client id"),
            (Box::new(|c| c.key = Secret::new("not base64!".into())), "not a valid cephx key"),
            (Box::new(|c| c.key = Secret::new("aGVsbG8=".into())), "not a valid cephx key"),
            (Box::new(|c| c.monitors = vec![]), "at least one monitor"),
            (Box::new(|c| c.monitors = vec!["10.0.0.1:99999".into()]), "monitor"),
            (Box::new(|c| c.monitors = vec!["host,other:1".into()]), "monitor"),
            (Box::new(|c| c.monitors = vec!["[::1".into()]), "monitor"),
        ];
        for (change, expect) in cases {
            let mut c = cfg();
            change(&mut c);
            let err = validate(&c).unwrap_err();
            assert!(matches!(err, StorageError::InvalidArgument(_)), "{err}");
            assert!(err.to_string().contains(expect), "{expect}: {err}");
            assert!(!err.to_string().contains("AQBJpPVo"), "no key in errors");
        }
    }

    #[test]
    fn base64_decoding_is_strict() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGVsbG8h"), Some(b"hello!".to_vec()));
        for bad in ["", "abc", "a=bc", "ab==c===", "ab c"] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }

    #[test]
    fn client_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ceph_dir = dir.path().join("ceph");
        std::fs::create_dir(&ceph_dir).unwrap();
        std::fs::set_permissions(&ceph_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let files = ClientFiles::write(&ceph_dir, PoolId::new_random(), &cfg()).unwrap();
        for f in [&files.conf, &files.keyring] {
            assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let mode = std::fs::metadata(&ceph_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the keyrings' directory, made by an older version with 0755, is narrowed");
        assert!(std::fs::read_to_string(&files.keyring).unwrap().contains("key = AQBJ"));
        assert!(std::fs::read_to_string(&files.conf).unwrap().contains("mon host = v1:10.0.0.1:6789,v2:[fd00::1]:3300,v1:mon3.example.com:6789"));
    }
}
