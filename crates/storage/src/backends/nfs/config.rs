//! An NFS pool's config, checked, and the kernel mount options it stands
//! for. Options are typed end to end: no text from a request ever reaches
//! `mount -o`.

use super::client::NfsExport;
use crate::error::{Result, StorageError};
use crate::model::{NfsMode, NfsPoolConfig, NfsTransport, NfsVersion};

const MAX_TIMEO_DECISECONDS: u32 = 6000;
const MAX_RETRANS: u32 = 10;
const MAX_NCONNECT: u32 = 16;

/// Checks the whole config; returns the export it names.
pub fn validate(cfg: &NfsPoolConfig) -> Result<NfsExport> {
    let export = NfsExport::new(&cfg.server, &cfg.export_path)?;
    let o = &cfg.options;
    if o.timeo_deciseconds > MAX_TIMEO_DECISECONDS {
        return Err(StorageError::invalid(format!("NFS timeo is at most {MAX_TIMEO_DECISECONDS} deciseconds (10 minutes)")));
    }
    if o.retrans > MAX_RETRANS {
        return Err(StorageError::invalid(format!("NFS retrans is at most {MAX_RETRANS}")));
    }
    if o.nconnect > MAX_NCONNECT {
        return Err(StorageError::invalid(format!("NFS nconnect is at most {MAX_NCONNECT}")));
    }
    if cfg.mode == NfsMode::Userspace {
        if !matches!(cfg.version, NfsVersion::Auto | NfsVersion::V3) {
            return Err(StorageError::invalid(
                "userspace NFS pools speak NFSv3 (QEMU's libnfs driver); choose version 3 or the kernel mode for NFSv4",
            ));
        }
        let kernel_only = [(o.soft, "soft"), (o.nconnect > 1, "nconnect"), (o.transport == NfsTransport::Rdma, "rdma")];
        if let Some((_, option)) = kernel_only.iter().find(|(set, _)| *set) {
            return Err(StorageError::invalid(format!("the NFS option {option} is for kernel mounts; the pool is in userspace mode")));
        }
    }
    Ok(export)
}

/// `mount -o` for a kernel-mode pool, from typed fields only.
pub fn kernel_mount_options(cfg: &NfsPoolConfig) -> String {
    let o = &cfg.options;
    let mut opts = Vec::new();
    match cfg.version {
        NfsVersion::Auto => {}
        NfsVersion::V3 => opts.push("vers=3".to_owned()),
        NfsVersion::V4_0 => opts.push("vers=4.0".to_owned()),
        NfsVersion::V4_1 => opts.push("vers=4.1".to_owned()),
        NfsVersion::V4_2 => opts.push("vers=4.2".to_owned()),
    }
    opts.push(if o.soft { "soft" } else { "hard" }.to_owned());
    if o.timeo_deciseconds > 0 {
        opts.push(format!("timeo={}", o.timeo_deciseconds));
    }
    if o.retrans > 0 {
        opts.push(format!("retrans={}", o.retrans));
    }
    if o.nconnect > 1 {
        opts.push(format!("nconnect={}", o.nconnect));
    }
    opts.push(match o.transport {
        NfsTransport::Tcp => "proto=tcp".to_owned(),
        NfsTransport::Rdma => "proto=rdma".to_owned(),
    });
    opts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NfsMountOptions;

    fn cfg(mode: NfsMode, version: NfsVersion, options: NfsMountOptions) -> NfsPoolConfig {
        NfsPoolConfig { server: "nas01.example.com".into(), export_path: "/srv/vm".into(), version, mode, options }
    }

    #[test]
    fn typed_options_become_mount_options_and_nothing_else_does() {
        let o = NfsMountOptions { soft: false, timeo_deciseconds: 150, retrans: 3, nconnect: 4, transport: NfsTransport::Tcp };
        let c = cfg(NfsMode::Kernel, NfsVersion::V4_1, o);
        validate(&c).unwrap();
        assert_eq!(kernel_mount_options(&c), "vers=4.1,hard,timeo=150,retrans=3,nconnect=4,proto=tcp");
        let defaults = cfg(NfsMode::Kernel, NfsVersion::Auto, NfsMountOptions::default());
        assert_eq!(kernel_mount_options(&defaults), "hard,proto=tcp");
        // A server or export that would smuggle options is refused first.
        for (server, export) in [("nas,exec", "/srv"), ("nas", "/srv,suid"), ("nas", "/srv vm"), ("nas", "/srv/../..")] {
            let mut bad = c.clone();
            (bad.server, bad.export_path) = (server.into(), export.into());
            assert!(validate(&bad).is_err(), "{server}:{export}");
        }
    }

    #[test]
    fn limits_and_mode_rules_are_enforced() {
        let k = |o| validate(&cfg(NfsMode::Kernel, NfsVersion::V4_2, o));
        assert!(k(NfsMountOptions { nconnect: 17, ..Default::default() }).is_err());
        assert!(k(NfsMountOptions { retrans: 11, ..Default::default() }).is_err());
        assert!(k(NfsMountOptions { timeo_deciseconds: 6001, ..Default::default() }).is_err());
        let u = |v, o| validate(&cfg(NfsMode::Userspace, v, o));
        assert!(u(NfsVersion::V3, NfsMountOptions::default()).is_ok());
        assert!(u(NfsVersion::Auto, NfsMountOptions { timeo_deciseconds: 100, ..Default::default() }).is_ok());
        let err = u(NfsVersion::V4_1, NfsMountOptions::default()).unwrap_err().to_string();
        assert!(err.contains("NFSv3"), "{err}");
        for o in [
            NfsMountOptions { soft: true, ..Default::default() },
            NfsMountOptions { nconnect: 2, ..Default::default() },
            NfsMountOptions { transport: NfsTransport::Rdma, ..Default::default() },
        ] {
            assert!(u(NfsVersion::V3, o).unwrap_err().to_string().contains("kernel"), "{o:?}");
        }
    }
}
