use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from protoc-bin-vendored so the build needs no system protoc.
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["types.proto", "node.proto", "control.proto", "access.proto"]
        .map(|f| root.join("limiquantix/storage/v1").join(f));
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Messages with a secret field get a redacting Debug in lib.rs.
        .skip_debug([
            "limiquantix.storage.v1.CephPoolConfig",
            "limiquantix.storage.v1.IscsiPoolConfig",
            "limiquantix.storage.v1.JoinToken",
            "limiquantix.storage.v1.EnrollNodeRequest",
            "limiquantix.storage.v1.ApiTokenSecret",
        ])
        .file_descriptor_set_path(out.join("storage_v1_descriptor.bin"))
        .compile_protos(&files, std::slice::from_ref(&root))?;
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    Ok(())
}
