//! Wire types (limiquantix-api) to engine types and back. Every request field
//! is checked here: a bad value is an InvalidArgument naming the field.

use limiquantix_api::v1 as pb;
use limiquantix_storage::model::{
    self, CloneMode, DiskBus, ImageFormat, PoolConfig, PoolKind, Provisioning, VolumeFormat, VolumeInfo, VolumeSource, VolumeSpec,
};
use limiquantix_storage::{Name, PoolId, PoolPhase, PoolReport, StorageError, VolumeId};

type R<T> = Result<T, StorageError>;

// Each pool kind's config on the wire, one file per kind.
mod ceph;
mod iscsi;
mod local;
mod nfs;

pub fn pool_id(s: &str) -> R<PoolId> {
    s.parse()
}

pub fn volume_id(s: &str) -> R<VolumeId> {
    s.parse()
}

fn enum_value<E: TryFrom<i32>>(field: &str, v: i32) -> R<E> {
    E::try_from(v).map_err(|_| StorageError::invalid(format!("{field} has the unknown value {v}")))
}

pub fn pool_config(cfg: Option<pb::PoolConfig>) -> R<PoolConfig> {
    use pb::pool_config::Backend as B;
    let backend = cfg
        .and_then(|c| c.backend)
        .ok_or_else(|| StorageError::invalid("config is missing: give a local, nfs, ceph or iscsi pool config"))?;
    Ok(match backend {
        B::Local(c) => PoolConfig::Local(local::config_in(c)?),
        B::Nfs(c) => PoolConfig::Nfs(nfs::config_in(c)?),
        B::Ceph(c) => PoolConfig::Ceph(ceph::config_in(c)),
        B::Iscsi(c) => PoolConfig::Iscsi(iscsi::config_in(c)?),
    })
}

/// The config as the API shows it: secrets are never returned.
pub fn pool_config_out(cfg: &PoolConfig) -> pb::PoolConfig {
    use pb::pool_config::Backend as B;
    let backend = match cfg {
        PoolConfig::Local(c) => B::Local(local::config_out(c)),
        PoolConfig::Nfs(c) => B::Nfs(nfs::config_out(c)),
        PoolConfig::Ceph(c) => B::Ceph(ceph::config_out(c)),
        PoolConfig::Iscsi(c) => B::Iscsi(iscsi::config_out(c)),
    };
    pb::PoolConfig { backend: Some(backend) }
}

pub fn pool_kind(k: PoolKind) -> pb::PoolKind {
    match k {
        PoolKind::Local => pb::PoolKind::Local,
        PoolKind::Nfs => pb::PoolKind::Nfs,
        PoolKind::Ceph => pb::PoolKind::Ceph,
        PoolKind::Iscsi => pb::PoolKind::Iscsi,
    }
}

pub fn pool_kind_in(v: i32) -> R<PoolKind> {
    match enum_value::<pb::PoolKind>("kind", v)? {
        pb::PoolKind::Local => Ok(PoolKind::Local),
        pb::PoolKind::Nfs => Ok(PoolKind::Nfs),
        pb::PoolKind::Ceph => Ok(PoolKind::Ceph),
        pb::PoolKind::Iscsi => Ok(PoolKind::Iscsi),
        pb::PoolKind::Unspecified => Err(StorageError::invalid("the pool kind is missing")),
    }
}

pub fn volume_format_out(f: VolumeFormat) -> pb::VolumeFormat {
    match f {
        VolumeFormat::Qcow2 => pb::VolumeFormat::Qcow2,
        VolumeFormat::Raw => pb::VolumeFormat::Raw,
    }
}

pub fn capabilities(c: &model::Capabilities) -> pb::PoolCapabilities {
    pb::PoolCapabilities {
        thin_provisioning: c.thin_provisioning,
        linked_clone: c.linked_clone,
        snapshots: c.snapshots,
        shared: c.shared,
        live_resize: c.live_resize,
        array_managed: c.array_managed,
        one_metadata_writer: c.one_metadata_writer,
        formats: c.formats.iter().map(|f| volume_format_out(*f) as i32).collect(),
    }
}

pub fn pool_info(r: &PoolReport) -> pb::PoolInfo {
    let (phase, message) = match &r.phase {
        PoolPhase::Ready => (pb::PoolPhase::Ready, String::new()),
        PoolPhase::Error(m) => (pb::PoolPhase::Error, m.clone()),
    };
    pb::PoolInfo {
        pool_id: r.id.to_string(),
        kind: pool_kind(r.config.kind()) as i32,
        config: Some(pool_config_out(&r.config)),
        phase: phase as i32,
        message,
        capacity: r.capacity.map(|c| pb::PoolCapacity {
            total_bytes: c.total_bytes,
            free_bytes: c.free_bytes,
            provisioned_bytes: c.counted.map(|n| n.provisioned_bytes),
            allocated_bytes: c.allocated_bytes,
            volume_count: c.counted.map(|n| n.volumes),
        }),
        capabilities: Some(capabilities(&r.capabilities)),
    }
}

pub fn volume_out(pool: PoolId, v: &VolumeInfo) -> pb::VolumeInfo {
    pb::VolumeInfo {
        volume_id: v.id.to_string(),
        pool_id: pool.to_string(),
        format: volume_format_out(v.format) as i32,
        size_bytes: v.size_bytes,
        allocated_bytes: v.allocated_bytes,
        backing_volume_id: v.backing.map(|b| b.to_string()).unwrap_or_default(),
        snapshot_count: v.snapshot_count,
        location: v.location.clone(),
    }
}

pub fn snapshot_out(volume: VolumeId, s: &model::SnapshotInfo) -> pb::SnapshotInfo {
    pb::SnapshotInfo {
        name: s.name.clone(),
        volume_id: volume.to_string(),
        created_unix_seconds: s.created_unix_seconds,
        vm_state_bytes: s.vm_state_bytes,
    }
}

pub fn volume_format(v: i32) -> R<Option<VolumeFormat>> {
    Ok(match enum_value::<pb::VolumeFormat>("format", v)? {
        pb::VolumeFormat::Unspecified => None,
        pb::VolumeFormat::Qcow2 => Some(VolumeFormat::Qcow2),
        pb::VolumeFormat::Raw => Some(VolumeFormat::Raw),
    })
}

pub fn volume_spec(spec: Option<pb::VolumeSpec>) -> R<VolumeSpec> {
    let spec = spec.unwrap_or_default();
    let provisioning = match enum_value::<pb::Provisioning>("provisioning", spec.provisioning)? {
        pb::Provisioning::Unspecified => None,
        pb::Provisioning::Thin => Some(Provisioning::Thin),
        pb::Provisioning::Thick => Some(Provisioning::Thick),
    };
    Ok(VolumeSpec {
        size_bytes: (spec.size_bytes != 0).then_some(spec.size_bytes),
        format: volume_format(spec.format)?,
        provisioning,
    })
}

pub fn clone_mode(v: i32) -> R<Option<CloneMode>> {
    Ok(match enum_value::<pb::CloneMode>("clone mode", v)? {
        pb::CloneMode::Unspecified => None,
        pb::CloneMode::Linked => Some(CloneMode::Linked),
        pb::CloneMode::Full => Some(CloneMode::Full),
    })
}

pub fn image_format(v: i32) -> R<ImageFormat> {
    match enum_value::<pb::ImageFormat>("image format", v)? {
        pb::ImageFormat::Unspecified => {
            Err(StorageError::invalid("image format is required: qcow2, raw, vmdk, vhdx or vdi"))
        }
        pb::ImageFormat::Qcow2 => Ok(ImageFormat::Qcow2),
        pb::ImageFormat::Raw => Ok(ImageFormat::Raw),
        pb::ImageFormat::Vmdk => Ok(ImageFormat::Vmdk),
        pb::ImageFormat::Vhdx => Ok(ImageFormat::Vhdx),
        pb::ImageFormat::Vdi => Ok(ImageFormat::Vdi),
    }
}

pub fn volume_source(src: Option<pb::VolumeSource>) -> R<VolumeSource> {
    use pb::volume_source::Source as S;
    Ok(match src.and_then(|s| s.source) {
        None | Some(S::Empty(_)) => VolumeSource::Empty,
        Some(S::Clone(c)) => VolumeSource::Clone { source: volume_id(&c.source_volume_id)?, mode: clone_mode(c.mode)? },
        Some(S::Image(i)) => {
            if i.path.is_empty() {
                return Err(StorageError::invalid("image path is empty"));
            }
            VolumeSource::Image { path: i.path.into(), format: image_format(i.format)? }
        }
        Some(S::Snapshot(s)) => {
            VolumeSource::Snapshot { volume: volume_id(&s.volume_id)?, name: Name::parse("snapshot", &s.snapshot_name)? }
        }
        Some(S::OtherPool(o)) => {
            VolumeSource::OtherPool { pool: pool_id(&o.pool_id)?, volume: volume_id(&o.volume_id)?, with_snapshots: o.with_snapshots }
        }
        Some(S::Remote(r)) => VolumeSource::Remote {
            host: r.host.parse().map_err(|_| StorageError::invalid(format!("export host {:?} is not an IP address", r.host)))?,
            port: u16::try_from(r.port).ok().filter(|p| *p > 0).ok_or_else(|| StorageError::invalid(format!("export port {} is not a port", r.port)))?,
            export: volume_id(&r.volume_id)?,
            psk: limiquantix_storage::nbd::Psk::parse(&r.psk_identity, &r.psk_key)?,
            size_bytes: r.size_bytes,
        },
    })
}

pub fn disk_bus(v: i32) -> R<DiskBus> {
    Ok(match enum_value::<pb::DiskBus>("bus", v)? {
        pb::DiskBus::Unspecified | pb::DiskBus::Scsi => DiskBus::Scsi,
        pb::DiskBus::Virtio => DiskBus::Virtio,
    })
}

pub fn progress_out(p: &model::Progress) -> pb::Progress {
    pb::Progress { phase: p.phase.to_owned(), done_bytes: p.done_bytes, total_bytes: p.total_bytes }
}
