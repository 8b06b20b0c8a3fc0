//! The etcd store: every key lives under a root prefix; commits are etcd
//! transactions whose compares are the preconditions (version 0 = absent,
//! mod_revision = last write). Every call has a timeout, so a hung etcd gives
//! `Unavailable`, never a hung control plane.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, WatchOptions};

use super::{Entry, KeyWatch, Precondition, Revision, Store, StoreError, Write, prefix_end};

#[derive(Debug, Clone)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    /// Every key is stored under this prefix, e.g. "/limiquantix/".
    pub root: String,
    pub timeout: Duration,
    /// TLS to etcd (CA, and a client certificate when etcd asks for one).
    pub tls: Option<etcd_client::TlsOptions>,
    /// etcd authentication: user and password.
    pub user: Option<(String, String)>,
}

impl EtcdOptions {
    pub fn plain(endpoints: Vec<String>, root: String, timeout: Duration) -> Self {
        Self { endpoints, root, timeout, tls: None, user: None }
    }

    fn connect_options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new().with_connect_timeout(self.timeout);
        if let Some(tls) = &self.tls {
            o = o.with_tls(tls.clone());
        }
        if let Some((user, password)) = &self.user {
            o = o.with_user(user.clone(), password.clone());
        }
        o
    }
}

#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// For watches: the other client's per-call timeout would cut them.
    watch_client: Client,
    root: String,
}

struct EtcdWatch(etcd_client::WatchStream);

#[async_trait]
impl KeyWatch for EtcdWatch {
    async fn changed(&mut self) -> Result<(), StoreError> {
        loop {
            match self.0.message().await.map_err(etcd_error)? {
                Some(resp) if resp.canceled() => {
                    return Err(StoreError::Unavailable(format!("etcd cancelled the watch: {}", resp.cancel_reason())));
                }
                // The first answer confirms the watch; progress notices carry no event.
                Some(resp) if resp.events().is_empty() => {}
                Some(_) => return Ok(()),
                None => return Err(StoreError::Unavailable("etcd ended the watch".into())),
            }
        }
    }
}

pub(crate) fn etcd_error(e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s)
            if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded) =>
        {
            StoreError::Unavailable(format!("etcd: {}", s.message()))
        }
        E::GRpcStatus(s) if s.code() == tonic::Code::Unknown && s.message().contains("transport error") => {
            StoreError::Unavailable(format!("etcd: {}", s.message()))
        }
        E::TransportError(t) => StoreError::Unavailable(format!("etcd: {t}")),
        E::IoError(io) => StoreError::Unavailable(format!("etcd: {io}")),
        other => StoreError::Internal(format!("etcd: {other}")),
    }
}

impl EtcdStore {
    pub async fn connect(options: &EtcdOptions) -> Result<Self, StoreError> {
        let client = Client::connect(&options.endpoints, Some(options.connect_options().with_timeout(options.timeout)))
            .await
            .map_err(etcd_error)?;
        let watch_client = Self::connect_client(options).await?;
        let store = Self { client, watch_client, root: options.root.clone() };
        // Connecting is lazy: one read proves the cluster answers.
        store.get("probe").await?;
        Ok(store)
    }

    /// A client for the caller's own use (elections), without the per-call timeout.
    pub async fn connect_client(options: &EtcdOptions) -> Result<Client, StoreError> {
        Client::connect(&options.endpoints, Some(options.connect_options())).await.map_err(etcd_error)
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.root)
    }

    fn entry(&self, kv: &etcd_client::KeyValue) -> Result<Entry, StoreError> {
        let key = kv.key_str().map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(Entry {
            key: key.strip_prefix(&self.root).unwrap_or(key).to_owned(),
            value: kv.value().to_vec(),
            revision: kv.mod_revision(),
        })
    }
}

#[async_trait]
impl Store for EtcdStore {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let resp = self.client.clone().get(self.full(key), None).await.map_err(etcd_error)?;
        resp.kvs().first().map(|kv| self.entry(kv)).transpose()
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let full_prefix = self.full(prefix);
        let start: Vec<u8> = match start_after {
            Some(a) if a >= prefix => {
                let mut k = self.full(a).into_bytes();
                k.push(0); // the first key after `a`
                k
            }
            _ => full_prefix.clone().into_bytes(),
        };
        let options = GetOptions::new().with_range(prefix_end(&full_prefix)).with_limit(limit as i64);
        let resp = self.client.clone().get(start, Some(options)).await.map_err(etcd_error)?;
        resp.kvs().iter().map(|kv| self.entry(kv)).collect()
    }

    async fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        let full_prefix = self.full(prefix);
        let options = GetOptions::new().with_prefix().with_count_only();
        let resp = self.client.clone().get(full_prefix, Some(options)).await.map_err(etcd_error)?;
        Ok(resp.count() as u64)
    }

    async fn watch(&self, prefix: &str) -> Result<Box<dyn KeyWatch>, StoreError> {
        let options = WatchOptions::new().with_prefix();
        let mut stream = self.watch_client.clone().watch(self.full(prefix), Some(options)).await.map_err(etcd_error)?;
        // Once etcd confirms it, every later change is seen: callers read after this.
        match stream.message().await.map_err(etcd_error)? {
            Some(resp) if resp.created() => Ok(Box::new(EtcdWatch(stream))),
            _ => Err(StoreError::Unavailable("etcd did not create the watch".into())),
        }
    }

    async fn commit(&self, preconditions: Vec<Precondition>, writes: Vec<Write>) -> Result<Revision, StoreError> {
        let compares: Vec<Compare> = preconditions
            .iter()
            .map(|p| match p {
                Precondition::Absent(k) => Compare::version(self.full(k), CompareOp::Equal, 0),
                Precondition::Revision(k, rev) => Compare::mod_revision(self.full(k), CompareOp::Equal, *rev),
            })
            .collect();
        let ops: Vec<TxnOp> = writes
            .iter()
            .map(|w| match w {
                Write::Put(k, v) => TxnOp::put(self.full(k), v.clone(), None),
                Write::Delete(k) => TxnOp::delete(self.full(k), None),
            })
            .collect();
        let resp = self.client.clone().txn(Txn::new().when(compares).and_then(ops)).await.map_err(etcd_error)?;
        if !resp.succeeded() {
            return Err(StoreError::Conflict);
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }
}
