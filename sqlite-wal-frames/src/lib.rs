//! A SQLite VFS shim that writes a transaction's write-ahead log frames in
//! one system call instead of two per page.
//!
//! SQLite appends each page of a committing transaction to the log as a
//! frame, in two `pwrite` calls: a 24-byte frame header, then the page. A
//! message hub that stores every message in its own consultation dirties
//! about three and a half pages a message (the consultation's row and two
//! index leaves), so at 5,000 messages a second the writer made some 35,000
//! `pwrite` calls a second, half of all the hub's system calls.
//!
//! [`install`] registers a VFS in front of the default one (and makes it the
//! default). Every file but a write-ahead log is the default VFS's own, with
//! its own methods. A log's writes that continue one another are gathered in
//! memory and written in one call when the transaction's commit frame is
//! complete, so that a transaction costs one `pwrite` however many pages it
//! wrote. The log's format says which frame commits: its header carries the
//! database size after the commit, zero in every other frame.
//!
//! Nothing is held across a commit. SQLite makes a commit visible to other
//! connections only after its frames are written (it then updates the
//! shared log index), and by then they are in the file; a sync, a read, a
//! truncation, a size query, a file control, a write elsewhere in the file
//! and closing the file each write what is held first. Frames held when a
//! transaction rolls back were never committed, as without the shim.
//!
//! A write that fails when held frames are written fails the transaction
//! being written, as an immediate write would: the frames belong to it.

mod wal_file;

use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_char, c_int};
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The shim's VFS name.
pub const VFS_NAME: &CStr = c"consult-wal-frames";

/// Why the shim is not in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotInstalled {
    /// SQLite has no default VFS to wrap.
    NoDefaultVfs,
    /// The default VFS lacks `xOpen`, or its file structure is too large to
    /// wrap.
    UnusableDefaultVfs,
    /// SQLite refused to register the shim; the code is SQLite's result
    /// code.
    Refused(i32),
}

impl fmt::Display for NotInstalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDefaultVfs => write!(f, "SQLite has no default VFS"),
            Self::UnusableDefaultVfs => write!(f, "SQLite's default VFS cannot be wrapped"),
            Self::Refused(code) => {
                write!(f, "SQLite refused the log-frame VFS (result code {code})")
            }
        }
    }
}

impl std::error::Error for NotInstalled {}

/// Registers the shim as SQLite's default VFS, in front of the default VFS
/// at the time of the first call, for every connection opened from then on.
/// Idempotent: later calls give the first call's result.
///
/// # Errors
///
/// [`NotInstalled`] when there is no default VFS to wrap or SQLite refused
/// the registration; connections then use the default VFS as it is.
pub fn install() -> Result<(), NotInstalled> {
    static RESULT: OnceLock<Result<(), NotInstalled>> = OnceLock::new();
    *RESULT.get_or_init(install_once)
}

/// What the shim did for every write-ahead log of the process so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogWrites {
    /// Writes SQLite asked for.
    pub requested: u64,
    /// `pwrite` calls made for them.
    pub issued: u64,
    /// Writes made because a transaction's commit frame was complete.
    pub at_commit: u64,
}

/// The shim's counts so far.
pub fn log_writes() -> LogWrites {
    LogWrites {
        requested: REQUESTED.load(Ordering::Relaxed),
        issued: ISSUED.load(Ordering::Relaxed),
        at_commit: AT_COMMIT.load(Ordering::Relaxed),
    }
}

static REQUESTED: AtomicU64 = AtomicU64::new(0);
static ISSUED: AtomicU64 = AtomicU64::new(0);
static AT_COMMIT: AtomicU64 = AtomicU64::new(0);

/// The wrapped VFS, as an address (a raw pointer cannot live in a static).
static WRAPPED: OnceLock<usize> = OnceLock::new();

/// The wrapped VFS; set before the shim is registered, never changed.
fn wrapped() -> *mut ffi::sqlite3_vfs {
    WRAPPED.get().copied().unwrap_or(0) as *mut ffi::sqlite3_vfs
}

fn install_once() -> Result<(), NotInstalled> {
    // SAFETY: a null name asks for the default VFS; SQLite initializes
    // itself first if needed and returns a pointer valid for the process's
    // life (registered VFSes are never freed), or null.
    let default = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if default.is_null() {
        return Err(NotInstalled::NoDefaultVfs);
    }
    // SAFETY: `default` is a registered VFS: non-null, valid, and only read.
    let base = unsafe { *default };
    if base.xOpen.is_none() {
        return Err(NotInstalled::UnusableDefaultVfs);
    }
    let file_size = wal_file::file_size(base.szOsFile).ok_or(NotInstalled::UnusableDefaultVfs)?;
    if WRAPPED.set(default as usize).is_err() {
        // Only `install_once` sets it, and `install` runs that once.
        return Err(NotInstalled::UnusableDefaultVfs);
    }
    // Every method but `xOpen` is the wrapped VFS's own. They receive the
    // shim's VFS pointer, whose `pAppData` is the wrapped VFS's (copied), as
    // SQLite's own unix VFS expects; `xOpen` hands the wrapped VFS itself to
    // the wrapped `xOpen`.
    let shim = ffi::sqlite3_vfs {
        szOsFile: file_size,
        pNext: std::ptr::null_mut(),
        zName: VFS_NAME.as_ptr().cast::<c_char>(),
        xOpen: Some(open),
        ..base
    };
    let shim = Box::leak(Box::new(shim));
    // SAFETY: `shim` is a complete VFS that lives for the rest of the
    // process (leaked); SQLite links it into its list and makes it the
    // default (second argument 1).
    let code = unsafe { ffi::sqlite3_vfs_register(shim, 1) };
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(NotInstalled::Refused(code))
    }
}

/// The shim's `xOpen`: a write-ahead log gets the shim's file methods, any
/// other file is opened by the wrapped VFS in place, with its own.
unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = wrapped();
    // SAFETY: the shim is registered only after `WRAPPED` holds the
    // wrapped VFS, a valid VFS for the process's life with an `xOpen`
    // (checked at install).
    let Some(base_open) = (unsafe { (*base).xOpen }) else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // SAFETY: SQLite allocated `file` with the shim's `szOsFile`, at
        // least the wrapped VFS's, and passes its own arguments through.
        return unsafe { base_open(base, name, file, flags, out_flags) };
    }
    // SAFETY: as above; `wal_file::open` lays the shim's state and the
    // wrapped file out within that allocation.
    unsafe { wal_file::open(base, base_open, name, file, flags, out_flags) }
}

#[cfg(test)]
mod tests;
