//! Compiled Wirefilter filters, per thread.
//!
//! `wirefilter::Filter` is neither `Send` nor `Sync`, and both it and `ExecutionContext` borrow
//! the `Scheme` they were made from. A [`Compiled`] therefore owns an `Arc<Scheme>` next to the
//! filters and context that borrow it, and [`with_compiled`] keeps them in a thread-local cache
//! keyed by the policy version (and checked against the scheme's address).
//!
//! # The `execute` lifetime trap
//!
//! `Filter<'s>::execute(&self, &ExecutionContext<'s>)` ties the lifetime of the field values to
//! the lifetime of the filter, so a long-lived filter only accepts `'static` byte values, while
//! the query name is borrowed from the packet. [`Bound`] is the one place that bridges this: it
//! stores borrowed byte slices as `'static` for the duration of a borrow `'q`, records which
//! fields it did that to, and its `Drop` (which also runs on unwind) overwrites each of them with
//! a `'static` empty value before `'q` ends. Filters only read values during `execute` and keep nothing, so no dangling
//! reference is ever read or left behind.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use wirefilter::{ExecutionContext, Filter, Scheme};

use super::rules::{
    Ruleset, Uses, BASE_FIELDS, F_DO, F_FQDN, F_ORG, F_QCLASS, F_QTYPE, F_QTYPE_NAME, F_RESP_CNAME,
    F_RESP_IP, F_SRC_IP, F_TRANSPORT,
};
use super::PolicySet;

/// The compiled filters of one ruleset, with the context they run against.
pub(crate) struct Compiled {
    // Field order matters: `filters` and `ctx` borrow `scheme` and must be dropped first
    // (fields are dropped in declaration order).
    filters: Vec<Option<Filter<'static>>>,
    ctx: ExecutionContext<'static>,
    global_lists: Vec<Box<str>>,
    org_lists: Vec<Box<str>>,
    scheme: Arc<Scheme>,
}

impl Compiled {
    /// Compile the Wirefilter rules of `rs` (all enabled rules when `all`, for `explain`;
    /// otherwise only those the index does not answer; guarded rules are compiled).
    pub(crate) fn new(rs: &Ruleset, all: bool) -> Compiled {
        let scheme = Arc::clone(&rs.scheme);
        // SAFETY: the `Scheme` lives in the `Arc` stored in `self.scheme`; it is never mutated
        // and its heap address does not change when `Compiled` moves. The `'static` borrows made
        // from it are kept only in `filters` and `ctx`, which are dropped before `scheme`
        // (declaration order) and are never handed out with a lifetime longer than `&self`.
        let s: &'static Scheme = unsafe { &*Arc::as_ptr(&scheme) };
        let filters = rs
            .rules
            .iter()
            .map(|r| {
                if !r.enabled || (r.indexed.is_some() && !all) {
                    return None;
                }
                // The expression was parsed with this same scheme at load time.
                s.parse(&r.expression).ok().map(|ast| ast.compile())
            })
            .collect();
        let mut ctx = ExecutionContext::new(s);
        // Every field always has a value (an unset field panics inside Wirefilter).
        let _ = ctx.set_field_value(BASE_FIELDS[F_FQDN].0, "");
        let _ = ctx.set_field_value(BASE_FIELDS[F_QTYPE].0, 0i32);
        let _ = ctx.set_field_value(BASE_FIELDS[F_QTYPE_NAME].0, "");
        let _ = ctx.set_field_value(BASE_FIELDS[F_QCLASS].0, 1i32);
        let _ = ctx.set_field_value(BASE_FIELDS[F_SRC_IP].0, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let _ = ctx.set_field_value(BASE_FIELDS[F_TRANSPORT].0, "udp");
        let _ = ctx.set_field_value(BASE_FIELDS[F_DO].0, false);
        let _ = ctx.set_field_value(BASE_FIELDS[F_ORG].0, "");
        let _ = ctx.set_field_value(BASE_FIELDS[F_RESP_IP].0, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let _ = ctx.set_field_value(BASE_FIELDS[F_RESP_CNAME].0, "");
        for name in rs.list_fields.global.iter().chain(&rs.list_fields.org) {
            let _ = ctx.set_field_value(name, false);
        }
        Compiled {
            filters,
            ctx,
            global_lists: rs.list_fields.global.clone(),
            org_lists: rs.list_fields.org.clone(),
            scheme,
        }
    }

    fn is_for(&self, rs: &Ruleset) -> bool {
        Arc::ptr_eq(&self.scheme, &rs.scheme) && self.filters.len() == rs.rules.len()
    }

    /// Set the request fields in `uses` from `q` for the lifetime `'q`.
    pub(crate) fn bind<'c, 'q>(&'c mut self, q: &Fields<'q>, uses: Uses) -> Bound<'c, 'q> {
        let mut b = Bound {
            c: self,
            borrowed: 0,
            _q: PhantomData,
        };
        b.set(q, uses);
        b
    }
}

/// The request-phase values of one query, as Wirefilter sees them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'q> {
    pub fqdn: &'q [u8],
    pub qtype: u16,
    pub qtype_name: QtypeName<'q>,
    pub qclass: u16,
    pub src_ip: IpAddr,
    pub transport: &'static str,
    pub dnssec_ok: bool,
    pub org_id: &'q str,
    /// Global lists the name is on.
    pub global_lists: u64,
    /// Organization lists the name is on.
    pub org_lists: u64,
}

/// The query type mnemonic: static for known types, `TYPEnnn` in a caller's buffer otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) enum QtypeName<'q> {
    Static(&'static str),
    Buf(&'q [u8]),
}

impl QtypeName<'_> {
    #[cfg(test)]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Static(s) => s.as_bytes(),
            Self::Buf(b) => b,
        }
    }
}

/// A [`Compiled`] whose context holds values borrowed for `'q`. See the module docs.
pub(crate) struct Bound<'c, 'q> {
    c: &'c mut Compiled,
    /// Bytes fields (bits over `BASE_FIELDS`) that currently hold `'q` data.
    borrowed: u16,
    _q: PhantomData<&'q [u8]>,
}

/// Extend a borrow to `'static` for storage in the context.
///
/// # Safety
/// The caller must overwrite the field before `'q` ends ([`Bound`]'s `Drop` does).
unsafe fn extend(bytes: &[u8]) -> &'static [u8] {
    // SAFETY: see the function contract.
    unsafe { std::mem::transmute::<&[u8], &'static [u8]>(bytes) }
}

impl<'q> Bound<'_, 'q> {
    fn set(&mut self, q: &Fields<'q>, uses: Uses) {
        let ctx = &mut self.c.ctx;
        let on = |f: usize| uses.base & (1 << f) != 0;
        if on(F_FQDN) {
            // SAFETY: marked borrowed, so cleared in `Drop` before `'q` ends.
            let _ = ctx.set_field_value(BASE_FIELDS[F_FQDN].0, unsafe { extend(q.fqdn) });
            self.borrowed |= 1 << F_FQDN;
        }
        if on(F_QTYPE) {
            let _ = ctx.set_field_value(BASE_FIELDS[F_QTYPE].0, i32::from(q.qtype));
        }
        if on(F_QTYPE_NAME) {
            match q.qtype_name {
                QtypeName::Static(s) => {
                    let _ = ctx.set_field_value(BASE_FIELDS[F_QTYPE_NAME].0, s);
                }
                QtypeName::Buf(b) => {
                    // SAFETY: marked borrowed, so cleared in `Drop` before `'q` ends.
                    let v = unsafe { extend(b) };
                    let _ = ctx.set_field_value(BASE_FIELDS[F_QTYPE_NAME].0, v);
                    self.borrowed |= 1 << F_QTYPE_NAME;
                }
            }
        }
        if on(F_QCLASS) {
            let _ = ctx.set_field_value(BASE_FIELDS[F_QCLASS].0, i32::from(q.qclass));
        }
        if on(F_SRC_IP) {
            let _ = ctx.set_field_value(BASE_FIELDS[F_SRC_IP].0, q.src_ip);
        }
        if on(F_TRANSPORT) {
            let _ = ctx.set_field_value(BASE_FIELDS[F_TRANSPORT].0, q.transport);
        }
        if on(F_DO) {
            let _ = ctx.set_field_value(BASE_FIELDS[F_DO].0, q.dnssec_ok);
        }
        if on(F_ORG) {
            // SAFETY: marked borrowed, so cleared in `Drop` before `'q` ends.
            let v = unsafe { extend(q.org_id.as_bytes()) };
            let _ = ctx.set_field_value(BASE_FIELDS[F_ORG].0, v);
            self.borrowed |= 1 << F_ORG;
        }
        let mut g = uses.global;
        while g != 0 {
            let bit = g.trailing_zeros() as usize;
            g &= g - 1;
            if let Some(name) = self.c.global_lists.get(bit) {
                let _ = ctx.set_field_value(name, q.global_lists & (1 << bit) != 0);
            }
        }
        let mut o = uses.org;
        while o != 0 {
            let bit = o.trailing_zeros() as usize;
            o &= o - 1;
            if let Some(name) = self.c.org_lists.get(bit) {
                let _ = ctx.set_field_value(name, q.org_lists & (1 << bit) != 0);
            }
        }
    }

    /// Set the response-phase fields (one address or one CNAME target at a time).
    pub(crate) fn set_response(&mut self, ip: IpAddr, cname: &'q str) {
        let ctx = &mut self.c.ctx;
        let _ = ctx.set_field_value(BASE_FIELDS[F_RESP_IP].0, ip);
        // SAFETY: marked borrowed, so cleared in `Drop` before `'q` ends.
        let v = unsafe { extend(cname.as_bytes()) };
        let _ = ctx.set_field_value(BASE_FIELDS[F_RESP_CNAME].0, v);
        self.borrowed |= 1 << F_RESP_CNAME;
    }

    /// Run rule `idx`'s filter. A rule without a filter does not match.
    pub(crate) fn matches(&self, idx: u32) -> bool {
        match self.c.filters.get(idx as usize) {
            Some(Some(f)) => f.execute(&self.c.ctx).unwrap_or(false),
            _ => false,
        }
    }
}

impl Drop for Bound<'_, '_> {
    fn drop(&mut self) {
        // Every Bytes field that holds `'q` data gets a `'static` value again. (Other fields hold
        // owned values and may keep them: every field is set before a rule that reads it runs.)
        let ctx = &mut self.c.ctx;
        for f in [F_FQDN, F_QTYPE_NAME, F_ORG, F_RESP_CNAME] {
            if self.borrowed & (1 << f) != 0 {
                let _ = ctx.set_field_value(BASE_FIELDS[f].0, "");
            }
        }
    }
}

/// The compiled rulesets of one policy on this thread: slot 0 is global, 1 + i is org i.
struct PerPolicy {
    version: u64,
    slots: Vec<Option<Compiled>>,
}

/// How many policies a thread keeps compiled (the current one and a few during reloads).
const CACHED_POLICIES: usize = 3;

thread_local! {
    static CACHE: RefCell<Vec<PerPolicy>> = const { RefCell::new(Vec::new()) };
}

/// Lazy access to the compiled rulesets of one policy on this thread.
pub(crate) struct Slots<'a> {
    policy: &'a PolicySet,
    per: &'a mut PerPolicy,
}

impl Slots<'_> {
    /// Compiled filters for `rs` (slot 0 global, 1 + i organization i), compiled on first use.
    pub(crate) fn get(&mut self, slot: usize, rs: &Ruleset) -> &mut Compiled {
        if self.per.slots.len() <= slot {
            self.per
                .slots
                .resize_with(self.policy.orgs.len() + 1, || None);
        }
        let s = &mut self.per.slots[slot];
        if !s.as_ref().is_some_and(|c| c.is_for(rs)) {
            *s = Some(Compiled::new(rs, false));
        }
        s.as_mut().expect("just set")
    }
}

/// Run `f` with this thread's compiled filters for `policy`.
pub(crate) fn with_compiled<R>(policy: &PolicySet, f: impl FnOnce(&mut Slots<'_>) -> R) -> R {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let pos = match cache.iter().position(|p| p.version == policy.version()) {
            Some(0) => 0,
            Some(i) => {
                let p = cache.remove(i);
                cache.insert(0, p);
                0
            }
            None => {
                if cache.len() >= CACHED_POLICIES {
                    cache.pop();
                }
                cache.insert(
                    0,
                    PerPolicy {
                        version: policy.version(),
                        slots: Vec::new(),
                    },
                );
                0
            }
        };
        let mut slots = Slots {
            policy,
            per: &mut cache[pos],
        };
        f(&mut slots)
    })
}
