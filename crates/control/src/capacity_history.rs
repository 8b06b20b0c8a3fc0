//! Capacity over time: at a pool refresh, when the pool's last sample is
//! older than the sampling interval, the leader appends what the pool holds
//! now (total, in use, provisioned) to its history, one record per pool
//! keeping a bounded number of samples (the oldest go first).

use std::time::Duration;

use limiquantix_api::v1 as pb;

use crate::app::App;
use crate::error::ApiResult;
use crate::keys;
use crate::repo::Txn;

/// How long samples are kept.
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// How many samples a pool keeps at this sampling interval.
fn kept(every: Duration) -> usize {
    (KEEP.as_secs() / every.as_secs().max(1)).clamp(2, 10_000) as usize
}

/// Appends `pool`'s current figures if its last sample is older than `every`.
pub async fn sample(app: &App, pool: &pb::Pool, now: i64, every: Duration) -> ApiResult<()> {
    let Some(capacity) = pool.capacity else { return Ok(()) };
    let key = keys::pool_history(&pool.id);
    app.repo
        .retry(|| async {
            // A pool deleted meanwhile gets no history back.
            let Some(p) = app.repo.get::<pb::Pool>(&keys::pool(&pool.id)).await? else { return Ok(()) };
            let current = app.repo.get::<pb::CapacityHistory>(&key).await?;
            let mut history = current.as_ref().map(|h| h.value.clone()).unwrap_or_default();
            if history.samples.last().is_some_and(|s| now - s.unix_seconds < every.as_secs() as i64) {
                return Ok(());
            }
            history.samples.push(pb::CapacitySample {
                unix_seconds: now,
                total_bytes: capacity.total_bytes,
                used_bytes: capacity.total_bytes.saturating_sub(capacity.free_bytes),
                provisioned_bytes: pool.provisioned_bytes,
            });
            let excess = history.samples.len().saturating_sub(kept(every));
            history.samples.drain(..excess);
            let mut txn = Txn::new();
            match &current {
                Some(c) => txn.expect(&key, c.revision),
                None => txn.expect_absent(&key),
            };
            txn.expect(keys::pool(&pool.id), p.revision).put(&key, &history);
            txn.commit(&app.repo).await.map(drop)
        })
        .await
}

/// The pool's samples, oldest first.
pub async fn of(app: &App, pool_id: &str) -> ApiResult<Vec<pb::CapacitySample>> {
    Ok(app.repo.get::<pb::CapacityHistory>(&keys::pool_history(pool_id)).await?.map(|h| h.value.samples).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_week_of_samples_is_kept() {
        assert_eq!(kept(Duration::from_secs(600)), 1008);
        assert_eq!(kept(Duration::from_secs(1)), 10_000, "bounded however often it samples");
        assert_eq!(kept(Duration::from_secs(30 * 24 * 3600)), 2);
    }
}
