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

    async fn list_tasks(&self, req: Request<pb::ListTasksRequest>) -> Rpc<pb::ListTasksResponse> {
        let r = req.into_inner();
        let limit = match r.page_size {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let all = self.app.repo.list::<pb::Task>(keys::TASKS, None, 0).await?;
        let mut tasks: Vec<pb::Task> = all
            .into_iter()
            .map(|(_, t)| t.value)
            .filter(|t| r.resource_id.is_empty() || t.resource_id == r.resource_id)
            .filter(|t| !r.running_only || t.state == pb::TaskState::Running as i32)
            .collect();
        tasks.sort_by_key(|t| std::cmp::Reverse(t.created_unix_seconds));
        tasks.truncate(limit);
        Ok(Response::new(pb::ListTasksResponse { tasks }))
    }

    type WatchTaskStream = TaskStream;

    async fn watch_task(&self, req: Request<pb::WatchTaskRequest>) -> Rpc<TaskStream> {
        let id = task_id(&req.into_inner().task_id)?;
        let first = load(&self.app, &id).await?;
        let app = self.app.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            while last.state == pb::TaskState::Running as i32 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = match load(&app, &id).await {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = tx.send(Err(e.status())).await;
                        return;
                    }
                };
                if now != last {
                    if tx.send(Ok(now.clone())).await.is_err() {
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
