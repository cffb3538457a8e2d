//! The shim under SQLite's real log: committed frames are in the file when
//! the commit returns (another connection reads them, a copy of the files
//! taken then holds them), a transaction costs one write, frames spilled
//! before a commit are read back and rolled back correctly.

use super::{LogWrites, VFS_NAME, install, log_writes};
use libsqlite3_sys as ffi;
use rusqlite::{Connection, params};
use std::ffi::CStr;
use std::path::Path;
use std::sync::Mutex;

/// The counts are the process's: tests take turns, so that one's writes
/// never land in another's counts.
static COUNTS: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    COUNTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A database in WAL mode with 4 KiB pages, `synchronous = NORMAL` (a
/// commit makes no sync, which would write held frames anyway) and no
/// automatic checkpoints.
fn database(path: &Path) -> Connection {
    assert_eq!(install(), Ok(()));
    let connection = Connection::open(path).unwrap();
    connection
        .execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE IF NOT EXISTS rows (room INTEGER NOT NULL, body BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS rows_room ON rows (room);",
        )
        .unwrap();
    connection
}

/// Inserts `count` rows of `size` bytes, numbered from `first`, in one
/// transaction.
fn insert(connection: &mut Connection, first: i64, count: i64, size: usize) {
    let txn = connection.transaction().unwrap();
    for n in first..first + count {
        txn.execute(
            "INSERT INTO rows (room, body) VALUES (?1, ?2)",
            params![n, vec![u8::try_from(n % 251).unwrap(); size]],
        )
        .unwrap();
    }
    txn.commit().unwrap();
}

/// The number of rows, the sum of their numbers, and how many bodies are
/// whole and hold their row's byte.
fn contents(connection: &Connection) -> (i64, i64, i64) {
    connection
        .query_row(
            "SELECT count(*), coalesce(sum(room), 0), \
             coalesce(sum(body = zeroblob(0) OR (length(body) > 0 \
               AND hex(body) = replace(hex(zeroblob(length(body))), '00', \
                 printf('%02X', room % 251)))), 0) \
             FROM rows",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
}

/// What `contents` gives for rows `0..count`.
fn expected(count: i64) -> (i64, i64, i64) {
    (count, (0..count).sum(), count)
}

/// Copies the database and its log, as they are in the file system now, to
/// `to`, and opens the copy: what a crash now would leave.
fn copy_as_after_a_crash(from: &Path, to: &Path) -> Connection {
    std::fs::copy(from, to).unwrap();
    let log = |path: &Path| {
        let mut name = path.as_os_str().to_owned();
        name.push("-wal");
        std::path::PathBuf::from(name)
    };
    std::fs::copy(log(from), log(to)).unwrap();
    Connection::open(to).unwrap()
}

/// Copies the files as a crash now would leave them, to `name` beside
/// `path`, and checks that the copy holds rows `0..rows`, whole and intact.
fn assert_survives_a_crash(path: &Path, name: &str, rows: i64) {
    let copy = copy_as_after_a_crash(path, &path.with_file_name(name));
    assert_eq!(contents(&copy), expected(rows));
    assert_eq!(integrity(&copy), "ok");
}

fn integrity(connection: &Connection) -> String {
    connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

fn delta(before: LogWrites, after: LogWrites) -> LogWrites {
    LogWrites {
        requested: after.requested - before.requested,
        issued: after.issued - before.issued,
        at_commit: after.at_commit - before.at_commit,
    }
}

#[test]
fn the_shim_is_the_default_vfs() {
    assert_eq!(install(), Ok(()));
    assert_eq!(install(), Ok(()), "a second install gives the first result");
    // SAFETY: a null name asks for the default VFS, valid for the process's
    // life.
    let default = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    assert!(!default.is_null());
    // SAFETY: a registered VFS's name is a C string it keeps.
    let name = unsafe { CStr::from_ptr((*default).zName) };
    assert_eq!(name, VFS_NAME);
}

#[test]
fn committed_frames_are_in_the_log_when_the_commit_returns() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db");
    let mut writer = database(&path);
    let reader = Connection::open(&path).unwrap();
    let before = log_writes();
    // About 25 pages: rows of 3 KiB, one a page, and the index.
    insert(&mut writer, 0, 20, 3000);
    let one = delta(before, log_writes());
    assert!(
        one.requested >= 40,
        "two writes a frame, at least 20 frames: {one:?}"
    );
    assert_eq!(one.issued, 1, "the transaction in one write: {one:?}");
    assert_eq!(one.at_commit, 1);
    // Another connection reads the committed frames from the file.
    assert_eq!(contents(&reader), expected(20));
    // And the files as they are now hold them, the writer still open.
    assert_survives_a_crash(&path, "copy.db", 20);
    drop(writer);
}

#[test]
fn a_transaction_larger_than_the_hold_limit_is_written_in_parts() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.db");
    let mut writer = database(&path);
    let before = log_writes();
    // About 160 pages (640 KiB), over the 120 KiB held at most.
    insert(&mut writer, 0, 150, 3000);
    let large = delta(before, log_writes());
    assert!((6..=8).contains(&large.issued), "{large:?}");
    assert_eq!(large.at_commit, 1);
    assert_survives_a_crash(&path, "copy.db", 150);
}

#[test]
fn frames_spilled_before_a_commit_are_read_back_and_can_be_rolled_back() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spill.db");
    let mut writer = database(&path);
    insert(&mut writer, 0, 10, 100);
    // A cache of 8 pages: a transaction of 100 pages spills most of them to
    // the log before it commits, and reads them back from it.
    writer.execute_batch("PRAGMA cache_size = 8").unwrap();
    {
        let txn = writer.transaction().unwrap();
        for n in 10..110 {
            txn.execute(
                "INSERT INTO rows (room, body) VALUES (?1, ?2)",
                params![n, vec![7_u8; 3000]],
            )
            .unwrap();
        }
        let seen: i64 = txn
            .query_row("SELECT count(*) FROM rows WHERE room >= 10", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(
            seen, 100,
            "the spilled pages read back inside the transaction"
        );
        txn.rollback().unwrap();
    }
    assert_eq!(contents(&writer), expected(10));
    // The next transaction writes over the rolled-back frames.
    insert(&mut writer, 10, 40, 3000);
    assert_eq!(contents(&writer), expected(50));
    assert_survives_a_crash(&path, "copy.db", 50);
    // A spilled transaction that commits.
    insert(&mut writer, 50, 100, 3000);
    assert_survives_a_crash(&path, "copy-2.db", 150);
}

#[test]
fn a_checkpoint_and_a_restarted_log_keep_every_row() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restart.db");
    let mut writer = database(&path);
    let checkpointer = Connection::open(&path).unwrap();
    for round in 0..6 {
        insert(&mut writer, round * 20, 20, 2000);
        let mode = if round % 2 == 0 {
            "PASSIVE"
        } else {
            "TRUNCATE"
        };
        checkpointer
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
            .unwrap();
    }
    assert_eq!(contents(&checkpointer), expected(120));
    assert_survives_a_crash(&path, "copy.db", 120);
}

#[test]
fn every_commit_is_in_the_log_whatever_its_place_against_the_hold_limit() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sizes.db");
    let mut writer = database(&path);
    // Transactions of 1 to 70 pages: their commit frames fall at every
    // place against the hold limit (30 frames), including the one where
    // the commit frame's page is the write that passes it.
    let mut rows = 0;
    for size in 1..=70 {
        insert(&mut writer, rows, size, 3000);
        rows += size;
        let copy = copy_as_after_a_crash(&path, &dir.path().join(format!("copy-{size}.db")));
        let (count, sum): (i64, i64) = copy
            .query_row("SELECT count(*), sum(room) FROM rows", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!((count, sum), (rows, (0..rows).sum()), "after {size} rows");
    }
    assert_survives_a_crash(&path, "copy-last.db", rows);
}
