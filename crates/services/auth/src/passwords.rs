//! Password hashing on a bounded pool. Argon2 is slow and memory-hard on purpose, so a
//! burst of logins must not start a hash each: at most `slots` run at once, each on a
//! blocking thread, and a request that finds every slot taken is refused at once (503)
//! rather than queued behind the others.

use std::{
    num::NonZeroUsize,
    sync::{Arc, LazyLock},
};

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use crate::domain::Password;

/// Argon2id with m=12 MiB, t=3, p=1: one of OWASP's equivalent minimums, as costly to
/// guess against as the crate's default (19 MiB, 2 passes) but with a third less memory
/// per hash, which is what concurrent logins multiply. Hashes made with other parameters
/// still verify: each PHC string carries its own.
fn argon2() -> Argon2<'static> {
    const MEMORY_KIB: u32 = 12 * 1024;
    const PASSES: u32 = 3;
    const LANES: u32 = 1;
    let params =
        Params::new(MEMORY_KIB, PASSES, LANES, None).expect("OWASP's parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checked against when the email is unknown, so that the answer takes as long as for a
/// wrong password and does not tell which emails have accounts.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| {
    argon2()
        .hash_password(b"decoy password, never valid")
        .expect("hashing a constant works")
        .to_string()
});

#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    #[error("too many password checks are running; retry in a moment")]
    Busy,
    #[error("hashing the password failed: {0}")]
    Failed(String),
}

/// The pool every password hash and check of the service goes through.
#[derive(Clone)]
pub struct Passwords {
    slots: Arc<Semaphore>,
}

impl Passwords {
    pub fn new(slots: NonZeroUsize) -> Self {
        Passwords {
            slots: Arc::new(Semaphore::new(slots.get())),
        }
    }

    /// The PHC string of a new hash of `password`.
    pub async fn hash(&self, password: Password) -> Result<String, HashingError> {
        self.run(move || {
            argon2()
                .hash_password(password.expose().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| HashingError::Failed(error.to_string()))
        })
        .await
    }

    /// Whether `password` is the one `stored` was made from; with no stored hash (an
    /// unknown account) a decoy is checked, as costly as a real one, and it is not.
    pub async fn matches(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashingError> {
        self.run(move || {
            let hash = stored.as_deref().unwrap_or(&DECOY_HASH);
            let matches = argon2().verify_password(password.as_bytes(), hash).is_ok();
            Ok(stored.is_some() && matches)
        })
        .await
    }

    /// Runs `hashing` on a blocking thread when a slot is free. The slot is taken before
    /// the thread is asked for, so a request dropped earlier starts nothing, and it is
    /// held until the hash ends, so a request dropped later still counts until then.
    async fn run<T: Send + 'static>(
        &self,
        hashing: impl FnOnce() -> Result<T, HashingError> + Send + 'static,
    ) -> Result<T, HashingError> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashingError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let result = hashing();
            drop(slot);
            result
        })
        .await
        .map_err(|error| HashingError::Failed(error.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;

    fn password(raw: &str) -> Password {
        Password::parse(raw, &Email::parse("kim@example.com").unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_hash_meets_owasps_minimum_and_verifies() {
        let passwords = Passwords::new(NonZeroUsize::MIN);
        let hash = passwords.hash(password("long enough pass")).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"),
            "{hash}"
        );
        let check = |raw: &str| passwords.matches(raw.into(), Some(hash.clone()));
        assert!(check("long enough pass").await.unwrap());
        assert!(!check("another password").await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_with_the_former_parameters_still_verify() {
        let former = Argon2::default()
            .hash_password(b"long enough pass")
            .unwrap()
            .to_string();
        assert!(former.contains("m=19456,t=2,p=1"), "{former}");
        let passwords = Passwords::new(NonZeroUsize::MIN);
        let check = |raw: &str| passwords.matches(raw.into(), Some(former.clone()));
        assert!(check("long enough pass").await.unwrap());
        assert!(!check("another password").await.unwrap());
    }

    #[tokio::test]
    async fn no_account_never_matches() {
        let passwords = Passwords::new(NonZeroUsize::MIN);
        let decoy = "decoy password, never valid";
        assert!(!passwords.matches(decoy.into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_and_frees_its_slot_when_a_hash_ends() {
        let passwords = Passwords::new(NonZeroUsize::MIN);
        let (started, hashing) = std::sync::mpsc::channel::<()>();
        let (finish, until) = std::sync::mpsc::channel::<()>();
        let running = {
            let passwords = passwords.clone();
            tokio::spawn(async move {
                passwords
                    .run(move || {
                        started.send(()).unwrap();
                        until.recv().unwrap();
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || hashing.recv().unwrap())
            .await
            .unwrap();
        assert!(matches!(
            passwords.matches("a guess!".into(), None).await,
            Err(HashingError::Busy)
        ));
        // The request behind the running hash is gone; its hash still holds the slot.
        running.abort();
        assert!(matches!(
            passwords.matches("a guess!".into(), None).await,
            Err(HashingError::Busy)
        ));
        finish.send(()).unwrap();
        let freed = async {
            loop {
                match passwords.matches("a guess!".into(), None).await {
                    Err(HashingError::Busy) => tokio::task::yield_now().await,
                    answer => return answer,
                }
            }
        };
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), freed).await;
        assert!(!answer.unwrap().unwrap());
    }
}
