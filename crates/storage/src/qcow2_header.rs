//! Reads the few qcow2 header fields the engine needs (virtual size, backing
//! file name, snapshot count) straight from the file: a volume lookup must not
//! cost a process spawn. Only used on images the node created itself;
//! untrusted images go through `qemu-img info` (see `image.rs`).

use std::io::Read;

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
