//! The embedded store: one redb file. Each value carries the revision of its
//! last write; a counter in the meta table gives every commit a new one.
//! redb has a single writer, so checking preconditions and writing inside one
//! write transaction is atomic.
//!
//! This process is the file's only user (redb locks it), so every change
//! passes through [`RedbStore::commit`]: reads are served from an in-memory
//! copy kept in step with each commit, without a trip to the blocking pool
//! or the disk. Only commits (and their fsync) leave the async runtime.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Entry, KeyWatch, Precondition, Revision, Store, StoreError, Write};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// Key → (revision, value), as committed.
type Records = BTreeMap<String, (Revision, Arc<[u8]>)>;

pub struct RedbStore {
    db: Arc<Database>,
    records: Arc<RwLock<Records>>,
    /// Held from a commit's write transaction until its changes are in
    /// `records`, so they land there in commit order.
    writer: Arc<Mutex<()>>,
    /// The keys of every commit, for watchers (in this process: the only one
    /// that can open the file).
    changes: tokio::sync::broadcast::Sender<Arc<[String]>>,
}

/// Commits a watcher may fall behind by before it is told to read again.
const WATCH_BACKLOG: usize = 1024;

struct RedbWatch {
    changes: tokio::sync::broadcast::Receiver<Arc<[String]>>,
    prefix: String,
}

#[async_trait]
impl KeyWatch for RedbWatch {
    async fn changed(&mut self) -> Result<(), StoreError> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match self.changes.recv().await {
                Ok(keys) if keys.iter().any(|k| k.starts_with(&self.prefix)) => return Ok(()),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return Ok(()),
                Err(RecvError::Closed) => return Err(StoreError::Unavailable("the store was closed".into())),
            }
        }
    }
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// The store holds pool secrets: its directory is made 0700 and the file
/// 0600 before redb writes anything, whatever the umask; an older file
/// with wider permissions is narrowed.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |what: &str, p: &Path, e: std::io::Error| StoreError::Unavailable(format!("cannot {what} {}: {e}", p.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        limiquantix_storage::fsutil::create_private_dir(dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mode = std::fs::metadata(dir).map_err(|e| io("inspect", dir, e))?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "the store's directory is open to other users; make it 0700");
        }
    }
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map_err(|e| io("create", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| io("protect", path, e))
}

fn encode(revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Result<Entry, StoreError> {
    if raw.len() < 8 {
        return Err(StoreError::Internal(format!("record {key} is damaged")));
    }
    let revision = i64::from_le_bytes(raw[..8].try_into().expect("8 bytes"));
    Ok(Entry { key: key.to_owned(), value: raw[8..].to_vec(), revision })
}

impl RedbStore {
    /// Opens (or creates) the store file. redb locks it: a second process
    /// opening the same file fails instead of corrupting it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private(path)?;
        let db = Database::create(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(internal)?;
        tx.open_table(KV).map_err(internal)?;
        tx.open_table(META).map_err(internal)?;
        tx.commit().map_err(internal)?;
        let mut records = Records::new();
        {
            let tx = db.begin_read().map_err(internal)?;
            let table = tx.open_table(KV).map_err(internal)?;
            for item in table.iter().map_err(internal)? {
                let (k, v) = item.map_err(internal)?;
                let entry = decode(k.value(), v.value())?;
                records.insert(entry.key, (entry.revision, entry.value.into()));
            }
        }
        Ok(Self {
            db: Arc::new(db),
            records: Arc::new(RwLock::new(records)),
            writer: Arc::new(Mutex::new(())),
            changes: tokio::sync::broadcast::channel(WATCH_BACKLOG).0,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Records> {
        self.records.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }
}

#[async_trait]
impl Store for RedbStore {
    fn busy(&self) -> bool {
        Arc::strong_count(&self.db) > 1
    }

    fn kind(&self) -> &'static str {
        "redb"
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.read().get(key).map(|(revision, value)| Entry { key: key.to_owned(), value: value.to_vec(), revision: *revision }))
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let start = match start_after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let records = self.read();
        let matching = records.range::<str, _>((start, Bound::Unbounded)).take_while(|(k, _)| k.starts_with(prefix));
        let take = if limit == 0 { usize::MAX } else { limit };
        Ok(matching
            .take(take)
            .map(|(k, (revision, value))| Entry { key: k.clone(), value: value.to_vec(), revision: *revision })
            .collect())
    }

    async fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        let records = self.read();
        Ok(records.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)).take_while(|(k, _)| k.starts_with(prefix)).count() as u64)
    }

    async fn watch(&self, prefix: &str) -> Result<Box<dyn KeyWatch>, StoreError> {
        Ok(Box::new(RedbWatch { changes: self.changes.subscribe(), prefix: prefix.to_owned() }))
    }

    async fn commit(&self, preconditions: Vec<Precondition>, writes: Vec<Write>) -> Result<Revision, StoreError> {
        let changes = self.changes.clone();
        let (records, writer) = (self.records.clone(), self.writer.clone());
        self.blocking(move |db| {
            let _writer = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let tx = db.begin_write().map_err(internal)?;
            let revision = {
                let mut kv = tx.open_table(KV).map_err(internal)?;
                for p in &preconditions {
                    let holds = match p {
                        Precondition::Absent(k) => kv.get(k.as_str()).map_err(internal)?.is_none(),
                        Precondition::Revision(k, rev) => match kv.get(k.as_str()).map_err(internal)? {
                            Some(v) => decode(k, v.value())?.revision == *rev,
                            None => false,
                        },
                    };
                    if !holds {
                        return Err(StoreError::Conflict); // the transaction is dropped: nothing written
                    }
                }
                let mut meta = tx.open_table(META).map_err(internal)?;
                let revision = meta.get(REVISION).map_err(internal)?.map(|v| v.value()).unwrap_or(0) + 1;
                meta.insert(REVISION, revision).map_err(internal)?;
                for w in &writes {
                    match w {
                        Write::Put(k, v) => {
                            kv.insert(k.as_str(), encode(revision, v).as_slice()).map_err(internal)?;
                        }
                        Write::Delete(k) => {
                            kv.remove(k.as_str()).map_err(internal)?;
                        }
                    }
                }
                revision
            };
            tx.commit().map_err(internal)?;
            {
                let mut records = records.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                for w in &writes {
                    match w {
                        Write::Put(k, v) => records.insert(k.clone(), (revision, v.as_slice().into())),
                        Write::Delete(k) => records.remove(k),
                    };
                }
            }
            let keys: Arc<[String]> = writes
                .into_iter()
                .map(|w| match w {
                    Write::Put(k, _) | Write::Delete(k) => k,
                })
                .collect();
            // No watcher is fine.
            let _ = changes.send(keys);
            Ok(revision)
        })
        .await
    }
}
