//! The store's queries over PostgreSQL: `ops.rs` compiled with `Conn = PgConnection`.

pub(super) type Conn = diesel::pg::PgConnection;

pub(super) const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("migrations/postgres");

#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend on purpose: diesel types queries by backend"
)]
#[path = "ops.rs"]
pub(super) mod ops;
