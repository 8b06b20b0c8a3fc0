//! iSCSI pools in direct mode: each disk LUN of one target is a volume,
//! reached by the node and by QEMU through libiscsi (nothing is logged in
//! on the host). A volume's id is derived from its LUN's world-wide name, so
//! a LUN renumbered on the array never swaps two VMs' disks. LUNs are made,
//! grown and removed on the array: those operations are refused here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::client::{IscsiSession, LunInfo, Login};
use super::config::{Chap, IscsiName, Portal};
use std::path::PathBuf;

use crate::backend::{Backend, LibvirtSecret, NewVolume, SecretUsage};
use crate::backends::EngineContext;
use crate::image::InspectedImage;
use crate::tools::QemuImg;
use crate::tools::qemu_img::{ISCSI_SECRET_ID, ImportTarget};
use crate::error::{Result, StorageError};
use crate::ids::{Name, PoolId, VolumeId};
use crate::model::{Capabilities, PoolCapacity, PoolKind, ProgressSink, Secret, SnapshotInfo, VolumeFormat, VolumeInfo};
use crate::xml::{DiskAuth, DiskDriver, DiskSource, NetHost, SecretRef};

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the target's answers (which LUNs, and each LUN's facts) serve
/// listings before they are asked again; a lookup of one volume (attach,
/// any change) always asks afresh, so a renumbered LUN is never taken for
/// another.
const LUN_FACTS_TTL: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct DirectBackend {
    pool: PoolId,
    portals: Vec<Portal>,
    /// The portal the latest session went through (the first until one
    /// did): where VMs and imports are sent.
    portal_in_use: Arc<Mutex<Portal>>,
    target: IscsiName,
    initiator: IscsiName,
    chap: Option<Chap>,
    /// For imports onto a LUN: qemu-img, and where its CHAP secret file lives.
    qemu: QemuImg,
    secret_dir: PathBuf,
    /// One session, reused (a session that failed is dropped and made
    /// again), and what its LUNs said recently.
    state: Arc<Mutex<SessionState>>,
}

#[derive(Debug, Default)]
struct SessionState {
    session: Option<IscsiSession>,
    luns: LunFacts,
    /// The last REPORT LUNS answer, and when.
    reported: Option<(Vec<u32>, std::time::Instant)>,
}

type LunFacts = std::collections::HashMap<u32, (LunInfo, std::time::Instant)>;

/// A disk LUN as a volume.
#[derive(Debug, Clone)]
struct LunVolume {
    id: VolumeId,
    lun: LunInfo,
}

impl DirectBackend {
    pub fn capabilities_of_kind() -> Capabilities {
        Capabilities {
            thin_provisioning: false,
            linked_clone: false,
            snapshots: false,
            shared: true,
            live_resize: false,
            formats: vec![VolumeFormat::Raw],
            array_managed: true,
            one_metadata_writer: false,
        }
    }

    pub fn new(pool: PoolId, portals: Vec<Portal>, target: IscsiName, initiator: IscsiName, chap: Option<Chap>, ctx: &EngineContext) -> Self {
        let first = portals.first().cloned().expect("a pool's portal list is never empty (parse_portals)");
        Self {
            pool,
            portals,
            portal_in_use: Arc::new(Mutex::new(first)),
            target,
            initiator,
            chap,
            qemu: ctx.qemu_img.clone(),
            secret_dir: ctx.state_dir.join("iscsi-secrets"),
            state: Arc::new(Mutex::new(SessionState::default())),
        }
    }

    /// The LUN a volume is at (from its location, as a fresh lookup found it).
    fn lun_of(volume: &VolumeInfo) -> Result<u32> {
        volume
            .location
            .rsplit('/')
            .next()
            .and_then(|l| l.parse::<u32>().ok())
            .ok_or_else(|| StorageError::Internal(format!("volume {} has no LUN in {}", volume.id, volume.location)))
    }

    /// The LUN as qemu-img opens it; the CHAP secret is the secret object
    /// [`ISCSI_SECRET_ID`], never in the string. Every value is checked
    /// (names, portal); commas are doubled all the same.
    fn qemu_target(&self, lun: u32) -> String {
        let q = |v: &str| v.replace(',', ",,");
        let mut opts = format!(
            "driver=raw,file.driver=iscsi,file.transport=tcp,file.portal={},file.target={},file.lun={lun},file.initiator-name={}",
            q(&self.portal().address()),
            q(self.target.as_str()),
            q(self.initiator.as_str())
        );
        if let Some(chap) = &self.chap {
            opts.push_str(&format!(",file.user={},file.password-secret={ISCSI_SECRET_ID}", q(&chap.username)));
        }
        opts
    }

    /// Runs `work` with a logged-in session (and the LUN facts it keeps),
    /// off the async runtime.
    async fn with_session<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut IscsiSession, &mut LunFacts, &mut Option<(Vec<u32>, std::time::Instant)>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (state, portals, in_use, target, initiator, chap) = (
            self.state.clone(),
            self.portals.clone(),
            self.portal_in_use.clone(),
            self.target.clone(),
            self.initiator.clone(),
            self.chap.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut state = state.lock().expect("iSCSI session lock");
            let state = &mut *state;
            if state.session.is_none() {
                let login = Login { portals: &portals, target: &target, initiator: &initiator, chap: chap.as_ref(), timeout: TIMEOUT };
                let session = IscsiSession::login(&login)?;
                session.portal().clone_into(&mut in_use.lock().expect("portal lock"));
                state.session = Some(session);
                state.luns.clear();
                state.reported = None;
            }
            let result = work(state.session.as_mut().expect("logged in above"), &mut state.luns, &mut state.reported);
            if matches!(result, Err(StorageError::Unavailable(_) | StorageError::Internal(_))) {
                state.session = None;
            }
            result
        })
        .await
        .map_err(|e| StorageError::Internal(format!("iSCSI task failed: {e}")))?
    }

    /// The target's disk LUNs that have a world-wide name, ordered by id;
    /// `fresh` asks every LUN again instead of using recent facts.
    async fn lun_volumes(&self, fresh: bool) -> Result<Vec<LunVolume>> {
        let namespace = *self.pool.as_uuid();
        let target = self.target.to_string();
        self.with_session(move |s, known, reported| {
            let luns = match reported {
                Some((luns, at)) if !fresh && at.elapsed() < LUN_FACTS_TTL => luns.clone(),
                _ => {
                    let luns = s.report_luns()?;
                    *reported = Some((luns.clone(), std::time::Instant::now()));
                    luns
                }
            };
            known.retain(|lun, _| luns.contains(lun));
            let mut volumes = Vec::new();
            for lun in luns {
                let info = match known.get(&lun) {
                    Some((info, at)) if !fresh && at.elapsed() < LUN_FACTS_TTL => info.clone(),
                    _ => {
                        let info = s.lun_info(lun)?;
                        known.insert(lun, (info.clone(), std::time::Instant::now()));
                        info
                    }
                };
                if !info.is_disk() {
                    continue;
                }
                match &info.wwn {
                    Some(wwn) => volumes.push(LunVolume { id: VolumeId::derived(&namespace, wwn), lun: info }),
                    None => tracing::warn!(%target, lun, "a LUN without a world-wide name is not offered: its id would not be stable"),
                }
            }
            volumes.sort_by_key(|v| v.id);
            Ok(volumes)
        })
        .await
    }

    fn volume_info(&self, v: &LunVolume) -> VolumeInfo {
        VolumeInfo {
            id: v.id,
            format: VolumeFormat::Raw,
            size_bytes: v.lun.size_bytes,
            allocated_bytes: v.lun.size_bytes,
            backing: None,
            snapshot_count: 0,
            location: format!("iscsi://{}/{}/{}", self.portal(), self.target, v.lun.lun),
        }
    }

    fn on_the_array(&self, what: &str) -> StorageError {
        StorageError::precondition(format!(
            "iscsi pools in direct mode are the LUNs of target {}: {what} them on the storage array (volumes appear as its LUNs do)",
            self.target
        ))
    }

    fn portal(&self) -> Portal {
        self.portal_in_use.lock().expect("portal lock").clone()
    }

    fn secret_usage(&self) -> String {
        format!("limiquantix pool {} iscsi {}", self.pool, self.target)
    }
}

/// A CHAP secret in a file of its own (0600, in a 0700 directory) for one
/// qemu-img run, removed when dropped.
struct SecretFile {
    path: PathBuf,
}

impl SecretFile {
    fn write(dir: &std::path::Path, secret: &str) -> Result<Self> {
        crate::fsutil::ensure_private_dir(dir)?;
        let path = dir.join(format!("{}.secret", VolumeId::new_random()));
        crate::fsutil::atomic_write(&path, secret.as_bytes(), 0o600)?;
        Ok(Self { path })
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The libvirt secret of a pool's CHAP password, named after the pool.
pub fn libvirt_secret_uuid(pool: PoolId) -> String {
    pool.to_string()
}

#[async_trait]
impl Backend for DirectBackend {
    fn kind(&self) -> PoolKind {
        PoolKind::Iscsi
    }

    fn capabilities(&self) -> Capabilities {
        Self::capabilities_of_kind()
    }

    fn location(&self) -> String {
        let portals: Vec<String> = self.portals.iter().map(Portal::to_string).collect();
        format!("{} {}", portals.join(","), self.target)
    }

    async fn activate(&self) -> Result<()> {
        self.with_session(|s, _, _| s.report_luns().map(drop)).await
    }

    async fn deactivate(&self) -> Result<()> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.lock().expect("iSCSI session lock").session.take())
            .await
            .map_err(|e| StorageError::Internal(format!("iSCSI logout failed: {e}")))?;
        Ok(())
    }

    async fn capacity(&self) -> Result<PoolCapacity> {
        let total: u64 = self.lun_volumes(false).await?.iter().map(|v| v.lun.size_bytes).sum();
        // Every byte of a LUN belongs to its volume: nothing is free to create from.
        Ok(PoolCapacity { total_bytes: total, free_bytes: 0, allocated_bytes: total, counted: None })
    }

    async fn free_bytes(&self) -> Result<u64> {
        Ok(0)
    }

    async fn get_volume(&self, id: VolumeId) -> Result<Option<VolumeInfo>> {
        Ok(self.lun_volumes(true).await?.iter().find(|v| v.id == id).map(|v| self.volume_info(v)))
    }

    async fn list_volumes(&self, after: Option<VolumeId>, limit: usize) -> Result<Vec<VolumeInfo>> {
        let all = self.lun_volumes(false).await?;
        Ok(all.iter().filter(|v| after.is_none_or(|a| v.id > a)).take(limit).map(|v| self.volume_info(v)).collect())
    }

    async fn dependents(&self, _id: VolumeId) -> Result<Vec<VolumeId>> {
        Ok(Vec::new())
    }

    fn refuses_creates(&self) -> Option<StorageError> {
        Some(self.on_the_array("create"))
    }

    async fn create_volume(&self, _new: &NewVolume<'_>, _progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        Err(self.on_the_array("create"))
    }

    async fn delete_volume(&self, _id: VolumeId) -> Result<()> {
        Err(self.on_the_array("delete"))
    }

    async fn resize_volume(&self, _volume: &VolumeInfo, _new_size_bytes: u64) -> Result<VolumeInfo> {
        Err(self.on_the_array("resize"))
    }

    async fn list_snapshots(&self, _volume: &VolumeInfo) -> Result<Vec<SnapshotInfo>> {
        Ok(Vec::new())
    }

    async fn create_snapshot(&self, _volume: &VolumeInfo, _name: &Name) -> Result<SnapshotInfo> {
        Err(self.on_the_array("snapshot"))
    }

    async fn revert_snapshot(&self, _volume: &VolumeInfo, _name: &Name) -> Result<()> {
        Err(self.on_the_array("revert"))
    }

    async fn delete_snapshot(&self, _volume: &VolumeInfo, _name: &Name) -> Result<()> {
        Err(self.on_the_array("delete snapshots of"))
    }

    async fn flatten_volume(&self, _volume: &VolumeInfo, _progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        Err(self.on_the_array("flatten"))
    }

    async fn write_image(&self, volume: &VolumeInfo, image: &InspectedImage, progress: ProgressSink<'_>) -> Result<()> {
        let lun = Self::lun_of(volume)?;
        let secret = match &self.chap {
            Some(chap) => Some(SecretFile::write(&self.secret_dir, chap.secret())?),
            None => None,
        };
        let target = ImportTarget::Iscsi { image_opts: &self.qemu_target(lun), secret_file: secret.as_ref().map(|s| s.path.as_path()) };
        crate::progress::import(&self.qemu, image, target, crate::model::ImageFormat::Raw, progress).await.map_err(StorageError::Tool)
    }

    fn disk(&self, volume: &VolumeInfo) -> Result<(DiskSource, DiskDriver)> {
        let lun = Self::lun_of(volume)?;
        // libvirt takes one host for an iSCSI disk: the portal that answered last.
        let portal = self.portal();
        let source = DiskSource::Iscsi {
            host: NetHost { name: portal.host, port: Some(portal.port) },
            iqn: self.target.to_string(),
            lun,
            initiator_iqn: Some(self.initiator.to_string()),
            auth: self.chap.as_ref().map(|c| DiskAuth { username: c.username.clone(), secret: SecretRef::Iscsi { usage: self.secret_usage() } }),
        };
        Ok((source, DiskDriver::iscsi()))
    }

    fn libvirt_secret(&self) -> Option<LibvirtSecret> {
        let chap = self.chap.as_ref()?;
        Some(LibvirtSecret {
            uuid: libvirt_secret_uuid(self.pool),
            usage: SecretUsage::Iscsi(self.secret_usage()),
            value: Secret::new(chap.secret().to_owned()),
        })
    }
}
