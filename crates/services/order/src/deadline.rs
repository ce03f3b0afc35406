//! The saga's deadline: an order still PENDING this long after it was placed is rejected,
//! and the other services compensate on `OrderRejected` (stock released, a late charge
//! refunded, the delivery dropped).

use std::{sync::Arc, time::Duration};

use chassis::{
    ServiceRuntime,
    retry::Trouble,
    spans::{self, SpanKind},
};

use crate::{
    domain::{OrderCommand, RejectionCause},
    execute,
    metrics::OrderMetrics,
    store,
};

pub async fn reject_silent_sagas(
    rt: Arc<ServiceRuntime>,
    saga: Arc<OrderMetrics>,
    deadline: Duration,
) {
    let every = (deadline / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut trouble = Trouble::new("the saga deadline check");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = rt.shutdown.cancelled() => return,
        }
        match reject_expired(&rt, &saga, deadline).await {
            Ok(()) => trouble.succeeded(),
            // Tried again at the next period rather than after the backoff.
            Err(error) => {
                trouble.failed(&error);
            }
        }
    }
}

async fn reject_expired(
    rt: &ServiceRuntime,
    saga: &Arc<OrderMetrics>,
    deadline: Duration,
) -> Result<(), crate::CommandError> {
    let placed_before = chrono::Utc::now() - deadline;
    for order_id in store::pending_since(&rt.db, placed_before).await? {
        // A trace of its own: the compensation it starts is found by the order's id.
        let span = rt
            .tracer
            .start("reject silent saga", SpanKind::Internal, None);
        span.set(spans::CONVERSATION_ID, order_id.to_string());
        let reason = format!("no answer from the saga within {} s", deadline.as_secs());
        let rejected = span
            .scope(async {
                let mut tx = rt.db.begin_write().await?;
                execute(
                    &mut tx,
                    order_id,
                    OrderCommand::Reject {
                        cause: RejectionCause::Deadline,
                        reason,
                    },
                    span.context(),
                    None,
                    saga,
                )
                .await?;
                rt.commit(tx).await?;
                Ok::<_, crate::CommandError>(())
            })
            .await;
        if let Err(error) = &rejected {
            span.fail(error.to_string());
        }
        rejected?;
        tracing::warn!(%order_id, "saga deadline passed: order rejected");
    }
    Ok(())
}
