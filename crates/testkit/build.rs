//! Builds the FUSE passthrough daemon tests use as a mount that can be made
//! to hang (fuse/passthrough.c; Debian: libfuse3-dev, pkg-config, a C
//! compiler).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "fuse/passthrough.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("lq-fuse-passthrough");
    let flags = Command::new("pkg-config").args(["--cflags", "--libs", "fuse3"]).output().expect("pkg-config runs");
    assert!(flags.status.success(), "pkg-config cannot find fuse3: install libfuse3-dev (scripts/install-deps.sh does)");
    let flags = String::from_utf8(flags.stdout).expect("pkg-config prints text");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&compiler)
        .args(["-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(source)
        .args(flags.split_whitespace())
        .status()
        .expect("the C compiler runs");
    assert!(status.success(), "building {source} failed");
    println!("cargo:rustc-env=LQ_FUSE_PASSTHROUGH={}", out.display());
}
