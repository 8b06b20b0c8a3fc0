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

#[test]
fn ganesha_with_a_portmapper_serves_qemu_in_a_private_network() {
    limiquantix_testkit::private_network().unwrap();
    let nfs = Ganesha::start_with_portmapper().unwrap();
    let url = nfs.plain_url("/disk.qcow2");
    run_command(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", &url, "1G"])).unwrap_or_else(|e| panic!("{e}\n{}", nfs.log_tail()));
    let info = run_command(Command::new("qemu-img").args(["info", "--output=json", &url])).unwrap();
    assert!(info.contains("\"virtual-size\": 1073741824"), "{info}");
    assert!(nfs.export_local().join("disk.qcow2").exists());
    // One portmapper per namespace: a second server is refused, not confused.
    assert!(Ganesha::start_with_portmapper().is_err());
}
