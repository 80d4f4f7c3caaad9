//! The threads DKIM signatures are computed on: one per core, started on first use,
//! taking jobs from one queue. An RSA-2048 signature is ≈ 0.25 ms of CPU that must not
//! run on a reactor thread. On tokio's blocking pool every concurrent signature got a
//! thread of its own (twenty connections: up to twenty threads time-sliced over two
//! cores, each job a wake-up); here as many run at once as there are cores, and a busy
//! signer takes the next job from the queue without sleeping in between.

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

type Job = Box<dyn FnOnce() + Send>;

/// The signer threads (see the module documentation). They end when the pool is
/// dropped (the queue closes).
#[derive(Default)]
pub(crate) struct SignPool {
    queue: OnceLock<Option<crossbeam_channel::Sender<Job>>>,
}

/// The job did not run to its end: it panicked, or no signer thread could be started.
#[derive(Debug, thiserror::Error)]
#[error("the signing job did not finish")]
pub(crate) struct JobLost;

impl SignPool {
    /// Runs `f` on a signer thread and waits for its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobLost> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(f());
        });
        match self.queue.get_or_init(start) {
            Some(queue) => queue.send(job).map_err(|_| JobLost)?,
            // No thread could be started: tokio's blocking pool instead.
            None => drop(tokio::task::spawn_blocking(job)),
        }
        result.await.map_err(|_| JobLost)
    }
}

/// Starts one signer thread per core; `None` when not even one could be started.
fn start() -> Option<crossbeam_channel::Sender<Job>> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
    let mut started = 0;
    for i in 0..cores {
        let jobs = jobs.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("mailroom-dkim-{i}"))
            .spawn(move || {
                for job in jobs {
                    // A panicking job drops its reply (the caller sees `JobLost`);
                    // the thread goes on with the next.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            });
        match spawned {
            Ok(_) => started += 1,
            Err(e) => tracing::error!(error = %e, "could not start a DKIM signer thread"),
        }
    }
    (started > 0).then_some(queue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_run_on_at_most_one_thread_per_core_and_return_their_result() {
        let pool = Arc::new(SignPool::default());
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let jobs: Vec<_> = (0..12)
            .map(|i| {
                let (pool, now, most) = (pool.clone(), now.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(running, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                        (i, std::thread::current().name().map(str::to_string))
                    })
                    .await
                    .unwrap()
                })
            })
            .collect();
        for (i, job) in jobs.into_iter().enumerate() {
            let (n, thread) = job.await.unwrap();
            assert_eq!(n, i);
            assert!(thread.unwrap().starts_with("mailroom-dkim-"));
        }
        let cores = std::thread::available_parallelism().unwrap().get();
        let most = most.load(Ordering::SeqCst);
        assert!(
            most >= 1 && most <= cores,
            "{most} at once on {cores} cores"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_is_lost_alone() {
        let pool = SignPool::default();
        let lost = pool.run(|| -> u32 { panic!("bad key") }).await;
        assert!(lost.is_err());
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
