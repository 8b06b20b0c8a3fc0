//! TaskService: follow and cancel what sagas do.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::task_service_server::TaskService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::records::parse_volume_id;

type Rpc<T> = Result<Response<T>, Status>;
type TaskStream = Pin<Box<dyn Stream<Item = Result<pb::Task, Status>> + Send>>;

/// Before a broken watch (an etcd hiccup) is made again.
const WATCH_RETRY: Duration = Duration::from_millis(500);

pub struct TaskApi {
    app: Arc<App>,
}

impl TaskApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

fn task_id(s: &str) -> ApiResult<String> {
    // Task ids are UUIDs like volume ids.
    parse_volume_id(s).map_err(|_| ApiError::invalid(format!("task id {s:?} is not a UUID")))
}

async fn load(app: &App, id: &str) -> ApiResult<pb::Task> {
    app.repo
        .get::<pb::Task>(&keys::task(id))
        .await?
        .map(|t| t.value)
        .ok_or_else(|| ApiError::not_found(format!("task {id} does not exist")))
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn get_task(&self, req: Request<pb::GetTaskRequest>) -> Rpc<pb::Task> {
        let id = task_id(&req.into_inner().task_id)?;
        Ok(Response::new(load(&self.app, &id).await?))
    }

    /// Newest first, a page at a time through the time index.
    async fn list_tasks(&self, req: Request<pb::ListTasksRequest>) -> Rpc<pb::ListTasksResponse> {
        let r = req.into_inner();
        let limit = match r.page_size {
            0 => 100,
            n if n > 1000 => return Err(ApiError::invalid(format!("page size {n} is above 1000")).into()),
            n => n as usize,
        };
        let repo = &self.app.repo;
        let mut after = match r.page_token.as_str() {
            "" => None,
            token if keys::task_time_created(&format!("{}{token}", keys::TASK_TIMES)).is_some() => {
                Some(format!("{}{token}", keys::TASK_TIMES))
            }
            _ => return Err(ApiError::invalid("page_token is not one this service returned").into()),
        };
        let mut tasks = Vec::new();
        let mut next = String::new();
        'scan: loop {
            let batch = repo.store().list(keys::TASK_TIMES, after.as_deref(), limit * 2).await.map_err(ApiError::from)?;
            let exhausted = batch.len() < limit * 2;
            for entry in batch {
                after = Some(entry.key.clone());
                let id = String::from_utf8_lossy(&entry.value).into_owned();
                // A task expired between the index read and this one is skipped.
                let Some(t) = repo.get::<pb::Task>(&keys::task(&id)).await? else { continue };
                let t = t.value;
                if (r.resource_id.is_empty() || t.resource_id == r.resource_id)
                    && (!r.running_only || t.state == pb::TaskState::Running as i32)
                {
                    tasks.push(t);
                    if tasks.len() == limit {
                        next = entry.key.trim_start_matches(keys::TASK_TIMES).to_owned();
                        break 'scan;
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        if !next.is_empty() && repo.store().list(keys::TASK_TIMES, after.as_deref(), 1).await.map_err(ApiError::from)?.is_empty() {
            next.clear();
        }
        Ok(Response::new(pb::ListTasksResponse { tasks, next_page_token: next }))
    }

    type WatchTaskStream = TaskStream;

    /// Sends the task, then every change of it as the store reports it (no
    /// polling), until it ends.
    async fn watch_task(&self, req: Request<pb::WatchTaskRequest>) -> Rpc<TaskStream> {
        let id = task_id(&req.into_inner().task_id)?;
        // Watch first, then read: no change can fall in between.
        let mut watch = self.app.repo.store().watch(&keys::task(&id)).await.map_err(ApiError::from)?;
        let first = load(&self.app, &id).await?;
        let app = self.app.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(with_result(&app, last.clone()).await)).await.is_err() {
                return;
            }
            while last.state == pb::TaskState::Running as i32 {
                let changed = tokio::select! {
                    changed = watch.changed() => changed,
                    _ = tx.closed() => return,
                };
                if let Err(e) = changed {
                    tracing::info!(task = %id, error = %e, "task watch broken; watching again");
                    tokio::time::sleep(WATCH_RETRY).await;
                    match app.repo.store().watch(&keys::task(&id)).await {
                        Ok(w) => watch = w,
                        Err(_) => continue,
                    }
                }
                let now = match load(&app, &id).await {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = tx.send(Err(e.status())).await;
                        return;
                    }
                };
                if now != last {
                    if tx.send(Ok(with_result(&app, now.clone()).await)).await.is_err() {
                        return;
                    }
                    last = now;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    /// Cancels a running task: its saga unwinds at once (a running copy is
    /// stopped) or at its next step. A task past its point of no return is
    /// refused, saying why; a finished task is returned as it is.
    async fn cancel_task(&self, req: Request<pb::CancelTaskRequest>) -> Rpc<pb::Task> {
        let id = task_id(&req.into_inner().task_id)?;
        if let Some((bytes, _)) = self.app.repo.get_raw(&keys::saga(&id)).await? {
            crate::sagas::cancellable(&crate::sagas::SagaRecord::decode(&bytes)?)?;
        }
        Ok(Response::new(crate::tasks::request_cancel(&self.app.repo, &id).await?))
    }
}

/// A succeeded volume task carries the volume as it is now, so a caller
/// that waited for it needs no GetVolume.
async fn with_result(app: &App, mut task: pb::Task) -> pb::Task {
    use crate::sagas::Saga;
    let deleted = <crate::sagas::delete_volume::DeleteVolume as Saga>::KIND;
    let made_a_volume = task.kind.starts_with("volume.") && task.kind != deleted;
    if task.state == pb::TaskState::Succeeded as i32 && made_a_volume {
        task.volume = crate::records::volume(&app.repo, &task.resource_id).await.ok().map(|v| v.value);
    }
    task
}
