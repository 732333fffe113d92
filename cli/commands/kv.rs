//! `kv put|get|delete|delete-range|scan`.

use std::io::Read;

use serde_json::json;
use tinykv_proto::api::ReadMode;

use crate::args::{GlobalArgs, KvCmd, Output};
use crate::connect;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{Table, bytes_json, bytes_text, print_json};

pub async fn run(global: &GlobalArgs, cmd: KvCmd) -> CliResult {
    let json = global.output == Output::Json;
    match cmd {
        KvCmd::Put {
            key,
            value,
            if_absent,
        } => {
            let value = if value == "-" {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).map_err(|e| {
                    CliError::failed(format!("cannot read the value from standard input: {e}"))
                })?;
                buf
            } else {
                value.into_bytes()
            };
            let client = connect::client(global).await?;
            if if_absent {
                let (swapped, previous) = client
                    .compare_and_swap(key.clone().into_bytes(), None, value)
                    .await?;
                return swap_result(json, &key, swapped, previous.as_deref());
            }
            client.put(key.clone().into_bytes(), value).await?;
            if json {
                print_json(&json!({ "key": key, "ok": true }));
            } else {
                println!("OK");
            }
        }
        KvCmd::Cas { key, old, new } => {
            let client = connect::client(global).await?;
            let (swapped, previous) = client
                .compare_and_swap(
                    key.clone().into_bytes(),
                    Some(old.into_bytes().into()),
                    new.into_bytes(),
                )
                .await?;
            return swap_result(json, &key, swapped, previous.as_deref());
        }
        KvCmd::Get { key, stale } => {
            let client = connect::client(global).await?;
            let value = client
                .get_with(key.clone().into_bytes(), read_mode(stale))
                .await?;
            if json {
                match &value {
                    Some(v) => {
                        print_json(&json!({ "key": key, "found": true, "value": bytes_json(v) }))
                    }
                    None => print_json(&json!({ "key": key, "found": false })),
                }
            } else if let Some(v) = &value {
                println!("{}", bytes_text(v));
            }
            if value.is_none() {
                return Err(CliError::new(
                    Exit::NotFound,
                    format!("key {key:?} not found"),
                ));
            }
        }
        KvCmd::Delete {
            key: Some(key),
            prefix: None,
        } => {
            let client = connect::client(global).await?;
            client.delete(key.clone().into_bytes()).await?;
            if json {
                print_json(&json!({ "key": key, "ok": true }));
            } else {
                println!("OK");
            }
        }
        KvCmd::Delete { prefix, .. } => {
            let prefix = prefix.unwrap_or_default();
            if prefix.is_empty() {
                return Err(CliError::usage(
                    "--prefix must not be empty: it would delete every key",
                )
                .hint("to mean it, `tinykv kv delete-range '' ''`"));
            }
            let client = connect::client(global).await?;
            let deleted = client.delete_prefix(prefix.clone().into_bytes()).await?;
            print_deleted(
                json,
                &json!({ "prefix": prefix, "deleted": deleted }),
                deleted,
            );
        }
        KvCmd::DeleteRange { from, to } => {
            let client = connect::client(global).await?;
            let deleted = client
                .delete_range(from.clone().into_bytes(), to.clone().into_bytes())
                .await?;
            print_deleted(
                json,
                &json!({ "from": from, "to": to, "deleted": deleted }),
                deleted,
            );
        }
        KvCmd::Scan {
            from,
            to,
            prefix,
            limit,
            stale,
        } => {
            let (from, to) = match prefix {
                Some(p) => {
                    let end = tinykv_client::prefix_end(p.as_bytes());
                    (p.into_bytes(), end.to_vec())
                }
                None => (from.into_bytes(), to.into_bytes()),
            };
            let client = connect::client(global).await?;
            let pairs = client.scan(from, to, limit, read_mode(stale)).await?;
            if json {
                let pairs: Vec<_> = pairs
                    .iter()
                    .map(|(k, v)| json!({ "key": bytes_json(k), "value": bytes_json(v) }))
                    .collect();
                print_json(&json!({ "pairs": pairs }));
            } else {
                let mut table = Table::new(&["KEY", "VALUE"]);
                for (k, v) in &pairs {
                    table.row(vec![bytes_text(k), bytes_text(v)]);
                }
                table.print();
            }
        }
    }
    Ok(())
}

fn print_deleted(json: bool, doc: &serde_json::Value, deleted: u64) {
    if json {
        print_json(doc);
    } else {
        println!("deleted {deleted} keys");
    }
}

fn read_mode(stale: bool) -> ReadMode {
    if stale {
        ReadMode::Stale
    } else {
        ReadMode::Linearizable
    }
}

/// Prints a compare-and-swap's outcome; one that found another value exits 8.
fn swap_result(json: bool, key: &str, swapped: bool, previous: Option<&[u8]>) -> CliResult {
    if json {
        print_json(&json!({
            "key": key,
            "swapped": swapped,
            "previous": previous.map(bytes_json),
        }));
    } else if swapped {
        println!("OK");
    }
    if swapped {
        return Ok(());
    }
    let found = match previous {
        Some(v) => format!("it holds {:?}", bytes_text(v)),
        None => "it is absent".to_string(),
    };
    Err(CliError::new(
        Exit::CompareFailed,
        format!("nothing written to {key:?}: {found}"),
    ))
}
