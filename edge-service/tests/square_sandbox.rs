//! `tillbridge sandbox pos`, run as a user would: it prints where the emulator listens and the
//! token, serves Square's API with that token, and runs until stopped.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tillbridge");

/// Kills the sandbox (by its own pid) however the test ends.
struct Sandbox(Child);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Sandbox, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["sandbox", "pos", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let sandbox = Sandbox(child);
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("Press Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    (sandbox, lines)
}

fn base_url(lines: &[String]) -> String {
    lines[0]
        .strip_prefix("Square POS emulator listening on ")
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn sandbox_pos_serves_squares_api_with_the_given_token_and_a_demo_shop() {
    let (_sandbox, lines) = start(&["--token", "my-sandbox-token"]);
    assert_eq!(lines[1], "access token: my-sandbox-token");
    let base = base_url(&lines);
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{base}/v2/locations"))
        .bearer_auth("my-sandbox-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    let names: Vec<&str> = body["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["Hull (closed)", "Leeds Briggate", "York Stonegate"]
    );

    let res = http
        .get(format!("{base}/v2/locations"))
        .bearer_auth(tillbridge_square_emulator::DEFAULT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status().as_u16(),
        401,
        "only the given token is accepted"
    );
}

#[tokio::test]
async fn sandbox_pos_prints_the_default_token_and_can_start_empty() {
    let (_sandbox, lines) = start(&["--empty"]);
    assert_eq!(
        lines[1],
        format!(
            "access token: {} (default)",
            tillbridge_square_emulator::DEFAULT_TOKEN
        )
    );
    let base = base_url(&lines);
    let body: Value = reqwest::Client::new()
        .get(format!("{base}/v2/locations"))
        .bearer_auth(tillbridge_square_emulator::DEFAULT_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["locations"], serde_json::json!([]));
}
