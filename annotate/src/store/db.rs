//! One SQL surface over the two databases a store can live in: a SQLite file (one machine) and a
//! PostgreSQL server (a team). The store's queries are written once, with SQLite's `?N`
//! placeholders (turned into PostgreSQL's `$N` here) and values of four kinds; the few places
//! where the dialects differ (migrations, search, the integrity check) ask [`Conn::is_postgres`].

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

pub use datasets::config::redact_store_url as redact;

use crate::error::{Error, Result};

/// A value passed to or read from a query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

/// `[Value]` from a list of expressions.
macro_rules! values {
    ($($v:expr),* $(,)?) => { &[$($crate::store::db::Value::from($v)),*][..] };
}
pub(crate) use values;

/// A failure of the database itself (not of what the user asked).
#[derive(Debug)]
pub(crate) enum DbError {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    /// A value of an unexpected type or shape in a row.
    Decode(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(e) => e.fmt(f),
            DbError::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(f, "{} ({})", db.message(), db.code().code()),
                None => e.fmt(f),
            },
            DbError::Decode(m) => f.write_str(m),
        }
    }
}

impl StdError for DbError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            DbError::Sqlite(e) => Some(e),
            DbError::Postgres(e) => Some(e),
            DbError::Decode(_) => None,
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        DbError::Sqlite(e)
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        DbError::Postgres(e)
    }
}

impl DbError {
    /// Whether the connection to the server was lost: the same work may be tried again on a new
    /// one (every write the store makes is idempotent, see [`super::Store::decide`]).
    pub(crate) fn is_connection_lost(&self) -> bool {
        match self {
            DbError::Postgres(e) => {
                if e.is_closed() {
                    return true;
                }
                if let Some(db) = e.as_db_error() {
                    // admin_shutdown, crash_shutdown, cannot_connect_now, and the connection
                    // exception class (08).
                    let code = db.code().code();
                    return matches!(code, "57P01" | "57P02" | "57P03") || code.starts_with("08");
                }
                // An I/O error (refused, reset) has no server code.
                e.source().is_some_and(|s| s.is::<std::io::Error>())
            }
            _ => false,
        }
    }
}

/// One row of a result.
#[derive(Debug)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> std::result::Result<&Value, DbError> {
        self.0
            .get(i)
            .ok_or_else(|| DbError::Decode(format!("a row has no column {i}")))
    }

    pub(crate) fn int(&self, i: usize) -> std::result::Result<i64, DbError> {
        self.opt_int(i)?
            .ok_or_else(|| DbError::Decode(format!("column {i} is NULL where a number belongs")))
    }

    pub(crate) fn opt_int(&self, i: usize) -> std::result::Result<Option<i64>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(DbError::Decode(format!(
                "column {i} holds {other:?} where a whole number belongs"
            ))),
        }
    }

    pub(crate) fn opt_real(&self, i: usize) -> std::result::Result<Option<f64>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Real(v) => Ok(Some(*v)),
            Value::Int(v) => Ok(Some(*v as f64)),
            other => Err(DbError::Decode(format!(
                "column {i} holds {other:?} where a number belongs"
            ))),
        }
    }

    pub(crate) fn text(&self, i: usize) -> std::result::Result<String, DbError> {
        self.opt_text(i)?
            .ok_or_else(|| DbError::Decode(format!("column {i} is NULL where a text belongs")))
    }

    pub(crate) fn opt_text(&self, i: usize) -> std::result::Result<Option<String>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => Err(DbError::Decode(format!(
                "column {i} holds {other:?} where a text belongs"
            ))),
        }
    }
}

/// What a query runs on: a connection or a transaction of either database.
pub(crate) trait Sql {
    /// The rows `sql` returns.
    fn rows(&mut self, sql: &str, params: &[Value]) -> std::result::Result<Vec<Row>, DbError>;
    /// Runs `sql`; the number of rows it changed.
    fn exec(&mut self, sql: &str, params: &[Value]) -> std::result::Result<u64, DbError>;
    /// Runs statements without parameters (a migration).
    fn batch(&mut self, sql: &str) -> std::result::Result<(), DbError>;

    /// The first row, if any.
    fn row(&mut self, sql: &str, params: &[Value]) -> std::result::Result<Option<Row>, DbError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// The first column of the first row as a whole number: a count, a version, a `RETURNING
    /// seq` (`None` without a row, or for NULL).
    fn number(&mut self, sql: &str, params: &[Value]) -> std::result::Result<Option<i64>, DbError> {
        match self.row(sql, params)? {
            Some(r) => r.opt_int(0),
            None => Ok(None),
        }
    }
}

/// Why a unit of work failed: the database (with what was being done), or something else.
#[derive(Debug)]
pub(crate) enum Fail {
    Db { what: String, source: DbError },
    Other(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Other(e)
    }
}

/// Attaches what was being done to a database error.
pub(crate) trait Ctx<T> {
    fn ctx(self, what: &str) -> std::result::Result<T, Fail>;
}

impl<T> Ctx<T> for std::result::Result<T, DbError> {
    fn ctx(self, what: &str) -> std::result::Result<T, Fail> {
        self.map_err(|source| Fail::Db {
            what: what.to_string(),
            source,
        })
    }
}

// --- SQLite ---------------------------------------------------------------------------------

pub(crate) struct Lite<'a>(pub(crate) &'a rusqlite::Connection);

fn to_lite(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(r) => rusqlite::types::Value::Real(*r),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
    }
}

impl Sql for Lite<'_> {
    fn rows(&mut self, sql: &str, params: &[Value]) -> std::result::Result<Vec<Row>, DbError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let n = stmt.column_count();
        let params: Vec<_> = params.iter().map(to_lite).collect();
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                        rusqlite::types::Value::Null => Value::Null,
                        rusqlite::types::Value::Integer(v) => Value::Int(v),
                        rusqlite::types::Value::Real(v) => Value::Real(v),
                        rusqlite::types::Value::Text(v) => Value::Text(v),
                        rusqlite::types::Value::Blob(_) => {
                            return Err(rusqlite::Error::InvalidColumnType(
                                i,
                                "blob".into(),
                                rusqlite::types::Type::Blob,
                            ));
                        }
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(Row)
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn exec(&mut self, sql: &str, params: &[Value]) -> std::result::Result<u64, DbError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let params: Vec<_> = params.iter().map(to_lite).collect();
        Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn batch(&mut self, sql: &str) -> std::result::Result<(), DbError> {
        Ok(self.0.execute_batch(sql)?)
    }
}

// --- PostgreSQL -----------------------------------------------------------------------------

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(v), &Type::INT8) => v.to_sql(ty, out),
            (Value::Int(v), &Type::INT4) => i32::try_from(*v)?.to_sql(ty, out),
            (Value::Int(v), &Type::INT2) => i16::try_from(*v)?.to_sql(ty, out),
            (Value::Int(v), &Type::FLOAT8) => (*v as f64).to_sql(ty, out),
            (Value::Real(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (Value::Real(v), &Type::FLOAT4) => (*v as f32).to_sql(ty, out),
            (Value::Text(v), _) if <&str as ToSql>::accepts(ty) => v.as_str().to_sql(ty, out),
            (v, ty) => Err(format!("cannot pass {v:?} as a PostgreSQL {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn from_pg(row: &postgres::Row) -> std::result::Result<Row, DbError> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let bad = |e: postgres::Error| DbError::Postgres(e);
        let v = match *col.type_() {
            Type::INT8 => row
                .try_get::<_, Option<i64>>(i)
                .map_err(bad)?
                .map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map_err(bad)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map_err(bad)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map_err(bad)?
                .map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row
                .try_get::<_, Option<f64>>(i)
                .map_err(bad)?
                .map(Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)
                .map_err(bad)?
                .map(|v| Value::Real(v.into())),
            _ => row
                .try_get::<_, Option<String>>(i)
                .map_err(bad)?
                .map(Value::Text),
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

/// `?N` placeholders as PostgreSQL's `$N`: a `?` followed by a digit, outside quoted text
/// (`'…'` literals and `"…"` names), so a literal question mark stays one.
pub(crate) fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '?') if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// A PostgreSQL connection with its prepared statements.
pub(crate) struct Pg {
    config: postgres::Config,
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

/// How long a connection attempt waits for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The password comes from here (libpq's own variable), never from a URL or a file.
pub const PASSWORD_ENV: &str = "PGPASSWORD";

/// The URL's scheme tells a PostgreSQL store from a SQLite file.
pub fn is_postgres_url(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

impl Pg {
    /// Parses `url` (no password in it: the password is read from `PGPASSWORD`).
    pub(crate) fn config(url: &str) -> Result<postgres::Config> {
        let mut config = postgres::Config::from_str(url).map_err(|e| {
            Error::invalid(format!(
                "`{}` is not a PostgreSQL URL ({e})\n\nhint: write it as postgres://USER@HOST:PORT/DATABASE",
                redact(url)
            ))
        })?;
        if config.get_password().is_some() {
            return Err(Error::invalid(format!(
                "The store URL holds a password: `{}`\n\nhint: leave the password out of the URL (it would be written to configs, logs and shell history) and set it in the environment variable {PASSWORD_ENV}",
                redact(url)
            )));
        }
        if let Ok(password) = std::env::var(PASSWORD_ENV) {
            config.password(password);
        }
        if config.get_user().is_none()
            && let Ok(user) = std::env::var("USER")
        {
            config.user(&user);
        }
        // A network that drops packets silently is noticed in seconds, not in the kernel's
        // quarter of an hour: the app then says it works offline.
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(Duration::from_secs(15));
        if config.get_application_name().is_none() {
            config.application_name("workbench annotate");
        }
        Ok(config)
    }

    pub(crate) fn connect(config: postgres::Config) -> std::result::Result<Pg, DbError> {
        let mut client = config.connect(postgres::NoTls)?;
        // A decision is durable when its commit returns, whatever the server's default.
        client.batch_execute("SET synchronous_commit = on; SET lock_timeout = '10s'")?;
        Ok(Pg {
            config,
            client,
            statements: HashMap::new(),
        })
    }

    /// A new connection in place of a lost one.
    fn reconnect(&mut self) -> std::result::Result<(), DbError> {
        let fresh = Pg::connect(self.config.clone())?;
        *self = fresh;
        Ok(())
    }

    /// Kills this connection's backend from a second connection (for the tests of a lost
    /// connection): what a server restart or a dropped network does to it.
    #[cfg(test)]
    pub(crate) fn backend_pid(&mut self) -> std::result::Result<i32, DbError> {
        Ok(self
            .client
            .query_one("SELECT pg_backend_pid()", &[])?
            .get(0))
    }
}

struct PgSql<'a, C: postgres::GenericClient> {
    client: &'a mut C,
    statements: &'a mut HashMap<String, postgres::Statement>,
}

impl<C: postgres::GenericClient> PgSql<'_, C> {
    fn statement(&mut self, sql: &str) -> std::result::Result<postgres::Statement, DbError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&dollar_placeholders(sql))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

fn pg_params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl<C: postgres::GenericClient> Sql for PgSql<'_, C> {
    fn rows(&mut self, sql: &str, params: &[Value]) -> std::result::Result<Vec<Row>, DbError> {
        let stmt = self.statement(sql)?;
        self.client
            .query(&stmt, &pg_params(params))?
            .iter()
            .map(from_pg)
            .collect()
    }

    fn exec(&mut self, sql: &str, params: &[Value]) -> std::result::Result<u64, DbError> {
        let stmt = self.statement(sql)?;
        Ok(self.client.execute(&stmt, &pg_params(params))?)
    }

    fn batch(&mut self, sql: &str) -> std::result::Result<(), DbError> {
        Ok(self.client.batch_execute(sql)?)
    }
}

/// The advisory lock every write transaction takes: PostgreSQL's counterpart of SQLite's one
/// writer at a time, which the claims and the undo rely on. Its first half says it is the
/// workbench's; its second is the store's schema, so stores in different schemas of one database
/// do not wait for each other.
const WRITE_LOCK: i32 = 0x776f_726b;

/// How often, and how long apart, a lost connection is tried again before the error reaches
/// the user (who sees the decision as not saved, and can try again).
const RECONNECTS: &[Duration] = &[
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// A store's connection.
pub(crate) enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Mutex<Pg>>),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conn::Sqlite(c) => f.debug_tuple("Sqlite").field(c).finish(),
            Conn::Postgres(_) => f.write_str("Postgres"),
        }
    }
}

impl Conn {
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Conn::Postgres(_))
    }

    /// Runs `f` outside a transaction (reads). On PostgreSQL a lost connection is made again
    /// and `f` run again.
    pub(crate) fn read<T>(
        &self,
        mut f: impl FnMut(&mut dyn Sql) -> std::result::Result<T, Fail>,
    ) -> std::result::Result<T, Fail> {
        match self {
            Conn::Sqlite(c) => f(&mut Lite(c)),
            Conn::Postgres(pg) => {
                let mut pg = pg.lock().unwrap_or_else(|p| p.into_inner());
                with_reconnects(&mut pg, |pg| {
                    let Pg {
                        client, statements, ..
                    } = pg;
                    f(&mut PgSql { client, statements })
                })
            }
        }
    }

    /// Runs `f` in a write transaction: SQLite's IMMEDIATE (the write lock taken at the start),
    /// PostgreSQL's with the store's advisory lock. Committed when `f` succeeds. On PostgreSQL a
    /// lost connection (even during the commit, when it is not known whether the commit landed)
    /// is made again and `f` run again: `f` must be idempotent.
    pub(crate) fn write<T>(
        &mut self,
        mut f: impl FnMut(&mut dyn Sql) -> std::result::Result<T, Fail>,
    ) -> std::result::Result<T, Fail> {
        match self {
            Conn::Sqlite(c) => {
                let tx = c
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(DbError::from)
                    .ctx("cannot start a transaction")?;
                let out = f(&mut Lite(&tx))?;
                tx.commit().map_err(DbError::from).ctx("cannot commit")?;
                Ok(out)
            }
            Conn::Postgres(pg) => {
                let pg = pg.get_mut().unwrap_or_else(|p| p.into_inner());
                with_reconnects(pg, |pg| {
                    let Pg {
                        client, statements, ..
                    } = pg;
                    let mut tx = client
                        .transaction()
                        .map_err(DbError::from)
                        .ctx("cannot start a transaction")?;
                    tx.execute(
                        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
                        &[&WRITE_LOCK],
                    )
                    .map_err(DbError::from)
                    .ctx("cannot take the write lock")?;
                    let out = f(&mut PgSql {
                        client: &mut tx,
                        statements,
                    })?;
                    tx.commit().map_err(DbError::from).ctx("cannot commit")?;
                    Ok(out)
                })
            }
        }
    }

    /// The PostgreSQL connection, for tests that break it.
    #[cfg(test)]
    pub(crate) fn pg(&mut self) -> Option<&mut Pg> {
        match self {
            Conn::Postgres(pg) => Some(pg.get_mut().unwrap_or_else(|p| p.into_inner())),
            Conn::Sqlite(_) => None,
        }
    }
}

fn with_reconnects<T>(
    pg: &mut Pg,
    mut f: impl FnMut(&mut Pg) -> std::result::Result<T, Fail>,
) -> std::result::Result<T, Fail> {
    let mut waits = RECONNECTS.iter();
    loop {
        match f(pg) {
            Err(Fail::Db { what, source }) if source.is_connection_lost() => {
                let Some(wait) = waits.next() else {
                    return Err(Fail::Db { what, source });
                };
                tracing::warn!("the connection to PostgreSQL was lost ({source}); reconnecting");
                std::thread::sleep(*wait);
                // A failed reconnect counts as one more try; the last error is the one shown.
                if let Err(e) = pg.reconnect() {
                    if !e.is_connection_lost() || waits.len() == 0 {
                        return Err(Fail::Db {
                            what: "cannot reconnect".into(),
                            source: e,
                        });
                    }
                    continue;
                }
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_become_dollars_outside_quoted_text() {
        assert_eq!(
            super::dollar_placeholders(
                "SELECT ?1, '?2 and ?', \"a?3\" FROM t WHERE x = ?10 OR y = ?"
            ),
            "SELECT $1, '?2 and ?', \"a?3\" FROM t WHERE x = $10 OR y = ?"
        );
        // A doubled quote inside a literal closes and reopens it: still inside.
        assert_eq!(
            super::dollar_placeholders("'it''s ?1' || ?2"),
            "'it''s ?1' || $2"
        );
    }
}
