//! Generates the libnfs bindings from the system header (Debian:
//! libnfs-dev; bindgen needs libclang-dev).

use std::path::PathBuf;

const HEADER: &str = "/usr/include/nfsc/libnfs.h";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={HEADER}");
    println!("cargo:rustc-link-lib=dylib=nfs");
    let bindings = bindgen::Builder::default()
        // libnfs.h uses struct timeval and fixed-width ints without including their headers.
        .header_contents("wrapper.h", &format!("#include <stdint.h>\n#include <sys/time.h>\n#include <sys/types.h>\n#include \"{HEADER}\"\n"))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("nfs_.*")
        .allowlist_type("nfs_.*|nfsfh|nfsdir|nfsdirent")
        .allowlist_var("NF3.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false)
        .generate()
        .expect("bindgen over nfsc/libnfs.h (install libnfs-dev, libclang-dev)");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("nfs.rs");
    bindings.write_to_file(out).expect("write the bindings");
}
