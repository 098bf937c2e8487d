//! What the lab API refuses, byte for byte as kube-apiserver does: requests without the bearer token (401, anonymous
//! only on the public health and version paths), the kubeconfig's mode, body media types it cannot decode
//! (415/400), percent-encoded paths, and reads at resourceVersions it has not reached or no longer holds.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmbgp_lab_api::LabConfig;

/// One HTTP exchange, answered and closed by the server.
struct Reply {
    code: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Sends `method path` over HTTP/1.0 with `headers` and `body`.
async fn send(
    t: &common::TestLab,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: lab\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let response = common::raw_exchange(t, &bytes).await;
    let response = String::from_utf8(response).expect("utf-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    Reply {
        code,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn bearer(t: &common::TestLab) -> String {
    format!("Bearer {}", t.lab.token())
}

/// A GET with the lab's token.
async fn get(t: &common::TestLab, path: &str) -> Reply {
    let auth = bearer(t);
    send(t, "GET", path, &[("Authorization", &auth)], b"").await
}

fn bare_lab() -> LabConfig {
    LabConfig {
        controllers: false,
        ..Default::default()
    }
}

const UNAUTHORIZED: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;

#[tokio::test]
async fn only_the_token_opens_the_api_and_anonymous_users_see_the_public_paths_only() {
    let t = common::start(bare_lab()).await;
    let token = bearer(&t);
    let frr = json!({"apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
        "metadata": {"name": "injected"},
        "spec": {"raw": {"rawConfig": "router bgp 64513\n"}, "bgp": {"routers": [{"asn": 64513}]}}})
    .to_string();
    let frr_path = "/apis/frrk8s.metallb.io/v1beta1/namespaces/frr-k8s-system/frrconfigurations";
    let json_ct = ("Content-Type", "application/json");

    // No credentials, or credentials that are not the token: 401 with kube-apiserver's Status, nothing written.
    for headers in [
        vec![json_ct],
        vec![json_ct, ("Authorization", "Bearer not-the-token")],
        vec![json_ct, ("Authorization", "Basic YWRtaW46YWRtaW4=")],
    ] {
        let reply = send(&t, "POST", frr_path, &headers, frr.as_bytes()).await;
        assert_eq!(reply.code, 401, "{headers:?}: {}", reply.body);
        assert_eq!(reply.body, UNAUTHORIZED);
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/json")
        );
    }
    let reply = send(&t, "GET", "/api/v1/namespaces", &[], b"").await;
    assert_eq!((reply.code, reply.body.as_str()), (401, UNAUTHORIZED));
    let reply = send(&t, "GET", "/apis", &[], b"").await;
    assert_eq!(reply.code, 401, "discovery is not public: {}", reply.body);
    let reply = send(&t, "GET", "/openapi/v3", &[], b"").await;
    assert_eq!(reply.code, 401, "{}", reply.body);
    let frr_kind = t
        .lab
        .kind("frrk8s.metallb.io/v1beta1", "FRRConfiguration")
        .expect("kind");
    assert!(
        t.lab
            .store()
            .get_opt(frr_kind, Some("frr-k8s-system"), "injected")
            .is_none()
    );

    // system:public-info-viewer: anonymous GETs of the health and version paths.
    for path in ["/healthz", "/livez", "/readyz", "/version", "/version/"] {
        let reply = send(&t, "GET", path, &[], b"").await;
        assert_eq!(reply.code, 200, "{path}: {}", reply.body);
    }
    assert_eq!(
        send(&t, "GET", "/version", &[], b"").await.json()["gitVersion"],
        vmbgp_lab_api::nodes::KUBE_VERSION
    );
    // ...but only GETs, and a wrong token is refused there too (authentication fails before authorization).
    let reply = send(&t, "POST", "/healthz", &[], b"").await;
    assert_eq!(reply.code, 403, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "forbidden: User \"system:anonymous\" cannot post path \"/healthz\"",
            "reason": "Forbidden", "details": {}, "code": 403})
    );
    let reply = send(
        &t,
        "GET",
        "/healthz",
        &[("Authorization", "Bearer not-the-token")],
        b"",
    )
    .await;
    assert_eq!((reply.code, reply.body.as_str()), (401, UNAUTHORIZED));

    // The token opens everything; scheme case and trailing words do not matter, as in bearertoken.go.
    let reply = send(
        &t,
        "POST",
        frr_path,
        &[json_ct, ("Authorization", &token)],
        frr.as_bytes(),
    )
    .await;
    assert_eq!(reply.code, 201, "{}", reply.body);
    let lower = format!("bearer {} extra", t.lab.token());
    let reply = send(
        &t,
        "GET",
        "/api/v1/namespaces",
        &[("Authorization", &lower)],
        b"",
    )
    .await;
    assert_eq!(reply.code, 200, "{}", reply.body);

    // kube-rs reads the token from the kubeconfig; without it the same client is refused.
    let client = common::client(&t).await;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    assert!(namespaces.get("default").await.is_ok());
    let kc = kube::config::Kubeconfig::read_from(&t.kubeconfig).expect("kubeconfig");
    let mut anonymous =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    anonymous.auth_info.token = None;
    anonymous.default_retry = false;
    let anonymous: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(kube::Client::try_from(anonymous).expect("client"));
    match anonymous.get("default").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"))
        }
        other => panic!("expected 401, got {other:?}"),
    }
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn the_kubeconfig_holds_the_token_and_only_its_owner_can_read_it() {
    let a = common::start(bare_lab()).await;
    let b = common::start(bare_lab()).await;
    assert_ne!(a.lab.token(), b.lab.token(), "a token per lab");
    assert!(a.lab.token().len() >= 32, "at least 128 bits");
    let mode = std::fs::metadata(&a.kubeconfig)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&a.kubeconfig).expect("read");
    let config: Value = serde_saphyr::from_str(&text).expect("yaml");
    assert_eq!(config["users"][0]["user"]["token"], a.lab.token());

    // Rewriting over a world-readable file leaves a 0600 file with the new token.
    std::fs::write(&a.kubeconfig, "old").expect("write");
    std::fs::set_permissions(&a.kubeconfig, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    b.lab.write_kubeconfig(&a.kubeconfig).expect("rewrite");
    let mode = std::fs::metadata(&a.kubeconfig)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        std::fs::read_to_string(&a.kubeconfig)
            .expect("read")
            .contains(b.lab.token())
    );
    let leftovers: Vec<_> = std::fs::read_dir(a.kubeconfig.parent().expect("dir"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    a.lab.stop().await.expect("stop");
    b.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn bodies_in_media_types_the_lab_cannot_decode_are_refused_as_kube_apiserver_refuses_them() {
    let t = common::start(bare_lab()).await;
    let auth = bearer(&t);
    let with = |ct: &'static str| -> Vec<(&str, &str)> {
        vec![("Authorization", &auth), ("Content-Type", ct)]
    };
    let protobuf = "application/vnd.kubernetes.protobuf";
    let ns =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pb"}}).to_string();

    // Built-in kinds: the lab lists JSON and YAML only, so protobuf is 415 from input negotiation.
    let builtin_415 = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
        "reason": "UnsupportedMediaType", "code": 415});
    let reply = send(
        &t,
        "POST",
        "/api/v1/namespaces",
        &with(protobuf),
        ns.as_bytes(),
    )
    .await;
    assert_eq!((reply.code, reply.json()), (415, builtin_415.clone()));
    let reply = send(
        &t,
        "PUT",
        "/api/v1/namespaces/default",
        &with(protobuf),
        b"k8s\0\x0a\x00",
    )
    .await;
    assert_eq!((reply.code, reply.json()), (415, builtin_415.clone()));
    let reply = send(
        &t,
        "POST",
        "/api/v1/namespaces",
        &with("text/plain"),
        ns.as_bytes(),
    )
    .await;
    assert_eq!((reply.code, reply.json()), (415, builtin_415));
    let reply = send(
        &t,
        "PATCH",
        "/api/v1/namespaces/default",
        &with(protobuf),
        b"{}",
    )
    .await;
    assert_eq!(reply.code, 415, "{}", reply.body);
    assert_eq!(reply.json()["reason"], "UnsupportedMediaType");

    // Custom resources list protobuf (for their Tables) but cannot be decoded from it: 400 from the decoder.
    let frr_path = "/apis/frrk8s.metallb.io/v1beta1/namespaces/frr-k8s-system/frrconfigurations";
    let reply = send(&t, "POST", frr_path, &with(protobuf), b"\x0a\x03abc").await;
    assert_eq!(reply.code, 400, "{}", reply.body);
    assert_eq!(reply.json()["reason"], "BadRequest");
    assert_eq!(
        reply.json()["message"],
        "the object provided is unrecognized (must be of type FRRConfiguration): provided data does not appear to be a protobuf message, expected prefix [107 56 115 0] (0a03616263)"
    );
    let reply = send(&t, "POST", frr_path, &with("application/xml"), b"<x/>").await;
    assert_eq!(reply.code, 415, "{}", reply.body);
    assert_eq!(
        reply.json()["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    );

    // JSON (also without a Content-Type) and YAML still work.
    let reply = send(
        &t,
        "POST",
        "/api/v1/namespaces",
        &[("Authorization", &auth)],
        ns.as_bytes(),
    )
    .await;
    assert_eq!(reply.code, 201, "{}", reply.body);
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: pb-yaml\n";
    let reply = send(
        &t,
        "POST",
        "/api/v1/namespaces",
        &with("application/yaml"),
        yaml.as_bytes(),
    )
    .await;
    assert_eq!(reply.code, 201, "{}", reply.body);
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn percent_encoded_paths_are_decoded_before_they_are_split() {
    let t = common::start(bare_lab()).await;
    let reply = get(&t, "/api/v1/namespaces/kube%2Dsystem").await;
    assert_eq!(reply.code, 200, "{}", reply.body);
    assert_eq!(reply.json()["metadata"]["name"], "kube-system");
    let reply = get(&t, "/api/v1/namespaces/ku%62e-public").await;
    assert_eq!(reply.json()["metadata"]["name"], "kube-public");
    // Go decodes URL.Path before kube-apiserver splits it: an encoded slash separates segments.
    let reply = get(&t, "/api/v1/namespaces%2Fdefault").await;
    assert_eq!(reply.code, 200, "{}", reply.body);
    assert_eq!(reply.json()["metadata"]["name"], "default");
    let reply = get(&t, "/api/v1/namespaces/a%3Ab").await;
    assert_eq!(reply.code, 404, "{}", reply.body);
    assert_eq!(reply.json()["message"], "namespaces \"a:b\" not found");
    let reply = get(&t, "/%68ealthz").await;
    assert_eq!(reply.code, 200, "{}", reply.body);
    // A malformed escape is net/http's plain 400, before any handler.
    for path in ["/api/v1/namespaces/%zz", "/api/v1/namespaces/default%2"] {
        let reply = get(&t, path).await;
        assert_eq!(
            (reply.code, reply.body.as_str()),
            (400, "400 Bad Request"),
            "{path}"
        );
    }
    t.lab.stop().await.expect("stop");
}

fn created_rv(reply: &Reply) -> u64 {
    assert_eq!(reply.code, 201, "{}", reply.body);
    reply.json()["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

async fn create_namespace(t: &common::TestLab, name: &str) -> u64 {
    let auth = bearer(t);
    let body =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).to_string();
    created_rv(
        &send(
            t,
            "POST",
            "/api/v1/namespaces",
            &[("Authorization", &auth)],
            body.as_bytes(),
        )
        .await,
    )
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn reads_at_resource_versions_ahead_time_out_as_the_watch_cache_does() {
    let t = common::start(bare_lab()).await;
    let current = t.lab.store().resource_version();
    let ahead = current + 1000;
    let started = Instant::now();
    let paths = [
        format!("/api/v1/namespaces?resourceVersionMatch=Exact&resourceVersion={ahead}"),
        format!("/api/v1/namespaces?resourceVersionMatch=NotOlderThan&resourceVersion={ahead}"),
        format!("/api/v1/namespaces/default?resourceVersion={ahead}"),
        format!(
            "/api/v1/namespaces?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion={ahead}&timeoutSeconds=10"
        ),
    ];
    let (exact, not_older, get_one, watch_list) = tokio::join!(
        get(&t, &paths[0]),
        get(&t, &paths[1]),
        get(&t, &paths[2]),
        get(&t, &paths[3]),
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2900),
        "waited only {waited:?}"
    );
    for reply in [&exact, &not_older, &get_one] {
        assert_eq!(reply.code, 504, "{}", reply.body);
        assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
        assert_eq!(
            reply.json(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("Timeout: Too large resource version: {ahead}, current: {current}"),
                "reason": "Timeout",
                "details": {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                    "retryAfterSeconds": 1},
                "code": 504})
        );
    }
    // A watch-list has already answered 200: its 504 comes as the stream's only event.
    assert_eq!(watch_list.code, 200, "{}", watch_list.body);
    let event: Value = serde_json::from_str(watch_list.body.trim()).expect("one event");
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 504);
    assert_eq!(
        event["object"]["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );

    // A resourceVersion reached during the wait is served.
    let target = t.lab.store().resource_version() + 1;
    let path = format!("/api/v1/namespaces?resourceVersion={target}");
    let (reply, _) = tokio::join!(get(&t, &path), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        create_namespace(&t, "late").await
    });
    assert_eq!(reply.code, 200, "{}", reply.body);
    assert!(names(&reply.json()).contains(&"late".to_string()));
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn exact_lists_and_list_pages_show_the_state_at_their_resource_version_until_it_is_compacted()
{
    let t = common::start(bare_lab()).await;
    let at_a = create_namespace(&t, "exact-a").await;
    create_namespace(&t, "exact-b").await;
    let auth = bearer(&t);
    let reply = send(
        &t,
        "DELETE",
        "/api/v1/namespaces/exact-a",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert!(reply.code < 300, "{}", reply.body);
    let reply = get(
        &t,
        &format!("/api/v1/namespaces?resourceVersionMatch=Exact&resourceVersion={at_a}"),
    )
    .await;
    assert_eq!(reply.code, 200, "{}", reply.body);
    let list = reply.json();
    assert_eq!(list["metadata"]["resourceVersion"], at_a.to_string());
    let seen = names(&list);
    assert!(seen.contains(&"exact-a".to_string()), "{seen:?}");
    assert!(!seen.contains(&"exact-b".to_string()), "{seen:?}");
    let a = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["metadata"]["name"] == "exact-a")
        .expect("exact-a");
    assert_eq!(a["metadata"]["resourceVersion"], at_a.to_string());
    assert!(a["metadata"].get("deletionTimestamp").is_none());
    // The legacy form (limit and a resourceVersion) is exact too.
    let reply = get(
        &t,
        &format!("/api/v1/namespaces?limit=500&resourceVersion={at_a}"),
    )
    .await;
    assert_eq!(
        reply.json()["metadata"]["resourceVersion"],
        at_a.to_string()
    );
    assert!(!names(&reply.json()).contains(&"exact-b".to_string()));
    // NotOlderThan and no match serve the newest state.
    let reply = get(
        &t,
        &format!("/api/v1/namespaces?resourceVersionMatch=NotOlderThan&resourceVersion={at_a}"),
    )
    .await;
    assert!(names(&reply.json()).contains(&"exact-b".to_string()));

    // The pages of a paginated list are one snapshot: an object created between pages is not in later ones.
    let first = get(&t, "/api/v1/namespaces?limit=2").await.json();
    let mut seen = names(&first);
    let mut next = first["metadata"]["continue"].as_str().map(str::to_string);
    create_namespace(&t, "zz-between-pages").await;
    while let Some(token) = next {
        let page = get(&t, &format!("/api/v1/namespaces?limit=2&continue={token}"))
            .await
            .json();
        assert_eq!(
            page["metadata"]["resourceVersion"],
            first["metadata"]["resourceVersion"]
        );
        seen.extend(names(&page));
        next = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert!(seen.contains(&"exact-b".to_string()), "{seen:?}");
    assert!(!seen.contains(&"zz-between-pages".to_string()), "{seen:?}");

    // After compaction the state is gone: 410 as etcd answers.
    t.lab.expire_watches();
    let reply = get(
        &t,
        &format!("/api/v1/namespaces?resourceVersionMatch=Exact&resourceVersion={at_a}"),
    )
    .await;
    assert_eq!(reply.code, 410, "{}", reply.body);
    assert_eq!(reply.json()["reason"], "Expired");
    assert_eq!(
        reply.json()["message"],
        "The resourceVersion for the provided list is too old."
    );
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn bad_read_parameter_combinations_are_invalid_list_options() {
    let t = common::start(bare_lab()).await;
    let invalid = |message: &str, causes: Value| {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("ListOptions.meta.k8s.io \"\" is invalid: {message}"), "reason": "Invalid",
            "details": {"group": "meta.k8s.io", "kind": "ListOptions", "causes": causes}, "code": 422})
    };
    let forbidden = |detail: &str| json!({"reason": "FieldValueForbidden", "message": format!("Forbidden: {detail}"), "field": "resourceVersionMatch"});
    let cases = [
        (
            "/api/v1/namespaces?resourceVersionMatch=Exact",
            invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                json!([forbidden(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided"
                )]),
            ),
        ),
        (
            "/api/v1/namespaces?resourceVersionMatch=Exact&resourceVersion=0",
            invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                json!([forbidden(
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""
                )]),
            ),
        ),
        (
            "/api/v1/namespaces?resourceVersionMatch=Newest&resourceVersion=1",
            invalid(
                "resourceVersionMatch: Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\"",
                json!([{"reason": "FieldValueNotSupported", "field": "resourceVersionMatch",
                    "message": "Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\""}]),
            ),
        ),
        (
            "/api/v1/namespaces?watch=true&resourceVersionMatch=NotOlderThan&resourceVersion=1",
            invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                json!([forbidden(
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
                )]),
            ),
        ),
        (
            "/api/v1/namespaces?watch=true&sendInitialEvents=true",
            invalid(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                json!([forbidden(
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                )]),
            ),
        ),
        (
            "/api/v1/namespaces?sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
            invalid(
                "[resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided, sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list]",
                json!([forbidden("resourceVersionMatch is forbidden unless resourceVersion is provided"),
                    {"reason": "FieldValueForbidden", "message": "Forbidden: sendInitialEvents is forbidden for list", "field": "sendInitialEvents"}]),
            ),
        ),
    ];
    for (path, status) in cases {
        let reply = get(&t, path).await;
        assert_eq!(reply.code, 422, "{path}: {}", reply.body);
        assert_eq!(reply.json(), status, "{path}");
    }
    let reply = get(&t, "/api/v1/namespaces?resourceVersion=soon").await;
    assert_eq!(reply.code, 400, "{}", reply.body);
    let reply = get(&t, "/api/v1/namespaces?limit=1").await;
    let token = reply.json()["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    let reply = get(
        &t,
        &format!("/api/v1/namespaces?limit=1&continue={token}&resourceVersion=3"),
    )
    .await;
    assert_eq!(reply.code, 400, "{}", reply.body);
    assert_eq!(
        reply.json()["message"],
        "specifying resource version is not allowed when using continue"
    );
    t.lab.stop().await.expect("stop");
}
