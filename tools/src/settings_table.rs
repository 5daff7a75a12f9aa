//! The table of every setting in docs/configuration.md, generated from the clap
//! definitions of the four services and the `dropgate` CLI, so the docs cannot drift
//! from the code: `tests/settings_docs.rs` renders it and compares. Tooling, so it
//! lives here rather than in the services' crate.

use std::collections::BTreeMap;

use clap::CommandFactory;

/// Variables read outside clap, with what they do. Kept to what cannot be a flag: the
/// standard log filter, and a crash switch only the fault tests set.
pub const OUTSIDE_CLAP: [(&str, &str, &str); 2] = [
    (
        "RUST_LOG",
        "every service",
        "Log level filter (`tracing` syntax, e.g. `info,dropgate_functions=debug`); default `info`.",
    ),
    (
        "DROPGATE_FAILPOINT",
        "every service (tests only)",
        "Aborts the process at the named crash point; the fault tests' way of crashing at the worst moment. Never set in a deployment.",
    ),
];

/// The four services' commands, by binary name.
pub fn service_commands() -> Vec<(String, clap::Command)> {
    vec![
        (
            "queue-api".to_owned(),
            dropgate_functions::queue_api::ApiConfig::command(),
        ),
        (
            "admitter".to_owned(),
            dropgate_functions::admitter::AdmitterConfig::command(),
        ),
        (
            "goods-worker".to_owned(),
            dropgate_functions::goods_worker::GoodsConfig::command(),
        ),
        (
            "result-relay".to_owned(),
            dropgate_functions::result_relay::RelayConfig::command(),
        ),
    ]
}

/// One variable's row.
#[derive(Debug, Default)]
struct Row {
    flag: String,
    default: String,
    help: String,
    readers: Vec<String>,
}

/// The markdown table of every variable `commands` (and their subcommands) read, one
/// row per variable, sorted by name, plus [`OUTSIDE_CLAP`].
pub fn markdown(commands: &[(String, clap::Command)]) -> String {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for (name, command) in commands {
        collect(name, command, 0, &mut rows);
    }
    let mut text = String::from("| Variable | Flag | Default | Read by | Meaning |\n");
    text.push_str("|---|---|---|---|---|\n");
    for (variable, row) in &rows {
        text.push_str(&format!(
            "| `{variable}` | {} | {} | {} | {} |\n",
            code_or_dash(&row.flag),
            code_or_dash(&row.default),
            row.readers.join(", "),
            cell(&row.help),
        ));
    }
    for (variable, readers, help) in OUTSIDE_CLAP {
        text.push_str(&format!(
            "| `{variable}` | - | - | {readers} | {} |\n",
            cell(help)
        ));
    }
    text
}

/// Readers are named down to the first subcommand (`dropgate event`), which keeps the
/// column short where a whole command family reads a setting.
fn collect(path: &str, command: &clap::Command, depth: usize, rows: &mut BTreeMap<String, Row>) {
    for arg in command.get_arguments() {
        let Some(variable) = arg.get_env() else {
            continue;
        };
        let row = rows
            .entry(variable.to_string_lossy().into_owned())
            .or_default();
        if row.flag.is_empty() {
            row.flag = arg
                .get_long()
                .map(|long| format!("--{long}"))
                .unwrap_or_default();
            row.default = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",");
            row.help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(ToString::to_string)
                .unwrap_or_default();
        }
        if !row.readers.iter().any(|reader| reader == path) {
            row.readers.push(path.to_owned());
        }
    }
    for sub in command.get_subcommands() {
        if depth == 0 {
            collect(&format!("{path} {}", sub.get_name()), sub, 1, rows);
        } else {
            collect(path, sub, depth + 1, rows);
        }
    }
}

fn code_or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        format!("`{text}`")
    }
}

/// One table cell: a single line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_setting_is_a_prefixed_variable_with_a_meaning() {
        let table = markdown(&service_commands());
        for line in table.lines().skip(2) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let variable = cells[0].trim_start_matches("| ").trim_matches('`');
            assert!(
                variable.starts_with("DROPGATE_")
                    || ["DATABASE_URL", "RUST_LOG", "PUBSUB_EMULATOR_HOST"].contains(&variable),
                "{variable} lacks the DROPGATE_ prefix"
            );
            assert!(
                cells.last().is_some_and(|meaning| meaning.len() > 3),
                "{variable} has no meaning: {line}"
            );
        }
        for variable in [
            "DROPGATE_REDIS_URL",
            "DROPGATE_LOG_FORMAT",
            "DROPGATE_TRANSPORT",
            "DROPGATE_ADMITTER_EVENTS",
        ] {
            assert!(table.contains(&format!("| `{variable}` |")), "{variable}");
        }
    }
}
