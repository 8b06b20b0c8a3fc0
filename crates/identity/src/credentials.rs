//! The credentials file lqctl reads: where the control plane is, the CA to
//! trust, a bearer token, and an admin certificate for node daemons. The
//! control plane writes the first admin's file (0600) on first start.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The environment variable that names a credentials file.
pub const ENV: &str = "LQCTL_CREDENTIALS";
/// Where `--dev` (run from the repository, as scripts/dev.sh does) keeps it.
pub const DEV_PATH: &str = "lq-data/lqctl.toml";
/// Where a control plane with the default config writes the first admin's
/// file (readable by root only): lqctl on that machine finds it there.
pub const CONTROL_PLANE_PATH: &str = "/var/lib/limiquantix/control/pki/admin.toml";

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The control plane, e.g. https://10.0.0.2:7700.
    pub server: String,
    /// The name its certificate is checked against.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// The bearer token (lqt.<id>.<secret>).
    #[serde(default)]
    pub token: String,
    /// The cluster CA (PEM); empty for a plaintext (loopback) control plane.
    #[serde(default)]
    pub ca_certificate: String,
    /// An admin client certificate and key (PEM), for `lqctl node --addr`.
    #[serde(default)]
    pub client_certificate: String,
    #[serde(default)]
    pub client_key: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            server: String::new(),
            server_name: default_server_name(),
            token: String::new(),
            ca_certificate: String::new(),
            client_certificate: String::new(),
            client_key: String::new(),
        }
    }
}

fn default_server_name() -> String {
    crate::CONTROL_NAME.to_owned()
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("server", &self.server).field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("credentials serialize")
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the credentials file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid credentials file {}", path.display()))
    }

    /// The credentials file to use: `explicit`, else $LQCTL_CREDENTIALS,
    /// else `<config dir>/limiquantix/lqctl.toml`, else the dev data dir's
    /// file below the current directory, else the local control plane's
    /// first-admin file. None if there is none.
    pub fn find(explicit: Option<&Path>) -> anyhow::Result<Option<(PathBuf, Self)>> {
        if let Some(path) = explicit {
            return Ok(Some((path.to_owned(), Self::load(path)?)));
        }
        if let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            return Ok(Some((path.clone(), Self::load(&path).with_context(|| format!("${ENV}"))?)));
        }
        for path in [user_config_path(), Some(PathBuf::from(DEV_PATH)), Some(PathBuf::from(CONTROL_PLANE_PATH))].into_iter().flatten() {
            // A file this user cannot read (root's) is not theirs to use.
            if std::fs::File::open(&path).is_ok() {
                return Ok(Some((path.clone(), Self::load(&path)?)));
            }
        }
        Ok(None)
    }
}

/// `$XDG_CONFIG_HOME/limiquantix/lqctl.toml`, or under ~/.config.
pub fn user_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("limiquantix/lqctl.toml"))
}
