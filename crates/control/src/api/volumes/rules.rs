//! What a volume must be for an operation: its state, its features, and
//! the rules that keep templates and linked clones' bases unwritten.

use super::*;

/// Refuses up front, before any task, what the volume's kind and format
/// cannot do (the node checks the same).
pub(super) fn require_feature(pool: &pb::Pool, v: &pb::Volume, feature: VolumeFeature) -> ApiResult<()> {
    let (kind, format) = (convert::pool_kind_in(pool.kind)?, convert::volume_format(v.format)?);
    let Some(format) = format else { return Ok(()) };
    limiquantix_storage::backends::volume_has_feature(kind, format, feature)
        .map_err(|why| ApiError::precondition(format!("volume {}: {why}", v.name)))
}

pub(super) fn require_available(v: &pb::Volume, hint: &str) -> ApiResult<()> {
    if v.state != pb::VolumeState::Available as i32 {
        return Err(ApiError::precondition(format!("volume {} is {}; {hint}", v.name, state_name(v.state))));
    }
    Ok(())
}

/// The volume's linked clones, found in its pool.
pub(super) async fn dependents(app: &App, v: &pb::Volume) -> ApiResult<Vec<String>> {
    let all = app.repo.list::<pb::Volume>(&keys::pool_volumes(&v.pool_id), None, 0).await?;
    Ok(all.into_iter().filter(|(_, c)| c.value.backing_volume_id == v.id).map(|(_, c)| c.value.id).collect())
}

/// What an operation does to its volume, for the checks that keep linked
/// clones' data intact (DESIGN.md rule 12).
#[derive(Clone, Copy)]
pub(super) enum Change<'a> {
    /// Writes it (the action, as in "cannot be {action}"): refused for a
    /// template and for a base of linked clones.
    Write(&'a str),
    /// Removes it: refused while linked clones depend on it (a template
    /// without clones may go).
    Delete,
}

pub(super) async fn refuse_change(app: &App, v: &pb::Volume, change: Change<'_>) -> ApiResult<()> {
    match change {
        Change::Write(action) if v.template => Err(ApiError::precondition(format!(
            "volume {} is a template and cannot be {action}: templates are never written; clone it to change it",
            v.name
        ))),
        Change::Write(action) => refuse_if_dependents(app, v, action).await,
        Change::Delete => refuse_if_dependents(app, v, "deleted").await,
    }
}

pub(super) async fn refuse_if_dependents(app: &App, v: &pb::Volume, action: &str) -> ApiResult<()> {
    let deps = dependents(app, v).await?;
    if !deps.is_empty() {
        return Err(ApiError::precondition(format!(
            "volume {} cannot be {action}: linked clones depend on it ({}); delete them first",
            v.name,
            deps.join(", ")
        )));
    }
    Ok(())
}
