//! `tillbridge sandbox commerce`: the emulator in real time with realistic limits and a small
//! demo shop, until Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::{DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USERNAME, DEFAULT_TOKEN, EmulatorConfig};

/// Sandbox options.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// The integration token to accept (default [`DEFAULT_TOKEN`]).
    pub token: Option<String>,
    /// Start with install defaults only.
    pub empty: bool,
    /// No input limits and no throttle.
    pub unlimited: bool,
}

/// The demo shop: two store sources on a UK stock selling through website `base`, three
/// products with stock, and one storefront order waiting to be fulfilled.
pub fn demo_ops() -> Value {
    json!([
        {"op": "create_source", "source_code": "leeds", "name": "Leeds Briggate", "enabled": true,
         "country_id": "GB", "postcode": "LS1 6AA", "city": "Leeds"},
        {"op": "create_source", "source_code": "york", "name": "York Stonegate", "enabled": true,
         "country_id": "GB", "postcode": "YO1 8AS", "city": "York"},
        {"op": "create_stock", "stock_id": 2, "name": "UK stores",
         "sales_channels": [{"type": "website", "code": "base"}]},
        {"op": "save_stock_source_links", "links": [
            {"stock_id": 2, "source_code": "leeds", "priority": 1},
            {"stock_id": 2, "source_code": "york", "priority": 2}]},
        {"op": "create_product", "sku": "TEE-S", "type": "simple"},
        {"op": "create_product", "sku": "TEE-M", "type": "simple"},
        {"op": "create_product", "sku": "MUG", "type": "simple"},
        {"op": "save_source_items", "items": [
            {"sku": "TEE-S", "source_code": "leeds", "quantity": 12, "status": 1},
            {"sku": "TEE-M", "source_code": "leeds", "quantity": 7, "status": 1},
            {"sku": "TEE-S", "source_code": "york", "quantity": 3, "status": 1},
            {"sku": "MUG", "source_code": "york", "quantity": 24, "status": 1}]}
    ])
}

/// Runs the sandbox until Ctrl-C, printing where it is and how to use it.
pub fn run(opts: &SandboxOptions, out: &mut dyn Write) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let token = opts.token.clone().unwrap_or_else(|| DEFAULT_TOKEN.to_owned());
        let mut config = EmulatorConfig::sandbox(&token);
        if opts.unlimited {
            config.settings.input_limits.enabled = false;
            config.settings.throttle.enabled = false;
        }
        let throttle = config.settings.throttle.clone();
        let limits = config.settings.input_limits.clone();
        let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
        let (handle, base) = crate::start_on(config, addr).await?;
        if !opts.empty {
            let seeded = handle
                .control("POST", "ops", &json!({"ops": demo_ops()}))
                .map_err(|e| std::io::Error::other(format!("seeding the demo shop: {e}")))?;
            if seeded["failed"] == json!(true) {
                return Err(std::io::Error::other(format!("seeding the demo shop: {seeded}")));
            }
            handle
                .control(
                    "POST",
                    "orders",
                    &json!({"increment_id": "000000001",
                            "customer": {"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee"},
                            "items": [{"sku": "TEE-S", "qty": 2, "price": 15, "tax_percent": 20, "name": "Organic Tee S"}],
                            "shipping": {"amount": 4.5, "tax_percent": 20}}),
                )
                .map_err(|e| std::io::Error::other(format!("placing the demo order: {e}")))?;
        }
        writeln!(out, "Adobe Commerce (Magento 2.4 + MSI) emulator listening on {base}")?;
        writeln!(
            out,
            "integration token: {token}{}",
            if opts.token.is_none() { " (default)" } else { "" }
        )?;
        writeln!(
            out,
            "admin token: POST {base}/rest/V1/integration/admin/token {{\"username\":\"{DEFAULT_ADMIN_USERNAME}\",\"password\":\"{DEFAULT_ADMIN_PASSWORD}\"}}"
        )?;
        if limits.enabled {
            writeln!(
                out,
                "input limits: {} items per list (async {}), page size at most {}",
                limits.sync_array_max, limits.async_array_max, limits.max_page_size
            )?;
        }
        if throttle.enabled {
            writeln!(
                out,
                "throttle: about {} requests/s and {} source items/s",
                throttle.requests_per_second, throttle.source_items_per_second
            )?;
        }
        writeln!(
            out,
            "control API: {base}/__emulator/ (see tests/commerce-emulator/README.md)"
        )?;
        writeln!(
            out,
            "try: curl -H 'Authorization: Bearer {token}' '{base}/rest/V1/inventory/source-items?searchCriteria[pageSize]=20'"
        )?;
        writeln!(out, "Press Ctrl-C to stop.")?;
        out.flush()?;
        tokio::signal::ctrl_c().await?;
        handle.stop().await;
        writeln!(out, "stopped")?;
        Ok(())
    })
}
