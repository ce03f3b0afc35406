//! Payment's part in the saga: charge once stock is reserved, refund when the order is
//! cancelled or rejected. They arrive on different topics, so either may come first: a
//! cancel that comes before the charge leaves a CANCELLED row, and the charge is then
//! skipped.

use std::time::Duration;

use chassis::{
    consumer::{Delivery, EventHandler, HandlerError},
    db::{self, Tx},
    outbox,
};
use contracts::{
    Event,
    events::{
        OrderCancelled, OrderRejected, PaymentAuthorized, PaymentDeclined, PaymentRefunded,
        StockReserved,
    },
};
use uuid::Uuid;

use crate::{
    NAME,
    metrics::{Outcome, PaymentMetrics},
    provider::{self, Verdict},
    store::{self, NewPayment},
};

pub struct Charges {
    pub limit: u64,
    pub latency: Duration,
    pub metrics: PaymentMetrics,
}

impl EventHandler for Charges {
    async fn handle(&self, conn: &mut Tx, delivery: &Delivery<'_>) -> Result<(), HandlerError> {
        let envelope = delivery.envelope;
        if envelope.is::<StockReserved>() {
            self.charge(conn, delivery, envelope.decode()?).await
        } else if envelope.is::<OrderCancelled>() {
            let cancelled: OrderCancelled = envelope.decode()?;
            refund(conn, delivery, cancelled.order_id, &self.metrics).await
        } else if envelope.is::<OrderRejected>() {
            // Rejected after a charge only when the saga's deadline passed meanwhile.
            let rejected: OrderRejected = envelope.decode()?;
            refund(conn, delivery, rejected.order_id, &self.metrics).await
        } else {
            Ok(())
        }
    }
}

impl Charges {
    async fn charge(
        &self,
        conn: &mut Tx,
        delivery: &Delivery<'_>,
        reserved: StockReserved,
    ) -> Result<(), HandlerError> {
        db::lock(conn, reserved.order_id).await?;
        if let Some(existing) = store::find(conn, reserved.order_id).await? {
            tracing::info!(order_id = %reserved.order_id, status = existing.status, "not charging again");
            return Ok(());
        }
        tokio::time::sleep(self.latency).await;
        let order_id = reserved.order_id;
        let answer = match provider::decide(reserved.amount, self.limit) {
            Verdict::Authorized => {
                let payment_id = Uuid::now_v7();
                store::insert(
                    conn,
                    NewPayment {
                        order_id,
                        payment_id: Some(payment_id),
                        customer_id: Some(reserved.customer_id),
                        amount: Some(reserved.amount),
                        status: "AUTHORIZED",
                        reason: None,
                    },
                )
                .await?;
                self.metrics.count_on_commit(conn, Outcome::Authorized);
                delivery.answer(
                    NAME,
                    order_id,
                    &PaymentAuthorized {
                        order_id,
                        payment_id,
                        amount: reserved.amount,
                    },
                )
            }
            Verdict::Declined(reason) => {
                store::insert(
                    conn,
                    NewPayment {
                        order_id,
                        payment_id: None,
                        customer_id: Some(reserved.customer_id),
                        amount: Some(reserved.amount),
                        status: "DECLINED",
                        reason: Some(&reason),
                    },
                )
                .await?;
                self.metrics.count_on_commit(conn, Outcome::Declined);
                delivery.answer(
                    NAME,
                    order_id,
                    &PaymentDeclined {
                        order_id,
                        amount: reserved.amount,
                        reason,
                    },
                )
            }
        };
        outbox::enqueue(conn, PaymentAuthorized::TOPIC, &answer).await?;
        Ok(())
    }
}

async fn refund(
    conn: &mut Tx,
    delivery: &Delivery<'_>,
    order_id: Uuid,
    metrics: &PaymentMetrics,
) -> Result<(), HandlerError> {
    db::lock(conn, order_id).await?;
    match store::find(conn, order_id).await? {
        None => {
            store::insert(
                conn,
                NewPayment {
                    order_id,
                    payment_id: None,
                    customer_id: None,
                    amount: None,
                    status: "CANCELLED",
                    reason: Some("order cancelled before payment"),
                },
            )
            .await?;
        }
        Some(payment) if payment.status == "AUTHORIZED" => {
            store::set_status(conn, order_id, "REFUNDED").await?;
            metrics.count_on_commit(conn, Outcome::Refunded);
            let refunded = PaymentRefunded {
                order_id,
                payment_id: payment
                    .payment_id
                    .ok_or_else(|| HandlerError::Failed("authorized payment without id".into()))?,
                amount: payment.amount.unwrap_or_default() as u64,
            };
            let envelope = delivery.answer(NAME, order_id, &refunded);
            outbox::enqueue(conn, PaymentRefunded::TOPIC, &envelope).await?;
        }
        Some(_) => {}
    }
    Ok(())
}
