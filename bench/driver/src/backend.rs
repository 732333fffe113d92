//! The two systems under test behind one interface, so the load loop cannot treat them
//! differently. Each loop owns a `Session`: its handle on the connection it was assigned.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use etcd_client::{ConnectOptions, KvClient};
use tinykv_client::{Client, ClientConfig};
use tinykv_transport::TlsFiles;

use crate::args::{Target, TlsArgs};

/// Connections to one system, shared by all request loops.
pub enum Backend {
    /// One gRPC connection per entry; loop `i` uses connection `i % len`.
    Etcd(Vec<KvClient>),
    /// tinykv's client multiplexes every loop over its QUIC connections.
    Tinykv(Client),
}

/// One request loop's handle.
pub enum Session {
    /// Boxed: the etcd handle is hundreds of bytes, tinykv's one pointer.
    Etcd(Box<KvClient>),
    Tinykv(Client),
}

impl Backend {
    pub async fn connect(
        target: Target,
        endpoints: &[String],
        tls: &TlsArgs,
        conns: usize,
        timeout: Duration,
    ) -> Result<Backend> {
        match target {
            Target::Etcd => {
                let mut kvs = Vec::with_capacity(conns.max(1));
                for _ in 0..conns.max(1) {
                    let options = ConnectOptions::new()
                        .with_timeout(timeout)
                        .with_connect_timeout(timeout);
                    let client = etcd_client::Client::connect(endpoints, Some(options))
                        .await
                        .with_context(|| format!("cannot connect to etcd at {endpoints:?}"))?;
                    kvs.push(client.kv_client());
                }
                Ok(Backend::Etcd(kvs))
            }
            Target::Tinykv => {
                let endpoints = endpoints
                    .iter()
                    .map(|e| {
                        e.parse::<SocketAddr>()
                            .with_context(|| format!("tinykv endpoint {e:?} is not HOST:PORT"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let client = Client::connect(ClientConfig {
                    endpoints,
                    tls: tls_files(tls)?,
                    timeout,
                })
                .await
                .context("cannot connect to tinykv")?;
                Ok(Backend::Tinykv(client))
            }
        }
    }

    pub fn session(&self, index: usize) -> Session {
        match self {
            Backend::Etcd(kvs) => Session::Etcd(Box::new(kvs[index % kvs.len()].clone())),
            Backend::Tinykv(client) => Session::Tinykv(client.clone()),
        }
    }
}

impl Session {
    pub async fn put(&mut self, key: Bytes, value: Bytes) -> Result<()> {
        match self {
            Session::Etcd(kv) => {
                kv.put(key.to_vec(), value.to_vec(), None).await?;
            }
            Session::Tinykv(client) => client.put(key, value).await?,
        }
        Ok(())
    }

    /// A linearizable read (the default of both systems); a missing key is an error, since every
    /// key read has been written first.
    pub async fn get(&mut self, key: Bytes) -> Result<()> {
        let found = match self {
            Session::Etcd(kv) => !kv.get(key.to_vec(), None).await?.kvs().is_empty(),
            Session::Tinykv(client) => client.get(key.clone()).await?.is_some(),
        };
        if !found {
            bail!(
                "key {:?} was written but is missing",
                String::from_utf8_lossy(&key)
            );
        }
        Ok(())
    }
}

/// The tinykv client certificate files; all three are needed.
pub fn tls_files(tls: &TlsArgs) -> Result<TlsFiles> {
    match (&tls.ca, &tls.cert, &tls.key) {
        (Some(ca), Some(cert), Some(key)) => Ok(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => Err(anyhow!(
            "tinykv needs --ca, --cert and --key (or TINYKV_CA, TINYKV_CERT, TINYKV_KEY)"
        )),
    }
}
