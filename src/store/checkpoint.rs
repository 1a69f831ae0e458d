//! SQLite's checkpoints off the write path. In WAL mode a commit appends the pages it changed
//! to the log; a checkpoint copies them back into the database file. By default the writer
//! itself checkpoints, inside a commit, whenever the log passes 1,000 pages — which under a
//! stream of creates cost a sixth of the writer's time (docs/performance.md, session 11),
//! while every other write waited. Here a thread of its own, on its own connection,
//! checkpoints passively (never waiting for, nor blocking, readers or the writer) shortly
//! after commits. SQLite starts the log over only when a write begins with every page of it
//! copied, which a passive checkpoint running beside a stream of writes rarely leaves: under
//! sustained writes the log grows to [`WRITER_CHECKPOINT_PAGES`] (40 MB), where the writer's
//! own checkpoint copies what little is left and the log starts over. Durability does not
//! depend on checkpoints: a commit is durable once the log is flushed (`synchronous = FULL`).

use super::db::{AnyConnection, OpenError, Target};
use diesel::connection::SimpleConnection;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Duration;

/// Log pages past which the writer checkpoints in its own commit (and, once it copied every
/// page, the log starts over): the bound on the log's size.
pub const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// How long the checkpointer lets commits accumulate after the first one it hears of: one
/// checkpoint then copies a page that several commits changed once.
const GATHER: Duration = Duration::from_millis(100);

/// The checkpointing thread of one store; it ends when this is dropped.
pub struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Starts the thread, on a connection of its own to `target`.
    pub fn start(target: &Target) -> Result<Checkpointer, OpenError> {
        let conn = target.connect()?;
        let (wake, woken) = sync_channel(1);
        std::thread::Builder::new()
            .name("carnet-checkpoint".into())
            .spawn(move || checkpoint_after_commits(conn, woken))
            .map_err(|e| OpenError::Connect(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer { wake })
    }

    /// Says that a commit appended to the log. Never waits: a wake already pending covers this
    /// commit too, and a thread that is gone has nothing to be told.
    pub fn committed(&self) {
        let _ = self.wake.try_send(());
    }
}

fn checkpoint_after_commits(mut conn: AnyConnection, woken: Receiver<()>) {
    // Ends when the store (the sender) is gone.
    while woken.recv().is_ok() {
        std::thread::sleep(GATHER);
        // Commits meanwhile are covered by this checkpoint.
        while woken.try_recv().is_ok() {}
        if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!("checkpoint failed (the writer's own checkpoint remains): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db;
    use diesel::RunQueryDsl;
    use std::time::Instant;

    #[test]
    fn a_commit_reaches_the_database_file_without_the_writer_checkpointing() {
        let dir = std::env::temp_dir().join(format!("carnet-ckpt-{}", uuid::Uuid::new_v4()));
        let file = dir.join("carnet.db");
        let target = Target::Sqlite(file.clone());
        target.prepare(0).unwrap();
        let writer = db::writer_pool(&target).unwrap();
        let checkpointer = Checkpointer::start(&target).unwrap();
        let size = || std::fs::metadata(&file).unwrap().len();
        let before = size();
        // 256 KiB: 64 log pages, far below the writer's own threshold.
        let mut conn = writer.get().unwrap();
        conn.batch_execute(
            "CREATE TABLE blobs (b BLOB); \
             INSERT INTO blobs VALUES (zeroblob(262144));",
        )
        .unwrap();
        assert_eq!(size(), before, "the commit stays in the log");
        checkpointer.committed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while size() < before + 262_144 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(size() >= before + 262_144, "checkpointed: {} bytes", size());
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows: Vec<Count> = diesel::sql_query("SELECT COUNT(*) AS n FROM blobs")
            .load(&mut *conn)
            .unwrap();
        assert_eq!(rows[0].n, 1);
        drop((conn, checkpointer));
        let _ = std::fs::remove_dir_all(dir);
    }
}
