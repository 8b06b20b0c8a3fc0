//! The RBD backend (librados/librbd, one connection) side by side with the
//! `rbd` CLI doing the same on the same test cluster: create, linked clone
//! (snapshot + protect + clone) and delete per operation, and the delete of a
//! 100 GiB image holding data (our trash move vs `rbd rm`); and the data
//! path of a move local -> Ceph (a 2 GiB qcow2 with 512 MiB of data copied
//! into the RBD pool, then the local file deleted) vs a bare
//! `qemu-img convert` of the same file to an RBD image.


use anyhow::Context;
use limiquantix_storage::model::{CephPoolConfig, CloneMode, PoolConfig, Secret, VolumeSource, VolumeSpec};
use limiquantix_storage::{PoolId, StorageManager, VolumeId};
use limiquantix_testkit::Ceph;
use limiquantix_testkit::ceph::TEST_POOL;

use crate::measure::{Stats, round, time_once};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 25)]
    samples: usize,
    /// Data written into each big image before it is deleted.
    #[arg(long, default_value_t = 1024)]
    big_data_mib: u64,
    /// Images in the pool when its capacity is read (GetStoragePoolInfo).
    #[arg(long, default_value_t = 10_000)]
    images: usize,
    /// Moves local -> Ceph measured (each copies 512 MiB of data).
    #[arg(long, default_value_t = 4)]
    move_samples: usize,
}

const GIB: u64 = 1 << 30;

pub fn run(args: Args) -> anyhow::Result<()> {
    let ceph = Ceph::start().context("starting the test Ceph cluster")?;
    let root = tempfile::tempdir()?;
    std::fs::create_dir_all(root.path().join("pools"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let rbd = |a: &[&str]| -> anyhow::Result<()> {
        ceph.rbd(a)?;
        Ok(())
    };
    let image = |name: &str| format!("{TEST_POOL}/{name}");
    let n = args.samples;

    let manager = rt.block_on(async {
        let engine = limiquantix_storage::EngineConfig {
            state_dir: root.path().join("state"),
            local_pool_roots: vec![root.path().join("pools")],
            import_dirs: vec![],
            timeouts: Default::default(),
            ceph_timeouts: Default::default(),
            iscsi: Default::default(),
            copy_bytes_per_sec: None,
        };
        StorageManager::open(engine).await
    })?;
    let pool = PoolId::new_random();
    let config = CephPoolConfig {
        monitors: vec![ceph.monitor()],
        ceph_pool: TEST_POOL.into(),
        client_id: "admin".into(),
        rados_namespace: String::new(),
        create_if_missing: false,
        key: Secret::new(ceph.admin_key().to_owned()),
    };
    rt.block_on(manager.init_pool(pool, PoolConfig::Ceph(config)))?;
    let spec = || VolumeSpec { size_bytes: Some(GIB), ..Default::default() };

    // create
    let (mut ours_create, mut cli_create) = (Stats::default(), Stats::default());
    let mut ours_ids = Vec::new();
    for i in 0..n {
        let id = VolumeId::new_random();
        ours_create.push(time_once(|| Ok(rt.block_on(manager.create_volume(pool, id, spec(), VolumeSource::Empty, &|_| {})).map(drop)?))?);
        ours_ids.push(id);
        cli_create.push(time_once(|| rbd(&["create", "--size", "1G", &image(&format!("cli-{i}"))]))?);
    }

    // linked clone of one base
    let base = ours_ids[0];
    let (mut ours_clone, mut cli_clone) = (Stats::default(), Stats::default());
    let mut clone_ids = Vec::new();
    for i in 0..n {
        let id = VolumeId::new_random();
        let source = VolumeSource::Clone { source: base, mode: Some(CloneMode::Linked) };
        ours_clone.push(time_once(|| Ok(rt.block_on(manager.create_volume(pool, id, VolumeSpec::default(), source, &|_| {})).map(drop)?))?);
        clone_ids.push(id);
        let snap = format!("{}@s{i}", image("cli-0"));
        cli_clone.push(time_once(|| {
            rbd(&["snap", "create", &snap])?;
            rbd(&["snap", "protect", &snap])?;
            rbd(&["clone", &snap, &image(&format!("cli-clone-{i}"))])
        })?);
    }

    // delete (clones first: their bases cannot go before them)
    let (mut ours_delete, mut cli_delete) = (Stats::default(), Stats::default());
    for (i, id) in clone_ids.iter().enumerate() {
        ours_delete.push(time_once(|| Ok(rt.block_on(manager.delete_volume(pool, *id))?))?);
        cli_delete.push(time_once(|| rbd(&["rm", "--no-progress", &image(&format!("cli-clone-{i}"))]))?);
    }
    for (i, id) in ours_ids.iter().enumerate().skip(1) {
        ours_delete.push(time_once(|| Ok(rt.block_on(manager.delete_volume(pool, *id))?))?);
        cli_delete.push(time_once(|| rbd(&["rm", "--no-progress", &image(&format!("cli-{i}"))]))?);
    }

    // A 100 GiB image with data: our delete (trash) vs rbd rm.
    let big = VolumeId::new_random();
    let big_spec = VolumeSpec { size_bytes: Some(100 * GIB), ..Default::default() };
    rt.block_on(manager.create_volume(pool, big, big_spec, VolumeSource::Empty, &|_| {}))?;
    rbd(&["create", "--size", "100G", &image("cli-big")])?;
    let total = format!("{}M", args.big_data_mib);
    for name in [limiquantix_storage::backends::ceph::image_name(big), "cli-big".into()] {
        rbd(&["bench", "--io-type", "write", "--io-size", "4M", "--io-pattern", "rand", "--io-total", &total, &image(&name)])?;
    }
    let ours_big = time_once(|| Ok(rt.block_on(manager.delete_volume(pool, big))?))?;
    let cli_big = time_once(|| rbd(&["rm", "--no-progress", &image("cli-big")]))?;

    let (ours_move, cli_move) = moves(&rt, &manager, pool, &ceph, root.path(), args.move_samples)?;

    // Capacity of a pool of many images: the poll every node runs must not
    // grow with the number of volumes.
    let manager = std::sync::Arc::new(manager);
    rt.block_on(async {
        let mut running = tokio::task::JoinSet::new();
        for _ in 0..args.images {
            if running.len() >= 16 {
                running.join_next().await.expect("a create is running")??;
            }
            let m = manager.clone();
            running.spawn(async move {
                let spec = VolumeSpec { size_bytes: Some(GIB), ..Default::default() };
                m.create_volume(pool, VolumeId::new_random(), spec, VolumeSource::Empty, &|_| {}).await.map(drop)
            });
        }
        while let Some(done) = running.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })?;
    let mut pool_info = Stats::default();
    for _ in 0..n {
        pool_info.push(time_once(|| Ok(rt.block_on(manager.pool_report(pool)).map(drop)?))?);
    }

    let rows = [
        ("create 1 GiB: native", &ours_create),
        ("create 1 GiB: rbd create", &cli_create),
        ("linked clone: native", &ours_clone),
        ("linked clone: rbd snap create+protect+clone", &cli_clone),
        ("delete: native (trash)", &ours_delete),
        ("delete: rbd rm", &cli_delete),
        (&*format!("pool info (capacity) of {} images", args.images), &pool_info),
    ];
    eprintln!("{:<46} median / p99 (ms, n)", "operation");
    for (name, s) in rows {
        eprintln!("{name:<46} {}", s.summary());
    }
    eprintln!("{:<46} {ours_big:.1} ms", format!("delete 100 GiB ({} MiB data): native", args.big_data_mib));
    eprintln!("{:<46} {cli_big:.1} ms", "delete 100 GiB: rbd rm");
    eprintln!("{:<46} {}", "move 2 GiB (512 MiB data) local -> Ceph", ours_move.summary());
    eprintln!("{:<46} {}", "qemu-img convert of it to an RBD image", cli_move.summary());
    println!(
        "{}",
        serde_json::json!({
            "create_speedup_vs_rbd_cli": round(cli_create.median_ms() / ours_create.median_ms()),
            "linked_clone_speedup_vs_rbd_cli": round(cli_clone.median_ms() / ours_clone.median_ms()),
            "delete_speedup_vs_rbd_cli": round(cli_delete.median_ms() / ours_delete.median_ms()),
            "create_ms": round(ours_create.median_ms()),
            "linked_clone_ms": round(ours_clone.median_ms()),
            "delete_ms": round(ours_delete.median_ms()),
            "pool_info_ms_at_10k": round(pool_info.median_ms()),
            "pool_info_images": args.images,
            "delete_100g_ms": round(ours_big),
            "rbd_rm_100g_ms": round(cli_big),
            "move_vs_qemu_img_convert": round(cli_move.median_ms() / ours_move.median_ms()),
            "move_ms": round(ours_move.median_ms()),
            "qemu_img_convert_ms": round(cli_move.median_ms()),
        })
    );
    drop(manager);
    Ok(())
}

/// Moves local -> Ceph (the node's copy into the RBD pool, then the local
/// source deleted) and bare `qemu-img convert` of the same data to an RBD
/// image, interleaved; every sample starts from its own copy of one file.
fn moves(
    rt: &tokio::runtime::Runtime,
    manager: &StorageManager,
    ceph_pool: PoolId,
    ceph: &Ceph,
    root: &std::path::Path,
    samples: usize,
) -> anyhow::Result<(Stats, Stats)> {
    use limiquantix_storage::model::{LocalPoolConfig, VolumeFormat};
    let local = PoolId::new_random();
    let dir = root.join("pools/move-src");
    rt.block_on(manager.init_pool(local, PoolConfig::Local(LocalPoolConfig { path: dir.clone() })))?;
    let template = root.join("move-template.qcow2");
    let run = |cmd: &mut std::process::Command| -> anyhow::Result<()> {
        let out = cmd.output()?;
        anyhow::ensure!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    run(std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&template).arg("2G"))?;
    for offset in [0, 600, 1200, 1800] {
        run(std::process::Command::new("qemu-io").args(["-f", "qcow2", "-c", &format!("write -P 0x5a {offset}M 128M")]).arg(&template))?;
    }
    let (mut ours, mut bare) = (Stats::default(), Stats::default());
    for i in 0..samples {
        let id = VolumeId::new_random();
        let source = dir.join(limiquantix_storage::backends::local::volume_file_name(id, VolumeFormat::Qcow2));
        std::fs::copy(&template, &source)?;
        ours.push(time_once(|| {
            rt.block_on(async {
                manager.create_volume(ceph_pool, id, VolumeSpec::default(), VolumeSource::OtherPool { pool: local, volume: id, with_snapshots: false }, &|_| {}).await?;
                manager.delete_volume(local, id).await
            })?;
            Ok(())
        })?);
        rt.block_on(manager.delete_volume(ceph_pool, id))?;
        let target = format!("rbd:{TEST_POOL}/cli-move-{i}:conf={}:id=admin", ceph.conf().display());
        bare.push(time_once(|| run(std::process::Command::new("qemu-img").args(["convert", "-f", "qcow2", "-O", "raw"]).arg(&template).arg(&target)))?);
        ceph.rbd(&["rm", "--no-progress", &format!("{TEST_POOL}/cli-move-{i}")])?;
    }
    Ok((ours, bare))
}
