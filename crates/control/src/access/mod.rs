//! Who may call what. Every call to the API names its caller: a bearer
//! token (admin or viewer), or — for registration and heartbeats only — a
//! node's own certificate, the one it enrolled with. The health service,
//! enrolment (which checks its join token itself) and the status page are
//! open; /metrics is open unless the config asks for a token.

pub mod bootstrap;
pub mod pki;
pub mod records;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use limiquantix_api::v1 as pb;
use limiquantix_identity::PeerIdentity;
use limiquantix_identity::tokens::{ApiToken, hashes_match};
use tonic::Status;

use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::repo::Repo;
use crate::store::Revision;
use records::{ApiTokenRecord, EnrolmentRecord};

pub use pki::ControlPki;

/// How long a token check is trusted before the store is asked again; a
/// revocation on this replica takes effect at once, on others within this.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// The caller of one request, as the listener and the token check found it.
#[derive(Debug, Clone)]
pub enum Caller {
    Token { id: String, name: String, role: pb::Role },
    Cert { who: PeerIdentity, fingerprint: String },
    /// No credentials (open calls), or authentication is off.
    Nobody,
}

impl Caller {
    pub fn describe(&self) -> (pb::Role, String) {
        match self {
            Self::Token { name, role, .. } => (*role, format!("token {name}")),
            Self::Cert { who: who @ PeerIdentity::Node(_), .. } => (pb::Role::Node, who.to_string()),
            Self::Cert { who, .. } => (pb::Role::Unspecified, who.to_string()),
            Self::Nobody => (pb::Role::Unspecified, "nobody".into()),
        }
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Open,
    /// Registration and heartbeats: the node's own enrolled certificate.
    Node,
    /// Get, List, Watch: a viewer or an admin.
    Read,
    /// Everything else: an admin.
    Write,
}

fn need(path: &str, metrics_need_token: bool) -> Need {
    const API: &str = "/limiquantix.storage.v1.";
    if path.starts_with("/grpc.health.v1.Health/") || path == "/" {
        return Need::Open;
    }
    // The web UI's files (public, like any web page's; the API calls they
    // make carry the user's token).
    if !path.starts_with("/limiquantix.") && !path.starts_with("/grpc.") && path != "/metrics" {
        return Need::Open;
    }
    if path == "/metrics" {
        return if metrics_need_token { Need::Read } else { Need::Open };
    }
    let Some(call) = path.strip_prefix(API) else {
        return Need::Read;
    };
    let method = call.rsplit('/').next().unwrap_or_default();
    match call {
        "AccessService/EnrollNode" => Need::Open,
        "NodeService/RegisterNode" | "NodeService/Heartbeat" => Need::Node,
        "AccessService/WhoAmI" => Need::Read,
        _ if ["Get", "List", "Watch"].iter().any(|p| method.starts_with(p)) => Need::Read,
        _ => Need::Write,
    }
}

pub struct Access {
    /// Tokens are required (else every call is let through, on loopback).
    pub auth: bool,
    /// TLS, with the cluster CA; None = plaintext (loopback).
    pub pki: Option<Arc<ControlPki>>,
    pub metrics_need_token: bool,
    tokens: Mutex<HashMap<String, (ApiTokenRecord, Instant)>>,
}

impl Access {
    pub fn new(auth: bool, pki: Option<Arc<ControlPki>>, metrics_need_token: bool) -> Self {
        Self { auth, pki, metrics_need_token, tokens: Mutex::new(HashMap::new()) }
    }

    /// The caller of a request to `path`, if it may make it.
    pub async fn authorize(
        &self,
        repo: &Repo,
        path: &str,
        authorization: Option<&str>,
        peer_cert: Option<&[u8]>,
    ) -> Result<Caller, Status> {
        let needs = need(path, self.metrics_need_token);
        let caller = match (authorization, peer_cert) {
            (Some(header), _) => self.token_caller(repo, header).await?,
            (None, Some(der)) => match limiquantix_identity::peer::identity(der) {
                Some(who) => Caller::Cert { who, fingerprint: limiquantix_identity::peer::fingerprint(der) },
                None => Caller::Nobody,
            },
            (None, None) => Caller::Nobody,
        };
        let allowed = match (needs, &caller) {
            (Need::Open, _) => true,
            // Without TLS there are no node certificates (loopback only).
            (Need::Node, Caller::Cert { who: PeerIdentity::Node(_), .. }) => true,
            (Need::Node, _) => self.pki.is_none(),
            (_, _) if !self.auth => true,
            (Need::Read, Caller::Token { .. }) => true,
            (Need::Write, Caller::Token { role: pb::Role::Admin, .. }) => true,
            _ => false,
        };
        if allowed {
            return Ok(caller);
        }
        Err(match (needs, &caller) {
            (_, Caller::Nobody) => Status::unauthenticated(format!(
                "{path} needs credentials: a bearer token (lqctl reads it from its credentials file: --credentials, ${}, \
                 or ~/.config/limiquantix/lqctl.toml)",
                limiquantix_identity::credentials::ENV
            )),
            (Need::Node, _) => Status::permission_denied("only an enrolled node, with its own certificate, registers and heartbeats"),
            (Need::Write, Caller::Token { name, .. }) => {
                Status::permission_denied(format!("token {name} is a viewer: it may read, not change anything ({path})"))
            }
            (_, c) => Status::permission_denied(format!("{} may not call {path}", c.describe().1)),
        })
    }

    async fn token_caller(&self, repo: &Repo, header: &str) -> Result<Caller, Status> {
        let invalid = || Status::unauthenticated("the bearer token is not valid: mistyped, revoked, or from another cluster");
        let text = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).ok_or_else(invalid)?;
        let token = ApiToken::parse(text).ok_or_else(invalid)?;
        let record = self.token_record(repo, &token.id).await.map_err(|e| e.status())?.ok_or_else(invalid)?;
        if !hashes_match(&record.secret_sha256, &token.secret_hash()) {
            return Err(invalid());
        }
        Ok(Caller::Token { id: record.id, name: record.name, role: pb::Role::try_from(record.role).unwrap_or(pb::Role::Viewer) })
    }

    async fn token_record(&self, repo: &Repo, id: &str) -> ApiResult<Option<ApiTokenRecord>> {
        if let Some((record, at)) = self.tokens.lock().expect("token cache lock").get(id)
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(Some(record.clone()));
        }
        let record = repo.get::<ApiTokenRecord>(&keys::api_token(id)).await?.map(|v| v.value);
        let mut cache = self.tokens.lock().expect("token cache lock");
        match &record {
            Some(r) => cache.insert(id.to_owned(), (r.clone(), Instant::now())),
            None => cache.remove(id),
        };
        Ok(record)
    }

    pub fn forget_token(&self, id: &str) {
        self.tokens.lock().expect("token cache lock").remove(id);
    }

    /// A registration or heartbeat for `node_id`: with TLS, the caller must
    /// be that node, with the certificate it enrolled with. Returns the
    /// enrolment's revision: a registration writes only if it still holds
    /// (a removal racing it must win).
    pub async fn check_node(&self, repo: &Repo, caller: Option<&Caller>, node_id: &str) -> ApiResult<Option<Revision>> {
        if self.pki.is_none() {
            return Ok(None);
        }
        let Some(Caller::Cert { who: PeerIdentity::Node(cert_id), fingerprint }) = caller else {
            return Err(ApiError::new(tonic::Code::PermissionDenied, "only an enrolled node, with its own certificate, registers"));
        };
        if cert_id != node_id {
            return Err(ApiError::new(
                tonic::Code::PermissionDenied,
                format!("the certificate of node {cert_id} cannot speak for node {node_id}"),
            ));
        }
        let enrolled = repo.get::<EnrolmentRecord>(&keys::enrolment(node_id)).await?;
        match enrolled {
            Some(e) if hashes_match(&e.value.cert_sha256, fingerprint) => Ok(Some(e.revision)),
            _ => Err(ApiError::new(
                tonic::Code::PermissionDenied,
                format!("node {node_id}'s certificate is not enrolled (the node was removed): enrol it again with a new join token"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_open_calls_are_told_apart() {
        let cases = [
            ("/grpc.health.v1.Health/Check", Need::Open),
            ("/limiquantix.storage.v1.AccessService/EnrollNode", Need::Open),
            ("/limiquantix.storage.v1.NodeService/RegisterNode", Need::Node),
            ("/limiquantix.storage.v1.NodeService/Heartbeat", Need::Node),
            ("/limiquantix.storage.v1.VolumeService/ListVolumes", Need::Read),
            ("/limiquantix.storage.v1.TaskService/WatchTask", Need::Read),
            ("/limiquantix.storage.v1.StoragePoolService/GetPoolMetrics", Need::Read),
            ("/limiquantix.storage.v1.VolumeService/CreateVolume", Need::Write),
            ("/limiquantix.storage.v1.StoragePoolService/UpdatePool", Need::Write),
            ("/limiquantix.storage.v1.AccessService/CreateApiToken", Need::Write),
            ("/limiquantix.storage.v1.NodeService/RemoveNode", Need::Write),
            ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Need::Read),
            ("/metrics", Need::Open),
            // The web UI's own files.
            ("/", Need::Open),
            ("/assets/index-3f2a.js", Need::Open),
            ("/volumes", Need::Open),
        ];
        for (path, expected) in cases {
            assert_eq!(need(path, false), expected, "{path}");
        }
        assert_eq!(need("/metrics", true), Need::Read);
    }
}
