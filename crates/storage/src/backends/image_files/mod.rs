//! Pools whose volumes are image files in one directory, one file per
//! volume named from its id (`lq-<uuid>.qcow2` / `.raw`): local directories
//! and NFS exports. What is the same whichever way the directory is reached
//! lives here: names, reading a volume's facts from its header, internal
//! snapshots and resizes through qemu-img, and what qemu-img's failures mean.

mod snapshots;

pub use snapshots::ImageSnapshots;

use std::io::{Read, Seek};

use crate::error::{StorageError, ToolError};
use crate::ids::VolumeId;
use crate::model::{VolumeFormat, VolumeInfo};
use crate::qcow2;

const PREFIX: &str = "lq-";
const PARTIAL_SUFFIX: &str = ".partial";

/// `lq-<uuid>.qcow2` / `lq-<uuid>.raw`: the format is part of the name, so it
/// is never probed from the content (a raw guest disk can hold anything).
pub fn volume_file_name(id: VolumeId, format: VolumeFormat) -> String {
    format!("{PREFIX}{id}.{}", format.as_str())
}

/// The name a volume is built under before it is committed.
pub fn partial_file_name(id: VolumeId, format: VolumeFormat) -> String {
    format!(".{}{PARTIAL_SUFFIX}", volume_file_name(id, format))
}

pub fn parse_volume_file_name(name: &str) -> Option<(VolumeId, VolumeFormat)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (id, ext) = rest.split_once('.')?;
    let format = match ext {
        "qcow2" => VolumeFormat::Qcow2,
        "raw" => VolumeFormat::Raw,
        _ => return None,
    };
    Some((id.parse().ok()?, format))
}

pub fn is_partial_file_name(name: &str) -> bool {
    name.starts_with(".lq-") && name.ends_with(PARTIAL_SUFFIX)
}

/// In a shared pool, a half-made file nobody has written for this long is a
/// leftover of a create that died; a younger one may be another node's
/// create in progress.
pub const STALE_PARTIAL_SECONDS: i64 = 15 * 60;

/// Whether a pool's activation removes this file: any partial file of a
/// pool only this node uses, a stale one of a shared pool.
pub fn is_leftover(name: &str, modified_unix_seconds: i64, shared: bool) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    is_partial_file_name(name) && (!shared || now - modified_unix_seconds > STALE_PARTIAL_SECONDS)
}

/// What the file system says about a volume file.
#[derive(Debug, Clone, Copy)]
pub struct FileFacts {
    pub len: u64,
    pub allocated_bytes: u64,
}

/// A volume's facts from its file: the size from the qcow2 header (or the
/// file length for raw), the backing volume from the header's backing name:
/// `backing_prefix` followed by a volume file name (nothing for a name
/// relative to the clone, the pool's URL where QEMU needs one).
pub fn describe(
    file: &mut (impl Read + Seek),
    id: VolumeId,
    format: VolumeFormat,
    facts: FileFacts,
    location: String,
    backing_prefix: &str,
) -> std::io::Result<VolumeInfo> {
    let (size_bytes, backing, snapshot_count) = match format {
        VolumeFormat::Raw => (facts.len, None, 0),
        VolumeFormat::Qcow2 => {
            let h = qcow2::read_header(file)?;
            let backing = h
                .backing_file
                .as_deref()
                .and_then(|b| b.strip_prefix(backing_prefix))
                .and_then(parse_volume_file_name)
                .map(|(id, _)| id);
            (h.virtual_size, backing, h.snapshot_count)
        }
    };
    Ok(VolumeInfo { id, format, size_bytes, allocated_bytes: facts.allocated_bytes, backing, snapshot_count, location })
}

/// Turns a qemu-img failure on `volume` into an error that says what to do;
/// `place` names where the pool's files are (its directory, its export).
pub fn tool_error(volume: VolumeId, place: &str, err: ToolError) -> StorageError {
    let stderr = err.stderr();
    if stderr.contains("Failed to get") && stderr.contains("lock") {
        StorageError::precondition(format!(
            "volume {volume} is in use by a running VM (QEMU holds its lock); stop the VM or detach the disk first"
        ))
    } else if stderr.contains("No space left on device") {
        StorageError::ResourceExhausted(format!("{place} is full: {}", stderr.lines().last().unwrap_or_default()))
    } else {
        StorageError::Tool(err)
    }
}

/// Keeps the volumes of a listing or scan that are complete, ordered by id,
/// each once (a volume has one file; a stray second format is ignored).
pub fn volume_ids<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<(VolumeId, VolumeFormat)> {
    let mut ids: Vec<_> = names.into_iter().filter_map(parse_volume_file_name).collect();
    ids.sort_unstable_by_key(|(id, _)| *id);
    ids.dedup_by_key(|(id, _)| *id);
    ids
}

/// A page of `ids` after `after`.
pub fn page(ids: Vec<(VolumeId, VolumeFormat)>, after: Option<VolumeId>) -> impl Iterator<Item = (VolumeId, VolumeFormat)> {
    ids.into_iter().filter(move |(id, _)| after.is_none_or(|a| *id > a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_file_names_round_trip() {
        let id = VolumeId::new_random();
        let name = volume_file_name(id, VolumeFormat::Qcow2);
        assert_eq!(name, format!("lq-{id}.qcow2"));
        assert_eq!(parse_volume_file_name(&name), Some((id, VolumeFormat::Qcow2)));
        assert_eq!(parse_volume_file_name(&volume_file_name(id, VolumeFormat::Raw)), Some((id, VolumeFormat::Raw)));
        assert!(is_partial_file_name(&partial_file_name(id, VolumeFormat::Raw)));
        for other in ["lq-x.qcow2", &format!("lq-{id}.vmdk"), &format!("{id}.qcow2"), ".lq-a.partial", "README"] {
            assert_eq!(parse_volume_file_name(other), None, "{other}");
        }
    }
}
