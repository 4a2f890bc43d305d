//! How the writer and the audit thread take a batch: the job that woke them and what is queued
//! behind it, so that one fsync serves every request waiting at that moment. Nothing waits for
//! more jobs to come: BENCHMARKS.md ("GetSessionToken: one write per MFA attempt, one audit
//! thread") measured a pause for company, and it lost on a quiet machine.

use std::sync::mpsc::Receiver;

/// `first`, then the jobs already queued, at most `max` in all.
pub(crate) fn take<J>(first: J, jobs: &Receiver<J>, max: usize) -> Vec<J> {
    let mut batch = vec![first];
    while batch.len() < max {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_what_is_queued_up_to_max_and_the_rest_waits() {
        let (tx, rx) = std::sync::mpsc::channel();
        for n in 1..6 {
            tx.send(n).unwrap();
        }
        assert_eq!(take(0, &rx, 3), [0, 1, 2]);
        assert_eq!(take(9, &rx, 10), [9, 3, 4, 5]);
        assert_eq!(take(7, &rx, 10), [7]);
    }
}
