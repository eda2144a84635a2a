//! A PostgreSQL store for tests: a schema of its own in the database that `WORKBENCH_PG_URL`
//! names (`scripts/postgres.sh start` makes a throwaway server and sets it), dropped when the
//! [`TestDb`] is. Without the variable the tests that need it skip with a message, except on
//! CI, where the store's suite must run on PostgreSQL and a missing server fails them.

use super::db::{Pg, redact};
use super::new_key;

/// The environment variable with the test server's URL (without a password: `PGPASSWORD`).
pub const URL_ENV: &str = "WORKBENCH_PG_URL";

/// A schema of its own on the test server, dropped (with its tables) on drop.
pub struct TestDb {
    /// The URL of the store: the server's, with the schema as its search path.
    pub url: String,
    server: String,
    schema: String,
}

impl TestDb {
    /// The URL of the database itself (no search path), to reach it from a second, plain
    /// connection: what a test that kills a backend uses.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// A plain connection to the server, with the schema as its search path.
    pub fn client(&self) -> postgres::Client {
        let config = Pg::config(&self.url).expect("the test URL parses");
        config
            .connect(postgres::NoTls)
            .expect("the test server accepts a connection")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(config) = Pg::config(&self.server)
            && let Ok(mut c) = config.connect(postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// A fresh schema for the test `name`, or `None` (with a message on stderr) when no server is
/// configured outside CI. On CI a missing or unreachable server panics.
pub fn postgres(name: &str) -> Option<TestDb> {
    let on_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let Ok(server) = std::env::var(URL_ENV) else {
        assert!(
            !on_ci,
            "{URL_ENV} is not set: on CI the store's tests run on PostgreSQL (`eval \"$(scripts/postgres.sh start)\"` sets it)"
        );
        eprintln!(
            "skipped on PostgreSQL: {URL_ENV} is not set (`eval \"$(scripts/postgres.sh start)\"` starts a throwaway server and sets it)"
        );
        return None;
    };
    let config = Pg::config(&server).unwrap_or_else(|e| panic!("{URL_ENV}: {e}"));
    let mut c = config.connect(postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "{URL_ENV} = {} cannot be reached ({e}); unset it to skip the PostgreSQL tests",
            redact(&server)
        )
    });
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let schema = format!("t_{clean}_{}", &new_key()[..10]);
    c.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .expect("the test user can create a schema");
    let sep = if server.contains('?') { '&' } else { '?' };
    Some(TestDb {
        url: format!("{server}{sep}options=-csearch_path%3D{schema}"),
        server,
        schema,
    })
}
