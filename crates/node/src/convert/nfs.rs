use limiquantix_api::v1 as pb;
use limiquantix_storage::StorageError;
use limiquantix_storage::model::{NfsMode, NfsMountOptions, NfsPoolConfig, NfsTransport, NfsVersion};

pub fn config_in(n: pb::NfsPoolConfig) -> Result<NfsPoolConfig, StorageError> {
    let o = n.options.unwrap_or_default();
    Ok(NfsPoolConfig {
        version: match pb::NfsVersion::try_from(n.nfs_version) {
            Ok(pb::NfsVersion::Unspecified) => NfsVersion::Auto,
            Ok(pb::NfsVersion::V3) => NfsVersion::V3,
            Ok(pb::NfsVersion::V40) => NfsVersion::V4_0,
            Ok(pb::NfsVersion::V41) => NfsVersion::V4_1,
            Ok(pb::NfsVersion::V42) => NfsVersion::V4_2,
            Err(_) => return Err(StorageError::invalid(format!("unknown NFS version {}", n.nfs_version))),
        },
        mode: match pb::NfsMode::try_from(n.mode) {
            Ok(pb::NfsMode::Unspecified | pb::NfsMode::Userspace) => NfsMode::Userspace,
            Ok(pb::NfsMode::Kernel) => NfsMode::Kernel,
            Err(_) => return Err(StorageError::invalid(format!("unknown NFS mode {}", n.mode))),
        },
        options: NfsMountOptions {
            soft: o.soft,
            timeo_deciseconds: o.timeo_deciseconds,
            retrans: o.retrans,
            nconnect: o.nconnect,
            transport: match pb::NfsTransport::try_from(o.transport) {
                Ok(pb::NfsTransport::Unspecified | pb::NfsTransport::Tcp) => NfsTransport::Tcp,
                Ok(pb::NfsTransport::Rdma) => NfsTransport::Rdma,
                Err(_) => return Err(StorageError::invalid(format!("unknown NFS transport {}", o.transport))),
            },
        },
        server: n.server,
        export_path: n.export_path,
    })
}

pub fn config_out(n: &NfsPoolConfig) -> pb::NfsPoolConfig {
    pb::NfsPoolConfig {
        server: n.server.clone(),
        export_path: n.export_path.clone(),
        nfs_version: match n.version {
            NfsVersion::Auto => pb::NfsVersion::Unspecified,
            NfsVersion::V3 => pb::NfsVersion::V3,
            NfsVersion::V4_0 => pb::NfsVersion::V40,
            NfsVersion::V4_1 => pb::NfsVersion::V41,
            NfsVersion::V4_2 => pb::NfsVersion::V42,
        } as i32,
        mode: match n.mode {
            NfsMode::Userspace => pb::NfsMode::Userspace,
            NfsMode::Kernel => pb::NfsMode::Kernel,
        } as i32,
        options: Some(pb::NfsMountOptions {
            soft: n.options.soft,
            timeo_deciseconds: n.options.timeo_deciseconds,
            retrans: n.options.retrans,
            nconnect: n.options.nconnect,
            transport: match n.options.transport {
                NfsTransport::Tcp => pb::NfsTransport::Tcp,
                NfsTransport::Rdma => pb::NfsTransport::Rdma,
            } as i32,
        }),
    }
}
