//! Tasks the store starts on the node's runtime (snapshot sends, address lookups, asks of the
//! placement driver): owned by their starter and aborted with it, so none outlives a stopped
//! store holding its endpoint (and with it the node's port) until its own timeout.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::task::JoinSet;

pub(super) struct Background {
    runtime: Handle,
    tasks: JoinSet<()>,
}

impl Background {
    pub(super) fn new(runtime: Handle) -> Background {
        Background {
            runtime,
            tasks: JoinSet::new(),
        }
    }

    /// Starts `task`, after letting go of those that ended: the set holds the running ones.
    pub(super) fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        while self.tasks.try_join_next().is_some() {}
        self.tasks.spawn_on(task, &self.runtime);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::Background;

    #[tokio::test]
    async fn tasks_end_with_their_owner() {
        let mut background = Background::new(tokio::runtime::Handle::current());
        let (done_tx, done) = oneshot::channel::<()>();
        background.spawn(async move {
            let _ = done_tx.send(());
        });
        done.await.expect("a task runs");
        // It holds `held` until it is told to stop, which it never is.
        let (held, dropped) = oneshot::channel::<()>();
        background.spawn(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        drop(background);
        let outcome = tokio::time::timeout(Duration::from_secs(30), dropped).await;
        assert!(
            matches!(outcome, Ok(Err(_))),
            "the task still held what it owned after its owner was dropped"
        );
    }
}
