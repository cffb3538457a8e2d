//! A write-ahead log file behind the shim: the wrapped VFS's own file,
//! opened inside the same allocation, and the writes held until the
//! transaction's commit frame is complete (see the crate documentation).

use super::{AT_COMMIT, ISSUED, REQUESTED};
use libsqlite3_sys as ffi;
use std::ffi::{c_int, c_void};
use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::atomic::Ordering;

/// Bytes of a log frame's header.
const FRAME_HEADER: usize = 24;

/// Most bytes held before they are written anyway (30 frames of 4 KiB
/// pages). SQLite's unix VFS writes less than 128 KiB a call (it masks the
/// length with `0x1ffff` and fails a write that then makes no progress), so
/// one write stays under that. A connection that wrote keeps a buffer of up
/// to this size while its log file is open.
const HOLD_LIMIT: usize = 120 * 1024;

/// The shim's state at the start of SQLite's file allocation; the wrapped
/// file follows at [`INNER_OFFSET`].
#[repr(C)]
struct WalFile {
    /// What SQLite sees: its `pMethods` are [`METHODS`]. Must come first.
    base: ffi::sqlite3_file,
    /// The wrapped VFS's file, within the same allocation.
    inner: *mut ffi::sqlite3_file,
    /// Writes not yet made.
    held: Held,
}

/// Consecutive bytes of the log not yet written.
#[derive(Debug, Default)]
struct Held {
    bytes: Vec<u8>,
    /// The file offset of `bytes[0]`.
    offset: i64,
    /// The last write was the header of a commit frame: its page completes
    /// the transaction.
    commit_page_next: bool,
}

impl Held {
    /// True when a write at `offset` continues the held bytes (or none are
    /// held).
    fn continued_by(&self, offset: i64) -> bool {
        self.bytes.is_empty()
            || i64::try_from(self.bytes.len())
                .ok()
                .and_then(|len| self.offset.checked_add(len))
                == Some(offset)
    }
}

/// Where the wrapped file starts in SQLite's allocation.
const INNER_OFFSET: usize = size_of::<WalFile>().next_multiple_of(align_of::<u64>());

/// The shim's `szOsFile` for a wrapped VFS whose own is `wrapped`: room for
/// the shim's state and the wrapped file; `None` if that overflows.
pub(crate) fn file_size(wrapped: c_int) -> Option<c_int> {
    let wrapped = usize::try_from(wrapped).ok()?;
    c_int::try_from(INNER_OFFSET.checked_add(wrapped)?).ok()
}

/// The log file's methods. Version 1: SQLite never maps or shares a log
/// file's memory (those are the database file's methods).
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size_of),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

type BaseOpen = unsafe extern "C" fn(
    *mut ffi::sqlite3_vfs,
    ffi::sqlite3_filename,
    *mut ffi::sqlite3_file,
    c_int,
    *mut c_int,
) -> c_int;

/// Opens a log file: the wrapped VFS opens its own file at
/// [`INNER_OFFSET`], then the shim's state is written in front of it.
///
/// # Safety
///
/// `file` must point to an allocation of at least the shim's `szOsFile`
/// bytes, aligned for a pointer, that SQLite hands to `xOpen`; the other
/// arguments are `xOpen`'s, passed through to `base_open` of `base`.
pub(crate) unsafe fn open(
    base: *mut ffi::sqlite3_vfs,
    base_open: BaseOpen,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: the allocation holds `INNER_OFFSET` bytes of the shim's state
    // followed by the wrapped VFS's `szOsFile` bytes (`file_size`), and
    // `INNER_OFFSET` keeps the pointer's alignment.
    let inner = unsafe { file.cast::<u8>().add(INNER_OFFSET) }.cast::<ffi::sqlite3_file>();
    // SAFETY: `file` is valid for writes; until the shim's state is in
    // place, SQLite must see no methods (and so call no `xClose`).
    unsafe { (*file).pMethods = ptr::null() };
    // SAFETY: see this function's contract; `inner` is room for the wrapped
    // VFS's file.
    let code = unsafe { base_open(base, name, inner, flags, out_flags) };
    if code != ffi::SQLITE_OK {
        // A VFS may leave methods set on failure, expecting `xClose`: the
        // shim makes that call, since SQLite will not.
        // SAFETY: `inner` was handed to `base_open`, which set `pMethods`
        // to null or to methods valid for it.
        unsafe { close_inner(inner) };
        return code;
    }
    let state = WalFile {
        base: ffi::sqlite3_file {
            pMethods: &raw const METHODS,
        },
        inner,
        held: Held::default(),
    };
    // SAFETY: `file` is valid for writes of a `WalFile` (`INNER_OFFSET`
    // bytes, before `inner`) and holds no value that needs dropping.
    unsafe { ptr::write(file.cast::<WalFile>(), state) };
    ffi::SQLITE_OK
}

/// Closes the wrapped file if its VFS left methods on it.
///
/// # Safety
///
/// `inner` must be a file the wrapped VFS's `xOpen` was given.
unsafe fn close_inner(inner: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the contract, `inner` is readable and its `pMethods` null
    // or valid.
    let methods = unsafe { (*inner).pMethods };
    if methods.is_null() {
        return ffi::SQLITE_OK;
    }
    // SAFETY: `methods` is the wrapped VFS's method table for `inner`.
    match unsafe { (*methods).xClose } {
        // SAFETY: closing the file its own methods belong to.
        Some(close) => unsafe { close(inner) },
        None => ffi::SQLITE_OK,
    }
}

/// The shim's state of a file SQLite calls a method on.
///
/// # Safety
///
/// `file` must be a file [`open`] initialized and not yet closed, used by
/// one thread at a time (SQLite's rule for a file).
unsafe fn state<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    // SAFETY: per the contract, `file` starts with a live `WalFile`.
    unsafe { &mut *file.cast::<WalFile>() }
}

/// The wrapped file's method table.
fn inner_methods(wal: &WalFile) -> &ffi::sqlite3_io_methods {
    // SAFETY: `inner` was opened successfully by the wrapped VFS, which set
    // `pMethods` to its method table, valid while the file is open.
    unsafe { &*(*wal.inner).pMethods }
}

impl WalFile {
    /// Writes the held bytes, if any, in one call; they are let go either
    /// way.
    fn write_held(&mut self) -> c_int {
        if self.held.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let code = self.write_through(self.held.offset, HeldBytes::Held);
        self.held.bytes.clear();
        code
    }

    /// Writes `bytes` at `offset` with the wrapped file's `xWrite`.
    fn write_through(&self, offset: i64, bytes: HeldBytes<'_>) -> c_int {
        let bytes = match bytes {
            HeldBytes::Held => self.held.bytes.as_slice(),
            HeldBytes::Given(bytes) => bytes,
        };
        let (Some(write), Ok(amount)) = (inner_methods(self).xWrite, c_int::try_from(bytes.len()))
        else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        ISSUED.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `inner` is the open wrapped file and `bytes` is valid for
        // `amount` bytes of reads during the call.
        unsafe { write(self.inner, bytes.as_ptr().cast::<c_void>(), amount, offset) }
    }
}

/// The bytes [`WalFile::write_through`] writes.
enum HeldBytes<'a> {
    /// The held ones.
    Held,
    /// A write too large to hold.
    Given(&'a [u8]),
}

/// The database size a frame header records: non-zero only in a commit
/// frame (bytes 4 to 7, big-endian, of the log format's frame header).
fn commit_size(header: &[u8]) -> u32 {
    match header
        .get(4..8)
        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
    {
        Some(bytes) => u32::from_be_bytes(bytes),
        None => 0,
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    REQUESTED.fetch_add(1, Ordering::Relaxed);
    // SAFETY: SQLite calls a method only on a file `open` initialized.
    let wal = unsafe { state(file) };
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    if len == 0 {
        // Nothing to write (and `data` may then be null).
        return ffi::SQLITE_OK;
    }
    // SAFETY: SQLite passes `amount` readable bytes at `data`, not null
    // since `amount` is not zero.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
    // The write after a commit frame's header is its page: the transaction
    // is complete once it is in, wherever it lands.
    let commit_page = std::mem::take(&mut wal.held.commit_page_next);
    if !wal.held.continued_by(offset) || wal.held.bytes.len() + len > HOLD_LIMIT {
        let code = wal.write_held();
        if code != ffi::SQLITE_OK {
            return code;
        }
    }
    if len > HOLD_LIMIT {
        return wal.write_through(offset, HeldBytes::Given(bytes));
    }
    if wal.held.bytes.is_empty() {
        wal.held.offset = offset;
    }
    wal.held.bytes.extend_from_slice(bytes);
    if len == FRAME_HEADER {
        wal.held.commit_page_next = commit_size(bytes) != 0;
    }
    if commit_page {
        AT_COMMIT.fetch_add(1, Ordering::Relaxed);
        return wal.write_held();
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls a method only on a file `open` initialized.
    let wal = unsafe { state(file) };
    let written = wal.write_held();
    let inner = wal.inner;
    // SAFETY: the state is dropped once, here; SQLite calls nothing on the
    // file after `xClose`.
    unsafe { ptr::drop_in_place(&raw mut wal.held) };
    // SAFETY: `inner` is the wrapped file `open` opened.
    let closed = unsafe { close_inner(inner) };
    if written == ffi::SQLITE_OK {
        closed
    } else {
        written
    }
}

/// Writes what is held, then calls the wrapped method.
macro_rules! after_held {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: SQLite calls a method only on a file `open`
            // initialized.
            let wal = unsafe { state(file) };
            let code = wal.write_held();
            if code != ffi::SQLITE_OK {
                return code;
            }
            match inner_methods(wal).$method {
                // SAFETY: the wrapped method, on the wrapped file, with
                // SQLite's own arguments.
                Some(method) => unsafe { method(wal.inner, $($arg),*) },
                None => ffi::SQLITE_IOERR,
            }
        }
    };
}

/// Calls the wrapped method; nothing held matters to it.
macro_rules! passed_on {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: SQLite calls a method only on a file `open`
            // initialized.
            let wal = unsafe { state(file) };
            match inner_methods(wal).$method {
                // SAFETY: the wrapped method, on the wrapped file, with
                // SQLite's own arguments.
                Some(method) => unsafe { method(wal.inner, $($arg),*) },
                None => $missing,
            }
        }
    };
}

after_held!(read, xRead, (data: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64));
after_held!(truncate, xTruncate, (size: ffi::sqlite3_int64));
after_held!(sync, xSync, (flags: c_int));
after_held!(file_size_of, xFileSize, (size: *mut ffi::sqlite3_int64));
after_held!(file_control, xFileControl, (op: c_int, arg: *mut c_void));
passed_on!(lock, xLock, (level: c_int), ffi::SQLITE_OK);
passed_on!(unlock, xUnlock, (level: c_int), ffi::SQLITE_OK);
passed_on!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int), ffi::SQLITE_OK);
passed_on!(sector_size, xSectorSize, (), 4096);
passed_on!(device_characteristics, xDeviceCharacteristics, (), 0);
