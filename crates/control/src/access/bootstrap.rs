//! The first admin: on the first start with authentication on, an admin
//! token (and, with TLS, an admin certificate for node daemons) is written
//! to a 0600 lqctl credentials file.

use std::path::Path;

use limiquantix_api::v1 as pb;
use limiquantix_identity::PeerIdentity;
use limiquantix_identity::credentials::Credentials;

use crate::app::App;
use crate::keys;

pub const FIRST_ADMIN: &str = "admin";

pub async fn first_admin(app: &App, path: &Path, server: &str) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    if app.repo.count(keys::API_TOKENS).await? > 0 {
        // Someone has credentials already: do not mint more behind their back.
        tracing::info!(path = %path.display(), "API tokens exist; not writing first-admin credentials");
        return Ok(());
    }
    let secret = match crate::api::access::create_api_token(app, FIRST_ADMIN, pb::Role::Admin).await {
        Ok(s) => s.secret,
        // Another replica made it at the same moment.
        Err(e) if e.code() == tonic::Code::AlreadyExists => return Ok(()),
        Err(e) => return Err(anyhow::anyhow!("{}", e.status().message())),
    };
    let mut credentials = Credentials { server: server.to_owned(), token: secret, ..Default::default() };
    if let Some(pki) = &app.access.pki {
        let admin = pki.ca.issue(&PeerIdentity::Admin, &[])?;
        credentials.ca_certificate = pki.ca_pem().to_owned();
        credentials.client_certificate = admin.cert_pem;
        credentials.client_key = admin.key_pem;
    }
    crate::private_files::create(path, credentials.to_toml().as_bytes())?;
    tracing::info!(path = %path.display(), "wrote the first admin's lqctl credentials (copy it to ~/.config/limiquantix/lqctl.toml)");
    Ok(())
}
