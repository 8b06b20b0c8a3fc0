//! One listener for everything: the gRPC services (with reflection and
//! health), /metrics, and a small status page.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use limiquantix_api::v1::access_service_server::AccessServiceServer;
use limiquantix_api::v1::node_service_server::NodeServiceServer;
use limiquantix_api::v1::storage_pool_service_server::StoragePoolServiceServer;
use limiquantix_api::v1::task_service_server::TaskServiceServer;
use limiquantix_api::v1::volume_service_server::VolumeServiceServer;
use tonic::service::Routes;

use crate::api::{access::AccessApi, nodes::NodeApi, pools::PoolApi, tasks::TaskApi, volumes::VolumeApi};
use crate::listener::{ApiListener, Peer};
use crate::app::App;
use crate::keys;
use limiquantix_api::v1 as pb;

pub async fn router(app: Arc<App>) -> anyhow::Result<Router> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    for service in [
        "limiquantix.storage.v1.StoragePoolService",
        "limiquantix.storage.v1.VolumeService",
        "limiquantix.storage.v1.NodeService",
        "limiquantix.storage.v1.TaskService",
        "limiquantix.storage.v1.AccessService",
    ] {
        health_reporter.set_service_status(service, tonic_health::ServingStatus::Serving).await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(limiquantix_api::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let grpc = Routes::new(health)
        .add_service(reflection)
        .add_service(StoragePoolServiceServer::new(PoolApi::new(app.clone())))
        .add_service(VolumeServiceServer::new(VolumeApi::new(app.clone())))
        .add_service(NodeServiceServer::new(NodeApi::new(app.clone())))
        .add_service(TaskServiceServer::new(TaskApi::new(app.clone())))
        .add_service(AccessServiceServer::new(AccessApi::new(app.clone())))
        .into_axum_router()
        // Browsers speak gRPC-Web: the web UI calls the same API on this port.
        .layer(tonic_web::GrpcWebLayer::new());
    let http = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(app.clone());
    Ok(grpc
        .merge(http)
        // Every other path is the web UI's (an unknown gRPC method still
        // gets UNIMPLEMENTED, see ui::serve).
        .fallback(crate::ui::serve)
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .layer(middleware::from_fn_with_state(app, count_rpcs)))
}

pub async fn serve(router: Router, listener: ApiListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<Peer>()).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// Names the caller of every request, and refuses the ones it may not make
/// (see `access`). gRPC calls are refused with a gRPC status.
async fn authenticate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let peer_cert = req.extensions().get::<ConnectInfo<Peer>>().and_then(|c| c.0.cert.clone());
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = req.uri().path().to_owned();
    match app.access.authorize(&app.repo, &path, authorization.as_deref(), peer_cert.as_deref().map(Vec::as_slice)).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(status) if path.starts_with("/limiquantix.") || path.starts_with("/grpc.") => status.into_http::<axum::body::Body>(),
        Err(status) => (axum::http::StatusCode::UNAUTHORIZED, status.message().to_owned()).into_response(),
    }
}

/// Counts and times every gRPC call by method (the path names it).
async fn count_rpcs(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    if path.starts_with("/limiquantix.") {
        app.metrics.rpc(path.trim_start_matches('/'), start.elapsed().as_secs_f64());
    }
    resp
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    // Pool and node figures are taken from the store at scrape time, so they
    // are current whichever replica is asked.
    if let Ok(pools) = app.repo.list::<pb::Pool>(keys::POOLS, None, 0).await {
        for (_, p) in pools {
            let p = p.value;
            let cap = p.capacity.unwrap_or_default();
            app.metrics.pool(&p.id, &p.name, cap.total_bytes, cap.free_bytes, p.provisioned_bytes);
        }
    }
    if let Ok(nodes) = app.repo.list::<pb::Node>(keys::NODES, None, 0).await {
        for (_, n) in nodes {
            app.metrics.node(&n.value.id, &n.value.hostname, app.nodes.is_online(&n.value));
        }
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.render())
}

async fn status(State(app): State<Arc<App>>) -> Html<String> {
    let leader = if app.runner.is_leader() { "leading" } else { "standing by" };
    Html(format!(
        "<!doctype html><title>LimiQuantix storage</title><h1>LimiQuantix storage control plane</h1>\
         <p>This replica is {leader} ({} store). API: gRPC on this address; metrics: <a href=\"/metrics\">/metrics</a>.</p>",
        app.repo.store().kind()
    ))
}
