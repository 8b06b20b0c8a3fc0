//! Sagas: every operation of more than one step is a declared list of steps,
//! each with its undo. The saga's progress is persisted in the store before
//! each step runs and after it finished, so after a crash the leader resumes
//! an unfinished saga where it was — re-running a step that may have half
//! happened (steps are idempotent) — or finishes unwinding it.
//!
//! One file per operation declares its steps in order (see create_volume.rs).

mod common;
mod engine;
pub mod fault;
pub(crate) mod runner;

pub mod attach_volume;
pub mod create_pool;
pub mod create_volume;
pub mod delete_pool;
pub mod delete_volume;
pub mod detach_volume;
pub mod move_volume;
pub mod resize_volume;
pub mod snapshot;
pub mod vm_snapshot;
pub mod write_image;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::error::{ApiError, ApiResult};

pub use engine::SagaCtx;
pub use runner::SagaRunner;

pub type StepFuture<'a> = Pin<Box<dyn Future<Output = ApiResult<()>> + Send + 'a>>;
pub type StepFn<S> = for<'a> fn(&'a SagaCtx, &'a mut S) -> StepFuture<'a>;

pub struct Step<S> {
    pub name: &'static str,
    pub action: StepFn<S>,
    /// Undoes the action, also one that failed half-way or never ran.
    pub undo: Option<StepFn<S>>,
}

impl<S> Step<S> {
    /// Step 0: what the API call already did in the transaction that stored
    /// the saga (the reservation); only its undo runs here.
    pub fn done_by_api(name: &'static str, undo: StepFn<S>) -> Self {
        Self { name, action: |_, _| Box::pin(async { Ok(()) }), undo: Some(undo) }
    }
}

/// A kind of saga: its persisted state (inputs and what steps produced) and
/// its steps.
pub trait Saga: Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: &'static str;
    fn steps() -> Vec<Step<Self>>;
    /// Steps from this index on are never undone (e.g. after data was
    /// deleted): transient failures there are retried until they succeed.
    fn point_of_no_return() -> usize {
        usize::MAX
    }

    /// Whether a cancel that arrives while step `step` waits to be retried
    /// (it began, then failed for a while) runs that step's undo too, not
    /// only the undos of the steps before it. For steps whose half-done work
    /// outlives them (a live mirror, an export); others are left alone, so a
    /// cancel of a step that cannot reach its node ends at once.
    fn undo_begun_step(_step: &str) -> bool {
        false
    }

    /// A step after the point of no return was refused for good: leave what
    /// the saga works on in a state the user can see and act on (the task
    /// fails with the refusal).
    fn abandon<'a>(_ctx: &'a SagaCtx, _state: &'a mut Self, _error: &'a ApiError) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// The saga as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SagaRecord {
    pub id: String,
    pub kind: String,
    pub task_id: String,
    pub state: serde_json::Value,
    /// The first step that has not completed.
    pub next_step: usize,
    /// Set (persisted) just before a step runs, cleared when it completed.
    pub running: Option<String>,
    pub phase: SagaPhase,
    /// Since when the current step has been failing transiently (unix secs).
    pub failing_since: Option<i64>,
    /// The task was ended while the saga still undoes (an unreachable node).
    #[serde(default)]
    pub task_ended: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum SagaPhase {
    Forward,
    /// Undoing: `remaining` steps (0..remaining) still to undo, in reverse.
    Unwinding { remaining: usize, error: ApiError },
}

impl SagaRecord {
    /// A new saga whose step 0 (`Step::done_by_api`) the caller's own
    /// transaction completes: the reservation the API makes before answering.
    pub fn new<S: Saga>(id: &str, task_id: &str, state: &S) -> ApiResult<Self> {
        Ok(Self {
            id: id.to_owned(),
            kind: S::KIND.to_owned(),
            task_id: task_id.to_owned(),
            state: serde_json::to_value(state).map_err(|e| ApiError::internal(format!("saga state: {e}")))?,
            next_step: 1,
            // Step 1 counts as started with the API's own write (one write fewer).
            running: Self::first_step::<S>().map(str::to_owned),
            phase: SagaPhase::Forward,
            failing_since: None,
            task_ended: false,
        })
    }

    /// The step that runs first, after the API's step 0.
    pub fn first_step<S: Saga>() -> Option<&'static str> {
        S::steps().get(1).map(|s| s.name)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("saga records serialize")
    }

    pub fn decode(bytes: &[u8]) -> ApiResult<Self> {
        serde_json::from_slice(bytes).map_err(|e| ApiError::internal(format!("saga record cannot be decoded: {e}")))
    }
}

/// Calls `$run::<SagaType>($args)` for the saga type of kind `$kind`.
macro_rules! for_kind {
    ($kind:expr, $run:ident ($($arg:expr),*)) => {
        match $kind {
            create_volume::CreateVolume::KIND => $run::<create_volume::CreateVolume>($($arg),*),
            delete_volume::DeleteVolume::KIND => $run::<delete_volume::DeleteVolume>($($arg),*),
            resize_volume::ResizeVolume::KIND => $run::<resize_volume::ResizeVolume>($($arg),*),
            snapshot::CreateSnapshot::KIND => $run::<snapshot::CreateSnapshot>($($arg),*),
            snapshot::RevertSnapshot::KIND => $run::<snapshot::RevertSnapshot>($($arg),*),
            snapshot::DeleteSnapshot::KIND => $run::<snapshot::DeleteSnapshot>($($arg),*),
            vm_snapshot::VmSnapshot::KIND => $run::<vm_snapshot::VmSnapshot>($($arg),*),
            attach_volume::AttachVolume::KIND => $run::<attach_volume::AttachVolume>($($arg),*),
            detach_volume::DetachVolume::KIND => $run::<detach_volume::DetachVolume>($($arg),*),
            create_pool::CreatePool::KIND => $run::<create_pool::CreatePool>($($arg),*),
            delete_pool::DeletePool::KIND => $run::<delete_pool::DeletePool>($($arg),*),
            write_image::WriteImage::KIND => $run::<write_image::WriteImage>($($arg),*),
            move_volume::MoveVolume::KIND => $run::<move_volume::MoveVolume>($($arg),*),
            other => Err(ApiError::internal(format!("unknown saga kind {other}"))),
        }
    };
}

/// Runs a stored saga of any kind to its end (or until leadership is lost).
pub(crate) async fn execute(app: Arc<App>, id: String) -> ApiResult<()> {
    let Some((bytes, revision)) = app.repo.get_raw(&crate::keys::saga(&id)).await? else { return Ok(()) };
    let record = SagaRecord::decode(&bytes)?;
    let kind = record.kind.clone();
    for_kind!(kind.as_str(), drive_boxed(app, record, revision))?.await
}

fn drive_boxed<S: Saga>(app: Arc<App>, record: SagaRecord, revision: crate::store::Revision) -> Result<StepFuture<'static>, ApiError> {
    Ok(Box::pin(engine::drive::<S>(app, record, revision)))
}

/// Whether cancelling the saga can still undo it; if not, why (the step it
/// is at is past its point of no return, or it is already being undone).
pub(crate) fn cancellable(record: &SagaRecord) -> ApiResult<()> {
    fn check<S: Saga>(record: &SagaRecord) -> ApiResult<()> {
        if let SagaPhase::Unwinding { .. } = record.phase {
            return Err(ApiError::precondition(format!("task {} is already being undone", record.task_id)));
        }
        if record.next_step >= S::point_of_no_return() {
            let steps = S::steps();
            let step = steps.get(record.next_step).map_or("its last step", |s| s.name);
            return Err(ApiError::precondition(format!(
                "task {} ({}) is at {step}, past the point where it can be undone; it finishes on its own",
                record.task_id,
                S::KIND
            )));
        }
        Ok(())
    }
    for_kind!(record.kind.as_str(), check(record))
}


#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, next_step: usize) -> SagaRecord {
        SagaRecord {
            id: "t".into(),
            kind: kind.into(),
            task_id: "t".into(),
            state: serde_json::Value::Null,
            next_step,
            running: None,
            phase: SagaPhase::Forward,
            failing_since: None,
            task_ended: false,
        }
    }

    #[test]
    fn cancel_is_refused_past_the_point_of_no_return_saying_where() {
        assert!(cancellable(&record(delete_volume::DeleteVolume::KIND, 1)).is_ok(), "the node has not deleted it yet");
        let err = cancellable(&record(delete_volume::DeleteVolume::KIND, 2)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message.contains("forget") && err.message.contains("past the point"), "{err}");
        assert!(cancellable(&record(create_volume::CreateVolume::KIND, 2)).is_ok(), "creates undo to the end");
        let mut unwinding = record(create_volume::CreateVolume::KIND, 1);
        unwinding.phase = SagaPhase::Unwinding { remaining: 1, error: ApiError::cancelled("x") };
        assert!(cancellable(&unwinding).unwrap_err().message.contains("already being undone"));
    }
}
