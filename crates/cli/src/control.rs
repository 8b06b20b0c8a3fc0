//! lqctl's control-plane commands: pools, volumes, snapshots, tasks, nodes.
//! Mutating commands wait for their task (with a progress bar) unless
//! --no-wait is given; a failed task exits non-zero with its error.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_service_client::NodeServiceClient;
use limiquantix_api::v1::storage_pool_service_client::StoragePoolServiceClient;
use limiquantix_api::v1::task_service_client::TaskServiceClient;
use limiquantix_api::v1::volume_service_client::VolumeServiceClient;
use limiquantix_api::v1::access_service_client::AccessServiceClient;
use tonic::Status;

use crate::common::{
    Bus, Format, ImageFormat, format_pb, PageArgs, PoolConfigArgs, bus_pb, image_format_pb, progress_bar, provisioning_pb, show_progress,
    volume_spec,
};
use crate::output::{
    ApiTokenView, ClusterNodeView, ClusterPoolView, ClusterVolumeView, OutputFormat, PoolMetricsView, ClusterSnapshotView, TaskView, emit, print_list, print_one, report,
};
use crate::session::{Conn, Session};
use crate::units::{parse_duration, parse_size};

// How a command reaches the control plane, and whether it waits (plain
// comment: see PoolConfigArgs).
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The control plane's address [default: the credentials file's, else
    /// http://127.0.0.1:7700].
    #[arg(long, global = true, env = "LQ_SERVER")]
    pub server: Option<String>,
    /// Return as soon as the operation is accepted (print its task id).
    #[arg(long, global = true)]
    pub no_wait: bool,
}

fn label(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("{s:?} is not key=value"))
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum PoolCommand {
    /// Create a pool (a datastore) on its node(s).
    Create(Box<CreatePool>),
    /// The cluster's pools, with their state and capacity.
    List {
        /// Only pools of this kind.
        #[arg(long, value_enum)]
        kind: Option<Kind>,
    },
    /// One pool, with its state and capacity.
    Get {
        /// The pool's name or id.
        pool: String,
    },
    /// Change a pool's description, labels (key=value; key= removes) or overcommit.
    Update {
        /// The pool's name or id.
        pool: String,
        /// The new description.
        #[arg(long)]
        description: Option<String>,
        /// Set a label, key=value, or remove it, key= (repeatable).
        #[arg(long = "label", value_parser = label)]
        labels: Vec<(String, String)>,
        /// The new provisioning limit as a multiple of capacity.
        #[arg(long)]
        overcommit: Option<f64>,
    },
    /// Delete an empty pool (its nodes forget it; nothing is erased).
    Delete {
        /// The pool's name or id.
        pool: String,
    },
    /// Capacity, provisioning and volume counts of a pool.
    Metrics {
        /// The pool's name or id.
        pool: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Local,
    Nfs,
    Ceph,
    Iscsi,
}

#[derive(Debug, Args)]
pub struct CreatePool {
    /// The pool's name: lower-case letters, digits, '.', '_' and '-'.
    name: String,
    /// A pool id (UUID) to make the call retryable; generated if omitted.
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    backend: PoolConfigArgs,
    /// Node(s) to create it on: one for a local pool; shared pools default to every node.
    #[arg(long = "node")]
    nodes: Vec<String>,
    /// A description for people.
    #[arg(long, default_value = "")]
    description: String,
    /// A label, key=value (repeatable).
    #[arg(long = "label", value_parser = label)]
    labels: Vec<(String, String)>,
    /// Provisioning limit as a multiple of capacity: above 1, thin volumes may
    /// promise more space than there is.
    #[arg(long, default_value_t = 1.0)]
    overcommit: f64,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum VolumeCommand {
    /// Create a volume: empty, or a copy of a snapshot.
    Create {
        /// The pool (name or id) to create it in.
        #[arg(long)]
        pool: String,
        /// The volume's name: lower-case letters, digits, '.', '_' and '-'.
        #[arg(long)]
        name: String,
        /// Virtual size, e.g. 10G (a snapshot copy defaults to its snapshot's size).
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Disk format (default: the pool's, qcow2 where supported).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Reserve the space up front.
        #[arg(long)]
        thick: bool,
        /// Make it from a snapshot: VOLUME@SNAPSHOT.
        #[arg(long)]
        from_snapshot: Option<String>,
        /// A label, key=value (repeatable).
        #[arg(long = "label", value_parser = label)]
        labels: Vec<(String, String)>,
        /// A volume id (UUID) to make the call retryable; generated if omitted.
        #[arg(long)]
        id: Option<String>,
    },
    /// The cluster's volumes, a page at a time.
    List {
        /// Only the volumes of this pool (name or id).
        #[arg(long)]
        pool: Option<String>,
        /// Only the volumes in this state.
        #[arg(long, value_enum)]
        state: Option<State>,
        /// Only the volumes whose name starts with this.
        #[arg(long, default_value = "")]
        name_prefix: String,
        /// Only the volumes with this label, key=value (repeatable).
        #[arg(long = "label", value_parser = label)]
        labels: Vec<(String, String)>,
        /// Sort by this column (ties by id); default: by id, the fastest.
        #[arg(long, value_enum)]
        sort: Option<SortBy>,
        /// Largest, newest or last first.
        #[arg(long)]
        desc: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One volume.
    Get {
        /// The volume's name or id.
        volume: String,
    },
    /// Grow a volume (live, through libvirt, when attached).
    Resize {
        /// The volume's name or id.
        volume: String,
        /// The new virtual size, e.g. 20G (volumes never shrink).
        #[arg(long, value_parser = parse_size)]
        size: u64,
    },
    /// Move a volume into another pool, of its node or of another node,
    /// keeping its id and name (a copy, checked, then the source is deleted;
    /// a linked clone arrives flattened). An attached volume moves while its
    /// VM runs, within the VM's node.
    Move {
        /// The volume's name or id.
        volume: String,
        /// The target pool's name or id.
        #[arg(long)]
        pool: String,
        /// The format in the target (default: the volume's own where the pool stores it).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Delete the volume's snapshots with its source (they cannot move with it).
        #[arg(long)]
        drop_snapshots: bool,
    },
    /// Clone: linked (copy-on-write) by default, --full for an independent copy.
    Clone {
        /// The volume to clone (name or id).
        source: String,
        /// The clone's name.
        #[arg(long)]
        name: String,
        /// An independent full copy instead of a linked clone.
        #[arg(long)]
        full: bool,
        /// Grow the clone to this size (default: the source's).
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Format of a full clone (default: the source's).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// A volume id (UUID) to make the call retryable; generated if omitted.
        #[arg(long)]
        id: Option<String>,
    },
    /// Delete a volume and its data.
    Delete {
        /// The volume's name or id.
        volume: String,
    },
    /// Import a disk image that is on a node, under its import directory.
    Import {
        /// The pool (name or id) to import into.
        #[arg(long, required_unless_present = "onto")]
        pool: Option<String>,
        /// The new volume's name.
        #[arg(long, required_unless_present = "onto")]
        name: Option<String>,
        /// Instead of a new volume: write the image over this volume of a
        /// storage array (a direct-mode iSCSI LUN), replacing all it holds.
        #[arg(long, conflicts_with_all = ["pool", "name", "format", "size", "id"], requires = "overwrite")]
        onto: Option<String>,
        /// With --onto: confirms that everything on that volume is replaced.
        #[arg(long, requires = "onto")]
        overwrite: bool,
        /// Path of the image on the node.
        #[arg(long)]
        file: PathBuf,
        /// The image's format (checked against its content).
        #[arg(long, value_enum)]
        image_format: ImageFormat,
        /// The node holding the file (default: a local pool's node).
        #[arg(long)]
        node: Option<String>,
        /// Format of the new volume (default: the pool's, qcow2 where supported).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Grow the volume to this size (default: the image's virtual size).
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// A volume id (UUID) to make the call retryable; generated if omitted.
        #[arg(long)]
        id: Option<String>,
    },
    /// Hot-plug into a running VM (libvirt domain).
    Attach {
        /// The volume's name or id.
        volume: String,
        /// The running VM: its libvirt domain name.
        #[arg(long)]
        vm: String,
        /// The node the VM runs on (default: the volume's node).
        #[arg(long)]
        node: Option<String>,
        /// The bus the guest sees the disk on.
        #[arg(long, value_enum, default_value = "scsi")]
        bus: Bus,
        /// The VM may only read the disk (the way to use a template or a base of linked clones).
        #[arg(long)]
        read_only: bool,
    },
    /// Make a volume a template, for good: never written again, a base to clone from.
    Template {
        /// The volume's name or id.
        volume: String,
    },
    /// Unplug a volume from its VM.
    Detach {
        /// The volume's name or id.
        volume: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SortBy {
    Name,
    Size,
    Created,
    State,
    Pool,
}

impl SortBy {
    fn pb(self) -> pb::VolumeOrder {
        match self {
            Self::Name => pb::VolumeOrder::Name,
            Self::Size => pb::VolumeOrder::Size,
            Self::Created => pb::VolumeOrder::Created,
            Self::State => pb::VolumeOrder::State,
            Self::Pool => pb::VolumeOrder::Pool,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum State {
    Creating,
    Available,
    Attached,
    Resizing,
    Deleting,
    Error,
    /// An image is being written over it.
    Writing,
    /// Being moved into another pool.
    Moving,
}

/// How much a snapshot insists on a frozen guest.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum QuiesceArg {
    /// Refuse when the guest agent does not freeze.
    Required,
    /// Take a crash-consistent snapshot (marked so) when it does not.
    BestEffort,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum SnapshotCommand {
    /// Take a snapshot of a volume (`VOLUME NAME`), or of every volume a VM
    /// has open, at one instant (`--vm VM NAME`). A volume a running VM has
    /// open is snapshotted through the VM.
    Create {
        /// The volume's name or id, then the snapshot's name (with --vm: the snapshot's name only).
        #[arg(num_args = 1..=2, required = true, value_names = ["VOLUME", "NAME"])]
        args: Vec<String>,
        /// Every volume attached read-write to this running VM.
        #[arg(long)]
        vm: Option<String>,
        /// Freeze the guest's filesystems through its guest agent around the
        /// snapshot (application-consistent). `--quiesce` alone refuses when
        /// the agent does not answer; `--quiesce=best-effort` then takes a
        /// crash-consistent snapshot and says so.
        #[arg(long, num_args = 0..=1, default_missing_value = "required", require_equals = true, value_name = "MODE")]
        quiesce: Option<QuiesceArg>,
    },
    /// A volume's snapshots.
    List {
        /// The volume's name or id.
        volume: String,
    },
    /// Bring a volume back to a snapshot; what it holds now is lost.
    Revert {
        /// The volume's name or id.
        volume: String,
        /// The snapshot's name.
        name: String,
    },
    /// Delete a snapshot (the volume keeps its current data).
    Delete {
        /// The volume's name or id.
        volume: String,
        /// The snapshot's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum TaskCommand {
    /// One task: its state, step, progress and error.
    Get {
        /// The task's id.
        task: String,
    },
    /// Tasks, newest first.
    List {
        /// Only the tasks of this volume or pool (its id).
        #[arg(long)]
        resource: Option<String>,
        /// Only the tasks still running.
        #[arg(long)]
        running: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Follow a task to its end, with a progress bar.
    Watch {
        /// The task's id.
        task: String,
    },
    /// Stop a running task; what it did is undone.
    Cancel {
        /// The task's id.
        task: String,
    },
}

// The node commands the control plane answers. `Target` is in each (not
// on `lqctl node`) so the direct node commands do not offer `--server`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ClusterNodeCommand {
    /// The nodes registered with the control plane.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// One registered node.
    Get {
        /// The node's id.
        node: String,
        #[command(flatten)]
        target: Target,
    },
    /// No new volumes, pools or attachments on the node (--undo ends it).
    Drain {
        /// The node's id.
        node: String,
        /// End the drain: the node takes new work again.
        #[arg(long)]
        undo: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Forget a node and refuse its certificate from now on; it can join
    /// again only with a new join token.
    Remove {
        /// The node's id.
        node: String,
        /// Even while pools or attachments use it (a node whose key leaked).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
    /// One-time tokens that let a new node enrol.
    #[command(subcommand)]
    JoinToken(JoinTokenCommand),
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum JoinTokenCommand {
    /// A token for one node: start limiquantix-node with it (LQ_JOIN_TOKEN
    /// or `join_token` in its config). Printed once.
    Create {
        /// How long it stays valid, e.g. 30m, 1h, 2d (at most 7d).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: std::time::Duration,
        #[command(flatten)]
        target: Target,
    },
}

impl ClusterNodeCommand {
    pub fn target(&self) -> &Target {
        match self {
            Self::List { target }
            | Self::Get { target, .. }
            | Self::Drain { target, .. }
            | Self::Remove { target, .. }
            | Self::JoinToken(JoinTokenCommand::Create { target, .. }) => target,
        }
    }
}

// API tokens: who may use the API, as admin or viewer.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum TokenCommand {
    /// A new token; its secret is printed once. Give it to lqctl in a
    /// credentials file (`token = "..."`) or as a bearer token.
    Create {
        /// A label, unique among tokens.
        name: String,
        /// admin: everything; viewer: reads only.
        #[arg(long, value_enum, default_value = "viewer")]
        role: TokenRole,
    },
    /// The tokens (never their secrets).
    List,
    /// Refuse a token from now on.
    Revoke {
        /// The token's id or name.
        token: String,
    },
    /// Who the credentials in use are.
    Whoami,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TokenRole {
    Admin,
    Viewer,
}

pub struct Clients {
    pools: StoragePoolServiceClient<Conn>,
    volumes: VolumeServiceClient<Conn>,
    tasks: TaskServiceClient<Conn>,
    nodes: NodeServiceClient<Conn>,
    access: AccessServiceClient<Conn>,
    out: OutputFormat,
    wait: bool,
}

impl Clients {
    pub async fn connect(target: &Target, session: &Session, out: OutputFormat) -> anyhow::Result<Self> {
        let channel = session.control_plane(target.server.as_deref()).await?;
        Ok(Self {
            pools: StoragePoolServiceClient::new(channel.clone()),
            volumes: VolumeServiceClient::new(channel.clone()),
            tasks: TaskServiceClient::new(channel.clone()),
            nodes: NodeServiceClient::new(channel.clone()),
            access: AccessServiceClient::new(channel),
            out,
            wait: !target.no_wait,
        })
    }

    /// Follows a task; returns its final state, or fails with its error.
    async fn follow(&mut self, task_id: &str) -> anyhow::Result<pb::Task> {
        let mut stream = self.tasks.watch_task(pb::WatchTaskRequest { task_id: task_id.to_owned() }).await?.into_inner();
        let bar = (self.out == OutputFormat::Table).then(progress_bar);
        let mut last = None;
        while let Some(t) = stream.message().await? {
            if let (Some(bar), Some(p)) = (&bar, &t.progress) {
                show_progress(bar, p);
            }
            let ended = t.state != pb::TaskState::Running as i32;
            last = Some(t);
            if ended {
                break; // no need to wait for the stream to close
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let task = last.ok_or_else(|| Status::unavailable(format!("the control plane ended the watch of task {task_id} without news")))?;
        match pb::TaskState::try_from(task.state) {
            Ok(pb::TaskState::Succeeded) => Ok(task),
            Ok(pb::TaskState::Cancelled) => Err(Status::cancelled(format!("task {} was cancelled; what it did was undone", task.id)).into()),
            _ => Err(Status::new(tonic::Code::from_i32(task.error_code), format!("task {} failed: {}", task.id, task.error)).into()),
        }
    }

    /// Waits for `task_id` (unless --no-wait), then shows the volume.
    async fn finish_volume(&mut self, op: pb::VolumeOperation) -> anyhow::Result<()> {
        let volume = op.volume.unwrap_or_default();
        if !op.task_id.is_empty() {
            if !self.wait {
                return self.accepted(&op.task_id, &volume.id);
            }
            if let Some(done) = self.follow(&op.task_id).await?.volume {
                return print_one(self.out, &ClusterVolumeView::from_pb(&done));
            }
        }
        match self.volumes.get_volume(pb::GetVolumeRequest { volume_id: volume.id.clone() }).await {
            Ok(v) => print_one(self.out, &ClusterVolumeView::from_pb(&v.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => self.gone("volume", &volume.id),
            Err(s) => Err(s.into()),
        }
    }

    fn accepted(&self, task_id: &str, resource: &str) -> anyhow::Result<()> {
        match self.out {
            OutputFormat::Table => emit(format_args!("accepted: task {task_id} on {resource} (lqctl task watch {task_id})")),
            OutputFormat::Json => emit(serde_json::json!({ "task_id": task_id, "resource_id": resource })),
        }
    }

    fn gone(&self, what: &str, id: &str) -> anyhow::Result<()> {
        match self.out {
            OutputFormat::Table => emit(format_args!("{what} {id} deleted")),
            OutputFormat::Json => emit(serde_json::json!({ "id": id, "deleted": true })),
        }
    }

    /// A volume by id, or by name when the name is unique in the cluster.
    async fn volume_id(&mut self, volume: &str) -> anyhow::Result<String> {
        if uuid::Uuid::try_parse(volume).is_ok() {
            return Ok(volume.to_owned());
        }
        let req = pb::ListVolumesRequest { name_prefix: volume.to_owned(), page_size: 1000, ..Default::default() };
        let found: Vec<pb::Volume> =
            self.volumes.list_volumes(req).await?.into_inner().volumes.into_iter().filter(|v| v.name == volume).collect();
        match found.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(Status::not_found(format!("there is no volume named {volume}")).into()),
            many => Err(Status::failed_precondition(format!("{} volumes are named {volume} (in different pools); give its id", many.len())).into()),
        }
    }

    pub async fn pool(&mut self, cmd: PoolCommand) -> anyhow::Result<()> {
        match cmd {
            PoolCommand::Create(c) => {
                let config = c.backend.config()?;
                let req = pb::CreatePoolRequest {
                    pool_id: c.id.clone().unwrap_or_default(),
                    name: c.name.clone(),
                    description: c.description.clone(),
                    labels: c.labels.iter().cloned().collect::<HashMap<_, _>>(),
                    config: Some(config),
                    node_ids: c.nodes.clone(),
                    overcommit_ratio: c.overcommit,
                };
                let op = self.pools.create_pool(req).await?.into_inner();
                let pool = op.pool.unwrap_or_default();
                if !op.task_id.is_empty() {
                    if !self.wait {
                        return self.accepted(&op.task_id, &pool.id);
                    }
                    self.follow(&op.task_id).await?;
                }
                let pool = self.pools.get_pool(pb::GetPoolRequest { pool: pool.id }).await?.into_inner();
                print_one(self.out, &ClusterPoolView::from_pb(&pool))?;
            }
            PoolCommand::List { kind } => {
                let kind = kind.map_or(pb::PoolKind::Unspecified, kind_pb) as i32;
                let pools = self.pools.list_pools(pb::ListPoolsRequest { kind, labels: HashMap::new() }).await?.into_inner().pools;
                print_list(self.out, &pools.iter().map(ClusterPoolView::from_pb).collect::<Vec<_>>())?;
            }
            PoolCommand::Get { pool } => {
                let p = self.pools.get_pool(pb::GetPoolRequest { pool }).await?.into_inner();
                print_one(self.out, &ClusterPoolView::from_pb(&p))?;
            }
            PoolCommand::Update { pool, description, labels, overcommit } => {
                let req = pb::UpdatePoolRequest { pool, description, labels: labels.into_iter().collect(), overcommit_ratio: overcommit };
                let p = self.pools.update_pool(req).await?.into_inner();
                print_one(self.out, &ClusterPoolView::from_pb(&p))?;
            }
            PoolCommand::Delete { pool } => {
                let op = self.pools.delete_pool(pb::DeletePoolRequest { pool }).await?.into_inner();
                let id = op.pool.map(|p| p.id).unwrap_or_default();
                if !self.wait {
                    return self.accepted(&op.task_id, &id);
                }
                self.follow(&op.task_id).await?;
                self.gone("pool", &id)?;
            }
            PoolCommand::Metrics { pool } => {
                let m = self.pools.get_pool_metrics(pb::GetPoolMetricsRequest { pool }).await?.into_inner();
                print_one(self.out, &PoolMetricsView::from_pb(&m))?;
            }
        }
        Ok(())
    }

    pub async fn volume(&mut self, cmd: VolumeCommand) -> anyhow::Result<()> {
        match cmd {
            VolumeCommand::Create { pool, name, size, format, thick, from_snapshot, labels, id } => {
                let source = match from_snapshot {
                    Some(spec) => {
                        let (vol, snap) =
                            spec.split_once('@').ok_or_else(|| Status::invalid_argument("--from-snapshot is VOLUME@SNAPSHOT"))?;
                        let volume_id = self.volume_id(vol).await?;
                        Some(pb::VolumeSource {
                            source: Some(pb::volume_source::Source::Snapshot(pb::SnapshotSource {
                                volume_id,
                                snapshot_name: snap.to_owned(),
                            })),
                        })
                    }
                    None => None,
                };
                let req = pb::CreateVolumeRequest {
                    volume_id: id.unwrap_or_default(),
                    pool,
                    name,
                    labels: labels.into_iter().collect(),
                    spec: Some(volume_spec(size, format, provisioning_pb(thick))),
                    source,
                };
                let op = self.volumes.create_volume(req).await?.into_inner();
                self.finish_volume(op).await?;
            }
            VolumeCommand::List { pool, state, name_prefix, labels, sort, desc, page } => {
                let order_by = sort.map_or(pb::VolumeOrder::Unspecified, SortBy::pb) as i32;
                let state = state.map_or(pb::VolumeState::Unspecified, state_pb) as i32;
                let volumes = &mut self.volumes;
                page.print(self.out, async |page_size, page_token| {
                    let req = pb::ListVolumesRequest {
                        pool: pool.clone().unwrap_or_default(),
                        state,
                        name_prefix: name_prefix.clone(),
                        labels: labels.iter().cloned().collect(),
                        page_size,
                        page_token,
                        order_by,
                        descending: desc,
                    };
                    let page = volumes.list_volumes(req).await?.into_inner();
                    Ok((page.volumes.iter().map(ClusterVolumeView::from_pb).collect(), page.next_page_token))
                })
                .await?;
            }
            VolumeCommand::Get { volume } => {
                let volume_id = self.volume_id(&volume).await?;
                let v = self.volumes.get_volume(pb::GetVolumeRequest { volume_id }).await?.into_inner();
                print_one(self.out, &ClusterVolumeView::from_pb(&v))?;
            }
            VolumeCommand::Resize { volume, size } => {
                let volume_id = self.volume_id(&volume).await?;
                let op = self.volumes.resize_volume(pb::ResizeVolumeRequest { volume_id, new_size_bytes: size }).await?.into_inner();
                self.finish_volume(op).await?;
            }
            VolumeCommand::Move { volume, pool, format, drop_snapshots } => {
                let volume_id = self.volume_id(&volume).await?;
                let req = pb::MoveVolumeRequest { volume_id, pool, format: format_pb(format), drop_snapshots };
                let op = self.volumes.move_volume(req).await?.into_inner();
                let base = op.volume.as_ref().map(|v| v.backing_volume_id.clone()).unwrap_or_default();
                let name = op.volume.as_ref().map(|v| v.name.clone()).unwrap_or_default();
                self.finish_volume(op).await?;
                if self.wait && !base.is_empty() {
                    crate::output::warn(format_args!("note: {name} was a linked clone of volume {base}; it arrived flattened (a full copy that no longer needs its base)"));
                }
            }
            VolumeCommand::Clone { source, name, full, size, format, id } => {
                let source_volume_id = self.volume_id(&source).await?;
                let mode = if full { pb::CloneMode::Full } else { pb::CloneMode::Linked } as i32;
                let req = pb::CloneVolumeRequest {
                    volume_id: id.unwrap_or_default(),
                    source_volume_id,
                    name,
                    labels: HashMap::new(),
                    mode,
                    spec: Some(volume_spec(size, format, pb::Provisioning::Unspecified)),
                };
                let op = self.volumes.clone_volume(req).await?.into_inner();
                self.finish_volume(op).await?;
            }
            VolumeCommand::Delete { volume } => {
                let volume_id = self.volume_id(&volume).await?;
                let op = self.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id }).await?.into_inner();
                self.finish_volume(op).await?;
            }
            VolumeCommand::Import { pool, name, onto, overwrite, file, image_format, node, format, size, id } => {
                let (onto_volume_id, spec) = match onto {
                    Some(volume) => (self.volume_id(&volume).await?, None),
                    None => (String::new(), Some(volume_spec(size, format, pb::Provisioning::Unspecified))),
                };
                let req = pb::ImportVolumeRequest {
                    volume_id: id.unwrap_or_default(),
                    pool: pool.unwrap_or_default(),
                    name: name.unwrap_or_default(),
                    labels: HashMap::new(),
                    node_id: node.unwrap_or_default(),
                    path: file.display().to_string(),
                    format: image_format_pb(image_format),
                    spec,
                    onto_volume_id,
                    overwrite,
                };
                let op = self.volumes.import_volume(req).await?.into_inner();
                self.finish_volume(op).await?;
            }
            VolumeCommand::Attach { volume, vm, node, bus, read_only } => {
                let volume_id = self.volume_id(&volume).await?;
                let req = pb::AttachVolumeRequest { volume_id, vm, node_id: node.unwrap_or_default(), bus: bus_pb(bus), read_only };
                let op = self.volumes.attach_volume(req).await?.into_inner();
                self.finish_volume(op).await?;
            }
            VolumeCommand::Template { volume } => {
                let volume_id = self.volume_id(&volume).await?;
                let v = self.volumes.mark_template(pb::MarkTemplateRequest { volume_id }).await?.into_inner();
                print_one(self.out, &ClusterVolumeView::from_pb(&v))?;
            }
            VolumeCommand::Detach { volume } => {
                let volume_id = self.volume_id(&volume).await?;
                let op = self.volumes.detach_volume(pb::DetachVolumeRequest { volume_id }).await?.into_inner();
                self.finish_volume(op).await?;
            }
        }
        Ok(())
    }

    pub async fn snapshot(&mut self, cmd: SnapshotCommand) -> anyhow::Result<()> {
        match cmd {
            SnapshotCommand::Create { args, vm, quiesce } => {
                let quiesce = match quiesce {
                    None => pb::Quiesce::None,
                    Some(QuiesceArg::Required) => pb::Quiesce::Required,
                    Some(QuiesceArg::BestEffort) => pb::Quiesce::BestEffort,
                } as i32;
                let req = match (vm, args.as_slice()) {
                    (Some(vm), [name]) => pb::CreateSnapshotRequest { vm, name: name.clone(), quiesce, ..Default::default() },
                    (None, [volume, name]) => {
                        let volume_id = self.volume_id(volume).await?;
                        pb::CreateSnapshotRequest { volume_id, name: name.clone(), quiesce, ..Default::default() }
                    }
                    (Some(_), _) => anyhow::bail!("with --vm give the snapshot's name only"),
                    (None, _) => anyhow::bail!("give the volume and the snapshot's name (or --vm VM and the name)"),
                };
                let op = self.volumes.create_snapshot(req).await?.into_inner();
                let volume_ids: Vec<String> = op.snapshots.iter().map(|s| s.volume_id.clone()).collect();
                if !self.wait {
                    return self.accepted(&op.task_id, volume_ids.first().map_or("", String::as_str));
                }
                self.follow(&op.task_id).await?;
                let mut taken = Vec::new();
                for id in &volume_ids {
                    let snaps = self.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: id.clone() }).await?.into_inner().snapshots;
                    taken.extend(snaps.into_iter().filter(|s| op.snapshots.iter().any(|o| o.name == s.name)));
                }
                print_list(self.out, &taken.iter().map(ClusterSnapshotView::from_pb).collect::<Vec<_>>())?;
            }
            SnapshotCommand::List { volume } => {
                let volume_id = self.volume_id(&volume).await?;
                self.print_snapshots(&volume_id).await?;
            }
            SnapshotCommand::Revert { volume, name } => {
                let volume_id = self.volume_id(&volume).await?;
                let op = self.volumes.revert_snapshot(pb::RevertSnapshotRequest { volume_id, name }).await?.into_inner();
                self.finish_volume(op).await?;
            }
            SnapshotCommand::Delete { volume, name } => {
                let volume_id = self.volume_id(&volume).await?;
                let op = self.volumes.delete_snapshot(pb::DeleteSnapshotRequest { volume_id: volume_id.clone(), name }).await?.into_inner();
                if !self.wait {
                    return self.accepted(&op.task_id, &volume_id);
                }
                self.follow(&op.task_id).await?;
                self.print_snapshots(&volume_id).await?;
            }
        }
        Ok(())
    }

    async fn print_snapshots(&mut self, volume_id: &str) -> anyhow::Result<()> {
        let snaps = self.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: volume_id.to_owned() }).await?.into_inner().snapshots;
        print_list(self.out, &snaps.iter().map(ClusterSnapshotView::from_pb).collect::<Vec<_>>())
    }

    pub async fn task(&mut self, cmd: TaskCommand) -> anyhow::Result<()> {
        match cmd {
            TaskCommand::Get { task } => {
                let t = self.tasks.get_task(pb::GetTaskRequest { task_id: task }).await?.into_inner();
                print_one(self.out, &TaskView::from_pb(&t))?;
            }
            TaskCommand::List { resource, running, page } => {
                let tasks = &mut self.tasks;
                let resource_id = resource.unwrap_or_default();
                page.print(self.out, async |page_size, page_token| {
                    let req = pb::ListTasksRequest { resource_id: resource_id.clone(), running_only: running, page_size, page_token };
                    let page = tasks.list_tasks(req).await?.into_inner();
                    Ok((page.tasks.iter().map(TaskView::from_pb).collect(), page.next_page_token))
                })
                .await?;
            }
            TaskCommand::Watch { task } => {
                let t = self.follow(&task).await?;
                print_one(self.out, &TaskView::from_pb(&t))?;
            }
            TaskCommand::Cancel { task } => {
                let t = self.tasks.cancel_task(pb::CancelTaskRequest { task_id: task }).await?.into_inner();
                print_one(self.out, &TaskView::from_pb(&t))?;
            }
        }
        Ok(())
    }

    pub async fn node(&mut self, cmd: ClusterNodeCommand) -> anyhow::Result<()> {
        match cmd {
            ClusterNodeCommand::List { .. } => {
                let nodes = self.nodes.list_nodes(pb::ListNodesRequest {}).await?.into_inner().nodes;
                print_list(self.out, &nodes.iter().map(ClusterNodeView::from_pb).collect::<Vec<_>>())
            }
            ClusterNodeCommand::Get { node, .. } => {
                let n = self.nodes.get_node(pb::GetNodeRequest { node_id: node }).await?.into_inner();
                print_one(self.out, &ClusterNodeView::from_pb(&n))
            }
            ClusterNodeCommand::Drain { node, undo, .. } => {
                let n = self.nodes.drain_node(pb::DrainNodeRequest { node_id: node, undo }).await?.into_inner();
                print_one(self.out, &ClusterNodeView::from_pb(&n))
            }
            ClusterNodeCommand::Remove { node, force, .. } => {
                self.nodes.remove_node(pb::RemoveNodeRequest { node_id: node.clone(), force }).await?;
                report(self.out, serde_json::json!({ "removed": node }), format!("node {node} removed; its certificate is refused"))
            }
            ClusterNodeCommand::JoinToken(JoinTokenCommand::Create { ttl, .. }) => {
                let ttl_seconds = u32::try_from(ttl.as_secs()).map_err(|_| Status::invalid_argument("--ttl is too long"))?;
                let t = self.access.create_join_token(pb::CreateJoinTokenRequest { ttl_seconds }).await?.into_inner();
                report(
                    self.out,
                    serde_json::json!({ "token": t.token, "expires_unix_seconds": t.expires_unix_seconds, "ca_sha256": t.ca_sha256 }),
                    &t.token,
                )
            }
        }
    }

    pub async fn token(&mut self, cmd: TokenCommand) -> anyhow::Result<()> {
        match cmd {
            TokenCommand::Create { name, role } => {
                let role = match role {
                    TokenRole::Admin => pb::Role::Admin,
                    TokenRole::Viewer => pb::Role::Viewer,
                };
                let t = self.access.create_api_token(pb::CreateApiTokenRequest { name, role: role as i32 }).await?.into_inner();
                let view = ApiTokenView::from_pb(&t.token.unwrap_or_default());
                report(self.out, serde_json::json!({ "token": view, "secret": t.secret }), &t.secret)
            }
            TokenCommand::List => {
                let tokens = self.access.list_api_tokens(pb::ListApiTokensRequest {}).await?.into_inner().tokens;
                print_list(self.out, &tokens.iter().map(ApiTokenView::from_pb).collect::<Vec<_>>())
            }
            TokenCommand::Revoke { token } => {
                self.access.revoke_api_token(pb::RevokeApiTokenRequest { token: token.clone() }).await?;
                report(self.out, serde_json::json!({ "revoked": token }), format!("token {token} revoked"))
            }
            TokenCommand::Whoami => {
                let me = self.access.who_am_i(pb::WhoAmIRequest {}).await?.into_inner();
                let role = limiquantix_api::short_name(&pb::Role::try_from(me.role).unwrap_or_default(), pb::Role::as_str_name);
                report(self.out, serde_json::json!({ "name": me.name, "role": role }), format!("{} ({role})", me.name))
            }
        }
    }
}

fn kind_pb(k: Kind) -> pb::PoolKind {
    match k {
        Kind::Local => pb::PoolKind::Local,
        Kind::Nfs => pb::PoolKind::Nfs,
        Kind::Ceph => pb::PoolKind::Ceph,
        Kind::Iscsi => pb::PoolKind::Iscsi,
    }
}

fn state_pb(s: State) -> pb::VolumeState {
    match s {
        State::Creating => pb::VolumeState::Creating,
        State::Available => pb::VolumeState::Available,
        State::Attached => pb::VolumeState::Attached,
        State::Resizing => pb::VolumeState::Resizing,
        State::Deleting => pb::VolumeState::Deleting,
        State::Error => pb::VolumeState::Error,
        State::Writing => pb::VolumeState::Writing,
        State::Moving => pb::VolumeState::Moving,
    }
}
