//! Keeps credentials out of everything the reporters write: URL userinfo and known secret strings
//! are replaced by `***` in log lines, errors, result files, reports and indexed documents.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

/// What replaces a credential.
pub const REDACTED: &str = "***";

/// A credential. `Debug` and `Display` never show it; only the HTTP layer calls `expose`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Removes URL userinfo anywhere in `text` and every registered secret (also in its
/// percent-encoded form, as it appears inside URLs).
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    pub fn new() -> Self {
        Redactor::default()
    }

    /// Registers a secret; empty strings are ignored (they would match everywhere).
    pub fn add_secret(&mut self, secret: &str) {
        for form in [
            secret.to_owned(),
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
            percent_encode_userinfo(secret),
        ] {
            if !form.is_empty() && !self.secrets.contains(&form) {
                self.secrets.push(form);
            }
        }
        // Longest first so a secret that contains another is replaced whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    pub fn with_secret(mut self, secret: &Secret) -> Self {
        self.add_secret(secret.expose());
        self
    }

    /// Merges another redactor's secrets into this one.
    pub fn merge(&mut self, other: &Redactor) {
        for secret in &other.secrets {
            self.add_secret(secret);
        }
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = redact_url_userinfo(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }

    /// Redacts every string (and object key) inside a JSON value.
    pub fn redact_value(&self, value: &mut Value) {
        match value {
            Value::String(text) => {
                if let Cow::Owned(redacted) = self.redact(text) {
                    *text = redacted;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.redact_value(item)),
            Value::Object(map) => {
                let needs_key_change = map.keys().any(|k| matches!(self.redact(k), Cow::Owned(_)));
                if needs_key_change {
                    let old = std::mem::take(map);
                    for (key, item) in old {
                        map.insert(self.redact(&key).into_owned(), item);
                    }
                }
                map.values_mut().for_each(|item| self.redact_value(item));
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

fn percent_encode_userinfo(secret: &str) -> String {
    // What `url` does to a password set through `Url::set_password` (userinfo encode set).
    let mut url = match url::Url::parse("http://host/") {
        Ok(url) => url,
        Err(_) => return String::new(),
    };
    if url.set_password(Some(secret)).is_err() {
        return String::new();
    }
    url.password().unwrap_or_default().to_owned()
}

/// Replaces the userinfo of every `scheme://user:pass@host` in `text` with `***`.
pub fn redact_url_userinfo(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`' | ',' | ';'
                ) || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_userinfo_is_removed() {
        assert_eq!(
            redact_url_userinfo("--es-server=https://elastic:s3cr3t@es.example:9200/x other"),
            "--es-server=https://***@es.example:9200/x other"
        );
        assert_eq!(
            redact_url_userinfo("a http://u:p@h b https://h2/c?d=http://x:y@z"),
            "a http://***@h b https://h2/c?d=http://***@z"
        );
        assert_eq!(redact_url_userinfo("no url user@host"), "no url user@host");
    }

    #[test]
    fn registered_secrets_are_removed_in_plain_and_encoded_form() {
        let redactor = Redactor::new().with_secret(&Secret::new("p@ss word/1"));
        assert_eq!(redactor.redact("x p@ss word/1 y"), "x *** y");
        assert_eq!(redactor.redact("pw=p%40ss+word%2F1"), "pw=***");
        let mut value = json!({"flags": {"es": "https://u:p@h", "p@ss word/1": ["p@ss word/1"]}});
        redactor.redact_value(&mut value);
        assert_eq!(
            value,
            json!({"flags": {"es": "https://***@h", "***": ["***"]}})
        );
        assert_eq!(format!("{:?}", Secret::new("abc")), "Secret(***)");
    }
}
