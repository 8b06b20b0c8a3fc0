//! An iSCSI target with many LUNs (tgt), listed with sizes and names side by
//! side: `lqctl node … volume list` (whole process, through the node's
//! direct-mode pool) against libiscsi's own `iscsi-ls -s` on the same target.
//! And LVM mode: a volume created through the node's gRPC API against a bare
//! `lvcreate` in the same volume group (on a loop device over a LUN's file:
//! this kernel cannot log in, see testkit's iscsi_login).

use anyhow::{Context, ensure};
use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_storage_client::NodeStorageClient;
use limiquantix_testkit::Tgt;
use limiquantix_testkit::iscsi_login::LoginShim;
use limiquantix_testkit::loopdev::LoopDevice;
use limiquantix_testkit::tgt::{CHAP_USER, TARGET};

use crate::measure::{Stats, round, time_once};
use crate::node::BenchNode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 30)]
    samples: usize,
    #[arg(long, default_value_t = 32)]
    luns: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // LUN 1 holds the LVM measurement's group: room for every sample.
    let mut sizes = vec![64; args.luns];
    sizes[0] = 1024;
    let tgt = Tgt::start(&sizes).context("starting tgt")?;
    let root = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut node = rt.block_on(BenchNode::start(root.path()))?;
    let pool = rt.block_on(node.init_pool_with(pb::pool_config::Backend::Iscsi(pb::IscsiPoolConfig {
        portals: vec![tgt.portal()],
        target_iqn: TARGET.into(),
        initiator_iqn: "iqn.2024-01.io.limiquantix.bench:node1".into(),
        chap_username: CHAP_USER.into(),
        chap_password: tgt.chap_secret().into(),
        mode: pb::IscsiMode::Direct as i32,
        ..Default::default()
    })))?;
    let lqctl = std::env::current_exe()?.with_file_name("lqctl");
    ensure!(lqctl.exists(), "{} is missing: build it (cargo build --release --bins)", lqctl.display());
    let addr = format!("http://{}", node.addr);
    let ours = || -> anyhow::Result<String> {
        let out = std::process::Command::new(&lqctl).args(["-o", "json", "node", "--addr", &addr, "volume", "list", "--pool", &pool]).output()?;
        ensure!(out.status.success(), "lqctl: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    };
    let url = format!("iscsi://{CHAP_USER}@{}", tgt.portal());
    let theirs = || -> anyhow::Result<String> {
        let out = std::process::Command::new("iscsi-ls").args(["-s", &url]).env("LIBISCSI_CHAP_PASSWORD", tgt.chap_secret()).output()?;
        ensure!(out.status.success(), "iscsi-ls: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    };
    // Both list every disk LUN, with its size.
    let listed: serde_json::Value = serde_json::from_str(&ours()?)?;
    ensure!(listed.as_array().is_some_and(|a| a.len() == args.luns), "lqctl listed {listed}");
    ensure!(theirs()?.matches("DIRECT_ACCESS").count() == args.luns, "iscsi-ls did not list every LUN");

    // Where lqctl's time goes: starting the process, and one call on a new connection.
    let start_only = || -> anyhow::Result<()> {
        let out = std::process::Command::new(&lqctl).arg("--version").output()?;
        ensure!(out.status.success(), "lqctl --version failed");
        Ok(())
    };
    let one_call = || -> anyhow::Result<()> {
        rt.block_on(async {
            let mut client = NodeStorageClient::connect(format!("http://{}", node.addr)).await?;
            let req = pb::NodeListVolumesRequest { pool_id: pool.clone(), ..Default::default() };
            ensure!(client.list_volumes(req).await?.into_inner().volumes.len() == args.luns);
            Ok(())
        })
    };
    let (mut lq, mut ls, mut start, mut call) = (Stats::default(), Stats::default(), Stats::default(), Stats::default());
    for _ in 0..args.samples {
        lq.push(time_once(|| ours().map(drop))?);
        ls.push(time_once(|| theirs().map(drop))?);
        start.push(time_once(start_only)?);
        call.push(time_once(one_call)?);
    }
    rt.block_on(node.stop())?;

    let (lvm_ours, lvm_bare) = lvm_creates(&tgt, &rt, args.samples)?;
    eprintln!("{:<46} median / p99 (ms, n)", "operation");
    eprintln!("{:<46} {}", format!("list {} LUNs: lqctl node volume list", args.luns), lq.summary());
    eprintln!("{:<46} {}", "list: iscsi-ls -s", ls.summary());
    eprintln!("{:<46} {}", "  of which: lqctl --version (process start)", start.summary());
    eprintln!("{:<46} {}", "  of which: connect + list, in process", call.summary());
    eprintln!("{:<46} {}", "LVM mode: create 4 MiB through gRPC", lvm_ours.summary());
    eprintln!("{:<46} {}", "LVM mode: bare lvcreate, same group", lvm_bare.summary());
    println!(
        "{}",
        serde_json::json!({
            "iscsi_list_speedup_vs_iscsi_ls": round(ls.median_ms() / lq.median_ms()),
            "iscsi_list_ms": round(lq.median_ms()),
            "iscsi_ls_ms": round(ls.median_ms()),
            "lqctl_start_ms": round(start.median_ms()),
            "list_call_ms": round(call.median_ms()),
            "luns": args.luns,
            "lvm_create_ratio_vs_lvcreate": round(lvm_ours.median_ms() / lvm_bare.median_ms()),
            "lvm_create_ms": round(lvm_ours.median_ms()),
            "lvcreate_ms": round(lvm_bare.median_ms()),
        })
    );
    Ok(())
}

/// Creates through a node's LVM-mode pool and bare lvcreate, interleaved.
fn lvm_creates(tgt: &Tgt, rt: &tokio::runtime::Runtime, samples: usize) -> anyhow::Result<(Stats, Stats)> {
    let lun = LoopDevice::over(&tgt.disk_file(1)).context("a loop device over LUN 1's file")?;
    let shim = LoginShim::new(&[(1, &lun.path)])?;
    let root = tempfile::tempdir()?;
    let mut node = rt.block_on(BenchNode::start_with(root.path(), |n| {
        n.iscsi.iscsiadm = shim.program().display().to_string();
        n.iscsi.nodes_dir = shim.nodes_dir();
        n.iscsi.by_path_dir = shim.by_path_dir();
    }))?;
    let pool = rt.block_on(node.init_pool_with(pb::pool_config::Backend::Iscsi(pb::IscsiPoolConfig {
        portals: vec![tgt.portal()],
        target_iqn: TARGET.into(),
        lun: 1,
        initiator_iqn: "iqn.2024-01.io.limiquantix.bench:node1".into(),
        chap_username: CHAP_USER.into(),
        chap_password: tgt.chap_secret().into(),
        mode: pb::IscsiMode::Lvm as i32,
        volume_group: "lqbench".into(),
        create_volume_group: true,
        ..Default::default()
    })))?;
    // The node's own LVM config for the pool: the same single device, the same locks.
    let lvm_dir = root.path().join("state/iscsi-lvm").join(&pool);
    ensure!(lvm_dir.join("lvm.conf").exists(), "no LVM config at {}", lvm_dir.display());
    let (mut ours, mut bare) = (Stats::default(), Stats::default());
    for k in 0..samples {
        ours.push(time_once(|| rt.block_on(node.create_as(&pool, 4 << 20, pb::VolumeFormat::Raw)).map(drop))?);
        bare.push(time_once(|| {
            let out = std::process::Command::new("lvcreate")
                .args(["-Zn", "-Wn", "--yes", "-n", &format!("bare{k}"), "-L", "4m", "lqbench"])
                .env("LVM_SYSTEM_DIR", &lvm_dir)
                .env("LVM_SUPPRESS_FD_WARNINGS", "1")
                .output()?;
            ensure!(out.status.success(), "lvcreate: {}", String::from_utf8_lossy(&out.stderr));
            Ok(())
        })?);
    }
    rt.block_on(node.stop())?;
    Ok((ours, bare))
}
