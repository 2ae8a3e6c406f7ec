//! The shared backend: every site's event log in Redis, so several server instances serve the
//! same sites and any one of them may die.
//!
//! Per site, under a key prefix (default `madoguchi:`) and the `{site}` hash tag (Redis Cluster
//! keeps a site's keys in one slot):
//! - `{prefix}{site}:events`: a stream, one entry per event, entry id `<seq>-0`, fields `v` (the
//!   event format, [`EVENT_FORMAT`]) and `e` (the event as JSON, as the SQLite log stores it);
//! - `{prefix}{site}:seq`: the seq of the site's last event (kept when the stream is trimmed).
//!
//! An append is one Lua script: it checks the expected seq and adds the whole batch, so two
//! instances can never both append seq N and a batch is all or nothing.
//!
//! Other instances' appends are followed by one task per site holding its own connection, which
//! waits in `XREAD BLOCK` for entries past the seq it knows and publishes the site's new last seq
//! and whether Redis answers ([`EventLog::follow`]); the site actor then reads and applies what it
//! has not seen, and tells its screens when the log is away.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamReadReply;
use redis::{AsyncCommands, AsyncConnectionConfig, Client, Script};
use tokio::sync::watch;

use super::{
    EventLog, Followed, LogError, SnapshotStore, StoredEvent, EVENT_FORMAT, KEEP_SNAPSHOTS,
};
use crate::core::{Event, SiteId, SiteSnapshot, SNAPSHOT_FORMAT};

/// The key prefix unless configured.
pub const DEFAULT_PREFIX: &str = "madoguchi:";
/// How long one command may take before the log counts as unavailable.
const RESPONSE_LIMIT: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(2);
/// How long a follower's blocking read waits before it looks again.
const FOLLOW_BLOCK: Duration = Duration::from_secs(5);
/// Most entries one blocking read returns (only their ids are used).
const FOLLOW_COUNT: usize = 512;

/// Checks the expected seq and appends the batch. KEYS: stream, seq. ARGV: expected seq, event
/// format, then each event's JSON. Returns {1, new last seq} or {0, actual last seq}.
const APPEND: &str = r"
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last ~= tonumber(ARGV[1]) then
  return {0, last}
end
if #ARGV < 3 then
  return {1, last}
end
for i = 3, #ARGV do
  last = last + 1
  redis.call('XADD', KEYS[1], string.format('%d-0', last), 'v', ARGV[2], 'e', ARGV[i])
end
redis.call('SET', KEYS[2], string.format('%d', last))
return {1, last}
";

/// The event log in Redis.
#[derive(Clone)]
pub struct RedisLog {
    client: Client,
    conn: ConnectionManager,
    prefix: String,
    append: Script,
}

/// A site's keys.
#[derive(Clone)]
struct Keys {
    events: String,
    seq: String,
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("redis: {e}"))
}

/// A Redis URL with its password replaced, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl RedisLog {
    /// Connects to `url` (`redis://[:PASSWORD@]HOST:PORT/DB`); every key starts with `prefix`.
    /// Fails if Redis does not answer now; once connected, lost connections are made again by
    /// themselves (commands meanwhile fail as unavailable).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LogError> {
        let client = Client::open(url).map_err(|e| {
            LogError::Unavailable(format!("not a Redis URL ({}): {e}", redacted(url)))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_LIMIT))
            .set_connection_timeout(Some(CONNECT_LIMIT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| {
                LogError::Unavailable(format!("cannot reach Redis at {}: {e}", redacted(url)))
            })?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
            append: Script::new(APPEND),
        })
    }

    /// The shared connection and key prefix, for what lives beside the log (the webhook
    /// deliveries' state).
    pub fn connection(&self) -> (ConnectionManager, &str) {
        (self.conn.clone(), &self.prefix)
    }

    fn keys(&self, site: &SiteId) -> Keys {
        Keys {
            events: format!("{}{{{}}}:events", self.prefix, site.as_str()),
            seq: format!("{}{{{}}}:seq", self.prefix, site.as_str()),
        }
    }
}

#[async_trait]
impl EventLog for RedisLog {
    async fn append(
        &self,
        site: &SiteId,
        expected_seq: u64,
        events: &[Event],
    ) -> Result<u64, LogError> {
        let keys = self.keys(site);
        let mut invocation = self.append.prepare_invoke();
        invocation
            .key(&keys.events)
            .key(&keys.seq)
            .arg(expected_seq)
            .arg(EVENT_FORMAT);
        for event in events {
            let json = serde_json::to_string(event).map_err(unavailable)?;
            invocation.arg(json);
        }
        let mut conn = self.conn.clone();
        let (ok, last): (u8, u64) = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if ok == 1 {
            Ok(last)
        } else {
            Err(LogError::Conflict {
                expected: expected_seq,
                actual: last,
            })
        }
    }

    async fn read(
        &self,
        site: &SiteId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, LogError> {
        let keys = self.keys(site);
        let mut conn = self.conn.clone();
        let rows: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&keys.events)
            .arg(format!("({after}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|(id, fields)| decode(site, &id, fields))
            .collect()
    }

    async fn last_seq(&self, site: &SiteId) -> Result<u64, LogError> {
        let mut conn = self.conn.clone();
        let last: Option<u64> = conn.get(self.keys(site).seq).await.map_err(unavailable)?;
        Ok(last.unwrap_or(0))
    }

    async fn ping(&self) -> Result<(), LogError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    fn shared(&self) -> bool {
        true
    }

    fn follow(&self, site: &SiteId) -> Option<watch::Receiver<Followed>> {
        let (tx, rx) = watch::channel(Followed::default());
        tokio::spawn(follow(self.client.clone(), self.keys(site), tx));
        Some(rx)
    }
}

/// One stream entry back into a stored event.
fn decode(site: &SiteId, id: &str, fields: Vec<String>) -> Result<StoredEvent, LogError> {
    let corrupt = |seq: u64, reason: String| LogError::Corrupt {
        site: site.to_string(),
        seq,
        reason,
    };
    let seq = id
        .split_once('-')
        .and_then(|(seq, _)| seq.parse::<u64>().ok())
        .ok_or_else(|| corrupt(0, format!("entry id {id:?} is not <seq>-0")))?;
    let mut format = None;
    let mut body = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match name.as_str() {
            "v" => format = value.parse::<u32>().ok(),
            "e" => body = Some(value),
            _ => {}
        }
    }
    let format = format.ok_or_else(|| corrupt(seq, "no event format".into()))?;
    if format > EVENT_FORMAT {
        return Err(LogError::NewerFormat {
            site: site.to_string(),
            seq,
            format,
        });
    }
    let body = body.ok_or_else(|| corrupt(seq, "no event".into()))?;
    let event = serde_json::from_str(&body).map_err(|e| corrupt(seq, e.to_string()))?;
    Ok(StoredEvent { seq, event })
}

/// Publishes the site's last seq on `tx` whenever it grows, and whether Redis answers, until
/// every receiver is gone. Waits on a connection of its own (a blocking read would hold up any
/// other command on it) for entries past the seq it knows and takes the new seq from the last
/// entry's id. Reconnects with backoff when Redis goes away, and reads the seq key on
/// reconnecting, so nothing appended meanwhile is missed.
async fn follow(client: Client, keys: Keys, tx: watch::Sender<Followed>) {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_LIMIT))
        .set_response_timeout(Some(FOLLOW_BLOCK + RESPONSE_LIMIT));
    let publish = |seq: Option<u64>, connected: bool| {
        tx.send_if_modified(|known| {
            let was = *known;
            known.seq = known.seq.max(seq.unwrap_or(0));
            known.connected = connected;
            *known != was
        });
    };
    let mut wait = Duration::from_millis(100);
    while !tx.is_closed() {
        let mut conn = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(key = %keys.seq, error = %e, "log follower cannot connect; trying again");
                publish(None, false);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        wait = Duration::from_millis(100);
        let mut last = match conn.get::<_, Option<u64>>(&keys.seq).await {
            Ok(last) => last.unwrap_or(0),
            Err(_) => {
                publish(None, false);
                continue;
            }
        };
        // The seq as Redis has it, even below what was known (Redis lost writes): the site
        // actor tells that case apart.
        tx.send_if_modified(|known| {
            let was = *known;
            *known = Followed {
                seq: last,
                connected: true,
            };
            *known != was
        });
        while !tx.is_closed() {
            let read: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(FOLLOW_COUNT)
                .arg("BLOCK")
                .arg(FOLLOW_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&keys.events)
                .arg(format!("{last}-0"))
                .query_async(&mut conn)
                .await;
            match read {
                Ok(reply) => {
                    let newest = reply
                        .iter()
                        .flat_map(|r| &r.keys)
                        .filter_map(|k| k.ids.last())
                        .filter_map(|entry| entry.id.split_once('-'))
                        .filter_map(|(seq, _)| seq.parse::<u64>().ok())
                        .max();
                    if let Some(seq) = newest {
                        last = last.max(seq);
                        publish(Some(last), true);
                    }
                }
                Err(_) => {
                    publish(None, false);
                    break;
                }
            }
        }
    }
}

/// Snapshots of the sites' states in Redis beside the streams, shared by every instance: a new
/// instance starts from one when the stream no longer holds the events before it.
///
/// Per site: `{prefix}{site}:snapshots` (a sorted set of the kept snapshots' seqs) and
/// `{prefix}{site}:snapshot:<seq>` (the snapshot as JSON). The newest [`KEEP_SNAPSHOTS`] are
/// kept. After each save the stream is trimmed up to the newest kept snapshot whose last event
/// is older than the retention window (`XTRIM … MINID <seq>-0`: that snapshot's own event stays,
/// a start checks the snapshot against it), so Redis holds a bounded tail of the log while every
/// instance's own SQLite file keeps the whole history.
#[derive(Clone)]
pub struct RedisSnapshots {
    conn: ConnectionManager,
    prefix: String,
    retention: chrono::Duration,
}

impl RedisLog {
    /// The snapshot store beside this log, trimming the streams behind snapshots older than
    /// `retention`.
    pub fn snapshots(&self, retention: Duration) -> RedisSnapshots {
        RedisSnapshots {
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
            retention: chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX),
        }
    }
}

impl RedisSnapshots {
    fn index(&self, site: &SiteId) -> String {
        format!("{}{{{}}}:snapshots", self.prefix, site.as_str())
    }

    fn body(&self, site: &SiteId, seq: u64) -> String {
        format!("{}{{{}}}:snapshot:{seq}", self.prefix, site.as_str())
    }

    fn corrupt(site: &SiteId, seq: u64, reason: String) -> LogError {
        LogError::Corrupt {
            site: site.to_string(),
            seq,
            reason: format!("snapshot: {reason}"),
        }
    }

    /// The snapshot stored at `seq`, if it is there and of this version's format.
    async fn load(&self, site: &SiteId, seq: u64) -> Result<Option<SiteSnapshot>, LogError> {
        let mut conn = self.conn.clone();
        let body: Option<String> = conn.get(self.body(site, seq)).await.map_err(unavailable)?;
        let Some(body) = body else {
            return Ok(None);
        };
        let snapshot: SiteSnapshot =
            serde_json::from_str(&body).map_err(|e| Self::corrupt(site, seq, e.to_string()))?;
        if snapshot.seq != seq {
            return Err(Self::corrupt(
                site,
                seq,
                format!("stored as seq {seq}, its body says {}", snapshot.seq),
            ));
        }
        Ok((snapshot.format == SNAPSHOT_FORMAT).then_some(snapshot))
    }
}

#[async_trait]
impl SnapshotStore for RedisSnapshots {
    async fn save(&self, site: &SiteId, snapshot: SiteSnapshot) -> Result<(), LogError> {
        let seq = snapshot.seq;
        let body = tokio::task::spawn_blocking(move || serde_json::to_string(&snapshot))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        let mut conn = self.conn.clone();
        let index = self.index(site);
        let _: () = redis::pipe()
            .atomic()
            .set(self.body(site, seq), body)
            .zadd(&index, seq, seq)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        // Forget all but the newest few.
        let kept: Vec<u64> = conn.zrevrange(&index, 0, -1).await.map_err(unavailable)?;
        if kept.len() > KEEP_SNAPSHOTS {
            let old = &kept[KEEP_SNAPSHOTS..];
            let mut pipe = redis::pipe();
            pipe.atomic();
            for s in old {
                pipe.zrem(&index, *s).del(self.body(site, *s));
            }
            let _: () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        }
        // Trim the stream behind the newest kept snapshot older than the retention window.
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(self.retention)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        for s in kept.iter().take(KEEP_SNAPSHOTS) {
            let Some(snapshot) = self.load(site, *s).await? else {
                continue;
            };
            if snapshot.last_at.is_some_and(|at| at <= cutoff) {
                let trimmed: u64 = redis::cmd("XTRIM")
                    .arg(format!("{}{{{}}}:events", self.prefix, site.as_str()))
                    .arg("MINID")
                    .arg(format!("{s}-0"))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                if trimmed > 0 {
                    tracing::info!(site = %site, up_to_seq = s, trimmed, "shared log trimmed behind a snapshot");
                }
                break;
            }
        }
        Ok(())
    }

    async fn load_latest(
        &self,
        site: &SiteId,
        max_seq: u64,
    ) -> Result<Option<SiteSnapshot>, LogError> {
        let mut conn = self.conn.clone();
        let seqs: Vec<u64> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(self.index(site))
            .arg(max_seq.min(i64::MAX as u64))
            .arg("-inf")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        for seq in seqs {
            if let Some(snapshot) = self.load(site, seq).await? {
                return Ok(Some(snapshot));
            }
        }
        Ok(None)
    }
}
