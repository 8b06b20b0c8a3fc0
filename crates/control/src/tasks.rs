//! Tasks: what a caller watches while a saga runs.

use limiquantix_api::v1 as pb;

use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::repo::Repo;

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("the clock is after 1970").as_secs() as i64
}

pub fn new_task(id: &str, kind: &str, resource_id: &str) -> pb::Task {
    let t = now();
    pb::Task {
        id: id.to_owned(),
        kind: kind.to_owned(),
        resource_id: resource_id.to_owned(),
        state: pb::TaskState::Running as i32,
        created_unix_seconds: t,
        updated_unix_seconds: t,
        ..Default::default()
    }
}

fn is_final(t: &pb::Task) -> bool {
    t.state != pb::TaskState::Running as i32
}

pub async fn set_progress(repo: &Repo, task_id: &str, p: pb::Progress) -> ApiResult<()> {
    repo.update::<pb::Task>(&keys::task(task_id), |t| {
        t.progress = Some(p.clone());
        t.updated_unix_seconds = now();
        Ok(())
    })
    .await
    .map(drop)
}

/// Shows the running step, and why it is being retried if it is.
pub async fn set_step(repo: &Repo, task_id: &str, step: &str, retrying: Option<&str>) -> ApiResult<()> {
    repo.update::<pb::Task>(&keys::task(task_id), |t| {
        show_step(t, step, retrying);
        Ok(())
    })
    .await
    .map(drop)
}

/// The task shows `step` as running (and why it is retried, if it is).
pub fn show_step(t: &mut pb::Task, step: &str, retrying: Option<&str>) {
    t.step = match retrying {
        Some(why) => format!("{step} (retrying: {why})"),
        None => step.to_owned(),
    };
    t.updated_unix_seconds = now();
}

/// The task ends with `outcome`; an ended task stays as it ended.
pub fn end(t: &mut pb::Task, outcome: &Result<(), ApiError>) {
    if is_final(t) {
        return;
    }
    t.updated_unix_seconds = now();
    t.step.clear();
    match outcome {
        Ok(()) => {
            t.state = pb::TaskState::Succeeded as i32;
            if let Some(p) = t.progress.as_mut() {
                p.done_bytes = p.total_bytes;
            }
        }
        Err(e) => {
            t.state = if e.code() == tonic::Code::Cancelled { pb::TaskState::Cancelled as i32 } else { pb::TaskState::Failed as i32 };
            t.error = e.message.clone();
            t.error_code = e.code() as i32;
        }
    }
}

/// Removes finished tasks created more than `retention` ago (running ones
/// stay whatever their age); returns how many went.
pub async fn expire(repo: &Repo, retention: std::time::Duration) -> ApiResult<usize> {
    let cutoff = now() - retention.as_secs() as i64;
    let mut removed = 0;
    for entry in repo.store().list(keys::TASK_TIMES, None, 0).await? {
        if keys::task_time_created(&entry.key).is_none_or(|created| created > cutoff) {
            continue;
        }
        let id = String::from_utf8_lossy(&entry.value).into_owned();
        let key = keys::task(&id);
        let mut txn = crate::repo::Txn::new();
        match repo.get::<pb::Task>(&key).await? {
            Some(t) if !is_final(&t.value) => continue,
            Some(t) => {
                txn.expect(&key, t.revision).delete(&key);
            }
            None => {}
        }
        txn.expect(&entry.key, entry.revision).delete(&entry.key);
        match txn.commit(repo).await {
            Ok(_) => removed += 1,
            Err(e) if e.is_conflict() => {} // it changed meanwhile: the next sweep decides
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

pub async fn request_cancel(repo: &Repo, task_id: &str) -> ApiResult<pb::Task> {
    let task = repo
        .update::<pb::Task>(&keys::task(task_id), |t| {
            if !is_final(t) {
                t.cancel_requested = true;
                t.updated_unix_seconds = now();
            }
            Ok(())
        })
        .await
        .map_err(|e| if e.code() == tonic::Code::NotFound { ApiError::not_found(format!("task {task_id} does not exist")) } else { e })?;
    Ok(task)
}
