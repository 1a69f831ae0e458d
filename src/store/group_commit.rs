//! Group commit for SQLite's single writer: units of work that arrive while one runs join
//! its transaction, each in a savepoint of its own, and one commit (one flush of the log)
//! makes the whole batch durable. Every caller is answered only after the commit of its
//! batch succeeded, so an acknowledged write survives a crash exactly as before; a unit that
//! fails rolls back to its savepoint and leaves the others in.
//!
//! Each unit still runs on its caller's thread, one at a time (the batch's connection is
//! behind a mutex): what changes is who commits. A unit that finishes while others are
//! waiting to run leaves the transaction open for them and waits; the unit after which
//! nobody is waiting (or the [`MAX_BATCH`]th) commits and wakes the batch.

use super::checkpoint::Checkpointer;
use super::db::{self, Pooled};
use super::{Failure, StoreError, Unit};
use crate::store::search::Dialect;
use diesel::connection::TransactionManager;
use diesel::Connection;
use std::collections::HashMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// The connection's transaction manager: diesel nests a transaction begun inside it as a
/// savepoint.
type Transactions = <db::AnyConnection as Connection>::TransactionManager;

/// Units one commit makes durable at most: past it the batch commits even if others wait,
/// which bounds how long the first of them waits for its answer.
pub const MAX_BATCH: usize = 64;

/// The writer's batches (see the module's documentation).
#[derive(Default)]
pub(super) struct GroupCommit {
    batch: Mutex<Batch>,
    committed: Condvar,
    /// Callers about to take the batch's mutex: while there are some, a finished unit leaves
    /// the commit to them.
    arriving: AtomicUsize,
    /// Told of every commit: it copies the log into the database off the write path.
    checkpointer: Option<Checkpointer>,
}

#[derive(Default)]
struct Batch {
    /// The open transaction's connection; none between batches.
    conn: Option<Pooled>,
    /// The open batch's number (the last one's between batches).
    number: u64,
    /// Units of the open batch that succeeded and wait for its commit.
    members: usize,
    /// Committed batches some of whose members have not read the outcome yet.
    outcomes: HashMap<u64, Outcome>,
}

struct Outcome {
    /// Whether the commit made the batch durable; why not, if it did not.
    durable: Result<(), String>,
    unread: usize,
}

impl GroupCommit {
    pub(super) fn new(checkpointer: Option<Checkpointer>) -> GroupCommit {
        GroupCommit {
            checkpointer,
            ..GroupCommit::default()
        }
    }

    /// Runs `work` as a unit of work in the open batch (opening one on a connection of
    /// `pool` if none is open) and answers once the batch is committed.
    pub(super) fn run<T, E: From<StoreError>>(
        &self,
        pool: &db::Pool,
        dialect: Dialect,
        work: impl FnOnce(&mut Unit<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.arriving.fetch_add(1, Ordering::SeqCst);
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        self.arriving.fetch_sub(1, Ordering::SeqCst);
        let conn = match batch.conn.take() {
            Some(conn) => conn,
            None => match open(pool) {
                Ok(conn) => {
                    batch.number += 1;
                    batch.members = 0;
                    conn
                }
                Err(e) => return Err(E::from(e)),
            },
        };
        let number = batch.number;
        let conn = batch.conn.insert(conn);
        // A savepoint of its own (diesel nests the transaction): a unit that fails, or
        // panics, takes back only what it wrote.
        let ran = catch_unwind(AssertUnwindSafe(|| {
            conn.transaction::<T, Failure<E>, _>(|conn| {
                work(&mut Unit { conn, dialect }).map_err(Failure::Work)
            })
        }));
        if ran.is_err() {
            // diesel leaves the savepoint open when the closure panics.
            let _ = Transactions::rollback_transaction(&mut **conn);
        }
        let intact = intact(conn);
        let joined = matches!(ran, Ok(Ok(_)));
        if joined {
            batch.members += 1;
        }
        let last =
            self.arriving.load(Ordering::SeqCst) == 0 || batch.members >= MAX_BATCH || !intact;
        let durable = if last {
            let durable = commit(&mut batch);
            if let Some(checkpointer) = &self.checkpointer {
                checkpointer.committed();
            }
            let unread = batch.members - usize::from(joined);
            if unread > 0 {
                let durable = durable.clone();
                batch.outcomes.insert(number, Outcome { durable, unread });
            }
            drop(batch);
            self.committed.notify_all();
            durable
        } else if joined {
            wait_for(&self.committed, batch, number)
        } else {
            // Nothing of this unit stays, committed or not: its answer need not wait.
            drop(batch);
            Ok(())
        };
        let result = match ran {
            Ok(result) => result,
            Err(panic) => resume_unwind(panic),
        };
        match (result, durable) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(why)) => Err(E::from(StoreError::Uncommitted(why))),
            (Err(Failure::Work(e)), _) => Err(e),
            (Err(Failure::Store(e)), _) => Err(E::from(e)),
        }
    }
}

/// A connection of `pool` with a transaction begun on it, holding the database's write lock
/// from the start: a batch is one long transaction, and a read made in it before the lock
/// was taken could not become a write once another process (`carnet reindex`, an import)
/// committed meanwhile (SQLite refuses such an upgrade at once). Taking the lock first
/// waits for such a writer instead (busy_timeout), as each unit's own transaction did.
fn open(pool: &db::Pool) -> Result<Pooled, StoreError> {
    let mut conn = pool.get()?;
    Transactions::begin_transaction(&mut *conn)?;
    if let Err(e) = db::lock_writes(&mut conn) {
        let _ = Transactions::rollback_transaction(&mut *conn);
        return Err(e.into());
    }
    Ok(conn)
}

/// Whether the batch's transaction is still the one open at the batch's level: a unit that
/// failed may have ended it (SQLite rolls a whole transaction back on some errors, and the
/// savepoint is then gone), and a unit joining after that would run outside any batch.
fn intact(conn: &mut db::AnyConnection) -> bool {
    let status = Transactions::transaction_manager_status_mut(conn);
    matches!(status.transaction_depth(), Ok(Some(depth)) if depth.get() == 1)
}

/// Commits the open batch and gives its connection back to the pool.
fn commit(batch: &mut Batch) -> Result<(), String> {
    let Some(mut conn) = batch.conn.take() else {
        return Ok(());
    };
    Transactions::commit_transaction(&mut *conn).map_err(|e| {
        // diesel rolls back a transaction whose COMMIT failed; make sure, whatever it did.
        let _ = Transactions::rollback_transaction(&mut *conn);
        format!("the transaction of this write could not be committed: {e}")
    })
}

/// Waits until batch `number` is committed; its outcome.
fn wait_for(
    committed: &Condvar,
    mut batch: MutexGuard<'_, Batch>,
    number: u64,
) -> Result<(), String> {
    loop {
        if let Some(outcome) = batch.outcomes.get_mut(&number) {
            outcome.unread -= 1;
            let durable = outcome.durable.clone();
            if outcome.unread == 0 {
                batch.outcomes.remove(&number);
            }
            return durable;
        }
        batch = committed.wait(batch).unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::RunQueryDsl;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    fn scratch() -> (db::Pool, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("carnet-group-{}", uuid::Uuid::new_v4()));
        let target = db::Target::Sqlite(dir.join("carnet.db"));
        target.prepare(0).unwrap();
        let pool = db::pool(&target, 1).unwrap();
        let mut conn = pool.get().unwrap();
        diesel::sql_query("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .execute(&mut *conn)
            .unwrap();
        drop(conn);
        (pool, dir)
    }

    fn insert(unit: &mut Unit<'_>, n: i64) -> Result<(), StoreError> {
        diesel::sql_query(format!("INSERT INTO t VALUES ({n})")).execute(unit.conn)?;
        Ok(())
    }

    fn rows(dir: &std::path::Path) -> Vec<i64> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut other =
            diesel::SqliteConnection::establish(dir.join("carnet.db").to_str().unwrap()).unwrap();
        let rows: Vec<Row> = diesel::sql_query("SELECT n FROM t ORDER BY n")
            .load(&mut other)
            .unwrap();
        rows.into_iter().map(|r| r.n).collect()
    }

    /// What [`two_in_one_batch`] saw.
    struct Two {
        first: Result<(), StoreError>,
        second: Result<(), StoreError>,
        /// Whether the second unit had run when the first caller was answered.
        second_ran_before_first_answer: bool,
        batches: u64,
    }

    /// Runs `first` in a unit that stays open until a second caller is waiting to run
    /// `second`, so that both are in one batch.
    fn two_in_one_batch(
        group: &Arc<GroupCommit>,
        pool: &db::Pool,
        first: impl FnOnce(&mut Unit<'_>) -> Result<(), StoreError> + Send + 'static,
        second: impl FnOnce(&mut Unit<'_>) -> Result<(), StoreError> + Send + 'static,
    ) -> Two {
        let started = Arc::new(AtomicBool::new(false));
        let second_ran = Arc::new(AtomicBool::new(false));
        let a = {
            let (group, pool) = (group.clone(), pool.clone());
            let (started, second_ran) = (started.clone(), second_ran.clone());
            std::thread::spawn(move || {
                let answer = group.run(&pool, Dialect::Sqlite, |unit| {
                    started.store(true, Ordering::SeqCst);
                    while group.arriving.load(Ordering::SeqCst) == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    first(unit)
                });
                (answer, second_ran.load(Ordering::SeqCst))
            })
        };
        while !started.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let second = group.run(pool, Dialect::Sqlite, |unit| {
            let result = second(unit);
            second_ran.store(true, Ordering::SeqCst);
            result
        });
        let (first, second_ran_before_first_answer) = a.join().unwrap();
        let batches = group.batch.lock().unwrap().number;
        Two {
            first,
            second,
            second_ran_before_first_answer,
            batches,
        }
    }

    #[test]
    fn units_arriving_while_one_runs_share_its_commit_and_are_answered_after_it() {
        let (pool, dir) = scratch();
        let group = Arc::new(GroupCommit::default());
        let two = two_in_one_batch(
            &group,
            &pool,
            |unit| insert(unit, 1),
            |unit| insert(unit, 2),
        );
        two.first.unwrap();
        two.second.unwrap();
        assert_eq!(two.batches, 1, "one commit for both");
        assert!(
            two.second_ran_before_first_answer,
            "the first is answered once the batch is committed, after the second ran"
        );
        assert_eq!(rows(&dir), [1, 2]);
        assert!(group.batch.lock().unwrap().outcomes.is_empty());
        // Alone, a unit commits at once.
        group
            .run(&pool, Dialect::Sqlite, |unit| insert(unit, 3))
            .unwrap();
        assert_eq!(rows(&dir), [1, 2, 3]);
        assert_eq!(group.batch.lock().unwrap().number, 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_failing_unit_takes_back_only_its_own_writes() {
        let (pool, dir) = scratch();
        let group = Arc::new(GroupCommit::default());
        let two = two_in_one_batch(
            &group,
            &pool,
            |unit| insert(unit, 1),
            |unit| {
                insert(unit, 2)?;
                insert(unit, 1) // a duplicate key: this unit fails
            },
        );
        two.first.unwrap();
        assert!(two.second.is_err());
        assert_eq!(rows(&dir), [1]);
        let two = two_in_one_batch(
            &group,
            &pool,
            |unit| {
                insert(unit, 5)?;
                Err(StoreError::Conflict)
            },
            |unit| insert(unit, 6),
        );
        assert!(matches!(two.first, Err(StoreError::Conflict)));
        two.second.unwrap();
        assert_eq!(rows(&dir), [1, 6]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_unit_of_a_batch_whose_commit_fails_is_acknowledged() {
        let (pool, dir) = scratch();
        let mut conn = pool.get().unwrap();
        // A deferred foreign key is checked at COMMIT: a batch holding a dangling row
        // cannot commit.
        diesel::sql_query(
            "CREATE TABLE child (parent INTEGER REFERENCES t(n) DEFERRABLE INITIALLY DEFERRED)",
        )
        .execute(&mut *conn)
        .unwrap();
        drop(conn);
        let group = Arc::new(GroupCommit::default());
        let two = two_in_one_batch(
            &group,
            &pool,
            |unit| insert(unit, 1),
            |unit| {
                diesel::sql_query("INSERT INTO child VALUES (99)").execute(unit.conn)?;
                Ok(())
            },
        );
        assert!(
            matches!(two.first, Err(StoreError::Uncommitted(_))),
            "{:?}",
            two.first
        );
        assert!(
            matches!(two.second, Err(StoreError::Uncommitted(_))),
            "{:?}",
            two.second
        );
        assert!(rows(&dir).is_empty());
        // The writer goes on.
        group
            .run(&pool, Dialect::Sqlite, |unit| insert(unit, 2))
            .unwrap();
        assert_eq!(rows(&dir), [2]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_unit_that_ends_the_transaction_ends_the_batch() {
        let (pool, dir) = scratch();
        let group = Arc::new(GroupCommit::default());
        let two = two_in_one_batch(
            &group,
            &pool,
            |unit| {
                insert(unit, 1)?;
                // As SQLite does on some errors (a full disk): the whole transaction is gone.
                diesel::sql_query("ROLLBACK").execute(unit.conn)?;
                Err(StoreError::Conflict)
            },
            |unit| insert(unit, 2),
        );
        assert!(two.first.is_err());
        // The unit waiting behind it runs in a batch of its own, not outside any.
        two.second.unwrap();
        assert_eq!(two.batches, 2);
        assert_eq!(rows(&dir), [2]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_panicking_unit_takes_back_its_writes_and_the_batch_goes_on() {
        let (pool, dir) = scratch();
        let group = Arc::new(GroupCommit::default());
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            group.run(&pool, Dialect::Sqlite, |unit| -> Result<(), StoreError> {
                insert(unit, 1)?;
                panic!("a bug in a unit");
            })
        }));
        assert!(panicked.is_err());
        group
            .run(&pool, Dialect::Sqlite, |unit| insert(unit, 2))
            .unwrap();
        assert_eq!(rows(&dir), [2]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
