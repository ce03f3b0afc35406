//! A delivery's states and what it answers to the customer's requests. Pure: no I/O.
//!
//! Delivery is the saga's pivot once an order is confirmed: only it knows whether the
//! parcel has arrived, so a cancel or an address change asked after confirmation is
//! granted or refused here, never decided by order alone.

/// Where a delivery stands; stored as its upper-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// The order is placed, not yet confirmed: the address is kept for when it is.
    Awaiting,
    /// On its way.
    Started,
    /// Handed over to the customer.
    Completed,
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Awaiting => "AWAITING",
            DeliveryStatus::Started => "STARTED",
            DeliveryStatus::Completed => "COMPLETED",
            DeliveryStatus::Cancelled => "CANCELLED",
        }
    }

    /// The status a stored name stands for; the table's check allows no other.
    pub fn parse(stored: &str) -> Option<Self> {
        [
            DeliveryStatus::Awaiting,
            DeliveryStatus::Started,
            DeliveryStatus::Completed,
            DeliveryStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == stored)
    }
}

/// Why a request is refused.
pub const DELIVERED: &str = "the parcel was already delivered";
pub const CANCELLED: &str = "the delivery was cancelled";

/// Whether a parcel in `status` can still be called back: `Err` with the reason when not.
/// A delivery already cancelled grants it again (a repeated request).
pub fn cancellation(status: DeliveryStatus) -> Result<DeliveryStatus, &'static str> {
    match status {
        DeliveryStatus::Completed => Err(DELIVERED),
        _ => Ok(DeliveryStatus::Cancelled),
    }
}

/// Whether a parcel in `status` can still be sent elsewhere: `Err` with the reason when not.
pub fn redirection(status: DeliveryStatus) -> Result<(), &'static str> {
    match status {
        DeliveryStatus::Awaiting | DeliveryStatus::Started => Ok(()),
        DeliveryStatus::Completed => Err(DELIVERED),
        DeliveryStatus::Cancelled => Err(CANCELLED),
    }
}

/// Whether an operator may mark a delivery in `status` as handed over; completing it
/// again is no change (`Ok(false)`).
pub fn completion(status: DeliveryStatus) -> Result<bool, DeliveryStatus> {
    match status {
        DeliveryStatus::Started => Ok(true),
        DeliveryStatus::Completed => Ok(false),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parcel_on_its_way_can_be_called_back_or_redirected() {
        assert_eq!(
            cancellation(DeliveryStatus::Started),
            Ok(DeliveryStatus::Cancelled)
        );
        assert_eq!(redirection(DeliveryStatus::Started), Ok(()));
    }

    #[test]
    fn a_delivered_parcel_refuses_every_request() {
        assert_eq!(cancellation(DeliveryStatus::Completed), Err(DELIVERED));
        assert_eq!(redirection(DeliveryStatus::Completed), Err(DELIVERED));
    }

    #[test]
    fn a_cancelled_delivery_goes_nowhere_and_cannot_be_completed() {
        assert_eq!(redirection(DeliveryStatus::Cancelled), Err(CANCELLED));
        assert_eq!(
            completion(DeliveryStatus::Cancelled),
            Err(DeliveryStatus::Cancelled)
        );
        assert_eq!(completion(DeliveryStatus::Completed), Ok(false));
        assert_eq!(completion(DeliveryStatus::Started), Ok(true));
    }

    #[test]
    fn stored_names_round_trip() {
        for status in [
            DeliveryStatus::Awaiting,
            DeliveryStatus::Started,
            DeliveryStatus::Completed,
            DeliveryStatus::Cancelled,
        ] {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::parse("LOST"), None);
    }
}
