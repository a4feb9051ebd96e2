//! Cookies: the ordered tickets every scheduled call receives.

use std::fmt;
use std::num::NonZeroU64;

/// The ticket of one scheduled call: non-zero, totally ordered, and strictly
/// increasing within a [`Runtime`](crate::Runtime) across all of its domains.
///
/// A call receives its own cookie, so it can wait for everything that was
/// scheduled before it with
/// [`Domain::synchronize_cookie`](crate::Domain::synchronize_cookie) — the
/// kernel's "probe in parallel, register in order" pattern.
///
/// ```
/// # use kasync_core as kasync;
/// # let rt = kasync::Runtime::new().unwrap();
/// let first = rt.schedule(|_| {});
/// let second = rt.schedule(|_| {});
/// assert!(first < second);
/// assert_eq!(second.get(), first.get() + 1);
/// # rt.synchronize_full().wait().unwrap();
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cookie(NonZeroU64);

impl Cookie {
    /// The first cookie a runtime hands out.
    pub const FIRST: Cookie = Cookie(NonZeroU64::MIN);

    /// The largest cookie: `synchronize_cookie(Cookie::MAX)` waits for every
    /// call of a domain that is ever scheduled before the domain drains.
    pub const MAX: Cookie = Cookie(NonZeroU64::MAX);

    /// Makes a cookie from its number; `None` for zero, which is never a cookie.
    pub const fn new(value: u64) -> Option<Cookie> {
        match NonZeroU64::new(value) {
            Some(v) => Some(Cookie(v)),
            None => None,
        }
    }

    /// The cookie's number.
    pub const fn get(self) -> u64 {
        self.0.get()
    }

    pub(crate) fn from_counter(value: u64) -> Cookie {
        // The counter starts at 1 and a u64 cannot realistically wrap.
        Cookie(NonZeroU64::new(value).unwrap_or(NonZeroU64::MAX))
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cookie({})", self.0)
    }
}

impl fmt::Display for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl From<Cookie> for u64 {
    fn from(cookie: Cookie) -> u64 {
        cookie.get()
    }
}
