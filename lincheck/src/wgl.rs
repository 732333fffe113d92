//! The Wing–Gong–Lowe search over one object's history.

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification: which operation (with its observed result) is legal in a state,
/// and the state it leads to.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Op;
    /// The state after `op`, or `None` when `op`'s observed result is impossible in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One node of the event list: the call or the return of operation `op`.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return event.
    matching: usize,
    prev: usize,
    next: usize,
}

/// A set of operation numbers, hashable for the memo.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// True when the operations `(call, ret, op)` (`call < ret` for each; instants need only be
/// comparable) can be put in one order that respects real time and is legal for `model` from
/// `init`. An operation with a return after every other event acts as "may have happened".
pub fn check_history<M: Model>(model: &M, init: M::State, ops: &[(u64, u64, M::Op)]) -> bool {
    let n = ops.len();
    if n == 0 {
        return true;
    }
    // Events sorted by time; at equal instants calls come first, since an answer and an
    // invocation at the same instant may overlap.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, (call, ret, _)) in ops.iter().enumerate() {
        order.push((*call, true, i));
        order.push((*ret, false, i));
    }
    order.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    // Slot 0 is the list head; events live at 1..=2n.
    let head = 0;
    let mut events = vec![Event {
        op: usize::MAX,
        is_call: false,
        matching: 0,
        prev: 0,
        next: 0,
    }];
    let mut ret_slot = vec![0usize; n];
    for (pos, &(_, is_call, op)) in order.iter().enumerate() {
        let slot = pos + 1;
        events.push(Event {
            op,
            is_call,
            matching: 0,
            prev: slot - 1,
            next: slot + 1,
        });
        if !is_call {
            ret_slot[op] = slot;
        }
    }
    let end = 2 * n + 1;
    events[2 * n].next = end; // past the last event
    for slot in 1..=2 * n {
        if events[slot].is_call {
            events[slot].matching = ret_slot[events[slot].op];
        }
    }
    events[head].next = 1;

    let unlink = |events: &mut Vec<Event>, slot: usize| {
        let (p, nx) = (events[slot].prev, events[slot].next);
        events[p].next = nx;
        if nx != end {
            events[nx].prev = p;
        }
    };
    let relink = |events: &mut Vec<Event>, slot: usize| {
        let (p, nx) = (events[slot].prev, events[slot].next);
        events[p].next = slot;
        if nx != end {
            events[nx].prev = slot;
        }
    };

    let mut state = init;
    let mut linearized = Bits::new(n);
    let mut memo: HashSet<(Bits, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut entry = events[head].next;
    while events[head].next != end {
        if entry != end && events[entry].is_call {
            let ev = events[entry];
            if let Some(next_state) = model.step(&state, &ops[ev.op].2) {
                let mut lin = linearized.clone();
                lin.set(ev.op);
                if memo.insert((lin.clone(), next_state.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    linearized = lin;
                    unlink(&mut events, ev.matching);
                    unlink(&mut events, entry);
                    entry = events[head].next;
                    continue;
                }
            }
            entry = ev.next;
            continue;
        }
        // A return whose call is not linearized yet: no order from here is legal, so undo the
        // last choice and try the next candidate after it.
        let Some((call_slot, prev_state)) = stack.pop() else {
            return false;
        };
        linearized.clear(events[call_slot].op);
        state = prev_state;
        // Undo in the reverse order of the unlinking: the call, then its return.
        relink(&mut events, call_slot);
        let ret = events[call_slot].matching;
        relink(&mut events, ret);
        entry = events[call_slot].next;
    }
    true
}
