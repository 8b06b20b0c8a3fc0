//! Typed access to the store: records are protobuf messages (the API's own
//! types), written in compare-and-swap transactions that are retried when
//! another writer won the race.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use crate::error::{ApiError, ApiResult};
use crate::store::{Precondition, Revision, Store, Write};

#[derive(Debug, Clone)]
pub struct Versioned<M> {
    pub value: M,
    pub revision: Revision,
}

#[derive(Clone)]
pub struct Repo {
    store: Arc<dyn Store>,
}

/// How often a transaction is retried after losing a race before giving up.
const CONFLICT_RETRIES: usize = 50;

fn decode<M: Message + Default>(key: &str, bytes: &[u8]) -> ApiResult<M> {
    M::decode(bytes).map_err(|e| ApiError::internal(format!("record {key} cannot be decoded: {e}")))
}

impl Repo {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn get<M: Message + Default>(&self, key: &str) -> ApiResult<Option<Versioned<M>>> {
        match self.store.get(key).await? {
            Some(e) => Ok(Some(Versioned { value: decode(key, &e.value)?, revision: e.revision })),
            None => Ok(None),
        }
    }

    pub async fn get_raw(&self, key: &str) -> ApiResult<Option<(Vec<u8>, Revision)>> {
        Ok(self.store.get(key).await?.map(|e| (e.value, e.revision)))
    }

    pub async fn list<M: Message + Default>(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> ApiResult<Vec<(String, Versioned<M>)>> {
        self.store
            .list(prefix, start_after, limit)
            .await?
            .into_iter()
            .map(|e| Ok((e.key.clone(), Versioned { value: decode(&e.key, &e.value)?, revision: e.revision })))
            .collect()
    }

    pub async fn count(&self, prefix: &str) -> ApiResult<u64> {
        Ok(self.store.count(prefix).await?)
    }

    /// Runs `attempt` (read, decide, commit) again whenever its commit lost a
    /// race, so a conflicting write is retried, never lost.
    pub async fn retry<T, F, Fut>(&self, mut attempt: F) -> ApiResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        for n in 0..CONFLICT_RETRIES {
            match attempt().await {
                Err(e) if e.is_conflict() => {
                    // Spread out writers that keep colliding.
                    let jitter = (uuid::Uuid::new_v4().as_u128() % 5) as u64;
                    tokio::time::sleep(Duration::from_millis((n as u64).min(20) + jitter)).await;
                }
                other => return other,
            }
        }
        Err(ApiError::unavailable("the state kept changing under this request; retry it"))
    }

    /// Reads `key`, lets `change` edit it, writes it back if nobody else
    /// wrote in between; retried on conflict. `change` may refuse with an error.
    pub async fn update<M>(&self, key: &str, change: impl Fn(&mut M) -> ApiResult<()>) -> ApiResult<M>
    where
        M: Message + Default + Clone,
    {
        let change = &change;
        self.retry(|| async move {
            let Some(current) = self.get::<M>(key).await? else {
                return Err(ApiError::not_found(format!("{key} does not exist")));
            };
            let mut value = current.value;
            change(&mut value)?;
            let mut txn = Txn::new();
            txn.expect(key, current.revision).put(key, &value);
            txn.commit(self).await?;
            Ok(value)
        })
        .await
    }
}

/// Preconditions and writes committed together.
#[derive(Debug, Default)]
pub struct Txn {
    pre: Vec<Precondition>,
    writes: Vec<Write>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn expect_absent(&mut self, key: impl Into<String>) -> &mut Self {
        self.pre.push(Precondition::Absent(key.into()));
        self
    }
    pub fn expect(&mut self, key: impl Into<String>, revision: Revision) -> &mut Self {
        self.pre.push(Precondition::Revision(key.into(), revision));
        self
    }
    pub fn put<M: Message>(&mut self, key: impl Into<String>, value: &M) -> &mut Self {
        self.writes.push(Write::Put(key.into(), value.encode_to_vec()));
        self
    }
    pub fn put_raw(&mut self, key: impl Into<String>, value: Vec<u8>) -> &mut Self {
        self.writes.push(Write::Put(key.into(), value));
        self
    }
    pub fn delete(&mut self, key: impl Into<String>) -> &mut Self {
        self.writes.push(Write::Delete(key.into()));
        self
    }
    pub async fn commit(self, repo: &Repo) -> ApiResult<Revision> {
        Ok(repo.store.commit(self.pre, self.writes).await?)
    }
}
