//! The leader's housekeeping: nodes that stopped heartbeating are marked
//! offline, pools' capacity and per-node status are refreshed, shared pools
//! follow new nodes.

use std::sync::Arc;
use std::time::Duration;

use limiquantix_api::v1 as pb;

use crate::app::App;
use crate::keys;

pub async fn run(app: Arc<App>, pool_refresh: Duration, allocation_refresh: Duration) {
    // Expired tasks are looked for four times per retention period, at most
    // every 10 minutes.
    let expiry_every = (app.config.task_retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
    let mut last_pool_refresh = tokio::time::Instant::now() - pool_refresh;
    let mut last_allocation_refresh = tokio::time::Instant::now() - allocation_refresh;
    let mut last_expiry = tokio::time::Instant::now() - expiry_every;
    loop {
        if app.runner.is_leader() {
            if let Err(e) = mark_offline_nodes(&app).await {
                tracing::warn!(error = %e, "node monitor");
            }
            if last_expiry.elapsed() >= expiry_every {
                last_expiry = tokio::time::Instant::now();
                match crate::tasks::expire(&app.repo, app.config.task_retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "expired finished tasks"),
                    Err(e) => tracing::warn!(error = %e, "task expiry"),
                }
            }
            if last_pool_refresh.elapsed() >= pool_refresh {
                last_pool_refresh = tokio::time::Instant::now();
                let allocations = last_allocation_refresh.elapsed() >= allocation_refresh;
                if allocations {
                    last_allocation_refresh = tokio::time::Instant::now();
                }
                if let Err(e) = crate::pools::refresh_all(&app, allocations).await {
                    tracing::warn!(error = %e, "pool refresh");
                }
            }
        }
        tokio::time::sleep(app.nodes.heartbeat_interval.min(Duration::from_secs(2))).await;
    }
}

async fn mark_offline_nodes(app: &App) -> crate::error::ApiResult<()> {
    for (_, n) in app.repo.list::<pb::Node>(keys::NODES, None, 0).await? {
        let node = n.value;
        if app.nodes.is_starting(&node.id) {
            continue; // not judged before it had its chance to come back
        }
        let online = app.nodes.is_online(&node);
        if !online && node.state == pb::NodeState::Online as i32 {
            tracing::warn!(node = %node.id, hostname = %node.hostname, "node missed its heartbeats: offline");
            let id = node.id.clone();
            app.repo
                .update::<pb::Node>(&keys::node(&id), |n| {
                    n.state = pb::NodeState::Offline as i32;
                    Ok(())
                })
                .await?;
        }
    }
    Ok(())
}
