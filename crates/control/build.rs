//! Embeds the built web UI (ui/dist, made by `npm run build` in ui/) in the
//! binary: one generated table of paths, content types and bytes. Without a
//! built UI the table is empty and `/` says how to build it.

use std::path::{Path, PathBuf};

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut table = String::from("pub static UI_FILES: &[(&str, &str, &[u8])] = &[\n");
    for (path, file) in &files {
        table.push_str(&format!("    ({path:?}, {:?}, include_bytes!({:?})),\n", content_type(path), file.display().to_string()));
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("ui_files.rs");
    std::fs::write(out, table).expect("write the UI table");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let canonical = path.canonicalize().expect("a file under ui/dist");
            files.push((format!("/{}", rel.display()), canonical));
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}
