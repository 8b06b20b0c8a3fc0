//! Who runs the sagas. With the embedded store there is one control plane,
//! always leading. With etcd, the replicas campaign in an etcd election on a
//! short lease; the winner leads until its lease lapses (it died or lost
//! etcd), then another one takes over and resumes the sagas from the store.

use std::time::Duration;

use tokio::sync::watch;

use crate::store::{EtcdOptions, EtcdStore};

/// Seconds a dead leader keeps its leadership.
const LEASE_TTL: i64 = 3;

/// A leadership that never changes (single control plane).
pub fn always() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(true)
}

/// Campaigns forever; the receiver says whether this replica leads now.
pub fn campaign(options: EtcdOptions, replica_id: String) -> (tokio::task::JoinHandle<()>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let name = format!("{}leader", options.root);
        loop {
            if let Err(e) = lead_once(&options, &name, &replica_id, &tx).await {
                tracing::warn!(error = %e, "leadership lost or not reachable; campaigning again");
            }
            let _ = tx.send(false);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    (handle, rx)
}

async fn lead_once(options: &EtcdOptions, name: &str, replica_id: &str, tx: &watch::Sender<bool>) -> anyhow::Result<()> {
    let mut client = EtcdStore::connect_client(options).await?;
    let lease = client.lease_grant(LEASE_TTL, None).await?.id();
    let (mut keeper, mut responses) = client.lease_keep_alive(lease).await?;
    // Keep the lease alive while campaigning too (a campaign can wait long).
    let keepalive = async {
        loop {
            keeper.keep_alive().await?;
            match tokio::time::timeout(Duration::from_secs(LEASE_TTL as u64), responses.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                Ok(Ok(_)) => anyhow::bail!("the leadership lease expired"),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => anyhow::bail!("etcd did not renew the leadership lease in time"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let mut election = client.election_client();
    let lead = async {
        election.campaign(name, replica_id, lease).await?;
        tracing::info!(%replica_id, "leading: this replica runs the sagas");
        let _ = tx.send(true);
        std::future::pending::<()>().await;
        Ok::<(), anyhow::Error>(())
    };
    let result = tokio::select! {
        r = keepalive => r,
        r = lead => r,
    };
    let _ = client.lease_revoke(lease).await;
    result
}
