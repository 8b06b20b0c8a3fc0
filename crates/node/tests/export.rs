//! A volume exported for another node to pull (the data path of a move
//! between nodes): qemu-nbd on the node's address with TLS keyed by a
//! one-use key, pulled through the node API into another pool (here of the
//! same node, over loopback). Only the right key reads it (no plaintext,
//! no other key), the key is on no command line, a linked clone arrives
//! flattened, the volume is held while exported, and the export ends when
//! asked or when its lifetime is up.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestNode, finish, new_id, spec};
use limiquantix_api::v1 as pb;
use tonic::Code;

const MIB: u64 = 1 << 20;

fn key() -> String {
    uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string()
}

fn remote(export: &pb::ExportVolumeResponse, volume_id: &str, identity: &str, key: &str) -> Option<pb::VolumeSource> {
    Some(pb::VolumeSource {
        source: Some(pb::volume_source::Source::Remote(pb::RemoteSource {
            host: export.host.clone(),
            port: export.port,
            volume_id: volume_id.into(),
            psk_identity: identity.into(),
            psk_key: key.into(),
            size_bytes: export.size_bytes,
        })),
    })
}

fn listening(port: u32) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_ok()
}

#[test]
fn an_exported_volume_is_pulled_with_its_key_only() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut node = TestNode::start(root.path()).await;
        let (p, q) = (node.init_local_pool("p").await, node.init_local_pool("q").await);
        let base = new_id();
        let req = pb::NodeCreateVolumeRequest { pool_id: p.clone(), volume_id: base.clone(), spec: spec(64 * MIB), source: None };
        let base_info = finish(node.client.create_volume(req).await).await.1.unwrap();
        assert!(Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x21 0 8M", &base_info.location]).output().unwrap().status.success());
        let linked = new_id();
        let clone = Some(pb::VolumeSource {
            source: Some(pb::volume_source::Source::Clone(pb::CloneSource { source_volume_id: base.clone(), mode: pb::CloneMode::Linked as i32 })),
        });
        let req = pb::NodeCreateVolumeRequest { pool_id: p.clone(), volume_id: linked.clone(), spec: None, source: clone };
        let linked_info = finish(node.client.create_volume(req).await).await.1.unwrap();
        assert!(Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x42 16M 4M", &linked_info.location]).output().unwrap().status.success());

        let (export_id, secret) = (new_id(), key());
        let export = |lifetime_seconds: u32, export_id: &str, secret: &str| pb::ExportVolumeRequest {
            pool_id: p.clone(),
            volume_id: linked.clone(),
            export_id: export_id.into(),
            psk_identity: "move-1".into(),
            psk_key: secret.into(),
            lifetime_seconds,
        };
        let e = node.client.export_volume(export(0, &export_id, &secret)).await.unwrap().into_inner();
        assert_eq!((e.host.as_str(), e.size_bytes), ("127.0.0.1", 64 * MIB), "on the node's address: {e:?}");
        let again = node.client.export_volume(export(0, &export_id, &secret)).await.unwrap().into_inner();
        assert_eq!(again, e, "a retried call gets the running export");

        // The key is on no command line while the export runs.
        let argv: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|d| std::fs::read(d.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .collect();
        assert!(argv.iter().any(|a| a.contains("qemu-nbd")), "the export runs");
        assert!(!argv.iter().any(|a| a.contains(&secret)), "no argv holds the key");
        // No plaintext NBD client gets in.
        let plain = Command::new("qemu-img")
            .args(["info", "--image-opts", &format!("driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={},export={linked}", e.port)])
            .output()
            .unwrap();
        assert!(!plain.status.success(), "plaintext refused");
        // Held while exported.
        let err = node.client.delete_volume(pb::NodeDeleteVolumeRequest { pool_id: p.clone(), volume_id: linked.clone(), ..Default::default() }).await.unwrap_err();
        assert_eq!(err.code(), Code::Aborted, "{err:?}");

        // Another key is refused and leaves nothing in the target pool.
        let pulled = new_id();
        let wrong = pb::NodeCreateVolumeRequest { pool_id: q.clone(), volume_id: pulled.clone(), spec: None, source: remote(&e, &linked, "move-1", &key()) };
        let (_, result) = finish(node.client.create_volume(wrong).await).await;
        assert!(result.is_err(), "a wrong key reads nothing");
        assert!(std::fs::read_dir(root.path().join("pools/q")).unwrap().next().is_none(), "nothing left in q");

        // The right key: a flattened copy with the base's data and its own.
        let right = pb::NodeCreateVolumeRequest { pool_id: q.clone(), volume_id: pulled.clone(), spec: None, source: remote(&e, &linked, "move-1", &secret) };
        let copy = finish(node.client.create_volume(right).await).await.1.unwrap();
        assert!(copy.backing_volume_id.is_empty() && copy.size_bytes == 64 * MIB, "{copy:?}");
        let same = Command::new("qemu-img").args(["compare", "-f", "qcow2", "-F", "qcow2", &linked_info.location, &copy.location]).output().unwrap();
        assert!(same.status.success(), "{}", String::from_utf8_lossy(&same.stdout));
        assert!(!root.path().join("state/pulls").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false), "the pull's key is gone");

        // Ended: the port closes, the key goes, the volume is free again.
        node.client.end_export(pb::EndExportRequest { export_id: export_id.clone() }).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while listening(e.port) {
            assert!(Instant::now() < deadline, "the export still listens");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!root.path().join(format!("state/exports/{export_id}")).exists());

        // An export whose lifetime ends by itself.
        let short = node.client.export_volume(export(1, &new_id(), &key())).await.unwrap().into_inner();
        let deadline = Instant::now() + Duration::from_secs(10);
        while listening(short.port) {
            assert!(Instant::now() < deadline, "the export outlived its lifetime");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        node.client.delete_volume(pb::NodeDeleteVolumeRequest { pool_id: p.clone(), volume_id: linked.clone(), ..Default::default() }).await.unwrap();

        // Refused: a short key, an export id that is not a UUID.
        for (id, k) in [(new_id(), "abc".to_owned()), ("../x".to_owned(), key())] {
            let mut bad = export(0, &id, &k);
            bad.volume_id = base.clone();
            assert_eq!(node.client.export_volume(bad).await.unwrap_err().code(), Code::InvalidArgument);
        }
    });
}
