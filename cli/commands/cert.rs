//! `cert init-ca|issue`: the cluster CA and the certificates signed by it.

use std::path::{Path, PathBuf};

use serde_json::json;
use tinykv_transport::certs::CaFiles;
use tinykv_transport::{ClusterCa, Role, Validity};

use crate::args::{CertCmd, GlobalArgs, Output};
use crate::exit::{CliError, CliResult};
use crate::output::print_json;

/// Node and client certificates are renewed by issuing new ones; a year keeps that rare.
const LEAF_DAYS: i64 = 365;

pub fn run(global: &GlobalArgs, cmd: CertCmd) -> CliResult {
    match cmd {
        CertCmd::InitCa { out } => {
            let files = init_ca(&out)?;
            report(
                global.output,
                &[("ca", &files.cert), ("ca_key", &files.key)],
                None,
            );
        }
        CertCmd::Issue {
            name,
            ca_dir,
            san,
            client,
            role,
            out,
        } => {
            let role = match (client, role) {
                (true, role) => Some(role.map_or(Role::ReadWrite, Role::from)),
                (false, None) => None,
                (false, Some(_)) => {
                    return Err(CliError::usage(
                        "--role applies to client certificates only: add --client",
                    )
                    .hint("a node's certificate (store-ID) may do everything; it takes no role"));
                }
            };
            let ca = load_ca(&ca_dir)?;
            let out = out.unwrap_or(ca_dir);
            let (cert, key) = issue(&ca, &name, &san, role, &out)?;
            report(global.output, &[("cert", &cert), ("key", &key)], role);
        }
    }
    Ok(())
}

/// Creates a CA in `dir`; refuses to replace one, since every issued certificate depends on it.
pub fn init_ca(dir: &Path) -> CliResult<CaFiles> {
    let files = CaFiles::in_dir(dir);
    if files.cert.exists() || files.key.exists() {
        return Err(
            CliError::failed(format!("{} already holds a CA", dir.display())).hint(
                "replacing it would orphan every certificate it issued; choose another --out",
            ),
        );
    }
    let ca = ClusterCa::generate("tinykv cluster CA", Validity::default())
        .map_err(|e| CliError::failed(format!("cannot generate the CA: {e}")))?;
    ca.write(dir)
        .map_err(|e| CliError::failed(format!("cannot write the CA to {}: {e}", dir.display())))
}

pub fn load_ca(dir: &Path) -> CliResult<ClusterCa> {
    let files = CaFiles::in_dir(dir);
    ClusterCa::load(&files.cert, &files.key).map_err(|e| {
        CliError::failed(format!("cannot load the CA from {}: {e}", dir.display()))
            .hint("create one with `tinykv cert init-ca --out DIR`")
    })
}

/// Issues `name` (`store-ID` for a node; any name for a client, which `client` gives the role
/// of) and writes `out/NAME.pem` and `out/NAME-key.pem`.
pub fn issue(
    ca: &ClusterCa,
    name: &str,
    sans: &[String],
    client: Option<Role>,
    out: &Path,
) -> CliResult<(PathBuf, PathBuf)> {
    let validity = Validity::days(LEAF_DAYS);
    let issued = if let Some(role) = client {
        ca.issue_client(name, role, validity)
    } else {
        let store_id = name
            .strip_prefix("store-")
            .and_then(|id| id.parse::<u64>().ok())
            .filter(|&id| id != 0)
            .ok_or_else(|| {
                CliError::usage(format!("a node certificate is named store-ID, not {name:?}"))
                    .hint("e.g. `tinykv cert issue store-1 --ca-dir DIR --san 127.0.0.1`; add --client for a client")
            })?;
        ca.issue_node(store_id, sans, validity)
    }
    .map_err(|e| CliError::failed(format!("cannot issue {name}: {e}")))?;
    std::fs::create_dir_all(out)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", out.display())))?;
    let cert = out.join(format!("{name}.pem"));
    let key = out.join(format!("{name}-key.pem"));
    issued
        .write(&cert, &key)
        .map_err(|e| CliError::failed(format!("cannot write {name}: {e}")))?;
    Ok((cert, key))
}

/// Prints the files written and, for a client certificate, its role.
fn report(output: Output, files: &[(&str, &Path)], role: Option<Role>) {
    match output {
        Output::Json => {
            let mut map: serde_json::Map<String, serde_json::Value> = files
                .iter()
                .map(|(k, p)| (k.to_string(), json!(p.display().to_string())))
                .collect();
            if let Some(role) = role {
                map.insert("role".into(), json!(role));
            }
            print_json(&serde_json::Value::Object(map));
        }
        Output::Table => {
            for (_, path) in files {
                println!("wrote {}", path.display());
            }
            if let Some(role) = role {
                println!("role {role}");
            }
        }
    }
}
