//! Catalogue and stock rules. Pure: no I/O, every value valid by construction.

use chassis::text::{Lines, TextError, clean};
/// Most units of one product the shop holds or moves at once.
pub const MAX_STOCK: u32 = 1_000_000;
/// Most units one order may ask for.
pub const MAX_QUANTITY: u32 = 1_000;
/// Highest price the catalogue accepts, in KRW.
pub const MAX_PRICE: u64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        clean(raw, 200, Lines::One)
            .map(ProductName)
            .map_err(|error| format!("name {error}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Lines of clean text, at most 2000 characters; it may be empty.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match clean(raw, 2_000, Lines::Many) {
            Ok(text) => Ok(Description(text)),
            Err(TextError::Empty) => Ok(Description(String::new())),
            Err(error) => Err(format!("description {error}")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A price in KRW: a positive whole number of won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price(u64);

impl Price {
    pub fn parse(raw: i64) -> Result<Self, String> {
        match u64::try_from(raw) {
            Ok(won @ 1..=MAX_PRICE) => Ok(Price(won)),
            _ => Err(format!("price must be between 1 and {MAX_PRICE} KRW")),
        }
    }

    pub fn won(self) -> u64 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    pub fn parse(raw: i64) -> Result<Self, String> {
        match u32::try_from(raw) {
            Ok(units @ 1..=MAX_QUANTITY) => Ok(Quantity(units)),
            _ => Err(format!("quantity must be between 1 and {MAX_QUANTITY}")),
        }
    }

    pub fn units(self) -> u32 {
        self.0
    }
}

/// A change to the stock on hand: units received (positive) or written off (negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockDelta(i64);

impl StockDelta {
    pub fn parse(raw: i64) -> Result<Self, String> {
        if raw == 0 {
            return Err("delta must not be zero".into());
        }
        if raw.unsigned_abs() > u64::from(MAX_STOCK) {
            return Err(format!(
                "delta must be between -{MAX_STOCK} and {MAX_STOCK}"
            ));
        }
        Ok(StockDelta(raw))
    }

    pub fn units(self) -> i64 {
        self.0
    }
}

/// Where a product's units are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    /// On hand and free to reserve: what the catalogue shows as `stock`.
    pub available: u32,
    /// Set aside for orders still in their saga.
    pub reserved: u32,
    pub sold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    #[error("insufficient stock: {available} available, {requested} requested")]
    Insufficient { available: u32, requested: u32 },
    #[error("stock would exceed {MAX_STOCK} units")]
    TooMuch,
    #[error("only {reserved} units are reserved, cannot sell or release {requested}")]
    NotReserved { reserved: u32, requested: u32 },
    #[error("only {sold} units are sold, cannot take back {requested}")]
    NotSold { sold: u32, requested: u32 },
}

/// Where a unit of stock is.
#[derive(Clone, Copy)]
enum Bucket {
    Available,
    Reserved,
    Sold,
}

impl Stock {
    pub fn new(available: u32) -> Result<Self, StockError> {
        if available > MAX_STOCK {
            return Err(StockError::TooMuch);
        }
        Ok(Stock {
            available,
            reserved: 0,
            sold: 0,
        })
    }

    /// Sets `quantity` aside for an order; never more than is available.
    pub fn reserve(self, quantity: Quantity) -> Result<Self, StockError> {
        self.shift(Bucket::Available, Bucket::Reserved, quantity)
    }

    /// A confirmed order's reserved units become sold.
    pub fn sell(self, quantity: Quantity) -> Result<Self, StockError> {
        self.shift(Bucket::Reserved, Bucket::Sold, quantity)
    }

    /// Reserved units of a rejected or cancelled order are available again.
    pub fn release(self, quantity: Quantity) -> Result<Self, StockError> {
        self.shift(Bucket::Reserved, Bucket::Available, quantity)
    }

    /// Sold units of a cancelled order come back and are available again.
    pub fn take_back(self, quantity: Quantity) -> Result<Self, StockError> {
        self.shift(Bucket::Sold, Bucket::Available, quantity)
    }

    /// Moves `quantity` units from one bucket to another; the total stays the same.
    fn shift(mut self, from: Bucket, to: Bucket, quantity: Quantity) -> Result<Self, StockError> {
        let (held, requested) = (*self.bucket(from), quantity.units());
        *self.bucket(from) = held.checked_sub(requested).ok_or(match from {
            Bucket::Available => StockError::Insufficient {
                available: held,
                requested,
            },
            Bucket::Reserved => StockError::NotReserved {
                reserved: held,
                requested,
            },
            Bucket::Sold => StockError::NotSold {
                sold: held,
                requested,
            },
        })?;
        *self.bucket(to) += requested;
        Ok(self)
    }

    fn bucket(&mut self, bucket: Bucket) -> &mut u32 {
        match bucket {
            Bucket::Available => &mut self.available,
            Bucket::Reserved => &mut self.reserved,
            Bucket::Sold => &mut self.sold,
        }
    }

    /// Receives or writes off units on hand; reserved units are not touched.
    pub fn adjust(self, delta: StockDelta) -> Result<Self, StockError> {
        let available = i64::from(self.available) + delta.units();
        if available < 0 {
            return Err(StockError::Insufficient {
                available: self.available,
                requested: delta.units().unsigned_abs() as u32,
            });
        }
        if available > i64::from(MAX_STOCK) {
            return Err(StockError::TooMuch);
        }
        Ok(Stock {
            available: available as u32,
            ..self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantity(units: i64) -> Quantity {
        Quantity::parse(units).unwrap()
    }

    #[test]
    fn reserving_moves_units_from_available_to_reserved() {
        let stock = Stock::new(10).unwrap().reserve(quantity(3)).unwrap();
        assert_eq!((stock.available, stock.reserved, stock.sold), (7, 3, 0));
    }

    #[test]
    fn reserving_more_than_is_available_is_refused_and_says_why() {
        let stock = Stock::new(2).unwrap();
        let error = stock.reserve(quantity(3)).unwrap_err();
        assert_eq!(
            error,
            StockError::Insufficient {
                available: 2,
                requested: 3
            }
        );
        assert_eq!(
            error.to_string(),
            "insufficient stock: 2 available, 3 requested"
        );
    }

    #[test]
    fn the_last_unit_can_be_reserved_and_then_nothing_more() {
        let stock = Stock::new(1).unwrap().reserve(quantity(1)).unwrap();
        assert_eq!(stock.available, 0);
        assert!(stock.reserve(quantity(1)).is_err());
    }

    #[test]
    fn selling_moves_reserved_units_to_sold_and_keeps_the_total() {
        let stock = Stock::new(5).unwrap().reserve(quantity(2)).unwrap();
        let sold = stock.sell(quantity(2)).unwrap();
        assert_eq!((sold.available, sold.reserved, sold.sold), (3, 0, 2));
        assert!(sold.sell(quantity(1)).is_err());
    }

    #[test]
    fn releasing_and_taking_back_make_units_available_and_keep_the_total() {
        let reserved = Stock::new(5).unwrap().reserve(quantity(2)).unwrap();
        let released = reserved.release(quantity(2)).unwrap();
        assert_eq!(
            (released.available, released.reserved, released.sold),
            (5, 0, 0)
        );
        assert!(released.release(quantity(1)).is_err());

        let sold = reserved.sell(quantity(2)).unwrap();
        let returned = sold.take_back(quantity(2)).unwrap();
        assert_eq!(
            (returned.available, returned.reserved, returned.sold),
            (5, 0, 0)
        );
        assert!(returned.take_back(quantity(1)).is_err());
    }

    #[test]
    fn adjusting_never_leaves_negative_or_excessive_stock() {
        let stock = Stock::new(5).unwrap();
        assert_eq!(
            stock
                .adjust(StockDelta::parse(-5).unwrap())
                .unwrap()
                .available,
            0
        );
        assert!(stock.adjust(StockDelta::parse(-6).unwrap()).is_err());
        assert_eq!(
            stock.adjust(StockDelta::parse(i64::from(MAX_STOCK)).unwrap()),
            Err(StockError::TooMuch)
        );
    }

    #[test]
    fn inputs_outside_their_range_are_refused() {
        for bad in [0, -1, 1_001, i64::MAX] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        assert!(Price::parse(0).is_err());
        assert!(Price::parse(-100).is_err());
        assert!(StockDelta::parse(0).is_err());
        assert!(StockDelta::parse(i64::MIN).is_err());
        assert!(ProductName::parse("   ").is_err());
        assert_eq!(ProductName::parse(" Mug ").unwrap().as_str(), "Mug");
    }
}
