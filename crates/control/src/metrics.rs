//! /metrics in Prometheus text format: pool capacity, operations and their
//! latency per RPC, saga outcomes, node up/down.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SagaLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
    pub hostname: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Mutex<Registry>,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_latency: Family<RpcLabels, Histogram, fn() -> Histogram>,
    sagas: Family<SagaLabels, Counter>,
    node_up: Family<NodeLabels, Gauge>,
    pool_total: Family<PoolLabels, Gauge>,
    pool_used: Family<PoolLabels, Gauge>,
    pool_provisioned: Family<PoolLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("limiquantix");
        let m = Self {
            registry: Mutex::new(Registry::default()),
            rpc_requests: Family::default(),
            rpc_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            sagas: Family::default(),
            node_up: Family::default(),
            pool_total: Family::default(),
            pool_used: Family::default(),
            pool_provisioned: Family::default(),
        };
        registry.register("rpc_requests", "API calls, per gRPC method", m.rpc_requests.clone());
        registry.register_with_unit("rpc_latency", "API call latency, per gRPC method", Unit::Seconds, m.rpc_latency.clone());
        registry.register("sagas", "Finished sagas, per kind and outcome (succeeded, failed)", m.sagas.clone());
        registry.register("node_up", "1 if the node heartbeats, else 0", m.node_up.clone());
        registry.register_with_unit("pool_total", "Pool capacity reported by its backend", Unit::Bytes, m.pool_total.clone());
        registry.register_with_unit("pool_used", "Pool space in use (total - free)", Unit::Bytes, m.pool_used.clone());
        registry.register_with_unit("pool_provisioned", "Sum of the pool's volume sizes", Unit::Bytes, m.pool_provisioned.clone());
        *m.registry.lock().expect("registry lock") = registry;
        m
    }
}

impl Metrics {
    pub fn rpc(&self, method: &str, seconds: f64) {
        let labels = RpcLabels { method: method.to_owned() };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_latency.get_or_create(&labels).observe(seconds);
    }

    pub fn saga_finished(&self, kind: &str, ok: bool) {
        let outcome = if ok { "succeeded" } else { "failed" };
        self.sagas.get_or_create(&SagaLabels { kind: kind.to_owned(), outcome: outcome.to_owned() }).inc();
    }

    pub fn node(&self, id: &str, hostname: &str, up: bool) {
        self.node_up.get_or_create(&NodeLabels { node: id.to_owned(), hostname: hostname.to_owned() }).set(up as i64);
    }

    pub fn pool(&self, id: &str, name: &str, total: u64, free: u64, provisioned: u64) {
        let labels = PoolLabels { pool: id.to_owned(), name: name.to_owned() };
        self.pool_total.get_or_create(&labels).set(total as i64);
        self.pool_used.get_or_create(&labels).set(total.saturating_sub(free) as i64);
        self.pool_provisioned.get_or_create(&labels).set(provisioned as i64);
    }

    pub fn forget_pool(&self, id: &str, name: &str) {
        let labels = PoolLabels { pool: id.to_owned(), name: name.to_owned() };
        self.pool_total.remove(&labels);
        self.pool_used.remove(&labels);
        self.pool_provisioned.remove(&labels);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().expect("registry lock"))
            .expect("writing to a String cannot fail");
        out
    }
}
