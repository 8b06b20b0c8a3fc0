use limiquantix_api::v1 as pb;
use limiquantix_storage::model::{CephPoolConfig, Secret};

pub fn config_in(c: pb::CephPoolConfig) -> CephPoolConfig {
    CephPoolConfig {
        monitors: c.monitors,
        ceph_pool: c.ceph_pool,
        client_id: c.client_id,
        rados_namespace: c.rados_namespace,
        create_if_missing: c.create_if_missing,
        key: Secret::new(c.key),
    }
}

/// Without the key: secrets are never returned.
pub fn config_out(c: &CephPoolConfig) -> pb::CephPoolConfig {
    pb::CephPoolConfig {
        monitors: c.monitors.clone(),
        ceph_pool: c.ceph_pool.clone(),
        client_id: c.client_id.clone(),
        key: String::new(),
        rados_namespace: c.rados_namespace.clone(),
        create_if_missing: c.create_if_missing,
    }
}
