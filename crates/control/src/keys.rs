//! Where each record lives in the store. Ids are UUIDs and names are checked
//! before they get here, so no key can be forged from user text.

pub const POOLS: &str = "pools/";
pub const VOLUMES: &str = "volumes/";
pub const NODES: &str = "nodes/";
pub const TASKS: &str = "tasks/";
pub const SAGAS: &str = "sagas/";

pub fn pool(id: &str) -> String {
    format!("{POOLS}{id}")
}
pub fn pool_name(name: &str) -> String {
    format!("pool-names/{name}")
}
/// Secrets of a pool's config (Ceph key, CHAP password): kept apart from the
/// pool record, which the API returns.
pub fn pool_secret(id: &str) -> String {
    format!("pool-secrets/{id}")
}
/// Volumes live under their pool, so listing a pool's volumes is one range read.
/// A pool's capacity samples (one record).
pub fn pool_history(pool: &str) -> String {
    format!("pool-history/{pool}")
}
pub fn pool_volumes(pool: &str) -> String {
    format!("{VOLUMES}{pool}/")
}
pub fn volume(pool: &str, id: &str) -> String {
    format!("{VOLUMES}{pool}/{id}")
}
/// volume id → pool id.
pub fn volume_pool(id: &str) -> String {
    format!("volume-pools/{id}")
}
pub fn volume_name(pool: &str, name: &str) -> String {
    format!("volume-names/{pool}/{name}")
}
pub fn volume_snapshots(volume: &str) -> String {
    format!("snapshots/{volume}/")
}
pub fn snapshot(volume: &str, name: &str) -> String {
    format!("snapshots/{volume}/{name}")
}
pub fn node(id: &str) -> String {
    format!("{NODES}{id}")
}
pub fn task(id: &str) -> String {
    format!("{TASKS}{id}")
}
/// Tasks by creation time, newest first: the time is stored as its
/// distance to the end of time, so a forward range read goes back in time.
pub const TASK_TIMES: &str = "task-times/";
pub fn task_time(created_unix_seconds: i64, id: &str) -> String {
    format!("{TASK_TIMES}{:020}/{id}", i64::MAX - created_unix_seconds)
}
/// The creation time a `task_time` key encodes.
pub fn task_time_created(key: &str) -> Option<i64> {
    let inverted: i64 = key.strip_prefix(TASK_TIMES)?.split('/').next()?.parse().ok()?;
    Some(i64::MAX - inverted)
}
/// API tokens by id, and their names (unique).
pub const API_TOKENS: &str = "api-tokens/";
pub fn api_token(id: &str) -> String {
    format!("{API_TOKENS}{id}")
}
pub fn api_token_name(name: &str) -> String {
    format!("api-token-names/{name}")
}
pub const JOIN_TOKENS: &str = "join-tokens/";
pub fn join_token(id: &str) -> String {
    format!("{JOIN_TOKENS}{id}")
}
/// The certificate a node enrolled with: the only one it may use.
pub fn enrolment(node_id: &str) -> String {
    format!("enrolments/{node_id}")
}
/// The task that holds a pool's metadata lock (see pool_locks.rs).
pub fn pool_lock(pool_id: &str) -> String {
    format!("pool-locks/{pool_id}")
}

pub fn saga(id: &str) -> String {
    format!("{SAGAS}{id}")
}
