//! What lqctl prints: a table for people, or JSON (`--output json`) for scripts.
//! The JSON field names are the views' names below and are kept stable.

use std::fmt::Display;
use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use comfy_table::{ColumnConstraint, ContentArrangement, Row, Table, Width, presets::UTF8_BORDERS_ONLY};
use limiquantix_api::v1 as pb;
use serde::Serialize;

use crate::units::{human, utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// The reader of stdout went away (`lqctl task list | head -1`); lqctl
/// stops quietly, as a C tool killed by SIGPIPE would. SIGPIPE itself stays
/// ignored: the gRPC connection writes with writev(2), which would raise it
/// for a server that closed the socket, and that must read as an error.
#[derive(Debug)]
pub struct StdoutClosed;

impl Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes a line to stdout.
pub fn emit(text: impl Display) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").and_then(|()| stdout.flush()).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => StdoutClosed.into(),
        _ => tonic::Status::unknown(format!("cannot write the output: {e}")).into(),
    })
}

/// A command's outcome: `json` for scripts, `text` for people.
pub fn report(format: OutputFormat, json: serde_json::Value, text: impl Display) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => emit(json),
        OutputFormat::Table => emit(text),
    }
}

/// Writes a line to stderr; a closed stderr leaves nobody to tell.
pub fn warn(text: impl Display) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Width of tables written to a file or a pipe; on a terminal, its width.
const PIPE_WIDTH: u16 = 160;
/// Cells up to an id's width (a UUID) are never broken, so ids stay one
/// piece for copying and grep; wider cells are text that may wrap.
const WHOLE_CELL: usize = 36;
/// Lines a row of a list may take before it is cut with "…" (a record
/// shown alone is shown whole).
const LIST_ROW_LINES: usize = 4;

/// A table that fits the terminal: wide cells wrap (and, in lists, are cut).
fn table(header: &[&str], rows: Vec<Vec<String>>, row_lines: Option<usize>) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    if !std::io::stdout().is_terminal() {
        table.set_width(PIPE_WIDTH);
    }
    // Dynamic arrangement may break any cell; a column of short cells (ids,
    // times, sizes, states) is kept whole, wide enough for its widest.
    let columns = header.len().max(rows.first().map_or(0, Vec::len));
    let whole: Vec<Option<usize>> = (0..columns)
        .map(|i| {
            let cells = header.get(i).copied().into_iter().chain(rows.iter().filter_map(|r| r.get(i).map(String::as_str)));
            let widest = cells.flat_map(str::lines).map(|l| l.chars().count()).max().unwrap_or(0);
            (widest <= WHOLE_CELL).then_some(widest)
        })
        .collect();
    if !header.is_empty() {
        table.set_header(header.to_vec());
    }
    for cells in rows {
        let mut row = Row::from(cells);
        if let Some(lines) = row_lines {
            row.max_height(lines);
        }
        table.add_row(row);
    }
    for (column, whole) in table.column_iter_mut().zip(whole) {
        if let Some(width) = whole {
            let width = u16::try_from(width).expect("at most WHOLE_CELL") + column.padding_width();
            column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(width)));
        }
    }
    table
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).expect("views serialize")
}

/// A printable record: JSON through serde, tables through `columns`/`cells`.
pub trait View: Serialize {
    const COLUMNS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

pub fn print_list<T: View>(format: OutputFormat, items: &[T]) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => emit(json(&items)),
        OutputFormat::Table => emit(table(T::COLUMNS, items.iter().map(View::cells).collect(), Some(LIST_ROW_LINES))),
    }
}

pub fn print_one<T: View>(format: OutputFormat, item: &T) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => emit(json(item)),
        OutputFormat::Table => {
            let rows = T::COLUMNS.iter().zip(item.cells()).map(|(k, v)| vec![k.to_string(), v]).collect();
            emit(table(&[], rows, None))
        }
    }
}

/// A time for people, or "-" when the API did not say.
fn when(unix_seconds: i64) -> String {
    if unix_seconds == 0 { "-".into() } else { utc(unix_seconds) }
}

/// An enum field as people read it ("available"), or unknown(N).
fn enum_name<E: TryFrom<i32> + Default>(v: i32, proto_name: fn(&E) -> &'static str) -> String {
    match E::try_from(v) {
        Ok(value) => limiquantix_api::short_name(&value, proto_name),
        Err(_) => format!("unknown({v})"),
    }
}

#[derive(Debug, Serialize)]
pub struct CapabilitiesView {
    pub thin_provisioning: bool,
    pub linked_clone: bool,
    pub snapshots: bool,
    pub shared: bool,
    pub live_resize: bool,
    pub array_managed: bool,
    pub formats: Vec<String>,
}

impl CapabilitiesView {
    fn from_pb(c: Option<&pb::PoolCapabilities>) -> Self {
        let c = c.cloned().unwrap_or_default();
        Self {
            thin_provisioning: c.thin_provisioning,
            linked_clone: c.linked_clone,
            snapshots: c.snapshots,
            shared: c.shared,
            live_resize: c.live_resize,
            array_managed: c.array_managed,
            formats: c.formats.iter().map(|f| enum_name(*f, pb::VolumeFormat::as_str_name)).collect(),
        }
    }

    fn summary(&self) -> String {
        let flags = [
            (self.thin_provisioning, "thin"),
            (self.linked_clone, "linked-clone"),
            (self.snapshots, "snapshots"),
            (self.shared, "shared"),
            (self.live_resize, "live-resize"),
            (self.array_managed, "array-managed"),
        ];
        let mut parts: Vec<&str> = flags.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        let formats = self.formats.join("/");
        parts.push(&formats);
        parts.join(", ")
    }
}

#[derive(Debug, Serialize)]
pub struct PoolView {
    pub pool_id: String,
    pub kind: String,
    pub phase: String,
    pub message: String,
    pub location: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Only when counted (`lqctl node pool info --count`).
    pub provisioned_bytes: Option<u64>,
    pub allocated_bytes: u64,
    pub volume_count: Option<u64>,
    pub capabilities: CapabilitiesView,
}

impl PoolView {
    pub fn from_pb(p: &pb::PoolInfo) -> Self {
        let location = location(p.config.as_ref());
        let cap = p.capacity.unwrap_or_default();
        Self {
            pool_id: p.pool_id.clone(),
            kind: enum_name(p.kind, pb::PoolKind::as_str_name),
            phase: enum_name(p.phase, pb::PoolPhase::as_str_name),
            message: p.message.clone(),
            location,
            total_bytes: cap.total_bytes,
            free_bytes: cap.free_bytes,
            provisioned_bytes: cap.provisioned_bytes,
            allocated_bytes: cap.allocated_bytes,
            volume_count: cap.volume_count,
            capabilities: CapabilitiesView::from_pb(p.capabilities.as_ref()),
        }
    }
}

impl View for PoolView {
    const COLUMNS: &'static [&'static str] =
        &["POOL", "KIND", "PHASE", "LOCATION", "TOTAL", "FREE", "PROVISIONED", "ALLOCATED", "VOLUMES", "CAN"];
    fn cells(&self) -> Vec<String> {
        let phase = if self.message.is_empty() { self.phase.clone() } else { format!("{}: {}", self.phase, self.message) };
        vec![
            self.pool_id.clone(),
            self.kind.clone(),
            phase,
            self.location.clone(),
            human(self.total_bytes),
            human(self.free_bytes),
            self.provisioned_bytes.map_or_else(|| "-".into(), human),
            human(self.allocated_bytes),
            self.volume_count.map_or_else(|| "-".into(), |n| n.to_string()),
            self.capabilities.summary(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct VolumeView {
    pub volume_id: String,
    pub pool_id: String,
    pub format: String,
    pub size_bytes: u64,
    pub allocated_bytes: u64,
    pub backing_volume_id: Option<String>,
    pub snapshot_count: u32,
    pub location: String,
}

impl VolumeView {
    pub fn from_pb(v: &pb::VolumeInfo) -> Self {
        Self {
            volume_id: v.volume_id.clone(),
            pool_id: v.pool_id.clone(),
            format: enum_name(v.format, pb::VolumeFormat::as_str_name),
            size_bytes: v.size_bytes,
            allocated_bytes: v.allocated_bytes,
            backing_volume_id: (!v.backing_volume_id.is_empty()).then(|| v.backing_volume_id.clone()),
            snapshot_count: v.snapshot_count,
            location: v.location.clone(),
        }
    }
}

impl View for VolumeView {
    const COLUMNS: &'static [&'static str] = &["VOLUME", "FORMAT", "SIZE", "ALLOCATED", "LINKED TO", "SNAPSHOTS", "LOCATION"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.volume_id.clone(),
            self.format.clone(),
            human(self.size_bytes),
            human(self.allocated_bytes),
            self.backing_volume_id.clone().unwrap_or_else(|| "-".into()),
            self.snapshot_count.to_string(),
            self.location.clone(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct SnapshotView {
    pub name: String,
    pub volume_id: String,
    pub created_unix_seconds: i64,
    pub vm_state_bytes: u64,
}

impl SnapshotView {
    pub fn from_pb(s: &pb::SnapshotInfo) -> Self {
        Self {
            name: s.name.clone(),
            volume_id: s.volume_id.clone(),
            created_unix_seconds: s.created_unix_seconds,
            vm_state_bytes: s.vm_state_bytes,
        }
    }
}

impl View for SnapshotView {
    const COLUMNS: &'static [&'static str] = &["SNAPSHOT", "VOLUME", "CREATED (UTC)", "VM STATE"];
    fn cells(&self) -> Vec<String> {
        vec![self.name.clone(), self.volume_id.clone(), when(self.created_unix_seconds), human(self.vm_state_bytes)]
    }
}

/// A snapshot as the control plane keeps it: how consistent it is.
#[derive(Debug, Serialize)]
pub struct ClusterSnapshotView {
    pub name: String,
    pub volume_id: String,
    pub created_unix_seconds: i64,
    pub vm: String,
    pub quiesced: bool,
    pub frozen_ms: u64,
    pub not_quiesced_reason: String,
}

impl ClusterSnapshotView {
    pub fn from_pb(s: &pb::Snapshot) -> Self {
        Self {
            name: s.name.clone(),
            volume_id: s.volume_id.clone(),
            created_unix_seconds: s.created_unix_seconds,
            vm: s.vm.clone(),
            quiesced: s.quiesced,
            frozen_ms: s.frozen_ms,
            not_quiesced_reason: s.not_quiesced_reason.clone(),
        }
    }

    fn consistency(&self) -> String {
        match (self.vm.is_empty(), self.quiesced) {
            (true, _) => "detached".into(),
            (false, true) => format!("quiesced (frozen {} ms)", self.frozen_ms),
            (false, false) if self.not_quiesced_reason.is_empty() => "crash-consistent".into(),
            (false, false) => format!("crash-consistent: {}", self.not_quiesced_reason),
        }
    }
}

impl View for ClusterSnapshotView {
    const COLUMNS: &'static [&'static str] = &["SNAPSHOT", "VOLUME", "CREATED (UTC)", "VM", "CONSISTENCY"];
    fn cells(&self) -> Vec<String> {
        let vm = if self.vm.is_empty() { "-".to_owned() } else { self.vm.clone() };
        vec![self.name.clone(), self.volume_id.clone(), when(self.created_unix_seconds), vm, self.consistency()]
    }
}

#[derive(Debug, Serialize)]
pub struct NodeInfoView {
    pub hostname: String,
    pub version: String,
    pub supported_kinds: Vec<KindView>,
}

#[derive(Debug, Serialize)]
pub struct KindView {
    pub kind: String,
    pub capabilities: CapabilitiesView,
}

impl NodeInfoView {
    pub fn from_pb(n: &pb::NodeInfo) -> Self {
        Self {
            hostname: n.hostname.clone(),
            version: n.version.clone(),
            supported_kinds: n
                .supported_kinds
                .iter()
                .map(|k| KindView {
                    kind: enum_name(k.kind, pb::PoolKind::as_str_name),
                    capabilities: CapabilitiesView::from_pb(k.capabilities.as_ref()),
                })
                .collect(),
        }
    }
}

impl View for NodeInfoView {
    const COLUMNS: &'static [&'static str] = &["HOSTNAME", "VERSION", "POOL KINDS"];
    fn cells(&self) -> Vec<String> {
        let kinds: Vec<String> =
            self.supported_kinds.iter().map(|k| format!("{} ({})", k.kind, k.capabilities.summary())).collect();
        vec![self.hostname.clone(), self.version.clone(), kinds.join("; ")]
    }
}

#[derive(Debug, Serialize)]
pub struct AttachInfoView {
    pub target_dev: String,
    pub serial: String,
    pub disk_xml: String,
}

impl View for AttachInfoView {
    const COLUMNS: &'static [&'static str] = &["TARGET", "SERIAL", "DISK XML"];
    fn cells(&self) -> Vec<String> {
        vec![self.target_dev.clone(), self.serial.clone(), self.disk_xml.clone()]
    }
}

#[derive(Debug, Serialize)]
pub struct PoolNodeView {
    pub node_id: String,
    pub phase: String,
    pub message: String,
}

impl PoolNodeView {
    fn from_pb(n: &pb::PoolNodeStatus) -> Self {
        Self { node_id: n.node_id.clone(), phase: enum_name(n.phase, pb::PoolPhase::as_str_name), message: n.message.clone() }
    }

    /// "2/3 ready" for a table.
    fn ready(nodes: &[Self]) -> String {
        format!("{}/{} ready", nodes.iter().filter(|n| n.phase == "ready").count(), nodes.len())
    }
}

/// Where a pool's storage is, as an admin names it (a datastore's URL).
fn location(config: Option<&pb::PoolConfig>) -> String {
    use pb::pool_config::Backend as B;
    match config.and_then(|c| c.backend.as_ref()) {
        Some(B::Local(l)) => l.path.clone(),
        Some(B::Nfs(n)) => format!("{}:{}", n.server, n.export_path),
        Some(B::Ceph(c)) => format!("ceph pool {}", c.ceph_pool),
        Some(B::Iscsi(i)) => format!("{} {}", i.portals.join(","), i.target_iqn),
        None => String::new(),
    }
}

#[derive(Debug, Serialize)]
pub struct ClusterPoolView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub location: String,
    pub state: String,
    pub message: String,
    pub description: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub nodes: Vec<PoolNodeView>,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub provisioned_bytes: u64,
    pub overcommit_ratio: f64,
    pub capabilities: CapabilitiesView,
}

impl ClusterPoolView {
    pub fn from_pb(p: &pb::Pool) -> Self {
        let cap = p.capacity.unwrap_or_default();
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            kind: enum_name(p.kind, pb::PoolKind::as_str_name),
            location: location(p.config.as_ref()),
            state: enum_name(p.state, pb::PoolState::as_str_name),
            message: p.message.clone(),
            description: p.description.clone(),
            labels: p.labels.clone().into_iter().collect(),
            nodes: p.nodes.iter().map(PoolNodeView::from_pb).collect(),
            total_bytes: cap.total_bytes,
            free_bytes: cap.free_bytes,
            provisioned_bytes: p.provisioned_bytes,
            overcommit_ratio: p.overcommit_ratio,
            capabilities: CapabilitiesView::from_pb(p.capabilities.as_ref()),
        }
    }
}

impl View for ClusterPoolView {
    const COLUMNS: &'static [&'static str] = &["NAME", "ID", "KIND", "LOCATION", "STATE", "NODES", "TOTAL", "FREE", "PROVISIONED", "OVERCOMMIT"];
    fn cells(&self) -> Vec<String> {
        let state = if self.message.is_empty() { self.state.clone() } else { format!("{}: {}", self.state, self.message) };
        vec![
            self.name.clone(),
            self.id.clone(),
            self.kind.clone(),
            self.location.clone(),
            state,
            PoolNodeView::ready(&self.nodes),
            human(self.total_bytes),
            human(self.free_bytes),
            human(self.provisioned_bytes),
            format!("{}x", self.overcommit_ratio),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct PoolMetricsView {
    pub pool_id: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub provisioned_bytes: u64,
    pub provisioning_limit_bytes: u64,
    pub volume_count: u64,
    pub volumes_by_state: std::collections::BTreeMap<String, u64>,
    pub nodes: Vec<PoolNodeView>,
}

impl PoolMetricsView {
    pub fn from_pb(m: &pb::PoolMetrics) -> Self {
        let cap = m.capacity.unwrap_or_default();
        Self {
            pool_id: m.pool_id.clone(),
            total_bytes: cap.total_bytes,
            free_bytes: cap.free_bytes,
            provisioned_bytes: m.provisioned_bytes,
            provisioning_limit_bytes: m.provisioning_limit_bytes,
            volume_count: m.volume_count,
            volumes_by_state: m.volumes_by_state.clone().into_iter().collect(),
            nodes: m.nodes.iter().map(PoolNodeView::from_pb).collect(),
        }
    }
}

impl View for PoolMetricsView {
    const COLUMNS: &'static [&'static str] =
        &["POOL", "TOTAL", "FREE", "PROVISIONED", "PROVISIONING LIMIT", "VOLUMES", "BY STATE", "NODES"];
    fn cells(&self) -> Vec<String> {
        let by_state: Vec<String> = self.volumes_by_state.iter().map(|(state, n)| format!("{state}: {n}")).collect();
        vec![
            self.pool_id.clone(),
            human(self.total_bytes),
            human(self.free_bytes),
            human(self.provisioned_bytes),
            human(self.provisioning_limit_bytes),
            self.volume_count.to_string(),
            if by_state.is_empty() { "-".into() } else { by_state.join(", ") },
            PoolNodeView::ready(&self.nodes),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct ClusterVolumeView {
    pub id: String,
    pub name: String,
    pub pool_id: String,
    pub state: String,
    pub size_bytes: u64,
    pub allocated_bytes: u64,
    pub format: String,
    pub backing_volume_id: Option<String>,
    pub node_id: String,
    pub attached_to: Option<String>,
    pub target_dev: Option<String>,
    pub task_id: Option<String>,
    pub snapshot_count: u64,
    pub template: bool,
    pub read_only: bool,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl ClusterVolumeView {
    pub fn from_pb(v: &pb::Volume) -> Self {
        Self {
            id: v.id.clone(),
            name: v.name.clone(),
            pool_id: v.pool_id.clone(),
            state: enum_name(v.state, pb::VolumeState::as_str_name),
            size_bytes: v.size_bytes,
            allocated_bytes: v.allocated_bytes,
            format: enum_name(v.format, pb::VolumeFormat::as_str_name),
            backing_volume_id: (!v.backing_volume_id.is_empty()).then(|| v.backing_volume_id.clone()),
            node_id: v.node_id.clone(),
            attached_to: v.attachment.as_ref().map(|a| a.vm.clone()),
            target_dev: v.attachment.as_ref().map(|a| a.target_dev.clone()),
            task_id: (!v.task_id.is_empty()).then(|| v.task_id.clone()),
            snapshot_count: v.snapshot_count,
            template: v.template,
            read_only: v.attachment.as_ref().is_some_and(|a| a.read_only),
            labels: v.labels.clone().into_iter().collect(),
        }
    }
}

impl View for ClusterVolumeView {
    const COLUMNS: &'static [&'static str] = &["NAME", "ID", "STATE", "SIZE", "ALLOCATED", "FORMAT", "ATTACHED TO", "LINKED TO", "SNAPSHOTS"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.id.clone(),
            if self.template { format!("{} (template)", self.state) } else { self.state.clone() },
            human(self.size_bytes),
            human(self.allocated_bytes),
            self.format.clone(),
            match (&self.attached_to, &self.target_dev) {
                (Some(vm), Some(t)) if self.read_only => format!("{vm} ({t}, read-only)"),
                (Some(vm), Some(t)) => format!("{vm} ({t})"),
                _ => "-".into(),
            },
            self.backing_volume_id.clone().unwrap_or_else(|| "-".into()),
            self.snapshot_count.to_string(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct ApiTokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_unix_seconds: i64,
}

impl ApiTokenView {
    pub fn from_pb(t: &pb::ApiToken) -> Self {
        Self { id: t.id.clone(), name: t.name.clone(), role: enum_name(t.role, pb::Role::as_str_name), created_unix_seconds: t.created_unix_seconds }
    }
}

impl View for ApiTokenView {
    const COLUMNS: &'static [&'static str] = &["ID", "NAME", "ROLE", "CREATED"];
    fn cells(&self) -> Vec<String> {
        vec![self.id.clone(), self.name.clone(), self.role.clone(), when(self.created_unix_seconds)]
    }
}

#[derive(Debug, Serialize)]
pub struct ClusterNodeView {
    pub id: String,
    pub hostname: String,
    pub address: String,
    pub state: String,
    pub draining: bool,
    pub version: String,
    pub last_heartbeat_unix_seconds: i64,
    pub kinds: Vec<String>,
}

impl ClusterNodeView {
    pub fn from_pb(n: &pb::Node) -> Self {
        Self {
            id: n.id.clone(),
            hostname: n.hostname.clone(),
            address: n.address.clone(),
            state: enum_name(n.state, pb::NodeState::as_str_name),
            draining: n.draining,
            version: n.version.clone(),
            last_heartbeat_unix_seconds: n.last_heartbeat_unix_seconds,
            kinds: n.supported_kinds.iter().map(|k| enum_name(k.kind, pb::PoolKind::as_str_name)).collect(),
        }
    }
}

impl View for ClusterNodeView {
    const COLUMNS: &'static [&'static str] = &["ID", "HOSTNAME", "ADDRESS", "STATE", "POOL KINDS", "VERSION"];
    fn cells(&self) -> Vec<String> {
        let state = if self.draining { format!("{} (draining)", self.state) } else { self.state.clone() };
        vec![self.id.clone(), self.hostname.clone(), self.address.clone(), state, self.kinds.join(","), self.version.clone()]
    }
}

#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: String,
    pub kind: String,
    pub resource_id: String,
    pub state: String,
    pub step: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub error: String,
    pub error_code: i32,
    pub created_unix_seconds: i64,
    pub updated_unix_seconds: i64,
}

impl TaskView {
    pub fn from_pb(t: &pb::Task) -> Self {
        let p = t.progress.clone().unwrap_or_default();
        Self {
            id: t.id.clone(),
            kind: t.kind.clone(),
            resource_id: t.resource_id.clone(),
            state: enum_name(t.state, pb::TaskState::as_str_name),
            step: t.step.clone(),
            done_bytes: p.done_bytes,
            total_bytes: p.total_bytes,
            error: t.error.clone(),
            error_code: t.error_code,
            created_unix_seconds: t.created_unix_seconds,
            updated_unix_seconds: t.updated_unix_seconds,
        }
    }
}

impl View for TaskView {
    const COLUMNS: &'static [&'static str] = &["TASK", "CREATED (UTC)", "KIND", "RESOURCE", "PROGRESS", "STATE"];
    fn cells(&self) -> Vec<String> {
        let progress = if self.total_bytes > 0 { format!("{}/{}", human(self.done_bytes), human(self.total_bytes)) } else { "-".into() };
        // A running task shows its step, a failed one its error.
        let detail = if self.error.is_empty() { &self.step } else { &self.error };
        let state = if detail.is_empty() { self.state.clone() } else { format!("{}: {detail}", self.state) };
        vec![
            self.id.clone(),
            when(self.created_unix_seconds),
            self.kind.clone(),
            self.resource_id.clone(),
            progress,
            state,
        ]
    }
}
