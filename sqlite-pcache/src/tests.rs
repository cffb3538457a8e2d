//! The guard under SQLite's real workloads: an index growing in many places
//! at once (pages parked by rebalances), and a rolled-back transaction that
//! grew the file (pages past the end that must really be dropped).

use super::{
    cachesize, create, destroy, fetch, guard, install, rekey, truncate, truncations, unpin,
};
use libsqlite3_sys as ffi;
use rusqlite::{Connection, params};

/// A database in WAL mode with 4 KiB pages and a cache large enough to hold
/// it, with an index whose rows of each room lie together, as the message
/// index's do.
fn database(dir: &tempfile::TempDir) -> Connection {
    assert_eq!(
        install(),
        Ok(()),
        "the guard must be in place before SQLite is used"
    );
    let connection = Connection::open(dir.path().join("pcache.db")).unwrap();
    connection
        .execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; PRAGMA cache_size = -16384;
             CREATE TABLE rows (room TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE UNIQUE INDEX rows_room_seq ON rows (room, seq);",
        )
        .unwrap();
    connection
}

fn room(index: u64) -> String {
    format!("{index:08x}-room-with-a-long-identifier-as-uuids-are")
}

/// Appends `rounds` transactions of `per_round` rows, each row to the next
/// room of `rooms` in a scattered order, their `seq` from `first_seq` on in
/// each room, and returns the rows written.
fn append_scattered(
    connection: &mut Connection,
    (rooms, first_seq): (u64, u64),
    rounds: u64,
    per_round: u64,
) -> u64 {
    let mut written = 0;
    for round in 0..rounds {
        let txn = connection.transaction().unwrap();
        for i in 0..per_round {
            let n = round * per_round + i;
            let room_index = (n * 7919) % rooms;
            let seq = first_seq + n / rooms;
            txn.execute(
                "INSERT INTO rows (room, seq, body) VALUES (?1, ?2, ?3)",
                params![
                    room(room_index),
                    seq,
                    format!("message {n} of round {round}")
                ],
            )
            .unwrap();
            written += 1;
        }
        txn.commit().unwrap();
    }
    written
}

fn integrity(connection: &Connection) -> String {
    connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

fn count(connection: &Connection) -> u64 {
    connection
        .query_row("SELECT count(*) FROM rows", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn install_is_idempotent() {
    assert_eq!(install(), Ok(()));
    assert_eq!(install(), Ok(()));
}

#[test]
fn an_index_growing_in_many_places_ends_its_transactions_without_scanning_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut connection = database(&dir);
    let before = truncations();
    let written = append_scattered(&mut connection, (1_000, 0), 400, 8);
    let after = truncations();
    assert!(
        after.scans_spared - before.scans_spared >= 50,
        "rebalances park pages, and the transactions after them skip the scan: {before:?} -> {after:?}"
    );
    assert_eq!(integrity(&connection), "ok");
    assert_eq!(count(&connection), written);
    let reader = Connection::open(dir.path().join("pcache.db")).unwrap();
    assert_eq!(count(&reader), written);
    assert_eq!(integrity(&reader), "ok");
}

#[test]
fn a_rolled_back_transaction_that_grew_the_file_leaves_no_page_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut connection = database(&dir);
    let kept = append_scattered(&mut connection, (200, 0), 20, 50);
    let pages_before: u64 = connection
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap();
    let forwarded_before = truncations().forwarded;
    {
        let txn = connection.transaction().unwrap();
        for n in 0..2_000_u64 {
            txn.execute(
                "INSERT INTO rows (room, seq, body) VALUES (?1, ?2, ?3)",
                params![room(n % 50), 1_000_000 + n, "x".repeat(300)],
            )
            .unwrap();
        }
        let pages_inside: u64 = txn
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .unwrap();
        assert!(
            pages_inside > pages_before + 100,
            "the transaction grew the file"
        );
        txn.rollback().unwrap();
    }
    assert!(
        truncations().forwarded > forwarded_before,
        "pages past the end after a rollback: the truncation reaches SQLite's cache"
    );
    // The file grows again over the same page numbers with other contents; a
    // page left in the cache from the rolled-back transaction would be read
    // instead of the new one.
    let added = append_scattered(&mut connection, (300, 100), 20, 50);
    assert_eq!(integrity(&connection), "ok");
    assert_eq!(count(&connection), kept + added);
    let rolled_back: u64 = connection
        .query_row(
            "SELECT count(*) FROM rows WHERE seq >= 1000000",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(rolled_back, 0);
    let reader = Connection::open(dir.path().join("pcache.db")).unwrap();
    assert_eq!(integrity(&reader), "ok");
    assert_eq!(count(&reader), kept + added);
}

/// A page of `cache` under `key`, created if `create_flag` says so, given
/// back to the cache at once (unpinned, kept).
fn touch(cache: *mut ffi::sqlite3_pcache, key: u32, create_flag: i32) -> bool {
    // SAFETY: `cache` comes from `create` and is live; the page, when there
    // is one, is unpinned right after, as SQLite does once it is done.
    unsafe {
        let page = fetch(cache, key, create_flag);
        if page.is_null() {
            return false;
        }
        unpin(cache, page, 0);
        true
    }
}

/// Swaps the numbers of the pages under `a` and `b` through the parking
/// key, both pinned meanwhile, as SQLite's B-tree does in a rebalance;
/// `check` runs while the first page is parked.
fn swap(cache: *mut ffi::sqlite3_pcache, (a, b): (u32, u32), check: impl FnOnce()) {
    // SAFETY: `cache` is live and holds pages under `a` and `b` (fetched
    // without creating); they stay pinned while their keys change and are
    // unpinned after, as in SQLite.
    unsafe {
        let parking = guard(cache).parking_key;
        let first = fetch(cache, a, 0);
        let second = fetch(cache, b, 0);
        assert!(!first.is_null() && !second.is_null());
        rekey(cache, first, a, parking);
        check();
        rekey(cache, second, b, a);
        rekey(cache, first, parking, b);
        unpin(cache, first, 0);
        unpin(cache, second, 0);
    }
}

#[test]
fn the_guard_forwards_a_truncation_only_when_a_page_may_lie_at_or_past_the_limit() {
    assert_eq!(install(), Ok(()));
    // SAFETY: initializing SQLite is idempotent and sets the default cache
    // up through the guard's `init`.
    assert_eq!(unsafe { ffi::sqlite3_initialize() }, ffi::SQLITE_OK);
    // SAFETY: arguments as the pager passes them (4 KiB pages, room for its
    // own header, a purgeable cache).
    let cache = unsafe { create(4096, 256, 1) };
    assert!(!cache.is_null());
    // SAFETY: `cache` is live; room for every page below, as the pager sets
    // its cache size right after creating one.
    unsafe { cachesize(cache, 100) };
    // SAFETY: `cache` is live until `destroy` below.
    let guarded = unsafe { guard(cache) };
    let parking = guarded.parking_key;
    assert_eq!(parking, 262_145, "the page holding the byte at 1 GiB");
    for key in 1..=10 {
        assert!(touch(cache, key, 2));
    }
    assert!(guarded.holds_nothing_from(11));
    assert!(!guarded.holds_nothing_from(10));

    // A rebalance swaps pages 3 and 7 through the parking key.
    swap(cache, (3, 7), || {
        assert!(!guarded.holds_nothing_from(11), "a page is parked");
    });
    assert!(
        guarded.holds_nothing_from(11),
        "nothing lies past page 10 once the swap is done"
    );
    let spared_before = truncations().scans_spared;
    // SAFETY: `cache` is live; every page is unpinned.
    unsafe { truncate(cache, 11) };
    assert!(truncations().scans_spared > spared_before);
    for key in 1..=10 {
        assert!(touch(cache, key, 0), "page {key} is still cached");
    }

    // A truncation that must remove pages reaches SQLite's cache.
    assert!(!guarded.holds_nothing_from(6));
    // SAFETY: as above.
    unsafe { truncate(cache, 6) };
    for key in 1..=5 {
        assert!(touch(cache, key, 0), "page {key} is kept");
    }
    for key in 6..=10 {
        assert!(!touch(cache, key, 0), "page {key} is gone");
    }
    assert!(guarded.holds_nothing_from(6));

    // A page fetched under the parking key counts as a key.
    assert!(touch(cache, parking, 2));
    assert!(!guarded.holds_nothing_from(6));
    // SAFETY: as above.
    unsafe { truncate(cache, 6) };
    assert!(!touch(cache, parking, 0));
    // SAFETY: `cache` came from `create` and is not used after this.
    unsafe { destroy(cache) };
}
