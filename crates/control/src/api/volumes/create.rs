//! New volumes: empty, clones, copies and imports, checked and reserved
//! before their saga starts.

use super::*;

/// What a new volume is made from, once checked.
pub(super) struct NewVolume {
    pub(super) volume_id: Option<String>,
    pub(super) pool: String,
    pub(super) name: String,
    pub(super) labels: std::collections::HashMap<String, String>,
    pub(super) spec: pb::VolumeSpec,
    pub(super) source: Option<pb::VolumeSource>,
    /// For imports: the node whose import directory holds the image.
    pub(super) node_id: Option<String>,
}

fn check_spec(spec: &pb::VolumeSpec, pool: &pb::Pool) -> ApiResult<()> {
    if spec.size_bytes != 0 {
        validate_size("volume size", spec.size_bytes)?;
    }
    let format: pb::VolumeFormat = known("format", spec.format)?;
    known::<pb::Provisioning>("provisioning", spec.provisioning)?;
    let formats = pool.capabilities.as_ref().map(|c| c.formats.clone()).unwrap_or_default();
    if format != pb::VolumeFormat::Unspecified && !formats.contains(&(format as i32)) {
        return Err(ApiError::invalid(format!("pool {} does not store {} volumes", pool.name, format.as_str_name())));
    }
    Ok(())
}

impl VolumeApi {
    pub(super) async fn create(&self, new: NewVolume) -> ApiResult<pb::VolumeOperation> {
        let app = &self.app;
        let repo = &app.repo;
        let name = records::parse_new_name("volume", &new.name)?;
        check_labels(&new.labels)?;
        let pool = records::pool(repo, &new.pool).await?.value;
        crate::api::refuse_array_managed(&pool, "create")?;
        ensure_pool_ready(&pool)?;
        check_spec(&new.spec, &pool)?;
        use pb::volume_source::Source as S;
        // A clone or a copy of a snapshot holds its source until it ends.
        let mut source_id = None;
        let (reserve, node_id) = match new.source.as_ref().and_then(|s| s.source.as_ref()) {
            None | Some(S::Empty(_)) => {
                if new.spec.size_bytes == 0 {
                    return Err(ApiError::invalid("an empty volume needs a size"));
                }
                (new.spec.size_bytes, placement_node(app, &pool).await?)
            }
            Some(S::Clone(c)) => {
                let src = records::volume(repo, &c.source_volume_id).await?.value;
                self.check_source(&src, &pool)?;
                source_id = Some(src.id.clone());
                (new.spec.size_bytes.max(src.size_bytes), self.serving_node_in(&src, &pool).await?)
            }
            Some(S::Snapshot(snap)) => {
                let src = records::volume(repo, &snap.volume_id).await?.value;
                self.check_source(&src, &pool)?;
                source_id = Some(src.id.clone());
                let snap_name = parse_name("snapshot", &snap.snapshot_name)?;
                records::snapshot(repo, &src, &snap_name).await?;
                (new.spec.size_bytes.max(src.size_bytes), self.serving_node_in(&src, &pool).await?)
            }
            Some(S::OtherPool(_) | S::Remote(_)) => {
                return Err(ApiError::invalid("a volume changes pools by a move (MoveVolume), not by a create"));
            }
            Some(S::Image(image)) => {
                if image.path.is_empty() || !image.path.starts_with('/') {
                    return Err(ApiError::invalid("the image path must be absolute (a file on the node)"));
                }
                let node = match &new.node_id {
                    Some(n) if !n.is_empty() => {
                        let n = records::parse_node_id(n)?;
                        if !is_shared(&pool) && !pool.node_ids.contains(&n) {
                            return Err(ApiError::precondition(format!("pool {} is local to another node", pool.name)));
                        }
                        app.nodes.online(repo, &n).await?.id
                    }
                    _ if !is_shared(&pool) => placement_node(app, &pool).await?,
                    _ => return Err(ApiError::invalid("say which node holds the image (node_id)")),
                };
                (new.spec.size_bytes, node)
            }
        };
        let id = match &new.volume_id {
            Some(id) if !id.is_empty() => parse_volume_id(id)?,
            _ => new_id(),
        };
        let node_request = pb::NodeCreateVolumeRequest {
            pool_id: pool.id.clone(),
            volume_id: id.clone(),
            spec: Some(new.spec),
            source: new.source.clone(),
        };
        let op = repo
            .retry(|| async {
                if let Some(pool_id) = records::pool_of_volume(repo, &id).await? {
                    let existing = records::volume(repo, &id).await?.value;
                    if pool_id == pool.id && existing.name == name {
                        let task_id = existing.task_id.clone();
                        return Ok(pb::VolumeOperation { volume: Some(existing), task_id });
                    }
                    return Err(ApiError::already_exists(format!("volume id {id} is taken by another volume")));
                }
                let name_key = keys::volume_name(&pool.id, &name);
                if repo.get_raw(&name_key).await?.is_some() {
                    return Err(ApiError::already_exists(format!("a volume named {name} already exists in pool {}", pool.name)));
                }
                let p = repo.get::<pb::Pool>(&keys::pool(&pool.id)).await?.ok_or_else(|| ApiError::not_found("the pool was deleted"))?;
                ensure_room(&p.value, reserve)?;
                let task_id = new_id();
                // The source, read again in this attempt: its revision guards
                // the hold against a delete (or any change) racing this create.
                let held = match &source_id {
                    Some(src_id) => {
                        let src = records::volume(repo, src_id).await?;
                        self.check_source(&src.value, &pool)?;
                        let mut holder = src.value;
                        holder.held_by_task_ids.push(task_id.clone());
                        Some((keys::volume(&holder.pool_id, &holder.id), src.revision, holder))
                    }
                    None => None,
                };
                let volume = pb::Volume {
                    id: id.clone(),
                    name: name.clone(),
                    pool_id: pool.id.clone(),
                    labels: new.labels.clone(),
                    state: pb::VolumeState::Creating as i32,
                    size_bytes: reserve,
                    format: new.spec.format,
                    provisioning: new.spec.provisioning,
                    node_id: node_id.clone(),
                    task_id: task_id.clone(),
                    created_unix_seconds: now(),
                    ..Default::default()
                };
                let mut pool_now = p.value;
                pool_now.provisioned_bytes += reserve;
                let saga = CreateVolume {
                    pool_id: pool.id.clone(),
                    volume_id: id.clone(),
                    name: name.clone(),
                    node_id: node_id.clone(),
                    node_request: prost::Message::encode_to_vec(&node_request),
                    source_volume_id: source_id.clone(),
                };
                let vkey = keys::volume(&pool.id, &id);
                let mut txn = Txn::new();
                txn.expect_absent(&vkey)
                    .put(&vkey, &volume)
                    .expect_absent(keys::volume_pool(&id))
                    .put_raw(keys::volume_pool(&id), pool.id.clone().into_bytes())
                    .expect_absent(&name_key)
                    .put_raw(&name_key, id.clone().into_bytes())
                    .expect(keys::pool(&pool.id), p.revision)
                    .put(keys::pool(&pool.id), &pool_now);
                if let Some((key, revision, holder)) = &held {
                    txn.expect(key, *revision).put(key, holder);
                }
                add_saga(&mut txn, &task_id, &saga, &id)?;
                txn.commit(repo).await?;
                Ok(pb::VolumeOperation { volume: Some(volume), task_id })
            })
            .await?;
        crate::sagas::runner::start(app, &op.task_id);
        Ok(op)
    }

    fn check_source(&self, src: &pb::Volume, pool: &pb::Pool) -> ApiResult<()> {
        if src.pool_id != pool.id {
            return Err(ApiError::invalid(format!(
                "volume {} is in another pool; clones and copies are made in their source's pool",
                src.name
            )));
        }
        ensure_no_task(src)?;
        require_available(src, "only an available (detached) volume can be the source")
    }
}
