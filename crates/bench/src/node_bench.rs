//! The node engine side by side with what an admin would otherwise use, in
//! one run, on this machine. Prints a table and one JSON line.
//!
//! - create a 10 GiB qcow2 volume through gRPC (in-process client) vs bare
//!   `qemu-img create`; and `lqctl volume create` vs `virsh vol-create-as` on a
//!   libvirt dir pool, both as whole processes, lqctl both straight to the
//!   node and through the control plane (the path users take);
//! - linked clone of a 1 GiB and of a 100 GiB base;
//! - full clone of a 2 GiB volume holding 512 MiB of data vs `cp --sparse=always`;
//! - GetVolume and ListVolumes (first page) in a pool of 10,000 volumes;
//! - a live move (Storage vMotion) of an attached 1 GiB disk with 256 MiB of
//!   data vs bare `virsh blockcopy --pivot` (see live_move.rs);
//! - how long a real guest stays frozen for a quiesced snapshot of one of its
//!   volumes, and the call against `virsh snapshot-create-as --quiesce`
//!   (see quiesce.rs).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, ensure};
use limiquantix_testkit::Libvirtd;

use crate::measure::{Stats, round, run_command, time_n, time_once};
use crate::node::{BenchCluster, BenchNode};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Samples per per-operation measurement (medians are reported).
    #[arg(long, default_value_t = 25)]
    samples: usize,
    /// Runs of each full copy.
    #[arg(long, default_value_t = 5)]
    copy_runs: usize,
    /// Volumes in the pool for the lookup measurement.
    #[arg(long, default_value_t = 10_000)]
    volumes: usize,
    /// Live moves (Storage vMotion) measured against virsh blockcopy.
    #[arg(long, default_value_t = 6)]
    live_moves: usize,
    /// Quiesced snapshots of a real guest's volume measured.
    #[arg(long, default_value_t = 8)]
    quiesced_snapshots: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let work = tempfile::Builder::new().prefix("lq-bench-").tempdir_in(std::env::var_os("LQ_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))?;
    // QEMU under libvirtd (libvirt-qemu) must reach the virsh pool.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
    let libvirtd = Libvirtd::start().context("starting a private libvirtd for the virsh comparison")?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut node = rt.block_on(BenchNode::start(work.path()))?;
    let n = args.samples;
    let mut rows: Vec<(String, String)> = Vec::new();

    // 1. create through gRPC vs bare qemu-img create.
    let pool = rt.block_on(node.init_pool("create"))?;
    let ours = time_n(n, || rt.block_on(node.create(&pool, 10 * GIB)).map(drop))?;
    let bare_dir = work.path().join("bare");
    std::fs::create_dir_all(&bare_dir)?;
    let mut i = 0;
    let bare = time_n(n, || {
        i += 1;
        run_command(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(bare_dir.join(format!("v{i}.qcow2"))).arg("10G"))
    })?;
    let create_ratio = ours.median_ms() / bare.median_ms();
    rows.push(("create 10G qcow2: gRPC end to end".into(), ours.summary()));
    rows.push(("create 10G qcow2: bare qemu-img create".into(), bare.summary()));

    // 2. lqctl vs virsh, whole processes.
    let lqctl = std::env::current_exe()?.with_file_name("lqctl");
    ensure!(lqctl.exists(), "{} is missing: build it (cargo build --release --bins)", lqctl.display());
    let addr = format!("http://{}", node.addr);
    let virsh_pool_dir = work.path().join("virsh-pool");
    std::fs::create_dir_all(&virsh_pool_dir)?;
    libvirtd.virsh(&["pool-create-as", "lqbench", "dir", "--target", virsh_pool_dir.to_str().unwrap()])?;

    // 2b. The path users take: lqctl through the control plane (its saga,
    // its store, then the node), whole processes, waiting for the task; once
    // with --dev's loopback settings (no TLS, no tokens) and once with the
    // defaults outside --dev (TLS, a bearer token, an enrolled node).
    let plain = rt.block_on(BenchCluster::start(&work.path().join("cluster"), false))?;
    let secure = rt.block_on(BenchCluster::start(&work.path().join("secure"), true))?;
    let lq_on = |cluster: &BenchCluster, args: &[&str]| {
        let mut cmd = Command::new(&lqctl);
        match cluster.credentials() {
            Some(file) => cmd.env("LQCTL_CREDENTIALS", file).env_remove("LQ_SERVER"),
            // No credentials file anywhere lqctl looks.
            None => cmd.env("LQ_SERVER", cluster.url()).env_remove("LQCTL_CREDENTIALS").env("XDG_CONFIG_HOME", work.path()),
        };
        cmd.current_dir(work.path());
        cmd.args(args);
        cmd
    };
    for cluster in [&plain, &secure] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !limiquantix_testkit::run_command(&mut lq_on(cluster, &["-o", "json", "node", "list"]))?.contains(&cluster.node_id) {
            ensure!(std::time::Instant::now() < deadline, "the benchmark node never registered");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let pool_dir = cluster.node_root().join("pools/bench");
        // Thin volumes: room for every sample whatever the disk.
        let create = ["pool", "create", "bench", "--local-path", pool_dir.to_str().unwrap(), "--node", &cluster.node_id, "--overcommit", "100"];
        run_command(&mut lq_on(cluster, &create))?;
    }

    // The whole-process creates, interleaved so each sees the same machine,
    // and in a rotating order: what runs right after virsh shares the CPU
    // with the work libvirtd still does after it answered.
    let mut stats: [Stats; 4] = Default::default();
    for k in 0..n {
        let name = format!("v{k}");
        let create = ["volume", "create", "--pool", "bench", "--name", &name, "--size", "10G"];
        let mut direct = Command::new(&lqctl);
        direct.args(["node", "--addr", &addr, "volume", "create", "--pool", &pool, "--size", "10G"]);
        let mut virsh_create = Command::new("virsh");
        virsh_create.args(["-c", libvirtd.uri(), "vol-create-as", "lqbench", &format!("{name}.qcow2"), "10G", "--format", "qcow2"]);
        let mut commands = [direct, virsh_create, lq_on(&plain, &create), lq_on(&secure, &create)];
        let count = commands.len();
        for i in (0..count).map(|i| (i + k) % count) {
            stats[i].push(time_once(|| run_command(&mut commands[i]))?);
        }
    }
    let [lq, virsh, through_cp, through_secure] = stats;
    rt.block_on(plain.stop())?;
    rt.block_on(secure.stop())?;
    let tls_auth_overhead = through_secure.median_ms() / through_cp.median_ms();
    rows.push(("create 10G: lqctl via CP, TLS + token".into(), through_secure.summary()));
    let speedup_vs_virsh = virsh.median_ms() / lq.median_ms();
    let cluster_speedup_vs_virsh = virsh.median_ms() / through_cp.median_ms();
    let cluster_vs_node_direct = through_cp.median_ms() / lq.median_ms();
    rows.push(("create 10G: lqctl process, to the node".into(), lq.summary()));
    rows.push(("create 10G: virsh vol-create-as process".into(), virsh.summary()));
    rows.push(("create 10G: lqctl through the control plane".into(), through_cp.summary()));

    // 3. linked clone of a 1 GiB and of a 100 GiB base.
    let base_small = rt.block_on(node.create(&pool, GIB))?;
    let base_big = rt.block_on(node.create(&pool, 100 * GIB))?;
    let clone_small = time_n(n, || rt.block_on(node.linked_clone(&pool, &base_small)).map(drop))?;
    let clone_big = time_n(n, || rt.block_on(node.linked_clone(&pool, &base_big)).map(drop))?;
    let linked_ratio = clone_big.median_ms() / clone_small.median_ms();
    rows.push(("linked clone of a 1 GiB base".into(), clone_small.summary()));
    rows.push(("linked clone of a 100 GiB base".into(), clone_big.summary()));

    // 4. full clone vs cp --sparse=always.
    let copy_pool = rt.block_on(node.init_pool("copy"))?;
    let source = rt.block_on(node.create(&copy_pool, 2 * GIB))?;
    write_data(Path::new(&source.location), 512 * MIB)?;
    let cp_dir = work.path().join("cp");
    std::fs::create_dir_all(&cp_dir)?;
    let (mut ours_copy, mut cp_copy, mut cp_sync) = (Stats::default(), Stats::default(), Stats::default());
    for k in 0..args.copy_runs {
        // Interleaved so each sees the same cache and writeback state on average.
        let mut copy = None;
        ours_copy.push(time_once(|| {
            copy = Some(rt.block_on(node.full_clone(&copy_pool, &source))?);
            Ok(())
        })?);
        rt.block_on(node.delete(&copy_pool, copy.as_ref().expect("copied")))?;
        let target = cp_dir.join(format!("c{k}.qcow2"));
        cp_copy.push(time_once(|| run_command(Command::new("cp").arg("--sparse=always").arg(&source.location).arg(&target)))?);
        std::fs::remove_file(&target)?;
        // The same, made durable as the node makes every copy before it answers.
        cp_sync.push(time_once(|| {
            run_command(Command::new("cp").arg("--sparse=always").arg(&source.location).arg(&target))?;
            run_command(Command::new("sync").arg(&target))
        })?);
        std::fs::remove_file(&target)?;
    }
    let copy_ratio = cp_copy.median_ms() / ours_copy.median_ms();
    let copy_ratio_durable = cp_sync.median_ms() / ours_copy.median_ms();
    rows.push(("full clone 2 GiB (512 MiB data), durable".into(), ours_copy.summary()));
    rows.push(("cp --sparse=always of the same file".into(), cp_copy.summary()));
    rows.push(("cp --sparse=always + sync of the file".into(), cp_sync.summary()));

    // 5. lookups in a pool of many volumes.
    let big_pool = rt.block_on(node.init_pool("many"))?;
    let ids = rt.block_on(node.fill_pool(&big_pool, args.volumes))?;
    let mut k = 0usize;
    let get = time_n(200, || {
        k = (k * 7919 + 13) % ids.len();
        rt.block_on(node.get(&big_pool, &ids[k])).map(drop)
    })?;
    let list = time_n(20, || rt.block_on(node.list_first_page(&big_pool)).map(drop))?;
    let info = time_n(5, || rt.block_on(node.pool_info(&big_pool, false)).map(drop))?;
    rows.push((format!("GetVolume in a pool of {}", ids.len()), get.summary()));
    rows.push((format!("ListVolumes first page (100) of {}", ids.len()), list.summary()));
    rows.push((format!("GetStoragePoolInfo (capacity) of {}", ids.len()), info.summary()));

    rt.block_on(node.stop())?;
    let (live, blockcopy) = crate::live_move::run(&rt, &libvirtd, work.path(), args.live_moves)?;
    rows.push(("live move 1G (256M data): gRPC, source deleted".into(), live.summary()));
    rows.push(("live move: bare virsh blockcopy --pivot".into(), blockcopy.summary()));
    let quiesce = crate::quiesce::run(&rt, &libvirtd, work.path(), args.quiesced_snapshots)?;
    rows.push(("quiesced snapshot: guest frozen".into(), quiesce.frozen.summary()));
    rows.push(("quiesced snapshot: gRPC call".into(), quiesce.ours.summary()));
    rows.push(("quiesced snapshot: virsh --disk-only --quiesce".into(), quiesce.virsh.summary()));
    drop(libvirtd);

    println!("{:<44} median / p99 (ms, n)", "operation");
    for (name, figure) in &rows {
        println!("{name:<44} {figure}");
    }
    println!(
        "{}",
        serde_json::json!({
            "create_ratio_vs_qemu_img": round(create_ratio),
            "create_speedup_vs_virsh": round(speedup_vs_virsh),
            "cluster_create_speedup_vs_virsh": round(cluster_speedup_vs_virsh),
            "cluster_create_vs_node_direct": round(cluster_vs_node_direct),
            "tls_auth_create_overhead": round(tls_auth_overhead),
            "linked_clone_100g_vs_1g": round(linked_ratio),
            "full_copy_vs_cp_sparse": round(copy_ratio),
            "full_copy_vs_cp_sparse_then_sync": round(copy_ratio_durable),
            "lookup_ms_at_10k": round(get.median_ms()),
            "lookup_p99_ms_at_10k": round(get.p99_ms()),
            "list_first_page_ms_at_10k": round(list.median_ms()),
            "pool_info_ms_at_10k": round(info.median_ms()),
            "live_move_vs_virsh_blockcopy": round(live.median_ms() / blockcopy.median_ms()),
            "live_move_ms": round(live.median_ms()),
            "virsh_blockcopy_ms": round(blockcopy.median_ms()),
            "quiesce_frozen_ms": round(quiesce.frozen.median_ms()),
            "quiesced_snapshot_ms": round(quiesce.ours.median_ms()),
            "quiesced_snapshot_vs_virsh": round(quiesce.ours.median_ms() / quiesce.virsh.median_ms()),
        })
    );
    Ok(())
}

/// Writes `bytes` of non-zero data, spread in 4 MiB runs over the volume.
pub fn write_data(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let runs = bytes / (4 * MIB);
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "qcow2"]);
    for r in 0..runs {
        cmd.arg("-c").arg(format!("write -P {:#x} {} {}", (r % 250) + 1, r * 16 * MIB, 4 * MIB));
    }
    run_command(cmd.arg(path))
}
