//! Drives one saga: steps forward, each persisted before and after it runs;
//! on failure the finished steps are undone in reverse; transient failures
//! (an unreachable node, a volume still busy with an earlier attempt) are
//! retried for a while first. Past its point of no return a saga retries
//! transient failures until they pass, and a permanent refusal ends it at
//! once (never a retry loop on something that will not change by itself).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use limiquantix_api::v1 as pb;
use tokio::sync::watch;

use super::{Saga, SagaPhase, SagaRecord, fault};
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::repo::Txn;
use crate::store::Revision;
use crate::tasks::{self, now};

/// Undo attempts on a non-transient error before the saga is declared stuck.
const MAX_UNDO_ATTEMPTS: u32 = 5;
/// Progress is written to the task at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What a step gets: the application, its task, and cancellation.
pub struct SagaCtx {
    pub app: Arc<App>,
    pub task_id: String,
    cancel: watch::Receiver<bool>,
    last_progress: Mutex<Option<Instant>>,
    saga_id: String,
    /// The saga record's revision when the running step started.
    saga_revision: Mutex<Revision>,
    /// Set once the last step committed the saga's end with its own writes.
    ended: std::sync::atomic::AtomicBool,
}

impl SagaCtx {
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Completes when the task's cancellation is requested.
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// For a saga's last step: commits `txn` together with the saga's end
    /// (the task succeeds, the record goes), one write instead of two. A
    /// conflict on the step's own keys comes back as a conflict, for the
    /// step's retry to read again; on the saga's record, as UNAVAILABLE (it
    /// was taken over, like any save).
    pub async fn commit_ending(&self, mut txn: Txn) -> ApiResult<()> {
        let (key, task_key) = (keys::saga(&self.saga_id), keys::task(&self.task_id));
        let revision = *self.saga_revision.lock().expect("revision lock");
        txn.expect(&key, revision).delete(&key);
        if let Some(t) = self.app.repo.get::<pb::Task>(&task_key).await? {
            let mut task = t.value;
            tasks::end(&mut task, &Ok(()));
            txn.expect(&task_key, t.revision).put(&task_key, &task);
        }
        match txn.commit(&self.app.repo).await {
            Ok(_) => {
                self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            Err(e) if e.is_conflict() => match self.app.repo.get_raw(&key).await? {
                Some((_, rev)) if rev == revision => Err(e),
                _ => Err(ApiError::unavailable(format!("saga {} was taken over by another replica", self.saga_id))),
            },
            Err(e) => Err(e),
        }
    }

    /// Records progress on the task (throttled; the last report always lands
    /// because steps finish with their own task update).
    pub async fn progress(&self, p: pb::Progress) {
        {
            let mut last = self.last_progress.lock().expect("progress lock");
            if last.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) && p.done_bytes < p.total_bytes {
                return;
            }
            *last = Some(Instant::now());
        }
        let _ = tasks::set_progress(&self.app.repo, &self.task_id, p).await;
    }
}

/// Follows the task for a cancel request (it may arrive at any replica): a
/// store watch, read again on every change of the task.
fn watch_cancel(app: &Arc<App>, task_id: &str) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let (app, task_id) = (app.clone(), task_id.to_owned());
    let handle = tokio::spawn(async move {
        let key = keys::task(&task_id);
        let mut watch = None;
        loop {
            // Watch, then read: a request made in between is seen by the read.
            if watch.is_none() {
                watch = app.repo.store().watch(&key).await.ok();
            }
            if let Ok(Some(t)) = app.repo.get::<pb::Task>(&key).await
                && t.value.cancel_requested
            {
                let _ = tx.send(true);
                return;
            }
            let healthy = match watch.as_mut() {
                Some(w) => w.changed().await.is_ok(),
                None => false,
            };
            if !healthy {
                watch = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    (rx, handle)
}

struct Stored {
    record: SagaRecord,
    revision: Revision,
}

impl Stored {
    /// Writes the record if nobody else did since we read it; a conflict
    /// means another replica took the saga over, and this one must stop.
    async fn save(&mut self, app: &App) -> ApiResult<()> {
        self.commit(app, false, None).await
    }

    /// Saves the record and shows `step` on the task, in one transaction.
    async fn save_showing(&mut self, app: &App, step: &str) -> ApiResult<()> {
        self.commit(app, false, Some(&|t: &mut pb::Task| tasks::show_step(t, step, None))).await
    }

    /// Ends the task with `outcome` and forgets the saga, in one transaction.
    async fn finish(mut self, app: &App, outcome: Result<(), ApiError>) -> ApiResult<()> {
        self.commit(app, true, Some(&|t: &mut pb::Task| tasks::end(t, &outcome))).await?;
        app.metrics.saga_finished(&self.record.kind, outcome.is_ok());
        Ok(())
    }

    /// The record (or its removal) and a change of the task, together. A
    /// conflict on the record stops this replica (see `save`); one on the task
    /// only (a cancel request, a progress report) is retried.
    async fn commit(&mut self, app: &App, remove: bool, task_change: Option<&(dyn Fn(&mut pb::Task) + Sync)>) -> ApiResult<()> {
        let key = keys::saga(&self.record.id);
        let task_key = keys::task(&self.record.task_id);
        app.repo
            .retry(|| async {
                let mut txn = Txn::new();
                txn.expect(&key, self.revision);
                if remove {
                    txn.delete(&key);
                } else {
                    txn.put_raw(&key, self.record.encode());
                }
                if let Some(change) = task_change
                    && let Some(t) = app.repo.get::<pb::Task>(&task_key).await?
                {
                    let mut task = t.value;
                    change(&mut task);
                    txn.expect(&task_key, t.revision).put(&task_key, &task);
                }
                match txn.commit(&app.repo).await {
                    Err(e) if e.is_conflict() => match app.repo.get_raw(&key).await? {
                        Some((_, rev)) if rev == self.revision => Err(e), // the task moved: again
                        _ => Err(ApiError::unavailable(format!("saga {} was taken over by another replica", self.record.id))),
                    },
                    other => other,
                }
            })
            .await
            .map(|revision| self.revision = revision)
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((200u64 << attempt.min(5)).min(5_000))
}

pub(crate) async fn drive<S: Saga>(app: Arc<App>, record: SagaRecord, revision: Revision) -> ApiResult<()> {
    let steps = S::steps();
    let no_return = S::point_of_no_return();
    let mut state: S = serde_json::from_value(record.state.clone())
        .map_err(|e| ApiError::internal(format!("saga {} state: {e}", record.id)))?;
    let (cancel, cancel_watch) = watch_cancel(&app, &record.task_id);
    let ctx = SagaCtx {
        app: app.clone(),
        task_id: record.task_id.clone(),
        cancel,
        last_progress: Mutex::new(None),
        saga_id: record.id.clone(),
        saga_revision: Mutex::new(revision),
        ended: std::sync::atomic::AtomicBool::new(false),
    };
    let mut stored = Stored { record, revision };
    let result = async {
        let mut attempt = 0u32;
        loop {
            match stored.record.phase.clone() {
                SagaPhase::Forward => {
                    let i = stored.record.next_step;
                    if i >= steps.len() {
                        return stored.finish(&app, Ok(())).await;
                    }
                    if ctx.is_cancelled() && i < no_return {
                        let error = ApiError::cancelled("cancelled on request");
                        // A step already begun (e.g. one waiting to be retried after
                        // its node died) may have left something the saga says its
                        // undo must clear: then that undo runs too.
                        let begun = stored.record.running.as_deref() == Some(steps[i].name) && S::undo_begun_step(steps[i].name);
                        stored.record.phase = SagaPhase::Unwinding { remaining: if begun { i + 1 } else { i }, error };
                        stored.save(&app).await?;
                        continue;
                    }
                    let step = &steps[i];
                    if stored.record.running.as_deref() != Some(step.name) {
                        stored.record.running = Some(step.name.to_owned());
                        stored.save_showing(&app, step.name).await?;
                    }
                    fault::point(S::KIND, step.name, "before");
                    *ctx.saga_revision.lock().expect("revision lock") = stored.revision;
                    let result = (step.action)(&ctx, &mut state).await;
                    stored.record.state = serde_json::to_value(&state).map_err(|e| ApiError::internal(e.to_string()))?;
                    match result {
                        Ok(()) if ctx.ended.load(std::sync::atomic::Ordering::SeqCst) => {
                            app.metrics.saga_finished(&stored.record.kind, true);
                            fault::point(S::KIND, step.name, "after");
                            return Ok(());
                        }
                        Ok(()) => {
                            stored.record.next_step = i + 1;
                            stored.record.failing_since = None;
                            // One write per step: this one's end is the next one's
                            // start (a crash re-runs it; steps are idempotent), and
                            // the last one's end is the saga's.
                            match steps.get(i + 1) {
                                None => {
                                    stored.finish(&app, Ok(())).await?;
                                    fault::point(S::KIND, step.name, "after");
                                    return Ok(());
                                }
                                Some(next) if !(ctx.is_cancelled() && i + 1 < no_return) => {
                                    stored.record.running = Some(next.name.to_owned());
                                    stored.save_showing(&app, next.name).await?;
                                }
                                Some(_) => {
                                    stored.record.running = None;
                                    stored.save(&app).await?;
                                }
                            }
                            fault::point(S::KIND, step.name, "after");
                            attempt = 0;
                        }
                        Err(e) if e.code() == tonic::Code::Cancelled && i < no_return => {
                            stored.record.phase = SagaPhase::Unwinding { remaining: i + 1, error: e };
                            stored.save(&app).await?;
                        }
                        Err(e) if e.is_transient() => {
                            let since = *stored.record.failing_since.get_or_insert_with(now);
                            let window = app.config.saga_retry.as_secs() as i64;
                            if i < no_return && now() - since >= window {
                                tracing::warn!(saga = %stored.record.id, step = step.name, error = %e, "giving up, unwinding");
                                stored.record.phase = SagaPhase::Unwinding { remaining: i + 1, error: e };
                                stored.save(&app).await?;
                                continue;
                            }
                            tracing::info!(saga = %stored.record.id, step = step.name, error = %e, "step failed; retrying");
                            stored.save(&app).await?;
                            let _ = tasks::set_step(&app.repo, &stored.record.task_id, step.name, Some(&e.message)).await;
                            attempt += 1;
                            tokio::time::sleep(backoff(attempt)).await;
                        }
                        Err(e) if i >= no_return => {
                            tracing::warn!(saga = %stored.record.id, step = step.name, error = %e, "refused past the point of no return; abandoning");
                            if let Err(a) = S::abandon(&ctx, &mut state, &e).await {
                                tracing::warn!(saga = %stored.record.id, error = %a, "cannot record the abandoned saga's state");
                            }
                            let failed = ApiError::new(
                                e.code(),
                                format!("{} (at step {}, after the point where it could be undone)", e.message, step.name),
                            );
                            return stored.finish(&app, Err(failed)).await;
                        }
                        Err(e) => {
                            tracing::info!(saga = %stored.record.id, step = step.name, error = %e, "step failed; unwinding");
                            stored.record.phase = SagaPhase::Unwinding { remaining: i + 1, error: e };
                            stored.save(&app).await?;
                        }
                    }
                }
                SagaPhase::Unwinding { remaining, error } => {
                    if remaining == 0 {
                        return stored.finish(&app, Err(error)).await;
                    }
                    let step = &steps[remaining - 1];
                    if let Some(undo) = step.undo {
                        let _ = tasks::set_step(&app.repo, &stored.record.task_id, &format!("undo {}", step.name), None).await;
                        fault::point(S::KIND, step.name, "undo");
                        let mut failures = 0;
                        while let Err(e) = undo(&ctx, &mut state).await {
                            failures += 1;
                            tracing::warn!(saga = %stored.record.id, step = step.name, error = %e, "undo failed; retrying");
                            if !e.is_transient() && failures >= MAX_UNDO_ATTEMPTS {
                                let stuck = ApiError::internal(format!(
                                    "{} (and undoing step {} failed: {}; the resources need a look)",
                                    error.message, step.name, e.message
                                ));
                                return stored.finish(&app, Err(stuck)).await;
                            }
                            // An undo that needs an unreachable node waits for it, but
                            // the task does not: past the retry window it ends, failed,
                            // and the undo goes on in the background.
                            let since = *stored.record.failing_since.get_or_insert_with(now);
                            if e.is_transient() && now() - since >= app.config.saga_retry.as_secs() as i64 && !stored.record.task_ended {
                                let reported = ApiError::new(
                                    error.code(),
                                    format!("{}; undoing what was done continues when it can ({})", error.message, e.message),
                                );
                                stored.record.task_ended = true;
                                stored.commit(&app, false, Some(&|t: &mut pb::Task| tasks::end(t, &Err(reported.clone())))).await?;
                            }
                            tokio::time::sleep(backoff(failures)).await;
                        }
                        stored.record.failing_since = None;
                    }
                    stored.record.state = serde_json::to_value(&state).map_err(|e| ApiError::internal(e.to_string()))?;
                    stored.record.phase = SagaPhase::Unwinding { remaining: remaining - 1, error };
                    stored.save(&app).await?;
                }
            }
        }
    }
    .await;
    cancel_watch.abort();
    result
}
