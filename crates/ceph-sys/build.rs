//! Generates the librados and librbd bindings from the system headers
//! (Debian: librados-dev, librbd-dev; bindgen needs libclang-dev).

use std::path::PathBuf;

/// RBD_FEATURE_* are `1ULL << n` in C; without this bindgen picks u32.
#[derive(Debug)]
struct FeaturesAreU64;

impl bindgen::callbacks::ParseCallbacks for FeaturesAreU64 {
    fn int_macro(&self, name: &str, _value: i64) -> Option<bindgen::callbacks::IntKind> {
        name.starts_with("RBD_FEATURE").then_some(bindgen::callbacks::IntKind::U64)
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=/usr/include/rbd/librbd.h");
    println!("cargo:rerun-if-changed=/usr/include/rados/librados.h");
    println!("cargo:rustc-link-lib=dylib=rbd");
    println!("cargo:rustc-link-lib=dylib=rados");
    let bindings = bindgen::Builder::default()
        .header("/usr/include/rbd/librbd.h")
        .header("/usr/include/rados/librados.h")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .parse_callbacks(Box::new(FeaturesAreU64))
        .allowlist_function("rbd_.*|rados_.*")
        .allowlist_var("RBD_.*|LIBRBD_.*|LIBRADOS_.*")
        .allowlist_type("rbd_.*|librbd_.*|rados_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false)
        .generate()
        .expect("bindgen over librbd.h and librados.h (install librbd-dev, librados-dev, libclang-dev)");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("ceph.rs");
    bindings.write_to_file(out).expect("write the bindings");
}
