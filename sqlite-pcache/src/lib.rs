//! SQLite's default page cache behind a guard that spares the end of a
//! write transaction a scan of the whole cache.
//!
//! At the end of every transaction SQLite's pager asks its page cache to
//! drop the pages past the end of the database (`xTruncate`). The default
//! cache (`pcache1`) keeps the highest key it has ever held and, when that
//! key is far past the limit, scans every hash slot and every cached page.
//! SQLite's B-tree parks a page under the key of the lock-byte page (the
//! page holding the byte at 1 GiB, far past the end of a smaller database)
//! whenever a rebalance swaps two pages' numbers, which is most rebalances of
//! an index that grows in many places at once (a message index over a
//! thousand busy consultations). So nearly every write transaction ended in a
//! scan of the writer's whole cache, thousands of pages: 14 % of the writer
//! thread at 5,000 messages a second.
//!
//! [`install`] puts a thin guard in front of SQLite's own cache methods. The
//! guard forwards every call and tracks, for each cache, an upper bound of
//! the keys it holds and how many pages are parked; it forwards a truncation
//! only when a page may lie at or past the limit. Skipping one is exact: the
//! default cache would have removed nothing, and the only other effect it
//! would have had (lowering its remembered highest key) steers nothing but
//! its own later truncations, which the guard decides.
//!
//! It must run before SQLite is first used in the process; once SQLite is
//! initialized its page cache cannot be replaced and [`install`] says so.

use libsqlite3_sys as ffi;
use std::ffi::{c_int, c_uint, c_void};
use std::fmt;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Why the guard is not in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotInstalled {
    /// SQLite refused the configuration (it answers `SQLITE_MISUSE` once it
    /// is initialized, that is once a connection was opened); the code is
    /// SQLite's result code.
    Refused(i32),
    /// SQLite's own page cache lacks a method the guard forwards to.
    IncompleteDefault,
}

impl fmt::Display for NotInstalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(code) => write!(
                f,
                "SQLite refused a new page cache (result code {code}; it was already in use)"
            ),
            Self::IncompleteDefault => write!(f, "SQLite's page cache lacks a method"),
        }
    }
}

impl std::error::Error for NotInstalled {}

/// Puts the guard in front of SQLite's page cache for every connection the
/// process opens from now on. Idempotent: later calls give the first call's
/// result.
///
/// Call it before anything in the process opens a SQLite connection, on one
/// thread: SQLite's configuration interface must not run while another
/// thread uses SQLite.
///
/// # Errors
///
/// [`NotInstalled`] when SQLite was already initialized or its default
/// cache is incomplete; SQLite then keeps its own cache, unguarded.
pub fn install() -> Result<(), NotInstalled> {
    static RESULT: OnceLock<Result<(), NotInstalled>> = OnceLock::new();
    *RESULT.get_or_init(install_once)
}

/// Truncations seen by every guarded cache of the process since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Truncations {
    /// Answered by the guard after a page was parked since the cache's last
    /// forwarded truncation: each one a scan of the whole cache that
    /// SQLite's own cache would have made.
    pub scans_spared: u64,
    /// Answered by the guard otherwise (SQLite's cache would have looked at
    /// a few hash slots at most).
    pub skipped: u64,
    /// Passed on to SQLite's cache: a page may lie at or past the limit.
    pub forwarded: u64,
}

/// How many truncations the guard answered and forwarded so far.
pub fn truncations() -> Truncations {
    Truncations {
        scans_spared: SCANS_SPARED.load(Ordering::Relaxed),
        skipped: SKIPPED.load(Ordering::Relaxed),
        forwarded: FORWARDED.load(Ordering::Relaxed),
    }
}

static SCANS_SPARED: AtomicU64 = AtomicU64::new(0);
static SKIPPED: AtomicU64 = AtomicU64::new(0);
static FORWARDED: AtomicU64 = AtomicU64::new(0);

/// SQLite's own cache methods, which the guard forwards to.
static DEFAULT: OnceLock<DefaultCache> = OnceLock::new();

/// The byte offset of SQLite's lock-byte page (`PENDING_BYTE`, 1 GiB unless
/// a test build moved it).
const LOCK_BYTE: u64 = 0x4000_0000;

/// The methods of SQLite's default page cache (`pcache1`).
struct DefaultCache {
    /// Its `pArg`, handed back to `xInit` and `xShutdown`; an address kept
    /// as a number so that the struct can live in a static.
    arg: usize,
    init: unsafe extern "C" fn(*mut c_void) -> c_int,
    shutdown: Option<unsafe extern "C" fn(*mut c_void)>,
    create: unsafe extern "C" fn(c_int, c_int, c_int) -> *mut ffi::sqlite3_pcache,
    cachesize: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_int),
    pagecount: unsafe extern "C" fn(*mut ffi::sqlite3_pcache) -> c_int,
    fetch: unsafe extern "C" fn(
        *mut ffi::sqlite3_pcache,
        c_uint,
        c_int,
    ) -> *mut ffi::sqlite3_pcache_page,
    unpin: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, *mut ffi::sqlite3_pcache_page, c_int),
    rekey: unsafe extern "C" fn(
        *mut ffi::sqlite3_pcache,
        *mut ffi::sqlite3_pcache_page,
        c_uint,
        c_uint,
    ),
    truncate: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_uint),
    destroy: unsafe extern "C" fn(*mut ffi::sqlite3_pcache),
    shrink: Option<unsafe extern "C" fn(*mut ffi::sqlite3_pcache)>,
}

impl DefaultCache {
    fn from_methods(methods: &ffi::sqlite3_pcache_methods2) -> Option<Self> {
        Some(Self {
            arg: methods.pArg as usize,
            init: methods.xInit?,
            shutdown: methods.xShutdown,
            create: methods.xCreate?,
            cachesize: methods.xCachesize?,
            pagecount: methods.xPagecount?,
            fetch: methods.xFetch?,
            unpin: methods.xUnpin?,
            rekey: methods.xRekey?,
            truncate: methods.xTruncate?,
            destroy: methods.xDestroy?,
            shrink: methods.xShrink,
        })
    }
}

fn install_once() -> Result<(), NotInstalled> {
    let mut current = MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
    // SAFETY: SQLITE_CONFIG_GETPCACHE2 takes one `sqlite3_pcache_methods2*`
    // and writes the configured methods through it; `current` is a valid,
    // writable struct of that type. Callers run this before other threads
    // use SQLite (see `install`).
    let code = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, current.as_mut_ptr()) };
    if code != ffi::SQLITE_OK {
        return Err(NotInstalled::Refused(code));
    }
    // SAFETY: SQLite filled the struct (it was zeroed before, so any field
    // it left alone is a null pointer or `None`, both valid).
    let current = unsafe { current.assume_init() };
    let default = DefaultCache::from_methods(&current).ok_or(NotInstalled::IncompleteDefault)?;
    if DEFAULT.set(default).is_err() {
        // Only `install_once` sets it, and `install` runs that once.
        return Err(NotInstalled::IncompleteDefault);
    }
    let guarded = ffi::sqlite3_pcache_methods2 {
        iVersion: current.iVersion,
        pArg: ptr::null_mut(),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        xCreate: Some(create),
        xCachesize: Some(cachesize),
        xPagecount: Some(pagecount),
        xFetch: Some(fetch),
        xUnpin: Some(unpin),
        xRekey: Some(rekey),
        xTruncate: Some(truncate),
        xDestroy: Some(destroy),
        xShrink: Some(shrink),
    };
    // SAFETY: SQLITE_CONFIG_PCACHE2 takes one `sqlite3_pcache_methods2*`
    // and copies the struct; every method in it is defined below with the
    // signature SQLite expects and forwards to the default cache saved above.
    let code = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &raw const guarded) };
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(NotInstalled::Refused(code))
    }
}

/// One cache as the guard hands it to SQLite: SQLite's own cache and what
/// the guard knows of its keys.
struct GuardedCache {
    inner: *mut ffi::sqlite3_pcache,
    /// The key of the lock-byte page, under which the B-tree parks a page
    /// while it swaps two pages' numbers.
    parking_key: c_uint,
    /// No page in `inner` has a key above this one, parked pages aside.
    highest_key: AtomicU32,
    /// Pages under `parking_key` (at most one in practice).
    parked: AtomicU32,
    /// Whether a page was parked since the last forwarded truncation, which
    /// left SQLite's cache remembering the parking key as its highest.
    parked_since_forward: AtomicBool,
}

impl GuardedCache {
    /// Whether a truncation at `limit` would remove nothing.
    fn holds_nothing_from(&self, limit: c_uint) -> bool {
        self.parked.load(Ordering::Relaxed) == 0 && self.highest_key.load(Ordering::Relaxed) < limit
    }
}

fn default_cache() -> Option<&'static DefaultCache> {
    DEFAULT.get()
}

/// The guard behind a cache pointer SQLite hands back.
///
/// # Safety
///
/// `cache` must come from [`create`] and not yet be passed to [`destroy`].
unsafe fn guard<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a GuardedCache {
    // SAFETY: per this function's contract, `cache` is a live
    // `Box<GuardedCache>` leaked by `create`.
    unsafe { &*cache.cast::<GuardedCache>() }
}

unsafe extern "C" fn init(_arg: *mut c_void) -> c_int {
    let Some(default) = default_cache() else {
        return ffi::SQLITE_ERROR;
    };
    // SAFETY: forwards SQLite's call with the default cache's own argument.
    unsafe { (default.init)(default.arg as *mut c_void) }
}

unsafe extern "C" fn shutdown(_arg: *mut c_void) {
    if let Some(default) = default_cache()
        && let Some(shutdown) = default.shutdown
    {
        // SAFETY: forwards SQLite's call with the default cache's own argument.
        unsafe { shutdown(default.arg as *mut c_void) }
    }
}

unsafe extern "C" fn create(
    page_size: c_int,
    extra_size: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(default) = default_cache() else {
        return ptr::null_mut();
    };
    // SAFETY: forwards SQLite's call unchanged.
    let inner = unsafe { (default.create)(page_size, extra_size, purgeable) };
    if inner.is_null() {
        return ptr::null_mut();
    }
    let parking_key = u64::try_from(page_size)
        .ok()
        .filter(|size| *size > 0)
        .and_then(|size| c_uint::try_from(LOCK_BYTE / size + 1).ok())
        .unwrap_or(c_uint::MAX);
    let guarded = Box::new(GuardedCache {
        inner,
        parking_key,
        highest_key: AtomicU32::new(0),
        parked: AtomicU32::new(0),
        parked_since_forward: AtomicBool::new(false),
    });
    Box::into_raw(guarded).cast()
}

unsafe extern "C" fn cachesize(cache: *mut ffi::sqlite3_pcache, pages: c_int) {
    let Some(default) = default_cache() else {
        return;
    };
    // SAFETY: SQLite passes a cache `create` made; the call is forwarded to
    // the cache it wraps.
    unsafe { (default.cachesize)(guard(cache).inner, pages) }
}

unsafe extern "C" fn pagecount(cache: *mut ffi::sqlite3_pcache) -> c_int {
    let Some(default) = default_cache() else {
        return 0;
    };
    // SAFETY: as in `cachesize`.
    unsafe { (default.pagecount)(guard(cache).inner) }
}

unsafe extern "C" fn fetch(
    cache: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create_flag: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let Some(default) = default_cache() else {
        return ptr::null_mut();
    };
    // SAFETY: as in `cachesize`.
    let guarded = unsafe { guard(cache) };
    // SAFETY: forwards SQLite's call to the wrapped cache.
    let page = unsafe { (default.fetch)(guarded.inner, key, create_flag) };
    if !page.is_null() {
        // Even a page under the parking key is counted here, as a key: the
        // guard then forwards truncations until SQLite's cache drops it.
        guarded.highest_key.fetch_max(key, Ordering::Relaxed);
    }
    page
}

unsafe extern "C" fn unpin(
    cache: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    let Some(default) = default_cache() else {
        return;
    };
    // SAFETY: as in `cachesize`; `page` is SQLite's, passed on unchanged.
    unsafe { (default.unpin)(guard(cache).inner, page, discard) }
}

unsafe extern "C" fn rekey(
    cache: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old_key: c_uint,
    new_key: c_uint,
) {
    let Some(default) = default_cache() else {
        return;
    };
    // SAFETY: as in `cachesize`.
    let guarded = unsafe { guard(cache) };
    // SAFETY: forwards SQLite's call to the wrapped cache.
    unsafe { (default.rekey)(guarded.inner, page, old_key, new_key) }
    if new_key == guarded.parking_key {
        guarded.parked.fetch_add(1, Ordering::Relaxed);
        guarded.parked_since_forward.store(true, Ordering::Relaxed);
    } else {
        guarded.highest_key.fetch_max(new_key, Ordering::Relaxed);
    }
    if old_key == guarded.parking_key {
        // Never below zero: a page fetched under the parking key was counted
        // as a key instead, and stays covered by `highest_key`.
        let _ = guarded
            .parked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |parked| {
                parked.checked_sub(1)
            });
    }
}

unsafe extern "C" fn truncate(cache: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let Some(default) = default_cache() else {
        return;
    };
    // SAFETY: as in `cachesize`.
    let guarded = unsafe { guard(cache) };
    if guarded.holds_nothing_from(limit) {
        // SQLite's cache remembers the parking key as its highest until a
        // forwarded truncation lowers it; past the limit, that key sends it
        // through every hash slot.
        if guarded.parked_since_forward.load(Ordering::Relaxed) && limit <= guarded.parking_key {
            SCANS_SPARED.fetch_add(1, Ordering::Relaxed);
        } else {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    FORWARDED.fetch_add(1, Ordering::Relaxed);
    guarded.parked_since_forward.store(false, Ordering::Relaxed);
    // SAFETY: forwards SQLite's call to the wrapped cache.
    unsafe { (default.truncate)(guarded.inner, limit) }
    // Every page at or past `limit` is gone now, a parked one included when
    // the parking key is past it.
    if limit <= guarded.parking_key {
        guarded.parked.store(0, Ordering::Relaxed);
    }
    guarded
        .highest_key
        .fetch_min(limit.saturating_sub(1), Ordering::Relaxed);
}

unsafe extern "C" fn destroy(cache: *mut ffi::sqlite3_pcache) {
    // SAFETY: SQLite destroys each cache `create` made exactly once, so the
    // box is taken back here and nothing uses the pointer afterwards.
    let guarded = unsafe { Box::from_raw(cache.cast::<GuardedCache>()) };
    if let Some(default) = default_cache() {
        // SAFETY: the wrapped cache is destroyed with its wrapper.
        unsafe { (default.destroy)(guarded.inner) }
    }
}

unsafe extern "C" fn shrink(cache: *mut ffi::sqlite3_pcache) {
    if let Some(default) = default_cache()
        && let Some(shrink) = default.shrink
    {
        // SAFETY: as in `cachesize`.
        unsafe { shrink(guard(cache).inner) }
    }
}

#[cfg(test)]
mod tests;
