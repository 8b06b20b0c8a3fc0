//! What a peer's certificate says about it.

use x509_parser::extensions::GeneralName;

use crate::PeerIdentity;

/// The cluster identity a certificate (DER) names, if it names exactly one.
/// The chain itself is checked by TLS before this is asked.
pub fn identity(cert_der: &[u8]) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::DNSName(d) => PeerIdentity::from_dns_name(d),
        _ => None,
    });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// The public key a certificate (DER) certifies (SubjectPublicKeyInfo, DER).
pub fn public_key(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(cert.tbs_certificate.subject_pki.raw.to_vec())
}

/// SHA-256 of a certificate (DER), in hex: how an enrolment remembers the
/// one certificate a node may use.
pub fn fingerprint(cert_der: &[u8]) -> String {
    crate::sha256_hex(cert_der)
}
