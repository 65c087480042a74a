//! Query strings and path ids, parsed so every error names its parameter.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::ApiError;

/// The largest page.
pub(crate) const MAX_LIMIT: u32 = 500;
/// The page size when `limit` is absent.
pub(crate) const DEFAULT_LIMIT: u32 = 50;
/// The longest `contains` text.
const MAX_CONTAINS: usize = 200;

/// A query string's parameters, each given at most once and all known to the route.
#[derive(Debug)]
pub(crate) struct Params(BTreeMap<String, String>);

impl Params {
    pub(crate) fn parse(query: &str, known: &[&str]) -> Result<Self, ApiError> {
        let mut map = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let k = k.into_owned();
            if !known.contains(&k.as_str()) {
                return Err(ApiError::bad(
                    &k,
                    format!(
                        "unknown parameter '{k}'; this route takes: {}",
                        known.join(", ")
                    ),
                ));
            }
            if map.insert(k.clone(), v.into_owned()).is_some() {
                return Err(ApiError::bad(&k, format!("parameter '{k}' is given twice")));
            }
        }
        Ok(Self(map))
    }

    /// A parameter's text; empty counts as absent.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `limit` (1..=500, default 50) and `offset` (default 0).
    pub(crate) fn page(&self) -> Result<(u32, u32), ApiError> {
        let limit = match self.text("limit") {
            None => DEFAULT_LIMIT,
            Some(t) => t
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad(
                        "limit",
                        format!("limit must be between 1 and {MAX_LIMIT} (got '{t}')"),
                    )
                })?,
        };
        let offset = match self.text("offset") {
            None => 0,
            Some(t) => t.parse::<u32>().map_err(|_| {
                ApiError::bad(
                    "offset",
                    format!("offset must be a whole number from 0 (got '{t}')"),
                )
            })?,
        };
        Ok((limit, offset))
    }

    /// `contains`: at most 200 characters.
    pub(crate) fn contains(&self) -> Result<Option<String>, ApiError> {
        match self.text("contains") {
            None => Ok(None),
            Some(t) if t.chars().count() > MAX_CONTAINS => Err(ApiError::bad(
                "contains",
                format!("contains must be at most {MAX_CONTAINS} characters"),
            )),
            Some(t) => Ok(Some(t.to_owned())),
        }
    }

    /// A snake_case enum parameter (`state=stalled`), listing the accepted values on error.
    pub(crate) fn choice<T: DeserializeOwned>(
        &self,
        name: &str,
        accepted: &[&str],
    ) -> Result<Option<T>, ApiError> {
        let Some(t) = self.text(name) else {
            return Ok(None);
        };
        serde_json::from_value(serde_json::Value::String(t.to_owned()))
            .map(Some)
            .map_err(|_| {
                ApiError::bad(
                    name,
                    format!("{name} '{t}' is not one of: {}", accepted.join(", ")),
                )
            })
    }
}

/// A numeric id from the path (`/api/records/{id}`).
pub(crate) fn path_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad(
            "id",
            format!("{what} id must be a whole number (got '{}')", clip(text)),
        )
    })
}

/// At most 60 characters of caller text, for echoing in errors.
pub(crate) fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        out.push('…');
    }
    out
}

/// Record states, as the API accepts them.
pub(crate) const STATES: [&str; 9] = [
    "received",
    "planned",
    "sent",
    "confirmed",
    "verified",
    "superseded",
    "settled",
    "failed",
    "stalled",
];

/// Record kinds, as the API accepts them.
pub(crate) const KINDS: [&str; 8] = [
    "pos_stock",
    "pos_sale",
    "pos_return",
    "fulfilment",
    "commerce_order",
    "webhook",
    "command_result",
    "operator",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_repeated_parameters_are_named() {
        let e = Params::parse("sate=stalled", &["state"]).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("sate"));
        let e = Params::parse("limit=1&limit=2", &["limit"]).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("limit"));
    }

    #[test]
    fn limit_bounds_name_the_field() {
        for bad in ["0", "501", "-1", "ten"] {
            let p = Params::parse(&format!("limit={bad}"), &["limit", "offset"]).unwrap();
            let e = p.page().unwrap_err();
            assert_eq!(e.body.field.as_deref(), Some("limit"), "{bad}");
            assert!(e.body.error.starts_with("limit must be between 1 and 500"));
        }
        let p = Params::parse("limit=500&offset=7", &["limit", "offset"]).unwrap();
        assert_eq!(p.page().unwrap(), (500, 7));
    }

    #[test]
    fn every_state_name_parses() {
        for s in STATES {
            let p = Params::parse(&format!("state={s}"), &["state"]).unwrap();
            let st: Option<tillbridge_core::sync::RecordState> =
                p.choice("state", &STATES).unwrap();
            assert!(st.is_some());
        }
        for k in KINDS {
            assert!(crate::store::RecordKind::parse(k).is_some(), "{k}");
        }
    }
}
