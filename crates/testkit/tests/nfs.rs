//! The NFS server testkit gives: nfs-ganesha that a libnfs client reaches
//! on loopback without a portmapper, and that a SIGSTOP freezes.

use limiquantix_testkit::Ganesha;
use limiquantix_testkit::process::run_command;
use std::process::Command;

#[test]
fn ganesha_serves_its_export_to_libnfs_without_a_portmapper() {
    let nfs = Ganesha::start().unwrap();
    std::fs::write(nfs.export_local().join("hello.txt"), b"hi").unwrap();
    let listing = run_command(Command::new("nfs-ls").arg("-s").arg(nfs.url(""))).unwrap_or_else(|e| panic!("{e}\n{}", nfs.log_tail()));
    assert!(listing.contains("hello.txt"), "{listing}");
    assert!(listing.contains("bytes free"), "FSSTAT answers: {listing}");
}
