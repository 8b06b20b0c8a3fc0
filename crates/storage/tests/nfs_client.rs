//! The userspace NFS client against a real nfs-ganesha on loopback: what a
//! pool needs (capacity, files by name), refusals that say what is wrong,
//! and a frozen server that costs a timeout, never a hung thread.

use std::time::{Duration, Instant};

use limiquantix_storage::StorageError;
use limiquantix_storage::backends::nfs::client::{NfsClient, NfsExport};
use limiquantix_testkit::{Ganesha, free_port};

fn export_of(nfs: &Ganesha) -> NfsExport {
    NfsExport::new("127.0.0.1", nfs.export().to_str().unwrap()).unwrap().with_ports(nfs.nfs_port, nfs.mount_port)
}

#[test]
fn capacity_and_files_through_libnfs() {
    let nfs = Ganesha::start().unwrap();
    let mut c = NfsClient::mount(&export_of(&nfs), Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}\n{}", nfs.log_tail()));

    let fs = c.fs_stat().unwrap();
    let local = rustix::fs::statvfs(nfs.export_local()).unwrap();
    assert_eq!(fs.total_bytes, local.f_frsize * local.f_blocks, "FSSTAT passes the export's file system through");
    let local_free = local.f_frsize * local.f_bfree;
    assert!(fs.free_bytes.abs_diff(local_free) < 256 << 20, "free {} vs {local_free}", fs.free_bytes);
    assert!(fs.available_bytes <= fs.free_bytes && fs.free_bytes <= fs.total_bytes);

    assert_eq!(c.stat("/lq-a.qcow2").unwrap(), None);
    c.create_new("/lq-a.qcow2", 0o600).unwrap();
    let st = c.stat("/lq-a.qcow2").unwrap().expect("created");
    assert_eq!((st.size, st.mode & 0o777), (0, 0o600));
    assert!(nfs.export_local().join("lq-a.qcow2").exists(), "the file is on the server's disk");
    assert!(matches!(c.create_new("/lq-a.qcow2", 0o600), Err(StorageError::AlreadyExists(_))));
    assert!(c.unlink("/lq-a.qcow2").unwrap());
    assert!(!c.unlink("/lq-a.qcow2").unwrap(), "removing what is gone succeeds, saying so");
    assert!(!nfs.export_local().join("lq-a.qcow2").exists());
    for bad in ["lq-a", "/../etc/passwd", "/a/../../b"] {
        assert!(matches!(c.stat(bad), Err(StorageError::InvalidArgument(_))), "{bad}");
    }
}

#[test]
fn a_wrong_export_or_a_dead_server_is_refused_with_the_reason() {
    let nfs = Ganesha::start().unwrap();
    let missing = NfsExport::new("127.0.0.1", "/no/such/export").unwrap().with_ports(nfs.nfs_port, nfs.mount_port);
    let err = NfsClient::mount(&missing, Duration::from_secs(5)).expect_err("mounted an export that does not exist");
    assert!(err.to_string().contains("127.0.0.1:/no/such/export"), "{err}");

    let port = free_port().unwrap();
    let dead = NfsExport::new("127.0.0.1", "/srv").unwrap().with_ports(port, port);
    let start = Instant::now();
    let err = NfsClient::mount(&dead, Duration::from_secs(2)).expect_err("mounted a server that is not there");
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "refused connections fail fast: {:?}", start.elapsed());
}

#[test]
fn a_frozen_server_costs_the_timeout_not_a_hung_thread() {
    let nfs = Ganesha::start().unwrap();
    let mut c = NfsClient::mount(&export_of(&nfs), Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}\n{}", nfs.log_tail()));
    c.fs_stat().unwrap();
    nfs.pause();
    let start = Instant::now();
    let err = c.fs_stat().expect_err("a frozen server answered");
    let took = start.elapsed();
    nfs.resume();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(8), "gave up after {took:?}");
    let mut again = NfsClient::mount(&export_of(&nfs), Duration::from_secs(5)).unwrap();
    again.fs_stat().expect("the server answers again once thawed");
}

#[test]
fn directory_listing_renames_and_reads_through_libnfs() {
    let nfs = Ganesha::start().unwrap();
    let mut c = NfsClient::mount(&export_of(&nfs), Duration::from_secs(5)).unwrap();
    for name in ["a", "b", "c"] {
        let path = nfs.export_local().join(format!("{name}.qcow2"));
        let out = std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&path).arg("1G").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for round in 0..3 {
        let mut names: Vec<String> = c.read_dir("/").unwrap().into_iter().map(|e| e.name).filter(|n| !n.starts_with('.')).collect();
        names.sort();
        assert_eq!(names, ["a.qcow2", "b.qcow2", "c.qcow2"], "round {round}");
        use std::io::Read;
        let mut header = [0u8; 4];
        c.open_read("/b.qcow2").unwrap().expect("exists").read_exact(&mut header).unwrap();
        assert_eq!(&header, b"QFI\xfb");
    }
    c.rename("/c.qcow2", "/d.qcow2").unwrap();
    assert!(c.stat("/c.qcow2").unwrap().is_none() && c.stat("/d.qcow2").unwrap().is_some());
    assert!(c.open_read("/c.qcow2").unwrap().is_none());
}
