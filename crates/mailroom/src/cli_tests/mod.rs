//! Tests of the CLI's command tree and of where each API command sends its token. Every
//! command runs in process (`run(Cli::try_parse_from(..))`, what `main` does) against
//! two recording HTTP servers on loopback: one plays the API, the other a third party
//! (a webhook receiver) whose URL the test passes wherever a command takes a value.
//! The third party must never see a request; the API must see exactly the expected
//! method and path, each with the token and its own `Host`.

use super::{Cli, run};
use clap::{CommandFactory, Parser};
use serde_json::json;
use std::collections::BTreeSet;

mod find;
mod recorder;
use recorder::{Recorder, Reply, Seen};

/// A tenant id as the API spells them (26 characters), so the CLI skips the name lookup.
const TENANT_ID: &str = "01JCLITESTTENANT0000000000";

/// Top-level commands that never talk to the API.
const NOT_API: &[&str] = &[
    "serve",
    "check-config",
    "migrate",
    "bench",
    "secrets",
    "backup",
];

/// The API, as far as the CLI needs it to get through each command.
fn fake_api(s: &Seen) -> Reply {
    let path = s.target.split('?').next().unwrap_or_default();
    match (s.method.as_str(), path) {
        ("GET", "/v1/tenants") => {
            Reply::json(200, json!({"tenants": [{"id": TENANT_ID, "name": "acme"}]}))
        }
        ("GET", "/v1/events") => Reply::json(
            200,
            json!({"events": [{"seq": 1, "type": "accepted"}], "next_cursor": "1"}),
        ),
        ("GET", "/v1/nodes") => Reply::json(
            200,
            json!({"nodes": [{"id": "n1", "alive": true, "last_seen": 1, "leased_recipients": 3}]}),
        ),
        ("POST", "/v1/operator-token/rotate") => {
            Reply::json(200, json!({"token": "new-operator-token"}))
        }
        ("POST", "/v1/messages") => Reply::json(
            202,
            json!({"id": "m1", "recipients": [{"address": "you@example.net", "status": "queued"}]}),
        ),
        (_, p) if p.starts_with("/v1/domains/") => Reply::json(
            200,
            json!({"name": "acme.example", "records": [{"name": "acme.example", "type": "TXT", "value": "v=spf1 -all"}]}),
        ),
        _ => Reply::json(200, json!({"ok": true})),
    }
}

/// A third party that would happily take anything (as the webhook receiver did).
fn trap() -> Recorder {
    Recorder::start(|_| Reply::json(200, json!({"thanks": "for the token"})))
}

struct Setup {
    api: Recorder,
    trap: Recorder,
    token: String,
    dir: tempfile::TempDir,
}

fn setup(reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Setup {
    Setup {
        api: Recorder::start(reply),
        trap: trap(),
        token: format!("mrk_test_{}", rand::random::<u64>()),
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl Setup {
    /// `mailroom <args…> --url <api> --token <token> --data-dir <empty dir>`, with
    /// `{trap}` in an argument replaced by the third party's URL, `{tid}` by
    /// [`TENANT_ID`].
    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = vec!["mailroom".to_string()];
        argv.extend(args.iter().map(|a| {
            a.replace("{trap}", &self.trap_url())
                .replace("{tid}", TENANT_ID)
        }));
        argv.extend([
            "--url".into(),
            self.api.base.clone(),
            "--token".into(),
            self.token.clone(),
            "--data-dir".into(),
            self.dir.path().display().to_string(),
        ]);
        argv
    }

    fn trap_url(&self) -> String {
        format!("{}/hooks/mailroom", self.trap.base)
    }

    fn run(&self, argv: Vec<String>) -> anyhow::Result<()> {
        let cli = Cli::try_parse_from(&argv).map_err(|e| anyhow::anyhow!("{e}"))?;
        run(cli)
    }

    /// Nothing reached the third party; every API request went to the API's host with
    /// the token.
    fn assert_token_stayed_home(&self, what: &str) -> Vec<Seen> {
        let leaked = self.trap.seen();
        assert!(
            leaked.is_empty(),
            "{what}: the third party received {leaked:#?}"
        );
        let seen = self.api.seen();
        for s in &seen {
            assert_eq!(
                s.authorization.as_deref(),
                Some(format!("Bearer {}", self.token).as_str()),
                "{what}: {s:?}"
            );
            assert_eq!(
                s.host.as_deref(),
                Some(self.api.authority.as_str()),
                "{what}"
            );
        }
        seen
    }
}

fn path_of(cmd: &[&str]) -> String {
    cmd.iter()
        .take_while(|a| !a.starts_with('-') && !a.contains(['@', '/', '.', '{']))
        .take(2)
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every API command's leaves, by name ("tenant create", "queue", "send"…).
fn api_leaves() -> BTreeSet<String> {
    let mut leaves = BTreeSet::new();
    for top in Cli::command().get_subcommands() {
        let name = top.get_name();
        if NOT_API.contains(&name) {
            continue;
        }
        assert!(
            top.get_arguments()
                .any(|a| a.get_id() == "api_url" && a.is_global_set()),
            "`{name}` is neither an API command (flatten client::ApiArgs) nor listed in NOT_API"
        );
        if top.get_subcommands().next().is_none() || !top.is_subcommand_required_set() {
            leaves.insert(name.to_string());
        }
        for sub in top.get_subcommands() {
            leaves.insert(format!("{name} {}", sub.get_name()));
        }
    }
    leaves
}

/// Each command with arguments that name the tenant, an id, a domain — and, for
/// `webhook add`, the third party's URL — and the requests the API must see, in order.
const CASES: &[(&[&str], &[&str])] = &[
    (&["tenant", "create", "acme"], &["POST /v1/tenants"]),
    (&["tenant", "list"], &["GET /v1/tenants"]),
    (
        &["credential", "create", "--tenant", "acme"],
        &["GET /v1/tenants", "POST /v1/tenants/{tid}/smtp-credentials"],
    ),
    (
        &["credential", "list", "--tenant", "{tid}"],
        &["GET /v1/tenants/{tid}/smtp-credentials"],
    ),
    (
        &["credential", "revoke", "--tenant", "acme", "cred1"],
        &[
            "GET /v1/tenants",
            "DELETE /v1/tenants/{tid}/smtp-credentials/cred1",
        ],
    ),
    (
        &[
            "domain",
            "add",
            "acme.example",
            "--tenant",
            "acme",
            "--verified",
        ],
        &["GET /v1/tenants", "POST /v1/tenants/{tid}/domains"],
    ),
    (&["domain", "list"], &["GET /v1/domains"]),
    (
        &["domain", "list", "--tenant", "{tid}"],
        &["GET /v1/tenants/{tid}/domains"],
    ),
    (
        &["domain", "show", "acme.example", "--zone-file"],
        &["GET /v1/domains/acme.example"],
    ),
    (
        &["domain", "verify", "acme.example"],
        &["POST /v1/domains/acme.example/verify"],
    ),
    (
        &["domain", "rotate", "acme.example"],
        &["POST /v1/domains/acme.example/dkim/rotate"],
    ),
    (
        &["domain", "reports", "acme.example", "--from", "2026-12-01"],
        &["GET /v1/domains/acme.example/reports?from=2026-12-01"],
    ),
    (
        &[
            "allowed-ips",
            "set",
            "--tenant",
            "acme",
            "10.0.0.0/24",
            "192.0.2.1/32",
            "--require-tls",
        ],
        &["GET /v1/tenants", "PUT /v1/tenants/{tid}/allowed-ips"],
    ),
    (
        &["allowed-ips", "show", "--tenant", "{tid}"],
        &["GET /v1/tenants/{tid}/allowed-ips"],
    ),
    (&["queue"], &["GET /v1/queue"]),
    (&["queue", "show"], &["GET /v1/queue"]),
    (&["queue", "retry", "m1"], &["POST /v1/messages/m1/retry"]),
    (&["queue", "cancel", "m1"], &["DELETE /v1/messages/m1"]),
    (&["message", "show", "m1"], &["GET /v1/messages/m1"]),
    (
        &[
            "send",
            "--from",
            "app@acme.example",
            "--to",
            "you@example.net",
            "--idempotency-key",
            "k1",
        ],
        &["POST /v1/messages"],
    ),
    (
        &[
            "send",
            "--from",
            "app@acme.example",
            "--to",
            "you@example.net",
            "--count",
            "3",
            "--concurrency",
            "2",
        ],
        &[
            "POST /v1/messages",
            "POST /v1/messages",
            "POST /v1/messages",
        ],
    ),
    (&["suppression", "list"], &["GET /v1/suppressions"]),
    (
        &["suppression", "list", "--tenant", "acme"],
        &["GET /v1/tenants", "GET /v1/suppressions?tenant={tid}"],
    ),
    (
        &[
            "suppression",
            "add",
            "gone@example.net",
            "--tenant",
            "{tid}",
        ],
        &["POST /v1/suppressions"],
    ),
    (
        &[
            "suppression",
            "remove",
            "gone@example.net",
            "--tenant",
            "{tid}",
        ],
        &["DELETE /v1/suppressions/gone@example.net?tenant={tid}"],
    ),
    (
        &[
            "events",
            "tail",
            "--type",
            "delivered,bounced",
            "--limit",
            "5",
        ],
        &["GET /v1/events?limit=1000&type=delivered%2Cbounced"],
    ),
    (
        &[
            "webhook",
            "add",
            "{trap}",
            "--events",
            "delivered",
            "--tenant",
            "acme",
        ],
        &["GET /v1/tenants", "POST /v1/webhooks"],
    ),
    (&["webhook", "list"], &["GET /v1/webhooks"]),
    (&["webhook", "remove", "w1"], &["DELETE /v1/webhooks/w1"]),
    (&["webhook", "test", "w1"], &["POST /v1/webhooks/w1/test"]),
    (
        &["key", "create", "ci", "--scope", "send", "--tenant", "acme"],
        &["GET /v1/tenants", "POST /v1/keys"],
    ),
    (&["key", "list"], &["GET /v1/keys"]),
    (
        &["key", "list", "--tenant", "{tid}"],
        &["GET /v1/keys?tenant={tid}"],
    ),
    (&["key", "revoke", "k1"], &["DELETE /v1/keys/k1"]),
    (
        &["key", "rotate", "k1", "--grace-seconds", "60"],
        &["POST /v1/keys/k1/rotate"],
    ),
    (
        &["operator-token", "rotate"],
        &["POST /v1/operator-token/rotate"],
    ),
    (&["status"], &["GET /readyz", "GET /v1/nodes"]),
    (&["nodes"], &["GET /v1/nodes"]),
    (&["nodes", "--json"], &["GET /v1/nodes"]),
    (
        &["domain", "delete", "acme.example"],
        &["DELETE /v1/domains/acme.example"],
    ),
    (&["reload"], &["POST /v1/admin/reload"]),
    (
        &["tenant", "delete", "{tid}"],
        &["DELETE /v1/tenants/{tid}"],
    ),
    (
        &["tenant", "delete", "acme", "--purge"],
        &["GET /v1/tenants", "DELETE /v1/tenants/{tid}?purge=true"],
    ),
    (&["erasure", "alice@example.net"], &["POST /v1/erasure"]),
    (
        &["erasure", "alice@example.net", "--tenant", "{tid}"],
        &["POST /v1/erasure"],
    ),
    (
        &["signing", "show", "--tenant", "{tid}"],
        &["GET /v1/tenants/{tid}/signing"],
    ),
    (
        &["signing", "set", "--domain", "acme.example", "rsa"],
        &["PUT /v1/domains/acme.example/signing"],
    ),
    (&["throttle", "list", "--json"], &["GET /v1/throttles"]),
    (
        &["queue", "destinations", "--json"],
        &["GET /v1/queue/destinations"],
    ),
    (&["queue", "destinations"], &["GET /v1/queue/destinations"]),
    (
        &["throttle", "clear", "--site", "gmail.com"],
        &["DELETE /v1/throttles?site=gmail.com"],
    ),
    (
        &["throttle", "pool", "{tid}", "warm"],
        &["PUT /v1/tenants/{tid}/egress-pool"],
    ),
];

#[test]
fn every_api_command_calls_the_api_host_and_path_it_should() {
    let s = setup(fake_api);
    let mut covered = BTreeSet::new();
    for (args, expect) in CASES {
        covered.insert(path_of(args));
        s.api.clear();
        let argv = s.argv(args);
        s.run(argv.clone())
            .unwrap_or_else(|e| panic!("{argv:?} failed: {e:#}"));
        let seen = s.assert_token_stayed_home(&argv.join(" "));
        let got: Vec<String> = seen.iter().map(Seen::line).collect();
        let want: Vec<String> = expect
            .iter()
            .map(|e| e.replace("{tid}", TENANT_ID))
            .collect();
        assert_eq!(got, want, "{args:?}");
    }
    let missing: Vec<_> = api_leaves().difference(&covered).cloned().collect();
    assert!(
        missing.is_empty(),
        "API commands without a case in CASES (src/cli_tests/mod.rs): {missing:?}"
    );
}

#[test]
fn webhook_add_registers_the_receiver_url_with_the_api() {
    let s = setup(fake_api);
    s.run(s.argv(&["webhook", "add", "{trap}", "--tenant", TENANT_ID]))
        .expect("webhook add");
    let seen = s.assert_token_stayed_home("webhook add");
    assert_eq!(seen.len(), 1, "{seen:?}");
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).expect("json body");
    assert_eq!(body["url"], s.trap_url());
    assert_eq!(body["tenant_id"], TENANT_ID);
}

/// Every value a command takes — positionals, required options, and optional options
/// that accept text — is the third party's URL: whatever a command does with it, the
/// token must not go there. Covers commands added later without a hand-written case.
#[test]
fn no_argument_value_can_redirect_the_token() {
    let s = setup(fake_api);
    let root = Cli::command();
    for leaf in api_leaves() {
        let names: Vec<&str> = leaf.split(' ').collect();
        let mut cmd = &root;
        for n in &names {
            cmd = cmd.find_subcommand(n).expect("leaf exists");
        }
        let mut args: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let trap_url = s.trap_url();
        for a in cmd.get_arguments().filter(|a| !a.is_global_set()) {
            if !a.get_action().takes_values() {
                continue;
            }
            if a.is_positional() {
                args.push(trap_url.clone());
                continue;
            }
            let long = format!("--{}", a.get_long().expect("options are long"));
            let mut with = args.clone();
            with.extend([long.clone(), trap_url.clone()]);
            let refs: Vec<&str> = with.iter().map(String::as_str).collect();
            if a.is_required_set() || Cli::try_parse_from(s.argv(&refs)).is_ok() {
                args = with;
            }
        }
        s.api.clear();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        // Many of these fail (no tenant named like a URL, no such file): only where the
        // requests went matters.
        let _ = s.run(s.argv(&refs));
        s.assert_token_stayed_home(&args.join(" "));
    }
}

#[test]
fn ids_cannot_change_host_or_path_shape() {
    let s = setup(fake_api);
    for id in ["", ".", ".."] {
        let err = s
            .run(s.argv(&["queue", "cancel", id]))
            .expect_err("a dot segment would resolve to another endpoint");
        assert!(format!("{err:#}").contains("not a valid"), "{err:#}");
    }
    assert!(s.api.seen().is_empty(), "{:?}", s.api.seen());
    for id in [
        "../../tenants",
        "a/b?c=d#e",
        "//evil.example/x",
        "@evil.example",
    ] {
        s.api.clear();
        s.run(s.argv(&["message", "show", id]))
            .expect("message show");
        let seen = s.assert_token_stayed_home(id);
        assert_eq!(seen.len(), 1);
        let target = &seen[0].target;
        assert!(
            target.starts_with("/v1/messages/") && target.matches('/').count() == 3,
            "{id:?} became {target}"
        );
        assert!(!target.contains(['?', '#']), "{id:?} became {target}");
    }
}

#[test]
fn base_url_path_prefix_is_kept() {
    let s = setup(fake_api);
    let mut argv = s.argv(&["tenant", "list"]);
    let i = argv.iter().position(|a| a == "--url").expect("--url") + 1;
    argv[i] = format!("{}/mailroom/", s.api.base);
    s.run(argv).expect("tenant list");
    let seen = s.assert_token_stayed_home("prefix");
    assert_eq!(seen[0].line(), "GET /mailroom/v1/tenants");
}

#[test]
fn default_url_and_token_come_from_the_data_directory() {
    let s = setup(fake_api);
    let addr = s.api.authority.clone();
    std::fs::write(
        s.dir.path().join("listeners.json"),
        json!({ "http": addr }).to_string(),
    )
    .expect("listeners.json");
    std::fs::write(
        s.dir.path().join("operator-token"),
        format!("{}\n", s.token),
    )
    .expect("operator-token");
    let argv: Vec<String> = [
        "mailroom",
        "webhook",
        "add",
        &s.trap_url(),
        "--data-dir",
        &s.dir.path().display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    // Not from the environment: this test names everything itself.
    let cli = Cli::try_parse_from(&argv).expect("parse");
    if std::env::var_os("MAILROOM_URL").is_some() || std::env::var_os("MAILROOM_TOKEN").is_some() {
        return;
    }
    run(cli).expect("webhook add");
    let seen = s.assert_token_stayed_home("defaults");
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        ["POST /v1/webhooks"]
    );
}

#[test]
fn a_redirect_is_not_followed() {
    let trap = trap();
    let to = format!("{}/v1/tenants", trap.base);
    let s = setup(move |_| Reply {
        status: 307,
        headers: vec![("location", to.clone())],
        content_type: "text/plain",
        body: String::new(),
    });
    let err = s
        .run(s.argv(&["tenant", "list"]))
        .expect_err("a 307 is an error");
    assert!(format!("{err:#}").contains("307"), "{err:#}");
    assert!(
        trap.seen().is_empty(),
        "followed the redirect: {:?}",
        trap.seen()
    );
}

#[test]
fn a_problem_answer_is_an_error_with_its_detail_and_field() {
    let s = setup(|_| Reply {
        status: 422,
        headers: Vec::new(),
        content_type: "application/problem+json",
        body: json!({"type": "about:blank", "title": "Unprocessable Entity", "status": 422,
                     "detail": "must be an https URL", "field": "url"})
        .to_string(),
    });
    let err = s
        .run(s.argv(&["webhook", "add", "{trap}"]))
        .expect_err("a 422 is an error");
    let text = format!("{err:#}");
    assert!(text.contains("422"), "{text}");
    assert!(text.contains("must be an https URL"), "{text}");
    assert!(text.contains("(field: url)"), "{text}");
    let s = setup(|_| Reply {
        status: 502,
        headers: Vec::new(),
        content_type: "text/plain",
        body: "upstream went away".into(),
    });
    let err = s.run(s.argv(&["queue"])).expect_err("a 502 is an error");
    assert!(format!("{err:#}").contains("upstream went away"), "{err:#}");
}

#[test]
fn a_bad_base_url_is_refused_before_any_request() {
    let s = setup(fake_api);
    for bad in [
        "ftp://host/",
        "http://user:pw@127.0.0.1/",
        "not a url",
        "http://h/?x=1",
    ] {
        let mut argv = s.argv(&["tenant", "list"]);
        let i = argv.iter().position(|a| a == "--url").expect("--url") + 1;
        argv[i] = bad.into();
        let err = s.run(argv).expect_err(bad);
        assert!(format!("{err:#}").contains("--url"), "{err:#}");
    }
    assert!(s.api.seen().is_empty());
}

/// Global arguments (the `--url`, `--token`, `--data-dir` of every API command) whose
/// id a subcommand argument reuses, anywhere in the tree: such an argument silently
/// takes the global's value slot (clap does not propagate a global into a subcommand
/// that has an argument with its id, and `debug_assert` does not complain).
fn shadowed_globals(root: &clap::Command) -> Vec<String> {
    fn walk(
        cmd: &clap::Command,
        path: String,
        inherited: &[(String, Option<String>)],
        globals: &mut BTreeSet<String>,
        locals: &mut Vec<(String, String)>,
        problems: &mut Vec<String>,
    ) {
        let mut mine = inherited.to_vec();
        for a in cmd.get_arguments() {
            let id = a.get_id().to_string();
            let long = a.get_long().map(str::to_string);
            if let Some((_, _)) = inherited
                .iter()
                .find(|(gid, glong)| *gid == id || (long.is_some() && *glong == long))
            {
                problems.push(format!(
                    "`{path}` argument `{id}` shadows a global argument"
                ));
            }
            if a.is_global_set() {
                globals.insert(id.clone());
                mine.push((id, long));
            } else {
                locals.push((path.clone(), id));
            }
        }
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            walk(sub, p, &mine, globals, locals, problems);
        }
    }
    let (mut globals, mut locals, mut problems) = (BTreeSet::new(), Vec::new(), Vec::new());
    walk(
        root,
        root.get_name().into(),
        &[],
        &mut globals,
        &mut locals,
        &mut problems,
    );
    // Stricter than shadowing: no argument anywhere shares an id with a global anywhere.
    for (path, id) in locals {
        if globals.contains(&id) {
            problems.push(format!(
                "`{path}` argument `{id}` has the id of a global argument"
            ));
        }
    }
    problems
}

#[test]
fn the_command_tree_is_sound_and_no_argument_shadows_a_global() {
    let root = Cli::command();
    root.clone().debug_assert();
    let problems = shadowed_globals(&root);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_shadow_check_catches_the_old_webhook_add_shape() {
    // The shape that sent the tenant key to the webhook receiver: a global `url` and
    // `webhook add <url>`. clap's own debug_assert accepts it.
    let old = clap::Command::new("mailroom").subcommand(
        clap::Command::new("webhook")
            .arg(clap::Arg::new("url").long("url").global(true))
            .subcommand(clap::Command::new("add").arg(clap::Arg::new("url").required(true))),
    );
    old.clone().debug_assert();
    let problems = shadowed_globals(&old);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("webhook add") && p.contains("`url`")),
        "{problems:?}"
    );
}

#[test]
fn send_attach_names_the_content_type_from_the_file_name() {
    let s = setup(fake_api);
    let files = [
        ("report.pdf", "application/pdf"),
        ("photo.JPG", "image/jpeg"),
        ("notes.txt", "text/plain"),
        ("data.unknownext", "application/octet-stream"),
    ];
    let mut args = vec![
        "send",
        "--from",
        "app@acme.example",
        "--to",
        "you@example.net",
    ];
    let paths: Vec<String> = files
        .iter()
        .map(|(name, _)| {
            let p = s.dir.path().join(name);
            std::fs::write(&p, b"x").expect("write attachment");
            p.display().to_string()
        })
        .collect();
    for p in &paths {
        args.extend(["--attach", p]);
    }
    s.run(s.argv(&args)).expect("send");
    let seen = s.assert_token_stayed_home("send --attach");
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).expect("json");
    let got: Vec<(&str, &str)> = body["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .map(|a| {
            (
                a["filename"].as_str().unwrap_or_default(),
                a["content_type"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(got, files);
}

#[test]
fn send_count_exits_non_zero_when_a_request_is_refused() {
    let n = std::sync::atomic::AtomicU64::new(0);
    let s = setup(move |seen| {
        // Every other request is over the tenant's quota.
        if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 2 == 1 {
            return Reply {
                status: 429,
                headers: Vec::new(),
                content_type: "application/problem+json",
                body: json!({"title": "Too Many Requests", "status": 429,
                             "detail": "messages_per_day reached"})
                .to_string(),
            };
        }
        fake_api(seen)
    });
    let args = [
        "send",
        "--from",
        "a@acme.example",
        "--to",
        "b@example.net",
        "--count",
        "4",
    ];
    let err = s.run(s.argv(&args)).expect_err("2 of 4 refused");
    assert!(format!("{err:#}").contains("2 of 4"), "{err:#}");
    s.assert_token_stayed_home("send --count");
    assert_eq!(s.api.seen().len(), 4);
    let s = setup(fake_api);
    s.run(s.argv(&args)).expect("all 4 accepted");
}
