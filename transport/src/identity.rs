//! Who is on the other end of a connection, as proven by its certificate.

use std::fmt;

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;

use crate::certs::parse_store_dns_name;

/// The authenticated peer of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Identity {
    /// A node: its certificate carries the SAN `store-<id>.tinykv`.
    Store(u64),
    /// Anything else signed by the cluster CA (the CLI, client libraries): named by its CN.
    Client(String),
}

impl Identity {
    pub fn store_id(&self) -> Option<u64> {
        match self {
            Identity::Store(id) => Some(*id),
            Identity::Client(_) => None,
        }
    }

    /// Derives the identity from a leaf certificate that has already passed chain verification.
    pub fn from_leaf(cert: &CertificateDer<'_>) -> Result<Self, IdentityError> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        let mut stores = Vec::new();
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(dns) = name
                    && let Some(id) = parse_store_dns_name(dns)
                {
                    stores.push(id);
                }
            }
        }
        stores.sort_unstable();
        stores.dedup();
        match stores.as_slice() {
            [id] => Ok(Identity::Store(*id)),
            [] => {
                let cn = parsed
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .ok_or(IdentityError::NoName)?;
                Ok(Identity::Client(cn.to_owned()))
            }
            // A certificate naming two stores could impersonate either; the CA should never
            // issue one, so it is refused rather than guessed at.
            many => Err(IdentityError::SeveralStores(many.to_vec())),
        }
    }

    /// Reads the identity of an established quinn connection.
    pub fn of_connection(conn: &quinn::Connection) -> Result<Self, IdentityError> {
        let any = conn.peer_identity().ok_or(IdentityError::NoCertificate)?;
        let chain = any
            .downcast::<Vec<CertificateDer<'static>>>()
            .map_err(|_| IdentityError::NoCertificate)?;
        let leaf = chain.first().ok_or(IdentityError::NoCertificate)?;
        Self::from_leaf(leaf)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Store(id) => write!(f, "store {id}"),
            Identity::Client(name) => write!(f, "client {name:?}"),
        }
    }
}

/// Why no identity could be derived from a verified certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("peer presented no certificate")]
    NoCertificate,
    #[error("peer certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("peer certificate has neither a store SAN nor a common name")]
    NoName,
    #[error("peer certificate names several stores: {0:?}")]
    SeveralStores(Vec<u64>),
}
