//! Create a pool on its nodes.
//!
//! ```text
//! 0. reserve         — done by the API call (pool record creating, name).
//!                      undo: forget them.
//! 1. init-on-nodes   — every node initialises it; each node's outcome is
//!                      recorded. At least one must succeed.
//!                      undo: the nodes that initialised it forget it.
//! 2. finish          — state ready; capabilities and capacity from a node.
//! ```

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::common::{destroy_pool_on_nodes, forget_pool_records};
use super::{Saga, SagaCtx, Step, StepFuture};
use crate::error::ApiError;
use crate::keys;
use crate::pools::{node_pool_config, pool_node_error, pool_node_status};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatePool {
    pub pool_id: String,
    pub name: String,
    pub nodes: Vec<String>,
    /// Nodes where the pool is initialised (what undo must reverse).
    pub initialised: Vec<String>,
    /// A ready node's report.
    pub info: Option<Vec<u8>>,
}

impl Saga for CreatePool {
    const KIND: &'static str = "pool.create";

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("reserve", forget),
            Step { name: "init-on-nodes", action: init_on_nodes, undo: Some(destroy_on_nodes) },
            Step { name: "finish", action: finish, undo: None },
        ]
    }
}

fn forget<'a>(ctx: &'a SagaCtx, s: &'a mut CreatePool) -> StepFuture<'a> {
    Box::pin(forget_pool_records(ctx, &s.pool_id, &s.name))
}

fn init_on_nodes<'a>(ctx: &'a SagaCtx, s: &'a mut CreatePool) -> StepFuture<'a> {
    Box::pin(async move {
        use prost::Message;
        let repo = &ctx.app.repo;
        let config = node_pool_config(&ctx.app, &s.pool_id).await?;
        let mut statuses = Vec::new();
        let mut first_error: Option<ApiError> = None;
        let mut transient = false;
        for node in &s.nodes {
            let outcome = async {
                let mut client = ctx.app.nodes.client(repo, node).await?;
                let req = pb::InitStoragePoolRequest { pool_id: s.pool_id.clone(), config: Some(config.clone()) };
                crate::nodes::call(node, "initialise the pool", ctx.app.nodes.deadlines.call, client.init_storage_pool(req)).await
            }
            .await;
            match outcome {
                Ok(info) => {
                    if !s.initialised.contains(node) {
                        s.initialised.push(node.clone());
                    }
                    statuses.push(pool_node_status(node, &info));
                    s.info.get_or_insert_with(|| info.encode_to_vec());
                }
                Err(e) => {
                    transient |= e.is_transient();
                    statuses.push(pool_node_error(node, e.message.clone()));
                    first_error.get_or_insert(e.context(format!("node {node}")));
                }
            }
        }
        repo.update::<pb::Pool>(&keys::pool(&s.pool_id), |p| {
            p.nodes = statuses.clone();
            Ok(())
        })
        .await?;
        match first_error {
            Some(e) if s.initialised.is_empty() => Err(if transient { ApiError::unavailable(e.message) } else { e }),
            _ => Ok(()),
        }
    })
}

fn destroy_on_nodes<'a>(ctx: &'a SagaCtx, s: &'a mut CreatePool) -> StepFuture<'a> {
    Box::pin(destroy_pool_on_nodes(ctx, &s.pool_id, &mut s.initialised))
}

fn finish<'a>(ctx: &'a SagaCtx, s: &'a mut CreatePool) -> StepFuture<'a> {
    Box::pin(async move {
        use prost::Message;
        let info = s
            .info
            .as_deref()
            .map(pb::PoolInfo::decode)
            .transpose()
            .map_err(|e| ApiError::internal(format!("saga state: {e}")))?
            .unwrap_or_default();
        ctx.app
            .repo
            .update::<pb::Pool>(&keys::pool(&s.pool_id), |p| {
                p.state = pb::PoolState::Ready as i32;
                p.capabilities = info.capabilities.clone();
                p.capacity = info.capacity;
                Ok(())
            })
            .await
            .map(drop)
    })
}
