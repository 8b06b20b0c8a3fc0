fn main() {
    // lqctl is started once per command: a position-dependent executable has no
    // relative relocations for the loader to apply (about a fifth of its start).
    println!("cargo:rustc-link-arg-bin=lqctl=-no-pie");
}
