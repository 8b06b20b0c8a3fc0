//! Everything a request handler or a saga step needs.

use std::time::Duration;

use crate::metrics::Metrics;
use crate::nodes::NodeRegistry;
use crate::repo::Repo;
use crate::sagas::SagaRunner;

pub struct Settings {
    pub saga_retry: Duration,
    /// How long finished tasks are kept.
    pub task_retention: Duration,
    /// How often a pool's capacity is sampled into its history.
    pub capacity_history: Duration,
}

pub struct App {
    pub repo: Repo,
    /// Seals pool secrets before they reach the store.
    pub secrets: crate::secrets::SecretBox,
    pub nodes: NodeRegistry,
    pub runner: SagaRunner,
    pub metrics: Metrics,
    pub config: Settings,
    /// Who may call what (tokens, node certificates, the cluster CA).
    pub access: crate::access::Access,
}
