//! Artifact sizes: the release zips as they ship, built by
//! `scripts/build-artifacts.sh` (cargo-lambda; arm64 where the toolchain
//! allows, else x86_64), which prints one line per function:
//! `<fn> bootstrap=<bytes> zip=<bytes> target=<triple>`.

use crate::report::{mb, table, Section, Target};
use autopilot_tests::root;
use std::process::{Command, Stdio};

pub const SCRIPT: &str = "scripts/build-artifacts.sh";
/// The limit, read strictly: 2.5 MB = 2,500,000 bytes.
pub const ZIP_LIMIT: u64 = 2_500_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub function: String,
    pub bootstrap: u64,
    pub zip: u64,
    pub target: String,
}

/// The artifact lines of the script's output; other lines are ignored.
pub fn parse(output: &str) -> Vec<Artifact> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let function = words.next()?.to_string();
            let (mut bootstrap, mut zip, mut target) = (None, None, None);
            for word in words {
                match word.split_once('=')? {
                    ("bootstrap", v) => bootstrap = v.parse().ok(),
                    ("zip", v) => zip = v.parse().ok(),
                    ("target", v) => target = Some(v.to_string()),
                    _ => return None,
                }
            }
            Some(Artifact {
                function,
                bootstrap: bootstrap?,
                zip: zip?,
                target: target?,
            })
        })
        .collect()
}

/// Runs the script (its progress on stderr shows as it goes) and parses what it printed.
pub fn build() -> Result<Vec<Artifact>, String> {
    let script = root().join(SCRIPT);
    if !script.exists() {
        return Err(format!("{SCRIPT} is not in this checkout"));
    }
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {SCRIPT}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    if !out.status.success() {
        return Err(format!("{SCRIPT} failed ({})", out.status));
    }
    let artifacts = parse(&stdout);
    if artifacts.is_empty() {
        return Err(format!(
            "{SCRIPT} printed no `<fn> bootstrap=… zip=… target=…` line"
        ));
    }
    Ok(artifacts)
}

/// The artifacts table and the zip-size target of each function.
pub fn section(result: &Result<Vec<Artifact>, String>, functions: &[&str]) -> Section {
    let mut md = String::from("## Artifact sizes\n\n");
    let mut targets = Vec::new();
    match result {
        Ok(artifacts) => {
            let mut triples: Vec<&str> = artifacts.iter().map(|a| a.target.as_str()).collect();
            triples.sort();
            triples.dedup();
            md += &format!(
                "Built by `{SCRIPT}` for {}: the `bootstrap` binary and the zip that ships it.\n\n",
                triples
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let rows: Vec<Vec<String>> = artifacts
                .iter()
                .map(|a| {
                    vec![
                        a.function.clone(),
                        format!("{} ({} bytes)", mb(a.bootstrap), a.bootstrap),
                        format!("{} ({} bytes)", mb(a.zip), a.zip),
                        format!("`{}`", a.target),
                    ]
                })
                .collect();
            md += &table(&["Function", "bootstrap", "zip", "Target"], &rows);
        }
        Err(why) => md += &format!("Not measured: {why}.\n"),
    }
    for f in functions {
        let found = result
            .as_ref()
            .ok()
            .and_then(|all| all.iter().find(|a| a.function == *f));
        let t = match found {
            Some(a) => {
                let met = a.zip <= ZIP_LIMIT;
                let t = Target::new(format!("{f} zip"), mb(a.zip), "<= 2.5 MB", met);
                if met {
                    t
                } else {
                    t.note(format!(
                        "{} over; {} target `{}`",
                        mb(a.zip - ZIP_LIMIT),
                        f,
                        a.target
                    ))
                }
            }
            None => Target::new(format!("{f} zip"), "not measured", "<= 2.5 MB", false).note(
                match result {
                    Ok(_) => format!("{SCRIPT} printed no line for {f}"),
                    Err(why) => why.clone(),
                },
            ),
        };
        targets.push(t);
    }
    Section {
        markdown: md,
        targets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scripts_lines_and_skips_the_rest() {
        let out = "building deploy...\n\
                   deploy bootstrap=6543210 zip=2345678 target=aarch64-unknown-linux-gnu\n\
                   rotate bootstrap=7000000 zip=2600000 target=aarch64-unknown-linux-gnu\n\
                   done\n";
        assert_eq!(
            parse(out),
            vec![
                Artifact {
                    function: "deploy".into(),
                    bootstrap: 6543210,
                    zip: 2345678,
                    target: "aarch64-unknown-linux-gnu".into()
                },
                Artifact {
                    function: "rotate".into(),
                    bootstrap: 7000000,
                    zip: 2600000,
                    target: "aarch64-unknown-linux-gnu".into()
                },
            ]
        );
    }

    #[test]
    fn a_zip_over_the_limit_is_missed_and_a_missing_function_is_not_measured() {
        let result = Ok(parse(
            "deploy bootstrap=1 zip=2500000 target=t\nrotate bootstrap=1 zip=2500001 target=t\n",
        ));
        let s = section(&result, &["deploy", "rotate", "snapshot"]);
        let met: Vec<bool> = s.targets.iter().map(|t| t.met).collect();
        assert_eq!(met, vec![true, false, false]);
        assert!(s.targets[2].measured.contains("not measured"));
    }
}
