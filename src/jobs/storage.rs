//! The job table as the job system sees it: its reads and writes are `db::jobs` (re-exported
//! here), and replicas wake each other through PostgreSQL's `LISTEN`/`NOTIFY`.

use std::time::Duration;

pub use crate::db::jobs::{Depth, WAKE_CHANNEL, depth, depth_by_kind, enqueue, enqueue_unique};

/// Forwards `NOTIFY paved_jobs` to this process's idle workers, reconnecting as needed.
pub async fn listen_for_jobs(url: String, wake: super::Wake) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut delay = Duration::from_millis(500);
    loop {
        match PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen(WAKE_CHANNEL).await {
                Ok(()) => {
                    delay = Duration::from_millis(500);
                    // A missed notification while reconnecting is covered by polling.
                    wake.all();
                    // One notification, one runner (it passes the wake on if it found one).
                    while listener.recv().await.is_ok() {
                        wake.one();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %crate::vocab::redact::redact(&e.to_string()), "LISTEN failed")
                }
            },
            Err(e) => {
                tracing::warn!(error = %crate::vocab::redact::redact(&e.to_string()), "job listener cannot connect")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
