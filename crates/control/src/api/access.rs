//! AccessService: join tokens and enrolment, API tokens, who am I.

use std::sync::Arc;
use std::time::Duration;

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::access_service_server::AccessService;
use limiquantix_identity::PeerIdentity;
use limiquantix_identity::tokens::{ApiToken, JoinToken, hashes_match};
use tonic::{Code, Request, Response, Status};

use crate::access::records::{ApiTokenName, ApiTokenRecord, EnrolmentRecord, JoinTokenRecord};
use crate::access::{Caller, ControlPki};
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::records::{parse_name, parse_node_id};
use crate::repo::Txn;
use crate::tasks::now;

type Rpc<T> = Result<Response<T>, Status>;

const DEFAULT_JOIN_TTL: Duration = Duration::from_secs(3600);
const MAX_JOIN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct AccessApi {
    app: Arc<App>,
}

impl AccessApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

/// The cluster CA, which `what` needs.
fn pki<'a>(app: &'a App, what: &str) -> ApiResult<&'a ControlPki> {
    app.access.pki.as_deref().ok_or_else(|| {
        ApiError::precondition(format!("{what} needs TLS, and this control plane runs without it ([tls] enabled = false)"))
    })
}

fn denied(m: impl Into<String>) -> ApiError {
    ApiError::new(Code::PermissionDenied, m)
}

/// A one-time join token valid for `ttl` (see `CreateJoinToken`).
pub async fn create_join_token(app: &App, ttl: Duration) -> ApiResult<pb::JoinToken> {
    let pki = pki(app, "a join token")?;
    if ttl.is_zero() || ttl > MAX_JOIN_TTL {
        return Err(ApiError::invalid(format!("a join token lives from 1 s to {} days", MAX_JOIN_TTL.as_secs() / 86400)));
    }
    let token = JoinToken::new(&pki.ca.sha256());
    let expires = now() + ttl.as_secs() as i64;
    let record = JoinTokenRecord { id: token.id.clone(), secret_sha256: token.secret_hash(), expires_unix_seconds: expires, ..Default::default() };
    let key = keys::join_token(&token.id);
    let mut txn = Txn::new();
    txn.expect_absent(&key).put(&key, &record);
    // Expired and used tokens are only kept until the next one is made.
    for (k, old) in app.repo.list::<JoinTokenRecord>(keys::JOIN_TOKENS, None, 0).await? {
        if old.value.expires_unix_seconds < now() {
            txn.expect(&k, old.revision).delete(&k);
        }
    }
    txn.commit(&app.repo).await?;
    tracing::info!(token = %token.id, expires, "join token created");
    Ok(pb::JoinToken { token: token.to_string(), expires_unix_seconds: expires, ca_sha256: pki.ca.sha256() })
}

/// The certificate node `node_id` enrolled with, if it certifies the key
/// `csr_pem` asks for.
async fn enrolled_for_key(repo: &crate::repo::Repo, node_id: &str, csr_pem: &str) -> ApiResult<Option<String>> {
    let Some(enrolled) = repo.get::<EnrolmentRecord>(&keys::enrolment(node_id)).await? else { return Ok(None) };
    let wanted = limiquantix_identity::ca::request_public_key(csr_pem).map_err(|e| ApiError::invalid(format!("{e:#}")))?;
    let Ok(der) = limiquantix_identity::ca::first_cert_der(&enrolled.value.cert_pem) else { return Ok(None) };
    Ok((limiquantix_identity::peer::public_key(&der) == Some(wanted)).then_some(enrolled.value.cert_pem))
}

/// A new API token (see `CreateApiToken`).
pub async fn create_api_token(app: &App, name: &str, role: pb::Role) -> ApiResult<pb::ApiTokenSecret> {
    let name = parse_name("token", name)?;
    if !matches!(role, pb::Role::Admin | pb::Role::Viewer) {
        return Err(ApiError::invalid("a token's role is admin or viewer"));
    }
    let token = ApiToken::new();
    let record = ApiTokenRecord {
        id: token.id.clone(),
        name: name.clone(),
        role: role as i32,
        secret_sha256: token.secret_hash(),
        created_unix_seconds: now(),
    };
    let mut txn = Txn::new();
    txn.expect_absent(keys::api_token_name(&name))
        .put(keys::api_token_name(&name), &ApiTokenName { id: token.id.clone() })
        .expect_absent(keys::api_token(&token.id))
        .put(keys::api_token(&token.id), &record);
    txn.commit(&app.repo).await.map_err(|e| {
        if e.is_conflict() { ApiError::already_exists(format!("a token named {name} exists; revoke it or pick another name")) } else { e }
    })?;
    tracing::info!(token = %token.id, %name, role = role.as_str_name(), "API token created");
    Ok(pb::ApiTokenSecret { token: Some(shown(&record)), secret: token.to_string() })
}

fn shown(r: &ApiTokenRecord) -> pb::ApiToken {
    pb::ApiToken { id: r.id.clone(), name: r.name.clone(), role: r.role, created_unix_seconds: r.created_unix_seconds }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn create_join_token(&self, req: Request<pb::CreateJoinTokenRequest>) -> Rpc<pb::JoinToken> {
        let ttl = match req.into_inner().ttl_seconds {
            0 => DEFAULT_JOIN_TTL,
            s => Duration::from_secs(s.into()),
        };
        Ok(Response::new(create_join_token(&self.app, ttl).await?))
    }

    async fn enroll_node(&self, req: Request<pb::EnrollNodeRequest>) -> Rpc<pb::EnrollNodeResponse> {
        let r = req.into_inner();
        let pki = pki(&self.app, "enrolment")?;
        let node_id = parse_node_id(&r.node_id)?;
        let token = JoinToken::parse(&r.token).map_err(|e| ApiError::new(Code::Unauthenticated, e.to_string()))?;
        if !hashes_match(&token.ca_sha256, &pki.ca.sha256()) {
            return Err(denied("this join token was made for another cluster (its CA hash is not this control plane's)").into());
        }
        let repo = &self.app.repo;
        let key = keys::join_token(&token.id);
        let forged = || ApiError::new(Code::Unauthenticated, "the join token is not valid (mistyped, or not made by this control plane)");
        let stored = repo.get::<JoinTokenRecord>(&key).await?.ok_or_else(forged)?;
        let record = &stored.value;
        if !hashes_match(&record.secret_sha256, &token.secret_hash()) {
            return Err(forged().into());
        }
        if !record.used_by_node.is_empty() {
            // The same node with the same key asking again: it died before it
            // kept the certificate it was given. Give it the same one.
            if record.used_by_node == node_id
                && let Some(cert_pem) = enrolled_for_key(repo, &node_id, &r.csr_pem).await?
            {
                return Ok(Response::new(pb::EnrollNodeResponse { certificate_pem: cert_pem, ca_certificate_pem: pki.ca_pem().to_owned() }));
            }
            return Err(denied(format!(
                "this join token was used already (by node {}); create a new one with `lqctl node join-token create`",
                record.used_by_node
            ))
            .into());
        }
        if record.expires_unix_seconds < now() {
            return Err(denied("this join token has expired; create a new one with `lqctl node join-token create`").into());
        }
        let who = PeerIdentity::Node(node_id.clone());
        let cert_pem = pki.ca.sign_request(&r.csr_pem, &who).map_err(|e| ApiError::invalid(format!("{e:#}")))?;
        let der = limiquantix_identity::ca::first_cert_der(&cert_pem).map_err(|e| ApiError::internal(e.to_string()))?;
        let enrolment = EnrolmentRecord {
            node_id: node_id.clone(),
            cert_sha256: limiquantix_identity::peer::fingerprint(&der),
            enrolled_unix_seconds: now(),
            cert_pem: cert_pem.clone(),
        };
        let used = JoinTokenRecord { used_by_node: node_id.clone(), used_unix_seconds: now(), ..record.clone() };
        let mut txn = Txn::new();
        txn.expect(&key, stored.revision).put(&key, &used);
        txn.expect_absent(keys::enrolment(&node_id)).put(keys::enrolment(&node_id), &enrolment);
        txn.commit(repo).await.map_err(|e| {
            if e.is_conflict() {
                denied(format!(
                    "node {node_id} is enrolled already, or this token was used at the same moment; \
                     to replace a node's certificate, `lqctl node remove {node_id}` first"
                ))
            } else {
                e
            }
        })?;
        tracing::info!(node = %node_id, token = %token.id, "node enrolled");
        Ok(Response::new(pb::EnrollNodeResponse { certificate_pem: cert_pem, ca_certificate_pem: pki.ca_pem().to_owned() }))
    }

    async fn create_api_token(&self, req: Request<pb::CreateApiTokenRequest>) -> Rpc<pb::ApiTokenSecret> {
        let r = req.into_inner();
        let role = pb::Role::try_from(r.role).unwrap_or(pb::Role::Unspecified);
        Ok(Response::new(create_api_token(&self.app, &r.name, role).await?))
    }

    async fn list_api_tokens(&self, _: Request<pb::ListApiTokensRequest>) -> Rpc<pb::ListApiTokensResponse> {
        let tokens = self.app.repo.list::<ApiTokenRecord>(keys::API_TOKENS, None, 0).await?;
        let mut tokens: Vec<pb::ApiToken> = tokens.iter().map(|(_, t)| shown(&t.value)).collect();
        tokens.sort_by(|a, b| (a.created_unix_seconds, &a.name).cmp(&(b.created_unix_seconds, &b.name)));
        Ok(Response::new(pb::ListApiTokensResponse { tokens }))
    }

    async fn revoke_api_token(&self, req: Request<pb::RevokeApiTokenRequest>) -> Rpc<pb::RevokeApiTokenResponse> {
        let wanted = req.into_inner().token;
        let repo = &self.app.repo;
        let tokens = repo.list::<ApiTokenRecord>(keys::API_TOKENS, None, 0).await?;
        let (key, found) = tokens
            .into_iter()
            .find(|(_, t)| t.value.id == wanted || t.value.name == wanted)
            .ok_or_else(|| ApiError::not_found(format!("no token has the id or name {wanted:?}")))?;
        let mut txn = Txn::new();
        txn.expect(&key, found.revision).delete(&key).delete(keys::api_token_name(&found.value.name));
        txn.commit(repo).await?;
        self.app.access.forget_token(&found.value.id);
        tracing::info!(token = %found.value.id, name = %found.value.name, "API token revoked");
        Ok(Response::new(pb::RevokeApiTokenResponse {}))
    }

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> Rpc<pb::WhoAmIResponse> {
        let (role, name) = req.extensions().get::<Caller>().unwrap_or(&Caller::Nobody).describe();
        Ok(Response::new(pb::WhoAmIResponse { role: role as i32, name }))
    }
}
