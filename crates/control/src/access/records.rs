//! What the store keeps about tokens and enrolments. Secrets are kept only
//! as SHA-256 hashes.

#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiTokenRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    /// pb::Role
    #[prost(int32, tag = "3")]
    pub role: i32,
    #[prost(string, tag = "4")]
    pub secret_sha256: String,
    #[prost(int64, tag = "5")]
    pub created_unix_seconds: i64,
}

/// A token name's owner.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiTokenName {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinTokenRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub secret_sha256: String,
    #[prost(int64, tag = "3")]
    pub expires_unix_seconds: i64,
    /// Set once used: a token enrols one node.
    #[prost(string, tag = "4")]
    pub used_by_node: String,
    #[prost(int64, tag = "5")]
    pub used_unix_seconds: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EnrolmentRecord {
    #[prost(string, tag = "1")]
    pub node_id: String,
    #[prost(string, tag = "2")]
    pub cert_sha256: String,
    #[prost(int64, tag = "3")]
    pub enrolled_unix_seconds: i64,
    /// The certificate itself, given again to the same key if the node
    /// died before it kept it.
    #[prost(string, tag = "4")]
    pub cert_pem: String,
}
