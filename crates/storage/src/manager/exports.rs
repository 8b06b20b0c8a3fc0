//! Volumes exported to another node for a move (see `nbd`): one qemu-nbd
//! per export, bound to the node's export address, reachable only with the
//! export's one-use key. The volume is held shared meanwhile (no delete,
//! resize, revert or write operation). An export ends when asked, when its
//! lifetime is up, or with the node; a retried request with the same key
//! gets the running export back.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::locks::VolumeGuard;
use crate::nbd::{Psk, PskDir};
use crate::tools::qemu_nbd::{ExportOptions, export_command};

/// Where a pull reaches an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo {
    pub host: IpAddr,
    pub port: u16,
    pub export_name: String,
    pub size_bytes: u64,
}

struct Export {
    generation: u64,
    psk: Psk,
    info: ExportInfo,
    /// Runs qemu-nbd; aborting it kills the process.
    server: tokio::task::JoinHandle<()>,
    _volume: VolumeGuard,
    _key: PskDir,
}

impl Drop for Export {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Default)]
pub(super) struct Exports {
    running: Arc<Mutex<HashMap<String, Export>>>,
    generations: std::sync::atomic::AtomicU64,
}

/// How long qemu-nbd may take to listen.
const LISTEN_DEADLINE: Duration = Duration::from_secs(10);

impl StorageManager {
    /// Exports volume `id` of `pool` read-only on `bind` for at most
    /// `lifetime`, under `export_id` (a UUID chosen by the caller).
    pub async fn export_volume(
        &self,
        pool: PoolId,
        id: VolumeId,
        export_id: &str,
        psk: Psk,
        bind: IpAddr,
        lifetime: Duration,
    ) -> Result<ExportInfo> {
        let export_uuid = uuid::Uuid::parse_str(export_id).map_err(|_| StorageError::invalid(format!("export id {export_id:?} is not a UUID")))?;
        let export_id = export_uuid.to_string();
        {
            let mut running = self.exports.running.lock().expect("export table poisoned");
            match running.get(&export_id) {
                Some(e) if e.psk == psk && !e.server.is_finished() => return Ok(e.info.clone()),
                Some(_) => drop(running.remove(&export_id)),
                None => {}
            }
        }
        let backend = self.backend(pool).await?;
        let volume_guard = self.locks.shared(pool, id, "an export to another node")?;
        let volume = self.volume(backend.as_ref(), id).await?;
        let location = backend.read_location(&volume)?;
        let key = PskDir::create(&self.ctx.state_dir.join("exports"), &export_uuid, &psk)?;
        let export_name = volume.id.to_string();
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port(bind)?;
            let command = export_command(&ExportOptions {
                location: &location,
                format: volume.format.into(),
                bind,
                port,
                export_name: &export_name,
                psk_dir: &key,
                lifetime,
            });
            let generation = self.exports.generations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (ended_tx, mut ended) = tokio::sync::oneshot::channel();
            let table = Arc::clone(&self.exports.running);
            let forget = export_id.clone();
            let server = tokio::spawn(async move {
                let outcome = command.run().await;
                let _ = ended_tx.send(outcome.map(drop));
                // Ended by itself (its lifetime, a crash): the volume is free again.
                let mut running = table.lock().expect("export table poisoned");
                if running.get(&forget).is_some_and(|e| e.generation == generation) {
                    let gone = running.remove(&forget);
                    drop(running);
                    drop(gone);
                }
            });
            match wait_listening(SocketAddr::new(bind, port), &mut ended).await {
                Ok(()) => {
                    let info = ExportInfo { host: bind, port, export_name, size_bytes: volume.size_bytes };
                    tracing::info!(volume = %id, export = %export_id, address = %SocketAddr::new(bind, port), "volume exported to another node");
                    let export = Export { generation, psk, info: info.clone(), server, _volume: volume_guard, _key: key };
                    self.exports.running.lock().expect("export table poisoned").insert(export_id, export);
                    return Ok(info);
                }
                Err(e) => {
                    server.abort();
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| StorageError::Internal("qemu-nbd did not start".into())))
    }

    /// Ends an export (its server stops, its key is removed); ending one that
    /// is not there succeeds.
    pub fn end_export(&self, export_id: &str) {
        let gone = self.exports.running.lock().expect("export table poisoned").remove(export_id);
        if gone.is_some() {
            tracing::info!(export = %export_id, "export ended");
        }
    }
}

/// A port free on `bind` now (qemu-nbd binds it next; a race is retried).
fn free_port(bind: IpAddr) -> Result<u16> {
    let listener = std::net::TcpListener::bind(SocketAddr::new(bind, 0))
        .map_err(|e| StorageError::invalid(format!("cannot listen on {bind} for an export: {e}")))?;
    Ok(listener.local_addr().map_err(|e| StorageError::Internal(e.to_string()))?.port())
}

/// Waits until qemu-nbd accepts connections on `at`, or reports why it ended.
async fn wait_listening(
    at: SocketAddr,
    ended: &mut tokio::sync::oneshot::Receiver<std::result::Result<(), crate::error::ToolError>>,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + LISTEN_DEADLINE;
    loop {
        if tokio::net::TcpStream::connect(at).await.is_ok() {
            return Ok(());
        }
        match ended.try_recv() {
            Ok(Err(e)) => return Err(StorageError::Internal(format!("the export server failed: {e}"))),
            Ok(Ok(())) | Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                return Err(StorageError::Internal("the export server ended at once".into()));
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StorageError::Unavailable(format!("the export server did not listen on {at} within {} s", LISTEN_DEADLINE.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
