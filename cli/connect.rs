//! Turning the global flags into a connected `Client`.

use tinykv_client::{Client, ClientConfig};
use tinykv_transport::TlsFiles;

use crate::args::GlobalArgs;
use crate::exit::{CliError, CliResult};

/// The client certificate files from `--ca/--cert/--key` (or `TINYKV_CA/CERT/KEY`).
pub fn tls_files(global: &GlobalArgs) -> CliResult<TlsFiles> {
    match (&global.ca, &global.cert, &global.key) {
        (Some(ca), Some(cert), Some(key)) => Ok(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => Err(CliError::usage(
            "every connection uses mutual TLS, but --ca, --cert and --key are not all given",
        )
        .hint("pass them, or run `. DIR/env` after `tinykv cluster up --dir DIR`")),
    }
}

/// A client of the cluster the global flags point at; it has already learned the cluster.
pub async fn client(global: &GlobalArgs) -> CliResult<Client> {
    if global.endpoints.is_empty() {
        return Err(CliError::usage("no endpoint given")
            .hint("pass -e HOST:PORT[,HOST:PORT...] or set TINYKV_ENDPOINTS (`. DIR/env`)"));
    }
    let tls = tls_files(global)?;
    Ok(Client::connect(ClientConfig {
        endpoints: global.endpoints.clone(),
        tls,
        timeout: global.timeout,
    })
    .await?)
}
