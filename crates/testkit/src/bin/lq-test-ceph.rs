//! A throwaway Ceph cluster for tests outside Rust (the web UI's Playwright
//! tests): starts it (testkit's Ceph: mon, mgr, memstore OSD on 127.0.0.1,
//! free ports, a temp dir), makes an RBD pool and a user limited to it,
//! prints one JSON line {monitor, pool, user, key}, and stops the cluster by
//! pid when its stdin closes (its caller ended, however it ended).

use std::io::Read;

fn main() -> std::io::Result<()> {
    let pool = std::env::args().nth(1).unwrap_or_else(|| "ui".to_owned());
    let ceph = limiquantix_testkit::Ceph::start()?;
    ceph.ceph(&["osd", "pool", "create", &pool, "8"])?;
    ceph.rbd(&["pool", "init", &pool])?;
    let key = ceph.create_user("lqui", &pool)?;
    let line = serde_json::json!({ "monitor": ceph.monitor(), "pool": pool, "user": "lqui", "key": key });
    println!("{line}");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(ceph);
    Ok(())
}
