//! A fresh database per test: a SQLite file in a temporary folder, or a new
//! PostgreSQL database named by a UUID when `CONSULT_TEST_DATABASE=postgres`.

use sea_orm::{ConnectionTrait, Database, Statement, TryGetable, Value};

pub(crate) struct TestDb {
    pub(crate) url: String,
}

pub(crate) fn backend() -> String {
    std::env::var("CONSULT_TEST_DATABASE").unwrap_or_else(|_| "sqlite".to_owned())
}

impl TestDb {
    pub(crate) async fn create(dir: &std::path::Path) -> Self {
        match backend().as_str() {
            "sqlite" => Self {
                url: format!("sqlite://{}?mode=rwc", dir.join("hub.db").display()),
            },
            "postgres" => Self::create_postgres().await,
            other => panic!("CONSULT_TEST_DATABASE must be sqlite or postgres, not {other}"),
        }
    }

    async fn create_postgres() -> Self {
        let admin_url = std::env::var("CONSULT_TEST_PG_URL").expect(
            "CONSULT_TEST_DATABASE=postgres needs CONSULT_TEST_PG_URL (scripts/test sets it)",
        );
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url)
            .await
            .expect("postgres reachable");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base.to_owned())
            .expect("url has a database path");
        Self {
            url: format!("{base}/{name}"),
        }
    }
}

/// The first column of the one row `sql` (with `values`) selects.
pub(crate) async fn query_value<T: TryGetable>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> T {
    db.query_one(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        values,
    ))
    .await
    .unwrap()
    .expect("one row")
    .try_get_by_index(0)
    .unwrap()
}
