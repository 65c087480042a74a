//! The demo's retail world, generated from a seed: stores in UK towns, a catalogue whose sales
//! follow a long tail, the tills' stock at opening, and one trading day as a schedule of
//! events (baskets at the tills, returns, web orders for delivery or collection, a cancel or
//! two, a refund or two).
//!
//! Pure: the same [`WorldSpec`] gives the same world on every machine (integer arithmetic and
//! a local SplitMix64; no clock, no I/O). The driver (`super::driver`) plays the schedule in
//! real time against the emulators and decides, as the shop floor would, what physically
//! happens (a customer cannot buy what the shelf does not hold).

use rust_decimal::Decimal;

/// UK towns the stores are named after (source codes are the lower-case names).
pub const TOWNS: [&str; 24] = [
    "York",
    "Leeds",
    "Harrogate",
    "Durham",
    "Lincoln",
    "Chester",
    "Bath",
    "Exeter",
    "Norwich",
    "Kendal",
    "Ludlow",
    "Whitby",
    "Hexham",
    "Truro",
    "Ely",
    "Wells",
    "Ripon",
    "Salisbury",
    "Stamford",
    "Buxton",
    "Alnwick",
    "Frome",
    "Settle",
    "Richmond",
];

/// Zipf–Mandelbrot offset: weight of the SKU ranked `r` (1-based) is `1 / (r + OFFSET)`, so
/// about a fifth of the catalogue sells two thirds of the units and the tail sells a little.
const ZIPF_OFFSET: u64 = 10;
const WEIGHT_SCALE: u64 = 1_000_000_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldSpec {
    pub seed: u64,
    pub stores: usize,
    pub skus: usize,
    /// Length of the compressed trading day, milliseconds of real time.
    pub day_ms: i64,
}

impl Default for WorldSpec {
    fn default() -> Self {
        Self {
            seed: 42,
            stores: 10,
            skus: 2_000,
            day_ms: 180_000,
        }
    }
}

/// A shop with a till; its stock is a Commerce source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub name: String,
    /// The Commerce source code (lower-case name).
    pub source: String,
    /// Relative footfall (bigger towns sell more).
    pub footfall: u64,
}

/// A product: one POS variation, one Commerce simple product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    /// Shelf price in pence.
    pub price_pence: i64,
    /// Sales rank, 1 = best seller.
    pub rank: usize,
    /// Relative sales velocity (Zipf–Mandelbrot weight).
    pub weight: u64,
}

impl Product {
    /// The price as Commerce shows it (pounds, two decimals).
    pub fn price(&self) -> Decimal {
        Decimal::new(self.price_pence, 2)
    }
}

/// How a web customer gets the goods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebDelivery {
    /// Delivered by a carrier from whichever store Tillbridge routes the order to.
    Ship,
    /// Click and collect at this store (index into `World::stores`).
    Collect { store: usize },
}

/// A web order as the customer places it, with how the store that gets it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOrderSpec {
    /// Its number in the day (0-based).
    pub number: usize,
    /// (product index, units).
    pub lines: Vec<(usize, Decimal)>,
    pub delivery: WebDelivery,
    /// After the order reaches a till: when staff accept it, and when the goods leave
    /// (shipped, or collected), both from the moment the till shows it, in milliseconds.
    pub accept_after_ms: i64,
    pub handover_after_ms: i64,
    /// The customer cancels it once the store has accepted it (it never leaves the store).
    pub cancelled: bool,
    /// The customer sends it back after delivery and is refunded.
    pub refunded: bool,
}

/// One thing that happens during the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A basket rung up at a till: (product index, units) per line.
    Sale {
        store: usize,
        lines: Vec<(usize, Decimal)>,
    },
    /// A customer brings back something bought in store; it goes back on the shelf.
    Return {
        store: usize,
        product: usize,
        units: Decimal,
    },
    /// A web customer checks out (index into `World::web_orders`).
    WebOrder { order: usize },
    /// The customer of web order `order` cancels it (as soon as the store has accepted it).
    Cancel { order: usize },
    /// The customer of web order `order` returns the parcel at a store and is refunded (once
    /// it has shipped).
    Refund { order: usize },
}

/// An action at a moment of the compressed day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since the shops opened (real time).
    pub at_ms: i64,
    pub action: Action,
}

/// The whole world: who, what, how much, and the day's schedule (sorted by time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub spec: WorldSpec,
    pub stores: Vec<Store>,
    pub products: Vec<Product>,
    /// On hand at opening: `stock[store][product]`.
    pub stock: Vec<Vec<Decimal>>,
    /// Source items whose Commerce figure differs from the till at opening (last night's sync
    /// missed them): (store, product, what Commerce holds).
    pub commerce_stale: Vec<(usize, usize, Decimal)>,
    pub web_orders: Vec<WebOrderSpec>,
    pub events: Vec<Event>,
}

/// Counts of what the schedule holds (for the banner and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayCounts {
    pub baskets: usize,
    pub basket_units: Decimal,
    pub returns: usize,
    pub web_orders: usize,
    pub ship_orders: usize,
    pub collect_orders: usize,
    pub cancels: usize,
    pub refunds: usize,
}

/// SplitMix64: small, fast, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is negligible for the sizes used here).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = u64::try_from(hi - lo).unwrap_or(0) + 1;
        lo + i64::try_from(self.below(span)).unwrap_or(0)
    }
}

/// Picks an index with probability proportional to its weight.
#[derive(Debug, Clone)]
pub struct Weighted {
    cumulative: Vec<u64>,
}

impl Weighted {
    pub fn new(weights: impl IntoIterator<Item = u64>) -> Self {
        let mut total = 0u64;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total = total.saturating_add(w);
                total
            })
            .collect();
        Self { cumulative }
    }

    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        let x = rng.below(self.total());
        self.cumulative.partition_point(|c| *c <= x)
    }
}

const ADJECTIVES: [&str; 16] = [
    "Oak",
    "Linen",
    "Stoneware",
    "Copper",
    "Wool",
    "Enamel",
    "Rattan",
    "Cedar",
    "Slate",
    "Cotton",
    "Willow",
    "Brass",
    "Ceramic",
    "Walnut",
    "Jute",
    "Glass",
];
const NOUNS: [&str; 20] = [
    "Mug",
    "Tea Towel",
    "Candle",
    "Notebook",
    "Throw",
    "Bowl",
    "Planter",
    "Coaster Set",
    "Lantern",
    "Apron",
    "Tote Bag",
    "Vase",
    "Jug",
    "Cushion",
    "Tray",
    "Scarf",
    "Oven Glove",
    "Picture Frame",
    "Spoon Set",
    "Basket",
];

fn units(n: u64) -> Decimal {
    Decimal::from(n)
}

/// Baskets each store rings up in the day: a busy small shop's day for the full catalogue,
/// fewer for a small one (so a tiny test world is not sold out by lunchtime).
pub fn baskets_per_store(skus: usize) -> usize {
    (skus / 8).clamp(30, 240)
}

/// Generate the world.
pub fn generate(spec: WorldSpec) -> World {
    let mut rng = Rng::new(spec.seed ^ 0x7111_b71d_6e00_0001);
    let day = spec.day_ms.max(1_000);
    // Stores: the first towns, footfall from 3 to 10.
    let stores: Vec<Store> = (0..spec.stores)
        .map(|i| {
            let name = TOWNS
                .get(i)
                .map_or_else(|| format!("Store {}", i + 1), |t| (*t).to_owned());
            let source = name.to_lowercase().replace(' ', "_");
            Store {
                name,
                source,
                footfall: u64::try_from(rng.between(3, 10)).unwrap_or(5),
            }
        })
        .collect();
    // Products: rank = catalogue position shuffled, so SKU numbers do not give the rank away.
    let n = spec.skus.max(1);
    let mut ranks: Vec<usize> = (1..=n).collect();
    for i in (1..n).rev() {
        let j = usize::try_from(rng.below(u64::try_from(i + 1).unwrap_or(1))).unwrap_or(0);
        ranks.swap(i, j);
    }
    let products: Vec<Product> = ranks
        .iter()
        .enumerate()
        .map(|(i, &rank)| {
            let adjective = ADJECTIVES[usize::try_from(rng.below(16)).unwrap_or(0)];
            let noun = NOUNS[usize::try_from(rng.below(20)).unwrap_or(0)];
            Product {
                sku: format!("TB-{:05}", i + 1),
                name: format!("{adjective} {noun}"),
                price_pence: rng.between(250, 6_000) / 5 * 5 - 1,
                rank,
                weight: WEIGHT_SCALE / (u64::try_from(rank).unwrap_or(1) + ZIPF_OFFSET),
            }
        })
        .collect();
    let by_velocity = Weighted::new(products.iter().map(|p| p.weight));
    let by_footfall = Weighted::new(stores.iter().map(|s| s.footfall));
    let baskets = baskets_per_store(n) * stores.len();
    // Units the day will sell of each product per store, in thousandths (1.3 lines a basket,
    // 1.2 units a line), to size the opening stock.
    let total_weight = u128::from(by_velocity.total().max(1));
    let expected_milli = |p: &Product, footfall: u64| -> u64 {
        let footfall_total = u128::from(by_footfall.total().max(1));
        let milli = u128::try_from(baskets).unwrap_or(0) * 1_560 * u128::from(p.weight)
            / total_weight
            * u128::from(footfall)
            / footfall_total;
        u64::try_from(milli).unwrap_or(u64::MAX)
    };
    // Opening stock: two days of expected sales plus a little, a few empty shelves in the tail.
    let stock: Vec<Vec<Decimal>> = stores
        .iter()
        .map(|s| {
            products
                .iter()
                .map(|p| {
                    let expected = expected_milli(p, s.footfall);
                    if expected < 500 && rng.chance(120) {
                        return Decimal::ZERO;
                    }
                    units(expected * 2 / 1000 + rng.below(4) + 1)
                })
                .collect()
        })
        .collect();
    // Commerce starts from last night's figures: the same as the tills but for about one
    // source item in two hundred.
    let mut commerce_stale = Vec::new();
    for (si, row) in stock.iter().enumerate() {
        for (pi, on_hand) in row.iter().enumerate() {
            if rng.chance(5) {
                let delta = Decimal::from(rng.between(1, 3));
                let was = if rng.chance(500) || *on_hand < delta {
                    *on_hand + delta
                } else {
                    *on_hand - delta
                };
                commerce_stale.push((si, pi, was));
            }
        }
    }
    let mut events = Vec::new();
    // Baskets: busier around midday (the sum of two uniforms), 1–3 lines, mostly one unit.
    for _ in 0..baskets {
        let at = (rng.between(0, day) + rng.between(0, day)) / 2;
        let store = by_footfall.pick(&mut rng);
        let lines_n = if rng.chance(750) {
            1
        } else if rng.chance(800) {
            2
        } else {
            3
        };
        let mut lines: Vec<(usize, Decimal)> = Vec::new();
        for _ in 0..lines_n {
            let product = by_velocity.pick(&mut rng);
            let qty = if rng.chance(850) {
                1
            } else if rng.chance(700) {
                2
            } else {
                3
            };
            match lines.iter_mut().find(|(p, _)| *p == product) {
                Some((_, q)) => *q += units(qty),
                None => lines.push((product, units(qty))),
            }
        }
        events.push(Event {
            at_ms: at,
            action: Action::Sale { store, lines },
        });
    }
    // Returns at the till: a couple per store.
    for _ in 0..stores.len() * 2 {
        events.push(Event {
            at_ms: rng.between(day / 10, day * 95 / 100),
            action: Action::Return {
                store: by_footfall.pick(&mut rng),
                product: by_velocity.pick(&mut rng),
                units: Decimal::ONE,
            },
        });
    }
    // Web orders: four per store, placed until 80% of the day so they leave before closing;
    // two in five are click and collect.
    let web_n = (stores.len() * 4).max(6);
    let mut web_orders = Vec::with_capacity(web_n);
    let mut placed_at = Vec::with_capacity(web_n);
    for number in 0..web_n {
        let at = rng.between(day / 50, day * 80 / 100);
        let lines_n = if rng.chance(750) { 1 } else { 2 };
        let mut lines: Vec<(usize, Decimal)> = Vec::new();
        for _ in 0..lines_n {
            let product = by_velocity.pick(&mut rng);
            if lines.iter().all(|(p, _)| *p != product) {
                lines.push((product, units(if rng.chance(850) { 1 } else { 2 })));
            }
        }
        let delivery = if rng.chance(400) {
            WebDelivery::Collect {
                store: by_footfall.pick(&mut rng),
            }
        } else {
            WebDelivery::Ship
        };
        let accept_after_ms = rng.between(day / 100, day * 3 / 100);
        let handover_after_ms = accept_after_ms + rng.between(day * 3 / 100, day * 10 / 100);
        web_orders.push(WebOrderSpec {
            number,
            lines,
            delivery,
            accept_after_ms,
            handover_after_ms,
            cancelled: false,
            refunded: false,
        });
        placed_at.push(at);
        events.push(Event {
            at_ms: at,
            action: Action::WebOrder { order: number },
        });
    }
    // A cancel or two: customers who change their mind while the store prepares the order.
    let cancels = if stores.len() >= 5 { 2 } else { 1 };
    // A refund or two: shipped orders from the first half of the day, sent back later.
    let refunds = cancels;
    let mut order_by_time: Vec<usize> = (0..web_n).collect();
    order_by_time.sort_by_key(|&i| (placed_at[i], i));
    for (chosen_cancel, &i) in order_by_time.iter().skip(web_n / 3).enumerate() {
        if chosen_cancel == cancels {
            break;
        }
        let o = &mut web_orders[i];
        o.cancelled = true;
        // Keep it in the store long enough for the customer to change their mind.
        o.handover_after_ms = o.handover_after_ms.max(o.accept_after_ms + day / 10);
        events.push(Event {
            at_ms: placed_at[i] + o.accept_after_ms,
            action: Action::Cancel { order: i },
        });
    }
    let mut chosen_refund = 0;
    for &i in &order_by_time {
        if chosen_refund == refunds {
            break;
        }
        let o = &mut web_orders[i];
        if o.cancelled || o.delivery != WebDelivery::Ship {
            continue;
        }
        o.refunded = true;
        events.push(Event {
            at_ms: (placed_at[i] + day / 3).min(day * 95 / 100),
            action: Action::Refund { order: i },
        });
        chosen_refund += 1;
    }
    events.sort_by_key(|e| e.at_ms);
    World {
        spec,
        stores,
        products,
        stock,
        commerce_stale,
        web_orders,
        events,
    }
}

impl World {
    pub fn day_counts(&self) -> DayCounts {
        let mut c = DayCounts::default();
        for e in &self.events {
            match &e.action {
                Action::Sale { lines, .. } => {
                    c.baskets += 1;
                    c.basket_units += lines.iter().map(|(_, q)| *q).sum::<Decimal>();
                }
                Action::Return { .. } => c.returns += 1,
                Action::WebOrder { order } => {
                    c.web_orders += 1;
                    match self.web_orders[*order].delivery {
                        WebDelivery::Ship => c.ship_orders += 1,
                        WebDelivery::Collect { .. } => c.collect_orders += 1,
                    }
                }
                Action::Cancel { .. } => c.cancels += 1,
                Action::Refund { .. } => c.refunds += 1,
            }
        }
        c
    }

    /// Source items (store × product).
    pub fn stock_levels(&self) -> usize {
        self.stores.len() * self.products.len()
    }

    /// Units on the shelves at opening.
    pub fn units_on_hand(&self) -> Decimal {
        self.stock.iter().flatten().copied().sum()
    }

    /// The share of the day's basket units taken by the best-selling tenth of the catalogue,
    /// as a percentage (a display ratio).
    pub fn top_tenth_share_percent(&self) -> u64 {
        let cutoff = (self.products.len() / 10).max(1);
        let mut top = Decimal::ZERO;
        let mut all = Decimal::ZERO;
        for e in &self.events {
            if let Action::Sale { lines, .. } = &e.action {
                for (p, q) in lines {
                    all += *q;
                    if self.products[*p].rank <= cutoff {
                        top += *q;
                    }
                }
            }
        }
        if all.is_zero() {
            return 0;
        }
        u64::try_from((top * Decimal::from(100) / all).round().mantissa()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use super::*;

    fn default_world() -> World {
        generate(WorldSpec::default())
    }

    #[test]
    fn the_same_seed_gives_the_same_world_and_another_seed_another() {
        let a = default_world();
        let b = default_world();
        assert_eq!(a, b);
        let c = generate(WorldSpec {
            seed: 7,
            ..WorldSpec::default()
        });
        assert_ne!(a.events, c.events);
        assert_ne!(a.stock, c.stock);
    }

    #[test]
    fn the_default_world_is_ten_stores_in_uk_towns_and_two_thousand_skus() {
        let w = default_world();
        assert_eq!(w.stores.len(), 10);
        assert_eq!(w.products.len(), 2_000);
        assert_eq!(w.stock_levels(), 20_000);
        let sources: BTreeSet<&str> = w.stores.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(sources.len(), 10, "one source code per store");
        assert!(sources.iter().all(|s| {
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        }));
        assert_eq!(w.stores[0].name, "York");
        let skus: BTreeSet<&str> = w.products.iter().map(|p| p.sku.as_str()).collect();
        assert_eq!(skus.len(), 2_000, "SKUs are unique");
        let ranks: BTreeSet<usize> = w.products.iter().map(|p| p.rank).collect();
        assert_eq!(ranks, (1..=2_000).collect(), "every rank once");
    }

    #[test]
    fn sales_follow_a_long_tail() {
        let w = default_world();
        let mut sold = vec![Decimal::ZERO; w.products.len()];
        for e in &w.events {
            if let Action::Sale { lines, .. } = &e.action {
                for (p, q) in lines {
                    sold[*p] += *q;
                }
            }
        }
        // The best-selling tenth of the catalogue takes more than half the units ...
        let share = w.top_tenth_share_percent();
        assert!((50..=80).contains(&share), "top tenth sells {share}%");
        // ... the best seller sells far more than a median SKU, and much of the tail does not
        // sell at all today.
        let best = w.products.iter().position(|p| p.rank == 1).unwrap();
        let median = w.products.iter().position(|p| p.rank == 1_000).unwrap();
        assert!(
            sold[best] >= Decimal::from(40),
            "best seller: {}",
            sold[best]
        );
        assert!(sold[median] <= Decimal::from(3), "median: {}", sold[median]);
        let unsold = sold.iter().filter(|q| q.is_zero()).count();
        assert!(unsold > 500, "{unsold} SKUs sell nothing");
        // Velocity is monotone in rank.
        let mut by_rank: Vec<&Product> = w.products.iter().collect();
        by_rank.sort_by_key(|p| p.rank);
        assert!(by_rank.windows(2).all(|p| p[0].weight >= p[1].weight));
    }

    #[test]
    fn opening_stock_follows_velocity_and_the_tail_has_empty_shelves() {
        let w = default_world();
        let best = w.products.iter().position(|p| p.rank == 1).unwrap();
        let tail = w.products.iter().position(|p| p.rank == 2_000).unwrap();
        // Every shelf holds at least as many of the best seller as of the last SKU, and across
        // the chain several more per store (a quiet store holds two days of its own sales).
        for s in 0..w.stores.len() {
            assert!(
                w.stock[s][best] >= w.stock[s][tail],
                "{}: best {} tail {}",
                w.stores[s].name,
                w.stock[s][best],
                w.stock[s][tail]
            );
        }
        let total = |p: usize| w.stock.iter().map(|row| row[p]).sum::<Decimal>();
        let stores = Decimal::from(w.stores.len());
        assert!(
            total(best) > total(tail) + Decimal::from(5) * stores,
            "best {} tail {}",
            total(best),
            total(tail)
        );
        let empty = w.stock.iter().flatten().filter(|q| q.is_zero()).count();
        assert!(empty > 100 && empty < 5_000, "{empty} empty shelves");
        assert!(w.stock.iter().flatten().all(|q| *q >= Decimal::ZERO));
        // Commerce differs for a handful of source items only, never below zero.
        assert!(!w.commerce_stale.is_empty() && w.commerce_stale.len() < 200);
        for (s, p, q) in &w.commerce_stale {
            assert_ne!(*q, w.stock[*s][*p]);
            assert!(*q >= Decimal::ZERO);
        }
    }

    #[test]
    fn the_day_has_baskets_returns_web_orders_cancels_and_refunds_in_time_order() {
        let w = default_world();
        let c = w.day_counts();
        assert_eq!(c.baskets, 2_400);
        assert_eq!(c.returns, 20);
        assert_eq!(c.web_orders, 40);
        assert!(c.ship_orders > 10 && c.collect_orders > 5, "{c:?}");
        assert_eq!(c.cancels, 2);
        assert_eq!(c.refunds, 2);
        assert!(w.events.windows(2).all(|e| e[0].at_ms <= e[1].at_ms));
        assert!(
            w.events
                .iter()
                .all(|e| e.at_ms >= 0 && e.at_ms <= w.spec.day_ms)
        );
        // Cancelled orders stay in the store long enough; refunds are shipped orders only.
        for o in &w.web_orders {
            assert!(o.accept_after_ms < o.handover_after_ms);
            assert!(!(o.cancelled && o.refunded));
            if o.refunded {
                assert_eq!(o.delivery, WebDelivery::Ship);
            }
            if o.cancelled {
                assert!(o.handover_after_ms - o.accept_after_ms >= w.spec.day_ms / 10);
            }
            assert!(!o.lines.is_empty());
        }
        // Every refund comes after its order was placed.
        let placed = |n: usize| {
            w.events
                .iter()
                .find(|e| e.action == Action::WebOrder { order: n })
                .unwrap()
                .at_ms
        };
        for e in &w.events {
            if let Action::Refund { order } = e.action {
                assert!(e.at_ms > placed(order));
            }
        }
    }

    #[test]
    fn a_small_world_scales_down_and_keeps_every_kind_of_event() {
        let w = generate(WorldSpec {
            seed: 1,
            stores: 3,
            skus: 60,
            day_ms: 12_000,
        });
        let c = w.day_counts();
        assert_eq!(c.baskets, 90);
        assert_eq!(c.web_orders, 12);
        assert_eq!((c.cancels, c.refunds), (1, 1));
        assert!(c.ship_orders >= 2, "{c:?}");
        assert_eq!(w.stores[2].source, "harrogate");
        // More stores than towns: numbered.
        let big = generate(WorldSpec {
            stores: 30,
            skus: 10,
            ..WorldSpec::default()
        });
        assert_eq!(big.stores[29].name, "Store 30");
        assert_eq!(big.stores[29].source, "store_30");
    }

    #[test]
    fn weighted_picks_follow_the_weights() {
        let w = Weighted::new([1, 0, 3]);
        let mut rng = Rng::new(9);
        let mut seen = [0u32; 3];
        for _ in 0..4_000 {
            seen[w.pick(&mut rng)] += 1;
        }
        assert_eq!(seen[1], 0, "a zero weight is never picked");
        assert!(seen[2] > seen[0] * 2, "{seen:?}");
    }
}
