//! The cluster CA: made once by the control plane (or given by the
//! operator), it signs every certificate of the cluster.

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

use crate::PeerIdentity;

/// Certificates are not renewed yet, so they outlive any realistic cluster.
const VALIDITY: time::Duration = time::Duration::days(3650);

pub struct ClusterCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate with the private key it was made for (PEM).
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClusterCa {
    /// A new CA with a fresh ECDSA P-256 key. Returns it with its key (PEM),
    /// which the caller keeps private.
    pub fn generate() -> anyhow::Result<(Self, String)> {
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "LimiQuantix cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params);
        let cert = params.self_signed(&key)?;
        Ok((Self::from_pem(&cert.pem(), &key_pem)?, key_pem))
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Self> {
        let key = KeyPair::from_pem(key_pem).context("the CA key is not a PEM private key")?;
        let cert_der = first_cert_der(cert_pem).context("the CA certificate")?;
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key).context("the CA certificate cannot be read")?;
        Ok(Self { cert_pem: cert_pem.to_owned(), cert_der, issuer })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate (DER): what a join token pins.
    pub fn sha256(&self) -> String {
        crate::sha256_hex(&self.cert_der)
    }

    /// A certificate and a new key for `who`, also valid for `extra_names`
    /// (host names or IP addresses the holder is reached at).
    pub fn issue(&self, who: &PeerIdentity, extra_names: &[String]) -> anyhow::Result<IssuedCert> {
        if extra_names.iter().any(|n| PeerIdentity::from_dns_name(n).is_some()) {
            bail!("an extra name may not be a cluster identity");
        }
        let mut names = vec![who.dns_name()];
        names.extend(extra_names.iter().cloned());
        self.issue_leaf(names)
    }

    /// A server certificate for names outside the cluster's identities
    /// (e.g. an etcd the control plane uses), with a new key.
    pub fn issue_for_names(&self, names: &[String]) -> anyhow::Result<IssuedCert> {
        if names.is_empty() {
            bail!("a certificate needs a name");
        }
        if names.iter().any(|n| PeerIdentity::from_dns_name(n).is_some()) {
            bail!("cluster identities are issued with `issue`");
        }
        self.issue_leaf(names.to_vec())
    }

    fn issue_leaf(&self, names: Vec<String>) -> anyhow::Result<IssuedCert> {
        let key = KeyPair::generate()?;
        let cert = leaf_params(names)?.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Signs the key of a certificate request for `who`. Only the request's
    /// public key is used: names and usages are the CA's choice.
    pub fn sign_request(&self, csr_pem: &str, who: &PeerIdentity) -> anyhow::Result<String> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).context("not a valid certificate request")?;
        Ok(leaf_params(vec![who.dns_name()])?.signed_by(&csr.public_key, &self.issuer)?.pem())
    }
}

/// A new key and a request to sign it, for the holder's own use (the key
/// never leaves the machine that made it). Returns (request, key) in PEM.
pub fn new_request(who: &PeerIdentity) -> anyhow::Result<(String, String)> {
    let key_pem = new_key_pem()?;
    Ok((request_for_key(who, &key_pem)?, key_pem))
}

/// A new private key (ECDSA P-256, PEM).
pub fn new_key_pem() -> anyhow::Result<String> {
    Ok(KeyPair::generate()?.serialize_pem())
}

/// A request to certify the key `key_pem` (PEM) for `who`.
pub fn request_for_key(who: &PeerIdentity, key_pem: &str) -> anyhow::Result<String> {
    let key = KeyPair::from_pem(key_pem).context("not a PEM private key")?;
    let params = CertificateParams::new(vec![who.dns_name()])?;
    Ok(params.serialize_request(&key)?.pem()?)
}

/// The public key (SubjectPublicKeyInfo, DER) a certificate request asks to certify.
pub fn request_public_key(csr_pem: &str) -> anyhow::Result<Vec<u8>> {
    use rcgen::PublicKeyData;
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).context("not a valid certificate request")?;
    Ok(csr.public_key.subject_public_key_info())
}

/// A leaf certificate for `names` (the first is its common name), usable
/// by servers and clients alike.
fn leaf_params(names: Vec<String>) -> anyhow::Result<CertificateParams> {
    let common_name = names.first().cloned().unwrap_or_default();
    let mut params = CertificateParams::new(names).context("a certificate name is not a valid host name or IP address")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial).map_err(|_| anyhow::anyhow!("no randomness"))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    set_validity(&mut params);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks that disagree.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + VALIDITY;
}

/// The DER of the first certificate in `pem`.
pub fn first_cert_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::pem_slice_iter(pem.as_bytes()).next().context("no PEM certificate")??;
    Ok(cert.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer;

    #[test]
    fn issued_and_requested_certificates_name_their_holder() {
        let (ca, key_pem) = ClusterCa::generate().unwrap();
        let again = ClusterCa::from_pem(ca.cert_pem(), &key_pem).unwrap();
        assert_eq!(ca.sha256(), again.sha256());
        let node = PeerIdentity::Node("0d0d0d0d-0000-4000-8000-000000000001".into());
        let issued = again.issue(&PeerIdentity::Control, &["127.0.0.1".into(), "cp1.example".into()]).unwrap();
        assert_eq!(peer::identity(&first_cert_der(&issued.cert_pem).unwrap()), Some(PeerIdentity::Control));
        // A request that asks for another name still gets the identity the CA gives.
        let (csr, _key) = new_request(&PeerIdentity::Control).unwrap();
        let signed = ca.sign_request(&csr, &node).unwrap();
        assert_eq!(peer::identity(&first_cert_der(&signed).unwrap()), Some(node.clone()));
        assert!(ca.sign_request("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", &node).is_err());
        assert!(ca.issue(&node, &[PeerIdentity::Control.dns_name()]).is_err(), "one certificate, one identity");
    }
}
