//! Finds the etcd leader, so that etcd is loaded through its leader as tinykv is (tinykv's
//! client sends every request to the region leader).

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use etcd_client::ConnectOptions;

const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// The endpoint, among `endpoints`, of the member that is the leader.
pub async fn etcd_leader(endpoints: &[String]) -> Result<String> {
    let mut members = Vec::new();
    let mut leader = None;
    for endpoint in endpoints {
        let options = ConnectOptions::new()
            .with_timeout(STATUS_TIMEOUT)
            .with_connect_timeout(STATUS_TIMEOUT);
        let mut client = etcd_client::Client::connect([endpoint.as_str()], Some(options))
            .await
            .with_context(|| format!("cannot connect to etcd at {endpoint}"))?;
        let status = client
            .status()
            .await
            .with_context(|| format!("etcd at {endpoint} did not report its status"))?;
        let member = status
            .header()
            .map(|h| h.member_id())
            .ok_or_else(|| anyhow!("etcd at {endpoint} sent a status without a header"))?;
        if status.leader() != 0 {
            leader = Some(status.leader());
        }
        members.push((member, endpoint));
    }
    let leader = leader.ok_or_else(|| anyhow!("no etcd member knows a leader"))?;
    members
        .into_iter()
        .find(|(member, _)| *member == leader)
        .map(|(_, endpoint)| endpoint.clone())
        .ok_or_else(|| anyhow!("the etcd leader {leader:x} is not among {endpoints:?}"))
}
