//! The private etcd starts healthy on loopback and is stopped by pid on drop.

use limiquantix_testkit::Etcd;

#[test]
fn etcd_starts_on_loopback_and_stops() {
    let etcd = Etcd::start().expect("etcd starts");
    assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
    let out = std::process::Command::new("etcdctl")
        .args(["--endpoints", &etcd.endpoint(), "put", "/lq/probe", "hello"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid = etcd.pid().expect("etcd runs");
    drop(etcd);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z"), "etcd is gone: {stat}");
}
