//! The Ceph pool behind an LQ pool: checked (and created when asked) at
//! activation, and its capacity as `ceph df` reports it.

use super::Inner;
use super::rados::Cluster;
use crate::error::{Result, StorageError};
use crate::model::{CephPoolConfig, PoolCapacity};

/// The pool must exist and be an RBD pool; created when asked to.
pub(super) fn ensure_pool(cluster: &Cluster, cfg: &CephPoolConfig, may_create: bool) -> Result<()> {
    let pool = &cfg.ceph_pool;
    if cluster.pool_lookup(pool)?.is_none() {
        if !(cfg.create_if_missing && may_create) {
            return Err(StorageError::NotFound(format!(
                "Ceph pool {pool} does not exist; create it (ceph osd pool create {pool} && rbd pool init {pool}) or set create_if_missing"
            )));
        }
        cluster.mon_command(&serde_json::json!({"prefix": "osd pool create", "pool": pool, "format": "json"}))?;
        cluster.mon_command(&serde_json::json!({"prefix": "osd pool application enable", "pool": pool, "app": "rbd", "format": "json"}))?;
        tracing::info!(%pool, "created Ceph pool with application rbd");
        wait_for_df(cluster, pool);
    }
    let apps = cluster.mon_command(&serde_json::json!({"prefix": "osd pool application get", "pool": pool, "format": "json"}))?;
    let apps: serde_json::Value = serde_json::from_slice(&apps)
        .map_err(|e| StorageError::Internal(format!("Ceph answered osd pool application get with bad JSON: {e}")))?;
    if apps.get("rbd").is_none() {
        return Err(StorageError::precondition(format!(
            "Ceph pool {pool} is not an RBD pool (application rbd is not enabled); run `rbd pool init {pool}` or choose another pool"
        )));
    }
    Ok(())
}

/// A new pool shows in `ceph df` only once the manager's next statistics
/// digest has it (a few seconds): until then its capacity is unknown and
/// the pool would look broken right after it was made.
fn wait_for_df(cluster: &Cluster, pool: &str) {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);
    let start = std::time::Instant::now();
    while start.elapsed() < PATIENCE {
        match df_pool_stats(cluster, pool) {
            Ok(Some(_)) => return,
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(200)),
            Err(e) => {
                tracing::warn!(%pool, error = %e, "cannot read ceph df for the new pool");
                return;
            }
        }
    }
    tracing::warn!(%pool, "the new Ceph pool is not in ceph df yet; its capacity shows at the next refresh");
}

/// (stored, max_avail) bytes of `pool` from `ceph df`; None if it is not listed.
fn df_pool_stats(cluster: &Cluster, pool: &str) -> Result<Option<(u64, u64)>> {
    let out = cluster.mon_command(&serde_json::json!({"prefix": "df", "format": "json"}))?;
    let df: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| StorageError::Internal(format!("Ceph answered df with bad JSON: {e}")))?;
    let pools = df["pools"].as_array().ok_or_else(|| StorageError::Internal("ceph df: no pools".into()))?;
    let Some(p) = pools.iter().find(|p| p["name"] == pool) else { return Ok(None) };
    let field = |name: &str| p["stats"][name].as_u64().ok_or_else(|| StorageError::Internal(format!("ceph df: pool stats lack {name}")));
    Ok(Some((field("stored")?, field("max_avail")?)))
}

/// (stored, max_avail) bytes of the pool, from `ceph df`.
fn ceph_df_pool(i: &Inner) -> Result<(u64, u64)> {
    df_pool_stats(&i.cluster, &i.config.ceph_pool)?
        .ok_or_else(|| StorageError::NotFound(format!("Ceph pool {} is gone from ceph df", i.config.ceph_pool)))
}

/// Capacity as Ceph reports it for the pool (replication and full ratio
/// included): total = stored + available. One monitor command, whatever the
/// number of images.
pub(super) fn capacity(i: &Inner) -> Result<PoolCapacity> {
    let (stored, max_avail) = ceph_df_pool(i)?;
    Ok(PoolCapacity { total_bytes: stored + max_avail, free_bytes: max_avail, allocated_bytes: stored, counted: None })
}

/// Bytes the pool can still take.
pub(super) fn free_bytes(i: &Inner) -> Result<u64> {
    Ok(ceph_df_pool(i)?.1)
}
