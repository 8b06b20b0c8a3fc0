//! The typed iscsiadm with a node database of the test's own (a temp dir
//! bind-mounted on /etc/iscsi in a private mount namespace, and a private
//! network namespace so no host iscsid can be reached): records made with
//! CHAP (and mutual CHAP) whose secrets iscsiadm reads from the record, never
//! from argv; login
//! needs the kernel initiator this machine lacks (argv level only).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use limiquantix_storage::StorageError;
use limiquantix_storage::backends::iscsi::config::{Chap, IscsiName, Portal};
use limiquantix_storage::tools::iscsiadm::Iscsiadm;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn node_records_carry_chap_without_argv_and_delete_is_idempotent() {
    limiquantix_testkit::private_network().unwrap();
    limiquantix_testkit::private_mounts().unwrap();
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("initiatorname.iscsi"), "InitiatorName=iqn.2024-01.io.limiquantix.test:node1\n").unwrap();
    run(Command::new("mount").arg("--bind").arg(etc.path()).arg("/etc/iscsi"));
    run(Command::new("mount").args(["-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/run/lock"]));

    let target = IscsiName::parse("iqn.2024-01.io.limiquantix.test:tgt1").unwrap();
    let portal = Portal::parse("127.0.0.1:3260").unwrap();
    let chap = Chap::new("lquser", "a secret with = and # in it").unwrap();
    let adm = Iscsiadm { timeout: Duration::from_secs(30), ..Default::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        adm.add_node(&target, &portal, Some(&chap)).await.unwrap();
        let record = adm.record_file(&target, &portal);
        assert!(record.starts_with("/etc/iscsi/nodes") && etc.path().join("nodes").exists(), "in the private database");
        assert_eq!(std::fs::metadata(&record).unwrap().permissions().mode() & 0o777, 0o600);
        // iscsiadm reads the secret from the record, intact.
        let shown = run(Command::new("iscsiadm").args(["-m", "node", "-T", target.as_str(), "-p", "127.0.0.1:3260", "-S"]));
        for want in ["node.session.auth.authmethod = CHAP", "node.session.auth.username = lquser", "node.session.auth.password = a secret with = and # in it", "node.startup = manual"] {
            assert!(shown.contains(want), "{want} in {shown}");
        }

        // Mutual CHAP: the target's user and secret, read from the record too.
        let other = IscsiName::parse("iqn.2024-01.io.limiquantix.test:tgt2").unwrap();
        let mutual = Chap::new("lquser", "the initiator's secret").unwrap().with_mutual(Chap::new("lqarray", "the array's own = secret").unwrap()).unwrap();
        adm.add_node(&other, &portal, Some(&mutual)).await.unwrap();
        let shown = run(Command::new("iscsiadm").args(["-m", "node", "-T", other.as_str(), "-p", "127.0.0.1:3260", "-S"]));
        for want in [
            "node.session.auth.password = the initiator's secret",
            "node.session.auth.username_in = lqarray",
            "node.session.auth.password_in = the array's own = secret",
        ] {
            assert!(shown.contains(want), "{want} in {shown}");
        }
        adm.delete_node(&other, &portal).await.unwrap();

        // This kernel has no iSCSI initiator: login fails, saying which target.
        let err = adm.login(&target, &portal).await.unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)) && err.to_string().contains(target.as_str()), "{err}");

        adm.delete_node(&target, &portal).await.unwrap();
        assert!(!record.exists());
        adm.delete_node(&target, &portal).await.unwrap();
    });
}
