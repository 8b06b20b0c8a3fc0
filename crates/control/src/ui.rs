//! The web UI, built from ui/ and embedded at compile time (build.rs): its
//! files by path, and index.html for every other path the browser asks
//! (the UI routes itself). gRPC-Web calls reach the API on the same port.

use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));

pub async fn serve(uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/limiquantix.") || path.starts_with("/grpc.") {
        return tonic::Status::unimplemented(format!("no such method: {path}")).into_http::<axum::body::Body>();
    }
    let file = UI_FILES.iter().find(|(p, _, _)| *p == path).or_else(|| UI_FILES.iter().find(|(p, _, _)| *p == "/index.html"));
    match file {
        Some((p, content_type, bytes)) => {
            // Vite names assets by content hash: they never change under one name.
            let cache = if p.starts_with("/assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, cache)], *bytes).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Html("<!doctype html><title>LimiQuantix storage</title><p>This control plane was built without its web UI: \
                  build it with <code>npm ci &amp;&amp; npm run build</code> in <code>ui/</code>, then rebuild \
                  (<code>scripts/dev.sh</code> does both).</p>"),
        )
            .into_response(),
    }
}
