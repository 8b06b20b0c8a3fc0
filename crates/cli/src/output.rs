//! What lqctl prints: a table for people, or JSON (`--output json`) for scripts.
//! The JSON field names are the views' names below and are kept stable.

use clap::ValueEnum;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use limiquantix_api::v1 as pb;
use serde::Serialize;

use crate::units::human;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// A printable record: JSON through serde, tables through `columns`/`cells`.
pub trait View: Serialize {
    const COLUMNS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

pub fn print_list<T: View>(format: OutputFormat, items: &[T]) {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(items).expect("views serialize")),
        OutputFormat::Table => {
            let mut table = Table::new();
            table.load_style(UTF8_BORDERS_ONLY).set_header(T::COLUMNS.to_vec());
            for item in items {
                table.add_row(item.cells());
            }
            println!("{table}");
        }
    }
}

pub fn print_one<T: View>(format: OutputFormat, item: &T) {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(item).expect("views serialize")),
        OutputFormat::Table => {
            let mut table = Table::new();
            table.load_style(UTF8_BORDERS_ONLY);
            for (k, v) in T::COLUMNS.iter().zip(item.cells()) {
                table.add_row(vec![k.to_string(), v]);
            }
            println!("{table}");
        }
    }
}

fn enum_name<E: TryFrom<i32>>(v: i32, name: impl Fn(E) -> &'static str) -> String {
    E::try_from(v).map(|e| name(e).to_owned()).unwrap_or_else(|_| format!("unknown({v})"))
}

pub fn kind_name(v: i32) -> String {
    enum_name(v, |k: pb::PoolKind| match k {
        pb::PoolKind::Local => "local",
        pb::PoolKind::Nfs => "nfs",
        pb::PoolKind::Ceph => "ceph",
        pb::PoolKind::Iscsi => "iscsi",
        pb::PoolKind::Unspecified => "unspecified",
    })
}

pub fn format_name(v: i32) -> String {
    enum_name(v, |f: pb::VolumeFormat| match f {
        pb::VolumeFormat::Qcow2 => "qcow2",
        pb::VolumeFormat::Raw => "raw",
        pb::VolumeFormat::Unspecified => "unspecified",
    })
}

#[derive(Debug, Serialize)]
pub struct CapabilitiesView {
    pub thin_provisioning: bool,
    pub linked_clone: bool,
    pub snapshots: bool,
    pub shared: bool,
    pub live_resize: bool,
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
            formats: c.formats.iter().map(|f| format_name(*f)).collect(),
        }
    }

    fn summary(&self) -> String {
        let flags = [
            (self.thin_provisioning, "thin"),
            (self.linked_clone, "linked-clone"),
            (self.snapshots, "snapshots"),
            (self.shared, "shared"),
            (self.live_resize, "live-resize"),
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
    pub provisioned_bytes: u64,
    pub allocated_bytes: u64,
    pub volume_count: u64,
    pub capabilities: CapabilitiesView,
}

impl PoolView {
    pub fn from_pb(p: &pb::PoolInfo) -> Self {
        use pb::pool_config::Backend as B;
        let location = match p.config.as_ref().and_then(|c| c.backend.as_ref()) {
            Some(B::Local(l)) => l.path.clone(),
            Some(B::Nfs(n)) => format!("{}:{}", n.server, n.export_path),
            Some(B::Ceph(c)) => format!("ceph pool {}", c.ceph_pool),
            Some(B::Iscsi(i)) => format!("{} {}", i.portal, i.target_iqn),
            None => String::new(),
        };
        let cap = p.capacity.unwrap_or_default();
        Self {
            pool_id: p.pool_id.clone(),
            kind: kind_name(p.kind),
            phase: enum_name(p.phase, |ph: pb::PoolPhase| match ph {
                pb::PoolPhase::Ready => "ready",
                pb::PoolPhase::Error => "error",
                pb::PoolPhase::Unspecified => "unspecified",
            }),
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
            human(self.provisioned_bytes),
            human(self.allocated_bytes),
            self.volume_count.to_string(),
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
            format: format_name(v.format),
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
    const COLUMNS: &'static [&'static str] = &["SNAPSHOT", "VOLUME", "CREATED (UNIX)", "VM STATE"];
    fn cells(&self) -> Vec<String> {
        vec![self.name.clone(), self.volume_id.clone(), self.created_unix_seconds.to_string(), human(self.vm_state_bytes)]
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
                .map(|k| KindView { kind: kind_name(k.kind), capabilities: CapabilitiesView::from_pb(k.capabilities.as_ref()) })
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
