//! `prdiff queue`: the queues of a `prdiff serve` database — depths, dead letters, replay.
//! Safe while serve runs: each change is one SQLite transaction, and serve looks at its
//! queues again within seconds.

use std::path::{Path, PathBuf};

use prdiff_serve::{DIFF_QUEUE, POLL_QUEUE, SYNC_QUEUE};
use prdiff_shared::queue::embedded::EmbeddedQueues;

use crate::{CliError, CliResult};

#[derive(clap::Args, Debug)]
pub struct Db {
    /// The SQLite file `prdiff serve` uses.
    #[arg(long, env = "PRDIFF_DB", default_value = "prdiff.db")]
    db: PathBuf,
}

#[derive(clap::Subcommand, Debug)]
pub enum QueueCommand {
    /// Messages waiting (or in flight) per queue, and the dead letters.
    Status {
        #[command(flatten)]
        db: Db,
    },
    /// The dead letters: id, queue, deliveries, why, and the message.
    DeadLetters {
        #[command(flatten)]
        db: Db,
    },
    /// Puts dead letters back on their queue, due now (after fixing what failed them).
    Replay {
        /// Dead-letter ids (from `prdiff queue dead-letters`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        db: Db,
    },
}

fn open(db: &Path) -> Result<EmbeddedQueues, CliError> {
    if !db.is_file() {
        return Err(CliError::usage(format!(
            "no prdiff database at {}",
            db.display()
        )));
    }
    EmbeddedQueues::open(db).map_err(|e| CliError::failed(&e).context(db.display()))
}

fn failed(e: impl std::error::Error + 'static) -> CliError {
    CliError::failed(&e)
}

pub fn run(cmd: QueueCommand) -> CliResult {
    match cmd {
        QueueCommand::Status { db } => {
            let qs = open(&db.db)?;
            for name in [POLL_QUEUE, DIFF_QUEUE, SYNC_QUEUE] {
                let n = qs.queue(name).len().map_err(failed)?;
                println!("{name:<13} {n}");
            }
            let dead = qs.dead_letters().map_err(failed)?;
            println!("{:<13} {}", "dead letters", dead.len());
        }
        QueueCommand::DeadLetters { db } => {
            let qs = open(&db.db)?;
            let dead = qs.dead_letters().map_err(failed)?;
            if dead.is_empty() {
                println!("no dead letters");
            }
            for d in dead {
                println!(
                    "{}  {}  after {} deliveries: {}",
                    d.id, d.queue, d.receives, d.reason
                );
                println!("    {}", d.body);
            }
        }
        QueueCommand::Replay { ids, all, db } => {
            let qs = open(&db.db)?;
            let ids = if all {
                qs.dead_letters()
                    .map_err(failed)?
                    .into_iter()
                    .map(|d| d.id)
                    .collect()
            } else {
                ids
            };
            let mut missing = Vec::new();
            for id in ids {
                if qs.replay_dead_letter(id).map_err(failed)? {
                    println!("replayed {id}");
                } else {
                    missing.push(id.to_string());
                }
            }
            if !missing.is_empty() {
                return Err(CliError::usage(format!(
                    "no dead letter with id {}",
                    missing.join(", ")
                )));
            }
        }
    }
    Ok(())
}
