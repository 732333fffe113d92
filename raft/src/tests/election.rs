//! Leader election: timeouts, voting rules, term changes and split or dueling elections.

use super::harness::*;
use crate::{HardState, MemStorage, Message, MessageType, StateRole};

#[test]
fn starts_as_follower_at_term_zero() {
    let r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
    assert_role(&r, StateRole::Follower, 0);
    assert_eq!(r.leader_id, 0);
}

#[test]
fn leader_election_needs_a_quorum() {
    use Peer::{BlackHole as Hole, New};
    let cases: Vec<(Vec<Peer>, StateRole)> = vec![
        (vec![New, New, New], StateRole::Leader),
        (vec![New, New, Hole], StateRole::Leader),
        (vec![New, Hole, Hole], StateRole::Candidate),
        (vec![New, Hole, Hole, New], StateRole::Candidate),
        (vec![New, Hole, Hole, New, New], StateRole::Leader),
    ];
    for (i, (peers, role)) in cases.into_iter().enumerate() {
        let mut nw = Network::new(peers);
        nw.send(vec![hup(1)]);
        assert_eq!(nw.peer(1).role, role, "case {i}");
        assert_eq!(nw.peer(1).term, 1, "case {i}");
    }
}

#[test]
fn single_node_elects_itself_and_stays_leader_on_hup() {
    let mut nw = Network::new(vec![Peer::New]);
    nw.send(vec![hup(1)]);
    assert_role(nw.peer(1), StateRole::Leader, 1);
    nw.send(vec![hup(1)]);
    assert_role(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn leadership_cycles_when_each_node_campaigns() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    for campaigner in 1..=3u64 {
        nw.send(vec![hup(campaigner)]);
        for id in 1..=3u64 {
            let want = if id == campaigner {
                StateRole::Leader
            } else {
                StateRole::Follower
            };
            assert_eq!(nw.peer(id).role, want, "campaigner {campaigner}, node {id}");
            assert_eq!(nw.peer(id).leader_id, campaigner);
        }
    }
}

#[test]
fn election_in_one_round_of_rpcs() {
    // (size, votes granted by others, expected role)
    type Case = (usize, Vec<(u64, bool)>, StateRole);
    let cases: Vec<Case> = vec![
        (1, vec![], StateRole::Leader),
        (3, vec![(2, true), (3, true)], StateRole::Leader),
        (3, vec![(2, true)], StateRole::Leader),
        (
            5,
            vec![(2, true), (3, true), (4, true), (5, true)],
            StateRole::Leader,
        ),
        (5, vec![(2, true), (3, true), (4, true)], StateRole::Leader),
        (5, vec![(2, true), (3, true)], StateRole::Leader),
        (3, vec![(2, false), (3, false)], StateRole::Follower),
        (
            5,
            vec![(2, true), (3, false), (4, false), (5, false)],
            StateRole::Follower,
        ),
        (5, vec![(2, true)], StateRole::Candidate),
        (5, vec![(2, false), (3, false)], StateRole::Candidate),
    ];
    for (i, (size, votes, role)) in cases.into_iter().enumerate() {
        let peers: Vec<u64> = (1..=size as u64).collect();
        let mut r = new_raft(1, &peers, 10, 1, MemStorage::new());
        r.step(hup(1)).unwrap();
        for (from, granted) in votes {
            let m = Message {
                term: r.term,
                reject: !granted,
                ..msg(from, 1, MessageType::RequestVoteResponse)
            };
            r.step(m).unwrap();
        }
        assert_eq!(r.role, role, "case {i}");
        assert_eq!(r.term, 1, "case {i}");
    }
}

#[test]
fn follower_grants_one_vote_per_term() {
    // (vote already cast, candidate, rejected)
    for (i, (vote, candidate, reject)) in [
        (0, 2, false),
        (0, 3, false),
        (2, 2, false),
        (3, 3, false),
        (2, 3, true),
        (3, 2, true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = raft_voted(1, &[1, 2, 3], vote, 1);
        let m = Message {
            term: 1,
            ..msg(candidate, 1, MessageType::RequestVote)
        };
        r.step(m).unwrap();
        let msgs = read_messages(&mut r);
        let want = Message {
            term: 1,
            reject,
            ..msg(1, candidate, MessageType::RequestVoteResponse)
        };
        assert_eq!(msgs, vec![want], "case {i}");
    }
}

#[test]
fn candidate_falls_back_on_append_of_same_or_higher_term() {
    for term in [1, 2] {
        let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
        r.step(hup(1)).unwrap();
        assert_eq!(r.role, StateRole::Candidate);
        r.step(Message {
            term,
            ..msg(2, 1, MessageType::Append)
        })
        .unwrap();
        assert_role(&r, StateRole::Follower, term);
        assert_eq!(r.leader_id, 2);
    }
}

#[test]
fn any_role_takes_a_higher_term_from_an_append() {
    for role in [StateRole::Follower, StateRole::Candidate, StateRole::Leader] {
        let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
        match role {
            StateRole::Follower => r.become_follower(1, 2),
            StateRole::Candidate => r.become_candidate(),
            _ => {
                r.become_candidate();
                r.become_leader();
            }
        }
        r.step(Message {
            term: 2,
            ..msg(2, 1, MessageType::Append)
        })
        .unwrap();
        assert_role(&r, StateRole::Follower, 2);
        assert_eq!(r.leader_id, 2);
    }
}

#[test]
fn follower_and_candidate_start_a_new_election_on_timeout() {
    for start_candidate in [false, true] {
        let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
        if start_candidate {
            r.become_candidate();
        } else {
            r.become_follower(1, 2);
        }
        for _ in 0..19 {
            r.tick();
        }
        assert_role(&r, StateRole::Candidate, 2);
        assert_eq!(r.prs.vote_of(1), Some(true));
        let mut msgs = read_messages(&mut r);
        msgs.sort_by_key(|m| m.to);
        let want: Vec<Message> = [2, 3]
            .iter()
            .map(|&to| Message {
                term: 2,
                ..msg(1, to, MessageType::RequestVote)
            })
            .collect();
        assert_eq!(msgs, want);
    }
}

#[test]
fn election_timeout_is_randomized_over_the_whole_range() {
    for candidate in [false, true] {
        let et = 10;
        let mut r = new_raft(1, &[1, 2, 3], et, 1, MemStorage::new());
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..50 * et {
            if candidate {
                r.become_candidate();
            } else {
                let term = r.term + 1;
                r.become_follower(term, 2);
            }
            let mut ticks = 0;
            while read_messages(&mut r).is_empty() {
                r.tick();
                ticks += 1;
                assert!(
                    ticks < 2 * et,
                    "round {round}: no election after {ticks} ticks"
                );
            }
            seen.insert(ticks);
        }
        let want: std::collections::BTreeSet<usize> = (et..2 * et).collect();
        assert_eq!(seen, want);
    }
}

#[test]
fn election_timeouts_rarely_conflict() {
    let et = 10;
    let size = 5u64;
    let peers: Vec<u64> = (1..=size).collect();
    let mut rafts: Vec<_> = peers
        .iter()
        .map(|&id| new_raft(id, &peers, et, 1, MemStorage::new()))
        .collect();
    let mut conflicts = 0;
    let rounds = 1000;
    for _ in 0..rounds {
        for r in rafts.iter_mut() {
            let term = r.term + 1;
            r.become_follower(term, 0);
        }
        let mut timed_out = 0;
        while timed_out == 0 {
            for r in rafts.iter_mut() {
                r.tick();
                if !read_messages(r).is_empty() {
                    timed_out += 1;
                }
            }
        }
        if timed_out > 1 {
            conflicts += 1;
        }
    }
    let p = conflicts as f64 / rounds as f64;
    assert!(p <= 0.3, "conflict probability {p}");
}

#[test]
fn leader_heartbeats_carry_only_term_and_commit() {
    let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
    r.become_candidate();
    r.become_leader();
    read_messages(&mut r);
    r.tick();
    let msgs = read_messages(&mut r);
    let want: Vec<Message> = [2, 3]
        .iter()
        .map(|&to| Message {
            term: 1,
            ..msg(1, to, MessageType::Heartbeat)
        })
        .collect();
    assert_eq!(msgs, want);
}

#[test]
fn beat_only_makes_a_leader_send() {
    for role in [StateRole::Follower, StateRole::Candidate, StateRole::Leader] {
        let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
        match role {
            StateRole::Follower => {}
            StateRole::Candidate => r.become_candidate(),
            _ => {
                r.become_candidate();
                r.become_leader();
            }
        }
        read_messages(&mut r);
        r.step(beat(1)).unwrap();
        let msgs = read_messages(&mut r);
        let want = if role == StateRole::Leader { 2 } else { 0 };
        assert_eq!(msgs.len(), want, "{role:?}");
        assert!(msgs.iter().all(|m| m.msg_type == MessageType::Heartbeat));
    }
}

#[test]
fn vote_granted_from_any_role_on_a_higher_term() {
    for vote_type in [MessageType::RequestVote, MessageType::RequestPreVote] {
        for role in [
            StateRole::Follower,
            StateRole::PreCandidate,
            StateRole::Candidate,
            StateRole::Leader,
        ] {
            let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
            r.term = 1;
            match role {
                StateRole::Follower => r.become_follower(1, 3),
                StateRole::PreCandidate => r.become_pre_candidate(),
                StateRole::Candidate => r.become_candidate(),
                _ => {
                    r.become_candidate();
                    r.become_leader();
                }
            }
            let orig_term = r.term;
            let new_term = orig_term + 1;
            let m = Message {
                term: new_term,
                log_term: new_term,
                index: 42,
                ..msg(2, 1, vote_type)
            };
            r.step(m).unwrap();
            let msgs = read_messages(&mut r);
            assert_eq!(msgs.len(), 1, "{vote_type:?} {role:?}");
            assert!(!msgs[0].reject, "{vote_type:?} {role:?}");
            assert_eq!(msgs[0].term, new_term);
            if vote_type == MessageType::RequestVote {
                assert_role(&r, StateRole::Follower, new_term);
                assert_eq!(r.vote, 2);
            } else {
                // A pre-vote changes neither the term nor the vote.
                assert_eq!(r.role, role);
                assert_eq!(r.term, orig_term);
            }
        }
    }
}

#[test]
fn vote_requires_an_up_to_date_log() {
    // Voter log [t1, t1]. (candidate last term, candidate last index, rejected)
    let cases = [
        (1, 1, true),
        (1, 2, false),
        (1, 3, false),
        (0, 5, true),
        (2, 1, false),
        (2, 2, false),
    ];
    for (i, (log_term, index, reject)) in cases.into_iter().enumerate() {
        let mut r = raft_with_log(1, &[1, 2], &[1, 1]);
        r.step(Message {
            term: 3,
            log_term,
            index,
            ..msg(2, 1, MessageType::RequestVote)
        })
        .unwrap();
        let msgs = read_messages(&mut r);
        assert_eq!(msgs.len(), 1, "case {i}");
        assert_eq!(msgs[0].msg_type, MessageType::RequestVoteResponse);
        assert_eq!(msgs[0].reject, reject, "case {i}");
    }
}

#[test]
fn vote_request_in_the_same_term_respects_the_existing_vote_and_role() {
    // Log [t2, t2]. (role, index, log_term, prior vote, rejected)
    let cases = [
        (StateRole::Follower, 0, 0, 0, true),
        (StateRole::Follower, 1, 2, 0, true),
        (StateRole::Follower, 2, 2, 0, false),
        (StateRole::Follower, 3, 2, 0, false),
        (StateRole::Follower, 3, 3, 0, false),
        (StateRole::Follower, 3, 2, 2, false),
        (StateRole::Follower, 3, 2, 1, true),
        (StateRole::Leader, 3, 3, 1, true),
        (StateRole::Candidate, 3, 3, 1, true),
    ];
    for (i, (role, index, log_term, vote, reject)) in cases.into_iter().enumerate() {
        let mut r = raft_with_log(1, &[1, 2], &[2, 2]);
        r.role = role;
        r.vote = vote;
        r.step(Message {
            term: 2,
            index,
            log_term,
            ..msg(2, 1, MessageType::RequestVote)
        })
        .unwrap();
        let msgs = read_messages(&mut r);
        assert_eq!(msgs.len(), 1, "case {i}");
        assert_eq!(msgs[0].reject, reject, "case {i}");
    }
}

#[test]
fn every_role_steps_down_on_a_higher_term() {
    for role in [StateRole::Follower, StateRole::Candidate, StateRole::Leader] {
        for t in [MessageType::RequestVote, MessageType::Append] {
            let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
            match role {
                StateRole::Follower => r.become_follower(1, 0),
                StateRole::Candidate => r.become_candidate(),
                _ => {
                    r.become_candidate();
                    r.become_leader();
                }
            }
            r.step(Message {
                term: 3,
                log_term: 3,
                index: 3,
                ..msg(2, 1, t)
            })
            .unwrap();
            assert_role(&r, StateRole::Follower, 3);
            let want_leader = if t == MessageType::Append { 2 } else { 0 };
            assert_eq!(r.leader_id, want_leader, "{role:?} {t:?}");
            let want_last = if role == StateRole::Leader { 1 } else { 0 };
            assert_eq!(r.raft_log.last_index(), want_last, "{role:?} {t:?}");
        }
    }
}

#[test]
fn candidate_becomes_follower_on_heartbeat_or_append_from_the_leader() {
    for t in [MessageType::Heartbeat, MessageType::Append] {
        let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
        nw.send(vec![hup(1)]);
        nw.isolate(3);
        nw.send(vec![hup(2)]);
        nw.send(vec![hup(1)]);
        assert_eq!(nw.peer(1).role, StateRole::Leader);
        assert_eq!(nw.peer(3).role, StateRole::Follower);
        for _ in 0..20 {
            nw.tick(3);
        }
        assert_eq!(nw.peer(3).role, StateRole::Candidate);
        nw.recover();
        let term = nw.peer(1).term;
        assert!(term > nw.peer(3).term);
        nw.send(vec![Message {
            term,
            ..msg(1, 3, t)
        }]);
        assert_role(nw.peer(3), StateRole::Follower, term);
        assert_eq!(nw.peer(3).leader_id, 1);
    }
}

#[test]
fn disruptive_follower_makes_the_stale_leader_step_down() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    assert_role(nw.peer(1), StateRole::Leader, 1);
    // Node 3 times out alone and campaigns at term 2.
    nw.isolate(3);
    for _ in 0..20 {
        nw.tick(3);
    }
    assert_role(nw.peer(3), StateRole::Candidate, 2);
    nw.recover();
    // The leader's heartbeat at term 1 is answered with term 2.
    nw.send(vec![Message {
        term: 1,
        ..msg(1, 3, MessageType::Heartbeat)
    }]);
    assert_role(nw.peer(1), StateRole::Follower, 2);
}

#[test]
fn split_vote_resolves_in_a_later_term() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.isolate(1);
    // Both remaining nodes campaign at once: neither can win.
    let mut r2 = nw.peer_mut(2);
    r2.step(hup(2)).unwrap();
    let m2 = read_messages(r2);
    r2 = nw.peer_mut(3);
    r2.step(hup(3)).unwrap();
    let m3 = read_messages(r2);
    let mut all = m2;
    all.extend(m3);
    nw.send(all);
    assert_role(nw.peer(2), StateRole::Candidate, 2);
    assert_role(nw.peer(3), StateRole::Candidate, 2);
    nw.send(vec![hup(2)]);
    assert_role(nw.peer(2), StateRole::Leader, 3);
    assert_role(nw.peer(3), StateRole::Follower, 3);
}

#[test]
fn dueling_candidates() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.cut(1, 3);
    nw.send(vec![hup(1)]);
    nw.send(vec![hup(3)]);
    assert_role(nw.peer(1), StateRole::Leader, 1);
    assert_role(nw.peer(3), StateRole::Candidate, 1);
    nw.recover();
    // Node 3's log is behind (no noop), so its new term only makes everyone follow at term 2.
    nw.send(vec![hup(3)]);
    for id in 1..=3 {
        assert_role(nw.peer(id), StateRole::Follower, 2);
    }
    assert_eq!(log_shape(nw.peer(1)), (1, vec![(1, 1)]));
    assert_eq!(log_shape(nw.peer(2)), (1, vec![(1, 1)]));
    assert_eq!(log_shape(nw.peer(3)), (0, vec![]));
}

#[test]
fn candidate_concedes_to_the_leader() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.isolate(1);
    nw.send(vec![hup(1)]);
    nw.send(vec![hup(3)]);
    nw.recover();
    nw.send(vec![beat(3)]);
    nw.send(vec![propose(3, b"force follower")]);
    nw.send(vec![beat(3)]);
    assert_role(nw.peer(1), StateRole::Follower, 1);
    let want = (2, vec![(1, 1), (2, 1)]);
    for id in 1..=3 {
        assert_eq!(log_shape(nw.peer(id)), want, "node {id}");
    }
}

#[test]
fn election_with_newer_logs_elsewhere_loses_then_wins_and_overwrites() {
    // Node 1 and 2 hold [t1]; node 3 holds [t2]; nodes 4 and 5 voted for 3 at term 2.
    let mut nw = Network::new(vec![
        node(raft_with_log(1, &[1, 2, 3, 4, 5], &[1])),
        node(raft_with_log(2, &[1, 2, 3, 4, 5], &[1])),
        node(raft_with_log(3, &[1, 2, 3, 4, 5], &[2])),
        node(raft_voted(4, &[1, 2, 3, 4, 5], 3, 2)),
        node(raft_voted(5, &[1, 2, 3, 4, 5], 3, 2)),
    ]);
    nw.send(vec![hup(1)]);
    assert_role(nw.peer(1), StateRole::Follower, 2);
    nw.send(vec![hup(1)]);
    assert_role(nw.peer(1), StateRole::Leader, 3);
    for id in 1..=5 {
        assert_eq!(log_shape(nw.peer(id)).1, vec![(1, 1), (2, 3)], "node {id}");
    }
}

#[test]
fn vote_request_carries_last_log_position() {
    for (ents, wterm) in [(vec![ent(1, 1)], 2u64), (vec![ent(1, 1), ent(2, 2)], 3)] {
        let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
        let m = Message {
            term: wterm - 1,
            log_term: 0,
            index: 0,
            entries: ents.clone(),
            ..msg(2, 1, MessageType::Append)
        };
        r.step(m).unwrap();
        read_messages(&mut r);
        for _ in 0..20 {
            r.tick();
        }
        let mut msgs = read_messages(&mut r);
        msgs.sort_by_key(|m| m.to);
        assert_eq!(msgs.len(), 2);
        let last = ents.last().unwrap();
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.msg_type, MessageType::RequestVote);
            assert_eq!(m.to, i as u64 + 2);
            assert_eq!(
                (m.term, m.index, m.log_term),
                (wterm, last.index, last.term)
            );
        }
    }
}

#[test]
fn restart_keeps_the_vote_of_the_term() {
    let store = storage_with(
        &[],
        HardState {
            term: 5,
            vote: 3,
            commit: 0,
        },
    );
    let mut r = new_raft(1, &[1, 2, 3], 10, 1, store);
    assert_eq!((r.term, r.vote), (5, 3));
    r.step(Message {
        term: 5,
        ..msg(2, 1, MessageType::RequestVote)
    })
    .unwrap();
    assert!(read_messages(&mut r)[0].reject);
}

#[test]
fn non_voter_never_campaigns() {
    let mut r = new_raft(4, &[1, 2, 3], 10, 1, MemStorage::new());
    for _ in 0..100 {
        r.tick();
    }
    r.step(hup(4)).unwrap();
    assert_role(&r, StateRole::Follower, 0);
    assert!(read_messages(&mut r).is_empty());
}
