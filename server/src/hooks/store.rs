//! Where webhook deliveries keep their state: per site and subscriber the seq delivered up to
//! (the checkpoint), the dead letters, and which completed visits were handed over. In the
//! SQLite file of the embedded store; in Redis beside the shared log, with the lease that lets
//! one instance deliver for a site.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::core::SiteId;

#[derive(Debug, Clone, thiserror::Error)]
#[error("delivery store: {0}")]
pub struct StoreError(String);

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// An event a subscriber did not take after every try: the floor board lists it and can send
/// it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The subscriber (`[[sites.webhooks]] name`).
    pub hook: String,
    /// The event's seq in the site's log (its `Madoguchi-Event-Id`).
    pub seq: u64,
    /// The webhook kind, e.g. `visit.completed`.
    pub kind: String,
    pub attempts: u32,
    /// What the last try got: an HTTP status or a connection error (never the body sent).
    pub error: String,
    /// When it was given up, RFC 3339.
    pub failed_at: String,
}

/// Sets the checkpoint only while `holder` holds the site's lease, and never backwards.
/// KEYS: lease, checkpoint. ARGV: holder, seq.
const ADVANCE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local now = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > now then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
";

/// Takes the lease if free, or extends it if `holder` has it. KEYS: lease. ARGV: holder, ms.
const LEASE: &str = r"
local h = redis.call('GET', KEYS[1])
if h == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif h == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Gives the lease up if `holder` has it. KEYS: lease. ARGV: holder.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

#[derive(Clone)]
pub enum DeliveryStore {
    /// Beside the embedded log: one server delivers every site.
    Sqlite(Arc<Mutex<Connection>>),
    /// Shared by the instances on one Redis.
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS webhook_checkpoints (
    site TEXT NOT NULL,
    hook TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (site, hook)
);
CREATE TABLE IF NOT EXISTS webhook_dead (
    site TEXT NOT NULL,
    hook TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (site, hook, seq)
);
CREATE TABLE IF NOT EXISTS handovers (
    ticket_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    departure_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS handovers_site ON handovers (site, departure_ms);
CREATE TABLE IF NOT EXISTS integration_keys (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

impl DeliveryStore {
    pub fn sqlite(path: &Path) -> Result<Self, StoreError> {
        let conn = crate::log::open_db(path).map_err(err)?;
        // In WAL mode commits survive in order: a power cut may lose the latest checkpoint moves
        // (their events are sent again, as after SIGKILL), never one without those before it.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(TABLES).map_err(err)?;
        Ok(Self::Sqlite(Arc::new(Mutex::new(conn))))
    }

    pub fn redis(conn: ConnectionManager, prefix: &str) -> Self {
        Self::Redis {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    /// Whether several instances share it (then one holds a site's lease to deliver).
    pub fn shared(&self) -> bool {
        matches!(self, Self::Redis { .. })
    }

    async fn sql<T: Send + 'static>(
        conn: &Arc<Mutex<Connection>>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        crate::log::on_connection(conn, |c| f(c).map_err(err))
            .await
            .map_err(err)?
    }

    fn key(prefix: &str, site: &SiteId, rest: &str) -> String {
        format!("{prefix}{{{}}}:{rest}", site.as_str())
    }

    /// The deployment's key of booking references (`hooks::reservation_ref`): made once at
    /// random by the first server to start, then read by every start and every instance.
    pub async fn reference_key(&self) -> Result<[u8; 32], StoreError> {
        let fresh: [u8; 32] = rand::random();
        let stored: Vec<u8> = match self {
            Self::Sqlite(conn) => {
                Self::sql(conn, move |c| {
                    c.execute(
                        "INSERT OR IGNORE INTO integration_keys (name, value) VALUES ('reservation_ref', ?1)",
                        [fresh.to_vec()],
                    )?;
                    c.query_row(
                        "SELECT value FROM integration_keys WHERE name = 'reservation_ref'",
                        [],
                        |r| r.get(0),
                    )
                })
                .await?
            }
            Self::Redis { conn, prefix } => {
                let key = format!("{prefix}reservation_ref_key");
                let _: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(fresh.to_vec())
                    .arg("NX")
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(err)?;
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(err)?
            }
        };
        stored
            .try_into()
            .map_err(|_| StoreError("the stored reference key is not 32 bytes".into()))
    }

    /// The seq `hook` has delivered (or given up) up to.
    pub async fn checkpoint(&self, site: &SiteId, hook: &str) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(conn) => {
                let (site, hook) = (site.to_string(), hook.to_owned());
                Self::sql(conn, move |c| {
                    c.query_row(
                        "SELECT seq FROM webhook_checkpoints WHERE site = ?1 AND hook = ?2",
                        params![site, hook],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                    .map(|s| s.unwrap_or(0) as u64)
                })
                .await
            }
            Self::Redis { conn, prefix } => {
                let key = Self::key(prefix, site, &format!("hooks:{hook}:seq"));
                let v: Option<u64> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(err)?;
                Ok(v.unwrap_or(0))
            }
        }
    }

    /// Sets `hook`'s checkpoint to `seq` if it has none: a new subscriber starts from the end of
    /// the log as it is when it is added, not from the site's whole history.
    pub async fn start_at(&self, site: &SiteId, hook: &str, seq: u64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(conn) => {
                let (site, hook) = (site.to_string(), hook.to_owned());
                Self::sql(conn, move |c| {
                    c.execute(
                        "INSERT OR IGNORE INTO webhook_checkpoints (site, hook, seq) VALUES (?1, ?2, ?3)",
                        params![site, hook, seq as i64],
                    )
                })
                .await?;
            }
            Self::Redis { conn, prefix } => {
                let _: Option<String> = redis::cmd("SET")
                    .arg(Self::key(prefix, site, &format!("hooks:{hook}:seq")))
                    .arg(seq)
                    .arg("NX")
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// Moves `hook`'s checkpoint up to `seq`. On Redis only while `holder` holds the site's
    /// lease: false when it was lost (another instance delivers now).
    pub async fn advance(
        &self,
        site: &SiteId,
        hook: &str,
        seq: u64,
        holder: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(conn) => {
                let (site, hook) = (site.to_string(), hook.to_owned());
                Self::sql(conn, move |c| {
                    c.execute(
                        "INSERT INTO webhook_checkpoints (site, hook, seq) VALUES (?1, ?2, ?3)
                         ON CONFLICT (site, hook) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                        params![site, hook, seq as i64],
                    )
                })
                .await?;
                Ok(true)
            }
            Self::Redis { conn, prefix } => {
                let held: i64 = Script::new(ADVANCE)
                    .key(Self::key(prefix, site, "hooks:lease"))
                    .key(Self::key(prefix, site, &format!("hooks:{hook}:seq")))
                    .arg(holder)
                    .arg(seq)
                    .invoke_async(&mut conn.clone())
                    .await
                    .map_err(err)?;
                Ok(held == 1)
            }
        }
    }

    /// Takes or extends the site's delivery lease for `ttl` (always true on SQLite: one server).
    pub async fn lease(
        &self,
        site: &SiteId,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(true),
            Self::Redis { conn, prefix } => {
                let held: i64 = Script::new(LEASE)
                    .key(Self::key(prefix, site, "hooks:lease"))
                    .arg(holder)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async(&mut conn.clone())
                    .await
                    .map_err(err)?;
                Ok(held == 1)
            }
        }
    }

    /// Gives the lease up (a stopping instance), so another takes over at once.
    pub async fn release(&self, site: &SiteId, holder: &str) -> Result<(), StoreError> {
        if let Self::Redis { conn, prefix } = self {
            let _: i64 = Script::new(RELEASE)
                .key(Self::key(prefix, site, "hooks:lease"))
                .arg(holder)
                .invoke_async(&mut conn.clone())
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    pub async fn add_dead(&self, site: &SiteId, dead: &DeadLetter) -> Result<(), StoreError> {
        let body = serde_json::to_string(dead).map_err(err)?;
        match self {
            Self::Sqlite(conn) => {
                let (site, hook, seq) = (site.to_string(), dead.hook.clone(), dead.seq);
                Self::sql(conn, move |c| {
                    c.execute(
                        "INSERT OR REPLACE INTO webhook_dead (site, hook, seq, body) VALUES (?1, ?2, ?3, ?4)",
                        params![site, hook, seq as i64, body],
                    )
                })
                .await?;
            }
            Self::Redis { conn, prefix } => {
                let _: i64 = redis::cmd("HSET")
                    .arg(Self::key(prefix, site, "hooks:dead"))
                    .arg(format!("{}:{}", dead.hook, dead.seq))
                    .arg(body)
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// The site's dead letters, oldest event first.
    pub async fn dead_letters(&self, site: &SiteId) -> Result<Vec<DeadLetter>, StoreError> {
        let bodies: Vec<String> = match self {
            Self::Sqlite(conn) => {
                let site = site.to_string();
                Self::sql(conn, move |c| {
                    let mut stmt = c.prepare(
                        "SELECT body FROM webhook_dead WHERE site = ?1 ORDER BY seq, hook",
                    )?;
                    let rows = stmt.query_map([site], |r| r.get::<_, String>(0))?;
                    rows.collect()
                })
                .await?
            }
            Self::Redis { conn, prefix } => redis::cmd("HVALS")
                .arg(Self::key(prefix, site, "hooks:dead"))
                .query_async(&mut conn.clone())
                .await
                .map_err(err)?,
        };
        let mut dead: Vec<DeadLetter> = bodies
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect();
        dead.sort_by(|a, b| (a.seq, &a.hook).cmp(&(b.seq, &b.hook)));
        Ok(dead)
    }

    /// Removes a dead letter (sent again); false if there was none.
    pub async fn remove_dead(
        &self,
        site: &SiteId,
        hook: &str,
        seq: u64,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(conn) => {
                let (site, hook) = (site.to_string(), hook.to_owned());
                let n = Self::sql(conn, move |c| {
                    c.execute(
                        "DELETE FROM webhook_dead WHERE site = ?1 AND hook = ?2 AND seq = ?3",
                        params![site, hook, seq as i64],
                    )
                })
                .await?;
                Ok(n > 0)
            }
            Self::Redis { conn, prefix } => {
                let n: i64 = redis::cmd("HDEL")
                    .arg(Self::key(prefix, site, "hooks:dead"))
                    .arg(format!("{hook}:{seq}"))
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(err)?;
                Ok(n > 0)
            }
        }
    }

    /// Records that a completed visit reached the counter-support system.
    pub async fn handed_over(
        &self,
        site: &SiteId,
        ticket: &str,
        departure_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(conn) => {
                let (site, ticket) = (site.to_string(), ticket.to_owned());
                Self::sql(conn, move |c| {
                    c.execute(
                        "INSERT OR IGNORE INTO handovers (ticket_id, site, departure_ms) VALUES (?1, ?2, ?3)",
                        params![ticket, site, departure_ms],
                    )
                })
                .await?;
            }
            Self::Redis { conn, prefix } => {
                let _: i64 = redis::cmd("ZADD")
                    .arg(Self::key(prefix, site, "handovers"))
                    .arg(departure_ms)
                    .arg(ticket)
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// The tickets of `sites` handed over whose visit ended between `from_ms` and `to_ms`.
    pub async fn handovers(
        &self,
        sites: &[SiteId],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<HashSet<String>, StoreError> {
        let mut all = HashSet::new();
        for site in sites {
            let tickets: Vec<String> = match self {
                Self::Sqlite(conn) => {
                    let site = site.to_string();
                    Self::sql(conn, move |c| {
                        let mut stmt = c.prepare(
                            "SELECT ticket_id FROM handovers WHERE site = ?1 AND departure_ms BETWEEN ?2 AND ?3",
                        )?;
                        let rows = stmt.query_map(params![site, from_ms, to_ms], |r| r.get(0))?;
                        rows.collect()
                    })
                    .await?
                }
                Self::Redis { conn, prefix } => redis::cmd("ZRANGE")
                    .arg(Self::key(prefix, site, "handovers"))
                    .arg(from_ms)
                    .arg(to_ms)
                    .arg("BYSCORE")
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(err)?,
            };
            all.extend(tickets);
        }
        Ok(all)
    }
}
