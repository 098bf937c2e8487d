//! `_bulk` indexing: NDJSON chunks under the size limit, whole-request and per-item retries,
//! and the per-document outcome the server reported.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::budget::seconds;
use super::client::{is_retryable, is_retryable_code, retry_after};
use super::{Budget, EsClient, EsError, GaveUp};
use crate::document::Document;

/// A document that could not be indexed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexFailure {
    pub id: String,
    pub metric_name: String,
    /// HTTP or item status of the last attempt; `None` for transport errors (timeouts, refused).
    pub status: Option<u16>,
    pub reason: String,
}

/// What an upload achieved, as the server reported it item by item. The harness exits 6 unless
/// `is_complete()`; the documents stay in `results/<uuid>/` either way.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexOutcome {
    /// Redacted server URL and index.
    pub target: String,
    pub submitted: usize,
    /// Documents the server did not have (item result `created`).
    pub indexed: usize,
    /// Documents the server already had under the same deterministic id (item result `updated`
    /// or `noop`): overwritten in place, never duplicated.
    pub already_indexed: usize,
    /// Bulk HTTP requests sent, retries included.
    pub requests: usize,
    pub failures: Vec<IndexFailure>,
    /// Set when the deadline ended the upload with documents still unindexed.
    pub gave_up: Option<GaveUp>,
}

impl IndexOutcome {
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }
}

impl EsClient {
    /// Indexes documents with `_bulk` under a fresh deadline; see [`EsClient::upload`].
    pub async fn index_documents(&self, documents: &[Document]) -> IndexOutcome {
        self.index_documents_within(documents, &mut self.budget())
            .await
    }

    /// Makes sure the index exists, then indexes `documents`, all under one deadline
    /// (`--es-timeout`). Every document is sent with its deterministic id as an `index` action,
    /// so the server's answer per item says whether it already had it (`updated`) or not
    /// (`created`); nothing is skipped on the strength of local records, and nothing is ever
    /// duplicated. `Err` when the index could not be checked or created (nothing was sent).
    pub async fn upload(&self, documents: &[Document]) -> Result<IndexOutcome, EsError> {
        let mut budget = self.budget();
        self.ensure_index_within(&mut budget).await?;
        Ok(self.index_documents_within(documents, &mut budget).await)
    }

    /// Indexes documents with `_bulk`, retrying whole requests on connection errors, timeouts,
    /// 429 and 5xx and single items on 429/5xx item statuses, until `budget` runs out; what
    /// still fails is listed in the outcome.
    async fn index_documents_within(
        &self,
        documents: &[Document],
        budget: &mut Budget,
    ) -> IndexOutcome {
        let mut outcome = IndexOutcome {
            target: self.target(),
            submitted: documents.len(),
            indexed: 0,
            already_indexed: 0,
            requests: 0,
            failures: Vec::new(),
            gave_up: None,
        };
        // Redact again: documents read from disk may predate this client's credentials.
        let lines: Vec<(usize, String)> = documents
            .iter()
            .enumerate()
            .map(|(i, document)| {
                let mut body = document.body().clone();
                self.redactor.redact_value(&mut body);
                let action = json!({"index": {"_index": self.index, "_id": document.id()}});
                (i, format!("{action}\n{body}\n"))
            })
            .collect();
        let mut chunks: std::collections::VecDeque<Vec<(usize, String)>> = Default::default();
        let mut chunk: Vec<(usize, String)> = Vec::new();
        let mut chunk_bytes = 0;
        for line in lines {
            if !chunk.is_empty() && chunk_bytes + line.1.len() > self.max_bulk_bytes {
                chunks.push_back(std::mem::take(&mut chunk));
                chunk_bytes = 0;
            }
            chunk_bytes += line.1.len();
            chunk.push(line);
        }
        if !chunk.is_empty() {
            chunks.push_back(chunk);
        }
        while let Some(chunk) = chunks.pop_front() {
            if let Some(too_large) = self
                .send_chunk(documents, chunk, &mut outcome, budget)
                .await
            {
                // 413: the server's request size limit is below ours; halve and try again.
                let mut first = too_large;
                let second = first.split_off(first.len() / 2);
                chunks.push_front(second);
                chunks.push_front(first);
            }
        }
        if outcome.is_complete() {
            info!(target = %outcome.target, created = outcome.indexed, already_present = outcome.already_indexed, requests = outcome.requests, "indexed documents");
        } else {
            warn!(target = %outcome.target, created = outcome.indexed, already_present = outcome.already_indexed, failed = outcome.failures.len(), "some documents could not be indexed; they remain in the results directory");
        }
        outcome
    }

    /// Sends one bulk request with retries. Returns the chunk back, unsent, when the server
    /// answered 413 and the chunk can still be split.
    async fn send_chunk(
        &self,
        documents: &[Document],
        mut pending: Vec<(usize, String)>,
        outcome: &mut IndexOutcome,
        budget: &mut Budget,
    ) -> Option<Vec<(usize, String)>> {
        // Last problem per pending document position, for the residual failure report.
        let mut last: BTreeMap<usize, (Option<u16>, String)> = BTreeMap::new();
        let max_attempts = self.retry.max_attempts.max(1);
        let mut deadline_passed = false;
        for attempt in 1..=max_attempts {
            let Some(timeout) = budget.request_timeout(self.request_timeout) else {
                deadline_passed = true;
                break;
            };
            let body: String = pending.iter().map(|(_, line)| line.as_str()).collect();
            outcome.requests += 1;
            budget.attempts += 1;
            let sent = self
                // wait_for: documents are searchable when the request returns, so a `compare`
                // right after a run finds them (kube-burner sleeps for this instead).
                .request(reqwest::Method::POST, "_bulk?refresh=wait_for")
                .header("Content-Type", "application/x-ndjson")
                .body(body)
                .timeout(timeout)
                .send()
                .await;
            let mut retry_after = None;
            let mut retry: Vec<(usize, String)> = Vec::new();
            // The response body is read under the same timeout as the request.
            let answered = match sent {
                Err(error) => Err(self.describe(&error)),
                Ok(response) if response.status().is_success() => match response.text().await {
                    Ok(text) => Ok(text),
                    Err(error) => Err(self.describe(&error)),
                },
                Ok(response)
                    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && pending.len() > 1 =>
                {
                    warn!(target = %self.target(), documents = pending.len(), "bulk request too large for the server; splitting it");
                    return Some(pending);
                }
                Ok(response) => {
                    let status = response.status();
                    retry_after = self::retry_after(&response);
                    let problem = self.response_problem(response).await;
                    if is_retryable(status) {
                        for (i, _) in &pending {
                            last.insert(*i, (Some(status.as_u16()), problem.clone()));
                        }
                        budget.last_problem = Some(problem);
                        retry = pending;
                    } else {
                        for (i, _) in pending {
                            outcome.failures.push(failure(
                                documents,
                                i,
                                Some(status.as_u16()),
                                problem.clone(),
                            ));
                            last.remove(&i);
                        }
                    }
                    pending = Vec::new();
                    Ok(String::new())
                }
            };
            match answered {
                Err(problem) => {
                    for (i, _) in &pending {
                        last.insert(*i, (None, problem.clone()));
                    }
                    budget.last_problem = Some(problem);
                    retry = std::mem::take(&mut pending);
                }
                Ok(_) if pending.is_empty() => {}
                Ok(text) => match parse_bulk_items(&text, pending.len()) {
                    Some(items) => {
                        for ((i, line), (status, reason)) in
                            std::mem::take(&mut pending).into_iter().zip(items)
                        {
                            if status == 201 {
                                outcome.indexed += 1;
                                last.remove(&i);
                            } else if (200..300).contains(&status) {
                                // `updated` / `noop`: the server had it under this id.
                                outcome.already_indexed += 1;
                                last.remove(&i);
                            } else if is_retryable_code(status) {
                                budget.last_problem =
                                    Some(format!("item status {status}: {reason}"));
                                last.insert(i, (Some(status), reason));
                                retry.push((i, line));
                            } else {
                                outcome
                                    .failures
                                    .push(failure(documents, i, Some(status), reason));
                                last.remove(&i);
                            }
                        }
                    }
                    None => {
                        let problem =
                            "bulk response did not list one result per document".to_owned();
                        for (i, _) in &pending {
                            last.insert(*i, (None, problem.clone()));
                        }
                        budget.last_problem = Some(problem);
                        retry = std::mem::take(&mut pending);
                    }
                },
            }
            if retry.is_empty() {
                return None;
            }
            pending = retry;
            if attempt == max_attempts {
                break;
            }
            let delay = self.retry.backoff(attempt, retry_after);
            if delay >= budget.remaining() {
                warn!(target = %self.target(), attempt, retrying = pending.len(), "bulk indexing incomplete; the deadline passes before another attempt");
                deadline_passed = true;
                break;
            }
            warn!(target = %self.target(), attempt, retrying = pending.len(), problem = budget.last_problem.as_deref().unwrap_or_default(), next_delay_ms = delay.as_millis() as u64, remaining_ms = budget.remaining().as_millis() as u64, "bulk indexing incomplete; retrying");
            tokio::time::sleep(delay).await;
        }
        if deadline_passed {
            outcome.gave_up = Some(budget.gave_up("bulk indexing", true));
        }
        for (i, _) in pending {
            let (status, reason) = last
                .remove(&i)
                .unwrap_or((None, "not sent before the deadline".to_owned()));
            let reason = if deadline_passed {
                format!(
                    "deadline (--es-timeout {}) passed: {reason}",
                    seconds(budget.limit.as_secs_f64())
                )
            } else {
                format!("gave up after {max_attempts} attempts: {reason}")
            };
            outcome.failures.push(failure(documents, i, status, reason));
        }
        None
    }
}

fn failure(documents: &[Document], i: usize, status: Option<u16>, reason: String) -> IndexFailure {
    // `i` always indexes `documents` (positions come from enumerating it).
    let (id, metric_name) = documents
        .get(i)
        .map(|d| (d.id().to_owned(), d.metric_name().to_owned()))
        .unwrap_or_default();
    IndexFailure {
        id,
        metric_name,
        status,
        reason,
    }
}

/// `(status, reason)` per item of a `_bulk` response, in request order.
pub fn parse_bulk_items(text: &str, expected: usize) -> Option<Vec<(u16, String)>> {
    let body: Value = serde_json::from_str(text).ok()?;
    let items = body.get("items")?.as_array()?;
    if items.len() != expected {
        return None;
    }
    items
        .iter()
        .map(|item| {
            let result = item.as_object()?.values().next()?;
            let status = u16::try_from(result.get("status")?.as_u64()?).ok()?;
            let reason = match result.get("error") {
                Some(error) => format!(
                    "{}: {}",
                    error.get("type").and_then(Value::as_str).unwrap_or("error"),
                    error.get("reason").and_then(Value::as_str).unwrap_or("")
                ),
                None => String::new(),
            };
            Some((status, reason))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_items_are_parsed_in_order() {
        let text = r#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#;
        assert_eq!(
            parse_bulk_items(text, 2),
            Some(vec![
                (201, String::new()),
                (
                    429,
                    "es_rejected_execution_exception: queue full".to_owned()
                )
            ])
        );
        assert_eq!(parse_bulk_items(text, 3), None);
        assert_eq!(parse_bulk_items("not json", 1), None);
    }
}
