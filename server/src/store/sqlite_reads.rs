//! Point reads on a SQLite file, run on the calling thread with a
//! connection of the hub's own: the consultation a `join` or a send checks
//! membership against, the clinic a `hello`'s user is registered in, and
//! how a patient can be reached outside the app (the notification
//! planner's reach cache asks for each patient every few seconds).
//!
//! Through the sqlx pool each such read is a hand-off to the connection's
//! worker thread and back, and another for the ping sqlx sends when the
//! connection is given back: four thread wake-ups for a primary-key look-up
//! of a few microseconds. Here the look-up runs where it is asked for. A
//! connection is taken from a small set kept for this and put back after the
//! read; one is opened when none is free.
//!
//! A read never waits: a connection whose database is locked (rare and brief
//! for a reader in WAL mode: a recovery, or another process holding the file
//! in exclusive locking mode) fails at once, and so does any other failure or a row this
//! module cannot read (a timestamp in another form than the hub writes);
//! the caller then reads through the pool ([`Store`](super::Store)'s point
//! reads do).

use super::StoreError;
use super::contacts::{self, Contact};
use super::sqlite_rows::{CONSULTATION_COLUMNS, ConsultationColumns};
use crate::domain::{Consultation, PersonKey};
use consult_protocol::{ClinicId, ConsultationId, UserId};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

/// Connections kept between reads: more than the runtime's worker threads
/// reading at once is rare, and a read that finds none free opens one.
const MAX_KEPT: usize = 8;

/// Statements each connection keeps prepared.
const STATEMENT_CACHE: usize = 8;

static CONSULTATION: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {CONSULTATION_COLUMNS} FROM consultations WHERE id = ?1"));

const CLINIC_OF: &str = "SELECT clinic_id FROM participants WHERE id = ?1";

/// Read connections to one SQLite file.
pub struct SqliteReads {
    path: PathBuf,
    kept: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReads")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteReads {
    /// Reads of the database file at `path`; connections are opened when
    /// first needed.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The consultation `id`, if it exists.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the file cannot be read now,
    /// [`StoreError::Corrupt`] when the row cannot be read back.
    pub fn consultation(&self, id: &ConsultationId) -> Result<Option<Consultation>, StoreError> {
        self.with_connection(|connection| {
            connection
                .prepare_cached(&CONSULTATION)?
                .query_row(params![id.as_str()], ConsultationColumns::read)
                .optional()?
                .map(ConsultationColumns::parse)
                .transpose()
        })
    }

    /// The clinic `user` is registered in, if registered.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the file cannot be read now.
    pub fn clinic_of(&self, user: &UserId) -> Result<Option<ClinicId>, StoreError> {
        self.with_connection(|connection| {
            Ok(connection
                .prepare_cached(CLINIC_OF)?
                .query_row(params![user.as_str()], |row| row.get::<_, String>(0))
                .optional()?
                .map(ClinicId))
        })
    }

    /// How `person` can be reached outside the app.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the file cannot be read now.
    pub fn contact(&self, person: &PersonKey) -> Result<Contact, StoreError> {
        self.with_connection(|connection| {
            let key = params![person.clinic.as_str(), person.user.as_str()];
            let mut contact = Contact::default();
            let mut statement = connection
                .prepare_cached(contacts::contact_sql(sea_orm::DatabaseBackend::Sqlite))?;
            let mut rows = statement.query(key)?;
            while let Some(row) = rows.next()? {
                let platform = row.get::<_, Option<String>>(0)?;
                contact.add(platform.as_deref(), row.get(1)?, row.get(2)?);
            }
            Ok(contact)
        })
    }

    /// Runs `read` on a kept connection, or a new one; the connection is
    /// kept again only when the read succeeded.
    fn with_connection<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let kept = self.kept().pop();
        let connection = match kept {
            Some(connection) => connection,
            None => open(&self.path)?,
        };
        let result = read(&connection)?;
        let mut kept = self.kept();
        if kept.len() < MAX_KEPT {
            kept.push(connection);
        }
        Ok(result)
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic while the list was held cannot leave it half-changed.
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection that only reads and never waits for a lock.
fn open(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(Duration::ZERO)?;
    connection.pragma_update(None, "query_only", true)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseConfig;
    use crate::store::Store;
    use crate::store::consultations::{self, NewConsultation};
    use crate::store::participants::{self, Participant};
    use chrono::{TimeZone, Utc};
    use consult_protocol::{ConsultationStatus, DevicePlatform, Role};
    use sea_orm::ConnectionTrait;

    async fn store_on_file(dir: &Path) -> (Store, PathBuf) {
        let path = dir.join("hub.db");
        let config = DatabaseConfig {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            ..DatabaseConfig::default()
        };
        let store = Store::connect(&config).await.unwrap();
        store.migrate().await.unwrap();
        (store, path)
    }

    async fn consultation(store: &Store, status: ConsultationStatus) -> Consultation {
        participants::upsert_clinic(store.connection(), &ClinicId::from("riverside"), None)
            .await
            .unwrap();
        consultations::create(
            store.connection(),
            NewConsultation {
                clinic_id: ClinicId::from("riverside"),
                provider_id: UserId::from("dr-a"),
                patient_id: UserId::from("pat-a"),
                scheduled_at: Utc.with_ymd_and_hms(2026, 12, 6, 9, 30, 15).unwrap(),
                status,
            },
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn reads_give_what_the_pool_reads_and_nothing_for_unknown_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_on_file(dir.path()).await;
        let reads = SqliteReads::new(&path);
        let waiting = consultation(&store, ConsultationStatus::WaitingForPatient).await;
        let scheduled = consultation(&store, ConsultationStatus::Scheduled).await;
        assert!(waiting.waiting_since.is_some());
        assert!(scheduled.waiting_since.is_none());
        for id in [&waiting.id, &scheduled.id] {
            let pooled = consultations::find(store.connection(), id).await.unwrap();
            assert!(pooled.is_some());
            assert_eq!(reads.consultation(id).unwrap(), pooled);
            assert_eq!(store.consultation(id).await.unwrap(), pooled);
        }
        let unknown = ConsultationId::from("no-such-consultation");
        assert_eq!(reads.consultation(&unknown).unwrap(), None);

        let patient = Participant {
            id: UserId::from("pat-a"),
            clinic_id: ClinicId::from("riverside"),
            role: Role::Patient,
            display_name: "Pat".to_owned(),
            phone: None,
            preferred_name: None,
        };
        participants::upsert(store.connection(), &patient)
            .await
            .unwrap();
        let clinic = Some(ClinicId::from("riverside"));
        assert_eq!(reads.clinic_of(&patient.id).unwrap(), clinic);
        assert_eq!(store.clinic_of(&patient.id).await.unwrap(), clinic);
        assert_eq!(reads.clinic_of(&UserId::from("pat-b")).unwrap(), None);

        // A change committed through the pool is seen by the next read on a
        // kept connection.
        store
            .connection()
            .execute_unprepared(&format!(
                "UPDATE consultations SET last_seq = 41 WHERE id = '{}'",
                waiting.id
            ))
            .await
            .unwrap();
        let read = reads.consultation(&waiting.id).unwrap().unwrap();
        assert_eq!(read.last_seq, 41);
    }

    #[tokio::test]
    async fn a_row_the_inline_read_cannot_parse_is_read_through_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_on_file(dir.path()).await;
        let reads = SqliteReads::new(&path);
        let id = consultation(&store, ConsultationStatus::Scheduled).await.id;
        // A form sqlx reads and the hub never writes.
        store
            .connection()
            .execute_unprepared(&format!(
                "UPDATE consultations SET scheduled_at = '2026-12-06 10:00:00' WHERE id = '{id}'"
            ))
            .await
            .unwrap();
        assert!(matches!(
            reads.consultation(&id),
            Err(StoreError::Corrupt(_))
        ));
        let read = store.consultation(&id).await.unwrap().unwrap();
        assert_eq!(
            read.scheduled_at,
            Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap()
        );
    }

    #[tokio::test]
    async fn a_locked_database_fails_the_read_at_once_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_on_file(dir.path()).await;
        let id = consultation(&store, ConsultationStatus::Scheduled).await.id;
        // A connection in exclusive locking mode keeps every other one out
        // until it closes, WAL or not; it can take that lock only while no
        // other connection has the file open. The pool's connections may
        // outlive `close` on a busy machine (seen under the full suite), so
        // the test locks a copy of the database no pool ever opened.
        let copy = dir.path().join("copy.db");
        Connection::open(&path)
            .unwrap()
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        store.close().await.unwrap();
        let path = copy;
        let locker = Connection::open(&path).unwrap();
        locker
            .execute_batch(
                "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; \
                 UPDATE consultations SET rev = rev + 1;",
            )
            .unwrap();
        let reads = SqliteReads::new(&path);
        let started = std::time::Instant::now();
        let refused = reads.consultation(&id);
        assert!(matches!(refused, Err(StoreError::Sqlite(_))), "{refused:?}");
        // rusqlite's own default would wait five seconds.
        assert!(started.elapsed() < Duration::from_secs(2));
        locker.execute_batch("ROLLBACK").unwrap();
        drop(locker);
        assert!(reads.consultation(&id).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_contact_reads_as_through_the_pool() {
        use crate::store::contacts::{self, Contact};
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_on_file(dir.path()).await;
        let reads = SqliteReads::new(&path);
        let riverside = ClinicId::from("riverside");
        let lakeside = ClinicId::from("lakeside");
        for clinic in [&riverside, &lakeside] {
            participants::upsert_clinic(store.connection(), clinic, None)
                .await
                .unwrap();
        }
        for (id, clinic, phone) in [
            ("pat-a", &riverside, Some("+15550001")),
            ("pat-b", &riverside, None),
            ("pat-c", &lakeside, Some("+15550003")),
        ] {
            let patient = Participant {
                id: UserId::from(id),
                clinic_id: clinic.clone(),
                role: Role::Patient,
                display_name: "Pat".to_owned(),
                phone: phone.map(str::to_owned),
                preferred_name: None,
            };
            participants::upsert(store.connection(), &patient)
                .await
                .unwrap();
        }
        let a = PersonKey::new(&riverside, &UserId::from("pat-a"));
        let b = PersonKey::new(&riverside, &UserId::from("pat-b"));
        let a_elsewhere = PersonKey::new(&lakeside, &UserId::from("pat-a"));
        let both = |person: PersonKey| {
            let store = store.clone();
            let reads = &reads;
            async move {
                let mut inline = reads.contact(&person).unwrap();
                let mut pooled = contacts::contact(store.connection(), &person)
                    .await
                    .unwrap();
                inline.devices.sort_by(|x, y| x.1.cmp(&y.1));
                pooled.devices.sort_by(|x, y| x.1.cmp(&y.1));
                assert_eq!(inline, pooled, "{person:?}");
                assert_eq!(
                    store.contact(&person).await.unwrap().sms_phone,
                    inline.sms_phone
                );
                inline
            }
        };
        assert_eq!(both(a.clone()).await, Contact::default());

        let db = store.connection();
        contacts::register_device(db, &a, DevicePlatform::Fcm, "tok-1", true)
            .await
            .unwrap();
        contacts::register_device(db, &a, DevicePlatform::Apns, "tok-2", true)
            .await
            .unwrap();
        contacts::register_device(db, &a, DevicePlatform::Fcm, "tok-off", false)
            .await
            .unwrap();
        // The same user id under another clinic is another person.
        contacts::register_device(db, &a_elsewhere, DevicePlatform::Fcm, "tok-9", true)
            .await
            .unwrap();
        // A platform this build does not know is left out by both.
        db.execute_unprepared(
            "INSERT INTO devices (clinic_id, token, user_id, platform, notifications_enabled, \
             created_at, updated_at) VALUES ('riverside', 'tok-x', 'pat-a', 'pager', 1, \
             '2026-12-06T12:00:00Z', '2026-12-06T12:00:00Z')",
        )
        .await
        .unwrap();
        let found = both(a.clone()).await;
        assert_eq!(
            found.devices,
            vec![
                (DevicePlatform::Fcm, "tok-1".to_owned()),
                (DevicePlatform::Apns, "tok-2".to_owned())
            ]
        );
        assert_eq!(found.sms_phone, None, "no consent yet");
        assert_eq!(both(a_elsewhere.clone()).await.devices.len(), 1);

        contacts::set_sms_consent(db, &a, true).await.unwrap();
        assert_eq!(
            both(a.clone()).await.sms_phone.as_deref(),
            Some("+15550001")
        );
        contacts::set_sms_consent(db, &b, true).await.unwrap();
        assert_eq!(
            both(b.clone()).await.sms_phone,
            None,
            "consent without a phone"
        );
        contacts::set_opt_out_by_phone(db, "+15550001", true)
            .await
            .unwrap();
        assert_eq!(both(a.clone()).await.sms_phone, None, "STOP");
        contacts::set_opt_out_by_phone(db, "+15550001", false)
            .await
            .unwrap();
        both(a.clone()).await;
        contacts::set_sms_consent(db, &a, false).await.unwrap();
        assert_eq!(both(a).await.sms_phone, None, "consent withdrawn");
    }
}
