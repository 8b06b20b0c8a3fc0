//! Move a volume into another pool, of the node that serves it or of
//! another node, keeping its id and name.
//!
//! ```text
//! 0. reserve         — done by the API call (state moving, busy, its size
//!                      counted in the target pool).
//!                      undo: back to its previous state, the space given back.
//! 1. export          — between nodes only: the source node exports the
//!                      volume read-only over NBD on its address, reachable
//!                      with a key made for this move only (TLS-PSK).
//!                      undo: the export ends.
//! 2. copy            — the target's node copies it into the target pool
//!                      (from the export between nodes; same id;
//!                      complete or absent there; streams progress,
//!                      cancellable), and the copy is checked against the
//!                      source: size, format, no backing volume. An attached
//!                      volume is mirrored while its VM runs and the VM
//!                      pivots onto the copy (a failure leaves it on its
//!                      source); from then on the VM writes to the copy.
//!                      undo: the node deletes the copy — unless the record
//!                      already points at it.
//! 3. switch          — one write: the record, its name and its pool link
//!                      move to the target pool, the source pool gives its
//!                      space back, dropped snapshots' records go (between
//!                      local pools of one node a self-contained qcow2
//!                      volume keeps them: its file is copied whole).
//! 4. delete-source   — the source's node ends the export and deletes the
//!                      source (idempotent), and the volume is available
//!                      again as the saga ends.
//! ```
//!
//! Before the switch a failure or a cancel unwinds and the volume is where
//! it was; from the switch on the saga only moves forward: the source is
//! deleted only once the record points at a complete copy.

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::common::{self, release_volume};
use super::{Saga, SagaCtx, Step, StepFuture};
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::repo::Txn;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveVolume {
    pub volume_id: String,
    pub name: String,
    pub from_pool_id: String,
    pub to_pool_id: String,
    pub node_id: String,
    pub size_bytes: u64,
    pub format: i32,
    pub previous_state: i32,
    /// Whether the target pool is one node's (the record then names it).
    pub to_local: bool,
    /// What the node made, set by the copy.
    #[serde(default)]
    pub copy: Option<MadeCopy>,
    /// The running VM the volume is attached to: the copy is a live mirror
    /// (libvirt block copy, then the VM pivots onto it).
    #[serde(default)]
    pub live_domain: String,
    /// A move between nodes: the node that holds the volume (it exports it
    /// for `node_id`, the target's node, to pull). Empty within one node.
    #[serde(default)]
    pub source_node_id: String,
    /// The export of a move between nodes, once made.
    #[serde(default)]
    pub export: Option<MoveExport>,
    /// The volume's snapshots move with it (its qcow2 file copied whole);
    /// otherwise they are dropped.
    #[serde(default)]
    pub with_snapshots: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveExport {
    pub host: String,
    pub port: u32,
    /// The one-use key (hex) both nodes get for this move only.
    pub key: String,
}

/// The TLS-PSK identity of a move's export.
const PSK_IDENTITY: &str = "lq-move";
/// How long an export may wait for its copy (the copy's own limits are the
/// target node's; a move that takes longer is retried with a new export).
const EXPORT_LIFETIME_SECS: u32 = 24 * 3600;

impl MoveVolume {
    /// The node that holds the source.
    fn source_node(&self) -> &str {
        if self.source_node_id.is_empty() { &self.node_id } else { &self.source_node_id }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MadeCopy {
    pub size_bytes: u64,
    pub allocated_bytes: u64,
    pub format: i32,
}

impl Saga for MoveVolume {
    const KIND: &'static str = "volume.move";

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("reserve", release),
            Step { name: "export", action: export, undo: Some(end_export) },
            Step { name: "copy", action: copy, undo: Some(delete_copy) },
            Step { name: "switch", action: switch, undo: None },
            Step { name: "delete-source", action: delete_source, undo: None },
        ]
    }

    fn point_of_no_return() -> usize {
        3
    }

    /// A live mirror or an export outlives a copy step whose node died.
    fn undo_begun_step(step: &str) -> bool {
        matches!(step, "export" | "copy")
    }

    /// Past the switch the volume is whole in the target pool; what failed
    /// is the source's removal, which the message says.
    fn abandon<'a>(ctx: &'a SagaCtx, s: &'a mut Self, error: &'a ApiError) -> StepFuture<'a> {
        Box::pin(async move {
            let message = format!("moved; its old copy in pool {} could not be deleted: {}", s.from_pool_id, error.message);
            common::finish_volume(ctx, &s.to_pool_id, &s.volume_id, s.previous_state, move |v| v.message = message.clone()).await
        })
    }
}

/// Gives the target pool its space back and the volume its state, in one write.
fn release<'a>(ctx: &'a SagaCtx, s: &'a mut MoveVolume) -> StepFuture<'a> {
    Box::pin(async move {
        let repo = &ctx.app.repo;
        repo.retry(|| async {
            let (vkey, pkey) = (keys::volume(&s.from_pool_id, &s.volume_id), keys::pool(&s.to_pool_id));
            let Some(v) = repo.get::<pb::Volume>(&vkey).await? else { return Ok(()) };
            if v.value.task_id != ctx.task_id {
                return Ok(()); // released already
            }
            let mut txn = Txn::new();
            let mut volume = v.value;
            volume.task_id.clear();
            volume.state = s.previous_state;
            txn.expect(&vkey, v.revision).put(&vkey, &volume);
            if let Some(p) = repo.get::<pb::Pool>(&pkey).await? {
                let mut pool = p.value;
                pool.provisioned_bytes = pool.provisioned_bytes.saturating_sub(s.size_bytes);
                txn.expect(&pkey, p.revision).put(&pkey, &pool);
            }
            txn.commit(repo).await.map(drop)
        })
        .await
    })
}

/// Between nodes: the source's node exports the volume with a new key (a
/// re-run makes a new one: the node replaces an export whose key differs).
fn export<'a>(ctx: &'a SagaCtx, s: &'a mut MoveVolume) -> StepFuture<'a> {
    Box::pin(async move {
        if s.source_node_id.is_empty() {
            return Ok(());
        }
        let key = limiquantix_identity::tokens::random_hex(32);
        s.export = Some(MoveExport { host: String::new(), port: 0, key });
        ensure_export(ctx, s).await
    })
}

/// Asks the source's node for the export with the move's key: the running
/// one, or a new one after that node restarted (its exports end with it).
async fn ensure_export(ctx: &SagaCtx, s: &mut MoveVolume) -> ApiResult<()> {
    let Some(export) = s.export.as_mut() else { return Ok(()) };
    let mut client = ctx.app.nodes.client(&ctx.app.repo, &s.source_node_id).await?;
    let req = pb::ExportVolumeRequest {
        pool_id: s.from_pool_id.clone(),
        volume_id: s.volume_id.clone(),
        export_id: ctx.task_id.clone(),
        psk_identity: PSK_IDENTITY.into(),
        psk_key: export.key.clone(),
        lifetime_seconds: EXPORT_LIFETIME_SECS,
    };
    let made = crate::nodes::call(&s.source_node_id, "export the volume", ctx.app.nodes.deadlines.call, client.export_volume(req)).await?;
    (export.host, export.port) = (made.host, made.port);
    Ok(())
}

fn end_export<'a>(ctx: &'a SagaCtx, s: &'a mut MoveVolume) -> StepFuture<'a> {
    Box::pin(async move {
        if s.source_node_id.is_empty() {
            return Ok(());
        }
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &s.source_node_id).await?;
        let req = pb::EndExportRequest { export_id: ctx.task_id.clone() };
        crate::nodes::call(&s.source_node_id, "end the export", ctx.app.nodes.deadlines.call, client.end_export(req)).await.map(drop)
    })
}

fn copy<'a>(ctx: &'a SagaCtx, s: &'a mut MoveVolume) -> StepFuture<'a> {
    Box::pin(async move {
        ensure_export(ctx, s).await?;
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &s.node_id).await?;
        type Start<'c> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<tonic::Response<tonic::Streaming<pb::VolumeOperationEvent>>, tonic::Status>> + Send + 'c>,
        >;
        let (start, what): (Start<'_>, &str) = if s.live_domain.is_empty() {
            let source = match &s.export {
                None => pb::volume_source::Source::OtherPool(pb::OtherPoolSource {
                    pool_id: s.from_pool_id.clone(),
                    volume_id: s.volume_id.clone(),
                    with_snapshots: s.with_snapshots,
                }),
                Some(e) => pb::volume_source::Source::Remote(pb::RemoteSource {
                    host: e.host.clone(),
                    port: e.port,
                    volume_id: s.volume_id.clone(),
                    psk_identity: PSK_IDENTITY.into(),
                    psk_key: e.key.clone(),
                    size_bytes: s.size_bytes,
                }),
            };
            let req = pb::NodeCreateVolumeRequest {
                pool_id: s.to_pool_id.clone(),
                volume_id: s.volume_id.clone(),
                spec: Some(pb::VolumeSpec { size_bytes: s.size_bytes, format: s.format, provisioning: 0 }),
                source: Some(pb::VolumeSource { source: Some(source) }),
            };
            (Box::pin(client.create_volume(req)), if s.export.is_some() { "the copy from the other node" } else { "the copy" })
        } else {
            let req = pb::NodeLiveCopyRequest {
                pool_id: s.to_pool_id.clone(),
                volume_id: s.volume_id.clone(),
                from_pool_id: s.from_pool_id.clone(),
                domain: s.live_domain.clone(),
                format: s.format,
            };
            (Box::pin(client.live_copy_volume(req)), "the live copy")
        };
        let follow = common::follow_node_operation(ctx, &s.node_id, what, start);
        let made = crate::pool_locks::with_lock(ctx, "copy", &s.to_pool_id, follow).await?;
        check_copy(s, &made)?;
        s.copy = Some(MadeCopy { size_bytes: made.size_bytes, allocated_bytes: made.allocated_bytes, format: made.format });
        Ok(())
    })
}

/// What the node made is the whole volume: its size at least the source's,
/// the format asked for, no base left behind.
fn check_copy(s: &MoveVolume, made: &pb::VolumeInfo) -> ApiResult<()> {
    if made.size_bytes < s.size_bytes || made.format != s.format || !made.backing_volume_id.is_empty() {
        return Err(ApiError::internal(format!(
            "the copy of volume {} is not whole: {} bytes ({} expected), format {}, base {:?}",
            s.name, made.size_bytes, s.size_bytes, made.format, made.backing_volume_id
        )));
    }
    Ok(())
}

/// Deletes the copy, unless the record points at it (the switch was made).
fn delete_copy<'a>(ctx: &'a SagaCtx, s: &'a mut MoveVolume) -> StepFuture<'a> {
    Box::pin(async move {
        let at = ctx.app.repo.get_raw(&keys::volume_pool(&s.volume_id)).await?.map(|(bytes, _)| bytes);
        if at.as_deref() == Some(s.to_pool_id.as_bytes()) {
            return Ok(());
        }
        common::delete_mirror_destination_on_node(ctx, &s.node_id, &s.to_pool_id, &s.volume_id, &s.live_domain).await
    })
}

fn switch<'a>(ctx: &'a SagaCtx, s: &'a mut MoveVolume) -> StepFuture<'a> {
    Box::pin(async move {
        let made = s.copy.clone().ok_or_else(|| ApiError::internal("the move switches before its copy was made"))?;
        let repo = &ctx.app.repo;
        repo.retry(|| async {
            let (from_key, to_key) = (keys::volume(&s.from_pool_id, &s.volume_id), keys::volume(&s.to_pool_id, &s.volume_id));
            let Some(v) = repo.get::<pb::Volume>(&from_key).await? else {
                return Ok(()); // switched already (a re-run)
            };
            let from_pool_key = keys::pool(&s.from_pool_id);
            let p = repo.get::<pb::Pool>(&from_pool_key).await?.ok_or_else(|| ApiError::internal("pool record vanished"))?;
            let mut from_pool = p.value;
            from_pool.provisioned_bytes = from_pool.provisioned_bytes.saturating_sub(s.size_bytes);
            let mut volume = v.value;
            volume.pool_id = s.to_pool_id.clone();
            volume.size_bytes = made.size_bytes;
            volume.allocated_bytes = made.allocated_bytes;
            volume.format = made.format;
            volume.backing_volume_id.clear();
            if !s.with_snapshots {
                volume.snapshot_count = 0;
            }
            if !s.to_local {
                volume.node_id.clear();
            } else {
                volume.node_id = s.node_id.clone();
            }
            let mut txn = Txn::new();
            if !s.with_snapshots {
                for (key, _) in repo.list::<pb::Snapshot>(&keys::volume_snapshots(&s.volume_id), None, 0).await? {
                    txn.delete(key);
                }
            }
            txn.expect(&from_key, v.revision)
                .delete(&from_key)
                .expect_absent(&to_key)
                .put(&to_key, &volume)
                .put_raw(keys::volume_pool(&s.volume_id), s.to_pool_id.as_bytes().to_vec())
                .delete(keys::volume_name(&s.from_pool_id, &s.name))
                .expect_absent(keys::volume_name(&s.to_pool_id, &s.name))
                .put_raw(keys::volume_name(&s.to_pool_id, &s.name), s.volume_id.clone().into_bytes())
                .expect(&from_pool_key, p.revision)
                .put(&from_pool_key, &from_pool);
            txn.commit(repo).await.map(drop)
        })
        .await
    })
}

fn delete_source<'a>(ctx: &'a SagaCtx, s: &'a mut MoveVolume) -> StepFuture<'a> {
    Box::pin(async move {
        end_export(ctx, s).await?;
        common::delete_on_node(ctx, s.source_node(), &s.from_pool_id, &s.volume_id).await?;
        release_volume(ctx, &s.to_pool_id, &s.volume_id, s.previous_state).await
    })
}
