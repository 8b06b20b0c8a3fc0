//! Loading and checking the records the services and sagas share.

use limiquantix_api::v1 as pb;
use limiquantix_storage::{Name, PoolId, VolumeId};

use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::repo::{Repo, Versioned};

pub fn parse_volume_id(s: &str) -> ApiResult<String> {
    Ok(s.parse::<VolumeId>().map_err(ApiError::from)?.to_string())
}

pub fn parse_pool_id(s: &str) -> ApiResult<String> {
    Ok(s.parse::<PoolId>().map_err(ApiError::from)?.to_string())
}

/// Node ids are UUIDs too (each node picks its own and keeps it in its state dir).
pub fn parse_node_id(s: &str) -> ApiResult<String> {
    let parsed = uuid::Uuid::try_parse(s).ok().filter(|_| s.len() == 36).ok_or_else(|| {
        ApiError::invalid(format!("node id {s:?} is not a UUID"))
    })?;
    Ok(parsed.hyphenated().to_string())
}

pub fn parse_name(what: &str, s: &str) -> ApiResult<String> {
    Ok(Name::parse(what, s).map_err(ApiError::from)?.as_str().to_owned())
}

/// The name of a new pool or volume: besides the name rule, never shaped
/// like an id, since ids and names are given in the same places.
pub fn parse_new_name(what: &str, s: &str) -> ApiResult<String> {
    let name = parse_name(what, s)?;
    if uuid::Uuid::try_parse(&name).is_ok() {
        return Err(ApiError::invalid(format!("{what} name {name} looks like an id (a UUID); choose a name that does not")));
    }
    Ok(name)
}

/// The name of a new snapshot, checked here for what every backend refuses:
/// only digits (qcow2 takes it for a snapshot id) and the reserved lq- prefix.
pub fn parse_new_snapshot_name(s: &str) -> ApiResult<String> {
    let name = parse_name("snapshot", s)?;
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(format!("snapshot name {name} is only digits, which qcow2 takes for a snapshot id; add a letter")));
    }
    if name.starts_with("lq-") {
        return Err(ApiError::invalid(format!("snapshot names starting with lq- are reserved; rename {name}")));
    }
    Ok(name)
}

/// An enum field's value; one the API does not define is refused.
pub fn known<E: TryFrom<i32>>(what: &str, v: i32) -> ApiResult<E> {
    E::try_from(v).map_err(|_| ApiError::invalid(format!("{what} {v} is unknown")))
}

/// Label keys follow the name rule; values are short printable text.
pub fn check_labels(labels: &std::collections::HashMap<String, String>) -> ApiResult<()> {
    for (k, v) in labels {
        parse_name("label", k)?;
        if v.len() > 253 || v.chars().any(|c| c.is_control()) {
            return Err(ApiError::invalid(format!("label {k} has an invalid value: at most 253 printable characters")));
        }
    }
    Ok(())
}

/// A pool by id or by name.
pub async fn pool(repo: &Repo, id_or_name: &str) -> ApiResult<Versioned<pb::Pool>> {
    if id_or_name.is_empty() {
        return Err(ApiError::invalid("no pool given: name a pool by its id or its name"));
    }
    let id = match id_or_name.parse::<PoolId>() {
        Ok(id) => id.to_string(),
        Err(_) => {
            let name = parse_name("pool", id_or_name)?;
            match repo.get_raw(&keys::pool_name(&name)).await? {
                Some((id, _)) => String::from_utf8_lossy(&id).into_owned(),
                None => return Err(ApiError::not_found(format!("there is no pool named {name}"))),
            }
        }
    };
    repo.get::<pb::Pool>(&keys::pool(&id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("pool {id_or_name} does not exist")))
}

/// The pool a volume lives in.
pub async fn pool_of_volume(repo: &Repo, volume_id: &str) -> ApiResult<Option<String>> {
    Ok(repo.get_raw(&keys::volume_pool(volume_id)).await?.map(|(p, _)| String::from_utf8_lossy(&p).into_owned()))
}

pub async fn volume(repo: &Repo, volume_id: &str) -> ApiResult<Versioned<pb::Volume>> {
    let id = parse_volume_id(volume_id)?;
    let missing = || ApiError::not_found(format!("volume {id} does not exist"));
    let pool = pool_of_volume(repo, &id).await?.ok_or_else(missing)?;
    repo.get::<pb::Volume>(&keys::volume(&pool, &id)).await?.ok_or_else(missing)
}

/// A snapshot of the volume by its name.
pub async fn snapshot(repo: &Repo, volume: &pb::Volume, name: &str) -> ApiResult<Versioned<pb::Snapshot>> {
    repo.get::<pb::Snapshot>(&keys::snapshot(&volume.id, name))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("volume {} has no snapshot named {name}", volume.name)))
}

pub fn state_name(state: i32) -> &'static str {
    match pb::VolumeState::try_from(state).unwrap_or(pb::VolumeState::Unspecified) {
        pb::VolumeState::Creating => "creating",
        pb::VolumeState::Available => "available",
        pb::VolumeState::Attached => "attached",
        pb::VolumeState::Resizing => "resizing",
        pb::VolumeState::Writing => "writing",
        pb::VolumeState::Moving => "moving",
        pb::VolumeState::Deleting => "deleting",
        pb::VolumeState::Error => "error",
        pb::VolumeState::Unspecified => "unknown",
    }
}

/// Refuses an operation on a volume another operation is running on, or
/// that clones in progress read from.
pub fn ensure_idle(v: &pb::Volume) -> ApiResult<()> {
    ensure_no_task(v)?;
    if !v.held_by_task_ids.is_empty() {
        return Err(ApiError::precondition(format!(
            "volume {} ({}) is the source of clone(s) in progress (task {}); retry when they have finished",
            v.name,
            v.id,
            v.held_by_task_ids.join(", ")
        )));
    }
    Ok(())
}

/// Refuses an operation on a volume another operation is running on (clones
/// may read a volume together: they do not run *on* it).
pub fn ensure_no_task(v: &pb::Volume) -> ApiResult<()> {
    if !v.task_id.is_empty() {
        return Err(ApiError::precondition(format!(
            "volume {} ({}) is busy: task {} is running on it ({}); retry when it has finished",
            v.name,
            v.id,
            v.task_id,
            state_name(v.state)
        )));
    }
    Ok(())
}
