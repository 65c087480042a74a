//! Magento's exceptions as data: the raw phrase with its `%placeholders`, its parameters, the
//! aggregated validation errors, the PHP class, and the REST rendering of spec §8.
//!
//! A [`MagentoError`] is what a service method of the model returns when Magento would throw.
//! [`MagentoError::rest_body`] renders the body `Magento\Framework\Webapi\Rest\Response` writes
//! (`message` raw, `errors[]` only for aggregated exceptions, `parameters` only when the phrase
//! has arguments), and [`MagentoError::http_status`] the status `ErrorProcessor::maskException`
//! chooses (404 for `NoSuchEntityException`, 400 for every other `LocalizedException`).

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// A Magento `Phrase`: raw text with `%name` / `%1` placeholders and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phrase {
    text: Cow<'static, str>,
    params: PhraseParams,
}

/// The arguments of a [`Phrase`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PhraseParams {
    /// No arguments (rendered as `[]` in an `errors[]` entry).
    None,
    /// `%name` arguments, in the order Magento passes them.
    Named(Vec<(String, Value)>),
    /// `%1`, `%2` … arguments.
    Positional(Vec<Value>),
}

impl Phrase {
    /// A phrase without arguments.
    pub fn new(text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            text: text.into(),
            params: PhraseParams::None,
        }
    }

    /// A phrase with `%name` arguments.
    pub fn named<const N: usize>(
        text: impl Into<Cow<'static, str>>,
        params: [(&str, Value); N],
    ) -> Self {
        Self {
            text: text.into(),
            params: PhraseParams::Named(
                params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ),
        }
    }

    /// A phrase with `%1`, `%2` … arguments.
    pub fn positional(text: impl Into<Cow<'static, str>>, params: Vec<Value>) -> Self {
        Self {
            text: text.into(),
            params: PhraseParams::Positional(params),
        }
    }

    /// The raw text, placeholders kept (`"%field" can not be empty.`).
    pub fn raw(&self) -> &str {
        &self.text
    }

    /// The arguments.
    pub fn params(&self) -> &PhraseParams {
        &self.params
    }

    /// The arguments as Magento's REST layer writes them: `[]`, `{"name":…}` or `[…]`.
    pub fn params_json(&self) -> Value {
        match &self.params {
            PhraseParams::None => Value::Array(vec![]),
            PhraseParams::Named(pairs) => {
                let mut map = Map::new();
                for (k, v) in pairs {
                    map.insert(k.clone(), v.clone());
                }
                Value::Object(map)
            }
            PhraseParams::Positional(list) => Value::Array(list.clone()),
        }
    }

    /// Whether the phrase has arguments.
    pub fn has_params(&self) -> bool {
        match &self.params {
            PhraseParams::None => false,
            PhraseParams::Named(p) => !p.is_empty(),
            PhraseParams::Positional(p) => !p.is_empty(),
        }
    }

    /// The rendered text (`Renderer\Placeholder`: `strtr` with `%key` → value, longest first).
    pub fn render(&self) -> String {
        let pairs: Vec<(String, String)> = match &self.params {
            PhraseParams::None => return self.text.to_string(),
            PhraseParams::Named(p) => p
                .iter()
                .map(|(k, v)| (format!("%{k}"), php_value_string(v)))
                .collect(),
            PhraseParams::Positional(p) => p
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("%{}", i + 1), php_value_string(v)))
                .collect(),
        };
        strtr(&self.text, &pairs)
    }
}

impl fmt::Display for Phrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// PHP's string conversion of a phrase argument.
fn php_value_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "1".to_owned(),
        Value::Bool(false) | Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// PHP's `strtr($text, $pairs)`: at each position the longest matching key wins, and replaced
/// text is never scanned again.
fn strtr(text: &str, pairs: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let best = pairs
            .iter()
            .filter(|(k, _)| !k.is_empty() && rest.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len());
        if let Some((k, v)) = best {
            out.push_str(v);
            i += k.len();
        } else if let Some(ch) = rest.chars().next() {
            out.push(ch);
            i += ch.len_utf8();
        } else {
            break;
        }
    }
    out
}

/// The kind of exception, which decides the HTTP status and the PHP class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorKind {
    /// `NoSuchEntityException` (404).
    NoSuchEntity,
    /// `InputException` (400).
    Input,
    /// `Magento\Framework\Validation\ValidationException` (400, with `errors[]`).
    Validation,
    /// `CouldNotSaveException` (400).
    CouldNotSave,
    /// `CouldNotDeleteException` (400).
    CouldNotDelete,
    /// A plain `LocalizedException` (400).
    Localized,
    /// `Magento\Framework\Webapi\Exception` raised by the REST input processor (400).
    WebapiInput,
    /// `Magento\Framework\Webapi\Exception` for an unknown route (404).
    RouteNotFound,
    /// A PHP error Magento does not catch (500 outside developer mode).
    Internal,
}

impl ErrorKind {
    /// The PHP class Magento throws.
    pub fn exception_class(self) -> &'static str {
        match self {
            Self::NoSuchEntity => "Magento\\Framework\\Exception\\NoSuchEntityException",
            Self::Input => "Magento\\Framework\\Exception\\InputException",
            Self::Validation => "Magento\\Framework\\Validation\\ValidationException",
            Self::CouldNotSave => "Magento\\Framework\\Exception\\CouldNotSaveException",
            Self::CouldNotDelete => "Magento\\Framework\\Exception\\CouldNotDeleteException",
            Self::Localized => "Magento\\Framework\\Exception\\LocalizedException",
            Self::WebapiInput | Self::RouteNotFound => "Magento\\Framework\\Webapi\\Exception",
            Self::Internal => "Error",
        }
    }

    /// Whether the class extends `LocalizedException` (everything except PHP errors and the
    /// web-API exception).
    pub fn is_localized(self) -> bool {
        !matches!(
            self,
            Self::Internal | Self::WebapiInput | Self::RouteNotFound
        )
    }
}

/// A Magento exception: kind, message phrase, and (for aggregated exceptions) every error.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{}", message.render())]
pub struct MagentoError {
    /// What Magento throws.
    pub kind: ErrorKind,
    /// The exception message.
    pub message: Phrase,
    /// The aggregated errors of a `ValidationException` / multi-error `InputException`, in
    /// validator-chain order (every violation, not just the first).
    pub errors: Vec<Phrase>,
}

impl MagentoError {
    /// An exception without aggregated errors.
    pub fn new(kind: ErrorKind, message: Phrase) -> Self {
        Self {
            kind,
            message,
            errors: Vec::new(),
        }
    }

    /// `ValidationException` with its message and every error.
    pub fn validation(message: Phrase, errors: Vec<Phrase>) -> Self {
        Self {
            kind: ErrorKind::Validation,
            message,
            errors,
        }
    }

    /// `NoSuchEntityException`.
    pub fn no_such_entity(message: Phrase) -> Self {
        Self::new(ErrorKind::NoSuchEntity, message)
    }

    /// `InputException`.
    pub fn input(message: Phrase) -> Self {
        Self::new(ErrorKind::Input, message)
    }

    /// `LocalizedException`.
    pub fn localized(message: Phrase) -> Self {
        Self::new(ErrorKind::Localized, message)
    }

    /// `CouldNotSaveException`.
    pub fn could_not_save(message: Phrase) -> Self {
        Self::new(ErrorKind::CouldNotSave, message)
    }

    /// `CouldNotDeleteException`.
    pub fn could_not_delete(message: Phrase) -> Self {
        Self::new(ErrorKind::CouldNotDelete, message)
    }

    /// `"Input data is empty"` (empty batch).
    pub fn input_data_is_empty() -> Self {
        Self::input(Phrase::new("Input data is empty"))
    }

    /// The HTTP status of the REST response.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::NoSuchEntity | ErrorKind::RouteNotFound => 404,
            ErrorKind::Internal => 500,
            _ => 400,
        }
    }

    /// The PHP class.
    pub fn exception_class(&self) -> &'static str {
        self.kind.exception_class()
    }

    /// The rendered message (what PHP's `getMessage()` returns).
    pub fn rendered(&self) -> String {
        self.message.render()
    }

    /// The REST error body (spec §8.2).
    pub fn rest_body(&self) -> Value {
        let mut body = Map::new();
        body.insert(
            "message".to_owned(),
            Value::String(self.message.raw().to_owned()),
        );
        if !self.errors.is_empty() {
            body.insert(
                "errors".to_owned(),
                Value::Array(
                    self.errors
                        .iter()
                        .map(|e| {
                            let mut m = Map::new();
                            m.insert("message".to_owned(), Value::String(e.raw().to_owned()));
                            m.insert("parameters".to_owned(), e.params_json());
                            Value::Object(m)
                        })
                        .collect(),
                ),
            );
        }
        if self.message.has_params() {
            body.insert("parameters".to_owned(), self.message.params_json());
        }
        Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_placeholders_render_longest_first() {
        let p = Phrase::named(
            "Source item for %sku and %sourceCode does not exist",
            [("sku", json!("SKU-1")), ("sourceCode", json!("eu-999"))],
        );
        assert_eq!(
            p.render(),
            "Source item for SKU-1 and eu-999 does not exist"
        );
        let p = Phrase::positional("%1 and %2 and %10", vec![json!("a"), json!(2)]);
        assert_eq!(p.render(), "a and 2 and a0");
    }

    #[test]
    fn validation_body_lists_every_error_with_raw_messages() {
        let e = MagentoError::validation(
            Phrase::new("Validation Failed"),
            vec![
                Phrase::named("\"%field\" can not be empty.", [("field", json!("code"))]),
                Phrase::new("Can not save link related to Default Source or Default Stock"),
            ],
        );
        assert_eq!(e.http_status(), 400);
        assert_eq!(
            e.rest_body(),
            json!({"message": "Validation Failed", "errors": [
                {"message": "\"%field\" can not be empty.", "parameters": {"field": "code"}},
                {"message": "Can not save link related to Default Source or Default Stock",
                 "parameters": []}
            ]})
        );
    }

    #[test]
    fn no_such_entity_is_404_with_parameters() {
        let e = MagentoError::no_such_entity(Phrase::named(
            "Stock with id \"%value\" does not exist.",
            [("value", json!(-1))],
        ));
        assert_eq!(e.http_status(), 404);
        assert_eq!(
            e.rest_body(),
            json!({"message": "Stock with id \"%value\" does not exist.", "parameters": {"value": -1}})
        );
        assert_eq!(e.to_string(), "Stock with id \"-1\" does not exist.");
    }
}
