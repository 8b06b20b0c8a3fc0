//! The control plane's durable state: a key-value store with revisions and
//! atomic compare-and-swap commits, so two writers can never both win. Two
//! implementations share one trait and one test suite: redb (an embedded
//! file, the default) and etcd (several control-plane replicas).

mod etcd;
mod redb;

pub use self::etcd::{EtcdOptions, EtcdStore};
pub use self::redb::RedbStore;

use async_trait::async_trait;

/// A store-wide, increasing version number; every committed write carries one.
pub type Revision = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision of the last write to this key.
    pub revision: Revision,
}

/// What must hold for a commit to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The key does not exist.
    Absent(String),
    /// The key exists and was last written at this revision.
    Revision(String, Revision),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(String, Vec<u8>),
    Delete(String),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// A precondition failed: another writer changed a key first.
    #[error("the state changed concurrently; read it again and retry")]
    Conflict,
    /// The store cannot be reached or did not answer in time.
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    #[error("state store error: {0}")]
    Internal(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// "redb" or "etcd".
    fn kind(&self) -> &'static str;

    /// Whether work still runs on the store's own resources (a redb commit
    /// finishing on a blocking thread after its caller was dropped): the
    /// file stays locked until it ends.
    fn busy(&self) -> bool {
        false
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;

    /// Entries whose key starts with `prefix`, in key order, strictly after
    /// `start_after` if given, at most `limit` (0 = all).
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// How many keys start with `prefix`.
    async fn count(&self, prefix: &str) -> Result<u64, StoreError>;

    /// Applies every write atomically if every precondition holds, else
    /// changes nothing and returns [`StoreError::Conflict`]. Returns the
    /// revision of the commit.
    async fn commit(&self, preconditions: Vec<Precondition>, writes: Vec<Write>) -> Result<Revision, StoreError>;

    /// Follows the keys under `prefix` from now on: who must react to a
    /// change (a task's watchers, a saga's cancel) waits on this instead of
    /// polling. Across replicas too (etcd).
    async fn watch(&self, prefix: &str) -> Result<Box<dyn KeyWatch>, StoreError>;
}

/// Changes under a prefix, from the moment the watch was made.
#[async_trait]
pub trait KeyWatch: Send {
    /// Completes when a key under the prefix was written or deleted since the
    /// last call, or may have been (a watcher that fell behind is told too).
    /// An error means the watch is broken: read again and make a new one.
    async fn changed(&mut self) -> Result<(), StoreError>;
}

/// The first key after every key that starts with `prefix` (for range ends).
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // prefix of only 0xff bytes: etcd's "to the end" marker
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(super::prefix_end("volumes/"), b"volumes0".to_vec());
        assert_eq!(super::prefix_end("a"), b"b".to_vec());
    }
}
