//! Argument types and helpers shared by the control-plane and node commands.

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use limiquantix_api::v1 as pb;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Qcow2,
    Raw,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImageFormat {
    Qcow2,
    Raw,
    Vmdk,
    Vhdx,
    Vdi,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Bus {
    Scsi,
    Virtio,
}

pub fn new_id(id: Option<String>) -> String {
    id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

pub fn format_pb(f: Option<Format>) -> i32 {
    match f {
        None => pb::VolumeFormat::Unspecified as i32,
        Some(Format::Qcow2) => pb::VolumeFormat::Qcow2 as i32,
        Some(Format::Raw) => pb::VolumeFormat::Raw as i32,
    }
}

pub fn image_format_pb(f: ImageFormat) -> i32 {
    (match f {
        ImageFormat::Qcow2 => pb::ImageFormat::Qcow2,
        ImageFormat::Raw => pb::ImageFormat::Raw,
        ImageFormat::Vmdk => pb::ImageFormat::Vmdk,
        ImageFormat::Vhdx => pb::ImageFormat::Vhdx,
        ImageFormat::Vdi => pb::ImageFormat::Vdi,
    }) as i32
}

pub fn bus_pb(b: Bus) -> i32 {
    (match b {
        Bus::Scsi => pb::DiskBus::Scsi,
        Bus::Virtio => pb::DiskBus::Virtio,
    }) as i32
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar() -> ProgressBar {
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b
}

pub fn show_progress(bar: &ProgressBar, p: &pb::Progress) {
    bar.set_length(p.total_bytes);
    bar.set_position(p.done_bytes);
    bar.set_message(p.phase.clone());
}
