//! One writer at a time for pools whose metadata every node shares without
//! a lock manager of its own (LVM on a shared LUN: two nodes changing the
//! volume group at once would corrupt it). A task holds the pool's lock in
//! the store while its node changes the pool; others wait. A lock whose task
//! has ended (the control plane crashed while it held it) is taken over; the
//! task itself, resumed after a crash, finds the lock still its own.

use std::future::Future;
use std::time::Duration;

use limiquantix_api::v1 as pb;

use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::repo::{Repo, Txn};
use crate::sagas::SagaCtx;
use crate::tasks;

const WAIT_STEP: Duration = Duration::from_millis(100);

/// Whether changes to the pool need its lock.
pub async fn needed(repo: &Repo, pool_id: &str) -> ApiResult<bool> {
    let pool = repo.get::<pb::Pool>(&keys::pool(pool_id)).await?;
    Ok(pool.is_some_and(|p| p.value.capabilities.is_some_and(|c| c.one_metadata_writer)))
}

/// Runs `work` (the node call of saga step `step`) holding the pool's lock,
/// at once if the pool needs none. While another task holds it, the task
/// says whom it waits for; a cancel ends the wait.
pub async fn with_lock<T>(ctx: &SagaCtx, step: &str, pool_id: &str, work: impl Future<Output = ApiResult<T>>) -> ApiResult<T> {
    let repo = &ctx.app.repo;
    if !needed(repo, pool_id).await? {
        return work.await;
    }
    let mut shown = None;
    while let Some(holder) = try_take(repo, pool_id, &ctx.task_id).await? {
        if shown.as_ref() != Some(&holder) {
            let shown_step = format!("{step}: {}", waiting_message(pool_id, &holder));
            let _ = repo.update::<pb::Task>(&keys::task(&ctx.task_id), |t| {
                tasks::show_step(t, &shown_step, None);
                Ok(())
            }).await;
            shown = Some(holder);
        }
        tokio::select! {
            _ = tokio::time::sleep(WAIT_STEP) => {}
            _ = ctx.cancelled() => return Err(ApiError::cancelled("cancelled on request")),
        }
    }
    if shown.is_some() {
        let _ = tasks::set_step(repo, &ctx.task_id, step, None).await;
    }
    let result = work.await;
    release(repo, pool_id, &ctx.task_id).await?;
    result
}

/// Takes the lock for `task_id`; Some(holder) while another running task has it.
pub async fn try_take(repo: &Repo, pool_id: &str, task_id: &str) -> ApiResult<Option<String>> {
    let key = keys::pool_lock(pool_id);
    repo.retry(|| async {
        let mut txn = Txn::new();
        match repo.get_raw(&key).await? {
            Some((holder, revision)) => {
                let holder = String::from_utf8_lossy(&holder).into_owned();
                if holder == task_id {
                    return Ok(None);
                }
                if still_running(repo, &holder).await? {
                    return Ok(Some(holder));
                }
                tracing::info!(pool = pool_id, stale = holder, task = task_id, "taking over the lock of an ended task");
                txn.expect(&key, revision);
            }
            None => {
                txn.expect_absent(&key);
            }
        }
        txn.put_raw(&key, task_id.as_bytes().to_vec());
        txn.commit(repo).await.map(|_| None)
    })
    .await
}

/// Gives the lock back if `task_id` holds it.
pub async fn release(repo: &Repo, pool_id: &str, task_id: &str) -> ApiResult<()> {
    let key = keys::pool_lock(pool_id);
    repo.retry(|| async {
        let Some((holder, revision)) = repo.get_raw(&key).await? else { return Ok(()) };
        if holder != task_id.as_bytes() {
            return Ok(());
        }
        let mut txn = Txn::new();
        txn.expect(&key, revision).delete(&key);
        txn.commit(repo).await.map(drop)
    })
    .await
}

async fn still_running(repo: &Repo, task_id: &str) -> ApiResult<bool> {
    let task = repo.get::<pb::Task>(&keys::task(task_id)).await?;
    Ok(task.is_some_and(|t| t.value.state == pb::TaskState::Running as i32))
}

fn waiting_message(pool_id: &str, holder: &str) -> String {
    format!("waiting for task {holder}, which is changing pool {pool_id}'s shared metadata (one node at a time)")
}
