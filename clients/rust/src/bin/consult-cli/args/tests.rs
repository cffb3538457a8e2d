//! Parsing the command line, and that no option carries the token.

use super::*;
use clap::CommandFactory;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("consult-cli").chain(args.iter().copied()))
}

#[test]
fn the_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn defaults_to_the_local_hub_and_no_token_file() {
    let cli = parse(&["templates"]).unwrap();
    assert_eq!(cli.url, DEFAULT_URL);
    assert_eq!(cli.token_file, None);
    assert_eq!(cli.command, Command::Templates { provider: None });
}

#[test]
fn quick_takes_repeated_variables_whose_values_may_hold_equals() {
    let cli = parse(&[
        "quick",
        "--consultation",
        "k1",
        "--template",
        "t1",
        "--var",
        "minutes=10",
        "--var",
        "note=a=b",
    ])
    .unwrap();
    let Command::Quick { vars, .. } = cli.command else {
        panic!("not quick: {:?}", cli.command);
    };
    assert_eq!(
        vars,
        [
            ("minutes".to_owned(), "10".to_owned()),
            ("note".to_owned(), "a=b".to_owned())
        ]
    );
    assert!(
        parse(&[
            "quick",
            "--consultation",
            "k1",
            "--template",
            "t1",
            "--var",
            "10"
        ])
        .is_err()
    );
}

#[test]
fn global_options_go_after_the_subcommand_too() {
    let cli = parse(&[
        "watch",
        "--consultation",
        "k1",
        "--since",
        "0",
        "--token-file",
        "/run/t",
        "--url",
        "ws://hub:1/v1/ws",
    ])
    .unwrap();
    assert_eq!(
        cli.token_file.as_deref(),
        Some(std::path::Path::new("/run/t"))
    );
    assert_eq!(cli.url, "ws://hub:1/v1/ws");
    assert_eq!(
        cli.command,
        Command::Watch {
            consultation: "k1".to_owned(),
            since: Some(0)
        }
    );
}

#[test]
fn there_is_no_way_to_pass_the_token_itself() {
    assert!(parse(&["--token", "jwt", "templates"]).is_err());
    let help = Cli::command().render_long_help().to_string();
    assert!(!help.contains("--token "), "{help}");
    assert!(help.contains("CONSULT_TOKEN"), "{help}");
}

#[test]
fn alert_takes_its_channels_as_flags() {
    let cli = parse(&["alert", "--consultation", "k1", "--text", "Ready", "--sms"]).unwrap();
    let Command::Alert { push, sms, .. } = cli.command else {
        panic!("not alert");
    };
    assert_eq!((push, sms), (false, true));
}
