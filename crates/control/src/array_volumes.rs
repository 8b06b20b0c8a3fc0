//! Volumes of array-managed pools (an iSCSI target's LUNs in direct mode)
//! are not made by the control plane: they appear, grow and vanish on the
//! array. The pool refresh adopts them from a node that has the pool ready:
//! a record for each new one (named `lun-` + the start of its id, which the
//! node derives from the LUN's world-wide name, so both stay the same when
//! the array renumbers its LUNs), its size kept current, and a volume whose
//! LUN is gone put in error, never deleted (a VM may still use it).

use limiquantix_api::v1 as pb;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::repo::Txn;

/// The name an adopted volume gets.
pub fn adopted_name(volume_id: &str) -> String {
    format!("lun-{}", &volume_id[..volume_id.len().min(8)])
}

/// Brings the pool's volume records in line with what `node_id` reports.
pub async fn reconcile(app: &App, pool_id: &str, node_id: &str) -> ApiResult<()> {
    let on_array = crate::allocations::node_volumes(app, pool_id, node_id).await?;
    let known = app.repo.list::<pb::Volume>(&keys::pool_volumes(pool_id), None, 0).await?;
    for info in &on_array {
        match known.iter().find(|(_, v)| v.value.id == info.volume_id) {
            None => adopt(app, pool_id, info).await?,
            Some((key, v)) => {
                let stale = v.value.size_bytes != info.size_bytes
                    || v.value.allocated_bytes != info.allocated_bytes
                    || v.value.state == pb::VolumeState::Error as i32;
                if stale && v.value.task_id.is_empty() {
                    app.repo
                        .update::<pb::Volume>(key, |vol| {
                            vol.size_bytes = info.size_bytes;
                            vol.allocated_bytes = info.allocated_bytes;
                            if vol.state == pb::VolumeState::Error as i32 {
                                vol.state = if vol.attachment.is_some() { pb::VolumeState::Attached } else { pb::VolumeState::Available } as i32;
                                vol.message.clear();
                            }
                            Ok(())
                        })
                        .await?;
                }
            }
        }
    }
    for (key, v) in &known {
        let gone = !on_array.iter().any(|i| i.volume_id == v.value.id);
        if gone && v.value.state != pb::VolumeState::Error as i32 && v.value.task_id.is_empty() {
            tracing::warn!(pool = pool_id, volume = %v.value.id, "the array no longer has this volume's LUN");
            app.repo
                .update::<pb::Volume>(key, |vol| {
                    vol.state = pb::VolumeState::Error as i32;
                    vol.message = "the storage array no longer presents this LUN".into();
                    Ok(())
                })
                .await?;
        }
    }
    Ok(())
}

async fn adopt(app: &App, pool_id: &str, info: &pb::VolumeInfo) -> ApiResult<()> {
    let repo = &app.repo;
    let (id, name) = (info.volume_id.clone(), adopted_name(&info.volume_id));
    repo.retry(|| async {
        if repo.get_raw(&keys::volume_pool(&id)).await?.is_some() {
            return Ok(()); // adopted meanwhile
        }
        let name_key = keys::volume_name(pool_id, &name);
        if repo.get_raw(&name_key).await?.is_some() {
            return Err(ApiError::already_exists(format!("pool {pool_id} has another volume named {name}")));
        }
        let p = repo.get::<pb::Pool>(&keys::pool(pool_id)).await?.ok_or_else(|| ApiError::not_found("the pool was deleted"))?;
        let volume = pb::Volume {
            id: id.clone(),
            name: name.clone(),
            pool_id: pool_id.to_owned(),
            state: pb::VolumeState::Available as i32,
            size_bytes: info.size_bytes,
            allocated_bytes: info.allocated_bytes,
            format: info.format,
            provisioning: pb::Provisioning::Thick as i32,
            created_unix_seconds: crate::tasks::now(),
            ..Default::default()
        };
        let mut pool = p.value;
        pool.provisioned_bytes += info.size_bytes;
        let vkey = keys::volume(pool_id, &id);
        let mut txn = Txn::new();
        txn.expect_absent(&vkey)
            .put(&vkey, &volume)
            .expect_absent(keys::volume_pool(&id))
            .put_raw(keys::volume_pool(&id), pool_id.as_bytes().to_vec())
            .expect_absent(&name_key)
            .put_raw(&name_key, id.clone().into_bytes())
            .expect(keys::pool(pool_id), p.revision)
            .put(keys::pool(pool_id), &pool);
        txn.commit(repo).await.map(drop)
    })
    .await?;
    tracing::info!(pool = pool_id, volume = %id, %name, size = info.size_bytes, "adopted a volume of the storage array");
    Ok(())
}
