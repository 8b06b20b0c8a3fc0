//! An iSCSI target with many LUNs (tgt), listed with sizes and names side by
//! side: `lqctl node … volume list` (whole process, through the node's
//! direct-mode pool) against libiscsi's own `iscsi-ls -s` on the same target.

use anyhow::{Context, ensure};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::Tgt;
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
    let tgt = Tgt::start(&vec![64; args.luns]).context("starting tgt")?;
    let root = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut node = rt.block_on(BenchNode::start(root.path()))?;
    let pool = rt.block_on(node.init_pool_with(pb::pool_config::Backend::Iscsi(pb::IscsiPoolConfig {
        portal: tgt.portal(),
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

    let (mut lq, mut ls) = (Stats::default(), Stats::default());
    for _ in 0..args.samples {
        lq.push(time_once(|| ours().map(drop))?);
        ls.push(time_once(|| theirs().map(drop))?);
    }
    rt.block_on(node.stop())?;
    eprintln!("{:<46} median / p99 (ms, n)", "operation");
    eprintln!("{:<46} {}", format!("list {} LUNs: lqctl node volume list", args.luns), lq.summary());
    eprintln!("{:<46} {}", "list: iscsi-ls -s", ls.summary());
    println!(
        "{}",
        serde_json::json!({
            "iscsi_list_speedup_vs_iscsi_ls": round(ls.median_ms() / lq.median_ms()),
            "iscsi_list_ms": round(lq.median_ms()),
            "iscsi_ls_ms": round(ls.median_ms()),
            "luns": args.luns,
        })
    );
    Ok(())
}
