//! The virtual network: messages in flight between nodes, and the partition that decides
//! which of them can arrive.
//!
//! Nothing is delivered on its own. The run decides which message arrives next (the oldest, or
//! one picked at random, which delays and reorders), and whether it is lost or duplicated; a
//! message that would cross the partition when delivered is lost.

use std::collections::VecDeque;

use tinykv_raft::Message;

use super::rng::SimRng;

/// A message in flight, with the node that sent it (a forwarded request keeps its original
/// `from`) and that node's incarnation, so that a report about it (snapshot done or failed)
/// goes only to the process that sent it.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub msg: Message,
    pub sender: u64,
    pub sender_incarnation: u64,
}

/// The most messages held in flight; past it the oldest are lost, as a congested link would.
const CAPACITY: usize = 4096;

#[derive(Debug, Default)]
pub struct Network {
    in_flight: VecDeque<Envelope>,
    /// Side of the partition of each node id (index = id); empty when the network is whole.
    sides: Vec<u8>,
}

impl Network {
    pub fn new() -> Network {
        Network::default()
    }

    pub fn send(&mut self, env: Envelope) {
        if self.in_flight.len() >= CAPACITY {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back(env);
    }

    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    pub fn take_oldest(&mut self) -> Option<Envelope> {
        self.in_flight.pop_front()
    }

    /// Takes a message chosen at random, leaving the others in their order.
    pub fn take_random(&mut self, rng: &mut SimRng) -> Option<Envelope> {
        if self.in_flight.is_empty() {
            return None;
        }
        let i = rng.below(self.in_flight.len() as u64) as usize;
        self.in_flight.remove(i)
    }

    /// Takes the oldest message addressed to `to`.
    pub fn take_first_to(&mut self, to: u64) -> Option<Envelope> {
        let i = self.in_flight.iter().position(|env| env.msg.to == to)?;
        self.in_flight.remove(i)
    }

    /// Splits the nodes: `sides[id]` is the side of node `id`.
    pub fn partition(&mut self, sides: Vec<u8>) {
        self.sides = sides;
    }

    pub fn heal(&mut self) {
        self.sides.clear();
    }

    pub fn connected(&self, a: u64, b: u64) -> bool {
        if self.sides.is_empty() {
            return true;
        }
        let side = |id: u64| self.sides.get(id as usize).copied();
        side(a) == side(b)
    }

    pub fn describe_partition(&self) -> String {
        if self.sides.is_empty() {
            return "whole".to_string();
        }
        let mut groups: [Vec<usize>; 2] = Default::default();
        for (id, &side) in self.sides.iter().enumerate().skip(1) {
            groups[usize::from(side.min(1))].push(id);
        }
        format!("{:?} | {:?}", groups[0], groups[1])
    }
}
