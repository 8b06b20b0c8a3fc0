//! Delete a pool (it must hold no volumes).
//!
//! 0. mark-deleting      — done by the API call. undo: ready again.
//! 1. destroy-on-nodes   — every node forgets the pool (data is kept).
//! 2. forget             — the records go.

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::{Saga, SagaCtx, Step, StepFuture};
use crate::keys;
use crate::nodes::node_error;
use crate::repo::Txn;

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
            Step { name: "mark-deleting", action: |_, _| Box::pin(async { Ok(()) }), undo: Some(restore) },
            Step { name: "destroy-on-nodes", action: destroy_on_nodes, undo: None },
            Step { name: "forget", action: forget, undo: None },
        ]
    }

    fn point_of_no_return() -> usize {
        1
    }
}

fn restore<'a>(ctx: &'a SagaCtx, s: &'a mut DeletePool) -> StepFuture<'a> {
    Box::pin(async move {
        ctx.app
            .repo
            .update::<pb::Pool, ()>(&keys::pool(&s.pool_id), |p| {
                p.state = s.previous_state;
                Ok(())
            })
            .await
            .map(drop)
    })
}

fn destroy_on_nodes<'a>(ctx: &'a SagaCtx, s: &'a mut DeletePool) -> StepFuture<'a> {
    Box::pin(async move {
        while let Some(node) = s.nodes.last().cloned() {
            let mut client = ctx.app.nodes.client(&ctx.app.repo, &node).await?;
            client
                .destroy_storage_pool(pb::DestroyStoragePoolRequest { pool_id: s.pool_id.clone() })
                .await
                .map_err(|e| node_error(&node, e))?;
            s.nodes.pop();
        }
        Ok(())
    })
}

fn forget<'a>(ctx: &'a SagaCtx, s: &'a mut DeletePool) -> StepFuture<'a> {
    Box::pin(async move {
        let mut txn = Txn::new();
        txn.delete(keys::pool(&s.pool_id)).delete(keys::pool_name(&s.name)).delete(keys::pool_secret(&s.pool_id));
        txn.commit(&ctx.app.repo).await?;
        ctx.app.metrics.forget_pool(&s.pool_id, &s.name);
        Ok(())
    })
}
