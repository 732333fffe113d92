//! The cluster's certificate authority and the certificates it issues.
//!
//! Every QUIC connection in a cluster is mutually authenticated against one private CA. Node
//! certificates carry the SAN `store-<id>.tinykv`, which is how a peer's store id is learnt after
//! the handshake (see [`crate::identity`]); client certificates carry their name as CN and their
//! [`Role`] as an organizational unit (`OU=tinykv-role:readwrite`).

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::identity::Role;

/// The DNS name a node certificate carries for store `id`; dialers verify it as the server name.
pub fn store_dns_name(store_id: u64) -> String {
    format!("store-{store_id}.tinykv")
}

/// Parses `store-<id>.tinykv` back into the store id.
pub fn parse_store_dns_name(name: &str) -> Option<u64> {
    let id = name.strip_prefix("store-")?.strip_suffix(".tinykv")?;
    // Reject forms like "store-+1" or "store-01" so one store has exactly one name.
    if id.is_empty()
        || !id.bytes().all(|b| b.is_ascii_digit())
        || (id.len() > 1 && id.starts_with('0'))
    {
        return None;
    }
    id.parse().ok()
}

/// Errors creating, writing or loading certificates and keys.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating certificate or key: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid subject alternative name {name:?}: {reason}")]
    InvalidSan { name: String, reason: String },
    #[error("invalid validity period: not_after {not_after} is not after not_before {not_before}")]
    InvalidValidity {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    BadFile { path: PathBuf, problem: String },
}

impl CertError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn bad_file(path: &Path, problem: impl Into<String>) -> Self {
        Self::BadFile {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// When a certificate is valid. Tests use a period in the past to get an expired certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from an hour ago (tolerates clock skew between nodes) for `days` days.
    pub fn days(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - TimeDuration::hours(1),
            not_after: now + TimeDuration::days(days),
        }
    }

    /// An explicit period.
    pub fn between(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        Self {
            not_before,
            not_after,
        }
    }

    fn check(&self) -> Result<(), CertError> {
        if self.not_after <= self.not_before {
            return Err(CertError::InvalidValidity {
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }
}

impl Default for Validity {
    /// Ten years for a CA that is meant to outlive its node certificates.
    fn default() -> Self {
        Self::days(3650)
    }
}

/// A certificate and its private key, as issued.
pub struct IssuedCert {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
    key_der: Vec<u8>,
}

impl IssuedCert {
    fn new(cert: rcgen::Certificate, key: &KeyPair) -> Self {
        Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The private key in the form rustls takes.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes the certificate (mode 0644) and the key (mode 0600).
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
        write_file(cert_path, self.cert_pem.as_bytes(), 0o644)?;
        write_file(key_path, self.key_pem.as_bytes(), 0o600)
    }
}

impl std::fmt::Debug for IssuedCert {
    // The key is deliberately left out so it never lands in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

/// The cluster CA: signs node and client certificates.
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    cert: IssuedCert,
}

impl ClusterCa {
    /// Creates a self-signed CA (basic constraints CA:true) named `common_name`.
    pub fn generate(common_name: &str, validity: Validity) -> Result<Self, CertError> {
        validity.check()?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = ca_distinguished_name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = ca_key_usages();
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let issued = IssuedCert::new(cert, &key);
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert: issued,
        })
    }

    /// Loads a CA written by [`ClusterCa::write`].
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CertError> {
        let der = load_single_cert(cert_path)?;
        let key_pem = fs::read_to_string(key_path).map_err(|e| CertError::io(key_path, e))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| CertError::bad_file(key_path, format!("not a usable private key: {e}")))?;
        let (common_name, is_ca) = {
            let (_, parsed) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
                CertError::bad_file(cert_path, format!("not an X.509 certificate: {e}"))
            })?;
            let cn = parsed
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| {
                    CertError::bad_file(cert_path, "CA certificate has no common name")
                })?;
            let is_ca = parsed.is_ca();
            if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(CertError::bad_file(
                    key_path,
                    format!("key does not match {}", cert_path.display()),
                ));
            }
            (cn, is_ca)
        };
        if !is_ca {
            return Err(CertError::bad_file(
                cert_path,
                "certificate is not a CA (basic constraints CA:false)",
            ));
        }
        // Rebuilding the issuer from the same subject and key usages as `generate` yields the
        // same issuer name and authority key id, so certificates signed now chain to the file.
        let mut params = CertificateParams::default();
        params.distinguished_name = ca_distinguished_name(&common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = ca_key_usages();
        let cert_pem = fs::read_to_string(cert_path).map_err(|e| CertError::io(cert_path, e))?;
        Ok(Self {
            cert: IssuedCert {
                cert_der: der,
                cert_pem,
                key_der: key.serialize_der(),
                key_pem,
            },
            issuer: Issuer::new(params, key),
        })
    }

    pub fn cert(&self) -> &IssuedCert {
        &self.cert
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        self.cert.cert_der()
    }

    /// Writes `ca.pem` and `ca-key.pem` (0600) into `dir`, creating it.
    pub fn write(&self, dir: &Path) -> Result<CaFiles, CertError> {
        fs::create_dir_all(dir).map_err(|e| CertError::io(dir, e))?;
        let files = CaFiles::in_dir(dir);
        self.cert.write(&files.cert, &files.key)?;
        Ok(files)
    }

    /// Issues a node certificate for `store_id`: CN `store-<id>`, SANs `sans` (host names or IP
    /// addresses) plus `store-<id>.tinykv`, usable as both TLS server and client.
    pub fn issue_node(
        &self,
        store_id: u64,
        sans: &[String],
        validity: Validity,
    ) -> Result<IssuedCert, CertError> {
        let mut names: Vec<SanType> = sans
            .iter()
            .map(|s| parse_san(s))
            .collect::<Result<_, _>>()?;
        names.push(parse_san(&store_dns_name(store_id))?);
        self.issue(
            &format!("store-{store_id}"),
            names,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            validity,
        )
    }

    /// Issues a client certificate: CN `name`, OU naming `role`, no store SAN, client
    /// authentication only.
    ///
    /// The role goes in the subject rather than in an extension of our own: a subject attribute
    /// needs no private OID (an unknown critical extension would make other TLS stacks refuse
    /// the certificate, a non-critical one would be silently ignored by them), `openssl x509
    /// -subject` and `tinykv` logs show it, and the CA's signature covers it just the same.
    pub fn issue_client(
        &self,
        name: &str,
        role: Role,
        validity: Validity,
    ) -> Result<IssuedCert, CertError> {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationalUnitName, role.subject_unit());
        self.issue_with_subject(
            dn,
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            validity,
        )
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> Result<IssuedCert, CertError> {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        self.issue_with_subject(dn, sans, usages, validity)
    }

    /// Issues a leaf with any subject; tests use it for certificates `tinykv` no longer makes
    /// (a client without a role).
    pub(crate) fn issue_with_subject(
        &self,
        subject: DistinguishedName,
        sans: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> Result<IssuedCert, CertError> {
        validity.check()?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.subject_alt_names = sans;
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert::new(cert, &key))
    }
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

/// Where [`ClusterCa::write`] puts the CA's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CaFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("ca.pem"),
            key: dir.join("ca-key.pem"),
        }
    }
}

/// Paths of the three PEM files an endpoint needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The material an endpoint authenticates with: the cluster CA it trusts, and its own chain and key.
#[derive(Debug)]
pub struct TlsIdentity {
    pub ca: CertificateDer<'static>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TlsIdentity {
    /// Loads the CA, the certificate chain and the key from PEM files.
    pub fn load(files: &TlsFiles) -> Result<Self, CertError> {
        Ok(Self {
            ca: load_single_cert(&files.ca)?,
            chain: load_certs(&files.cert)?,
            key: load_key(&files.key)?,
        })
    }

    /// Builds the identity from certificates made in this process.
    pub fn from_issued(ca: &ClusterCa, cert: &IssuedCert) -> Self {
        Self {
            ca: ca.cert_der().clone(),
            chain: vec![cert.cert_der().clone()],
            key: cert.key_der(),
        }
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Reads every certificate in a PEM file; an empty or malformed file is an error naming it.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = fs::read(path).map_err(|e| CertError::io(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::bad_file(path, format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(CertError::bad_file(path, "no CERTIFICATE block found"));
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert)
            .map_err(|e| CertError::bad_file(path, format!("not an X.509 certificate: {e}")))?;
    }
    Ok(certs)
}

/// Reads a file that must hold exactly one certificate (the CA).
pub fn load_single_cert(path: &Path) -> Result<CertificateDer<'static>, CertError> {
    let mut certs = load_certs(path)?;
    if certs.len() != 1 {
        return Err(CertError::bad_file(
            path,
            format!("expected one certificate, found {}", certs.len()),
        ));
    }
    Ok(certs.remove(0))
}

/// Reads the private key from a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = fs::read(path).map_err(|e| CertError::io(path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            CertError::bad_file(path, "no PRIVATE KEY block found")
        }
        other => CertError::bad_file(path, format!("malformed PEM: {other}")),
    })
}

fn ca_distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_key_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ]
}

fn parse_san(name: &str) -> Result<SanType, CertError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        return Err(CertError::InvalidSan {
            name: name.to_owned(),
            reason: "not an IP address or DNS name".into(),
        });
    }
    let ia5 = name
        .try_into()
        .map_err(|e: rcgen::Error| CertError::InvalidSan {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(SanType::DnsName(ia5))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // A DER INTEGER with the top bit set would be negative; serials must be positive.
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| CertError::io(parent, e))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    let mut file = options.open(path).map_err(|e| CertError::io(path, e))?;
    // `mode` only applies when the file is created; an existing key file must be tightened too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| CertError::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(contents)
        .map_err(|e| CertError::io(path, e))?;
    file.sync_all().map_err(|e| CertError::io(path, e))
}

/// A one-line description of a certificate for logs and `tinykv cert` output.
pub fn describe(cert: &CertificateDer<'_>) -> String {
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, parsed)) => {
            let mut out = format!("subject {}", parsed.subject());
            let _ = write!(
                out,
                ", valid {} .. {}",
                parsed.validity().not_before,
                parsed.validity().not_after
            );
            out
        }
        Err(e) => format!("unparsable certificate: {e}"),
    }
}
