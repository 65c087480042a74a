//! The store's queries over SQLite: `ops.rs` compiled with `Conn = SqliteConnection`.

pub(super) type Conn = diesel::sqlite::SqliteConnection;

pub(super) const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("migrations/sqlite");

#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend on purpose: diesel types queries by backend"
)]
#[path = "ops.rs"]
pub(super) mod ops;
