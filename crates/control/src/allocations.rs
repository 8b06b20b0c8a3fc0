//! How much of each volume is written: thin volumes grow as their guests
//! write, and admins judge a datastore by it. The leader asks one node that
//! has the pool ready for the pool's volumes (a page of 1,000 at a time),
//! at a slower pace than the pool refresh, and records only what changed,
//! never on a volume a task is working on.

use std::collections::HashMap;

use limiquantix_api::v1 as pb;

use crate::app::App;
use crate::error::ApiResult;
use crate::keys;

/// Every volume the node has in the pool.
pub async fn node_volumes(app: &App, pool_id: &str, node_id: &str) -> ApiResult<Vec<pb::VolumeInfo>> {
    let mut client = app.nodes.client(&app.repo, node_id).await?;
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = pb::NodeListVolumesRequest { pool_id: pool_id.to_owned(), page_size: 1000, page_token: page_token.clone() };
        let page = crate::nodes::call(node_id, "list the pool's volumes", app.nodes.deadlines.refresh, client.list_volumes(req)).await?;
        all.extend(page.volumes);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

/// Records each volume's allocation as `node_id` measures it; answers how
/// many records changed.
pub async fn refresh(app: &App, pool_id: &str, node_id: &str) -> ApiResult<usize> {
    let measured: HashMap<String, u64> =
        node_volumes(app, pool_id, node_id).await?.into_iter().map(|v| (v.volume_id, v.allocated_bytes)).collect();
    let mut changed = 0;
    for (key, v) in app.repo.list::<pb::Volume>(&keys::pool_volumes(pool_id), None, 0).await? {
        let Some(&allocated) = measured.get(&v.value.id) else { continue };
        if v.value.allocated_bytes == allocated || !v.value.task_id.is_empty() {
            continue;
        }
        app.repo
            .update::<pb::Volume>(&key, |vol| {
                if vol.task_id.is_empty() {
                    vol.allocated_bytes = allocated;
                }
                Ok(())
            })
            .await?;
        changed += 1;
    }
    Ok(changed)
}
