//! Who is on the other end of a connection, as proven by its certificate, and what it may do.

use std::fmt;
use std::str::FromStr;

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;

use crate::certs::parse_store_dns_name;

/// What a client certificate allows. A store's certificate allows everything: stores call each
/// other's admin service (a joining store adds itself, a leader's peers ask for ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads keys and the cluster's state (regions, stores, Raft state and log, checksums).
    ReadOnly,
    /// Also writes keys: what an application needs.
    ReadWrite,
    /// Also changes the cluster: membership, leadership, log compaction, snapshots, splits,
    /// id allocation and fault injection.
    Admin,
}

impl Role {
    /// Every role, least powerful first.
    pub const ALL: [Role; 3] = [Role::ReadOnly, Role::ReadWrite, Role::Admin];

    /// What a client certificate issued before roles existed may do: it could write then, so
    /// writing keeps working, but it must not keep the cluster-changing powers it had.
    pub const WITHOUT_ROLE: Role = Role::ReadWrite;

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "readonly",
            Role::ReadWrite => "readwrite",
            Role::Admin => "admin",
        }
    }

    /// Whether a certificate with this role may do what `needed` is required for.
    pub fn allows(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }

    // Spelt out rather than derived from the declaration order, which also fixes the wire
    // encoding and must not be reordered to change what a role allows.
    fn rank(self) -> u8 {
        match self {
            Role::ReadOnly => 0,
            Role::ReadWrite => 1,
            Role::Admin => 2,
        }
    }

    /// The certificate subject's organizational unit that carries this role.
    pub fn subject_unit(self) -> String {
        format!("{ROLE_UNIT_PREFIX}{self}")
    }

    /// The role an organizational unit names: `None` when the unit is not a role's,
    /// `Some(Err(_))` when it is a role's but not one this build knows.
    fn from_subject_unit(unit: &str) -> Option<Result<Role, IdentityError>> {
        let name = unit.strip_prefix(ROLE_UNIT_PREFIX)?;
        Some(
            name.parse()
                .map_err(|_| IdentityError::UnknownRole(name.to_owned())),
        )
    }
}

/// Marks the organizational unit (OU) of a client certificate's subject that holds its role,
/// so other units an operator may add are not mistaken for one.
const ROLE_UNIT_PREFIX: &str = "tinykv-role:";

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A role name this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, readwrite or readonly")]
pub struct UnknownRole(pub String);

/// The authenticated peer of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Identity {
    /// A node: its certificate carries the SAN `store-<id>.tinykv`.
    Store(u64),
    /// Anything else signed by the cluster CA (the CLI, client libraries): named by its CN,
    /// with the role its subject carries ([`Role::WITHOUT_ROLE`] when it carries none).
    Client { name: String, role: Role },
}

impl Identity {
    pub fn store_id(&self) -> Option<u64> {
        match self {
            Identity::Store(id) => Some(*id),
            Identity::Client { .. } => None,
        }
    }

    /// What this peer may do: a store anything, a client what its certificate's role allows.
    pub fn role(&self) -> Role {
        match self {
            Identity::Store(_) => Role::Admin,
            Identity::Client { role, .. } => *role,
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
                let subject = parsed.subject();
                let cn = subject
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .ok_or(IdentityError::NoName)?;
                let mut roles = Vec::new();
                for unit in subject.iter_organizational_unit() {
                    let Ok(unit) = unit.as_str() else { continue };
                    if let Some(role) = Role::from_subject_unit(unit) {
                        roles.push(role?);
                    }
                }
                roles.dedup();
                let role = match roles.as_slice() {
                    [] => Role::WITHOUT_ROLE,
                    [role] => *role,
                    // As with two stores: the CA never issues this, so it is not guessed at.
                    many => return Err(IdentityError::SeveralRoles(many.to_vec())),
                };
                Ok(Identity::Client {
                    name: cn.to_owned(),
                    role,
                })
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
            Identity::Client { name, role } => write!(f, "client {name:?} ({role})"),
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
    /// Refused rather than read as a lesser role: the certificate was made for something this
    /// build cannot check.
    #[error(
        "peer certificate carries role {0:?}, which this node does not know (admin, readwrite or readonly)"
    )]
    UnknownRole(String),
    #[error("peer certificate carries several roles: {0:?}")]
    SeveralRoles(Vec<Role>),
}

#[cfg(test)]
mod tests {
    use rcgen::{DistinguishedName, DnType, ExtendedKeyUsagePurpose};

    use super::*;
    use crate::certs::{ClusterCa, IssuedCert, Validity};

    fn ca() -> ClusterCa {
        ClusterCa::generate("identity test CA", Validity::days(1)).unwrap()
    }

    /// A client certificate whose subject is CN `name` and the organizational units `units`.
    fn client_with_units(ca: &ClusterCa, name: &str, units: &[&str]) -> IssuedCert {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        // rcgen keeps one value per attribute type; spelling the OU's OID (2.5.4.11) as a custom
        // type is how a second OU gets in.
        let types = [
            DnType::OrganizationalUnitName,
            DnType::CustomDnType(vec![2, 5, 4, 11]),
        ];
        assert!(units.len() <= types.len());
        for (ty, unit) in types.into_iter().zip(units) {
            dn.push(ty, *unit);
        }
        ca.issue_with_subject(
            dn,
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            Validity::days(1),
        )
        .unwrap()
    }

    #[test]
    fn a_client_certificate_carries_the_role_it_was_issued_with() {
        let ca = ca();
        for role in Role::ALL {
            let cert = ca.issue_client("app", role, Validity::days(1)).unwrap();
            assert_eq!(
                Identity::from_leaf(cert.cert_der()).unwrap(),
                Identity::Client {
                    name: "app".into(),
                    role
                }
            );
        }
    }

    #[test]
    fn a_client_certificate_without_a_role_may_read_and_write_but_not_administer() {
        // What an earlier build issued: a CN and nothing else in the subject.
        let cert = client_with_units(&ca(), "old-app", &[]);
        let identity = Identity::from_leaf(cert.cert_der()).unwrap();
        assert_eq!(
            identity,
            Identity::Client {
                name: "old-app".into(),
                role: Role::ReadWrite
            }
        );
        assert!(identity.role().allows(Role::ReadWrite));
        assert!(!identity.role().allows(Role::Admin));
    }

    #[test]
    fn other_organizational_units_are_not_roles() {
        let ca = ca();
        for unit in ["admin", "payments team"] {
            let cert = client_with_units(&ca, "billing", &[unit]);
            assert_eq!(
                Identity::from_leaf(cert.cert_der()).unwrap().role(),
                Role::WITHOUT_ROLE,
                "{unit}"
            );
        }
        let cert = client_with_units(&ca, "billing", &["payments team", "tinykv-role:readonly"]);
        assert_eq!(
            Identity::from_leaf(cert.cert_der()).unwrap().role(),
            Role::ReadOnly
        );
    }

    #[test]
    fn a_store_certificate_may_do_everything() {
        let cert = ca()
            .issue_node(3, &["127.0.0.1".into()], Validity::days(1))
            .unwrap();
        let identity = Identity::from_leaf(cert.cert_der()).unwrap();
        assert_eq!(identity, Identity::Store(3));
        assert_eq!(identity.role(), Role::Admin);
    }

    #[test]
    fn unknown_or_several_roles_are_refused() {
        let ca = ca();
        let unknown = client_with_units(&ca, "x", &["tinykv-role:superuser"]);
        assert_eq!(
            Identity::from_leaf(unknown.cert_der()),
            Err(IdentityError::UnknownRole("superuser".into()))
        );
        let several = client_with_units(&ca, "x", &["tinykv-role:readonly", "tinykv-role:admin"]);
        assert_eq!(
            Identity::from_leaf(several.cert_der()),
            Err(IdentityError::SeveralRoles(vec![
                Role::ReadOnly,
                Role::Admin
            ]))
        );
    }

    #[test]
    fn roles_order_parse_and_print() {
        assert!(Role::Admin.allows(Role::ReadWrite));
        assert!(Role::ReadWrite.allows(Role::ReadOnly));
        assert!(Role::ReadWrite.allows(Role::ReadWrite));
        assert!(!Role::ReadOnly.allows(Role::ReadWrite));
        assert!(!Role::ReadWrite.allows(Role::Admin));
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
