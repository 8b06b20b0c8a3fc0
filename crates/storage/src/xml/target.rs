//! Picking a free target device (`sdX` on virtio-scsi, `vdX` on virtio-blk)
//! from the targets a domain already uses, never a literal.

use std::collections::HashSet;

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::error::{Result, StorageError};
use crate::model::DiskBus;

/// sda..sdz, sdaa..sdzz: far more than one controller can hold.
const MAX_TARGETS: usize = 26 * 27;

/// The libvirt name of the disk at `index` (0 → "a", 25 → "z", 26 → "aa").
fn disk_suffix(mut index: usize) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'a' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    letters.reverse();
    String::from_utf8(letters).expect("ASCII letters")
}

pub fn pick_target<S: AsRef<str>>(bus: DiskBus, used: &[S]) -> Result<String> {
    let prefix = match bus {
        DiskBus::Scsi => "sd",
        DiskBus::Virtio => "vd",
    };
    let used: HashSet<&str> = used.iter().map(|s| s.as_ref()).collect();
    (0..MAX_TARGETS)
        .map(|i| format!("{prefix}{}", disk_suffix(i)))
        .find(|t| !used.contains(t.as_str()))
        .ok_or_else(|| {
            StorageError::ResourceExhausted(format!("the domain has no free {prefix}X target left; detach a disk first"))
        })
}

/// The `<target dev=...>` of every `<disk>` in a domain's XML.
pub fn targets_in_domain(domain_xml: &str) -> Result<Vec<String>> {
    Ok(disks_in_domain(domain_xml)?.into_iter().filter_map(|d| d.target).collect())
}

/// A disk found in a domain's XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDisk {
    pub target_dev: String,
    /// libvirt's device alias (e.g. "scsi0-0-0-1"), named in device-removed events.
    pub alias: Option<String>,
    /// The `<disk>` element exactly as the domain has it.
    pub xml: String,
}

/// The disk whose `<serial>` is `serial`, if the domain has one.
pub fn disk_with_serial(domain_xml: &str, serial: &str) -> Result<Option<DomainDisk>> {
    let Some(disk) = disks_in_domain(domain_xml)?.into_iter().find(|d| d.serial.trim() == serial) else {
        return Ok(None);
    };
    let target_dev = disk.target.ok_or_else(|| unparsable("a disk has no target"))?;
    Ok(Some(DomainDisk { target_dev, alias: disk.alias, xml: domain_xml[disk.span].trim().to_owned() }))
}

fn unparsable(e: impl std::fmt::Display) -> StorageError {
    StorageError::invalid(format!("domain XML cannot be parsed: {e}"))
}

/// A `<disk>` element as read: what its children say, and where it is.
struct ParsedDisk {
    target: Option<String>,
    alias: Option<String>,
    serial: String,
    span: std::ops::Range<usize>,
}

/// Every `<disk>` of a domain's XML, in order.
fn disks_in_domain(domain_xml: &str) -> Result<Vec<ParsedDisk>> {
    let mut reader = Reader::from_str(domain_xml);
    let mut depth = 0usize;
    // The `<disk>` being read: its depth, and what it says so far.
    let mut current: Option<(usize, ParsedDisk)> = None;
    let mut in_serial = false;
    let mut disks = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(unparsable)?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let name = e.name().0;
                if name == "disk" && !is_empty && current.is_none() {
                    let disk = ParsedDisk { target: None, alias: None, serial: String::new(), span: before..before };
                    current = Some((depth, disk));
                } else if let Some((d, disk)) = current.as_mut() {
                    if depth == *d + 1 && (name == "target" || name == "alias") {
                        for attr in e.attributes() {
                            let attr = attr.map_err(unparsable)?;
                            let value = || attr.normalized_value(quick_xml::XmlVersion::Implicit1_0).map(|v| v.into_owned());
                            match (name, attr.key.0) {
                                ("target", "dev") => disk.target = Some(value().map_err(unparsable)?),
                                ("alias", "name") => disk.alias = Some(value().map_err(unparsable)?),
                                _ => {}
                            }
                        }
                    }
                    in_serial = depth == *d + 1 && name == "serial" && !is_empty;
                }
                if !is_empty {
                    depth += 1;
                }
            }
            Event::Text(t) if in_serial => {
                if let Some((_, disk)) = current.as_mut() {
                    disk.serial.push_str(&t.xml_content(quick_xml::XmlVersion::Implicit1_0));
                }
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                in_serial = false;
                if e.name().0 == "disk"
                    && let Some((d, mut disk)) = current.take()
                    && d == depth
                {
                    disk.span = disk.span.start..reader.buffer_position() as usize;
                    disks.push(disk);
                }
            }
            Event::Eof => return Ok(disks),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_disk_by_serial_with_its_alias_and_xml() {
        let xml = r#"<domain type='qemu'><devices>
            <disk type='file' device='disk'><source file='/a.qcow2'/><target dev='sda' bus='scsi'/>
              <serial>vol-a</serial><alias name='scsi0-0-0-0'/></disk>
            <disk type='file' device='disk'><source file='/b.qcow2'/><target dev='sdb' bus='scsi'/>
              <serial>vol-b</serial><alias name='scsi0-0-0-1'/></disk>
          </devices></domain>"#;
        let disk = disk_with_serial(xml, "vol-b").unwrap().unwrap();
        assert_eq!(disk.target_dev, "sdb");
        assert_eq!(disk.alias.as_deref(), Some("scsi0-0-0-1"));
        assert!(disk.xml.starts_with("<disk") && disk.xml.ends_with("</disk>") && disk.xml.contains("/b.qcow2"), "{}", disk.xml);
        assert_eq!(disk_with_serial(xml, "vol-c").unwrap(), None);
    }

    #[test]
    fn suffixes_follow_libvirt_naming() {
        assert_eq!(disk_suffix(0), "a");
        assert_eq!(disk_suffix(25), "z");
        assert_eq!(disk_suffix(26), "aa");
        assert_eq!(disk_suffix(51), "az");
        assert_eq!(disk_suffix(52), "ba");
        assert_eq!(disk_suffix(701), "zz");
    }

    #[test]
    fn picks_the_first_free_target_on_the_bus() {
        assert_eq!(pick_target::<&str>(DiskBus::Scsi, &[]).unwrap(), "sda");
        assert_eq!(pick_target(DiskBus::Scsi, &["sda", "sdc", "vdb"]).unwrap(), "sdb");
        assert_eq!(pick_target(DiskBus::Virtio, &["sda", "vda"]).unwrap(), "vdb");
        let all: Vec<String> = (0..MAX_TARGETS).map(|i| format!("sd{}", disk_suffix(i))).collect();
        assert!(matches!(pick_target(DiskBus::Scsi, &all), Err(StorageError::ResourceExhausted(_))));
    }

    #[test]
    fn reads_disk_targets_only() {
        let xml = r#"<domain type='qemu'><name>vm</name><devices>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
              <source file='/a.qcow2'/><target dev='sda' bus='scsi'/></disk>
            <disk type='file' device='cdrom'><target dev='sdc' bus='scsi'/><readonly/></disk>
            <interface type='network'><target dev='vnet0'/></interface>
            <console type='pty'><target type='serial' port='0'/></console>
          </devices></domain>"#;
        assert_eq!(targets_in_domain(xml).unwrap(), ["sda", "sdc"]);
        let err = targets_in_domain("<domain><devices></disk></devices></domain>").unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "{err}");
    }
}
