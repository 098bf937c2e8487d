//! Turns measurement reports into kube-burner-compatible documents and writes them to local files and Elasticsearch/OpenSearch.
