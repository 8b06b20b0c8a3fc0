//! Pool secrets at rest (Ceph keys, CHAP passwords). They are sealed with
//! ChaCha20-Poly1305 under a key kept in its own 0600 file, apart from the
//! store: a copied store file or an etcd backup holds nothing usable without
//! it (the approach of Kubernetes' encryption at rest). Each sealed value is
//! bound to its record's key, so a sealed secret moved to another pool's
//! record does not open.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::error::{ApiError, ApiResult};
use crate::private_files;

/// Marks a sealed value; a record without it predates sealing (plain JSON).
const SEALED: &[u8] = b"lqsealed1:";
const NONCE_LEN: usize = 12;

pub struct SecretBox {
    cipher: ChaCha20Poly1305,
    path: PathBuf,
}

impl SecretBox {
    /// Reads the key file, or makes a new random key there (0600, in a 0700
    /// directory) on first start. Every replica of a control plane must be
    /// given the same file.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        const HOLDS: &str = "the key that opens pool secrets";
        let key = match private_files::read(path, HOLDS)? {
            Some(text) => decode_hex(text.trim()).with_context(|| format!("{} is not a secrets key (64 hex digits)", path.display()))?,
            None => {
                let key = ChaCha20Poly1305::generate_key(&mut OsRng);
                if !private_files::create(path, format!("{}\n", limiquantix_identity::hex(&key)).as_bytes())? {
                    // A replica sharing the file made it first: use theirs.
                    return Self::load_or_create(path);
                }
                tracing::info!(path = %path.display(), "created the key that seals pool secrets; give every control-plane replica a copy");
                key.to_vec()
            }
        };
        Ok(Self { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)), path: path.to_owned() })
    }

    /// `plain` sealed for the store record `record_key`.
    pub fn seal(&self, record_key: &str, plain: &[u8]) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad: record_key.as_bytes() })
            .expect("ChaCha20-Poly1305 encrypts any message of this size");
        [SEALED, nonce.as_slice(), &sealed].concat()
    }

    /// The plain value of the store record `record_key`; a record written
    /// before secrets were sealed is returned as it is.
    pub fn open(&self, record_key: &str, stored: &[u8]) -> ApiResult<Vec<u8>> {
        let Some(rest) = stored.strip_prefix(SEALED) else { return Ok(stored.to_vec()) };
        if rest.len() < NONCE_LEN {
            return Err(ApiError::internal(format!("the sealed record {record_key} is damaged")));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: record_key.as_bytes() }).map_err(|_| {
            ApiError::internal(format!(
                "the secret in {record_key} does not open with the key in {}: was the store sealed with another \
                 replica's key file? Give every replica the same file",
                self.path.display()
            ))
        })
    }
}

fn decode_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(text.len() == 64 && text.is_ascii(), "expected 64 hex digits");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(Into::into)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secrets.key");
        let sb = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);

        let sealed = sb.seal("/pool-secret/a", b"{\"ceph_key\":\"AQBsupersecret==\"}");
        assert!(!String::from_utf8_lossy(&sealed).contains("supersecret"));
        assert_eq!(sb.open("/pool-secret/a", &sealed).unwrap(), b"{\"ceph_key\":\"AQBsupersecret==\"}");
        assert!(sb.open("/pool-secret/b", &sealed).is_err(), "bound to its record");

        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(again.open("/pool-secret/a", &sealed).unwrap(), b"{\"ceph_key\":\"AQBsupersecret==\"}", "the key file is reused");
        let other = SecretBox::load_or_create(&dir.path().join("other.key")).unwrap();
        let err = other.open("/pool-secret/a", &sealed).unwrap_err();
        assert!(err.message.contains("another"), "{err:?}");
        assert_eq!(sb.open("/pool-secret/a", b"{\"ceph_key\":\"legacy\"}").unwrap(), b"{\"ceph_key\":\"legacy\"}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretBox::load_or_create(&path).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
