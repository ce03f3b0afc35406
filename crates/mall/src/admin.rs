//! `mall admin`: operator tools that work on a shop's data folder, running or not.

use std::{num::NonZeroUsize, path::PathBuf};

use anyhow::Context;
use chassis::{
    config::ChassisSettings,
    db::Database,
    dead_letters::{self, DlqError},
};
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
        #[command(flatten)]
        chassis: ChassisSettings,
    },
    /// The events consumer groups gave up on: list them, or replay one once its cause is
    /// fixed (the running service's relay puts it back on its topic).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
        /// The shop's data folder.
        #[arg(long, env = "MALL_DATA_DIR", default_value = "./data", global = true)]
        data_dir: PathBuf,
        #[command(flatten)]
        chassis: ChassisSettings,
    },
    /// Create an account. The password is read from MALL_NEW_USER_PASSWORD or, when that
    /// is unset, from standard input (asked for without echo on a terminal); never from
    /// the command line.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Give the account the admin role.
        #[arg(long)]
        admin: bool,
        /// Start a new shop in a data folder that holds none yet, with this account;
        /// without it, a folder with no shop is refused (a mistyped --data-dir).
        #[arg(long)]
        init: bool,
        /// The shop's data folder.
        #[arg(long, env = "MALL_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        #[command(flatten)]
        chassis: ChassisSettings,
    },
    /// Print the public keys (JWKS) of a token signing key: for services that read them
    /// from a file (MALL_JWKS_URL=file:///...) rather than over the network.
    Jwks {
        /// The signing key, an Ed25519 PKCS#8 PEM file (auth's).
        #[arg(long = "auth-signing-key-file", env = "MALL_AUTH_SIGNING_KEY_FILE")]
        signing_key_file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum DlqAction {
    /// Every dead letter of every service, newest first.
    List,
    /// Put one dead letter's event back on its topic for its group to handle again.
    Replay {
        /// The dead letter's id, as `dlq list` shows it.
        #[arg(value_name = "UUID")]
        id: uuid::Uuid,
    },
}

/// The services whose consumer groups can dead-letter events.
const CONSUMERS: [&str; 5] = [
    order::NAME,
    product::NAME,
    payment::NAME,
    delivery::NAME,
    mypage::NAME,
];

async fn dead_letters(
    data_dir: &std::path::Path,
    chassis: &ChassisSettings,
    action: DlqAction,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        Database::exists(&chassis.db, data_dir, auth::NAME).await?,
        "{} holds no shop: check --data-dir and --db",
        crate::shop::shop_location(data_dir, chassis)
    );
    let mut replayed = false;
    for service in CONSUMERS {
        // A service that never ran here has no dead letters.
        if !Database::exists(&chassis.db, data_dir, service).await? {
            continue;
        }
        let db = crate::shop::service_database(service, data_dir, chassis).await?;
        match &action {
            DlqAction::List => {
                for dead in dead_letters::list(&db).await? {
                    let replayed = dead
                        .replayed_at
                        .map_or("not replayed".to_owned(), |at| format!("replayed {at}"));
                    println!(
                        "{}  {}  {} {}/{}@{}  {} attempts, {replayed}\n    {}",
                        dead.id,
                        dead.failed_at,
                        dead.group,
                        dead.topic,
                        dead.partition,
                        dead.offset,
                        dead.attempts,
                        dead.error
                    );
                }
            }
            DlqAction::Replay { id } => match dead_letters::replay(&db, *id).await {
                Ok(dead) => {
                    println!("replayed {id}: {} goes back on {}", dead.group, dead.topic);
                    replayed = true;
                }
                Err(DlqError::NotFound(_)) => {}
                Err(error) => return Err(error.into()),
            },
        }
        db.close().await;
        if replayed {
            break;
        }
    }
    if let DlqAction::Replay { id } = action {
        anyhow::ensure!(
            replayed,
            "no dead letter with id {id} in {}",
            data_dir.display()
        );
    }
    Ok(())
}

pub async fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::Rebuild {
            view: View::Mypage,
            data_dir,
            chassis,
        } => {
            let db = crate::shop::service_database(mypage::NAME, &data_dir, &chassis).await?;
            let bus = crate::shop::connect_bus(&data_dir, &chassis).await?;
            let replayed = mypage::rebuild(&db, bus.as_ref()).await?;
            db.close().await;
            println!("my page rebuilt from {replayed} events and swapped in");
            Ok(())
        }
        Task::Check {
            data_dir,
            wait_secs,
            chassis,
        } => {
            let wait = std::time::Duration::from_secs(wait_secs);
            if crate::check::run(&data_dir, &chassis, wait).await? {
                Ok(())
            } else {
                anyhow::bail!("invariants violated")
            }
        }
        Task::Dlq {
            action,
            data_dir,
            chassis,
        } => dead_letters(&data_dir, &chassis, action).await,
        Task::Jwks { signing_key_file } => {
            let key = auth::SigningKey::load(&signing_key_file)?;
            println!("{}", serde_json::to_string_pretty(&key.jwks())?);
            Ok(())
        }
        Task::CreateUser {
            email,
            name,
            admin,
            init,
            data_dir,
            chassis,
        } => {
            anyhow::ensure!(
                init || Database::exists(&chassis.db, &data_dir, auth::NAME).await?,
                "{} holds no shop: check --data-dir and --db, or pass --init to start a new \
                 shop there with this account",
                crate::shop::shop_location(&data_dir, &chassis)
            );
            let password = match std::env::var("MALL_NEW_USER_PASSWORD") {
                Ok(password) => password,
                Err(_) => read_password(&email)?,
            };
            crate::shop::open_data_dir(&data_dir)?;
            let db = crate::shop::auth_database(&data_dir, &chassis).await?;
            let id = auth::register(
                &db,
                &auth::Passwords::new(NonZeroUsize::MIN),
                &email,
                &name,
                &password,
                admin,
                None,
            )
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

/// The new account's password from standard input: asked for, and not echoed, when that
/// is a terminal; else its first line.
fn read_password(email: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    // SAFETY: termios is plain data; tcgetattr fills it and fails only when fd 0 is no
    // terminal, which was checked.
    let mut echoing: libc::termios = unsafe { std::mem::zeroed() };
    if terminal {
        eprint!("password for {email}: ");
        std::io::stderr().flush()?;
        // SAFETY: as above; the settings are restored below before returning.
        unsafe {
            libc::tcgetattr(libc::STDIN_FILENO, &mut echoing);
            let mut silent = echoing;
            silent.c_lflag &= !libc::ECHO;
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &silent);
        }
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &echoing) };
        eprintln!();
    }
    read.context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
