//! The thread a test server runs on: its own current-thread runtime, serving
//! until the owner stops it or drops it.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// A server's thread; dropping it stops the server and waits for the thread.
pub struct ServerThread {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `serve()` on a new thread named `name` until the handle is
    /// dropped (or `serve` returns). The future is made on that thread, inside
    /// its runtime, so it may register sockets with it.
    pub fn spawn<F, Fut>(name: &str, serve: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (shutdown, stop) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a test server's runtime");
                runtime.block_on(async move {
                    tokio::select! {
                        _ = stop => {}
                        _ = serve() => {}
                    }
                });
            })
            .expect("spawn a test server's thread");
        Self {
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
