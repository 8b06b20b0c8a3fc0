//! qcow2 without a process spawn, for the two hot paths: reading the few
//! header fields a lookup needs (virtual size, backing file name, snapshot
//! count), and writing a new, empty, thin image (a create). Only for images
//! the node makes itself; untrusted images go through `qemu-img info` (see
//! `image.rs`), and everything else qemu-img does (clones, copies, resize,
//! snapshots, preallocation) stays with it.

use std::io::{Read, Write};

const MAGIC: u32 = 0x5146_49fb; // "QFI\xfb"
const HEADER_BYTES: usize = 72;
/// QEMU's own limit on the backing file name.
const MAX_BACKING_NAME: u32 = 1023;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Header {
    pub virtual_size: u64,
    pub backing_file: Option<String>,
    pub snapshot_count: u32,
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the header of a qcow2 file positioned at offset 0.
pub fn read_header(file: &mut (impl Read + std::io::Seek)) -> std::io::Result<Qcow2Header> {
    let invalid = |msg: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_owned());
    let mut h = [0u8; HEADER_BYTES];
    file.read_exact(&mut h)?;
    if be_u32(&h, 0) != MAGIC {
        return Err(invalid("not a qcow2 file (bad magic)"));
    }
    let version = be_u32(&h, 4);
    if !(2..=3).contains(&version) {
        return Err(invalid("unsupported qcow2 version"));
    }
    let backing_offset = be_u64(&h, 8);
    let backing_len = be_u32(&h, 16);
    let backing_file = if backing_offset == 0 || backing_len == 0 {
        None
    } else {
        if backing_len > MAX_BACKING_NAME {
            return Err(invalid("qcow2 backing file name too long"));
        }
        file.seek(std::io::SeekFrom::Start(backing_offset))?;
        let mut name = vec![0u8; backing_len as usize];
        file.read_exact(&mut name)?;
        Some(String::from_utf8(name).map_err(|_| invalid("qcow2 backing file name is not UTF-8"))?)
    };
    Ok(Qcow2Header { virtual_size: be_u64(&h, 24), backing_file, snapshot_count: be_u32(&h, 60) })
}

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 16-bit refcounts, as qemu-img's default.
const REFCOUNT_ORDER: u32 = 4;
/// Version 3 header with the compression type byte (zlib), padded to 8.
const V3_HEADER_LENGTH: u32 = 112;

/// Writes an empty, thin qcow2 image of `virtual_size` bytes into `file`
/// (new and empty), laid out as `qemu-img create -f qcow2` lays it out:
/// header (cluster 0), refcount table (1), refcount block (2), then the L1
/// table (3..), all zero, as a hole. Version 3 (compat 1.1), 64 KiB
/// clusters, 16-bit refcounts, no backing file, no extension.
pub fn write_empty(file: &mut std::fs::File, virtual_size: u64) -> std::io::Result<()> {
    // One L2 table (a cluster of 8-byte entries) maps this many bytes.
    let l2_span = CLUSTER * (CLUSTER / 8);
    let l1_entries = virtual_size.div_ceil(l2_span);
    let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER).max(1);
    let clusters = 3 + l1_clusters;
    let refcounts_per_block = CLUSTER * 8 / (1 << REFCOUNT_ORDER);
    if clusters > refcounts_per_block || l1_entries > u32::MAX as u64 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "image too large for one refcount block"));
    }
    let mut header = vec![0u8; CLUSTER as usize];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &MAGIC.to_be_bytes());
    put(4, &3u32.to_be_bytes());
    put(20, &CLUSTER_BITS.to_be_bytes());
    put(24, &virtual_size.to_be_bytes());
    put(36, &(l1_entries as u32).to_be_bytes());
    put(40, &(3 * CLUSTER).to_be_bytes()); // L1 table
    put(48, &CLUSTER.to_be_bytes()); // refcount table
    put(56, &1u32.to_be_bytes()); // refcount table clusters
    put(96, &REFCOUNT_ORDER.to_be_bytes());
    put(100, &V3_HEADER_LENGTH.to_be_bytes());
    // The header extensions that follow end with a zero type: already zero.
    let mut table = vec![0u8; CLUSTER as usize];
    table[..8].copy_from_slice(&(2 * CLUSTER).to_be_bytes());
    let mut block = vec![0u8; CLUSTER as usize];
    for c in 0..clusters as usize {
        block[c * 2..c * 2 + 2].copy_from_slice(&1u16.to_be_bytes());
    }
    file.write_all(&header)?;
    file.write_all(&table)?;
    file.write_all(&block)?;
    // The L1 table is all zeros: a hole up to its end, as qemu-img leaves it.
    file.set_len(3 * CLUSTER + l1_entries * 8)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_image_reads_back_its_size_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.qcow2");
        let mut f = std::fs::File::create_new(&path).unwrap();
        write_empty(&mut f, 10 << 30).unwrap();
        drop(f);
        let h = read_header(&mut std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(h, Qcow2Header { virtual_size: 10 << 30, backing_file: None, snapshot_count: 0 });
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * CLUSTER + 20 * 8, "the layout qemu-img makes");
    }
}
