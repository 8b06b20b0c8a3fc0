//! `lqctl node --addr URL ...`: pools, volumes and snapshots on one node.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_storage_client::NodeStorageClient;
use tonic::Status;
use tonic::transport::Channel;

use crate::common::{
    Bus, Format, ImageFormat, PageArgs, PoolConfigArgs, bus_pb, image_format_pb, new_id, progress_bar, provisioning_pb, read_file,
    show_progress, volume_spec,
};
use crate::control::{Clients, ClusterNodeCommand};
use crate::output::{AttachInfoView, NodeInfoView, OutputFormat, PoolView, SnapshotView, VolumeView, emit, print_list, print_one};
use crate::session::Session;
use crate::units::parse_size;

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node daemon's gRPC address (for the direct commands).
    #[arg(long, env = "LQ_NODE_ADDR", default_value = "http://127.0.0.1:7701")]
    addr: String,
    /// With an https address: the node's id, which its certificate must
    /// name (see `lqctl node list`).
    #[arg(long)]
    node_id: Option<String>,
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum NodeCommand {
    #[command(flatten)]
    Cluster(ClusterNodeCommand),
    /// Host name, version and the pool kinds the node supports.
    Info,
    /// Pools on this node.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Volumes in a pool of this node.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Snapshots of a volume on this node.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum PoolCommand {
    /// Initialise a pool on the node (idempotent for the same id and config).
    Init {
        /// Pool id (a UUID); a new one is generated if omitted.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        backend: Box<PoolConfigArgs>,
    },
    /// The pools this node has, with their state and capacity.
    List,
    /// One pool's state and capacity on this node.
    Info {
        /// The pool's id.
        pool: String,
        /// Also count the volumes and sum their sizes (reads every volume).
        #[arg(long)]
        count: bool,
    },
    /// Forget the pool on this node. Volumes are kept.
    Destroy {
        /// The pool's id.
        pool: String,
    },
}

#[derive(Debug, Args)]
struct PoolArg {
    /// The pool's id.
    #[arg(long)]
    pool: String,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum VolumeCommand {
    /// Create an empty volume.
    Create {
        #[command(flatten)]
        pool: PoolArg,
        /// Volume id (a UUID); a new one is generated if omitted.
        #[arg(long)]
        id: Option<String>,
        /// Virtual size, e.g. 10G.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Disk format (default: the pool's, qcow2 where supported).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Reserve the space up front.
        #[arg(long)]
        thick: bool,
    },
    /// The volumes of a pool, a page at a time.
    List {
        #[command(flatten)]
        pool: PoolArg,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One volume.
    Info {
        #[command(flatten)]
        pool: PoolArg,
        /// The volume's id.
        volume: String,
    },
    /// Grow a volume (volumes never shrink).
    Resize {
        #[command(flatten)]
        pool: PoolArg,
        /// The volume's id.
        volume: String,
        /// The new virtual size, e.g. 20G.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// The running VM (libvirt domain) the volume is attached to: it then
        /// grows through libvirt so the guest sees the new size.
        #[arg(long)]
        live_domain: Option<String>,
    },
    /// Clone a volume: linked (copy-on-write) by default, --full for a copy.
    Clone {
        #[command(flatten)]
        pool: PoolArg,
        /// The id of the volume to clone.
        source: String,
        /// The clone's id (a UUID); a new one is generated if omitted.
        #[arg(long)]
        id: Option<String>,
        /// An independent full copy instead of a linked clone.
        #[arg(long)]
        full: bool,
        /// Grow the clone to this size.
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Format of a full clone (default: the source's).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Delete a volume and its data.
    Delete {
        #[command(flatten)]
        pool: PoolArg,
        /// The volume's id.
        volume: String,
    },
    /// Make a linked clone independent of its base.
    Flatten {
        #[command(flatten)]
        pool: PoolArg,
        /// The volume's id.
        volume: String,
    },
    /// Import a disk image file that is on the node, under an import directory.
    Import {
        #[command(flatten)]
        pool: PoolArg,
        /// Volume id (a UUID); a new one is generated if omitted.
        #[arg(long)]
        id: Option<String>,
        /// Path of the image on the node.
        #[arg(long)]
        file: PathBuf,
        /// The image's format (checked against its content).
        #[arg(long, value_enum)]
        image_format: ImageFormat,
        /// Format of the new volume (default qcow2).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Grow the volume to this size (default: the image's virtual size).
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
    },
    /// The libvirt <disk> XML to attach the volume to a VM.
    AttachInfo {
        #[command(flatten)]
        pool: PoolArg,
        /// The volume's id.
        volume: String,
        /// The bus the guest sees the disk on.
        #[arg(long, value_enum, default_value = "scsi")]
        bus: Bus,
        /// Targets the domain already uses, e.g. --used sda --used sdb.
        #[arg(long)]
        used: Vec<String>,
        /// A file with the domain's XML (virsh dumpxml); its disk targets are avoided.
        #[arg(long)]
        domain_xml: Option<PathBuf>,
        /// The VM may only read the disk (the way to use a base of linked clones).
        #[arg(long)]
        read_only: bool,
    },
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum SnapshotCommand {
    /// Take a snapshot of a volume.
    Create {
        #[command(flatten)]
        pool: PoolArg,
        /// The volume's id.
        volume: String,
        /// The snapshot's name.
        name: String,
    },
    /// A volume's snapshots.
    List {
        #[command(flatten)]
        pool: PoolArg,
        /// The volume's id.
        volume: String,
    },
    /// Bring a volume back to a snapshot; what it holds now is lost.
    Revert {
        #[command(flatten)]
        pool: PoolArg,
        /// The volume's id.
        volume: String,
        /// The snapshot's name.
        name: String,
    },
    /// Delete a snapshot (the volume keeps its current data).
    Delete {
        #[command(flatten)]
        pool: PoolArg,
        /// The volume's id.
        volume: String,
        /// The snapshot's name.
        name: String,
    },
}

/// Runs `lqctl node ...`: list, get and drain ask the control plane, the
/// rest ask the node daemon at --addr.
pub async fn run(args: NodeArgs, session: &Session, out: OutputFormat) -> anyhow::Result<()> {
    let command = match args.command {
        NodeCommand::Cluster(cmd) => return Clients::connect(cmd.target(), session, out).await?.node(cmd).await,
        direct => direct,
    };
    let channel = session.node(&args.addr, args.node_id.as_deref()).await?;
    let mut client = NodeStorageClient::new(channel).max_decoding_message_size(64 << 20);
    match command {
        NodeCommand::Info => {
            let info = client.get_node_info(pb::GetNodeInfoRequest {}).await?.into_inner();
            print_one(out, &NodeInfoView::from_pb(&info))
        }
        NodeCommand::Pool(cmd) => pool(&mut client, cmd, out).await,
        NodeCommand::Volume(cmd) => volume(&mut client, cmd, out).await,
        NodeCommand::Snapshot(cmd) => snapshot(&mut client, cmd, out).await,
        NodeCommand::Cluster(_) => unreachable!("answered by the control plane above"),
    }
}

type Client = NodeStorageClient<Channel>;

async fn pool(client: &mut Client, cmd: PoolCommand, out: OutputFormat) -> anyhow::Result<()> {
    match cmd {
        PoolCommand::Init { id, backend } => {
            let req = pb::InitStoragePoolRequest { pool_id: new_id(id), config: Some(backend.config()?) };
            let info = client.init_storage_pool(req).await?.into_inner();
            print_one(out, &PoolView::from_pb(&info))
        }
        PoolCommand::List => {
            let pools = client.list_storage_pools(pb::ListStoragePoolsRequest {}).await?.into_inner().pools;
            print_list(out, &pools.iter().map(PoolView::from_pb).collect::<Vec<_>>())
        }
        PoolCommand::Info { pool, count } => {
            let req = pb::GetStoragePoolInfoRequest { pool_id: pool, count_volumes: count };
            let info = client.get_storage_pool_info(req).await?.into_inner();
            print_one(out, &PoolView::from_pb(&info))
        }
        PoolCommand::Destroy { pool } => {
            client.destroy_storage_pool(pb::DestroyStoragePoolRequest { pool_id: pool.clone() }).await?;
            match out {
                OutputFormat::Table => emit(format_args!("pool {pool} forgotten on this node (its volumes are kept)")),
                OutputFormat::Json => emit(serde_json::json!({ "pool_id": pool, "destroyed": true })),
            }
        }
    }
}

/// Reads a volume operation's stream, drawing a progress bar on the terminal
/// for copies, and returns the resulting volume.
async fn follow(stream: tonic::Streaming<pb::VolumeOperationEvent>, out: OutputFormat) -> anyhow::Result<pb::VolumeInfo> {
    let mut stream = stream;
    let mut bar: Option<ProgressBar> = None;
    while let Some(event) = stream.message().await? {
        match event.event {
            Some(pb::volume_operation_event::Event::Progress(p)) if out == OutputFormat::Table => {
                let bar = bar.get_or_insert_with(progress_bar);
                show_progress(bar, &p);
            }
            Some(pb::volume_operation_event::Event::Progress(_)) => {}
            Some(pb::volume_operation_event::Event::Volume(v)) => {
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                return Ok(v);
            }
            None => {}
        }
    }
    Err(Status::unavailable("the node closed the operation without a result").into())
}

async fn volume(client: &mut Client, cmd: VolumeCommand, out: OutputFormat) -> anyhow::Result<()> {
    match cmd {
        VolumeCommand::Create { pool, id, size, format, thick } => {
            let req = pb::NodeCreateVolumeRequest {
                pool_id: pool.pool,
                volume_id: new_id(id),
                spec: Some(volume_spec(Some(size), format, provisioning_pb(thick))),
                source: None,
            };
            let v = follow(client.create_volume(req).await?.into_inner(), out).await?;
            print_one(out, &VolumeView::from_pb(&v))
        }
        VolumeCommand::List { pool, page } => {
            page.print(out, async |page_size, page_token| {
                let req = pb::NodeListVolumesRequest { pool_id: pool.pool.clone(), page_size, page_token };
                let page = client.list_volumes(req).await?.into_inner();
                Ok((page.volumes.iter().map(VolumeView::from_pb).collect(), page.next_page_token))
            })
            .await
        }
        VolumeCommand::Info { pool, volume } => {
            let v = client.get_volume(pb::NodeGetVolumeRequest { pool_id: pool.pool, volume_id: volume }).await?.into_inner();
            print_one(out, &VolumeView::from_pb(&v))
        }
        VolumeCommand::Resize { pool, volume, size, live_domain } => {
            let req = pb::NodeResizeVolumeRequest {
                pool_id: pool.pool,
                volume_id: volume,
                new_size_bytes: size,
                live_domain: live_domain.unwrap_or_default(),
            };
            let v = client.resize_volume(req).await?.into_inner();
            print_one(out, &VolumeView::from_pb(&v))
        }
        VolumeCommand::Clone { pool, source, id, full, size, format } => {
            let mode = if full { pb::CloneMode::Full } else { pb::CloneMode::Linked };
            let req = pb::NodeCloneVolumeRequest {
                pool_id: pool.pool,
                source_volume_id: source,
                volume_id: new_id(id),
                mode: mode as i32,
                spec: Some(volume_spec(size, format, pb::Provisioning::Unspecified)),
            };
            let v = follow(client.clone_volume(req).await?.into_inner(), out).await?;
            print_one(out, &VolumeView::from_pb(&v))
        }
        VolumeCommand::Delete { pool, volume } => {
            client.delete_volume(pb::NodeDeleteVolumeRequest { pool_id: pool.pool, volume_id: volume.clone(), ..Default::default() }).await?;
            match out {
                OutputFormat::Table => emit(format_args!("volume {volume} deleted")),
                OutputFormat::Json => emit(serde_json::json!({ "volume_id": volume, "deleted": true })),
            }
        }
        VolumeCommand::Flatten { pool, volume } => {
            let req = pb::NodeFlattenVolumeRequest { pool_id: pool.pool, volume_id: volume };
            let v = follow(client.flatten_volume(req).await?.into_inner(), out).await?;
            print_one(out, &VolumeView::from_pb(&v))
        }
        VolumeCommand::Import { pool, id, file, image_format, format, size } => {
            let file =
                std::path::absolute(&file).map_err(|e| Status::invalid_argument(format!("invalid path {}: {e}", file.display())))?;
            let source = pb::VolumeSource {
                source: Some(pb::volume_source::Source::Image(pb::ImageSource {
                    path: file.display().to_string(),
                    format: image_format_pb(image_format),
                })),
            };
            let req = pb::NodeCreateVolumeRequest {
                pool_id: pool.pool,
                volume_id: new_id(id),
                spec: Some(volume_spec(size, format, pb::Provisioning::Unspecified)),
                source: Some(source),
            };
            let v = follow(client.create_volume(req).await?.into_inner(), out).await?;
            print_one(out, &VolumeView::from_pb(&v))
        }
        VolumeCommand::AttachInfo { pool, volume, bus, used, domain_xml, read_only } => {
            let domain_xml = match domain_xml {
                Some(p) => read_file(&p)?,
                None => String::new(),
            };
            let req = pb::GetVolumeAttachInfoRequest {
                pool_id: pool.pool,
                volume_id: volume,
                bus: bus_pb(bus),
                used_targets: used,
                domain_xml,
                read_only,
            };
            let info = client.get_volume_attach_info(req).await?.into_inner();
            match out {
                // The XML itself, ready for `virsh attach-device DOMAIN FILE`.
                OutputFormat::Table => emit(info.disk_xml),
                OutputFormat::Json => print_one(
                    out,
                    &AttachInfoView { target_dev: info.target_dev, serial: info.serial, disk_xml: info.disk_xml },
                ),
            }
        }
    }
}

async fn snapshot(client: &mut Client, cmd: SnapshotCommand, out: OutputFormat) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Create { pool, volume, name } => {
            let req = pb::CreateVolumeSnapshotRequest { pool_id: pool.pool, volume_id: volume, name };
            let s = client.create_volume_snapshot(req).await?.into_inner();
            print_one(out, &SnapshotView::from_pb(&s))
        }
        SnapshotCommand::List { pool, volume } => {
            let req = pb::ListVolumeSnapshotsRequest { pool_id: pool.pool, volume_id: volume };
            let snaps = client.list_volume_snapshots(req).await?.into_inner().snapshots;
            print_list(out, &snaps.iter().map(SnapshotView::from_pb).collect::<Vec<_>>())
        }
        SnapshotCommand::Revert { pool, volume, name } => {
            let req = pb::RevertVolumeSnapshotRequest { pool_id: pool.pool, volume_id: volume, name };
            let v = client.revert_volume_snapshot(req).await?.into_inner();
            print_one(out, &VolumeView::from_pb(&v))
        }
        SnapshotCommand::Delete { pool, volume, name } => {
            let req = pb::DeleteVolumeSnapshotRequest { pool_id: pool.pool, volume_id: volume.clone(), name: name.clone(), domain: String::new() };
            client.delete_volume_snapshot(req).await?;
            match out {
                OutputFormat::Table => emit(format_args!("snapshot {name} of volume {volume} deleted")),
                OutputFormat::Json => emit(serde_json::json!({ "volume_id": volume, "snapshot": name, "deleted": true })),
            }
        }
    }
}
