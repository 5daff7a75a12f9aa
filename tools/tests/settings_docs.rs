//! docs/configuration.md's table of settings is the one the code defines: every
//! variable of the four services and the `dropgate` CLI, with its flag, default and
//! meaning. `DROPGATE_UPDATE_DOCS=1 cargo test -p dropgate-tools --test settings_docs`
//! rewrites it after a change.

use clap::CommandFactory;
use dropgate_tools::cli::Cli;
use dropgate_tools::settings_table::{markdown, service_commands};

const BEGIN: &str = "<!-- settings table: generated, do not edit by hand -->\n";
const END: &str = "<!-- end of the generated table -->\n";

#[test]
fn the_settings_table_in_the_docs_is_the_code_s() {
    let mut commands = service_commands();
    commands.push(("dropgate".to_owned(), Cli::command()));
    let table = markdown(&commands);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let doc = std::fs::read_to_string(path).expect("docs/configuration.md exists");
    let (head, rest) = doc.split_once(BEGIN).expect("the table's start marker");
    let (_, tail) = rest.split_once(END).expect("the table's end marker");
    let expected = format!("{head}{BEGIN}{table}{END}{tail}");
    if std::env::var_os("DROPGATE_UPDATE_DOCS").is_some() {
        std::fs::write(path, &expected).expect("rewrite docs/configuration.md");
        return;
    }
    assert!(
        doc == expected,
        "docs/configuration.md's table is out of date; rewrite it with \
         `DROPGATE_UPDATE_DOCS=1 cargo test -p dropgate-tools --test settings_docs`"
    );
}

#[test]
fn every_cli_setting_is_prefixed_and_explained() {
    let table = markdown(&[("dropgate".to_owned(), Cli::command())]);
    for line in table.lines().skip(2) {
        let variable = line
            .trim_start_matches("| `")
            .split('`')
            .next()
            .unwrap_or_default();
        assert!(
            // The unprefixed ones are the names the whole ecosystem reads (sqlx,
            // tracing, Google's Pub/Sub clients and emulator docs).
            variable.starts_with("DROPGATE_")
                || ["DATABASE_URL", "RUST_LOG", "PUBSUB_EMULATOR_HOST"].contains(&variable),
            "{variable} lacks the DROPGATE_ prefix"
        );
        assert!(!line.ends_with("|  |"), "{variable} has no meaning: {line}");
    }
}
