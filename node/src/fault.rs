//! Injected faults as the node applies them: the network faults of a [`FaultSpec`] (defined in
//! tinykv-proto, where clients and tests build them) become rules for the transport's filter.
//! The conversion lives here so that tinykv-proto does not depend on the transport.

use tinykv_proto::fault::{
    FaultAction, FaultDirection, FaultError, FaultSpec, FaultTraffic, NetworkFault, PPM,
};
use tinykv_transport::{Action, Direction, Rule, Traffic};

/// The transport rule `fault` stands for, or why it cannot be one.
pub fn to_rule(fault: &NetworkFault) -> Result<Rule, FaultError> {
    fault.check()?;
    let action = match fault.action {
        FaultAction::Drop { ppm } => Action::Drop {
            fraction: f64::from(ppm) / f64::from(PPM),
        },
        FaultAction::Delay(d) => Action::Delay(d),
        FaultAction::Block => Action::Block,
    };
    let direction = match fault.direction {
        FaultDirection::Outgoing => Direction::Outgoing,
        FaultDirection::Incoming => Direction::Incoming,
        FaultDirection::Both => Direction::Both,
    };
    let traffic = match fault.traffic {
        FaultTraffic::Raft => Traffic::Raft,
        FaultTraffic::Snapshot => Traffic::Snapshot,
        FaultTraffic::All => Traffic::All,
    };
    Ok(Rule::new(&fault.stores, direction, traffic, action))
}

/// The transport rules of `spec`'s network faults, or the first fault of `spec` a node cannot
/// apply (its delays included).
pub fn rules(spec: &FaultSpec) -> Result<Vec<Rule>, FaultError> {
    spec.check()?;
    spec.network.iter().map(to_rule).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn faults_become_the_matching_rules() {
        let spec = FaultSpec {
            network: vec![
                NetworkFault::block(&[2, 3]),
                NetworkFault::drop_ppm(&[4], 250_000).only(FaultDirection::Incoming),
                NetworkFault::delay(&[], Duration::from_millis(30)),
            ],
            sync_delay: Duration::from_millis(5),
            snapshot_delay: Duration::from_secs(1),
        };
        let rules = rules(&spec).unwrap();
        assert_eq!(rules[0], Rule::block(&[2, 3]));
        assert_eq!(
            rules[1],
            Rule::drop_fraction(&[4], 0.25).only(Direction::Incoming)
        );
        assert_eq!(rules[2], Rule::delay(&[], Duration::from_millis(30)));
    }

    #[test]
    fn faults_a_node_cannot_apply_make_no_rules() {
        let too_much = FaultSpec {
            network: vec![NetworkFault::drop_ppm(&[1], PPM + 1)],
            ..FaultSpec::default()
        };
        assert_eq!(rules(&too_much), Err(FaultError::Fraction(PPM + 1)));
        let too_slow = FaultSpec {
            sync_delay: Duration::from_secs(11),
            ..FaultSpec::default()
        };
        assert!(matches!(rules(&too_slow), Err(FaultError::Delay(_))));
    }
}
