//! The iSCSI target testkit gives: tgt on loopback with CHAP, reached by
//! libiscsi's own client, stopped by pid.

use limiquantix_testkit::Tgt;
use limiquantix_testkit::tgt::{CHAP_USER, TARGET};
use std::process::Command;

#[test]
fn tgt_serves_its_luns_to_libiscsi_with_chap() {
    let tgt = Tgt::start(&[8]).unwrap();
    let url = format!("iscsi://{CHAP_USER}@{}", tgt.portal());
    // The secret through libiscsi's environment, never argv.
    let out = Command::new("iscsi-ls").args(["-s", &url]).env("LIBISCSI_CHAP_PASSWORD", tgt.chap_secret()).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listing.contains(TARGET) && listing.contains("Lun:1"), "{listing}{}", String::from_utf8_lossy(&out.stderr));
    let wrong = Command::new("iscsi-ls").args(["-s", &url]).env("LIBISCSI_CHAP_PASSWORD", "wrong-secret-here").output().unwrap();
    assert!(!wrong.status.success(), "a wrong secret is refused");
}
