//! Quiesced snapshots with a real guest (the recipe's TCG guest with
//! qemu-guest-agent and an ext4 data disk): how long the guest stays frozen
//! when the node snapshots one of its volumes through QEMU (the node's own
//! measure, freeze request to thaw answer), and the whole call against
//! `virsh snapshot-create-as --disk-only --quiesce` of the guest's data disk
//! on the same domain (libvirt freezes, snapshots externally, thaws).
//! Interleaved, the order rotating.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, ensure};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::{Guest, GuestImage, GuestOptions, Libvirtd};

use crate::measure::{Stats, time_once};
use crate::node::BenchNode;

const MIB: u64 = 1 << 20;
const DOMAIN: &str = "lq-bench-quiesce";

pub struct Figures {
    pub frozen: Stats,
    pub ours: Stats,
    pub virsh: Stats,
}

pub fn run(rt: &tokio::runtime::Runtime, libvirtd: &Libvirtd, work: &Path, samples: usize) -> anyhow::Result<Figures> {
    let root = work.join("quiesce");
    std::fs::create_dir_all(&root)?;
    let image = GuestImage::build(&root.join("guest"), &GuestOptions::default()).context("building the guest")?;
    let guest = Guest::boot(libvirtd, &image, DOMAIN, "").context("booting the guest")?;
    let uri = libvirtd.uri().to_owned();
    let mut node = rt.block_on(BenchNode::start_with(&root, |c| c.libvirt_uri = uri))?;
    let pool = rt.block_on(node.init_pool("quiesce"))?;
    let volume = rt.block_on(node.create_as(&pool, 256 * MIB, pb::VolumeFormat::Qcow2))?;
    let attach = pb::NodeAttachVolumeRequest {
        pool_id: pool.clone(),
        volume_id: volume.volume_id.clone(),
        domain: DOMAIN.into(),
        bus: pb::DiskBus::Scsi as i32,
        read_only: false,
    };
    rt.block_on(node.client().attach_volume(attach))?;
    let dev = guest.disk_by_serial(&volume.volume_id)?;
    guest.exec_ok(&["dd", "if=/dev/urandom", &format!("of={dev}"), "bs=1M", "count=64", "oflag=direct"])?;

    let mut figures = Figures { frozen: Stats::default(), ours: Stats::default(), virsh: Stats::default() };
    for i in 0..samples {
        let mut ours = || {
            time_once(|| {
                let req = pb::CreateDomainSnapshotRequest {
                    domain: DOMAIN.into(),
                    volumes: vec![pb::DomainVolume { pool_id: pool.clone(), volume_id: volume.volume_id.clone() }],
                    name: format!("q{i}"),
                    quiesce: pb::Quiesce::Required as i32,
                };
                let taken = rt.block_on(node.client().create_domain_snapshot(req))?.into_inner();
                ensure!(taken.quiesced, "not quiesced: {}", taken.not_quiesced_reason);
                figures.frozen.push(taken.frozen_ms as f64);
                Ok(())
            })
        };
        let overlay = root.join(format!("virsh-{i}.qcow2"));
        let virsh = || {
            time_once(|| {
                let out = Command::new("virsh")
                    .args(["-c", libvirtd.uri(), "snapshot-create-as", DOMAIN, &format!("v{i}"), "--disk-only", "--quiesce", "--atomic", "--no-metadata"])
                    .args(["--diskspec", &format!("sda,snapshot=external,file={}", overlay.display())])
                    .args(["--diskspec", "sdb,snapshot=no"])
                    .output()?;
                ensure!(out.status.success(), "virsh snapshot-create-as: {}", String::from_utf8_lossy(&out.stderr));
                Ok(())
            })
        };
        if i % 2 == 0 {
            let t = ours()?;
            figures.ours.push(t);
            figures.virsh.push(virsh()?);
        } else {
            figures.virsh.push(virsh()?);
            let t = ours()?;
            figures.ours.push(t);
        }
    }
    drop(guest);
    rt.block_on(node.stop())?;
    Ok(figures)
}
