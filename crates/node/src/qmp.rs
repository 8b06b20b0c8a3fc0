//! QEMU's monitor (QMP) through libvirt, for what libvirt has no API for:
//! internal snapshots of disks a running VM has open, all in one
//! transaction (qcow2 keeps them inside the image; the rbd driver makes RBD
//! snapshots).

use limiquantix_storage::StorageError;
use serde_json::{Value, json};

use crate::libvirt::Libvirt;

impl Libvirt {
    async fn qmp(&self, domain: &str, command: Value) -> Result<Value, StorageError> {
        let (name, text) = (domain.to_owned(), command.to_string());
        let reply = self
            .on_domain(domain, move |dom| {
                dom.qemu_monitor_command(&text, 0)
                    .map_err(|e| StorageError::Internal(format!("VM {name}: QEMU's monitor refused the call: {}", e.message())))
            })
            .await?;
        let reply: Value = serde_json::from_str(&reply)
            .map_err(|e| StorageError::Internal(format!("VM {domain}: QEMU's monitor answered something not JSON: {e}")))?;
        match reply.get("error") {
            Some(error) => {
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("no description");
                Err(StorageError::FailedPrecondition(format!("VM {domain}: QEMU: {desc}")))
            }
            None => Ok(reply.get("return").cloned().unwrap_or(Value::Null)),
        }
    }

    /// The block node QEMU writes for each device alias (libvirt's
    /// `<alias name=…>` of a disk), in the order given.
    pub async fn block_nodes(&self, domain: &str, aliases: &[String]) -> Result<Vec<String>, StorageError> {
        let devices = self.qmp(domain, json!({ "execute": "query-block" })).await?;
        let devices = devices.as_array().cloned().unwrap_or_default();
        aliases
            .iter()
            .map(|alias| {
                devices
                    .iter()
                    .find(|d| d.get("qdev").and_then(Value::as_str).is_some_and(|q| qdev_is(q, alias)))
                    .and_then(|d| d.pointer("/inserted/node-name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .ok_or_else(|| StorageError::Internal(format!("VM {domain}: QEMU shows no open disk for device {alias}")))
            })
            .collect()
    }

    /// Takes internal snapshot `name` of every node at one instant: all or none.
    pub async fn snapshot_block_nodes(&self, domain: &str, nodes: &[String], name: &str) -> Result<(), StorageError> {
        let actions: Vec<Value> =
            nodes.iter().map(|n| json!({ "type": "blockdev-snapshot-internal-sync", "data": { "device": n, "name": name } })).collect();
        self.qmp(domain, json!({ "execute": "transaction", "arguments": { "actions": actions } })).await.map(drop)
    }

    /// Deletes internal snapshot `name` of one node.
    pub async fn delete_block_node_snapshot(&self, domain: &str, node: &str, name: &str) -> Result<(), StorageError> {
        let command = json!({ "execute": "blockdev-snapshot-delete-internal-sync", "arguments": { "device": node, "name": name } });
        self.qmp(domain, command).await.map(drop)
    }
}

/// QEMU names a SCSI disk's device by its id, a virtio one by its QOM path.
fn qdev_is(qdev: &str, alias: &str) -> bool {
    qdev == alias || qdev.strip_prefix("/machine/peripheral/").and_then(|rest| rest.strip_prefix(alias)).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::qdev_is;

    #[test]
    fn a_device_is_found_by_its_alias_only() {
        assert!(qdev_is("scsi0-0-0-1", "scsi0-0-0-1"));
        assert!(qdev_is("/machine/peripheral/virtio-disk1/virtio-backend", "virtio-disk1"));
        assert!(!qdev_is("/machine/peripheral/virtio-disk10/virtio-backend", "virtio-disk1"));
        assert!(!qdev_is("scsi0-0-0-10", "scsi0-0-0-1"));
    }
}
