//! Exit codes and the error type every command returns.

use std::fmt;

/// The process exit codes scripts can rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Failed = 1,
    Usage = 2,
    Unreachable = 3,
    /// The certificate was refused at the TLS handshake, or the node refused the request
    /// because the certificate's role does not allow it.
    TlsRefused = 4,
    NotFound = 5,
    Unhealthy = 6,
    /// A store's disk is (nearly) full: writes are refused, or the node stopped.
    DiskFull = 7,
    /// A compare-and-swap found another value: nothing was written.
    CompareFailed = 8,
}

/// A command's failure: what failed, what to do about it, and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            message: message.into(),
            hint: None,
        }
    }

    pub fn failed(message: impl Into<String>) -> CliError {
        CliError::new(Exit::Failed, message)
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(Exit::Usage, message)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

impl From<tinykv_client::ClientError> for CliError {
    fn from(e: tinykv_client::ClientError) -> CliError {
        use tinykv_client::ClientError;
        use tinykv_proto::api::KvError;
        if e.is_tls_refused() {
            return CliError::new(Exit::TlsRefused, e.to_string()).hint(
                "check --ca/--cert/--key (or TINYKV_CA/CERT/KEY): the client certificate must be \
                 issued by the cluster's CA, and --ca must be that CA",
            );
        }
        if let ClientError::Kv(KvError::PermissionDenied { needed, .. }) = &e {
            return CliError::new(Exit::TlsRefused, e.to_string()).hint(format!(
                "nothing was done; use a certificate issued with `tinykv cert issue NAME \
                 --client --role {needed}` (--cert/--key or TINYKV_CERT/TINYKV_KEY)"
            ));
        }
        if e.is_unreachable() {
            return CliError::new(Exit::Unreachable, e.to_string()).hint(
                "check -e/TINYKV_ENDPOINTS and that the nodes run (`tinykv cluster status`)",
            );
        }
        match &e {
            ClientError::Kv(KvError::RegionNotFound { .. }) => {
                CliError::new(Exit::NotFound, e.to_string())
                    .hint("list the regions with `tinykv region list`")
            }
            ClientError::Ambiguous { .. } | ClientError::Kv(KvError::OutcomeUnknown { .. }) => {
                CliError::failed(e.to_string())
                    .hint("read the key back to learn whether the write took effect")
            }
            ClientError::Kv(KvError::DiskFull { .. }) => {
                CliError::new(Exit::DiskFull, e.to_string()).hint(
                    "the write was not made; free space on that store's data dir (`tinykv compact \
                     log` trims the Raft log) or grow the disk, and writes resume by themselves",
                )
            }
            _ => CliError::failed(e.to_string()),
        }
    }
}
