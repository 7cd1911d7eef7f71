//! The SQLite index of stored images: manifests, names, labels, sizes, times, remote origins.
//!
//! Schema versions (`PRAGMA user_version`): 0 is the first layout; 1 adds `remotes`, the HTTP
//! cache of fetched URLs (one image may come from several URLs, so the cache is keyed by URL;
//! the `etag`/`max_age` columns of `images` stay unused). Every step only adds, so an older
//! database opens and is migrated in place, and an older appcctl still reads a newer one.
//!
//! WAL mode: readers (`image list`, name resolution) never block on a writer, and concurrent
//! writers wait on `busy_timeout` instead of failing. `synchronous=FULL` because an index row is
//! what makes an image visible: it must not outlive a power cut while its tree does not.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::StoreError;
use crate::schema::{AcIdentifier, ImageId, ImageManifest, Labels};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    size         INTEGER NOT NULL,
    import_time  INTEGER NOT NULL,
    last_used    INTEGER NOT NULL,
    source       TEXT,
    etag         TEXT,
    max_age      INTEGER
);
CREATE INDEX IF NOT EXISTS images_by_name ON images(name);
CREATE TABLE IF NOT EXISTS labels (
    image_id  TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (image_id, name)
);
CREATE INDEX IF NOT EXISTS labels_by_value ON labels(name, value);
";

/// Migrations by the version they lead to; each is idempotent.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "
CREATE TABLE IF NOT EXISTS remotes (
    url       TEXT PRIMARY KEY,
    image_id  TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    etag      TEXT,
    max_age   INTEGER,
    fetched   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS remotes_by_image ON remotes(image_id);
",
)];

/// What the HTTP cache knows of one fetched URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRecord {
    pub url: String,
    pub image_id: ImageId,
    /// The `ETag` of the answer that brought the image, for `If-None-Match`.
    pub etag: Option<String>,
    /// `Cache-Control: max-age`, seconds.
    pub max_age: Option<i64>,
    /// When it was last downloaded or revalidated (Unix seconds).
    pub fetched: i64,
}

impl RemoteRecord {
    /// Whether `max-age` says the copy may be used without asking the server.
    pub fn is_fresh(&self, now: i64) -> bool {
        self.max_age
            .is_some_and(|age| age > 0 && now < self.fetched.saturating_add(age))
    }
}

/// One stored image as the index knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub id: ImageId,
    pub name: AcIdentifier,
    pub labels: Labels,
    pub manifest: ImageManifest,
    /// The manifest exactly as stored in the image.
    pub manifest_text: String,
    /// Size of the uncompressed image tar, in bytes.
    pub size: u64,
    /// Unix seconds.
    pub import_time: i64,
    pub last_used: i64,
    /// Where it was fetched from (a path or URL), if known.
    pub source: Option<String>,
}

/// The index database of one store.
#[derive(Debug)]
pub struct Index {
    conn: Connection,
    path: PathBuf,
}

impl Index {
    pub fn open(path: &Path) -> Result<Index, StoreError> {
        let err = |op| {
            move |source| StoreError::Index {
                op,
                path: path.to_owned(),
                source,
            }
        };
        let conn = Connection::open(path).map_err(err("open"))?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(err("configure"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("configure"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err("configure"))?;
        conn.execute_batch(SCHEMA).map_err(err("create tables"))?;
        migrate(&conn).map_err(err("migrate the schema"))?;
        Ok(Index {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Index {
            op,
            path: self.path.clone(),
            source,
        }
    }

    /// Inserts a freshly committed image; a row that already exists is left as it is.
    pub fn insert(&self, rec: &ImageRecord) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.err("begin"))?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO images (id, name, manifest, size, import_time, last_used, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    rec.id.as_str(),
                    rec.name.as_str(),
                    rec.manifest_text,
                    rec.size as i64,
                    rec.import_time,
                    rec.last_used,
                    rec.source
                ],
            )
            .map_err(self.err("insert image"))?;
        if inserted == 1 {
            for l in rec.labels.iter() {
                tx.execute(
                    "INSERT INTO labels (image_id, name, value) VALUES (?1, ?2, ?3)",
                    params![rec.id.as_str(), l.name.as_str(), l.value],
                )
                .map_err(self.err("insert label"))?;
            }
        }
        tx.commit().map_err(self.err("commit"))?;
        Ok(inserted == 1)
    }

    pub fn get(&self, id: &ImageId) -> Result<Option<ImageRecord>, StoreError> {
        let sql = format!("{SELECT} WHERE id = ?1");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err("query"))?;
        stmt.query_row([id.as_str()], read_row)
            .optional()
            .map_err(self.err("query"))
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let sql = format!("{SELECT} ORDER BY import_time, id");
        self.query(&sql, [])
    }

    pub fn find_by_name(&self, name: &AcIdentifier) -> Result<Vec<ImageRecord>, StoreError> {
        let sql = format!("{SELECT} WHERE name = ?1");
        self.query(&sql, [name.as_str()])
    }

    /// Images whose digest starts with `hex` (lower-case hex digits, checked by the caller).
    pub fn find_by_id_prefix(&self, hex: &str) -> Result<Vec<ImageRecord>, StoreError> {
        let sql = format!("{SELECT} WHERE substr(id, 1, ?2) = ?1");
        let prefix = format!("sha512-{hex}");
        let len = prefix.len() as i64;
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err("query"))?;
        let rows = stmt
            .query_map(params![prefix, len], read_row)
            .map_err(self.err("query"))?;
        rows.collect::<Result<_, _>>().map_err(self.err("read row"))
    }

    fn query<P: rusqlite::Params>(&self, sql: &str, p: P) -> Result<Vec<ImageRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.err("query"))?;
        let rows = stmt.query_map(p, read_row).map_err(self.err("query"))?;
        rows.collect::<Result<_, _>>().map_err(self.err("read row"))
    }

    pub fn touch(&self, id: &ImageId, now: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE images SET last_used = ?2 WHERE id = ?1",
                params![id.as_str(), now],
            )
            .map_err(self.err("update last use"))?;
        Ok(())
    }

    /// Removes an image's row (its labels go with it); true if it existed.
    pub fn remove(&self, id: &ImageId) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM images WHERE id = ?1", [id.as_str()])
            .map_err(self.err("remove image"))?;
        Ok(n == 1)
    }
}

/// Brings the schema to the newest version, one transaction per step.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

impl Index {
    /// The cache entry of a fetched URL (its image is in the store: rows go with their image).
    pub fn remote(&self, url: &str) -> Result<Option<RemoteRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT url, image_id, etag, max_age, fetched FROM remotes WHERE url = ?1",
            )
            .map_err(self.err("query"))?;
        let row = stmt
            .query_row([url], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .optional()
            .map_err(self.err("query"))?;
        Ok(row.and_then(|(url, id, etag, max_age, fetched)| {
            Some(RemoteRecord {
                url,
                image_id: ImageId::parse(&id).ok()?,
                etag,
                max_age,
                fetched,
            })
        }))
    }

    /// Records (or refreshes) where an image came from and how long that answer stays fresh.
    pub fn record_remote(&self, rec: &RemoteRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO remotes (url, image_id, etag, max_age, fetched)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(url) DO UPDATE SET image_id = ?2, etag = ?3, max_age = ?4, fetched = ?5",
                params![
                    rec.url,
                    rec.image_id.as_str(),
                    rec.etag,
                    rec.max_age,
                    rec.fetched
                ],
            )
            .map_err(self.err("record the remote origin"))?;
        Ok(())
    }
}

const SELECT: &str = "SELECT id, name, manifest, size, import_time, last_used, source FROM images";

fn read_row(row: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    let bad = |i, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let id: String = row.get(0)?;
    let text: String = row.get(2)?;
    let manifest = ImageManifest::parse(&text)
        .map_err(|e| bad(2, e.to_string()))?
        .value;
    Ok(ImageRecord {
        id: ImageId::parse(&id).map_err(|e| bad(0, e.to_string()))?,
        name: manifest.name.clone(),
        labels: manifest.labels.clone(),
        manifest,
        manifest_text: text,
        size: row.get::<_, i64>(3)? as u64,
        import_time: row.get(4)?,
        last_used: row.get(5)?,
        source: row.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str =
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/old"}"#;

    fn id(c: char) -> ImageId {
        ImageId::parse(&format!("sha512-{}", c.to_string().repeat(128))).expect("id")
    }

    #[test]
    fn a_version_0_database_is_migrated_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index.db");
        {
            // The first layout, as an older appcctl left it: no remotes table, user_version 0.
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(SCHEMA).expect("schema");
            conn.execute(
                "INSERT INTO images (id, name, manifest, size, import_time, last_used)
                 VALUES (?1, 'example.com/old', ?2, 1, 1, 1)",
                params![id('a').as_str(), MANIFEST],
            )
            .expect("row");
        }
        let index = Index::open(&path).expect("migrate");
        assert_eq!(index.list().expect("list").len(), 1, "old rows survive");
        let version: i64 = index
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, MIGRATIONS.last().expect("migrations").0);
        let rec = RemoteRecord {
            url: "https://example.com/old.aci".into(),
            image_id: id('a'),
            etag: Some("\"1\"".into()),
            max_age: Some(60),
            fetched: 100,
        };
        index.record_remote(&rec).expect("record");
        assert_eq!(index.remote(&rec.url).expect("query"), Some(rec.clone()));
        assert!(rec.is_fresh(159) && !rec.is_fresh(160));
        // Opening again is a no-op; the cache row goes with its image.
        drop(index);
        let index = Index::open(&path).expect("reopen");
        index.remove(&id('a')).expect("remove");
        assert_eq!(index.remote(&rec.url).expect("query"), None);
    }
}
