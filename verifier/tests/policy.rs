//! The policy language end to end: the ready policies, every rule firing and not firing, on
//! hand-built audits, WAT modules and the checked-in example components.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The policy language itself is specified in policies/README.md; the tests that check a
// format of docs/protocol.md name its section.

use gridreg_protocol::SignerKey;
use gridreg_verifier::policy::{DriftAction, Mode};
use gridreg_verifier::taxonomy::classify_component_import;
use gridreg_verifier::{
    Audit, Class, Date, Import, Kind, Policy, Rule, Severity, Subject, Verdict, audit,
};
use proptest::prelude::*;

const DEFAULT: &str = include_str!("../../policies/default.toml");
const STRICT: &str = include_str!("../../policies/strict.toml");
const HTTP_PROXY: &str = include_str!("../../policies/http-proxy.toml");
const CI: &str = include_str!("../../policies/ci.toml");

const HELLO: &[u8] = include_bytes!("../../examples/wasm/hello.wasm");
const HTTP_CLIENT: &[u8] = include_bytes!("../../examples/wasm/http-client.wasm");
const TCP_CLIENT: &[u8] = include_bytes!("../../examples/wasm/tcp-client.wasm");
const ENV_READER: &[u8] = include_bytes!("../../examples/wasm/env-reader.wasm");
const FILE_READER: &[u8] = include_bytes!("../../examples/wasm/file-reader.wasm");

fn today() -> Date {
    Date::from_ymd(2026, 11, 21).unwrap()
}

fn component(imports: &[&str]) -> Audit {
    let mut imports: Vec<Import> = imports
        .iter()
        .map(|n| Import {
            name: n.to_string(),
            class: classify_component_import(n),
        })
        .collect();
    // Real audits list imports sorted and unique by name.
    imports.sort();
    imports.dedup_by(|a, b| a.name == b.name);
    let mut capabilities: Vec<Class> = imports.iter().map(|i| i.class.clone()).collect();
    capabilities.sort();
    capabilities.dedup();
    Audit {
        kind: Kind::Component,
        size: 1000,
        digest: gridreg_protocol::Digest([0; 32]),
        imports,
        exports: vec![],
        capabilities,
        producers: vec![],
    }
}

fn policy(text: &str) -> Policy {
    Policy::parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn eval(p: &Policy, a: &Audit) -> gridreg_verifier::Evaluation {
    p.evaluate(&Subject::new(a, today()))
}

fn rules(e: &gridreg_verifier::Evaluation) -> Vec<&'static str> {
    e.violations.iter().map(|v| v.rule.id()).collect()
}

/// The error a bad policy gives, as `line:col: message` without the file name.
fn parse_error(text: &str) -> (usize, usize, String) {
    let e = Policy::parse(text, "policies/x.toml").expect_err("policy should be rejected");
    assert!(
        e.to_string()
            .starts_with(&format!("policies/x.toml:{}:{}: ", e.line, e.column)),
        "{e}"
    );
    (e.line, e.column, e.message)
}

// ---------------------------------------------------------------- ready policies

#[test]
fn every_ready_policy_parses() {
    for (text, name) in [
        (DEFAULT, "default"),
        (STRICT, "strict"),
        (HTTP_PROXY, "http-proxy"),
        (CI, "ci"),
    ] {
        let p = Policy::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name(), name);
        assert_eq!(p.mode(), Mode::Enforce);
        assert!(p.signers().is_none());
    }
    assert_eq!(policy(STRICT).drift(), DriftAction::Deny);
    assert_eq!(policy(CI).drift(), DriftAction::Deny);
    assert_eq!(policy(CI).max_size(), Some(50 * 1024 * 1024));
    assert_eq!(
        policy(HTTP_PROXY).world_target(),
        Some("wasi:http/proxy@0.2.0")
    );
}

#[test]
fn default_policy_on_the_example_components() {
    let p = policy(DEFAULT);
    let hello = eval(&p, &audit(HELLO).unwrap());
    assert_eq!(hello.verdict, Verdict::Pass, "{:?}", hello.violations);

    let tcp = eval(&p, &audit(TCP_CLIENT).unwrap());
    assert_eq!(tcp.verdict, Verdict::Fail);
    let denied: Vec<_> = tcp
        .violations
        .iter()
        .filter(|v| v.rule == Rule::CapabilityDenied)
        .collect();
    assert!(denied.len() >= 5, "{denied:?}");
    assert!(denied.iter().all(|v| v.class.as_deref() == Some("network")));
    assert!(denied.iter().any(|v| v.message
        == "import wasi:sockets/tcp@0.2.6 (class network) is denied by [capabilities].deny"));

    // The std baseline brings wasi:cli/environment, which default.toml neither allows nor denies.
    let env = eval(&p, &audit(ENV_READER).unwrap());
    assert_eq!(env.verdict, Verdict::Fail);
    assert_eq!(rules(&env), vec!["capability-not-allowed"]);
    assert_eq!(env.violations[0].class.as_deref(), Some("environment"));
    assert_eq!(
        env.violations[0].import.as_deref(),
        Some("wasi:cli/environment@0.2.6")
    );

    let http = eval(&p, &audit(HTTP_CLIENT).unwrap());
    assert!(
        http.violations.iter().any(
            |v| v.rule == Rule::CapabilityDenied && v.class.as_deref() == Some("http-outgoing")
        )
    );
}

#[test]
fn ci_policy_passes_std_commands_and_strict_refuses_files() {
    let ci = policy(CI);
    assert_eq!(
        eval(&ci, &audit(ENV_READER).unwrap()).verdict,
        Verdict::Pass
    );
    let files = eval(&ci, &audit(FILE_READER).unwrap());
    assert_eq!(files.verdict, Verdict::Fail);
    assert!(rules(&files).iter().all(|r| *r == "capability-not-allowed"));

    let strict = eval(&policy(STRICT), &audit(FILE_READER).unwrap());
    let classes: Vec<_> = strict
        .violations
        .iter()
        .filter(|v| v.rule == Rule::CapabilityDenied)
        .filter_map(|v| v.class.as_deref())
        .collect();
    assert!(classes.contains(&"filesystem"));
    assert!(classes.contains(&"environment"));
}

// ---------------------------------------------------------------- per-import rules

#[test]
fn capability_rules_and_default() {
    let p = policy(
        r#"
[policy]
name = "t"
[capabilities]
allow = ["stdio"]
deny = ["network"]
"#,
    );
    let a = component(&[
        "wasi:cli/stdout@0.2.0",
        "wasi:sockets/tcp@0.2.0",
        "wasi:random/random@0.2.0",
        "wasi:io/streams@0.2.0",
    ]);
    let e = eval(&p, &a);
    assert_eq!(
        rules(&e),
        vec!["capability-not-allowed", "capability-denied"]
    );
    assert_eq!(e.violations[0].class.as_deref(), Some("random"));
    assert_eq!(
        e.violations[0].message,
        "import wasi:random/random@0.2.0 (class random) is not in [capabilities].allow and [capabilities].default is \"deny\""
    );
    assert_eq!(e.violations[1].severity, Severity::Error);

    let permissive = policy(
        r#"
[policy]
name = "t"
[capabilities]
deny = ["network", "io"]
default = "allow"
"#,
    );
    let e = eval(&permissive, &a);
    assert_eq!(rules(&e), vec!["capability-denied", "capability-denied"]);
    assert_eq!(e.violations[0].class.as_deref(), Some("io"));
    assert_eq!(e.violations[1].class.as_deref(), Some("network"));

    // With no [capabilities] at all, everything except io is refused by the default.
    let bare = policy("[policy]\nname = \"bare\"\n");
    let e = eval(&bare, &component(&["wasi:io/poll@0.2.0"]));
    assert_eq!(e.verdict, Verdict::Pass);
    let e = eval(&bare, &component(&["wasi:cli/stdout@0.2.0"]));
    assert_eq!(rules(&e), vec!["capability-not-allowed"]);
}

#[test]
fn interface_rules_come_first_and_first_match_wins() {
    let p = policy(
        r#"
[policy]
name = "t"
[capabilities]
allow = ["network"]
deny = ["filesystem"]
[[interfaces]]
name = "wasi:filesystem/preopens@0.2.*"
action = "allow"
[[interfaces]]
name = "wasi:sockets/udp*"
action = "deny"
[[interfaces]]
name = "wasi:sockets/*"
action = "allow"
"#,
    );
    let a = component(&[
        "wasi:filesystem/preopens@0.2.6",
        "wasi:filesystem/types@0.2.6",
        "wasi:filesystem/preopens@0.3.0",
        "wasi:sockets/tcp@0.2.6",
        "wasi:sockets/udp@0.2.6",
    ]);
    let e = eval(&p, &a);
    let got: Vec<_> = e
        .violations
        .iter()
        .map(|v| (v.rule.id(), v.import.clone().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("capability-denied", "wasi:filesystem/preopens@0.3.0".into()),
            ("capability-denied", "wasi:filesystem/types@0.2.6".into()),
            ("interface-denied", "wasi:sockets/udp@0.2.6".into()),
        ]
    );
    assert_eq!(
        e.violations[2].message,
        "import wasi:sockets/udp@0.2.6 (class network) is denied by [[interfaces]] rule \"wasi:sockets/udp*\""
    );
}

#[test]
fn foreign_packages_need_imports_allow() {
    let p = policy(
        r#"
[policy]
name = "t"
[capabilities]
allow = ["import:neon:*"]
deny = ["import:evil:*"]
[imports]
allow = ["acme:*", "evil:thing"]
"#,
    );
    let a = component(&[
        "acme:ledger/client@1.0.0",
        "neon:cybergrid/converter@0.1.0",
        "other:pkg/api@1.0.0",
        "evil:thing/api",
    ]);
    let e = eval(&p, &a);
    let got: Vec<_> = e
        .violations
        .iter()
        .map(|v| (v.rule.id(), v.class.clone().unwrap()))
        .collect();
    // Import order in an audit is sorted by name.
    assert_eq!(
        got,
        vec![
            ("capability-denied", "import:evil:thing".to_string()),
            ("import-not-allowed", "import:other:pkg".to_string()),
        ]
    );
    assert!(e.violations[1].message.contains("package other:pkg"));

    let open = policy("[policy]\nname = \"t\"\n[capabilities]\ndefault = \"allow\"\n");
    assert_eq!(eval(&open, &a).verdict, Verdict::Pass);
}

#[test]
fn unknown_imports_need_an_explicit_allow() {
    let mut a = component(&[]);
    a.imports.push(Import {
        name: "weird name".into(),
        class: Class::unknown(),
    });
    a.capabilities.push(Class::unknown());
    let open = policy("[policy]\nname = \"t\"\n[capabilities]\ndefault = \"allow\"\n");
    assert_eq!(rules(&eval(&open, &a)), vec!["unknown-import"]);
    let allowing = policy("[policy]\nname = \"t\"\n[capabilities]\nallow = [\"unknown\"]\n");
    assert_eq!(eval(&allowing, &a).verdict, Verdict::Pass);
    let denying = policy("[policy]\nname = \"t\"\n[capabilities]\ndeny = [\"unknown\"]\n");
    assert_eq!(rules(&eval(&denying, &a)), vec!["capability-denied"]);
}

// docs/protocol.md §10.1 "Capability classes" (core-module `module.field` names)
#[test]
fn preview1_modules_are_judged_by_the_same_classes() {
    let sockets = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1))"#,
    )
    .unwrap();
    let a = audit(&sockets).unwrap();
    assert_eq!(a.kind, Kind::Module);
    let e = eval(&policy(DEFAULT), &a);
    assert_eq!(e.verdict, Verdict::Fail);
    assert_eq!(rules(&e), vec!["capability-denied"]);
    assert_eq!(
        e.violations[0].import.as_deref(),
        Some("wasi_snapshot_preview1.sock_accept")
    );

    let hello = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
            (memory (export "memory") 1))"#,
    )
    .unwrap();
    assert_eq!(
        eval(&policy(DEFAULT), &audit(&hello).unwrap()).verdict,
        Verdict::Pass
    );
    // Interface globs see the module.field name.
    let p = policy(
        "[policy]\nname = \"t\"\n[capabilities]\nallow = [\"stdio\", \"exit\"]\n[[interfaces]]\nname = \"wasi_snapshot_preview1.proc_*\"\naction = \"deny\"\n",
    );
    assert_eq!(
        rules(&eval(&p, &audit(&hello).unwrap())),
        vec!["interface-denied"]
    );
}

// ---------------------------------------------------------------- size

#[test]
fn size_limit_fires_only_above_the_limit() {
    let p = policy(
        "[policy]\nname = \"t\"\n[capabilities]\ndefault = \"allow\"\n[limits]\nmax_size = \"1KiB\"\n",
    );
    let mut a = component(&[]);
    a.size = 1024;
    assert_eq!(eval(&p, &a).verdict, Verdict::Pass);
    a.size = 1025;
    let e = eval(&p, &a);
    assert_eq!(rules(&e), vec!["size-limit"]);
    assert_eq!(
        e.violations[0].message,
        "size 1025 bytes exceeds [limits].max_size 1KiB (1024 bytes)"
    );
    let bytes = policy("[policy]\nname = \"t\"\n[limits]\nmax_size = 10\n");
    assert_eq!(bytes.max_size(), Some(10));
    // Real component against a decimal limit.
    let tiny = policy(
        "[policy]\nname = \"t\"\n[capabilities]\ndefault = \"allow\"\n[limits]\nmax_size = \"10KB\"\n",
    );
    assert_eq!(
        rules(&eval(&tiny, &audit(HELLO).unwrap())),
        vec!["size-limit"]
    );
}

// ---------------------------------------------------------------- exemptions

const EXEMPTING: &str = r#"
[policy]
name = "t"
[capabilities]
allow = ["stdio"]
deny = ["network"]
[[exemptions]]
package = "acme:legacy-*"
allow = ["network"]
reason = "talks to the ledger; SEC-123"
expires = "2026-11-21"
[[exemptions]]
package = "acme:old"
allow = ["network", "filesystem"]
reason = "being rewritten"
expires = 2025-01-31
"#;

#[test]
fn active_exemptions_lift_denials_for_their_package_only() {
    let p = policy(EXEMPTING);
    let a = component(&["wasi:cli/stdout@0.2.0", "wasi:sockets/tcp@0.2.0"]);
    let mut s = Subject::new(&a, today());
    s.package = Some("acme:legacy-ledger");
    // Expiring today still counts: only a date before today is expired.
    assert_eq!(p.evaluate(&s).verdict, Verdict::Pass);
    s.package = Some("acme:ledger");
    assert_eq!(rules(&p.evaluate(&s)), vec!["capability-denied"]);
    s.package = None;
    assert_eq!(rules(&p.evaluate(&s)), vec!["capability-denied"]);
    // The day after, the exemption is expired and says so.
    s.package = Some("acme:legacy-ledger");
    s.today = Date::from_ymd(2026, 11, 22).unwrap();
    let e = p.evaluate(&s);
    assert_eq!(rules(&e), vec!["capability-denied", "exemption-expired"]);
    assert!(e.violations[0].message.contains("expired on 2026-11-21"));
    let expired = &e.violations[1].message;
    for part in [
        "acme:legacy-*",
        "acme:legacy-ledger",
        "SEC-123",
        "2026-11-21",
    ] {
        assert!(expired.contains(part), "{expired}");
    }
}

#[test]
fn expired_exemptions_are_violations_even_when_unused() {
    let p = policy(EXEMPTING);
    let a = component(&["wasi:cli/stdout@0.2.0"]);
    let mut s = Subject::new(&a, today());
    s.package = Some("acme:old");
    let e = p.evaluate(&s);
    assert_eq!(e.verdict, Verdict::Fail);
    assert_eq!(rules(&e), vec!["exemption-expired"]);
    assert!(e.violations[0].message.contains("2025-01-31"));
    assert!(e.violations[0].message.contains("being rewritten"));
    // An expired exemption for another package is not this component's business.
    s.package = Some("acme:new");
    assert_eq!(p.evaluate(&s).verdict, Verdict::Pass);
}

#[test]
fn check_import_answers_per_import() {
    let p = policy(EXEMPTING);
    let tcp = Import {
        name: "wasi:sockets/tcp@0.2.0".into(),
        class: Class::parse("network").unwrap(),
    };
    let stdout = Import {
        name: "wasi:cli/stdout@0.2.0".into(),
        class: Class::parse("stdio").unwrap(),
    };
    assert!(p.check_import(&stdout, None, today()).is_ok());
    let v = p.check_import(&tcp, None, today()).unwrap_err();
    assert_eq!(v.rule, Rule::CapabilityDenied);
    assert!(p.check_import(&tcp, Some("acme:legacy-x"), today()).is_ok());
    let v = p.check_import(&tcp, Some("acme:old"), today()).unwrap_err();
    assert_eq!(v.rule, Rule::ExemptionExpired);
    assert_eq!(v.import.as_deref(), Some("wasi:sockets/tcp@0.2.0"));
    assert_eq!(v.class.as_deref(), Some("network"));

    let world = policy(HTTP_PROXY);
    let env = Import {
        name: "wasi:cli/terminal-stdout@0.2.0".into(),
        class: Class::parse("stdio").unwrap(),
    };
    assert_eq!(
        world.check_import(&env, None, today()).unwrap_err().rule,
        Rule::WorldMismatch
    );
}

// ---------------------------------------------------------------- drift

#[test]
fn drift_deny_warn_allow() {
    let old = component(&["wasi:cli/stdout@0.2.0"]);
    let new = component(&[
        "wasi:cli/stdout@0.2.6",
        "wasi:sockets/tcp@0.2.6",
        "wasi:sockets/udp@0.2.6",
    ]);
    let text = |mode: &str| {
        format!(
            "[policy]\nname = \"t\"\n[capabilities]\ndefault = \"allow\"\n[drift]\nnew_capabilities = \"{mode}\"\n"
        )
    };
    let mut s = Subject::new(&new, today());
    s.baseline = Some(&old);

    let e = policy(&text("deny")).evaluate(&s);
    assert_eq!(e.verdict, Verdict::Fail);
    assert_eq!(rules(&e), vec!["new-capability"]);
    assert_eq!(e.violations[0].severity, Severity::Error);
    assert_eq!(e.violations[0].class.as_deref(), Some("network"));
    assert_eq!(
        e.violations[0].message,
        "new capability network not present in the baseline, brought by wasi:sockets/tcp@0.2.6, wasi:sockets/udp@0.2.6"
    );

    let e = policy(&text("warn")).evaluate(&s);
    assert_eq!(e.verdict, Verdict::Warn);
    assert_eq!(e.violations[0].severity, Severity::Warning);

    assert_eq!(policy(&text("allow")).evaluate(&s).verdict, Verdict::Pass);
    // Without [drift] the default is to warn.
    let unset = policy("[policy]\nname = \"t\"\n[capabilities]\ndefault = \"allow\"\n");
    assert_eq!(unset.evaluate(&s).verdict, Verdict::Warn);
    // No baseline, no drift; and the same surface is no drift.
    assert_eq!(
        policy(&text("deny"))
            .evaluate(&Subject::new(&new, today()))
            .verdict,
        Verdict::Pass
    );
    s.baseline = Some(&new);
    assert_eq!(policy(&text("deny")).evaluate(&s).verdict, Verdict::Pass);
}

#[test]
fn drift_between_real_components() {
    let strict = policy(
        "[policy]\nname = \"t\"\n[capabilities]\ndefault = \"allow\"\n[drift]\nnew_capabilities = \"deny\"\n",
    );
    let old = audit(ENV_READER).unwrap();
    let new = audit(TCP_CLIENT).unwrap();
    let mut s = Subject::new(&new, today());
    s.baseline = Some(&old);
    let e = strict.evaluate(&s);
    let classes: Vec<_> = e
        .violations
        .iter()
        .filter_map(|v| v.class.as_deref())
        .collect();
    assert_eq!(classes, vec!["clocks", "network"]);
}

// ---------------------------------------------------------------- world

#[test]
fn world_target_with_the_vendored_wit() {
    let p = policy(HTTP_PROXY);
    // hello imports only wasi:io and wasi:cli/stdout at 0.2.12: inside the proxy world.
    assert_eq!(eval(&p, &audit(HELLO).unwrap()).verdict, Verdict::Pass);
    // Older and newer 0.2 patch releases fit a world written as 0.2.0.
    let a = component(&[
        "wasi:cli/stdout@0.2.6",
        "wasi:http/outgoing-handler@0.2.0",
        "wasi:http/types@0.2.3",
        "wasi:io/streams@0.2.0",
    ]);
    assert_eq!(eval(&p, &a).verdict, Verdict::Pass);

    // http-client's std baseline has environment, exit and terminal imports the world lacks.
    let e = eval(&p, &audit(HTTP_CLIENT).unwrap());
    let mismatched: Vec<_> = e
        .violations
        .iter()
        .filter(|v| v.rule == Rule::WorldMismatch)
        .filter_map(|v| v.import.as_deref())
        .collect();
    assert!(
        mismatched.contains(&"wasi:cli/environment@0.2.12"),
        "{mismatched:?}"
    );
    assert!(
        mismatched.contains(&"wasi:cli/exit@0.2.12"),
        "{mismatched:?}"
    );
    assert!(mismatched.contains(&"wasi:cli/terminal-stdout@0.2.12"));
    assert!(!mismatched.contains(&"wasi:http/outgoing-handler@0.2.12"));

    // A 0.3 import does not fit a 0.2 world, even when the class is allowed.
    let a = component(&["wasi:cli/stdout@0.3.0"]);
    let e = eval(&p, &a);
    assert_eq!(rules(&e), vec!["world-mismatch"]);
    assert_eq!(
        e.violations[0].message,
        "import wasi:cli/stdout@0.3.0 (class stdio) is not an import of world wasi:http/proxy@0.2.0"
    );

    let command = policy(
        "[policy]\nname = \"t\"\n[capabilities]\ndefault = \"allow\"\n[world]\ntarget = \"wasi:cli/command@0.2.6\"\n",
    );
    assert_eq!(
        eval(&command, &audit(TCP_CLIENT).unwrap()).verdict,
        Verdict::Pass
    );
    let e = eval(&command, &audit(HTTP_CLIENT).unwrap());
    assert!(
        e.violations.iter().all(|v| v.rule == Rule::WorldMismatch
            && v.import.as_deref().unwrap().starts_with("wasi:http/"))
    );
    assert_eq!(e.violations.len(), 2);
}

// ---------------------------------------------------------------- mode and verdict

#[test]
fn warn_mode_reports_the_same_violations_without_failing() {
    let enforce = policy(DEFAULT);
    let warn = policy(&DEFAULT.replace("mode = \"enforce\"", "mode = \"warn\""));
    assert_eq!(warn.mode(), Mode::Warn);
    let a = audit(TCP_CLIENT).unwrap();
    let (e1, e2) = (eval(&enforce, &a), eval(&warn, &a));
    assert_eq!(e1.verdict, Verdict::Fail);
    assert_eq!(e2.verdict, Verdict::Warn);
    assert_eq!(e1.violations, e2.violations);
    assert!(!e2.violations.is_empty());
}

// docs/protocol.md §10.2 "verify --json lines" (verdict and violation fields)
#[test]
fn evaluations_serialise_as_the_design_says() {
    let e = eval(&policy(DEFAULT), &component(&["wasi:sockets/tcp@0.2.0"]));
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["verdict"], "fail");
    assert_eq!(json["violations"][0]["rule"], "capability-denied");
    assert_eq!(json["violations"][0]["severity"], "error");
    assert_eq!(json["violations"][0]["import"], "wasi:sockets/tcp@0.2.0");
    assert_eq!(json["violations"][0]["class"], "network");
}

// ---------------------------------------------------------------- signers

// docs/protocol.md §3.2 "Verifier keys", §3.6 "Signature thresholds"
#[test]
fn signers_are_checked_keys_with_a_threshold() {
    let k1 = SignerKey::from_seed("acme-release", &[7; 32])
        .unwrap()
        .verifier()
        .to_string();
    let k2 = SignerKey::from_seed("acme-ci", &[9; 32])
        .unwrap()
        .verifier()
        .to_string();
    let p = policy(&format!(
        "[policy]\nname = \"t\"\n[signers]\nkeys = [\"{k1}\", \"{k2}\"]\nthreshold = 2\n"
    ));
    let s = p.signers().unwrap();
    assert_eq!(s.keys, vec![k1.clone(), k2]);
    assert_eq!(s.threshold, 2);
    let one = policy(&format!(
        "[policy]\nname = \"t\"\n[signers]\nkeys = [\"{k1}\"]\n"
    ));
    assert_eq!(one.signers().unwrap().threshold, 1);

    let (line, col, msg) = parse_error(&format!(
        "[policy]\nname = \"t\"\n[signers]\nkeys = [\"{k1}\"]\nthreshold = 0\n"
    ));
    assert_eq!((line, col), (5, 13));
    assert!(
        msg.starts_with("bad threshold 0: expected a number from 1 to 1"),
        "{msg}"
    );
    let (line, col, msg) = parse_error(
        "[policy]\nname = \"t\"\n[signers]\nkeys = [\"acme-release+1a2b3c4d+AQ...\"]\n",
    );
    assert_eq!((line, col), (4, 9));
    assert!(
        msg.starts_with("bad signer key \"acme-release+1a2b3c4d+AQ...\""),
        "{msg}"
    );
}

// ---------------------------------------------------------------- bad policies

#[test]
fn unknown_class_points_at_the_value() {
    let text =
        "[policy]\nname = \"x\"\n\n[capabilities]\nallow = [\"stdio\"]\n\ndeny  = [\"netwrok\"]\n";
    let (line, col, msg) = parse_error(text);
    assert_eq!((line, col), (7, 10));
    assert!(
        msg.starts_with(
            "unknown capability class \"netwrok\": expected one of stdio, environment, "
        ),
        "{msg}"
    );
    assert!(msg.ends_with("or import:<ns>:<pkg>"), "{msg}");
    let e = Policy::parse(text, "policies/x.toml").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("policies/x.toml:7:10: unknown capability class \"netwrok\"")
    );
    // In an exemption too.
    let (line, col, _) = parse_error(
        "[policy]\nname = \"x\"\n[[exemptions]]\npackage = \"a:b\"\nallow = [\"files\"]\n",
    );
    assert_eq!((line, col), (5, 10));
}

#[test]
fn syntax_errors_point_at_the_bad_token() {
    let (line, col, msg) = parse_error("[policy]\nname = \"x\"\nmode = enforce\n");
    assert_eq!(line, 3);
    assert_eq!(col, 8);
    assert!(msg.starts_with("invalid policy: "), "{msg}");
    assert!(!msg.contains('\n'));
    let (line, _, _) = parse_error("[policy]\nname = \"x\"\n[capabilities\n");
    assert_eq!(line, 3);
}

#[test]
fn unknown_keys_and_tables_are_errors() {
    let (line, col, msg) = parse_error("[policy]\nname = \"x\"\nmood = \"warn\"\n");
    assert_eq!((line, col), (3, 1));
    assert!(msg.contains("unknown field `mood`"), "{msg}");
    assert!(msg.contains("`mode`"), "{msg}");
    let (line, col, msg) = parse_error("[policy]\nname = \"x\"\n\n[capabilitys]\nallow = []\n");
    assert_eq!((line, col), (4, 2));
    assert!(msg.contains("unknown field `capabilitys`"), "{msg}");
    let (line, _, msg) =
        parse_error("[policy]\nname = \"x\"\n[[interfaces]]\nname = \"a:b/c\"\nacton = \"deny\"\n");
    assert_eq!(line, 5);
    assert!(msg.contains("acton"), "{msg}");
}

#[test]
fn missing_or_empty_name_is_an_error() {
    let (line, col, msg) = parse_error("[capabilities]\nallow = []\n");
    assert_eq!((line, col), (1, 1));
    assert_eq!(
        msg,
        "missing [policy] table: expected [policy] with at least name = \"...\""
    );
    let (_, _, msg) = parse_error("[policy]\nmode = \"warn\"\n");
    assert!(msg.contains("name"), "{msg}");
    let (line, col, msg) = parse_error("[policy]\nname = \"  \"\n");
    assert_eq!((line, col), (2, 8));
    assert!(msg.starts_with("empty policy name"), "{msg}");
}

#[test]
fn bad_values_point_at_the_value() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        (
            "[policy]\nname = \"x\"\n[limits]\nmax_size = \"50MB?\"\n",
            (4, 12),
            "bad size \"50MB?\": expected a whole number followed by one of B, KB, KiB, MB, MiB, GB, GiB",
        ),
        (
            "[policy]\nname = \"x\"\n[limits]\nmax_size = -5\n",
            (4, 12),
            "bad max_size: expected a size",
        ),
        (
            "[policy]\nname = \"x\"\n[[exemptions]]\npackage = \"a:*\"\nexpires = \"2027-02-30\"\n",
            (5, 11),
            "bad date \"2027-02-30\": expected a day that exists",
        ),
        (
            "[policy]\nname = \"x\"\n[[exemptions]]\npackage = \"a:*\"\nexpires = \"31/03/2027\"\n",
            (5, 11),
            "bad date \"31/03/2027\": expected a calendar date written YYYY-MM-DD",
        ),
        (
            "[policy]\nname = \"x\"\n[[exemptions]]\npackage = \"a:*\"\nexpires = 2027-03-31T10:00:00Z\n",
            (5, 11),
            "bad date",
        ),
        (
            "[policy]\nname = \"x\"\n[[interfaces]]\nname = \"wasi:sockets/[tcp]\"\naction = \"deny\"\n",
            (4, 8),
            "bad glob \"wasi:sockets/[tcp]\": expected letters, digits",
        ),
        (
            "[policy]\nname = \"x\"\n[imports]\nallow = [\"acme:*\", \"\"]\n",
            (4, 20),
            "bad glob \"\"",
        ),
        (
            "[policy]\nname = \"x\"\n[[exemptions]]\npackage = \"acme:{a,b}\"\n",
            (4, 11),
            "bad glob",
        ),
        (
            "[policy]\nname = \"x\"\nmode = \"audit\"\n",
            (3, 8),
            "bad mode \"audit\": expected \"enforce\" or \"warn\"",
        ),
        (
            "[policy]\nname = \"x\"\n[[interfaces]]\nname = \"a:b/c\"\naction = \"block\"\n",
            (5, 10),
            "bad action \"block\": expected \"allow\" or \"deny\"",
        ),
        (
            "[policy]\nname = \"x\"\n[capabilities]\ndefault = \"maybe\"\n",
            (4, 11),
            "bad default \"maybe\"",
        ),
        (
            "[policy]\nname = \"x\"\n[drift]\nnew_capabilities = \"block\"\n",
            (4, 20),
            "bad new_capabilities \"block\": expected \"deny\", \"warn\" or \"allow\"",
        ),
        (
            "[policy]\nname = \"x\"\n[world]\ntarget = \"wasi:http/proxy@0.3.0\"\n",
            (4, 10),
            "world \"wasi:http/proxy@0.3.0\" is not vendored: expected one of ",
        ),
        (
            "[policy]\nname = \"x\"\n[world]\ntarget = \"http proxy\"\n",
            (4, 10),
            "bad world name \"http proxy\"",
        ),
        (
            "[policy]\nname = \"x\"\n[capabilities]\nallow = [\"network\"]\ndeny = [\"network\"]\n",
            (5, 9),
            "class \"network\" is in both [capabilities].allow and deny",
        ),
        (
            "[policy]\nname = \"x\"\n[capabilities]\nallow = \"stdio\"\n",
            (4, 9),
            "invalid policy: invalid type",
        ),
    ];
    for (text, (line, col), start) in cases {
        let (l, c, msg) = parse_error(text);
        assert!(msg.starts_with(start), "{text}\n=> {msg}");
        assert_eq!((l, c), (*line, *col), "{text}\n=> {msg}");
    }
}

#[test]
fn dates_may_be_toml_dates_or_strings() {
    let p = policy(
        "[policy]\nname = \"x\"\n[[exemptions]]\npackage = \"a:*\"\nallow = [\"network\"]\nexpires = 2027-03-31\n",
    );
    let a = component(&["wasi:sockets/tcp@0.2.0"]);
    let mut s = Subject::new(&a, Date::from_ymd(2027, 3, 31).unwrap());
    s.package = Some("a:b");
    assert_eq!(p.evaluate(&s).verdict, Verdict::Pass);
    s.today = Date::from_ymd(2027, 4, 1).unwrap();
    assert_eq!(p.evaluate(&s).verdict, Verdict::Fail);
}

// ---------------------------------------------------------------- robustness

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "\\PC*") {
        let _ = Policy::parse(&text, "fuzz.toml");
    }

    #[test]
    fn parse_never_panics_on_policy_shaped_text(
        text in "(\\[(policy|capabilities|limits|world|drift|signers|imports)\\]\n|\\[\\[(interfaces|exemptions)\\]\\]\n|(name|mode|allow|deny|default|max_size|target|package|expires|action|threshold|keys|new_capabilities) = (\"[a-z:/@.*0-9é-]{0,12}\"|-?[0-9]{1,3}|\\[\"[a-z:*-]{0,8}\"\\]|2027-0[0-9]-[0-3][0-9]|true)\n){0,12}"
    ) {
        if let Ok(p) = Policy::parse(&text, "fuzz.toml") {
            let a = component(&["wasi:sockets/tcp@0.2.0", "acme:x/y@1.0.0", "wasi:cli/stdout@0.2.6"]);
            let mut s = Subject::new(&a, today());
            s.package = Some("acme:x");
            s.baseline = Some(&a);
            let _ = p.evaluate(&s);
        }
    }

    #[test]
    fn evaluate_never_panics_on_arbitrary_imports(names in proptest::collection::vec("\\PC{0,30}", 0..8)) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let a = component(&refs);
        for text in [DEFAULT, STRICT, HTTP_PROXY, CI] {
            let p = policy(text);
            let e = p.evaluate(&Subject::new(&a, today()));
            prop_assert_eq!(e.verdict == Verdict::Pass, e.violations.is_empty());
        }
    }
}
