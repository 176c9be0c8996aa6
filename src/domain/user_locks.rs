//! Per-user turns for writes that all lock the same document of that user (the
//! persona counter).
//!
//! Such transactions, run at once, only fight over that one document's lock:
//! Firestore locks what a transaction reads, the emulator makes a contended lock
//! wait ~2 s and then aborts, and every retry meets the same crowd again (100
//! concurrent creates of one user took minutes). Within one instance they take
//! turns here instead, each a few milliseconds; across instances the transaction
//! still keeps the data exact. An entry lives only while someone holds or waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

type Turns = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

#[derive(Clone, Default)]
pub struct UserLocks {
    turns: Turns,
}

/// A user's turn; the next writer of that user goes when it drops.
pub struct Turn {
    guard: Option<OwnedMutexGuard<()>>,
    turns: Turns,
    uid: String,
}

impl UserLocks {
    /// Waits for `uid`'s turn (in arrival order).
    pub async fn lock(&self, uid: &str) -> Turn {
        let lock = {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            turns.entry(uid.to_owned()).or_default().clone()
        };
        Turn {
            guard: Some(lock.lock_owned().await),
            turns: self.turns.clone(),
            uid: uid.to_owned(),
        }
    }

    /// Users with an entry (for tests).
    pub fn len(&self) -> usize {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the map holds it: nobody waits, so the entry goes.
        if turns.get(&self.uid).is_some_and(|l| Arc::strong_count(l) == 1) {
            turns.remove(&self.uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_writer_per_user_at_a_time_and_no_leftovers() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let locks = UserLocks::default();
        let inside: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (locks, inside) = (locks.clone(), inside.clone());
                tokio::spawn(async move {
                    let user = i % 2;
                    let _turn = locks.lock(["a", "b"][user]).await;
                    let now = inside[user].fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    inside[user].fetch_sub(1, Ordering::SeqCst);
                    now
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.ok(), Some(1), "one writer per user at a time");
        }
        assert!(locks.is_empty());
    }
}
