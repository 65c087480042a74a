//! Magento's MSI test vectors (`shared/vectors/msi/`, FORMAT.md) as data, and a runner that
//! executes them through any [`OpExecutor`].
//!
//! * [`parse_case`] / [`parse_fixtures`] turn the JSON files into typed [`Op`]s and [`Check`]s
//!   (aliases, inline expects, `rest` forms, `derived` and notes kept). An op or check kind the
//!   parser does not know becomes [`OpKind::Unknown`] / [`Query::Unknown`], which the runner
//!   reports as a failure naming it — never a silent skip.
//! * [`run_case`] applies FORMAT §1.1's order (config, fixtures, config again, setup with
//!   inline expects, checks), binds aliases and captures, and compares with FORMAT's rules:
//!   numbers to 4 decimals, loose `assertEquals` (`8.5 == "8.5000"`, `1 == true`), strings
//!   exactly, subset matching for `match: "contains"` and `items_contain`.
//! * [`OpExecutor`] is what executes: [`ModelExecutor`] runs everything in-process against
//!   [`Inventory`] (ops and checks with a `rest` form go through [`webapi::dispatch`]); an HTTP
//!   runner implements the same trait against the emulator and can reuse
//!   [`rest_request_for_op`], [`rest_request_for_check`] and [`check_value_from_rest`].
//!
//! Nothing here reads files: the caller passes the parsed JSON.

// Failures are rich, cold-path reports (raw and rendered message, REST body); boxing them
// would only add noise to every executor.
#![allow(clippy::result_large_err)]

mod model_executor;

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::num;
use super::webapi::{RestRequest, RestResponse};

pub use model_executor::ModelExecutor;

/// A stock id in a vector: a number, or an alias bound when a fixture created the stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdOrAlias {
    /// A literal id.
    Id(i64),
    /// An alias (`"stk2"`).
    Alias(String),
}

impl IdOrAlias {
    fn parse(v: &Value) -> Result<Self, String> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .map(Self::Id)
                .ok_or_else(|| format!("stock id {n} is not an integer")),
            Value::String(s) => Ok(s
                .parse::<i64>()
                .map(Self::Id)
                .unwrap_or_else(|_| Self::Alias(s.clone()))),
            other => Err(format!("stock id {other} is neither a number nor an alias")),
        }
    }

    /// The id, once aliases are resolved.
    pub fn id(&self) -> Option<i64> {
        match self {
            Self::Id(i) => Some(*i),
            Self::Alias(_) => None,
        }
    }
}

impl fmt::Display for IdOrAlias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(i) => write!(f, "{i}"),
            Self::Alias(a) => write!(f, "{a}"),
        }
    }
}

/// The HTTP form a Magento test used (`rest` object on an op or check, or a `rest_call`).
#[derive(Debug, Clone, PartialEq)]
pub struct RestSpec {
    /// Method.
    pub method: String,
    /// Path as sent (`{order_id}` = entity id of the referenced order).
    pub path: String,
    /// Body, when the test sent one.
    pub body: Option<Value>,
    /// Other keys (`response_item`, `asserted_field`, `field`).
    pub extra: Map<String, Value>,
}

impl RestSpec {
    fn parse(v: &Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("rest is not an object")?;
        let mut extra = obj.clone();
        let method = extra
            .remove("method")
            .and_then(|m| m.as_str().map(str::to_owned))
            .ok_or("rest.method missing")?;
        let path = extra
            .remove("path")
            .and_then(|m| m.as_str().map(str::to_owned))
            .ok_or("rest.path missing")?;
        let body = extra.remove("body");
        Ok(Self {
            method,
            path,
            body,
            extra,
        })
    }
}

/// `expect_error` (FORMAT §3).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExpectedError {
    /// `http_status`
    pub http_status: Option<u16>,
    /// `message` (raw, with `%placeholders`)
    pub message: Option<String>,
    /// `parameters`
    pub parameters: Option<Value>,
    /// `body` (the entire REST error body)
    pub body: Option<Value>,
    /// `exception` (PHP class)
    pub exception: Option<String>,
}

impl ExpectedError {
    fn parse(v: &Value) -> Self {
        Self {
            http_status: v
                .get("http_status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok()),
            message: v.get("message").and_then(Value::as_str).map(str::to_owned),
            parameters: v.get("parameters").cloned(),
            body: v.get("body").cloned(),
            exception: v
                .get("exception")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// What an op must do (FORMAT §3). Without `expect_error` an op must succeed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpExpectation {
    /// `expect_ok`
    pub ok: Option<bool>,
    /// `expect_error`
    pub error: Option<ExpectedError>,
    /// `expect_result`
    pub result: Option<Value>,
    /// `expect_cart_item_qty`
    pub cart_item_qty: Option<Value>,
}

/// An op with its common keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// The op name as written (`save_source_items`).
    pub name: String,
    /// What it does.
    pub kind: OpKind,
    /// Its expectations.
    pub expect: OpExpectation,
    /// The HTTP form the test used.
    pub rest: Option<RestSpec>,
    /// `via`
    pub via: Option<String>,
    /// `note`
    pub note: Option<String>,
    /// `derived`
    pub derived: bool,
    /// The op as written.
    pub raw: Value,
}

/// A document line of `invoice` / `ship` / `refund`.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSpec {
    /// SKU (or, with `parent_sku`, a child under a parent).
    pub sku: Option<String>,
    /// The parent SKU (`order_item.parent_sku`).
    pub parent_sku: Option<String>,
    /// Quantity (everything left when absent).
    pub qty: Option<Decimal>,
}

/// An item of `place_order`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceItemSpec {
    /// The ordered SKU.
    pub sku: String,
    /// Quantity.
    pub qty: Option<Decimal>,
    /// Configurable child.
    pub child_sku: Option<String>,
    /// Bundle option quantities per bundle.
    pub bundle_options_qty: Vec<(String, Decimal)>,
    /// Bundle selections (default quantities).
    pub bundle_selections: Vec<String>,
    /// Grouped children.
    pub child_skus: Vec<String>,
}

/// An item of `create_order`.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedItemSpec {
    /// SKU.
    pub sku: String,
    /// Quantity.
    pub qty: Decimal,
    /// Stored `product_type`.
    pub product_type: String,
    /// Configurable child.
    pub child_sku: Option<String>,
}

/// The ops of FORMAT §2.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum OpKind {
    ApplyFixture {
        fixture: String,
    },
    Noop,
    CreateWebsite {
        code: String,
        store_code: Option<String>,
    },
    DeleteWebsite {
        code: String,
    },
    CreateSource {
        fields: Map<String, Value>,
    },
    UpdateSource {
        source_code: String,
        fields: Map<String, Value>,
    },
    CreateStock {
        stock_id: IdOrAlias,
        name: Option<String>,
        sales_channels: Option<Vec<Value>>,
        alias: Option<String>,
    },
    DeleteStock {
        stock_id: IdOrAlias,
    },
    SaveStockSourceLinks {
        links: Vec<(IdOrAlias, String, i64)>,
    },
    DeleteStockSourceLinks {
        links: Vec<(IdOrAlias, String)>,
    },
    AssignSalesChannels {
        stock_id: IdOrAlias,
        websites: Vec<String>,
        append: bool,
    },
    CreateProduct {
        spec: Map<String, Value>,
    },
    UpdateLegacyStockItem {
        sku: String,
        fields: Map<String, Value>,
    },
    AssignProductsToWebsites {
        skus: Vec<String>,
        websites: Vec<String>,
        replace: bool,
    },
    RenameProductSku {
        from: String,
        to: String,
    },
    SaveSourceItems {
        items: Vec<Value>,
    },
    ResaveSourceItems {
        sku: String,
    },
    DeleteSourceItems {
        items: Vec<(String, String)>,
    },
    DecrementSourceItems {
        items: Vec<(String, String, Decimal)>,
    },
    BulkAssignSources {
        skus: Vec<String>,
        source_codes: Vec<String>,
    },
    BulkUnassignSources {
        skus: Vec<String>,
        source_codes: Vec<String>,
    },
    BulkInventoryTransfer {
        skus: Vec<String>,
        origin: String,
        destination: String,
        unassign: bool,
    },
    SetConfig {
        scope: String,
        path: String,
        value: String,
    },
    UpdateStockItemConfig {
        sku: String,
        stock_id: Option<IdOrAlias>,
        fields: Map<String, Value>,
    },
    AppendReservations {
        reservations: Vec<Value>,
    },
    InsertReservationRow {
        stock_id: IdOrAlias,
        sku: String,
        quantity: Decimal,
        metadata: Option<String>,
    },
    DeleteReservations {
        event_type: Option<String>,
        last: bool,
    },
    CreateCompensation {
        argument: String,
    },
    Reindex {
        stock_ids: Option<Vec<IdOrAlias>>,
    },
    ProcessQueue {
        consumer: String,
        max_messages: Option<usize>,
    },
    LegacyRevertProductsSale {
        website: String,
        items: Vec<(String, Decimal)>,
    },
    LegacyBackItemQty {
        website: String,
        sku: String,
        qty: Decimal,
    },
    CreateCart {
        cart: String,
        reserved_order_id: Option<String>,
        website: Option<String>,
        store: Option<String>,
    },
    AddToCart {
        cart: String,
        new_cart: bool,
        website: Option<String>,
        store: Option<String>,
        sku: String,
        qty: Decimal,
    },
    PlaceOrder {
        order: String,
        cart: Option<String>,
        website: Option<String>,
        store: Option<String>,
        items: Vec<PlaceItemSpec>,
    },
    CreateOrder {
        order: String,
        increment_id: String,
        state: String,
        website: String,
        via: String,
        items: Vec<SeedItemSpec>,
    },
    PlaceExistingOrder {
        order: String,
    },
    SetOrderItemSku {
        order: String,
        item: String,
        sku: String,
    },
    Invoice {
        order: String,
        items: Option<Vec<LineSpec>>,
        persist: bool,
    },
    Ship {
        shipment: Option<String>,
        order: String,
        items: Option<Vec<LineSpec>>,
        source_code: Option<String>,
    },
    Cancel {
        order: String,
    },
    Refund {
        creditmemo: Option<String>,
        order: String,
        items: Option<Vec<LineSpec>>,
        return_to_stock: Vec<String>,
    },
    ResaveCreditmemo {
        creditmemo: String,
    },
    Expect {
        checks: Vec<Check>,
    },
    Capture {
        name: String,
        check: Box<Check>,
    },
    RestCall,
    /// An op kind this parser does not know: the runner fails the case naming it.
    Unknown {
        name: String,
    },
}

/// The check kinds of FORMAT §4.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Query {
    SalableQty {
        sku: String,
        stock_id: IdOrAlias,
    },
    IsSalable {
        sku: String,
        stock_id: IdOrAlias,
    },
    IsSalableForRequestedQty {
        sku: String,
        stock_id: IdOrAlias,
        qty: Decimal,
    },
    StockIndex {
        sku: String,
        stock_id: IdOrAlias,
    },
    SourceItemQty {
        sku: String,
        source_code: String,
    },
    SourceItemStatus {
        sku: String,
        source_code: String,
    },
    SourceCodesForSku {
        sku: String,
    },
    SourceItemsList {
        args: Value,
    },
    StockSourceLinksList {
        args: Value,
    },
    SourcesAssignedToStock {
        stock_id: IdOrAlias,
    },
    ReservationsSum {
        sku: String,
        stock_id: IdOrAlias,
    },
    ReservationsCount {
        sku: String,
    },
    ReservationsExist {
        sku: String,
    },
    LastReservationMetadata,
    OrderItemQtyBackordered {
        order: String,
        sku: String,
    },
    OrderStatusChanged {
        order: String,
    },
    Shipment {
        shipment: String,
    },
    CheckQuoteItemQty {
        sku: String,
        website: String,
        item_qty: Decimal,
        qty_to_check: Decimal,
        orig_qty: Decimal,
    },
    SourceSelection {
        stock_id: IdOrAlias,
        algorithm: String,
        items: Vec<(String, Decimal)>,
    },
    SourceSelectionForSortedSources {
        stock_id: IdOrAlias,
        items: Vec<(String, Decimal)>,
        sorted_sources: Vec<String>,
    },
    InconsistenciesCount {
        bunch_size: usize,
    },
    InconsistencyQty {
        sku: String,
    },
    InconsistenciesEachBunchEmpty {
        bunch_size: usize,
    },
    ResolveStock {
        channel_type: String,
        code: String,
    },
    StockSalesChannels {
        stock_id: IdOrAlias,
    },
    AssignedStockIdForWebsite {
        code: String,
    },
    IsSingleSourceMode,
    /// A check kind this parser does not know.
    Unknown {
        name: String,
    },
}

/// How a check compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// `equals` (loose).
    Equals(Value),
    /// `not_equals`.
    NotEquals(Value),
    /// `equals_capture`.
    EqualsCapture(String),
    /// `contains`.
    Contains(Vec<Value>),
    /// `not_contains`.
    NotContains(Vec<Value>),
    /// `contains_once`.
    ContainsOnce(Vec<Value>),
    /// `items_contain`.
    ItemsContain(Vec<Value>),
    /// `errors` (exact list for requested-qty checks).
    Errors(Vec<Value>),
    /// `error`: the query must fail.
    Error(ExpectedError),
    /// `match: "contains"` with `equals`: subset match.
    MatchContains(Value),
}

/// A check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The kind name as written.
    pub kind_name: String,
    /// The kind's arguments as written.
    pub args: Value,
    /// What is queried.
    pub query: Query,
    /// How it compares.
    pub comparisons: Vec<Comparison>,
    /// `field` (dot path).
    pub field: Option<String>,
    /// The HTTP form the test used.
    pub rest: Option<RestSpec>,
    /// `derived`
    pub derived: bool,
}

impl Check {
    /// `kind {args}` for reports.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind_name, self.args)
    }
}

/// A case file.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `id`
    pub id: String,
    /// `area`
    pub area: String,
    /// `title`
    pub title: String,
    /// `source` as written.
    pub source: Value,
    /// Fixture names, in order.
    pub fixtures: Vec<String>,
    /// `config` ops.
    pub config: Vec<Op>,
    /// `setup` ops.
    pub setup: Vec<Op>,
    /// Final checks.
    pub expect: Vec<Check>,
    /// `notes`
    pub notes: Vec<String>,
}

/// `fixtures.json`: the fixtures' op lists.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fixtures {
    /// Fixture name → ops.
    pub fixtures: BTreeMap<String, Vec<Op>>,
    /// `install_defaults` as written (the executor's fresh world must match it).
    pub install_defaults: Value,
}

// ----- parsing -------------------------------------------------------------------------------

fn str_of(v: &Value, key: &str) -> Result<String, String> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(format!("\"{key}\" missing or not a string")),
    }
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    match v.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn dec_of(v: &Value, key: &str) -> Result<Decimal, String> {
    v.get(key)
        .and_then(num::decimal_from_json)
        .ok_or_else(|| format!("\"{key}\" missing or not a number"))
}

fn opt_dec(v: &Value, key: &str) -> Option<Decimal> {
    v.get(key).and_then(num::decimal_from_json)
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn id_of(v: &Value, key: &str) -> Result<IdOrAlias, String> {
    IdOrAlias::parse(v.get(key).ok_or_else(|| format!("\"{key}\" missing"))?)
}

fn lines_of(v: &Value) -> Result<Option<Vec<LineSpec>>, String> {
    match v.get("items") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "all" => Ok(None),
        Some(Value::Array(list)) => Ok(Some(
            list.iter()
                .map(|l| {
                    let item = l.get("order_item");
                    LineSpec {
                        sku: item
                            .and_then(|i| opt_str(i, "sku"))
                            .or_else(|| opt_str(l, "sku")),
                        parent_sku: item.and_then(|i| opt_str(i, "parent_sku")),
                        qty: opt_dec(l, "qty"),
                    }
                })
                .collect(),
        )),
        Some(other) => Err(format!("items {other} is neither \"all\" nor a list")),
    }
}

fn config_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn parse_op_kind(name: &str, v: &Value) -> Result<OpKind, String> {
    let obj = v.as_object().cloned().unwrap_or_default();
    let map_of = |key: &str| {
        v.get(key)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    Ok(match name {
        "apply_fixture" => OpKind::ApplyFixture {
            fixture: str_of(v, "fixture")?,
        },
        "noop" => OpKind::Noop,
        "create_website" => OpKind::CreateWebsite {
            code: str_of(v, "code")?,
            store_code: opt_str(v, "store_code"),
        },
        "delete_website" => OpKind::DeleteWebsite {
            code: str_of(v, "code")?,
        },
        "create_source" => OpKind::CreateSource { fields: obj },
        "update_source" => OpKind::UpdateSource {
            source_code: str_of(v, "source_code")?,
            fields: map_of("fields"),
        },
        "create_stock" => OpKind::CreateStock {
            stock_id: id_of(v, "stock_id")?,
            name: opt_str(v, "name"),
            sales_channels: v.get("sales_channels").and_then(Value::as_array).cloned(),
            alias: opt_str(v, "fixture_alias"),
        },
        "delete_stock" => OpKind::DeleteStock {
            stock_id: id_of(v, "stock_id")?,
        },
        "save_stock_source_links" => OpKind::SaveStockSourceLinks {
            links: v
                .get("links")
                .and_then(Value::as_array)
                .ok_or("links missing")?
                .iter()
                .map(|l| {
                    Ok((
                        id_of(l, "stock_id")?,
                        str_of(l, "source_code")?,
                        l.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    ))
                })
                .collect::<Result<_, String>>()?,
        },
        "delete_stock_source_links" => OpKind::DeleteStockSourceLinks {
            links: v
                .get("links")
                .and_then(Value::as_array)
                .ok_or("links missing")?
                .iter()
                .map(|l| Ok((id_of(l, "stock_id")?, str_of(l, "source_code")?)))
                .collect::<Result<_, String>>()?,
        },
        "assign_sales_channels" => OpKind::AssignSalesChannels {
            stock_id: id_of(v, "stock_id")?,
            websites: strings(v, "websites"),
            append: opt_str(v, "mode").as_deref() != Some("replace"),
        },
        "create_product" => OpKind::CreateProduct { spec: obj },
        "update_legacy_stock_item" => OpKind::UpdateLegacyStockItem {
            sku: str_of(v, "sku")?,
            fields: map_of("fields"),
        },
        "assign_products_to_websites" => OpKind::AssignProductsToWebsites {
            skus: strings(v, "skus"),
            websites: strings(v, "websites"),
            replace: opt_str(v, "mode").as_deref() == Some("replace"),
        },
        "rename_product_sku" => OpKind::RenameProductSku {
            from: str_of(v, "from")?,
            to: str_of(v, "to")?,
        },
        "save_source_items" => OpKind::SaveSourceItems {
            items: v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .ok_or("items missing")?,
        },
        "resave_source_items" => OpKind::ResaveSourceItems {
            sku: str_of(v, "sku")?,
        },
        "delete_source_items" => OpKind::DeleteSourceItems {
            items: v
                .get("items")
                .and_then(Value::as_array)
                .ok_or("items missing")?
                .iter()
                .map(|i| Ok((str_of(i, "source_code")?, str_of(i, "sku")?)))
                .collect::<Result<_, String>>()?,
        },
        "decrement_source_items" => OpKind::DecrementSourceItems {
            items: v
                .get("items")
                .and_then(Value::as_array)
                .ok_or("items missing")?
                .iter()
                .map(|i| {
                    Ok((
                        str_of(i, "source_code")?,
                        str_of(i, "sku")?,
                        dec_of(i, "qty")?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        },
        "bulk_assign_sources" => OpKind::BulkAssignSources {
            skus: strings(v, "skus"),
            source_codes: strings(v, "source_codes"),
        },
        "bulk_unassign_sources" => OpKind::BulkUnassignSources {
            skus: strings(v, "skus"),
            source_codes: strings(v, "source_codes"),
        },
        "bulk_inventory_transfer" => OpKind::BulkInventoryTransfer {
            skus: strings(v, "skus"),
            origin: str_of(v, "origin_source")?,
            destination: str_of(v, "destination_source")?,
            unassign: v
                .get("unassign_from_origin")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        "set_config" => OpKind::SetConfig {
            scope: str_of(v, "scope")?,
            path: str_of(v, "path")?,
            value: config_value(v.get("value").unwrap_or(&Value::Null)),
        },
        "update_stock_item_config" => OpKind::UpdateStockItemConfig {
            sku: str_of(v, "sku")?,
            stock_id: v
                .get("stock_id")
                .filter(|s| !s.is_null())
                .map(IdOrAlias::parse)
                .transpose()?,
            fields: map_of("fields"),
        },
        "append_reservations" => OpKind::AppendReservations {
            reservations: v
                .get("reservations")
                .and_then(Value::as_array)
                .cloned()
                .ok_or("reservations missing")?,
        },
        "insert_reservation_row" => OpKind::InsertReservationRow {
            stock_id: id_of(v, "stock_id")?,
            sku: str_of(v, "sku")?,
            quantity: dec_of(v, "quantity")?,
            metadata: opt_str(v, "metadata"),
        },
        "delete_reservations" => OpKind::DeleteReservations {
            event_type: v
                .get("where")
                .and_then(|w| w.get("event_type"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            last: opt_str(v, "which").as_deref() == Some("last"),
        },
        "create_compensation" => OpKind::CreateCompensation {
            argument: str_of(v, "argument")?,
        },
        "reindex" => OpKind::Reindex {
            stock_ids: v
                .get("stock_ids")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(IdOrAlias::parse).collect::<Result<_, _>>())
                .transpose()?,
        },
        "process_queue" => OpKind::ProcessQueue {
            consumer: str_of(v, "consumer")?,
            max_messages: v
                .get("max_messages")
                .and_then(Value::as_u64)
                .and_then(|m| usize::try_from(m).ok()),
        },
        "legacy_revert_products_sale" => OpKind::LegacyRevertProductsSale {
            website: str_of(v, "website")?,
            items: v
                .get("items")
                .and_then(Value::as_array)
                .ok_or("items missing")?
                .iter()
                .map(|i| Ok((str_of(i, "sku")?, dec_of(i, "qty")?)))
                .collect::<Result<_, String>>()?,
        },
        "legacy_back_item_qty" => OpKind::LegacyBackItemQty {
            website: str_of(v, "website")?,
            sku: str_of(v, "sku")?,
            qty: dec_of(v, "qty")?,
        },
        "create_cart" => OpKind::CreateCart {
            cart: str_of(v, "cart")?,
            reserved_order_id: opt_str(v, "reserved_order_id"),
            website: opt_str(v, "website"),
            store: opt_str(v, "store"),
        },
        "add_to_cart" => OpKind::AddToCart {
            cart: str_of(v, "cart")?,
            new_cart: v.get("new_cart").and_then(Value::as_bool).unwrap_or(false),
            website: opt_str(v, "website"),
            store: opt_str(v, "store"),
            sku: str_of(v, "sku")?,
            qty: dec_of(v, "qty")?,
        },
        "place_order" => OpKind::PlaceOrder {
            order: str_of(v, "ref")?,
            cart: opt_str(v, "cart"),
            website: opt_str(v, "website"),
            store: opt_str(v, "store"),
            items: v
                .get("items")
                .and_then(Value::as_array)
                .ok_or("items missing")?
                .iter()
                .map(|i| {
                    Ok(PlaceItemSpec {
                        sku: str_of(i, "sku")?,
                        qty: opt_dec(i, "qty"),
                        child_sku: opt_str(i, "child_sku"),
                        bundle_options_qty: i
                            .get("bundle_options_qty")
                            .and_then(Value::as_object)
                            .map(|m| {
                                m.iter()
                                    .filter_map(|(k, q)| {
                                        num::decimal_from_json(q).map(|q| (k.clone(), q))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        bundle_selections: strings(i, "bundle_selections"),
                        child_skus: strings(i, "child_skus"),
                    })
                })
                .collect::<Result<_, String>>()?,
        },
        "create_order" => OpKind::CreateOrder {
            order: str_of(v, "ref")?,
            increment_id: str_of(v, "increment_id")?,
            state: str_of(v, "state")?,
            website: str_of(v, "website")?,
            via: str_of(v, "via")?,
            items: v
                .get("items")
                .and_then(Value::as_array)
                .ok_or("items missing")?
                .iter()
                .map(|i| {
                    Ok(SeedItemSpec {
                        sku: str_of(i, "sku")?,
                        qty: dec_of(i, "qty")?,
                        product_type: opt_str(i, "product_type")
                            .unwrap_or_else(|| "simple".to_owned()),
                        child_sku: opt_str(i, "child_sku"),
                    })
                })
                .collect::<Result<_, String>>()?,
        },
        "place_existing_order" => OpKind::PlaceExistingOrder {
            order: str_of(v, "order")?,
        },
        "set_order_item_sku" => OpKind::SetOrderItemSku {
            order: str_of(v, "order")?,
            item: str_of(v, "item")?,
            sku: str_of(v, "sku")?,
        },
        "invoice" => OpKind::Invoice {
            order: str_of(v, "order")?,
            items: lines_of(v)?,
            persist: v.get("persist").and_then(Value::as_bool).unwrap_or(true),
        },
        "ship" => OpKind::Ship {
            shipment: opt_str(v, "ref"),
            order: str_of(v, "order")?,
            items: lines_of(v)?,
            source_code: opt_str(v, "source_code"),
        },
        "cancel" => OpKind::Cancel {
            order: str_of(v, "order")?,
        },
        "refund" => OpKind::Refund {
            creditmemo: opt_str(v, "ref"),
            order: str_of(v, "order")?,
            items: lines_of(v)?,
            return_to_stock: strings(v, "return_to_stock"),
        },
        "resave_creditmemo" => OpKind::ResaveCreditmemo {
            creditmemo: str_of(v, "creditmemo")?,
        },
        "expect" => OpKind::Expect {
            checks: v
                .get("checks")
                .and_then(Value::as_array)
                .ok_or("checks missing")?
                .iter()
                .map(parse_check)
                .collect::<Result<_, String>>()?,
        },
        "capture" => {
            let value = v.get("value").ok_or("capture.value missing")?;
            OpKind::Capture {
                name: str_of(v, "as")?,
                check: Box::new(parse_check_inner(value, false)?),
            }
        }
        "rest_call" => OpKind::RestCall,
        other => OpKind::Unknown {
            name: other.to_owned(),
        },
    })
}

/// Parses one op.
pub fn parse_op(v: &Value) -> Result<Op, String> {
    let name = v
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("op without \"op\": {v}"))?
        .to_owned();
    let kind = parse_op_kind(&name, v).map_err(|e| format!("op {name}: {e}"))?;
    let rest = if name == "rest_call" {
        Some(RestSpec::parse(v)?)
    } else {
        v.get("rest").map(RestSpec::parse).transpose()?
    };
    Ok(Op {
        expect: OpExpectation {
            ok: v.get("expect_ok").and_then(Value::as_bool),
            error: v.get("expect_error").map(ExpectedError::parse),
            result: v.get("expect_result").cloned(),
            cart_item_qty: v.get("expect_cart_item_qty").cloned(),
        },
        rest,
        via: opt_str(v, "via"),
        note: opt_str(v, "note"),
        derived: v.get("derived").and_then(Value::as_bool).unwrap_or(false),
        raw: v.clone(),
        name,
        kind,
    })
}

const COMPARISON_KEYS: [&str; 15] = [
    "equals",
    "not_equals",
    "equals_capture",
    "field",
    "contains",
    "not_contains",
    "contains_once",
    "items_contain",
    "errors",
    "error",
    "match",
    "derived",
    "rest",
    "note",
    "data_set",
];

fn parse_query(kind: &str, a: &Value) -> Result<Query, String> {
    let pairs = |key: &str| -> Result<Vec<(String, Decimal)>, String> {
        a.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{key} missing"))?
            .iter()
            .map(|i| Ok((str_of(i, "sku")?, dec_of(i, "qty")?)))
            .collect()
    };
    Ok(match kind {
        "salable_qty" => Query::SalableQty {
            sku: str_of(a, "sku")?,
            stock_id: id_of(a, "stock_id")?,
        },
        "is_salable" => Query::IsSalable {
            sku: str_of(a, "sku")?,
            stock_id: id_of(a, "stock_id")?,
        },
        "is_salable_for_requested_qty" => Query::IsSalableForRequestedQty {
            sku: str_of(a, "sku")?,
            stock_id: id_of(a, "stock_id")?,
            qty: dec_of(a, "qty")?,
        },
        "stock_index" => Query::StockIndex {
            sku: str_of(a, "sku")?,
            stock_id: id_of(a, "stock_id")?,
        },
        "source_item_qty" => Query::SourceItemQty {
            sku: str_of(a, "sku")?,
            source_code: str_of(a, "source_code")?,
        },
        "source_item_status" => Query::SourceItemStatus {
            sku: str_of(a, "sku")?,
            source_code: str_of(a, "source_code")?,
        },
        "source_codes_for_sku" => Query::SourceCodesForSku {
            sku: str_of(a, "sku")?,
        },
        "source_items_list" => Query::SourceItemsList { args: a.clone() },
        "stock_source_links_list" => Query::StockSourceLinksList { args: a.clone() },
        "sources_assigned_to_stock" => Query::SourcesAssignedToStock {
            stock_id: id_of(a, "stock_id")?,
        },
        "reservations_sum" => Query::ReservationsSum {
            sku: str_of(a, "sku")?,
            stock_id: id_of(a, "stock_id")?,
        },
        "reservations_count" => Query::ReservationsCount {
            sku: str_of(a, "sku")?,
        },
        "reservations_exist" => Query::ReservationsExist {
            sku: str_of(a, "sku")?,
        },
        "last_reservation_metadata" => Query::LastReservationMetadata,
        "order_item_qty_backordered" => Query::OrderItemQtyBackordered {
            order: str_of(a, "order")?,
            sku: str_of(a, "sku")?,
        },
        "order_status_changed" => Query::OrderStatusChanged {
            order: str_of(a, "order")?,
        },
        "shipment" => Query::Shipment {
            shipment: str_of(a, "ref")?,
        },
        "check_quote_item_qty" => Query::CheckQuoteItemQty {
            sku: str_of(a, "sku")?,
            website: str_of(a, "website")?,
            item_qty: dec_of(a, "item_qty")?,
            qty_to_check: dec_of(a, "qty_to_check")?,
            orig_qty: dec_of(a, "orig_qty")?,
        },
        "source_selection" => Query::SourceSelection {
            stock_id: id_of(a, "stock_id")?,
            algorithm: opt_str(a, "algorithm").unwrap_or_else(|| "priority".to_owned()),
            items: pairs("items")?,
        },
        "source_selection_for_sorted_sources" => Query::SourceSelectionForSortedSources {
            stock_id: id_of(a, "stock_id")?,
            items: pairs("items")?,
            sorted_sources: strings(a, "sorted_sources"),
        },
        "inconsistencies_count" => Query::InconsistenciesCount {
            bunch_size: a.get("bunch_size").and_then(Value::as_u64).unwrap_or(50) as usize,
        },
        "inconsistency_qty" => Query::InconsistencyQty {
            sku: str_of(a, "sku")?,
        },
        "inconsistencies_each_bunch_empty" => Query::InconsistenciesEachBunchEmpty {
            bunch_size: a.get("bunch_size").and_then(Value::as_u64).unwrap_or(50) as usize,
        },
        "resolve_stock" => Query::ResolveStock {
            channel_type: str_of(a, "type")?,
            code: str_of(a, "code")?,
        },
        "stock_sales_channels" => Query::StockSalesChannels {
            stock_id: id_of(a, "stock_id")?,
        },
        "assigned_stock_id_for_website" => Query::AssignedStockIdForWebsite {
            code: str_of(a, "code")?,
        },
        "is_single_source_mode" => Query::IsSingleSourceMode,
        other => Query::Unknown {
            name: other.to_owned(),
        },
    })
}

/// Parses one check.
pub fn parse_check(v: &Value) -> Result<Check, String> {
    parse_check_inner(v, true)
}

fn parse_check_inner(v: &Value, require_comparison: bool) -> Result<Check, String> {
    let obj = v.as_object().ok_or("check is not an object")?;
    let kinds: Vec<&String> = obj
        .keys()
        .filter(|k| !COMPARISON_KEYS.contains(&k.as_str()))
        .collect();
    let [kind] = kinds.as_slice() else {
        return Err(format!(
            "check must have exactly one kind key, has {kinds:?}: {v}"
        ));
    };
    let args = obj.get(*kind).cloned().unwrap_or(Value::Null);
    let query = parse_query(kind, &args).map_err(|e| format!("check {kind}: {e}"))?;
    let mut comparisons = Vec::new();
    let is_contains_match = obj.get("match").and_then(Value::as_str) == Some("contains");
    if let Some(e) = obj.get("equals") {
        comparisons.push(if is_contains_match {
            Comparison::MatchContains(e.clone())
        } else {
            Comparison::Equals(e.clone())
        });
    }
    if let Some(e) = obj.get("not_equals") {
        comparisons.push(Comparison::NotEquals(e.clone()));
    }
    if let Some(Value::String(name)) = obj.get("equals_capture") {
        comparisons.push(Comparison::EqualsCapture(name.clone()));
    }
    let list = |k: &str| obj.get(k).and_then(Value::as_array).cloned();
    if let Some(l) = list("contains") {
        comparisons.push(Comparison::Contains(l));
    }
    if let Some(l) = list("not_contains") {
        comparisons.push(Comparison::NotContains(l));
    }
    if let Some(l) = list("contains_once") {
        comparisons.push(Comparison::ContainsOnce(l));
    }
    if let Some(l) = list("items_contain") {
        comparisons.push(Comparison::ItemsContain(l));
    }
    if let Some(l) = list("errors") {
        comparisons.push(Comparison::Errors(l));
    }
    if let Some(e) = obj.get("error") {
        comparisons.push(Comparison::Error(ExpectedError::parse(e)));
    }
    if comparisons.is_empty() && require_comparison {
        return Err(format!("check {kind} has no comparison"));
    }
    Ok(Check {
        kind_name: (*kind).clone(),
        args,
        query,
        comparisons,
        field: obj.get("field").and_then(Value::as_str).map(str::to_owned),
        rest: obj.get("rest").map(RestSpec::parse).transpose()?,
        derived: obj.get("derived").and_then(Value::as_bool).unwrap_or(false),
    })
}

fn ops_of(v: &Value, key: &str) -> Result<Vec<Op>, String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(parse_op).collect())
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// Parses a case file.
pub fn parse_case(v: &Value) -> Result<Case, String> {
    Ok(Case {
        id: str_of(v, "id")?,
        area: opt_str(v, "area").unwrap_or_default(),
        title: opt_str(v, "title").unwrap_or_default(),
        source: v.get("source").cloned().unwrap_or(Value::Null),
        fixtures: strings(v, "fixtures"),
        config: ops_of(v, "config")?,
        setup: ops_of(v, "setup")?,
        expect: v
            .get("expect")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(parse_check).collect::<Result<_, _>>())
            .transpose()?
            .unwrap_or_default(),
        notes: strings(v, "notes"),
    })
}

/// Parses `fixtures.json`.
pub fn parse_fixtures(v: &Value) -> Result<Fixtures, String> {
    let mut fixtures = BTreeMap::new();
    for (name, f) in v
        .get("fixtures")
        .and_then(Value::as_object)
        .ok_or("fixtures missing")?
    {
        fixtures.insert(
            name.clone(),
            ops_of(f, "ops").map_err(|e| format!("{name}: {e}"))?,
        );
    }
    Ok(Fixtures {
        fixtures,
        install_defaults: v.get("install_defaults").cloned().unwrap_or(Value::Null),
    })
}

// ----- execution -------------------------------------------------------------------------------

/// What an executor reports for a successful op (serialisable, so a control API can return it).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct OpOutput {
    /// The op's return value (bulk counts, REST bodies …).
    pub result: Option<Value>,
    /// The id of a stock the op created (binds a stock alias).
    pub created_stock_id: Option<i64>,
    /// The cart line quantity after `add_to_cart`.
    pub cart_item_qty: Option<Value>,
}

/// What an executor reports for a failed op or query.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct OpFailure {
    /// HTTP status (REST, or what the REST layer would answer).
    pub http_status: Option<u16>,
    /// The raw message (placeholders kept).
    pub message: String,
    /// The rendered message.
    pub rendered: String,
    /// The message parameters.
    pub parameters: Option<Value>,
    /// The REST error body.
    pub body: Option<Value>,
    /// The PHP exception class, when known.
    pub exception: Option<String>,
    /// Whether the class is a `LocalizedException`.
    pub localized: bool,
    /// Set when the executor does not implement the op or query at all.
    pub unsupported: bool,
}

impl OpFailure {
    /// An "unsupported" failure naming the op or check.
    pub fn unsupported(what: &str) -> Self {
        Self {
            message: format!("the executor does not support {what}"),
            rendered: format!("the executor does not support {what}"),
            unsupported: true,
            ..Self::default()
        }
    }

    /// The failure of a REST response.
    pub fn from_rest(response: &RestResponse) -> Self {
        let message = response
            .body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Self {
            http_status: Some(response.status),
            rendered: message.clone(),
            message,
            parameters: response.body.get("parameters").cloned(),
            body: Some(response.body.clone()),
            exception: None,
            localized: response.status < 500,
            unsupported: false,
        }
    }
}

/// Executes ops and evaluates checks. Aliases and captures are already substituted in what it
/// receives (stock aliases resolved to ids; see [`IdOrAlias::id`]).
pub trait OpExecutor {
    /// Applies an op.
    fn apply(&mut self, op: &Op) -> Result<OpOutput, OpFailure>;
    /// Evaluates a check's query; the value's shape is FORMAT §4's for the kind.
    fn query(&mut self, check: &Check) -> Result<Value, OpFailure>;
}

/// One failed expectation.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Where: `setup[3] place_order`, `expect[0] salable_qty {…}`.
    pub check: String,
    /// What was expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} expected {} got {}",
            self.check, self.expected, self.actual
        )
    }
}

/// The result of a case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseOutcome {
    /// The case id.
    pub id: String,
    /// Every failed expectation.
    pub failures: Vec<Failure>,
    /// How many checks and op expectations were evaluated.
    pub evaluated: usize,
}

impl CaseOutcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

struct Runner<'a> {
    fixtures: &'a Fixtures,
    aliases: BTreeMap<String, i64>,
    captures: BTreeMap<String, Value>,
    failures: Vec<Failure>,
    evaluated: usize,
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!("{}…", &s[..300])
    } else {
        s
    }
}

impl Runner<'_> {
    fn fail(&mut self, check: String, expected: impl Into<String>, actual: impl Into<String>) {
        self.failures.push(Failure {
            check,
            expected: expected.into(),
            actual: actual.into(),
        });
    }

    fn resolve(&self, id: &IdOrAlias) -> Result<IdOrAlias, String> {
        match id {
            IdOrAlias::Id(_) => Ok(id.clone()),
            IdOrAlias::Alias(a) => self
                .aliases
                .get(a)
                .map(|i| IdOrAlias::Id(*i))
                .ok_or_else(|| format!("unbound alias \"{a}\"")),
        }
    }

    fn substitute_text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (name, value) in &self.captures {
            let rendered = match value {
                Value::Number(_) | Value::String(_) => num::decimal_from_json(value)
                    .map(num::php_float_string)
                    .unwrap_or_else(|| value.as_str().unwrap_or("").to_owned()),
                other => other.to_string(),
            };
            out = out.replace(&format!("{{{name}}}"), &rendered);
        }
        out
    }

    /// Resolves aliases in an op (stock ids), except the creating op itself.
    fn bind_op(&self, op: &Op) -> Result<Op, String> {
        let mut op = op.clone();
        let r = |id: &IdOrAlias| self.resolve(id);
        match &mut op.kind {
            OpKind::CreateStock { stock_id, .. } => {
                if let IdOrAlias::Alias(a) = stock_id
                    && let Some(i) = self.aliases.get(a)
                {
                    *stock_id = IdOrAlias::Id(*i);
                }
            }
            OpKind::DeleteStock { stock_id } | OpKind::AssignSalesChannels { stock_id, .. } => {
                *stock_id = r(stock_id)?;
            }
            OpKind::InsertReservationRow { stock_id, .. } => *stock_id = r(stock_id)?,
            OpKind::UpdateStockItemConfig {
                stock_id: Some(s), ..
            } => *s = r(s)?,
            OpKind::SaveStockSourceLinks { links } => {
                for (s, _, _) in links.iter_mut() {
                    *s = r(s)?;
                }
            }
            OpKind::DeleteStockSourceLinks { links } => {
                for (s, _) in links.iter_mut() {
                    *s = r(s)?;
                }
            }
            OpKind::Reindex {
                stock_ids: Some(ids),
            } => {
                for s in ids.iter_mut() {
                    *s = r(s)?;
                }
            }
            OpKind::CreateCompensation { argument } => *argument = self.substitute_text(argument),
            OpKind::AppendReservations { reservations } => {
                for res in reservations.iter_mut() {
                    if let Some(Value::String(a)) = res.get("stock_id")
                        && let Some(i) = self.aliases.get(a)
                    {
                        res["stock_id"] = json!(i);
                    }
                }
            }
            _ => {}
        }
        Ok(op)
    }

    fn bind_check(&self, check: &Check) -> Result<Check, String> {
        let mut c = check.clone();
        let r = |id: &IdOrAlias| self.resolve(id);
        match &mut c.query {
            Query::SalableQty { stock_id, .. }
            | Query::IsSalable { stock_id, .. }
            | Query::IsSalableForRequestedQty { stock_id, .. }
            | Query::StockIndex { stock_id, .. }
            | Query::SourcesAssignedToStock { stock_id }
            | Query::ReservationsSum { stock_id, .. }
            | Query::SourceSelection { stock_id, .. }
            | Query::SourceSelectionForSortedSources { stock_id, .. }
            | Query::StockSalesChannels { stock_id } => *stock_id = r(stock_id)?,
            _ => {}
        }
        Ok(c)
    }

    fn run_ops(&mut self, exec: &mut dyn OpExecutor, ops: &[Op], place: &str, depth: usize) {
        for (i, op) in ops.iter().enumerate() {
            let label = format!("{place}[{i}] {}", op.name);
            self.run_op(exec, op, &label, depth);
        }
    }

    fn run_op(&mut self, exec: &mut dyn OpExecutor, op: &Op, label: &str, depth: usize) {
        match &op.kind {
            OpKind::Unknown { name } => {
                self.fail(
                    label.to_owned(),
                    "a known op kind",
                    format!("unknown op kind \"{name}\""),
                );
                return;
            }
            OpKind::ApplyFixture { fixture } => {
                let fixtures = self.fixtures;
                match fixtures.fixtures.get(fixture) {
                    Some(ops) if depth < 16 => {
                        let place = format!("{label} {fixture}");
                        self.run_ops(exec, ops, &place, depth + 1);
                    }
                    Some(_) => self.fail(label.to_owned(), "bounded fixture nesting", "depth 16"),
                    None => self.fail(
                        label.to_owned(),
                        format!("fixture \"{fixture}\" in fixtures.json"),
                        "no such fixture",
                    ),
                }
                return;
            }
            OpKind::Expect { checks } => {
                for (j, c) in checks.iter().enumerate() {
                    self.run_check(exec, c, &format!("{label}.checks[{j}]"));
                }
                return;
            }
            OpKind::Capture { name, check } => {
                let bound = match self.bind_check(check) {
                    Ok(c) => c,
                    Err(e) => {
                        self.fail(label.to_owned(), "bound aliases", e);
                        return;
                    }
                };
                match exec.query(&bound) {
                    Ok(v) => {
                        let v = match &bound.field {
                            Some(f) => extract_field(&v, f),
                            None => v,
                        };
                        self.captures.insert(name.clone(), v);
                    }
                    Err(e) => self.fail(label.to_owned(), "a value to capture", e.rendered),
                }
                return;
            }
            _ => {}
        }
        let bound = match self.bind_op(op) {
            Ok(o) => o,
            Err(e) => {
                self.fail(label.to_owned(), "bound aliases", e);
                return;
            }
        };
        self.evaluated += 1;
        let outcome = exec.apply(&bound);
        match (&op.expect.error, outcome) {
            (Some(expected), Ok(out)) => self.fail(
                label.to_owned(),
                format!("error {}", describe_error(expected)),
                format!(
                    "success {}",
                    out.result.map(|r| short(&r)).unwrap_or_default()
                ),
            ),
            (Some(expected), Err(actual)) => {
                if let Some(mismatch) = error_mismatch(expected, &actual) {
                    self.fail(label.to_owned(), mismatch.0, mismatch.1);
                }
            }
            (None, Err(actual)) => self.fail(
                label.to_owned(),
                "success",
                format!(
                    "{}error \"{}\"",
                    if actual.unsupported {
                        "unsupported: "
                    } else {
                        ""
                    },
                    actual.rendered
                ),
            ),
            (None, Ok(out)) => {
                if let (
                    OpKind::CreateStock {
                        alias: Some(a),
                        stock_id,
                        ..
                    },
                    Some(id),
                ) = (&op.kind, out.created_stock_id)
                {
                    let _ = stock_id;
                    self.aliases.insert(a.clone(), id);
                }
                if let Some(expected) = &op.expect.result {
                    let actual = out.result.clone().unwrap_or(Value::Null);
                    if !loose_eq(expected, &actual) {
                        self.fail(
                            format!("{label} expect_result"),
                            short(expected),
                            short(&actual),
                        );
                    }
                }
                if let Some(expected) = &op.expect.cart_item_qty {
                    let actual = out.cart_item_qty.clone().unwrap_or(Value::Null);
                    if !loose_eq(expected, &actual) {
                        self.fail(
                            format!("{label} expect_cart_item_qty"),
                            short(expected),
                            short(&actual),
                        );
                    }
                }
            }
        }
    }

    fn run_check(&mut self, exec: &mut dyn OpExecutor, check: &Check, place: &str) {
        let label = format!("{place} {}", check.label());
        self.evaluated += 1;
        if let Query::Unknown { name } = &check.query {
            self.fail(
                label,
                "a known check kind",
                format!("unknown check kind \"{name}\""),
            );
            return;
        }
        let bound = match self.bind_check(check) {
            Ok(c) => c,
            Err(e) => {
                self.fail(label, "bound aliases", e);
                return;
            }
        };
        let result = exec.query(&bound);
        for comparison in &check.comparisons {
            if let Some((expected, actual)) = self.compare(check, comparison, &result) {
                self.fail(label.clone(), expected, actual);
            }
        }
    }

    /// `None` when the comparison holds, else (expected, actual).
    fn compare(
        &self,
        check: &Check,
        comparison: &Comparison,
        result: &Result<Value, OpFailure>,
    ) -> Option<(String, String)> {
        if let Comparison::Error(expected) = comparison {
            return match result {
                Ok(v) => Some((format!("error {}", describe_error(expected)), short(v))),
                Err(actual) => error_mismatch(expected, actual),
            };
        }
        let value = match result {
            Ok(v) => v.clone(),
            Err(e) => {
                return Some((
                    "a value".to_owned(),
                    format!(
                        "{}error \"{}\"",
                        if e.unsupported { "unsupported: " } else { "" },
                        e.rendered
                    ),
                ));
            }
        };
        let requested_qty = matches!(check.query, Query::IsSalableForRequestedQty { .. });
        // List results compare `equals` on `{total_count}`; the quote-item check is "an object
        // subset of {has_error, message, …}" (FORMAT §4): only the given keys are compared.
        let listing = matches!(
            check.query,
            Query::SourceItemsList { .. }
                | Query::StockSourceLinksList { .. }
                | Query::CheckQuoteItemQty { .. }
        );
        let primary = if requested_qty {
            value.get("salable").cloned().unwrap_or(Value::Null)
        } else {
            value.clone()
        };
        let primary = match &check.field {
            Some(f) => extract_field(&primary, f),
            None => primary,
        };
        let mismatch = |e: &Value, a: &Value| Some((short(e), short(a)));
        match comparison {
            Comparison::Equals(e) if listing => {
                let subset = e
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .all(|(k, v)| loose_eq(v, primary.get(k).unwrap_or(&Value::Null)))
                    })
                    .unwrap_or(false);
                if subset { None } else { mismatch(e, &primary) }
            }
            Comparison::Equals(e) => {
                if loose_eq(e, &primary) {
                    None
                } else {
                    mismatch(e, &primary)
                }
            }
            Comparison::NotEquals(e) => {
                if loose_eq(e, &primary) {
                    Some((format!("not {}", short(e)), short(&primary)))
                } else {
                    None
                }
            }
            Comparison::EqualsCapture(name) => match self.captures.get(name) {
                Some(c) if loose_eq(c, &primary) => None,
                Some(c) => Some((format!("capture {name} = {}", short(c)), short(&primary))),
                None => Some((format!("capture {name}"), "no such capture".to_owned())),
            },
            Comparison::Contains(list)
            | Comparison::NotContains(list)
            | Comparison::ContainsOnce(list) => {
                let items = primary.as_array().cloned().unwrap_or_default();
                for wanted in list {
                    let count = items.iter().filter(|a| loose_eq(wanted, a)).count();
                    let ok = match comparison {
                        Comparison::Contains(_) => count > 0,
                        Comparison::NotContains(_) => count == 0,
                        _ => count == 1,
                    };
                    if !ok {
                        let how = match comparison {
                            Comparison::Contains(_) => "containing",
                            Comparison::NotContains(_) => "not containing",
                            _ => "containing once",
                        };
                        return Some((format!("a list {how} {}", short(wanted)), short(&primary)));
                    }
                }
                None
            }
            Comparison::ItemsContain(list) => {
                let items = value
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for wanted in list {
                    if !items.iter().any(|a| subset_match(wanted, a)) {
                        return Some((
                            format!("items containing {}", short(wanted)),
                            short(&value),
                        ));
                    }
                }
                None
            }
            Comparison::Errors(list) => {
                let actual = value.get("errors").cloned().unwrap_or(Value::Null);
                let expected = Value::Array(list.clone());
                if loose_eq(&expected, &actual) {
                    None
                } else {
                    mismatch(&expected, &actual)
                }
            }
            Comparison::MatchContains(e) => {
                if subset_match(e, &primary) {
                    None
                } else {
                    mismatch(e, &primary)
                }
            }
            Comparison::Error(_) => None,
        }
    }
}

fn describe_error(e: &ExpectedError) -> String {
    let mut parts = Vec::new();
    if let Some(s) = e.http_status {
        parts.push(format!("status {s}"));
    }
    if let Some(m) = &e.message {
        parts.push(format!("message {m:?}"));
    }
    if let Some(p) = &e.parameters {
        parts.push(format!("parameters {p}"));
    }
    if let Some(b) = &e.body {
        parts.push(format!("body {b}"));
    }
    if let Some(x) = &e.exception {
        parts.push(format!("exception {x}"));
    }
    parts.join(", ")
}

/// Compares an expected error with an actual one; `None` when every given field matches.
fn error_mismatch(expected: &ExpectedError, actual: &OpFailure) -> Option<(String, String)> {
    if actual.unsupported {
        return Some((describe_error(expected), actual.rendered.clone()));
    }
    if let Some(s) = expected.http_status
        && actual.http_status != Some(s)
    {
        return Some((
            format!("status {s}"),
            format!("status {:?} ({})", actual.http_status, actual.rendered),
        ));
    }
    if let Some(m) = &expected.message
        && *m != actual.message
        && *m != actual.rendered
    {
        return Some((
            format!("message {m:?}"),
            format!("message {:?}", actual.message),
        ));
    }
    if let Some(p) = &expected.parameters {
        let a = actual.parameters.clone().unwrap_or(Value::Null);
        if !loose_eq(p, &a) {
            return Some((format!("parameters {p}"), format!("parameters {a}")));
        }
    }
    if let Some(b) = &expected.body {
        let a = actual.body.clone().unwrap_or(Value::Null);
        if !loose_eq(b, &a) {
            return Some((format!("body {b}"), format!("body {a}")));
        }
    }
    if let Some(x) = &expected.exception {
        let is_base = x == "Magento\\Framework\\Exception\\LocalizedException";
        let ok = if is_base {
            actual.localized
        } else {
            actual.exception.as_deref() == Some(x.as_str())
        };
        if !ok {
            return Some((
                format!("exception {x}"),
                format!("exception {:?} ({})", actual.exception, actual.rendered),
            ));
        }
    }
    None
}

/// A dot-path field of a value; mapped over arrays.
pub fn extract_field(value: &Value, path: &str) -> Value {
    if let Value::Array(items) = value {
        return Value::Array(items.iter().map(|i| extract_field(i, path)).collect());
    }
    let mut current = value.clone();
    for part in path.split('.') {
        current = current.get(part).cloned().unwrap_or(Value::Null);
    }
    current
}

/// PHPUnit's `assertEquals` as FORMAT §1.2 uses it: numbers (and numeric strings) equal to 4
/// decimals, booleans equal to 0/1, strings exact, arrays in order, objects by key.
pub fn loose_eq(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Bool(b), other @ Value::Number(_)) | (other @ Value::Number(_), Value::Bool(b)) => {
            num::decimal_from_json(other).is_some_and(|d| d.is_zero() != *b)
        }
        (Value::Number(_), Value::Number(_))
        | (Value::Number(_), Value::String(_))
        | (Value::String(_), Value::Number(_)) => {
            match (
                num::decimal_from_json(expected),
                num::decimal_from_json(actual),
            ) {
                (Some(a), Some(b)) => num::round4(a) == num::round4(b),
                _ => false,
            }
        }
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| loose_eq(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| loose_eq(v, w)))
        }
        _ => false,
    }
}

/// `AssertArrayContains`: every key of `expected` is in `actual` with a matching value
/// (recursively); a list matches when each expected element matches some actual element.
pub fn subset_match(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|w| subset_match(v, w))),
        (Value::Array(e), Value::Array(a)) => {
            e.iter().all(|x| a.iter().any(|y| subset_match(x, y)))
        }
        _ => loose_eq(expected, actual),
    }
}

/// Runs a case on an executor whose world is fresh (install defaults only).
pub fn run_case(case: &Case, fixtures: &Fixtures, exec: &mut dyn OpExecutor) -> CaseOutcome {
    let mut runner = Runner {
        fixtures,
        aliases: BTreeMap::new(),
        captures: BTreeMap::new(),
        failures: Vec::new(),
        evaluated: 0,
    };
    runner.run_ops(exec, &case.config, "config", 0);
    for (i, name) in case.fixtures.iter().enumerate() {
        let op = Op {
            name: "apply_fixture".to_owned(),
            kind: OpKind::ApplyFixture {
                fixture: name.clone(),
            },
            expect: OpExpectation::default(),
            rest: None,
            via: None,
            note: None,
            derived: false,
            raw: json!({"op": "apply_fixture", "fixture": name}),
        };
        runner.run_op(exec, &op, &format!("fixtures[{i}]"), 0);
    }
    runner.run_ops(exec, &case.config, "config(again)", 0);
    runner.run_ops(exec, &case.setup, "setup", 0);
    for (i, check) in case.expect.iter().enumerate() {
        runner.run_check(exec, check, &format!("expect[{i}]"));
    }
    CaseOutcome {
        id: case.id.clone(),
        failures: runner.failures,
        evaluated: runner.evaluated,
    }
}

// ----- REST forms ----------------------------------------------------------------------------

/// Resolves order references to entity ids (for `{order_id}` in REST paths).
pub trait OrderRefs {
    /// The entity id of an order reference.
    fn order_entity_id(&self, reference: &str) -> Option<u64>;
}

/// The REST request an op is executed with, when it carries a `rest` form (or is a
/// `rest_call`). Bodies the test did not spell out are built from the op (`sourceItems`).
pub fn rest_request_for_op(op: &Op, refs: &dyn OrderRefs) -> Option<RestRequest> {
    let rest = op.rest.as_ref()?;
    let order_ref = match &op.kind {
        OpKind::Ship { order, .. }
        | OpKind::Invoice { order, .. }
        | OpKind::Refund { order, .. }
        | OpKind::Cancel { order } => Some(order.clone()),
        _ => op
            .raw
            .get("order")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let mut path = rest.path.clone();
    if let Some(id) = order_ref.and_then(|r| refs.order_entity_id(&r)) {
        path = path.replace("{order_id}", &id.to_string());
    }
    let body = match (&rest.body, &op.kind) {
        (Some(b), _) => Some(b.clone()),
        (None, OpKind::SaveSourceItems { items }) => Some(json!({"sourceItems": items})),
        (None, OpKind::DeleteSourceItems { items }) => Some(json!({
            "sourceItems": items.iter().map(|(c, s)| json!({"source_code": c, "sku": s})).collect::<Vec<_>>()
        })),
        _ => None,
    };
    Some(RestRequest {
        method: rest.method.clone(),
        path,
        body,
    })
}

/// The REST request of a check that carries a `rest` form.
pub fn rest_request_for_check(check: &Check) -> Option<RestRequest> {
    let rest = check.rest.as_ref()?;
    Some(RestRequest {
        method: rest.method.clone(),
        path: rest.path.clone(),
        body: rest.body.clone(),
    })
}

/// Maps a REST response onto the check's value shape (FORMAT §4).
pub fn check_value_from_rest(check: &Check, response: &RestResponse) -> Result<Value, OpFailure> {
    if response.status >= 400 {
        return Err(OpFailure::from_rest(response));
    }
    let body = &response.body;
    let rest_field = check
        .rest
        .as_ref()
        .and_then(|r| r.extra.get("field"))
        .and_then(Value::as_str);
    Ok(match &check.query {
        Query::ResolveStock { .. } => json!({
            "stock_id": body.get("stock_id").cloned().unwrap_or(Value::Null),
            "name": body.get("name").cloned().unwrap_or(Value::Null),
            "sales_channels": extract_field(body, "extension_attributes.sales_channels"),
        }),
        Query::StockSalesChannels { .. } => extract_field(
            body,
            rest_field.unwrap_or("extension_attributes.sales_channels"),
        ),
        Query::IsSalable { sku, .. } => body
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .find(|i| i.get("sku").and_then(Value::as_str) == Some(sku.as_str()))
            })
            .and_then(|i| i.get("salable").cloned())
            .or_else(|| body.as_bool().map(Value::Bool))
            .unwrap_or(Value::Null),
        Query::IsSalableForRequestedQty { sku, .. } => match body {
            Value::Array(items) => items
                .iter()
                .find(|i| i.get("sku").and_then(Value::as_str) == Some(sku.as_str()))
                .cloned()
                .unwrap_or(Value::Null),
            other => other.clone(),
        },
        _ => match rest_field {
            Some(f) => extract_field(body, f),
            None => body.clone(),
        },
    })
}
