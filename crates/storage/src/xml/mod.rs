//! libvirt XML: the `<disk>` elements the node hands out and the target-device
//! choice for a domain. Written with quick-xml (every value escaped), never by
//! string formatting.

pub mod disk;
pub mod target;

pub use disk::{BackingImage, DiskAuth, DiskDefinition, DiskDriver, DiskSource, NetHost, SecretRef, mirror_destination_xml, secret_xml};
pub use target::{DomainDisk, disk_with_serial, pick_target, targets_in_domain};
