//! The libnfs clients of one pool: mounted on demand, reused, and run on the
//! blocking pool with a bounded timeout per call, so a dead server holds a
//! few blocking threads for that long and never the async runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::client::{NfsClient, NfsExport};
use crate::error::{Result, StorageError};

/// Idle clients kept for reuse; more run at once when calls overlap.
const IDLE_CLIENTS: usize = 4;

#[derive(Debug)]
pub struct Clients {
    export: NfsExport,
    timeout: Duration,
    idle: Mutex<Vec<NfsClient>>,
}

impl Clients {
    pub fn new(export: NfsExport, timeout: Duration) -> Arc<Self> {
        Arc::new(Self { export, timeout, idle: Mutex::new(Vec::new()) })
    }

    pub fn export(&self) -> &NfsExport {
        &self.export
    }

    /// Runs `work` with a mounted client off the async runtime.
    pub async fn run<T: Send + 'static>(self: &Arc<Self>, work: impl FnOnce(&mut NfsClient) -> Result<T> + Send + 'static) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.run_blocking(work))
            .await
            .map_err(|e| StorageError::Internal(format!("NFS task failed: {e}")))?
    }

    /// The same, on the calling thread (for work already off the runtime).
    pub fn run_blocking<T>(&self, work: impl FnOnce(&mut NfsClient) -> Result<T>) -> Result<T> {
        let reused = self.idle.lock().expect("NFS client list").pop();
        let mut client = match reused {
            Some(c) => c,
            None => NfsClient::mount(&self.export, self.timeout)?,
        };
        let result = work(&mut client);
        // A client that timed out may have a reply still on its way: drop it.
        if !matches!(result, Err(StorageError::Unavailable(_) | StorageError::Internal(_))) {
            let mut idle = self.idle.lock().expect("NFS client list");
            if idle.len() < IDLE_CLIENTS {
                idle.push(client);
            }
        }
        result
    }
}
