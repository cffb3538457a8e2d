//! Group-commit throughput of the message store, without the network: batches
//! of messages, each to another of 1,000 consultations (the worst case for
//! page locality), appended on a SQLite file on the connection the hub's
//! writer thread uses there (here called directly, without the thread's
//! hand-offs) and through the sea-orm pool writer
//! (PostgreSQL's path), for comparison. Criterion reports messages per
//! second; the figures are in docs/benchmarks.md.
//!
//! ```sh
//! cargo bench -p consult-hub --bench append
//! ```

// A benchmark's set-up failing is a reason to stop it.
#![allow(clippy::unwrap_used)]

use chrono::Utc;
use consult_hub::config::DatabaseConfig;
use consult_hub::store::Store;
use consult_hub::store::appender::Backend;
use consult_hub::store::consultations::{self, NewConsultation};
use consult_hub::store::messages::NewMessage;
use consult_hub::store::participants::{self, Participant};
use consult_protocol::{ClinicId, ConsultationId, ConsultationStatus, MessageKind, Role, UserId};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::{Duration, Instant};

const CONSULTATIONS: usize = 1_000;
const BATCH_SIZES: [usize; 2] = [64, 256];

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    consultations: Vec<ConsultationId>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        ),
        ..DatabaseConfig::default()
    };
    let store = Store::connect(&config).await.unwrap();
    store.migrate().await.unwrap();
    let db = store.connection();
    let clinic = ClinicId::from("bench-clinic");
    participants::upsert_clinic(db, &clinic, None)
        .await
        .unwrap();
    let person = |id: String, role| Participant {
        id: UserId(id),
        clinic_id: clinic.clone(),
        role,
        display_name: "Bench".to_owned(),
        phone: None,
        preferred_name: None,
    };
    participants::upsert(db, &person("dr-bench".into(), Role::Provider))
        .await
        .unwrap();
    let mut ids = Vec::with_capacity(CONSULTATIONS);
    for index in 0..CONSULTATIONS {
        let patient = format!("pat-{index}");
        participants::upsert(db, &person(patient.clone(), Role::Patient))
            .await
            .unwrap();
        let consultation = consultations::create(
            db,
            NewConsultation {
                clinic_id: clinic.clone(),
                provider_id: UserId::from("dr-bench"),
                patient_id: UserId(patient),
                scheduled_at: Utc::now(),
                status: ConsultationStatus::InProgress,
            },
        )
        .await
        .unwrap();
        ids.push(consultation.id);
    }
    Fixture {
        _dir: dir,
        store,
        consultations: ids,
    }
}

/// The next `size` messages, each to the next consultation in turn, each
/// with its own idempotency key (so the duplicate check runs, as for a
/// client send).
fn batch(consultations: &[ConsultationId], next: &mut usize, size: usize) -> Vec<NewMessage> {
    (0..size)
        .map(|_| {
            *next += 1;
            NewMessage {
                consultation_id: consultations[*next % consultations.len()].clone(),
                sender: UserId::from("dr-bench"),
                sender_role: Role::Provider,
                kind: MessageKind::Chat,
                body: format!("message {next} with a body of about sixty-four bytes.."),
                client_msg_id: Some(format!("m-{next}")),
                notifications: Vec::new(),
                audit: None,
            }
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("append");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for writer in ["sqlite_writer", "pool"] {
        for size in BATCH_SIZES {
            let fixture = runtime.block_on(fixture());
            let mut backend = runtime.block_on(async {
                match writer {
                    "pool" => Backend::Pool(fixture.store.connection().clone()),
                    _ => Backend::for_store(
                        &fixture.store,
                        &DatabaseConfig::default(),
                        &consult_hub::supervisor::Workers::new(),
                    )
                    .await
                    .unwrap(),
                }
            });
            let mut next = 0;
            group.throughput(Throughput::Elements(size as u64));
            group.bench_function(BenchmarkId::new(writer, size), |bencher| {
                bencher.iter_custom(|batches| {
                    runtime.block_on(async {
                        let mut elapsed = Duration::ZERO;
                        for _ in 0..batches {
                            let messages = batch(&fixture.consultations, &mut next, size);
                            let started = Instant::now();
                            let outcomes = backend.append(&messages).await;
                            elapsed += started.elapsed();
                            assert!(outcomes.iter().all(Result::is_ok));
                        }
                        elapsed
                    })
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
