//! `tillbridge sandbox ...`: run an emulator of an outside system on this machine until Ctrl-C,
//! in real-time clock mode, for local development and demos.

use std::io::Write;
use std::net::SocketAddr;

use tillbridge_square_emulator as square;

use crate::cli::{CliError, Status};

/// `tillbridge sandbox pos` options.
#[derive(Debug, Clone)]
pub struct PosOptions {
    pub port: u16,
    pub token: Option<String>,
    pub webhook_url: Option<String>,
    pub signature_key: Option<String>,
    pub empty: bool,
}

/// Starts the Square emulator on 127.0.0.1:`port`, prints where it is and how to use it, and
/// serves until Ctrl-C.
pub fn pos(opts: PosOptions, out: &mut dyn Write) -> Result<Status, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let default_token = opts.token.is_none();
        let token = opts
            .token
            .clone()
            .unwrap_or_else(|| square::DEFAULT_TOKEN.to_owned());
        let webhook = opts
            .webhook_url
            .clone()
            .map(|url| square::webhooks::Subscription {
                url,
                notification_url: None,
                signature_key: opts
                    .signature_key
                    .clone()
                    .unwrap_or_else(square::webhooks::default_signature_key),
                retries: 5,
                retry_delay_ms: square::webhooks::default_retry_delay_ms(),
            });
        let config = square::Config {
            token: token.clone(),
            real_time: true,
            webhook: webhook.clone(),
            ..square::Config::default()
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
        let (handle, base_url) = square::start_on(config, addr)
            .await
            .map_err(|e| CliError::Sandbox(format!("cannot start on {addr}: {e}")))?;
        if !opts.empty {
            square::seed(&handle, &square::demo_seed())
                .map_err(|e| CliError::Sandbox(format!("seeding the demo shop: {:?}", e.errors)))?;
        }
        writeln!(out, "Square POS emulator listening on {base_url}")?;
        writeln!(
            out,
            "access token: {token}{}",
            if default_token { " (default)" } else { "" }
        )?;
        writeln!(
            out,
            "Square-Version: {}",
            square::state::DEFAULT_SQUARE_VERSION
        )?;
        if let Some(w) = &webhook {
            writeln!(
                out,
                "webhooks: POST {} signed with key {}",
                w.url, w.signature_key
            )?;
        }
        writeln!(
            out,
            "control API: {base_url}/__emulator/ (see tests/square-emulator/README.md)"
        )?;
        writeln!(
            out,
            "try: curl -H 'Authorization: Bearer {token}' {base_url}/v2/locations"
        )?;
        writeln!(out, "Press Ctrl-C to stop.")?;
        out.flush()?;
        tokio::signal::ctrl_c().await?;
        handle.stop().await;
        writeln!(out, "stopped")?;
        Ok(Status::Passed)
    })
}
