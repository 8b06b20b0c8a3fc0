//! The userspace iSCSI initiator against a real tgt on loopback: discovery,
//! LUNs with sizes and world-wide names that follow the disk when LUNs are
//! renumbered, and refusals that say what is wrong (CHAP, target, portal,
//! a frozen target) within the timeout; portals tried in order; mutual CHAP
//! checked against the target's own secret.

use std::time::{Duration, Instant};

use limiquantix_storage::StorageError;
use limiquantix_storage::backends::iscsi::client::{IscsiSession, Login, discover};
use limiquantix_storage::backends::iscsi::config::{Chap, IscsiName, Portal};
use limiquantix_testkit::tgt::{CHAP_USER, MUTUAL_CHAP_USER, TARGET};
use limiquantix_testkit::{Tgt, free_port};

const MIB: u64 = 1 << 20;

fn initiator() -> IscsiName {
    IscsiName::parse("iqn.2024-01.io.limiquantix.test:node1").unwrap()
}

#[test]
fn luns_are_listed_with_sizes_and_names_that_follow_the_disk() {
    let tgt = Tgt::start(&[64, 32]).unwrap();
    let portal = Portal::parse(&tgt.portal()).unwrap();
    let found = discover(&portal, &initiator(), Duration::from_secs(5)).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].name, TARGET);
    assert!(found[0].portals.iter().any(|p| p.starts_with(&tgt.portal())), "{found:?}");

    let target = IscsiName::parse(TARGET).unwrap();
    let chap = Chap::new(CHAP_USER, tgt.chap_secret()).unwrap();
    let portals = [portal.clone()];
    let login = Login { portals: &portals, target: &target, initiator: &initiator(), chap: Some(&chap), timeout: Duration::from_secs(5) };
    let mut s = IscsiSession::login(&login).unwrap();
    assert_eq!(s.report_luns().unwrap(), [0, 1, 2]);
    let controller = s.lun_info(0).unwrap();
    assert!(!controller.is_disk(), "{controller:?}");
    let one = s.lun_info(1).unwrap();
    assert_eq!((one.size_bytes, one.block_size, one.is_disk()), (64 * MIB, 512, true), "{one:?}");
    assert_eq!(one.wwn.as_deref(), Some(tgt.disk_wwn(1).as_str()));
    let two = s.lun_info(2).unwrap();
    assert_eq!((two.size_bytes, two.wwn.as_deref()), (32 * MIB, Some(tgt.disk_wwn(2).as_str())));
    assert_ne!(one.wwn, two.wwn);
    drop(s);

    // The array renumbers: each disk keeps its name under its new number.
    tgt.swap_luns(1, 2).unwrap();
    let mut s = IscsiSession::login(&login).unwrap();
    let now_one = s.lun_info(1).unwrap();
    assert_eq!((now_one.size_bytes, now_one.wwn.as_deref()), (32 * MIB, Some(tgt.disk_wwn(2).as_str())));
    let now_two = s.lun_info(2).unwrap();
    assert_eq!((now_two.size_bytes, now_two.wwn.as_deref()), (64 * MIB, Some(tgt.disk_wwn(1).as_str())));
    // A LUN that is not there.
    let missing = s.lun_info(9).unwrap_err();
    assert!(matches!(missing, StorageError::NotFound(_)) && missing.to_string().contains("no LUN 9"), "{missing}");
}

#[test]
fn wrong_chap_unknown_target_dead_portal_and_frozen_target_say_what_is_wrong() {
    let tgt = Tgt::start(&[16]).unwrap();
    let portal = Portal::parse(&tgt.portal()).unwrap();
    let target = IscsiName::parse(TARGET).unwrap();
    let timeout = Duration::from_secs(2);
    let login = |chap: Option<&Chap>, target: &IscsiName, portal: &Portal| {
        IscsiSession::login(&Login { portals: std::slice::from_ref(portal), target, initiator: &initiator(), chap, timeout })
    };

    let wrong = Chap::new(CHAP_USER, "not-the-secret-at-all").unwrap();
    for chap in [Some(&wrong), None] {
        let err = login(chap, &target, &portal).unwrap_err();
        assert!(matches!(err, StorageError::PermissionDenied(_)) && err.to_string().contains(TARGET), "{err}");
        assert!(!err.to_string().contains(tgt.chap_secret()));
    }
    let right = Chap::new(CHAP_USER, tgt.chap_secret()).unwrap();
    let other = IscsiName::parse("iqn.2024-01.io.limiquantix.test:nope").unwrap();
    assert!(matches!(login(Some(&right), &other, &portal).unwrap_err(), StorageError::NotFound(_)));

    let dead = Portal::parse(&format!("127.0.0.1:{}", free_port().unwrap())).unwrap();
    let started = Instant::now();
    let err = login(Some(&right), &target, &dead).unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)) && err.to_string().contains(&dead.address()), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    tgt.pause();
    let started = Instant::now();
    let err = login(Some(&right), &target, &portal).unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(6), "answered in {:?}", started.elapsed());
    tgt.resume();
    let mut s = login(Some(&right), &target, &portal).unwrap();
    assert_eq!(s.lun_info(1).unwrap().size_bytes, 16 * MIB, "the target answers again");
}

#[test]
fn a_dead_portal_is_passed_over_for_the_next_and_all_dead_names_each() {
    let tgt = Tgt::start(&[16]).unwrap();
    let live = Portal::parse(&tgt.portal()).unwrap();
    let dead = Portal::parse(&format!("127.0.0.1:{}", free_port().unwrap())).unwrap();
    let dead2 = Portal::parse(&format!("127.0.0.1:{}", free_port().unwrap())).unwrap();
    let target = IscsiName::parse(TARGET).unwrap();
    let chap = Chap::new(CHAP_USER, tgt.chap_secret()).unwrap();
    let login = |portals: &[Portal]| {
        IscsiSession::login(&Login { portals, target: &target, initiator: &initiator(), chap: Some(&chap), timeout: Duration::from_secs(2) })
    };
    let mut s = login(&[dead.clone(), live.clone()]).unwrap();
    assert_eq!(s.portal(), &live, "the session went through the portal that answered");
    assert_eq!(s.lun_info(1).unwrap().size_bytes, 16 * MIB);
    drop(s);
    assert_eq!(login(&[live.clone(), dead.clone()]).unwrap().portal(), &live, "the first that answers is used");

    let err = login(&[dead.clone(), dead2.clone()]).unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains(&dead.address()) && err.to_string().contains(&dead2.address()), "{err}");

    // A refusal is the answer: the next portal is not asked to be talked into it.
    let wrong = Chap::new(CHAP_USER, "not-the-secret-at-all").unwrap();
    let err = IscsiSession::login(&Login {
        portals: &[live.clone(), dead],
        target: &target,
        initiator: &initiator(),
        chap: Some(&wrong),
        timeout: Duration::from_secs(2),
    })
    .unwrap_err();
    assert!(matches!(err, StorageError::PermissionDenied(_)), "{err}");
}

#[test]
fn mutual_chap_logs_in_only_when_the_target_proves_its_secret() {
    let tgt = Tgt::start(&[16]).unwrap();
    let portals = [Portal::parse(&tgt.portal()).unwrap()];
    let target = IscsiName::parse(TARGET).unwrap();
    let login = |chap: &Chap| {
        IscsiSession::login(&Login { portals: &portals, target: &target, initiator: &initiator(), chap: Some(chap), timeout: Duration::from_secs(2) })
    };
    let chap = || Chap::new(CHAP_USER, tgt.chap_secret()).unwrap();
    let expecting = |user: &str, secret: &str| chap().with_mutual(Chap::new(user, secret).unwrap()).unwrap();

    // A target with no secret of its own refuses the login (tgt answers
    // Authentication failure): the error says where to look.
    let err = login(&expecting(MUTUAL_CHAP_USER, "the-arrays-secret")).unwrap_err();
    assert!(matches!(err, StorageError::PermissionDenied(_)) && err.to_string().contains("mutual CHAP"), "{err}");

    let secret = tgt.add_mutual_chap().unwrap();
    let mut s = login(&expecting(MUTUAL_CHAP_USER, &secret)).unwrap();
    assert_eq!(s.lun_info(1).unwrap().size_bytes, 16 * MIB);
    drop(s);
    for (user, given) in [(MUTUAL_CHAP_USER, "not-the-arrays-secret"), ("someone-else", secret.as_str())] {
        let err = login(&expecting(user, given)).unwrap_err();
        assert!(matches!(err, StorageError::PermissionDenied(_)) && err.to_string().contains("mutual CHAP"), "{err}");
        assert!(!err.to_string().contains(tgt.chap_secret()) && !err.to_string().contains(secret.as_str()));
    }
    // One-way CHAP still works against the same target.
    assert!(login(&chap()).is_ok());
}
