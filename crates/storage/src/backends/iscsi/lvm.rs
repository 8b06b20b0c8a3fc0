//! iSCSI pools in LVM mode (the seed's design; Proxmox's LVM on iSCSI): one
//! LUN of the target is logged in on every node (iscsiadm) and holds a
//! volume group whose logical volumes `lq-<uuid>` are the volumes: raw,
//! thick, `type='block'` disks. Activation is one undoable change: check the
//! LUN through libiscsi, log in, find the LUN by its stable path, then use
//! the group or make it; a failure takes back the steps it finished. LVM
//! sees only that LUN (see `tools/lvm.rs`). Plain LVM has no snapshots and
//! no linked clones; full clones and imports are qemu-img copies onto a new
//! LV, which needs device-mapper to open it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;

use super::IscsiHost;
use super::client::{IscsiSession, Login};
use super::config::{Chap, IscsiName, Portal};
use crate::backend::{Backend, NewVolume, NewVolumeContent};
use crate::error::{Result, StorageError};
use crate::ids::{Name, PoolId, VolumeId};
use crate::model::{Capabilities, PoolCapacity, PoolKind, ProgressSink, SnapshotInfo, VolumeFormat, VolumeInfo};
use crate::revert::AsyncRevert;
use crate::tools::iscsiadm::{self, Iscsiadm};
use crate::tools::lvm::{LvInfo, Lvm, check_vg_name};
use crate::tools::QemuImg;
use crate::tools::qemu_img::{ConvertOptions, ImportTarget, Preallocation};
use crate::xml::{DiskDriver, DiskSource};

const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a logged-in LUN may take to appear at its stable path (udev).
const DEVICE_WAIT: Duration = Duration::from_secs(10);
const PREFIX: &str = "lq-";
/// What an LV is called while a copy fills it: never listed as a volume,
/// renamed to its final name only when the copy is complete.
const PARTIAL_SUFFIX: &str = ".partial";

#[derive(Debug)]
pub struct LvmBackend {
    portals: Vec<Portal>,
    target: IscsiName,
    initiator: IscsiName,
    chap: Option<Chap>,
    lun: u32,
    vg: String,
    create_vg: bool,
    host: IscsiHost,
    qemu: QemuImg,
    /// The node's private LVM config for this pool.
    config_dir: PathBuf,
    /// Set once activation found the group: its LVM, and its extent size.
    lvm: OnceLock<(Lvm, u64)>,
}

pub struct LvmPool<'a> {
    pub pool: PoolId,
    pub portals: Vec<Portal>,
    pub target: IscsiName,
    pub initiator: IscsiName,
    pub chap: Option<Chap>,
    pub lun: u32,
    pub volume_group: &'a str,
    pub create_volume_group: bool,
}

impl LvmBackend {
    pub fn capabilities_of_kind() -> Capabilities {
        Capabilities {
            thin_provisioning: false,
            linked_clone: false,
            snapshots: false,
            shared: true,
            live_resize: false,
            formats: vec![VolumeFormat::Raw],
            array_managed: false,
            one_metadata_writer: true,
        }
    }

    pub fn new(p: LvmPool<'_>, ctx: &crate::backends::EngineContext) -> Result<Self> {
        if p.volume_group.is_empty() {
            return Err(StorageError::invalid("an iSCSI pool in LVM mode needs the name of its volume group"));
        }
        check_vg_name(p.volume_group)?;
        Ok(Self {
            config_dir: ctx.state_dir.join("iscsi-lvm").join(p.pool.to_string()),
            portals: p.portals,
            target: p.target,
            initiator: p.initiator,
            chap: p.chap,
            lun: p.lun,
            vg: p.volume_group.to_owned(),
            create_vg: p.create_volume_group,
            host: ctx.iscsi.clone(),
            qemu: ctx.qemu_img.clone(),
            lvm: OnceLock::new(),
        })
    }

    fn lvm(&self) -> Result<&Lvm> {
        self.lvm.get().map(|(lvm, _)| lvm).ok_or_else(|| StorageError::Unavailable(format!("volume group {} is not active on this node", self.vg)))
    }

    fn adm(&self) -> &Iscsiadm {
        &self.host.iscsiadm
    }

    fn device_link(&self, portal: &Portal) -> PathBuf {
        iscsiadm::by_path(&self.host.by_path_dir, &self.target, portal, self.lun)
    }

    /// Asks the target itself (libiscsi, CHAP and mutual CHAP from memory)
    /// before anything changes on the host: wrong CHAP, dead portals or a
    /// missing LUN is reported as such, and nothing is logged in. Answers
    /// the portal that was reached.
    async fn check_lun(&self) -> Result<Portal> {
        let (portals, target, initiator, chap, lun) =
            (self.portals.clone(), self.target.clone(), self.initiator.clone(), self.chap.clone(), self.lun);
        tokio::task::spawn_blocking(move || {
            let login = Login { portals: &portals, target: &target, initiator: &initiator, chap: chap.as_ref(), timeout: LOGIN_TIMEOUT };
            let mut session = IscsiSession::login(&login)?;
            if !session.report_luns()?.contains(&lun) {
                return Err(StorageError::NotFound(format!("target {target} has no LUN {lun} to hold the volume group")));
            }
            if !session.lun_info(lun)?.is_disk() {
                return Err(StorageError::invalid(format!("LUN {lun} of target {target} is not a disk")));
            }
            Ok(session.portal().clone())
        })
        .await
        .map_err(|e| StorageError::Internal(format!("iSCSI task failed: {e}")))?
    }

    /// The steps of activation; each registers its undo in `revert`.
    async fn bring_up(&self, revert: &mut AsyncRevert) -> Result<(Lvm, u64)> {
        let reached = self.check_lun().await?;
        // Logged in already (a restart) through any of the portals: keep it.
        let link = match self.portals.iter().map(|p| self.device_link(p)).find(|l| l.exists()) {
            Some(link) => link,
            None => {
                let adm = self.adm().clone();
                adm.add_node(&self.target, &reached, self.chap.as_ref()).await?;
                let (a, t, p) = (adm.clone(), self.target.clone(), reached.clone());
                revert.add("node record", async move { a.delete_node(&t, &p).await.map_err(|e| e.to_string()) });
                adm.login(&self.target, &reached).await?;
                let (a, t, p) = (adm.clone(), self.target.clone(), reached.clone());
                revert.add("login", async move { a.logout(&t, &p).await.map_err(|e| e.to_string()) });
                self.device_link(&reached)
            }
        };
        let device = wait_for_device(&link).await?;
        let lvm = Lvm::new(&self.config_dir, &device, self.host.device_mapper, self.host.lvm_timeout)?;
        if let Some(vg) = lvm.vgs(&self.vg).await? {
            return Ok((lvm, vg.extent_bytes));
        }
        if !self.create_vg {
            return Err(StorageError::precondition(format!(
                "LUN {} of target {} holds no volume group {}: give an existing group, or ask for it to be created",
                self.lun, self.target, self.vg
            )));
        }
        // pvcreate refuses a device that holds any other signature (no -f):
        // a LUN with data on it is never overwritten.
        lvm.pvcreate().await.map_err(|e| {
            StorageError::precondition(format!("LUN {} of target {} cannot take a volume group (does it hold other data?): {e}", self.lun, self.target))
        })?;
        let l = lvm.clone();
        revert.add("physical volume", async move { l.pvremove().await.map_err(|e| e.to_string()) });
        lvm.vgcreate(&self.vg).await?;
        let (l, vg) = (lvm.clone(), self.vg.clone());
        revert.add("volume group", async move { l.vgremove(&vg).await.map_err(|e| e.to_string()) });
        let made = lvm.vgs(&self.vg).await?.ok_or_else(|| StorageError::Internal(format!("volume group {} vanished after its create", self.vg)))?;
        Ok((lvm, made.extent_bytes))
    }

    fn lv_name(id: VolumeId) -> String {
        format!("{PREFIX}{id}")
    }

    fn partial_name(id: VolumeId) -> String {
        format!("{PREFIX}{id}{PARTIAL_SUFFIX}")
    }

    fn lv_path(&self, lv: &str) -> PathBuf {
        Path::new("/dev").join(&self.vg).join(lv)
    }

    fn volume_of(&self, lv: &LvInfo) -> Option<VolumeInfo> {
        let id: VolumeId = lv.name.strip_prefix(PREFIX)?.parse().ok()?;
        Some(VolumeInfo {
            id,
            format: VolumeFormat::Raw,
            size_bytes: lv.size_bytes,
            allocated_bytes: lv.size_bytes,
            backing: None,
            snapshot_count: 0,
            location: self.lv_path(&lv.name).display().to_string(),
        })
    }

    async fn volumes(&self) -> Result<Vec<VolumeInfo>> {
        let mut all: Vec<VolumeInfo> = self.lvm()?.lvs(&self.vg).await?.iter().filter_map(|lv| self.volume_of(lv)).collect();
        all.sort_by_key(|v| v.id);
        Ok(all)
    }

    fn needs_device_mapper(&self, what: &str) -> Result<()> {
        if self.host.device_mapper {
            return Ok(());
        }
        Err(StorageError::precondition(format!(
            "this node's kernel has no device-mapper (/dev/mapper/control): logical volumes of group {} cannot be opened here, so they cannot be {what}",
            self.vg
        )))
    }

    /// Fills the new LV `partial` with the content (it is active and of the final size).
    async fn fill(&self, new: &NewVolume<'_>, partial: &str, progress: ProgressSink<'_>) -> Result<()> {
        let target = self.lv_path(partial);
        match new.content {
            NewVolumeContent::Empty | NewVolumeContent::LinkedClone { .. } => Ok(()),
            NewVolumeContent::Copy { source, snapshot: None } => {
                let src = self.lv_path(&Self::lv_name(source.id));
                self.lvm()?.lvchange_active(&self.vg, &Self::lv_name(source.id), true).await?;
                let opts = ConvertOptions {
                    source: &src,
                    source_format: source.format.into(),
                    snapshot: None,
                    target: &target,
                    target_format: VolumeFormat::Raw.into(),
                    preallocation: Preallocation::Off,
                    target_exists: true,
                };
                crate::progress::convert(&self.qemu, &opts, source.size_bytes, progress).await.map_err(StorageError::Tool)
            }
            NewVolumeContent::Copy { snapshot: Some(_), .. } => Err(StorageError::precondition("plain LVM volumes have no snapshots")),
            NewVolumeContent::WholeFile { .. } => Err(crate::backend::no_whole_file_copy("iscsi")),
            NewVolumeContent::Image(image) => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(|e| StorageError::io(format!("cannot open {}", target.display()), e))?;
                crate::progress::import(&self.qemu, image, ImportTarget::Device(&file), VolumeFormat::Raw.into(), progress)
                    .await
                    .map_err(StorageError::Tool)
            }
        }
    }

    fn no_snapshots(&self) -> StorageError {
        StorageError::precondition(format!("volumes of iSCSI pools in LVM mode (plain LVM, group {}) have no snapshots", self.vg))
    }
}

/// Waits for udev's stable link of the logged-in LUN; returns the device it
/// names (LVM's filter takes that one device).
async fn wait_for_device(link: &Path) -> Result<PathBuf> {
    let deadline = tokio::time::Instant::now() + DEVICE_WAIT;
    loop {
        if let Ok(device) = std::fs::canonicalize(link) {
            return Ok(device);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StorageError::Unavailable(format!(
                "the logged-in LUN did not appear at {} within {} s",
                link.display(),
                DEVICE_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[async_trait]
impl Backend for LvmBackend {
    fn kind(&self) -> PoolKind {
        PoolKind::Iscsi
    }

    fn capabilities(&self) -> Capabilities {
        Self::capabilities_of_kind()
    }

    fn location(&self) -> String {
        let portals: Vec<String> = self.portals.iter().map(Portal::to_string).collect();
        format!("{} {} lun {}", portals.join(","), self.target, self.lun)
    }

    async fn activate(&self) -> Result<()> {
        if self.lvm.get().is_some() {
            return Ok(());
        }
        let mut revert = AsyncRevert::new("iSCSI LVM pool activation");
        match self.bring_up(&mut revert).await {
            Ok(up) => {
                revert.success();
                let _ = self.lvm.set(up);
                Ok(())
            }
            Err(e) => {
                revert.revert().await;
                Err(e)
            }
        }
    }

    /// Logs out (of whichever portal it went through); the group and its
    /// volumes stay on the LUN.
    async fn deactivate(&self) -> Result<()> {
        for portal in &self.portals {
            self.adm().logout(&self.target, portal).await?;
            self.adm().delete_node(&self.target, portal).await?;
        }
        Ok(())
    }

    async fn capacity(&self) -> Result<PoolCapacity> {
        let vg = self.lvm()?.vgs(&self.vg).await?.ok_or_else(|| StorageError::Unavailable(format!("volume group {} is gone", self.vg)))?;
        Ok(PoolCapacity { total_bytes: vg.size_bytes, free_bytes: vg.free_bytes, allocated_bytes: vg.size_bytes - vg.free_bytes, counted: None })
    }

    async fn free_bytes(&self) -> Result<u64> {
        Ok(self.capacity().await?.free_bytes)
    }

    async fn get_volume(&self, id: VolumeId) -> Result<Option<VolumeInfo>> {
        Ok(self.volumes().await?.into_iter().find(|v| v.id == id))
    }

    async fn list_volumes(&self, after: Option<VolumeId>, limit: usize) -> Result<Vec<VolumeInfo>> {
        Ok(self.volumes().await?.into_iter().filter(|v| after.is_none_or(|a| v.id > a)).take(limit).collect())
    }

    async fn dependents(&self, _id: VolumeId) -> Result<Vec<VolumeId>> {
        Ok(Vec::new())
    }

    fn round_size(&self, size_bytes: u64) -> u64 {
        // The group's extent (LVM's default before activation found it).
        let extent = self.lvm.get().map_or(4 << 20, |(_, e)| *e).max(1);
        size_bytes.div_ceil(extent) * extent
    }

    /// lvcreate itself says when the name is taken or the group is full.
    fn create_checks_itself(&self) -> bool {
        true
    }

    async fn create_volume(&self, new: &NewVolume<'_>, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        if new.format != VolumeFormat::Raw {
            return Err(StorageError::invalid("iSCSI pools in LVM mode store raw volumes"));
        }
        if let NewVolumeContent::LinkedClone { .. } = new.content {
            return Err(StorageError::precondition("plain LVM cannot make linked clones; ask for a full clone"));
        }
        let lvm = self.lvm()?;
        let (partial, name) = (Self::partial_name(new.id), Self::lv_name(new.id));
        if let NewVolumeContent::Empty = new.content {
            // Complete when lvcreate returns (one metadata commit): no partial name.
            lvm.lvcreate(&self.vg, &name, new.size_bytes).await?;
            let size = self.round_size(new.size_bytes);
            return Ok(self.volume_of(&LvInfo { name: name.clone(), size_bytes: size, path: self.lv_path(&name) }).expect("an lq- name"));
        }
        self.needs_device_mapper("filled by a copy or an import")?;
        // A leftover of an interrupted copy of this volume is never taken for it.
        if lvm.lvs(&self.vg).await?.iter().any(|lv| lv.name == partial) {
            lvm.lvremove(&self.vg, &partial).await?;
        }
        lvm.lvcreate(&self.vg, &partial, new.size_bytes).await?;
        let mut revert = AsyncRevert::new("LVM volume create");
        let (l, vg, p) = (lvm.clone(), self.vg.clone(), partial.clone());
        revert.add("partial volume", async move { l.lvremove(&vg, &p).await.map_err(|e| e.to_string()) });
        let filled = async {
            lvm.lvchange_active(&self.vg, &partial, true).await?;
            self.fill(new, &partial, progress).await?;
            lvm.lvchange_active(&self.vg, &partial, false).await?;
            lvm.lvrename(&self.vg, &partial, &name).await
        }
        .await;
        if let Err(e) = filled {
            revert.revert().await;
            return Err(e);
        }
        revert.success();
        self.get_volume(new.id).await?.ok_or_else(|| StorageError::Internal(format!("volume {} vanished after its create", new.id)))
    }

    async fn delete_volume(&self, id: VolumeId) -> Result<()> {
        match self.lvm()?.lvremove(&self.vg, &Self::lv_name(id)).await {
            Err(StorageError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    async fn resize_volume(&self, volume: &VolumeInfo, new_size_bytes: u64) -> Result<VolumeInfo> {
        self.lvm()?.lvextend(&self.vg, &Self::lv_name(volume.id), self.round_size(new_size_bytes)).await?;
        self.get_volume(volume.id).await?.ok_or_else(|| StorageError::NotFound(format!("volume {} vanished", volume.id)))
    }

    async fn list_snapshots(&self, _volume: &VolumeInfo) -> Result<Vec<SnapshotInfo>> {
        Ok(Vec::new())
    }

    async fn create_snapshot(&self, _volume: &VolumeInfo, _name: &Name) -> Result<SnapshotInfo> {
        Err(self.no_snapshots())
    }

    async fn revert_snapshot(&self, _volume: &VolumeInfo, _name: &Name) -> Result<()> {
        Err(self.no_snapshots())
    }

    async fn delete_snapshot(&self, _volume: &VolumeInfo, _name: &Name) -> Result<()> {
        Err(self.no_snapshots())
    }

    async fn flatten_volume(&self, volume: &VolumeInfo, _progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        Err(StorageError::precondition(format!("volume {} has no base to flatten: LVM volumes are never linked clones", volume.id)))
    }

    fn disk(&self, volume: &VolumeInfo) -> Result<(DiskSource, DiskDriver)> {
        Ok((DiskSource::Block { dev: self.lv_path(&Self::lv_name(volume.id)) }, DiskDriver::block()))
    }

    async fn prepare_disk(&self, volume: &VolumeInfo) -> Result<()> {
        self.needs_device_mapper("given to a VM")?;
        self.lvm()?.lvchange_active(&self.vg, &Self::lv_name(volume.id), true).await
    }
}
