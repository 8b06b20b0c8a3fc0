//! NFS pools in userspace mode against a real nfs-ganesha (with its own
//! portmapper, in this process's own network namespace), side by side with
//! bare qemu-img on the same export: create and linked clone, a full copy
//! local → NFS, and the latency of a local pool's creates while the NFS
//! server is hung.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use limiquantix_storage::model::{
    CloneMode, ImageFormat, LocalPoolConfig, NfsMode, NfsMountOptions, NfsPoolConfig, NfsVersion, PoolConfig, VolumeFormat,
    VolumeSource, VolumeSpec,
};
use limiquantix_storage::{PoolId, StorageManager, VolumeId};
use limiquantix_testkit::Ganesha;

use crate::measure::{Stats, round, run_command, time_once};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 40)]
    samples: usize,
    /// Size of the image copied local → NFS, all of it data.
    #[arg(long, default_value_t = 1024)]
    copy_mib: u64,
    /// Local creates timed for each p99 (healthy, then with the server hung).
    #[arg(long, default_value_t = 300)]
    local_creates: usize,
}

const GIB: u64 = 1 << 30;

pub fn run(args: Args) -> anyhow::Result<()> {
    // Before any thread: the runtime's threads and every child share it.
    limiquantix_testkit::private_network().context("a network namespace of the benchmark's own (needs root)")?;
    let nfs = Ganesha::start_with_portmapper().context("starting nfs-ganesha")?;
    let root = tempfile::tempdir()?;
    for d in ["pools", "images"] {
        std::fs::create_dir_all(root.path().join(d))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let engine = limiquantix_storage::EngineConfig {
        state_dir: root.path().join("state"),
        local_pool_roots: vec![root.path().join("pools")],
        import_dirs: vec![root.path().join("images")],
        timeouts: Default::default(),
        ceph_timeouts: Default::default(),
        iscsi: Default::default(),
        copy_bytes_per_sec: None,
    };
    let manager = Arc::new(rt.block_on(StorageManager::open(engine))?);
    let nfs_pool = PoolId::new_random();
    let config = NfsPoolConfig {
        server: "127.0.0.1".into(),
        export_path: nfs.export().display().to_string(),
        version: NfsVersion::V3,
        mode: NfsMode::Userspace,
        options: NfsMountOptions { timeo_deciseconds: 20, ..Default::default() },
    };
    rt.block_on(manager.init_pool(nfs_pool, PoolConfig::Nfs(config)))?;
    let local_pool = PoolId::new_random();
    rt.block_on(manager.init_pool(local_pool, PoolConfig::Local(LocalPoolConfig { path: root.path().join("pools/ssd") })))?;
    let qcow2 = |size| VolumeSpec { size_bytes: Some(size), format: Some(VolumeFormat::Qcow2), ..Default::default() };
    let n = args.samples;

    // Create and linked clone, against the same qemu-img commands on the export.
    let (mut ours_create, mut bare_create, mut ours_clone, mut bare_clone) = (Stats::default(), Stats::default(), Stats::default(), Stats::default());
    let base = VolumeId::new_random();
    rt.block_on(manager.create_volume(nfs_pool, base, qcow2(10 * GIB), VolumeSource::Empty, &|_| {}))?;
    let base_url = nfs.plain_url(&format!("/lq-{base}.qcow2"));
    for i in 0..n {
        ours_create.push(time_once(|| {
            Ok(rt.block_on(manager.create_volume(nfs_pool, VolumeId::new_random(), qcow2(10 * GIB), VolumeSource::Empty, &|_| {})).map(drop)?)
        })?);
        let url = nfs.plain_url(&format!("/bare-{i}.qcow2"));
        bare_create.push(time_once(|| run_command(std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", &url, "10G"])))?);
        let linked = VolumeSource::Clone { source: base, mode: Some(CloneMode::Linked) };
        ours_clone.push(time_once(|| {
            Ok(rt.block_on(manager.create_volume(nfs_pool, VolumeId::new_random(), VolumeSpec::default(), linked, &|_| {})).map(drop)?)
        })?);
        let url = nfs.plain_url(&format!("/bare-clone-{i}.qcow2"));
        bare_clone.push(time_once(|| {
            run_command(std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", "-b", &base_url, "-F", "qcow2", &url]))
        })?);
    }

    // A full copy local → NFS (an import) against qemu-img convert to the same kind of target.
    let image = root.path().join("images/data.raw");
    let total = args.copy_mib << 20;
    run_command(std::process::Command::new("qemu-img").args(["create", "-q", "-f", "raw"]).arg(&image).arg(total.to_string()))?;
    run_command(std::process::Command::new("qemu-io").args(["-f", "raw", "-c", &format!("write -P 0x5a 0 {total}")]).arg(&image))?;
    let (mut ours_copy, mut bare_copy) = (Stats::default(), Stats::default());
    for i in 0..3 {
        let source = VolumeSource::Image { path: image.clone(), format: ImageFormat::Raw };
        let spec = VolumeSpec { format: Some(VolumeFormat::Raw), ..Default::default() };
        let copy = VolumeId::new_random();
        ours_copy.push(time_once(|| Ok(rt.block_on(manager.create_volume(nfs_pool, copy, spec, source, &|_| {})).map(drop)?))?);
        let url = nfs.plain_url(&format!("/bare-copy-{i}.raw"));
        bare_copy.push(time_once(|| {
            run_command(std::process::Command::new("qemu-img").args(["convert", "-W", "-f", "raw", "-O", "raw"]).arg(&image).arg(&url))
        })?);
        // Room on the export's tmpfs for the next round.
        rt.block_on(manager.delete_volume(nfs_pool, copy))?;
        std::fs::remove_file(nfs.export_local().join(format!("bare-copy-{i}.raw")))?;
    }
    let mib_per_s = |s: &Stats| args.copy_mib as f64 / (s.median_ms() / 1000.0);

    // Local creates, healthy, then while the NFS server is frozen and
    // callers keep asking its pool for capacity and volumes.
    let local_p99 = |label: &str| -> anyhow::Result<Stats> {
        let mut s = Stats::default();
        for _ in 0..args.local_creates {
            s.push(time_once(|| {
                Ok(rt.block_on(manager.create_volume(local_pool, VolumeId::new_random(), qcow2(GIB), VolumeSource::Empty, &|_| {})).map(drop)?)
            })?);
        }
        eprintln!("local creates, {label}: {}", s.summary());
        Ok(s)
    };
    let healthy = local_p99("NFS server healthy")?;
    nfs.pause();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pokers: Vec<_> = (0..4)
        .map(|_| {
            let (m, stop) = (manager.clone(), stop.clone());
            rt.spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = m.pool_report(nfs_pool).await;
                    let _ = m.get_volume(nfs_pool, base).await;
                }
            })
        })
        .collect();
    // Let the first callers reach the frozen server.
    std::thread::sleep(Duration::from_millis(200));
    let hung = local_p99("NFS server hung (SIGSTOP), 4 callers on its pool")?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    nfs.resume();
    for p in pokers {
        rt.block_on(p)?;
    }
    eprintln!("callers of the NFS pool returned {:?} after the server resumed", started.elapsed());

    let rows = [
        ("create 10G qcow2: NFS pool", &ours_create),
        ("create 10G qcow2: qemu-img create nfs://", &bare_create),
        ("linked clone: NFS pool", &ours_clone),
        ("linked clone: qemu-img create -b nfs://", &bare_clone),
        (&*format!("copy {} MiB local → NFS: import", args.copy_mib), &ours_copy),
        ("copy: qemu-img convert → nfs://", &bare_copy),
        ("local create, NFS healthy", &healthy),
        ("local create, NFS hung", &hung),
    ];
    eprintln!("{:<46} median / p99 (ms, n)", "operation");
    for (name, s) in rows {
        eprintln!("{name:<46} {}", s.summary());
    }
    println!(
        "{}",
        serde_json::json!({
            "nfs_create_ratio_vs_qemu_img": round(ours_create.median_ms() / bare_create.median_ms()),
            "nfs_linked_clone_ratio_vs_qemu_img": round(ours_clone.median_ms() / bare_clone.median_ms()),
            "nfs_copy_vs_qemu_img_convert": round(mib_per_s(&ours_copy) / mib_per_s(&bare_copy)),
            "nfs_copy_mib_per_s": round(mib_per_s(&ours_copy)),
            "local_p99_with_hung_nfs_ratio": round(hung.p99_ms() / healthy.p99_ms()),
            "local_create_p99_ms_healthy": round(healthy.p99_ms()),
            "local_create_p99_ms_nfs_hung": round(hung.p99_ms()),
        })
    );
    Ok(())
}
