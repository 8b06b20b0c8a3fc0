//! Storage vMotion side by side: a 1 GiB qcow2 disk holding 256 MiB of data,
//! attached to a running (TCG) domain of a private libvirtd, moved between
//! two pools of the node through its gRPC API (mirror, pivot, the source
//! deleted) against a bare `virsh blockcopy --wait --pivot` of a disk with
//! the same data on the same domain. Interleaved, the order rotating.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, ensure};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::Libvirtd;
use limiquantix_testkit::libvirt::minimal_domain;

use crate::measure::{Stats, time_once};
use crate::node::BenchNode;

const MIB: u64 = 1 << 20;
const DOMAIN: &str = "lq-bench-live";

pub fn run(rt: &tokio::runtime::Runtime, libvirtd: &Libvirtd, work: &Path, samples: usize) -> anyhow::Result<(Stats, Stats)> {
    let root = work.join("live");
    std::fs::create_dir_all(&root)?;
    let uri = libvirtd.uri().to_owned();
    let mut node = rt.block_on(BenchNode::start_with(&root, |c| c.libvirt_uri = uri))?;
    let pools = [rt.block_on(node.init_pool("live-a"))?, rt.block_on(node.init_pool("live-b"))?];
    let volume = rt.block_on(node.create_as(&pools[0], 1024 * MIB, pb::VolumeFormat::Qcow2))?;
    crate::node_bench::write_data(Path::new(&volume.location), 256 * MIB)?;
    let virsh_dir = root.join("virsh");
    std::fs::create_dir_all(&virsh_dir)?;
    let mut virsh_disk = virsh_dir.join("disk-0.qcow2");
    std::fs::copy(&volume.location, &virsh_disk)?;
    libvirtd.create_domain(&minimal_domain(DOMAIN, "")).context("the benchmark's domain")?;
    let attach = pb::NodeAttachVolumeRequest {
        pool_id: pools[0].clone(),
        volume_id: volume.volume_id.clone(),
        domain: DOMAIN.into(),
        bus: pb::DiskBus::Scsi as i32,
        read_only: false,
    };
    rt.block_on(node.client().attach_volume(attach))?;
    let disk_xml = virsh_dir.join("disk.xml");
    std::fs::write(
        &disk_xml,
        format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/><source file='{}'/><target dev='sdy' bus='scsi'/></disk>",
            virsh_disk.display()
        ),
    )?;
    libvirtd.virsh(&["attach-device", DOMAIN, disk_xml.to_str().context("path")?, "--live"])?;

    let (mut ours, mut virsh) = (Stats::default(), Stats::default());
    for i in 0..samples {
        let (from, to) = (&pools[i % 2], &pools[(i + 1) % 2]);
        let next = virsh_dir.join(format!("disk-{}.qcow2", i + 1));
        let our_move = || {
            time_once(|| {
                rt.block_on(async {
                    let req = pb::NodeLiveCopyRequest {
                        pool_id: to.clone(),
                        volume_id: volume.volume_id.clone(),
                        from_pool_id: from.clone(),
                        domain: DOMAIN.into(),
                        format: 0,
                    };
                    let moved = node.finish(node.client().live_copy_volume(req).await?.into_inner()).await?;
                    ensure!(moved.pool_id == *to, "the volume did not move");
                    node.client().delete_volume(pb::NodeDeleteVolumeRequest { pool_id: from.clone(), volume_id: volume.volume_id.clone(), ..Default::default() }).await?;
                    Ok(())
                })
            })
        };
        let bare_move = || {
            time_once(|| {
                let out = Command::new("virsh")
                    .args(["-c", libvirtd.uri(), "blockcopy", DOMAIN, "sdy"])
                    .arg(&next)
                    .args(["--wait", "--pivot", "--format", "qcow2"])
                    .output()?;
                ensure!(out.status.success(), "virsh blockcopy: {}", String::from_utf8_lossy(&out.stderr));
                Ok(())
            })
        };
        if i % 2 == 0 {
            ours.push(our_move()?);
            virsh.push(bare_move()?);
        } else {
            virsh.push(bare_move()?);
            ours.push(our_move()?);
        }
        std::fs::remove_file(&virsh_disk)?;
        virsh_disk = next;
    }
    let _ = libvirtd.virsh(&["destroy", DOMAIN]);
    rt.block_on(node.stop())?;
    Ok((ours, virsh))
}
