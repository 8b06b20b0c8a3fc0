//! The `<disk>` element for every shape the system emits (DESIGN.md, "Data
//! path defaults"): file, block, and network rbd / nfs / iscsi.

use std::path::PathBuf;

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};

use crate::model::{DiskBus, VolumeFormat};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetHost {
    pub name: String,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A libvirt secret of usage type ceph, by UUID.
    Ceph { uuid: String },
    /// A libvirt secret of usage type iscsi, by its usage target name.
    Iscsi { usage: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskAuth {
    pub username: String,
    pub secret: SecretRef,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    File { path: PathBuf },
    Block { dev: PathBuf },
    Rbd { pool: String, namespace: Option<String>, image: String, hosts: Vec<NetHost>, auth: Option<DiskAuth> },
    /// QEMU's user-space NFS client (libnfs). `identity` is the uid/gid sent
    /// in AUTH_SYS (QEMU's own uid is refused by root-squashing exports).
    Nfs { host: NetHost, path: String, identity: Option<(String, String)> },
    Iscsi { host: NetHost, iqn: String, lun: u32, initiator_iqn: Option<String>, auth: Option<DiskAuth> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    None,
    Writeback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    Native,
    Threads,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskDriver {
    pub format: VolumeFormat,
    pub cache: Option<Cache>,
    pub io: Option<Io>,
    pub discard_unmap: bool,
}

impl DiskDriver {
    /// A file on a local or kernel-mounted file system. `direct_io` is whether
    /// the file system supports O_DIRECT (cache='none' needs it).
    pub fn file(format: VolumeFormat, direct_io: bool) -> Self {
        let (cache, io) = if direct_io { (Cache::None, Io::Native) } else { (Cache::Writeback, Io::Threads) };
        Self { format, cache: Some(cache), io: Some(io), discard_unmap: true }
    }

    pub fn nfs(format: VolumeFormat) -> Self {
        Self { format, cache: Some(Cache::None), io: None, discard_unmap: true }
    }

    pub fn rbd() -> Self {
        Self { format: VolumeFormat::Raw, cache: Some(Cache::Writeback), io: None, discard_unmap: true }
    }

    pub fn block() -> Self {
        Self { format: VolumeFormat::Raw, cache: Some(Cache::None), io: Some(Io::Native), discard_unmap: false }
    }

    pub fn iscsi() -> Self {
        Self { format: VolumeFormat::Raw, cache: None, io: None, discard_unmap: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskDefinition {
    pub source: DiskSource,
    pub driver: DiskDriver,
    pub target_dev: String,
    pub bus: DiskBus,
    /// The volume id: the guest sees the disk as /dev/disk/by-id/*-<serial>.
    pub serial: String,
    /// The guest may only read it (`<readonly/>`): a base of linked clones.
    pub read_only: bool,
    /// The images below this one, nearest first, for kinds whose images
    /// libvirt cannot read to find them (`<backingStore>`); empty to let
    /// libvirt probe, as it does for files.
    pub backing_chain: Vec<BackingImage>,
}

/// One image of a disk's backing chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingImage {
    pub source: DiskSource,
    pub format: VolumeFormat,
}

impl DiskDefinition {
    pub fn to_xml(&self) -> String {
        let mut x = XmlOut::new();
        x.open("disk", &[("type", disk_type(&self.source)), ("device", "disk")]);

        let mut driver = vec![("name", "qemu"), ("type", self.driver.format.as_str())];
        if let Some(cache) = self.driver.cache {
            driver.push(("cache", if cache == Cache::None { "none" } else { "writeback" }));
        }
        if let Some(io) = self.driver.io {
            driver.push(("io", if io == Io::Native { "native" } else { "threads" }));
        }
        if self.driver.discard_unmap {
            driver.push(("discard", "unmap"));
        }
        x.empty("driver", &driver);

        write_source(&mut x, &self.source);
        if !self.backing_chain.is_empty() {
            self.write_backing_chain(&mut x);
        }

        let bus = match self.bus {
            DiskBus::Scsi => "scsi",
            DiskBus::Virtio => "virtio",
        };
        x.empty("target", &[("dev", &self.target_dev), ("bus", bus)]);
        if self.read_only {
            x.empty("readonly", &[]);
        }
        x.text("serial", &self.serial);
        x.close("disk");
        x.finish()
    }

    /// Nested `<backingStore>`s, the last closed by an empty one: the chain
    /// ends there, libvirt probes nothing.
    fn write_backing_chain(&self, x: &mut XmlOut) {
        for image in &self.backing_chain {
            x.open("backingStore", &[("type", disk_type(&image.source))]);
            x.empty("format", &[("type", image.format.as_str())]);
            write_source(x, &image.source);
        }
        x.empty("backingStore", &[]);
        for _ in &self.backing_chain {
            x.close("backingStore");
        }
    }
}

/// A block copy's destination (libvirt reads only the disk's type, driver
/// and source): the new volume's source, in the format it is written in.
pub fn mirror_destination_xml(source: &DiskSource, driver: &DiskDriver) -> String {
    let mut x = XmlOut::new();
    x.open("disk", &[("type", disk_type(source)), ("device", "disk")]);
    x.empty("driver", &[("name", "qemu"), ("type", driver.format.as_str())]);
    write_source(&mut x, source);
    x.close("disk");
    x.finish()
}

fn disk_type(source: &DiskSource) -> &'static str {
    match source {
        DiskSource::File { .. } => "file",
        DiskSource::Block { .. } => "block",
        _ => "network",
    }
}

fn write_source(x: &mut XmlOut, source: &DiskSource) {
    match source {
        DiskSource::File { path } => x.empty("source", &[("file", &path.to_string_lossy())]),
        DiskSource::Block { dev } => x.empty("source", &[("dev", &dev.to_string_lossy())]),
        DiskSource::Rbd { pool, namespace, image, hosts, auth } => {
            let name = match namespace {
                Some(ns) => format!("{pool}/{ns}/{image}"),
                None => format!("{pool}/{image}"),
            };
            x.open("source", &[("protocol", "rbd"), ("name", &name)]);
            for h in hosts {
                write_host(x, h);
            }
            x.close("source");
            if let Some(auth) = auth {
                write_auth(x, auth);
            }
        }
        DiskSource::Nfs { host, path, identity } => {
            x.open("source", &[("protocol", "nfs"), ("name", path)]);
            write_host(x, host);
            if let Some((user, group)) = identity {
                x.empty("identity", &[("user", user), ("group", group)]);
            }
            x.close("source");
        }
        DiskSource::Iscsi { host, iqn, lun, initiator_iqn, auth } => {
            x.open("source", &[("protocol", "iscsi"), ("name", &format!("{iqn}/{lun}"))]);
            write_host(x, host);
            if let Some(initiator) = initiator_iqn {
                x.open("initiator", &[]);
                x.empty("iqn", &[("name", initiator)]);
                x.close("initiator");
            }
            x.close("source");
            if let Some(auth) = auth {
                write_auth(x, auth);
            }
        }
    }
}

fn write_host(x: &mut XmlOut, host: &NetHost) {
    match host.port {
        Some(port) => x.empty("host", &[("name", &host.name), ("port", &port.to_string())]),
        None => x.empty("host", &[("name", &host.name)]),
    }
}

fn write_auth(x: &mut XmlOut, auth: &DiskAuth) {
    x.open("auth", &[("username", &auth.username)]);
    match &auth.secret {
        SecretRef::Ceph { uuid } => x.empty("secret", &[("type", "ceph"), ("uuid", uuid)]),
        SecretRef::Iscsi { usage } => x.empty("secret", &[("type", "iscsi"), ("usage", usage)]),
    }
    x.close("auth");
}

/// A libvirt `<secret>` (private, persistent) for a pool's key or password.
pub fn secret_xml(uuid: &str, usage: &crate::backend::SecretUsage) -> String {
    use crate::backend::SecretUsage;
    let mut x = XmlOut::new();
    x.open("secret", &[("ephemeral", "no"), ("private", "yes")]);
    x.text("uuid", uuid);
    match usage {
        SecretUsage::Ceph(name) => {
            x.open("usage", &[("type", "ceph")]);
            x.text("name", name);
        }
        SecretUsage::Iscsi(target) => {
            x.open("usage", &[("type", "iscsi")]);
            x.text("target", target);
        }
    }
    x.close("usage");
    x.close("secret");
    x.finish()
}

/// A thin layer over quick-xml's writer. Writing into a Vec cannot fail, so
/// the io::Result of each event is an invariant, not an error path.
pub(crate) struct XmlOut(Writer<Vec<u8>>);

impl XmlOut {
    pub(crate) fn new() -> Self {
        Self(Writer::new_with_indent(Vec::new(), b' ', 2))
    }

    fn event(&mut self, e: Event<'_>) {
        self.0.write_event(e).expect("writing XML into memory cannot fail");
    }

    pub(crate) fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Start(BytesStart::new(name).with_attributes(attrs.iter().copied())));
    }

    pub(crate) fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Empty(BytesStart::new(name).with_attributes(attrs.iter().copied())));
    }

    pub(crate) fn text(&mut self, name: &str, text: &str) {
        self.open(name, &[]);
        self.event(Event::Text(BytesText::new(text)));
        self.close(name);
    }

    pub(crate) fn close(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }

    pub(crate) fn finish(self) -> String {
        String::from_utf8(self.0.into_inner()).expect("quick-xml writes UTF-8 from &str input")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_disk_has_format_serial_and_escaped_path() {
        let d = DiskDefinition {
            source: DiskSource::File { path: "/pools/a'b&<c>/lq-x.qcow2".into() },
            driver: DiskDriver::file(VolumeFormat::Qcow2, true),
            target_dev: "sdb".into(),
            bus: DiskBus::Scsi,
            serial: "6f1c2b1e-2a7e-4d0e-9d55-0f3c1f2f7a10".into(),
            read_only: false,
            backing_chain: Vec::new(),
        };
        let xml = d.to_xml();
        assert!(xml.contains(r#"<driver name="qemu" type="qcow2" cache="none" io="native" discard="unmap"/>"#), "{xml}");
        assert!(xml.contains(r#"<source file="/pools/a&apos;b&amp;&lt;c&gt;/lq-x.qcow2"/>"#), "{xml}");
        assert!(xml.contains(r#"<target dev="sdb" bus="scsi"/>"#), "{xml}");
        assert!(xml.contains("<serial>6f1c2b1e-2a7e-4d0e-9d55-0f3c1f2f7a10</serial>"), "{xml}");
    }

    #[test]
    fn file_without_direct_io_falls_back_to_threads() {
        let drv = DiskDriver::file(VolumeFormat::Raw, false);
        assert_eq!((drv.cache, drv.io), (Some(Cache::Writeback), Some(Io::Threads)));
    }
}
