//! Authentication and ACL (spec §7): integration access tokens used as bearer tokens, admin
//! tokens from `POST /V1/integration/admin/token` (4 hours on the emulator clock), per-token ACL
//! resource sets, and Magento's 401 body naming the route's resources.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// An integration's access token (bearer mode).
    Integration,
    /// An admin token.
    Admin,
}

/// A token the emulator accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGrant {
    pub kind: TokenKind,
    /// ACL resources granted; `None` = all (`Magento_Backend::all`).
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// Expiry, seconds since the epoch on the emulator clock.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The admin user it was issued to.
    #[serde(default)]
    pub username: Option<String>,
}

/// The token table.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub grants: BTreeMap<String, TokenGrant>,
    issued: u64,
}

/// Admin token lifetime (Stores › Configuration › Services › OAuth › Access Token Expiration).
pub const ADMIN_TOKEN_SECONDS: i64 = 4 * 3600;

impl Tokens {
    /// A table accepting one integration token with every resource.
    pub fn with_integration(token: &str) -> Self {
        let mut t = Self::default();
        t.grants.insert(
            token.to_owned(),
            TokenGrant {
                kind: TokenKind::Integration,
                resources: None,
                expires_at: None,
                username: None,
            },
        );
        t
    }

    /// Issues an admin token (32 lowercase hex characters, like Magento's).
    pub fn issue_admin(&mut self, username: &str, now: i64, seed: u64) -> String {
        self.issued += 1;
        let token = token_text(seed, self.issued);
        self.grants.insert(
            token.clone(),
            TokenGrant {
                kind: TokenKind::Admin,
                resources: None,
                expires_at: Some(now + ADMIN_TOKEN_SECONDS),
                username: Some(username.to_owned()),
            },
        );
        token
    }

    /// The grant of a bearer token still valid at `now`.
    pub fn check(&self, token: &str, now: i64) -> Option<&TokenGrant> {
        self.grants
            .get(token)
            .filter(|g| g.expires_at.is_none_or(|e| now < e))
    }
}

fn token_text(seed: u64, n: u64) -> String {
    let mut x = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = String::new();
    for _ in 0..4 {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        out.push_str(&format!("{:08x}", x & 0xffff_ffff));
    }
    out
}

/// Whether a grant allows a route's resources (any one of them, as Magento's
/// `RequestValidator::checkPermissions` does).
pub fn allows(grant: &TokenGrant, resources: &[&str]) -> bool {
    match &grant.resources {
        None => true,
        Some(list) => {
            list.iter().any(|r| r == "Magento_Backend::all")
                || resources.is_empty()
                || resources.iter().any(|r| list.iter().any(|g| g == r))
        }
    }
}

/// The 401 body (spec §7.4).
pub fn unauthorized_body(resources: &[&str]) -> Value {
    json!({
        "message": "The consumer isn't authorized to access %resources.",
        "parameters": {"resources": resources.join(", ")}
    })
}

/// The ACL resources of a route (spec §2.1, §6.1; `Magento_Sales::*` as in the 2.3+ docs).
/// `segments` are the path segments after `V1`.
pub fn resources_of(method: &str, segments: &[&str]) -> Vec<&'static str> {
    let m = method;
    let r: &'static str = match segments {
        ["inventory", "sources", ..] if m == "GET" => "Magento_InventoryApi::source",
        ["inventory", "sources", ..] => "Magento_InventoryApi::source_edit",
        [
            "inventory",
            "get-sources-assigned-to-stock-ordered-by-priority",
            ..,
        ] => "Magento_InventoryApi::source",
        ["inventory", "stocks", ..] if m == "GET" => "Magento_InventoryApi::stock",
        ["inventory", "stocks", ..] if m == "DELETE" => "Magento_InventoryApi::stock_delete",
        ["inventory", "stocks", ..] => "Magento_InventoryApi::stock_edit",
        [
            "inventory",
            "stock-source-links" | "stock-source-links-delete",
            ..,
        ] => "Magento_InventoryApi::stock_source_link",
        ["inventory", "source-items", ..] if m == "GET" => "Magento_InventoryApi::source",
        ["inventory", "source-items" | "source-items-delete", ..] => {
            "Magento_InventoryApi::stock_source_item_assign"
        }
        [
            "inventory",
            "get-product-salable-quantity"
            | "is-product-salable"
            | "are-products-salable"
            | "is-product-salable-for-requested-qty"
            | "are-product-salable-for-requested-qty"
            | "stock-resolver",
            ..,
        ] => "Magento_InventorySalesApi::stock",
        ["inventory", "source-selection-algorithm-list", ..] => {
            "Magento_InventorySourceSelectionApi::source_selection_algorithm"
        }
        ["inventory", "source-selection-algorithm-result", ..] => {
            "Magento_InventorySourceSelectionApi::source_selection_algorithm_post"
        }
        ["inventory", s, ..] if s.starts_with("bulk-") => "Magento_Catalog::products",
        [
            "inventory",
            "export-stock-salable-qty" | "dump-stock-index-data",
            ..,
        ] => "Magento_InventoryApi::stock",
        ["orders", _, "comments"] if m == "POST" => "Magento_Sales::comment",
        ["orders", _, "cancel"] => "Magento_Sales::cancel",
        ["orders", _, "hold"] => "Magento_Sales::hold",
        ["orders", _, "unhold"] => "Magento_Sales::unhold",
        ["orders", ..] => "Magento_Sales::actions_view",
        ["order", _, "ship"] => "Magento_Sales::ship",
        ["order", _, "invoice"] => "Magento_Sales::invoice",
        ["order", _, "refund"] => "Magento_Sales::creditmemo",
        ["invoice", _, "refund"] => "Magento_Sales::sales_invoice",
        ["shipment" | "shipments", ..] => "Magento_Sales::shipment",
        ["invoices", ..] => "Magento_Sales::sales_invoice",
        ["creditmemo" | "creditmemos", ..] => "Magento_Sales::sales_creditmemo",
        ["bulk", ..] => "Magento_Logging::system_magento_logging_bulk_operations",
        ["tillbridge", ..] if m == "GET" => "Tillbridge_PosSync::reservations",
        ["tillbridge", ..] => "Tillbridge_PosSync::reservations_edit",
        _ => return Vec::new(),
    };
    vec![r]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_tokens_expire_after_four_hours() {
        let mut t = Tokens::with_integration("int");
        let a = t.issue_admin("admin", 1000, 7);
        assert_eq!(a.len(), 32);
        assert!(t.check(&a, 1000 + ADMIN_TOKEN_SECONDS - 1).is_some());
        assert!(t.check(&a, 1000 + ADMIN_TOKEN_SECONDS).is_none());
        assert!(t.check("int", i64::MAX - 1).is_some());
        assert!(t.check("nope", 0).is_none());
    }

    #[test]
    fn a_limited_grant_allows_only_its_resources() {
        let g = TokenGrant {
            kind: TokenKind::Integration,
            resources: Some(vec!["Magento_InventoryApi::source".into()]),
            expires_at: None,
            username: None,
        };
        assert!(allows(&g, &resources_of("GET", &["inventory", "sources"])));
        assert!(!allows(
            &g,
            &resources_of("POST", &["inventory", "source-items"])
        ));
        assert_eq!(
            unauthorized_body(&["Magento_Sales::ship"]),
            json!({"message": "The consumer isn't authorized to access %resources.",
                   "parameters": {"resources": "Magento_Sales::ship"}})
        );
    }
}
