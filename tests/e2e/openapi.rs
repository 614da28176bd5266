//! The OpenAPI document (`host/server/openapi.json`) and the router agree: the host serves the
//! document it was built with, every documented operation is routed, every method the
//! document leaves out of a path is refused with `405`, and no `/v1` path outside it exists.
//! schemathesis then fuzzes a real `stowage serve` against the document.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::serve::{KEY, Server, curl, status_and_body};
use crate::{run_in, stderr, stdout};

const URL_SECRET: &str = "url-secret-0123456789abcdef0123456789";
const METHODS: [&str; 6] = ["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"];

/// A services host with both policies, a key and a URL secret, and one object the document's
/// examples name (`default`, `examples/a.txt`).
fn host(d: &Path) -> Server {
    let text = format!(
        "role = \"services\"\n[trust]\nallow_unsigned = true\nforce_allow_unsigned = true\n\
         [disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"data\" }}\n\
         [storage]\ndefault = \"local\"\n[[policies]]\nplugin = \"role-policy\"\n[[policies]]\nplugin = \"phi-tracking\"\n\
         [ledger]\npath = \"ledger.sqlite\"\n\
         [server]\ndev_mode = true\napi_keys = [{{ name = \"fuzz\", key = \"{KEY}\" }}]\nurl_secret = \"{URL_SECRET}\"\n"
    );
    std::fs::write(d.join("stowage.toml"), text).unwrap();
    std::fs::write(d.join("a.txt"), "an example\n").unwrap();
    let o = run_in(d, &["put", "default:examples/a.txt", "a.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    Server::start(d)
}

fn document() -> Value {
    serde_json::from_str(include_str!("../../host/server/openapi.json")).unwrap()
}

/// `template` with its parameters filled in from the document's examples.
fn concrete(template: &str) -> String {
    template.replace("{name}", "default").replace("{path}", "examples/a.txt").replace("{id}", "no-such-session")
}

/// (status, body) of `method url` with the key.
fn call(d: &Path, method: &str, url: &str) -> (String, String) {
    let auth = format!("Authorization: Bearer {KEY}");
    let mut args = vec!["-X", method, "-H", auth.as_str(), "-w", "\n%{http_code}"];
    if method == "HEAD" {
        args = vec!["-I", "-H", auth.as_str(), "-o", "/dev/null", "-w", "\n%{http_code}"];
    }
    args.push(url);
    status_and_body(&curl(d, &args))
}

#[test]
fn the_served_document_is_the_checked_in_one_and_every_operation_in_it_is_routed_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = host(d);
    let doc = document();

    let o = curl(d, &[&format!("{}/v1/openapi.json", server.url)]);
    let served: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(served, doc, "the host serves a different document from host/server/openapi.json");
    assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));

    let paths = doc["paths"].as_object().unwrap();
    let (mut routed, mut refused) = (0, 0);
    for (template, item) in paths {
        let url = format!("{}{}", server.url, concrete(template));
        for method in METHODS {
            // HEAD is a GET without the body (RFC 9110): a GET route answers it too.
            let documented =
                item.get(method.to_ascii_lowercase()).is_some() || (method == "HEAD" && item.get("get").is_some());
            let (status, body) = call(d, method, &url);
            if documented {
                // Any answer but "no such route" or "wrong method" shows the operation is routed.
                assert_ne!(status, "405", "{method} {template} is documented but not routed");
                assert!(!body.contains("no such route"), "{method} {template} is documented but not routed: {body}");
                assert_ne!(status, "000", "{method} {template}: no answer");
                routed += 1;
            } else {
                assert_eq!(status, "405", "{method} {template} is routed but not documented: {status} {body}");
                refused += 1;
            }
        }
    }
    assert!(routed >= 14, "only {routed} operations checked");
    eprintln!("openapi: {routed} documented operations routed, {refused} undocumented methods refused with 405");

    // Paths the document does not have are not routes, with a JSON error.
    for path in ["/v1/nope", "/v1/objects", "/v1/objects/default", "/v2/objects/default/a", "/v1/upload-sessions"] {
        let (status, body) = call(d, "GET", &format!("{}{path}", server.url));
        assert_eq!(status, "404", "GET {path}: {body}");
        let err: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"));
        assert!(err["error"].is_object() || err["error"].is_string(), "GET {path}: {body}");
    }
}

/// Cases per operation schemathesis generates (bounded: the whole run stays within a minute or two).
const CASES: &str = "60";

#[test]
fn schemathesis_finds_no_server_error_and_every_answer_matches_the_document() {
    let schemathesis = std::env::var_os("STOWAGE_TEST_SCHEMATHESIS").unwrap_or_else(|| {
        panic!("STOWAGE_TEST_SCHEMATHESIS is not set: run through `tests/run` (it installs schemathesis from PyPI into target/tools)")
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = host(d);
    std::fs::write(d.join("openapi.json"), include_str!("../../host/server/openapi.json")).unwrap();
    let report = d.join("junit.xml");
    // Every check but positive_data_acceptance: the document's schemas cannot say which
    // objects exist, so a valid request may well be answered 404.
    let o = Command::new(schemathesis)
        .current_dir(d)
        .arg("--config-file")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/schemathesis/schemathesis.toml"))
        .args([
            "run",
            "openapi.json",
            "--url",
            &server.url,
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", CASES, "--workers", "2", "--request-timeout", "20", "--no-color"])
        .args(["-H", &format!("Authorization: Bearer {KEY}")])
        .args(["--report", "junit", "--report-junit-path", report.to_str().unwrap()])
        // An object's download is opaque bytes under the label its client stored (hooks.py).
        .env("SCHEMATHESIS_HOOKS", Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/schemathesis/hooks.py"))
        .output()
        .unwrap();
    let out = stdout(&o);
    // Its summary: how many cases and operations, and what failed.
    let summary: Vec<&str> =
        out.lines().skip_while(|l| !l.contains("SUMMARY")).skip(1).filter(|l| !l.trim().is_empty()).collect();
    eprintln!("schemathesis:\n{}", summary.join("\n"));
    // For .ci/run's summary (cargo shows a passing test's output only on request).
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-summary.txt"),
        summary.join("\n") + "\n",
    );
    assert!(o.status.success(), "schemathesis found failures:\n{out}\n{}", stderr(&o));
    let junit = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(junit.contains("<testcase"), "no test cases in schemathesis' report:\n{out}");
    assert!(!junit.contains("<failure"), "{junit}");
}
