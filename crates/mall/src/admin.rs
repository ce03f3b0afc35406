//! `mall admin`: operator tools that work on a shop's data folder, running or not.

use std::{io::BufRead, path::PathBuf};

use anyhow::Context;
use chassis::bus::embedded::EmbeddedLog;
use chassis::config::ChassisSettings;
use clap::{Subcommand, ValueEnum};

/// A read model that can be rebuilt from the log.
#[derive(ValueEnum, Clone, Copy)]
pub enum View {
    Mypage,
}

#[derive(Subcommand)]
pub enum Task {
    /// Rebuild a read model from the event log into a fresh table and swap it in, while
    /// the shop keeps running and the page keeps answering.
    Rebuild {
        view: View,
        /// The shop's data folder.
        #[arg(long, env = "MALL_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        #[command(flatten)]
        chassis: ChassisSettings,
    },
    /// Verify the shop's invariants (stock, payments, deliveries, my page) from every
    /// service's database, once the bus is drained. Prints each with its counts; exits
    /// non-zero on a violation.
    Check {
        /// The shop's data folder.
        #[arg(long, env = "MALL_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// How long to wait for the bus to drain, in seconds.
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
    /// Create an account. The password is read from MALL_NEW_USER_PASSWORD or, when that
    /// is unset, from the first line of standard input; never from the command line.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Give the account the admin role.
        #[arg(long)]
        admin: bool,
        /// The shop's data folder.
        #[arg(long, env = "MALL_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        #[command(flatten)]
        chassis: ChassisSettings,
    },
}

pub async fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::Rebuild {
            view: View::Mypage,
            data_dir,
            chassis,
        } => {
            let path = data_dir.join(format!("{}.db", mypage::NAME));
            anyhow::ensure!(
                path.exists(),
                "{} does not exist: has the shop run here?",
                path.display()
            );
            let db =
                chassis::runtime::open_service_database(&path, chassis.sqlite_synchronous).await?;
            let bus = EmbeddedLog::open(
                &data_dir.join("bus.db"),
                chassis.sqlite_synchronous,
                chassis.bus_partitions,
            )
            .await?;
            let replayed = mypage::rebuild(&db, &bus).await?;
            db.close().await;
            println!("my page rebuilt from {replayed} events and swapped in");
            Ok(())
        }
        Task::Check {
            data_dir,
            wait_secs,
        } => {
            if crate::check::run(&data_dir, std::time::Duration::from_secs(wait_secs)).await? {
                Ok(())
            } else {
                anyhow::bail!("invariants violated")
            }
        }
        Task::CreateUser {
            email,
            name,
            admin,
            data_dir,
            chassis,
        } => {
            let password = match std::env::var("MALL_NEW_USER_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("cannot read the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let db = crate::shop::auth_database(&data_dir, &chassis).await?;
            let id = auth::register(&db, &email, &name, &password, admin, None)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?
                .customer_id;
            db.close().await;
            let role = if admin { "admin" } else { "customer" };
            println!("created {role} {email} with id {id}");
            Ok(())
        }
    }
}
