//! Stock levels per POS item variation per location, with the instant they were true.
//!
//! Every stock observation is an **absolute level**, never an increment: Square counts,
//! file-drop rows and the other POS feeds are absolute, and absolute values make re-applying
//! a re-delivered batch harmless. [`StockBook`] keeps the newest level per (location,
//! variation) and says, for each observation, whether it moved the book or was stale — the
//! rule that makes late, duplicated and reordered deliveries safe.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ids::{PosLocationId, PosVariationId, Sku};
use super::time::Timestamp;

/// One stock level: how many units of a variation a location can sell, as of an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub location: PosLocationId,
    pub variation: PosVariationId,
    /// The POS's own SKU for the variation, when the POS reports one. Informational: the
    /// mapping (`core::mapping`), not this field, decides the Commerce SKU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_sku: Option<Sku>,
    /// Units available to sell (Square `IN_STOCK`). Decimal: some POS sell by weight. May be
    /// negative when a till oversold; the sync decides what Commerce gets.
    pub available: Decimal,
    /// When the POS last changed this level (Square `calculated_at`, a file's `as_of`).
    pub as_of: Timestamp,
}

impl StockLevel {
    /// The (location, variation) this level is about.
    pub fn key(&self) -> (PosLocationId, PosVariationId) {
        (self.location.clone(), self.variation.clone())
    }
}

/// What happened to one observation offered to a [`StockBook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockApply {
    /// First level seen for this key.
    New,
    /// Newer than the book's level, and a different quantity.
    Changed,
    /// Newer or same instant, same quantity (a re-delivery or a no-op change).
    Unchanged,
    /// Older than the level the book holds: ignored (a late or reordered delivery).
    Stale,
}

/// The newest known level per (location, variation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockBook {
    levels: BTreeMap<PosLocationId, BTreeMap<PosVariationId, StockLevel>>,
}

impl StockBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Offer one observation. A level replaces the held one only if its `as_of` is not
    /// older; at the same instant a different quantity wins (the later delivery is taken as
    /// the POS's correction) and is reported as `Changed`.
    pub fn apply(&mut self, level: StockLevel) -> StockApply {
        let per_location = self.levels.entry(level.location.clone()).or_default();
        match per_location.get(&level.variation) {
            None => {
                per_location.insert(level.variation.clone(), level);
                StockApply::New
            }
            Some(held) if level.as_of < held.as_of => StockApply::Stale,
            Some(held) if held.available == level.available => {
                let as_of = level.as_of.max(held.as_of);
                if let Some(h) = per_location.get_mut(&level.variation) {
                    h.as_of = as_of;
                }
                StockApply::Unchanged
            }
            Some(_) => {
                per_location.insert(level.variation.clone(), level);
                StockApply::Changed
            }
        }
    }

    pub fn get(&self, location: &PosLocationId, variation: &PosVariationId) -> Option<&StockLevel> {
        self.levels.get(location).and_then(|m| m.get(variation))
    }

    /// Every held level, by location then variation.
    pub fn iter(&self) -> impl Iterator<Item = &StockLevel> {
        self.levels.values().flat_map(BTreeMap::values)
    }

    pub fn len(&self) -> usize {
        self.levels.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn level(var: &str, qty: Decimal, ms: i64) -> StockLevel {
        StockLevel {
            location: PosLocationId::parse("L1").unwrap(),
            variation: PosVariationId::parse(var).unwrap(),
            pos_sku: None,
            available: qty,
            as_of: Timestamp::from_millis(ms),
        }
    }

    #[test]
    fn older_observation_never_overwrites_a_newer_one() {
        let mut book = StockBook::new();
        assert_eq!(book.apply(level("V1", dec!(5), 2000)), StockApply::New);
        assert_eq!(book.apply(level("V1", dec!(9), 1000)), StockApply::Stale);
        assert_eq!(
            book.apply(level("V1", dec!(5), 2000)),
            StockApply::Unchanged
        );
        assert_eq!(book.apply(level("V1", dec!(4), 3000)), StockApply::Changed);
        let held = book.get(
            &level("V1", dec!(0), 0).location,
            &level("V1", dec!(0), 0).variation,
        );
        assert_eq!(held.map(|l| l.available), Some(dec!(4)));
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn reordered_delivery_ends_in_the_same_book() {
        let a = [
            level("V1", dec!(1), 1),
            level("V1", dec!(2), 2),
            level("V2", dec!(7), 1),
        ];
        let mut forward = StockBook::new();
        let mut backward = StockBook::new();
        for l in a.iter().cloned() {
            forward.apply(l);
        }
        for l in a.iter().rev().cloned() {
            backward.apply(l);
        }
        assert_eq!(forward, backward);
    }

    proptest::proptest! {
        /// Any delivery order of observations with distinct instants ends in the same book,
        /// holding for each variation the observation with the latest `as_of`.
        #[test]
        fn any_delivery_order_keeps_the_newest_level(
            obs in proptest::collection::btree_map((0u8..4, 0i64..50), 0i64..20, 1..30),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let levels: Vec<StockLevel> = obs
                .iter()
                .map(|((v, ms), q)| level(&format!("V{v}"), Decimal::from(*q), *ms))
                .collect();
            let mut shuffled = levels.clone();
            // A deterministic shuffle from the seed (Fisher-Yates with an LCG).
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let j = (state >> 33) as usize % (i + 1);
                shuffled.swap(i, j);
            }
            let mut a = StockBook::new();
            let mut b = StockBook::new();
            for l in levels.iter().cloned() {
                a.apply(l);
            }
            for l in shuffled {
                b.apply(l);
            }
            proptest::prop_assert_eq!(&a, &b);
            for held in a.iter() {
                let newest = levels
                    .iter()
                    .filter(|l| l.variation == held.variation)
                    .max_by_key(|l| l.as_of)
                    .map(|l| (l.available, l.as_of));
                proptest::prop_assert_eq!(Some((held.available, held.as_of)), newest);
            }
        }
    }
}
