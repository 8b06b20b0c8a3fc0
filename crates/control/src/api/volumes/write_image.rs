//! An import onto an existing volume of a storage array (a direct-mode
//! iSCSI LUN): checked, confirmed and sized before anything is written.

use super::*;
use crate::sagas::write_image::WriteImage;

impl VolumeApi {
    pub(super) async fn write_image_onto(&self, r: pb::ImportVolumeRequest, format: pb::ImageFormat) -> ApiResult<pb::VolumeOperation> {
        let id = parse_volume_id(&r.onto_volume_id)?;
        let repo = &self.app.repo;
        if !r.name.is_empty() || !r.pool.is_empty() || !r.labels.is_empty() || r.spec.is_some() || !r.volume_id.is_empty() {
            return Err(ApiError::invalid("an import onto an existing volume keeps that volume: give no pool, name, id, labels or spec"));
        }
        if r.path.is_empty() || !r.path.starts_with('/') {
            return Err(ApiError::invalid("the image path must be absolute (a file on the node)"));
        }
        let volume = records::volume(repo, &id).await?.value;
        let pool = records::pool(repo, &volume.pool_id).await?.value;
        if !pool.capabilities.as_ref().is_some_and(|c| c.array_managed) {
            return Err(ApiError::precondition(format!(
                "volume {} is in pool {}, whose imports make new volumes; only a storage array's LUNs are written over",
                volume.name, pool.name
            )));
        }
        if !r.overwrite {
            return Err(ApiError::precondition(format!(
                "writing the image over volume {} replaces everything on it ({} bytes); confirm with overwrite (lqctl: --overwrite)",
                volume.name, volume.size_bytes
            )));
        }
        let node = match r.node_id.as_str() {
            "" => return Err(ApiError::invalid("say which node holds the image (node_id)")),
            n => {
                let n = records::parse_node_id(n)?;
                if !pool.nodes.iter().any(|s| s.node_id == n && s.phase == pb::PoolPhase::Ready as i32) {
                    return Err(ApiError::precondition(format!("pool {} is not ready on node {n}", pool.name)));
                }
                self.online_node(&n).await?.id
            }
        };
        // Sized before anything is written: an image larger than the LUN is refused here.
        let mut client = self.app.nodes.client(repo, &node).await?;
        let inspect = pb::InspectImageRequest { path: r.path.clone(), format: format as i32 };
        let inspected = crate::nodes::call(&node, "inspect the image", self.app.nodes.deadlines.call, client.inspect_image(inspect)).await?;
        if inspected.virtual_size_bytes > volume.size_bytes {
            return Err(ApiError::invalid(format!(
                "the image is {} bytes, more than volume {} holds ({} bytes)",
                inspected.virtual_size_bytes, volume.name, volume.size_bytes
            )));
        }
        self.start(
            &id,
            Some(Change::Write("written over")),
            |v| {
                if v.state != pb::VolumeState::Available as i32 {
                    return Err(ApiError::precondition(format!("volume {} is {}; only an unused volume is written over", v.name, state_name(v.state))));
                }
                Ok(())
            },
            |v| {
                let saga = WriteImage {
                    pool_id: v.pool_id.clone(),
                    volume_id: v.id.clone(),
                    node_id: node.clone(),
                    path: r.path.clone(),
                    format: format as i32,
                    previous_state: v.state,
                };
                Ok((saga, pb::VolumeState::Writing as i32))
            },
            None,
        )
        .await
    }
}
