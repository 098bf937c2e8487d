//! Reading a run's summary documents back from the index, for `compare` against ES uuids.

use serde_json::{Value, json};

use super::{Budget, EsClient, EsError};
use crate::document::{self, Document};

impl EsClient {
    /// Quantile documents and the `jobSummary` of one run, for `compare` against ES uuids,
    /// under a fresh deadline.
    pub async fn fetch_run_summaries(&self, uuid: &str) -> Result<Vec<Document>, EsError> {
        self.fetch_run_summaries_within(uuid, &mut self.budget())
            .await
    }

    /// [`EsClient::fetch_run_summaries`] within an operation's budget (a `compare` fetching two
    /// runs spends one deadline).
    pub async fn fetch_run_summaries_within(
        &self,
        uuid: &str,
        budget: &mut Budget,
    ) -> Result<Vec<Document>, EsError> {
        let search_err = |problem: String| EsError::Search {
            url: self.display_url(),
            uuid: uuid.to_owned(),
            problem,
        };
        let metrics: Vec<&str> = [
            document::JOB_SUMMARY,
            document::VMI_LATENCY_QUANTILES,
            document::ROUTE_CONVERGENCE_QUANTILES,
            document::VM_REACHABILITY_QUANTILES,
            document::VM_THROUGHPUT_QUANTILES,
            document::BGP_SESSION_QUANTILES,
            document::VM_MIGRATION_QUANTILES,
        ]
        .to_vec();
        let query = json!({
            "size": 10000,
            "query": {"bool": {"filter": [
                {"term": {"uuid.keyword": uuid}},
                {"terms": {"metricName.keyword": metrics}}
            ]}}
        });
        let response = self
            .send_retrying(budget, &format!("searching run {uuid}"), || {
                self.request(reqwest::Method::POST, &format!("{}/_search", self.index))
                    .json(&query)
            })
            .await?;
        if !response.status().is_success() {
            return Err(search_err(self.response_problem(response).await));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| search_err(self.describe(&e)))?;
        let hits = body
            .pointer("/hits/hits")
            .and_then(Value::as_array)
            .ok_or_else(|| search_err("response has no hits.hits".to_owned()))?;
        let mut documents = Vec::new();
        for hit in hits {
            if let Some(source) = hit.get("_source") {
                let document = Document::from_value(source.clone())
                    .map_err(|e| search_err(format!("unusable document: {e}")))?;
                documents.push(document);
            }
        }
        Ok(documents)
    }
}
