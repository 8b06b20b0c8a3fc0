//! Fault injection for crash tests: `LQ_SAGA_FAULT=<kind>:<step>:<when>`
//! (when = before | after | undo) makes the process abort right there, as a
//! kill -9 would, so tests can check that a restart resumes or unwinds.

pub const ENV: &str = "LQ_SAGA_FAULT";

pub fn point(kind: &str, step: &str, when: &str) {
    if let Ok(spec) = std::env::var(ENV)
        && spec == format!("{kind}:{step}:{when}") {
            eprintln!("{ENV}: aborting at {spec}");
            std::process::abort();
        }
}
