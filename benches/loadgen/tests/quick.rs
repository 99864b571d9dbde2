//! The benchmark itself keeps working: `loadgen compare --quick` drives the real
//! registry binary and the sink through every scenario (skopeo included) and the scale
//! check, and prints a figure for each. The reference registry is left out here; CI
//! does not install it, and `benches/run` does.

use std::process::Command;

/// The registry binary cargo built for this workspace's tests, next to loadgen.
fn registry() -> std::path::PathBuf {
    let loadgen = std::path::PathBuf::from(env!("CARGO_BIN_EXE_loadgen"));
    loadgen.with_file_name("registry")
}

#[test]
fn quick_comparison_reports_every_scenario() {
    let registry = registry();
    assert!(
        registry.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        registry.display()
    );
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "compare",
            "--quick",
            "--runs",
            "1",
            "--servers",
            "lain,sink",
        ])
        .arg("--registry")
        .arg(&registry)
        .arg("--scratch")
        .arg(scratch.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadgen failed:\n{stderr}");

    // Every scenario row has a positive figure for this registry, and one for the sink
    // wherever the sink can stand in (not for skopeo).
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| scenario") && !l.starts_with("| ---"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .filter(|cells: &Vec<&str>| cells.len() == 8)
        .collect();
    assert_eq!(rows.len(), 14, "one row per scenario:\n{stdout}");
    let figure = |cell: &str| -> f64 {
        cell.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure in `{cell}`:\n{stdout}"))
    };
    for row in &rows {
        assert!(figure(row[2]) > 0.0, "{row:?}");
        if !row[0].starts_with("skopeo") {
            assert!(figure(row[7]) > 0.0, "{row:?}");
        }
        // No reference in this run: no figure and no ratio.
        assert_eq!(row[3], "–", "{row:?}");
    }
    // CPU per GiB pushed, memory, and the scale check are reported too.
    assert!(stdout.contains("sha256 of 1 GiB"), "{stdout}");
    assert!(stdout.contains("| lain | "), "{stdout}");
    let startup = stdout
        .lines()
        .find(|l| l.starts_with("Start-up"))
        .unwrap_or_else(|| panic!("no start-up figure:\n{stdout}"));
    assert!(startup.contains(" ms"), "{startup}");
}
