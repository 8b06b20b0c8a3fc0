//! iSCSI pools in LVM mode against a real target (tgt, user space): the LUN
//! is checked through libiscsi (CHAP from memory), logged in through
//! iscsiadm — a stand-in here, this kernel has no initiator: its login
//! points the LUN's stable path at a loop device over the LUN's own backing
//! file, so LVM writes what the target serves — and carries a volume group
//! that real LVM commands manage (metadata only: no device-mapper here).

use std::path::Path;
use std::time::Duration;

use limiquantix_storage::backends::iscsi::IscsiHost;
use limiquantix_storage::model::{
    CloneMode, IscsiMode, IscsiPoolConfig, PoolConfig, Provisioning, Secret, VolumeFormat, VolumeSource, VolumeSpec,
};
use limiquantix_storage::tools::iscsiadm::Iscsiadm;
use limiquantix_storage::tools::lvm::Lvm;
use limiquantix_storage::xml::{DiskDriver, DiskSource};
use limiquantix_storage::{EngineConfig, PoolId, StorageError, StorageManager, VolumeId};
use limiquantix_testkit::Tgt;
use limiquantix_testkit::iscsi_login::LoginShim;
use limiquantix_testkit::loopdev::LoopDevice;

mod common;

const MIB: u64 = 1 << 20;

fn engine(root: &Path, shim: &LoginShim) -> EngineConfig {
    let mut e = common::engine_config(root);
    e.iscsi = IscsiHost {
        iscsiadm: Iscsiadm { program: shim.program().display().to_string(), timeout: Duration::from_secs(30), nodes_dir: shim.nodes_dir() },
        by_path_dir: shim.by_path_dir(),
        device_mapper: false,
        lvm_timeout: Duration::from_secs(60),
    };
    e
}

fn config(tgt: &Tgt, lun: u32, secret: &str, create: bool) -> PoolConfig {
    PoolConfig::Iscsi(IscsiPoolConfig {
        portals: vec![tgt.portal()],
        target_iqn: limiquantix_testkit::tgt::TARGET.into(),
        lun,
        initiator_iqn: "iqn.2024-01.io.limiquantix.test:node1".into(),
        chap_username: limiquantix_testkit::tgt::CHAP_USER.into(),
        chap_password: Secret::new(secret.to_owned()),
        mode: IscsiMode::Lvm,
        volume_group: "lqsan".into(),
        create_volume_group: create,
        mutual_chap_username: String::new(),
        mutual_chap_password: Secret::default(),
    })
}

fn empty(size: u64) -> VolumeSpec {
    VolumeSpec { size_bytes: Some(size), ..Default::default() }
}

#[test]
fn a_volume_group_on_a_logged_in_lun_holds_the_volumes() {
    let tgt = Tgt::start(&[128, 64]).unwrap();
    let (lun1, lun2) = (LoopDevice::over(&tgt.disk_file(1)).unwrap(), LoopDevice::over(&tgt.disk_file(2)).unwrap());
    // LUN 2 holds a file system: no pool may make a group over it.
    let mkfs = std::process::Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&lun2.path).output().unwrap();
    assert!(mkfs.status.success(), "{}", String::from_utf8_lossy(&mkfs.stderr));
    let shim = LoginShim::new(&[(1, &lun1.path), (2, &lun2.path)]).unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let secret = tgt.chap_secret().to_owned();
    rt.block_on(async {
        let m = StorageManager::open(engine(root.path(), &shim)).await.unwrap();

        // Refusals before anything changes on the host: wrong CHAP, a LUN
        // the target does not have, a group that is not there.
        let err = m.init_pool(PoolId::new_random(), config(&tgt, 1, "wrong-secret-123", true)).await.unwrap_err();
        assert!(matches!(err, StorageError::PermissionDenied(_)), "{err}");
        let err = m.init_pool(PoolId::new_random(), config(&tgt, 7, &secret, true)).await.unwrap_err();
        assert!(matches!(err, StorageError::NotFound(_)) && err.to_string().contains("LUN 7"), "{err}");
        assert!(shim.calls().is_empty(), "nothing logged in: {:?}", shim.calls());

        let err = m.init_pool(PoolId::new_random(), config(&tgt, 1, &secret, false)).await.unwrap_err();
        assert!(matches!(err, StorageError::FailedPrecondition(_)) && err.to_string().contains("lqsan"), "{err}");
        let ops: Vec<&str> = shim.calls().iter().map(|c| op_of(c)).collect();
        assert_eq!(ops, ["new", "update", "login", "logout", "delete"], "the login was undone: {:?}", shim.calls());
        assert!(shim.links().is_empty() && !shim.nodes_dir().join(limiquantix_testkit::tgt::TARGET).read_dir().unwrap().any(|_| true));

        // A LUN with other data: pvcreate refuses it, and the login is undone.
        let err = m.init_pool(PoolId::new_random(), config(&tgt, 2, &secret, true)).await.unwrap_err();
        assert!(matches!(err, StorageError::FailedPrecondition(_)) && err.to_string().contains("LUN 2"), "{err}");
        assert!(shim.links().is_empty(), "{:?}", shim.links());
        let ext4_magic = read_at(&tgt.disk_file(2), 1080, 2);
        assert_eq!(ext4_magic, [0x53, 0xef], "the file system on LUN 2 is untouched");

        // A failed login leaves no record behind.
        shim.fail_logins(true);
        let err = m.init_pool(PoolId::new_random(), config(&tgt, 1, &secret, true)).await.unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
        assert!(!shim.nodes_dir().join(limiquantix_testkit::tgt::TARGET).read_dir().unwrap().any(|_| true), "record removed");
        shim.fail_logins(false);

        // The pool: group made on LUN 1 (its label is on the target's disk).
        let pool = PoolId::new_random();
        let report = m.init_pool(pool, config(&tgt, 1, &secret, true)).await.unwrap();
        assert_eq!(read_at(&tgt.disk_file(1), 512, 8), b"LABELONE", "the physical volume is on the LUN");
        let cap = report.capacity.expect("capacity");
        assert!(cap.total_bytes > 120 * MIB && cap.total_bytes <= 128 * MIB && cap.free_bytes == cap.total_bytes, "{cap:?}");
        assert!(!report.capabilities.snapshots && !report.capabilities.linked_clone && !report.capabilities.array_managed);
        assert_eq!(report.capabilities.formats, [VolumeFormat::Raw]);
        assert!(shim.links().iter().any(|l| l.ends_with("-lun-1")));
        for call in shim.calls() {
            assert!(!call.contains(&secret), "the CHAP secret on a command line: {call}");
        }
        let record = shim.nodes_dir().join(limiquantix_testkit::tgt::TARGET).join(tgt.portal().replace(':', ","));
        assert!(std::fs::read_to_string(&record).unwrap().contains(&format!("node.session.auth.password = {secret}")));

        // Volumes: thick raw LVs, sizes in whole extents, idempotent creates.
        let id = VolumeId::new_random();
        let v = m.create_volume(pool, id, empty(10 * MIB), VolumeSource::Empty, &|_| {}).await.unwrap();
        assert_eq!((v.format, v.size_bytes, v.location.as_str()), (VolumeFormat::Raw, 12 * MIB, format!("/dev/lqsan/lq-{id}").as_str()));
        let again = m.create_volume(pool, id, empty(10 * MIB), VolumeSource::Empty, &|_| {}).await.unwrap();
        assert_eq!(again, v, "a retried create finds the volume it made");
        let lvm = Lvm::new(&root.path().join("check-lvm"), &lun1.path, false, Duration::from_secs(60)).unwrap();
        assert_eq!(lvm.lvs("lqsan").await.unwrap().len(), 1);
        assert_eq!(m.pool_report(pool).await.unwrap().capacity.unwrap().free_bytes, cap.total_bytes - 12 * MIB);

        let thin = VolumeSpec { provisioning: Some(Provisioning::Thin), ..empty(MIB) };
        assert!(matches!(m.create_volume(pool, VolumeId::new_random(), thin, VolumeSource::Empty, &|_| {}).await, Err(StorageError::InvalidArgument(_))));
        let qcow = VolumeSpec { format: Some(VolumeFormat::Qcow2), ..empty(MIB) };
        assert!(matches!(m.create_volume(pool, VolumeId::new_random(), qcow, VolumeSource::Empty, &|_| {}).await, Err(StorageError::InvalidArgument(_))));
        let full = m.create_volume(pool, VolumeId::new_random(), empty(200 * MIB), VolumeSource::Empty, &|_| {}).await.unwrap_err();
        assert!(matches!(full, StorageError::ResourceExhausted(_)), "{full}");

        // What plain LVM does not do is refused, saying so.
        let err = m.create_snapshot(pool, id, "s1").await.unwrap_err();
        assert!(matches!(err, StorageError::FailedPrecondition(_)), "{err}");
        let linked = VolumeSource::Clone { source: id, mode: Some(CloneMode::Linked) };
        let err = m.create_volume(pool, VolumeId::new_random(), VolumeSpec::default(), linked, &|_| {}).await.unwrap_err();
        assert!(matches!(err, StorageError::FailedPrecondition(_)) && err.to_string().contains("linked"), "{err}");
        // Copies and VMs need the LV opened through device-mapper, which this kernel lacks.
        let copy = VolumeSource::Clone { source: id, mode: None };
        let err = m.create_volume(pool, VolumeId::new_random(), VolumeSpec::default(), copy, &|_| {}).await.unwrap_err();
        assert!(matches!(err, StorageError::FailedPrecondition(_)) && err.to_string().contains("device-mapper"), "{err}");
        let err = m.attach_info(pool, id, limiquantix_storage::model::DiskBus::Scsi, false, &[], None).await.unwrap_err();
        assert!(err.to_string().contains("device-mapper"), "{err}");
        assert_eq!(lvm.lvs("lqsan").await.unwrap().len(), 1, "no partial volume left by the refused copy");
        let e = engine(&root.path().join("other"), &shim);
        let ctx = limiquantix_storage::backends::EngineContext {
            qemu_img: limiquantix_storage::tools::QemuImg::new(e.timeouts),
            local_pool_roots: e.local_pool_roots,
            import_dirs: e.import_dirs,
            state_dir: e.state_dir,
            ceph_timeouts: e.ceph_timeouts,
            iscsi: e.iscsi,
        };
        let mode = limiquantix_storage::backends::OpenMode::Reopen;
        let backend = limiquantix_storage::backends::open(pool, &config(&tgt, 1, &secret, true), &ctx, mode).await.unwrap();
        let (source, driver) = backend.disk(&v).unwrap();
        assert_eq!(source, DiskSource::Block { dev: format!("/dev/lqsan/lq-{id}").into() });
        assert_eq!(driver, DiskDriver::block());

        let grown = m.resize_volume(pool, id, 30 * MIB, None).await.unwrap();
        assert_eq!(grown.size_bytes, 32 * MIB);
        assert_eq!(m.list_volumes(pool, None, 100).await.unwrap().0, vec![grown.clone()]);
        drop(m);

        // A restart finds the LUN logged in and the group in place.
        let before = shim.calls().len();
        let m = StorageManager::open(engine(root.path(), &shim)).await.unwrap();
        assert_eq!(m.get_volume(pool, id).await.unwrap(), grown);
        assert_eq!(shim.calls().len(), before, "no second login");

        m.delete_volume(pool, id).await.unwrap();
        m.delete_volume(pool, id).await.unwrap();
        assert!(m.list_volumes(pool, None, 100).await.unwrap().0.is_empty());

        // Destroying the pool logs out and forgets the record; the group stays on the LUN.
        m.destroy_pool(pool).await.unwrap();
        assert!(shim.links().is_empty());
        assert!(!record.exists());
        assert!(lvm.vgs("lqsan").await.unwrap().is_some(), "the data on the LUN is never deleted by forgetting the pool");
    });
}

#[test]
fn a_pool_logs_in_through_the_portal_that_answers_with_mutual_chap_from_the_record() {
    let tgt = Tgt::start(&[64]).unwrap();
    let lun1 = LoopDevice::over(&tgt.disk_file(1)).unwrap();
    let shim = LoginShim::new(&[(1, &lun1.path)]).unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let secret = tgt.chap_secret().to_owned();
    let dead = format!("127.0.0.1:{}", limiquantix_testkit::free_port().unwrap());
    let with = |mutual_secret: &str| {
        let PoolConfig::Iscsi(mut c) = config(&tgt, 1, &secret, true) else { unreachable!() };
        c.portals = vec![dead.clone(), tgt.portal()];
        c.mutual_chap_username = limiquantix_testkit::tgt::MUTUAL_CHAP_USER.into();
        c.mutual_chap_password = Secret::new(mutual_secret.to_owned());
        PoolConfig::Iscsi(c)
    };
    rt.block_on(async {
        let m = StorageManager::open(engine(root.path(), &shim)).await.unwrap();
        // The target has no secret of its own yet: it cannot prove one, and nothing is logged in.
        let err = m.init_pool(PoolId::new_random(), with("the-arrays-secret")).await.unwrap_err();
        assert!(matches!(err, StorageError::PermissionDenied(_)) && err.to_string().contains("mutual CHAP"), "{err}");
        assert!(shim.calls().is_empty(), "{:?}", shim.calls());

        let mutual = tgt.add_mutual_chap().unwrap();
        let err = m.init_pool(PoolId::new_random(), with("not-the-arrays-secret")).await.unwrap_err();
        assert!(matches!(err, StorageError::PermissionDenied(_)), "{err}");
        assert!(shim.calls().is_empty(), "{:?}", shim.calls());

        let pool = PoolId::new_random();
        m.init_pool(pool, with(&mutual)).await.unwrap();
        // The first portal is dead: the record and the login are the second's.
        let record = shim.nodes_dir().join(limiquantix_testkit::tgt::TARGET).join(tgt.portal().replace(':', ","));
        let text = std::fs::read_to_string(&record).unwrap();
        assert!(text.contains(&format!("node.session.auth.password_in = {mutual}")), "{text}");
        assert!(shim.calls().iter().all(|c| !c.contains(&dead)), "{:?}", shim.calls());
        assert!(shim.calls().iter().any(|c| c.contains("-n node.session.auth.username_in -v lqarray")), "{:?}", shim.calls());
        for call in shim.calls() {
            assert!(!call.contains(&secret) && !call.contains(&mutual), "a CHAP secret on a command line: {call}");
        }
        assert!(shim.links().iter().any(|l| l.contains(&tgt.portal()) && l.ends_with("-lun-1")), "{:?}", shim.links());
        let v = m.create_volume(pool, VolumeId::new_random(), empty(4 * MIB), VolumeSource::Empty, &|_| {}).await.unwrap();
        assert_eq!(v.size_bytes, 4 * MIB);

        // The node keeps both secrets apart from the pool record, and a restart finds the login in place.
        drop(m);
        let before = shim.calls().len();
        let m = StorageManager::open(engine(root.path(), &shim)).await.unwrap();
        assert_eq!(m.get_volume(pool, v.id).await.unwrap(), v);
        assert_eq!(shim.calls().len(), before, "no second login");
        m.destroy_pool(pool).await.unwrap();
        assert!(shim.links().is_empty() && !record.exists());
    });
}

#[test]
fn direct_mode_refuses_mutual_chap_which_qemu_cannot_check() {
    let tgt = Tgt::start(&[16]).unwrap();
    let root = tempfile::tempdir().unwrap();
    let shim = LoginShim::new(&[]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let m = StorageManager::open(engine(root.path(), &shim)).await.unwrap();
        let PoolConfig::Iscsi(mut c) = config(&tgt, 0, tgt.chap_secret(), false) else { unreachable!() };
        c.mode = IscsiMode::Direct;
        c.mutual_chap_username = "lqarray".into();
        c.mutual_chap_password = Secret::new("the-arrays-secret".into());
        let err = m.init_pool(PoolId::new_random(), PoolConfig::Iscsi(c.clone())).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)) && err.to_string().contains("LVM mode only"), "{err}");
        c.mode = IscsiMode::Lvm;
        c.mutual_chap_password = Secret::new(tgt.chap_secret().to_owned());
        let err = m.init_pool(PoolId::new_random(), PoolConfig::Iscsi(c)).await.unwrap_err();
        assert!(err.to_string().contains("must differ"), "{err}");
        assert!(m.list_pools().await.unwrap().is_empty(), "nothing was kept");
    });
}

/// The operation of one logged iscsiadm call.
fn op_of(call: &str) -> &'static str {
    for (flag, op) in [("-o new", "new"), ("-o update", "update"), ("-o delete", "delete"), ("--login", "login"), ("--logout", "logout")] {
        if call.contains(flag) {
            return op;
        }
    }
    "other"
}

fn read_at(file: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; len];
    std::fs::File::open(file).unwrap().read_exact_at(&mut buf, offset).unwrap();
    buf
}
