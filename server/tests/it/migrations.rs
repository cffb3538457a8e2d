//! Schema migrations applied to a database that already holds data, on
//! SQLite and PostgreSQL alike.

use crate::harness::db::TestDb;
use consult_hub::domain::PersonKey;
use consult_hub::store::contacts;
use consult_hub::store::migration::Migrator;
use consult_protocol::{DevicePlatform, UserId};
use sea_orm::{ConnectionTrait, Database};
use sea_orm_migration::MigratorTrait;

#[tokio::test]
async fn devices_and_sms_consent_written_before_clinic_scoping_keep_their_patients_clinic() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&TestDb::create(dir.path()).await.url)
        .await
        .unwrap();
    Migrator::up(&db, Some(2)).await.unwrap();
    for statement in [
        "INSERT INTO participants (id, clinic_id, role, display_name, phone, created_at, updated_at) \
         VALUES ('pat-a', 'riverside', 'patient', 'Alex Rivera', '+15550100001', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO devices (token, user_id, platform, notifications_enabled, created_at, updated_at) \
         VALUES ('fcm-a', 'pat-a', 'fcm', TRUE, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO devices (token, user_id, platform, notifications_enabled, created_at, updated_at) \
         VALUES ('fcm-nobody', 'pat-unknown', 'fcm', TRUE, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO sms_preferences (user_id, consent, opted_out, updated_at) \
         VALUES ('pat-a', TRUE, FALSE, CURRENT_TIMESTAMP)",
    ] {
        db.execute_unprepared(statement).await.unwrap();
    }

    Migrator::up(&db, None).await.unwrap();

    let here = PersonKey::new(&"riverside".into(), &UserId::from("pat-a"));
    let elsewhere = PersonKey::new(&"other".into(), &UserId::from("pat-a"));
    assert_eq!(
        contacts::push_devices(&db, &here).await.unwrap(),
        [(DevicePlatform::Fcm, "fcm-a".to_owned())]
    );
    assert!(
        contacts::push_devices(&db, &elsewhere)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        contacts::sms_phone(&db, &here).await.unwrap().as_deref(),
        Some("+15550100001")
    );
    assert_eq!(contacts::sms_phone(&db, &elsewhere).await.unwrap(), None);
    let orphan = PersonKey::new(&"riverside".into(), &UserId::from("pat-unknown"));
    assert!(
        contacts::push_devices(&db, &orphan)
            .await
            .unwrap()
            .is_empty(),
        "a device of no known participant could not be placed in a clinic"
    );
}
