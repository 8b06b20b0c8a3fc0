//! The throwaway Ceph cluster starts healthy with its RBD pool, and stops.

use limiquantix_testkit::Ceph;
use limiquantix_testkit::ceph::TEST_POOL;

#[test]
fn a_single_node_ceph_cluster_serves_rbd() {
    let ceph = Ceph::start().expect("ceph starts");
    let health = ceph.ceph(&["health"]).unwrap();
    assert!(health.starts_with("HEALTH_OK") || health.starts_with("HEALTH_WARN"), "{health}");
    ceph.rbd(&["create", "--size", "64M", &format!("{TEST_POOL}/probe")]).unwrap();
    let info = ceph.rbd(&["info", "--format", "json", &format!("{TEST_POOL}/probe")]).unwrap();
    assert!(info.contains("\"size\":67108864"), "{info}");
    assert!(ceph.monitor().starts_with("127.0.0.1:"));
    assert!(!ceph.admin_key().is_empty());
    let key = ceph.create_user("lqtest", TEST_POOL).unwrap();
    assert!(key.len() > 20, "{key}");
    let dir = ceph.dir().to_owned();
    drop(ceph);
    assert!(!dir.exists());
}
