//! A real guest boots under the private libvirtd, runs programs through its
//! agent, reads its data disk, and cannot write a disk attached read-only.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Instant;

use limiquantix_testkit::guest::HELLO_TEXT;
use limiquantix_testkit::{Guest, GuestImage, GuestOptions, Libvirtd, run_command};

const NAME: &str = "lq-testkit-guest";

fn scsi_disk(file: &std::path::Path, target: &str, serial: &str, readonly: bool) -> String {
    format!(
        "<disk type='file' device='disk'>\n  <driver name='qemu' type='qcow2' cache='none' io='native'/>\n  \
         <source file='{}'/>\n  <target dev='{target}' bus='scsi'/>\n  <serial>{serial}</serial>{}\n</disk>",
        file.display(),
        if readonly { "\n  <readonly/>" } else { "" }
    )
}

#[test]
fn guest_reads_its_data_disk_and_cannot_write_a_read_only_disk() {
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    let root = tempfile::Builder::new().prefix("lq-guest-test-").tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let built = Instant::now();
    let image = GuestImage::build(&root.path().join("image"), &GuestOptions::default()).expect("guest image");
    eprintln!("guest image (kernel {}) ready in {:?}", image.kernel_version(), built.elapsed());

    let (ro, rw) = (root.path().join("ro.qcow2"), root.path().join("rw.qcow2"));
    for disk in [&ro, &rw] {
        run_command(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(disk).arg("16M")).unwrap();
    }
    let extra = format!("{}\n{}", scsi_disk(&ro, "sdb", "lq-ro", true), scsi_disk(&rw, "sdc", "lq-rw", false));

    let xml = root.path().join("domain.xml");
    std::fs::write(&xml, image.domain_xml(NAME, &extra).unwrap()).unwrap();
    run_command(Command::new("virt-xml-validate").arg(&xml)).expect("the guest's domain XML follows libvirt's schema");

    let guest = Guest::boot(&libvirtd, &image, NAME, &extra).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("virsh create -> guest-ping answered: {:?}", guest.boot_time());

    let hello = guest.exec(&["cat", "/data/hello.txt"]).unwrap();
    assert!(hello.success(), "{hello:?}\n{}", guest.failure_report());
    assert_eq!(hello.stdout_text(), HELLO_TEXT);

    let missing = guest.exec(&["cat", "/data/absent"]).unwrap();
    assert_eq!(missing.exit_code, Some(1), "{missing:?}");
    assert!(missing.stderr_text().contains("No such file"), "{missing:?}");

    // By serial: guest names need not follow the targets (sdb is /dev/sdc here).
    let ro_dev = guest.disk_by_serial("lq-ro").unwrap();
    let rw_dev = guest.disk_by_serial("lq-rw").unwrap();
    eprintln!("read-only disk is {ro_dev}, writable disk is {rw_dev}");
    assert_ne!(ro_dev, rw_dev);
    let dd = |dev: &str| {
        let of = format!("of={dev}");
        let started = Instant::now();
        let out = guest.exec(&["dd", "if=/dev/zero", &of, "bs=4096", "count=1", "oflag=direct"]).unwrap();
        eprintln!("dd to {dev}: {out:?} in {:?}", started.elapsed());
        out
    };
    let refused = dd(&ro_dev);
    assert!(!refused.success(), "a write to the read-only disk succeeded: {refused:?}");
    let written = dd(&rw_dev);
    assert!(written.success(), "a write to the writable disk failed: {written:?}");

    drop(guest);
    let running = libvirtd.virsh(&["list", "--name"]).unwrap();
    assert!(!running.lines().any(|l| l.trim() == NAME), "the domain is gone after drop: {running}");
}
