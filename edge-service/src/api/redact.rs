//! Redaction of the configuration view: no secret leaves through `GET /api/config`.

use serde_json::Value;

/// The redacted placeholder.
pub const REDACTED: &str = "***";

/// Key fragments that mark a value as secret (compared case-insensitively).
const SECRET_KEYS: [&str; 8] = [
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "credential",
    "authorization",
    "private",
];

fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| k.contains(s))
}

/// `config` with every secret replaced by `"***"`:
/// - any non-null value under a key that looks secret (`api_token`, `signature_key`,
///   `admin_password`, ...), whatever its shape;
/// - the password of any URL with credentials (`postgres://user:***@host/db`);
/// - any occurrence of one of `secrets` inside any string.
pub fn redact_config(config: Value, secrets: &[&str]) -> Value {
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    walk(config, &secrets)
}

fn walk(value: Value, secrets: &[&str]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if secret_key(&k) && !v.is_null() {
                        Value::String(REDACTED.to_owned())
                    } else {
                        walk(v, secrets)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| walk(v, secrets)).collect()),
        Value::String(s) => Value::String(scrub(&s, secrets)),
        other => other,
    }
}

fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = url_password_hidden(text).unwrap_or_else(|| text.to_owned());
    for s in secrets {
        if out.contains(s) {
            out = out.replace(s, REDACTED);
        }
    }
    out
}

/// `scheme://user:password@host/...` with the password replaced.
fn url_password_hidden(text: &str) -> Option<String> {
    if !text.contains("://") || !text.contains('@') {
        return None;
    }
    let mut url = url::Url::parse(text).ok()?;
    url.password()?;
    url.set_password(Some(REDACTED)).ok()?;
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_by_key_by_url_and_by_value_are_hidden() {
        let cfg = json!({
            "service": {"api_token": "tok-123", "listen": "127.0.0.1:8080",
                        "database": "postgres://tb:pw-456@db:5432/tb"},
            "commerce": {"token": null, "admin_password": {"nested": "x"}, "note": "uses abc-789 here"},
            "pos": [{"kind": "square", "webhook_signature_key": "sig-000", "id": "main"}]
        });
        let out = redact_config(cfg, &["abc-789"]);
        let text = out.to_string();
        for secret in ["tok-123", "pw-456", "abc-789", "sig-000", "nested"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(out["service"]["api_token"], "***");
        assert_eq!(out["service"]["listen"], "127.0.0.1:8080");
        assert_eq!(out["service"]["database"], "postgres://tb:***@db:5432/tb");
        assert_eq!(out["commerce"]["token"], Value::Null, "absent stays absent");
        assert_eq!(out["commerce"]["note"], "uses *** here");
        assert_eq!(out["pos"][0]["id"], "main");
    }
}
