//! A follower told that its leader's store is lost (`leader_unreachable`): it stops honouring
//! the leader's lease and campaigns after a delay set by its rank among the remaining voters,
//! so a group (even one that hibernated, whose timers did not run) elects within ticks, not a
//! whole election timeout, and a follower told wrongly cannot unseat a live leader.

use super::harness::*;
use crate::{MessageType, StateRole};

/// Three peers with pre-vote and check quorum; peer 1 leads term 1.
fn led_by_1() -> Network {
    let peers = vec![Peer::New, Peer::New, Peer::New];
    let mut nw = Network::with_config(peers, |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    nw.send(vec![hup(1)]);
    assert_role(nw.peer(1), StateRole::Leader, 1);
    nw
}

#[test]
fn the_first_ranked_follower_elects_itself_on_its_next_tick() {
    let mut nw = led_by_1();
    nw.isolate(1);
    // Both followers heard from the leader just now: each is inside its lease.
    nw.peer_mut(2).leader_unreachable(0);
    nw.peer_mut(3).leader_unreachable(1);
    assert_eq!(nw.peer(2).leader_id, 0, "the lost leader is forgotten");
    nw.tick(2);
    assert_role(nw.peer(2), StateRole::Leader, 2);
    assert_role(nw.peer(3), StateRole::Follower, 2);
    assert_eq!(nw.peer(3).leader_id, 2);
}

#[test]
fn a_follower_ranked_second_waits_a_heartbeat_timeout_longer() {
    let mut nw = led_by_1();
    nw.isolate(1);
    // Rank 1 with a heartbeat of one tick: two ticks.
    nw.peer_mut(3).leader_unreachable(1);
    nw.tick(3);
    assert_role(nw.peer(3), StateRole::Follower, 1);
    // Peer 2 was never told (its own link to 1 still looked alive) but its timer ran: it is
    // out of its lease by the time it is asked.
    for _ in 0..nw.peer(2).randomized_election_timeout - 1 {
        nw.peer_mut(2).tick();
    }
    read_messages(nw.peer_mut(2));
    assert_eq!(nw.peer(2).role, StateRole::Follower);
    nw.tick(3);
    assert_role(nw.peer(3), StateRole::Leader, 2);
}

#[test]
fn a_follower_told_wrongly_cannot_unseat_a_live_leader() {
    let mut nw = led_by_1();
    // Only peer 2's link to the leader failed; peer 3 and the leader are in their leases.
    nw.delivered.clear();
    nw.peer_mut(2).leader_unreachable(0);
    nw.tick(2);
    assert_eq!(nw.peer(2).role, StateRole::PreCandidate);
    assert!(
        !nw.delivered
            .iter()
            .any(|m| m.msg_type == MessageType::RequestPreVoteResponse && !m.reject),
        "no voter in a lease grants a pre-vote"
    );
    // The leader's next heartbeat brings it back, at the same term.
    nw.send(vec![beat(1)]);
    assert_role(nw.peer(2), StateRole::Follower, 1);
    assert_eq!(nw.peer(2).leader_id, 1);
    assert_role(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn only_a_follower_with_a_leader_acts_on_it() {
    let mut nw = led_by_1();
    nw.peer_mut(1).leader_unreachable(0);
    assert_role(nw.peer(1), StateRole::Leader, 1);
    // A follower with no leader keeps its own timer.
    let r = nw.peer_mut(2);
    r.become_follower(1, 0);
    let elapsed = r.election_elapsed;
    r.leader_unreachable(0);
    assert_eq!(r.election_elapsed, elapsed);
}
