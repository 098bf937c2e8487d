//! Indexing and redaction: the Elasticsearch/OpenSearch target and local results settings, and
//! keeping the target's password out of logs, files and error messages.

use std::path::PathBuf;

use url::Url;

use super::checker::{Checker, flag};
use super::defaults;
use super::types::{EsTarget, Indexing};
use crate::cli::PlanArgs;

impl EsTarget {
    /// The server URL with any password replaced, safe for logs and files.
    pub fn redacted(&self) -> String {
        redact_url(&self.server)
    }
}

pub(super) fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("REDACTED"));
    }
    shown.to_string()
}

pub(super) fn serialize_redacted_url<S: serde::Serializer>(
    url: &Url,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

pub(super) fn plan_indexing(c: &mut Checker<'_>, cli: &PlanArgs) -> Indexing {
    let es = match (&cli.es_server, &cli.es_index) {
        (Some(server), Some(index)) => {
            let url = match Url::parse(server) {
                Ok(url)
                    if (url.scheme() == "http" || url.scheme() == "https")
                        && url.host().is_some() =>
                {
                    Some(url)
                }
                Ok(url) => {
                    c.problem(
                        &flag!(es_server),
                        redact_url(&url),
                        "must be an http:// or https:// URL with a host",
                    );
                    None
                }
                Err(e) => {
                    c.problem(
                        &flag!(es_server),
                        redact_text(server),
                        format!("not a valid URL ({e})"),
                    );
                    None
                }
            };
            if let Err(why) = check_es_index(index) {
                c.problem(&flag!(es_index), index, why);
            }
            url.map(|server| EsTarget {
                server,
                index: index.clone(),
            })
        }
        (Some(server), None) => {
            c.problem(
                &flag!(es_server),
                redact_text(server),
                "--es-server and --es-index must be given together",
            );
            None
        }
        (None, Some(index)) => {
            c.problem(
                &flag!(es_index),
                index,
                "--es-server and --es-index must be given together",
            );
            None
        }
        (None, None) => None,
    };
    Indexing {
        es,
        local_indexing: cli.local_indexing,
        results_dir: cli
            .results_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(defaults::RESULTS_DIR)),
    }
}

/// Hides a password in text that did not parse as a URL (best effort: anything between `:` and `@`).
fn redact_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &text[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    format!("{}{user}:REDACTED{}", &text[..scheme_end + 3], &text[at..])
                }
                None => text.to_string(),
            }
        }
        _ => text.to_string(),
    }
}

/// Elasticsearch/OpenSearch index name rules.
fn check_es_index(index: &str) -> Result<(), String> {
    if index.is_empty() {
        return Err("must not be empty".into());
    }
    if index.len() > 255 {
        return Err(format!("is {} bytes; at most 255", index.len()));
    }
    if index != index.to_lowercase() {
        return Err("must be lowercase".into());
    }
    if index == "." || index == ".." {
        return Err("must not be . or ..".into());
    }
    if index.starts_with(['-', '_', '+']) {
        return Err("must not start with -, _ or +".into());
    }
    if let Some(bad) = index.chars().find(|ch| "\\/*?\"<>| ,#:".contains(*ch)) {
        return Err(format!("must not contain {bad:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_text_hides_passwords_in_unparsable_urls() {
        assert_eq!(
            redact_text("http://u:secret@[bad/"),
            "http://u:REDACTED@[bad/"
        );
    }
}
