//! The operations as an operator runs them: `funnelflow seed|backup|restore|purge`
//! on the emulator, their output and exit codes.

use std::process::{Command, Output};
use std::time::Duration;

use funnelflow::ops::typed::Root;
use funnelflow::store::firestore::FirestoreStore;
use funnelflow::store::{DocPath, Query, Store, value};

use crate::ops_backup::{dump, temp_dir};
use crate::support;

const BIN: &str = env!("CARGO_BIN_EXE_funnelflow");
const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn connect(project: &str) -> FirestoreStore {
    FirestoreStore::connect(project, "(default)", None, Duration::from_secs(10))
        .await
        .unwrap()
}

#[test]
fn seed_refuses_a_real_firestore() {
    let real = [
        ("GOOGLE_CLOUD_PROJECT", "prod-project"),
        ("FUNNELFLOW_SECRET", SECRET),
    ];
    let out = run(&real, &["seed", "--users", "1"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes-this-is-production"));
}

#[test]
fn seed_refuses_absurd_sizes_before_touching_anything() {
    for args in [
        ["seed", "--users", "0", "--analyses-per-user", "1"],
        ["seed", "--users", "100001", "--analyses-per-user", "1"],
        ["seed", "--users", "1", "--analyses-per-user", "1001"],
    ] {
        let out = run(&[], &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not in"),
            "{args:?}"
        );
    }
}

/// Name, email, plan and counters of every seeded user: what `--seed` decides.
async fn seeded_profiles(store: &dyn Store) -> Vec<String> {
    store
        .query(&Query::collection(None, "users"))
        .await
        .unwrap()
        .iter()
        .map(|d| {
            let f = |k: &str| d.field(k).map(value::to_json).unwrap_or_default();
            format!(
                "{} {} {} {} {} {}",
                d.path,
                f("name"),
                f("email"),
                f("subscription.planType"),
                f("metadata.totalAnalyses"),
                f("metadata.totalCopyGenerations")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_backup_tamper_restore_purge_from_the_command_line() {
    let host = support::emulator_host();
    let env = |project: &str| {
        vec![
            ("FIRESTORE_EMULATOR_HOST".to_owned(), host.clone()),
            ("GOOGLE_CLOUD_PROJECT".to_owned(), project.to_owned()),
        ]
    };
    let run_in = |project: &str, args: &[&str]| {
        let e = env(project);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&e, args)
    };
    let (source, twin, target) = (
        support::unique_project_id("cli-source"),
        support::unique_project_id("cli-twin"),
        support::unique_project_id("cli-target"),
    );
    let seeded = ok(&run_in(
        &source,
        &[
            "seed",
            "--users",
            "4",
            "--analyses-per-user",
            "12",
            "--seed",
            "42",
        ],
    ));
    assert!(seeded.contains("seeded 4 users"), "{seeded}");
    assert!(seeded.contains("48 analyses"), "{seeded}");
    ok(&run_in(
        &twin,
        &[
            "seed",
            "--users",
            "4",
            "--analyses-per-user",
            "12",
            "--seed",
            "42",
        ],
    ));
    // Again: the existing users are left as they are (no quota overrun, no duplicates).
    let rerun = ok(&run_in(
        &source,
        &[
            "seed",
            "--users",
            "5",
            "--analyses-per-user",
            "12",
            "--seed",
            "42",
        ],
    ));
    assert!(
        rerun.contains("seeded 1 users") && rerun.contains("4 existing users left alone"),
        "{rerun}"
    );
    ok(&run_in(
        &twin,
        &[
            "seed",
            "--users",
            "5",
            "--analyses-per-user",
            "12",
            "--seed",
            "42",
        ],
    ));
    let (src, twn) = (connect(&source).await, connect(&twin).await);
    assert_eq!(
        seeded_profiles(&src).await,
        seeded_profiles(&twn).await,
        "same seed, same data"
    );
    // More analyses than the free plan's 10 a month: nobody is on it.
    assert!(!seeded_profiles(&src).await.iter().any(|p| p.contains("\"free\"")));

    let dir = temp_dir("cli-backup");
    let out = dir.join("b");
    let summary = ok(&run_in(&source, &["backup", "--out", out.to_str().unwrap()]));
    assert!(
        summary.starts_with(&format!("backup of {source}/(default): ")),
        "{summary}"
    );

    // A tampered copy: exit code 3, nothing written.
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for e in std::fs::read_dir(&out).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), bad.join(e.file_name())).unwrap();
    }
    let users_file = std::fs::read_dir(&bad)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-users.ndjson"))
        .unwrap();
    let text = std::fs::read_to_string(&users_file).unwrap();
    std::fs::write(
        &users_file,
        text.replacen("\"stringValue\":\"", "\"stringValue\":\"X", 1),
    )
    .unwrap();
    let refused = run_in(&target, &["restore", "--from", bad.to_str().unwrap()]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("backup refused"));
    let tgt = connect(&target).await;
    assert!(tgt.scan(None, 1).await.unwrap().is_empty());

    let restored = ok(&run_in(&target, &["restore", "--from", out.to_str().unwrap()]));
    assert!(restored.starts_with("restored "), "{restored}");
    assert_eq!(
        dump(&tgt, &Root::new(&target, "(default)")).await,
        dump(&src, &Root::new(&source, "(default)")).await
    );
    let again = run_in(&target, &["restore", "--from", out.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Purge: an aged analytics event goes, the dry run only counts it.
    let old = jiff::Timestamp::from_second(1_000_000_000).unwrap();
    let mut f = funnelflow::store::Fields::new();
    f.insert("timestamp".into(), value::timestamp(old));
    tgt.commit(vec![funnelflow::store::Write::set(
        DocPath::root("analytics", "e1").unwrap(),
        f,
    )])
    .await
    .unwrap();
    let dry = ok(&run_in(&target, &["purge", "--dry-run"]));
    assert!(dry.contains("would remove 1 analytics events"), "{dry}");
    let done = ok(&run_in(&target, &["purge"]));
    assert!(done.contains("removed 1 analytics events"), "{done}");
    assert!(
        tgt.get(&DocPath::root("analytics", "e1").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
