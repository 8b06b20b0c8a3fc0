//! Generates the libiscsi bindings from the system headers (Debian:
//! libiscsi-dev; bindgen needs libclang-dev).

use std::path::PathBuf;

const HEADERS: [&str; 2] = ["/usr/include/iscsi/iscsi.h", "/usr/include/iscsi/scsi-lowlevel.h"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for h in HEADERS {
        println!("cargo:rerun-if-changed={h}");
    }
    println!("cargo:rustc-link-lib=dylib=iscsi");
    let wrapper = "#include <stdint.h>\n#include <stddef.h>\n#include <sys/types.h>\n#include <iscsi/iscsi.h>\n#include <iscsi/scsi-lowlevel.h>\n";
    let bindings = bindgen::Builder::default()
        .header_contents("wrapper.h", wrapper)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("iscsi_.*|scsi_.*")
        .allowlist_type("iscsi_.*|scsi_.*")
        .allowlist_var("SCSI_.*|ISCSI_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false)
        .generate()
        .expect("bindgen over iscsi/iscsi.h (install libiscsi-dev, libclang-dev)");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("iscsi.rs");
    bindings.write_to_file(out).expect("write the bindings");
}
