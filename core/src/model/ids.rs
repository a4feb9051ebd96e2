//! The names the model's parts use for each other: which domain, which
//! waiter, which calls a barrier covers. A leaf: it refers to nothing else
//! in the model, so any part may use it without joining a cycle.

/// Index of a domain in the runtime's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DomainId(pub(crate) usize);

/// Index of a waiter in `State::waiters`.
pub(crate) type WaiterId = usize;

/// What a barrier waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Calls of one domain with cookie below the barrier's bound.
    Domain(DomainId),
    /// Every call of every registered domain (`synchronize_full`).
    Full,
}
