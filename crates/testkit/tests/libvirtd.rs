//! The private libvirtd starts, runs a TCG domain, and is gone after drop.

use limiquantix_testkit::Libvirtd;
use limiquantix_testkit::libvirt::minimal_domain;

#[test]
fn private_libvirtd_runs_a_domain_and_stops_by_pid() {
    let libvirtd = Libvirtd::start().expect("libvirtd starts");
    assert!(libvirtd.uri().contains(libvirtd.dir().to_str().unwrap()), "the URI names our private socket");
    libvirtd.create_domain(&minimal_domain("lq-testkit-probe", "")).expect("domain starts");
    let state = libvirtd.virsh(&["domstate", "lq-testkit-probe"]).unwrap();
    assert_eq!(state.trim(), "running");
    let qemu_pid_file = libvirtd.dir().join("run/qemu/lq-testkit-probe.pid");
    let qemu_pid: i32 = std::fs::read_to_string(&qemu_pid_file).unwrap().trim().parse().unwrap();
    let socket = libvirtd.dir().join("run/libvirt-sock");
    drop(libvirtd);
    assert!(!socket.exists(), "the temp dir with the socket is gone");
    // The QEMU process was destroyed with its daemon (it is not our child, so
    // poll /proc until the sandbox reaps it).
    limiquantix_testkit::wait_until("qemu exit", std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{qemu_pid}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true)
    })
    .unwrap();
}
