//! Delete a pool (it must hold no volumes).
//!
//! ```text
//! 0. mark-deleting      — done by the API call. undo: ready again.
//! 1. destroy-on-nodes   — every node forgets the pool (data is kept). A
//!                         refusal unwinds; the pool watcher re-initialises
//!                         it on nodes that had already forgotten it.
//! 2. forget             — the records go.
//! ```

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::common::{destroy_pool_on_nodes, forget_pool_records};
use super::{Saga, SagaCtx, Step, StepFuture};
use crate::keys;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletePool {
    pub pool_id: String,
    pub name: String,
    pub nodes: Vec<String>,
    pub previous_state: i32,
}

impl Saga for DeletePool {
    const KIND: &'static str = "pool.delete";

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("mark-deleting", restore),
            Step { name: "destroy-on-nodes", action: destroy_on_nodes, undo: None },
            Step { name: "forget", action: forget, undo: None },
        ]
    }

    /// A node that refuses leaves the pool as it was (nodes that already
    /// forgot it are given it again by the pool watcher); once every node
    /// has forgotten it, the records must follow.
    fn point_of_no_return() -> usize {
        2
    }
}

fn restore<'a>(ctx: &'a SagaCtx, s: &'a mut DeletePool) -> StepFuture<'a> {
    Box::pin(async move {
        ctx.app
            .repo
            .update::<pb::Pool>(&keys::pool(&s.pool_id), |p| {
                p.state = s.previous_state;
                Ok(())
            })
            .await
            .map(drop)
    })
}

fn destroy_on_nodes<'a>(ctx: &'a SagaCtx, s: &'a mut DeletePool) -> StepFuture<'a> {
    Box::pin(destroy_pool_on_nodes(ctx, &s.pool_id, &mut s.nodes))
}

fn forget<'a>(ctx: &'a SagaCtx, s: &'a mut DeletePool) -> StepFuture<'a> {
    Box::pin(async move {
        forget_pool_records(ctx, &s.pool_id, &s.name).await?;
        ctx.app.metrics.forget_pool(&s.pool_id, &s.name);
        Ok(())
    })
}
