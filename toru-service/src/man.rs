//! Manual pages from the clap definitions: clap_mangen's sections, but a
//! SYNOPSIS that names each option's value (`[--lines N]`, not `[--lines]`),
//! and sections of our own (EXAMPLES, FILES, ENVIRONMENT, EXIT STATUS).

use std::io::Write;
use std::path::Path;

use clap::{ArgAction, Command};

/// Writes a page for `command` and one for each subcommand that is not hidden
/// (`toructl.1`, `toructl-plugins-logs.1`, ...) into `dir`; `extra(name)` is the roff
/// of the sections a page adds, by page name (`toructl-plugins-logs`).
pub(crate) fn write_pages(
    command: Command,
    dir: &Path,
    section: &str,
    extra: &dyn Fn(&str) -> String,
) -> std::io::Result<()> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    write_tree(&command, dir, section, extra)
}

fn write_tree(
    command: &Command,
    dir: &Path,
    section: &str,
    extra: &dyn Fn(&str) -> String,
) -> std::io::Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, dir, section, extra)?;
    }
    let name = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned();
    let page = page(command.clone(), section, "", &extra(&name))?;
    std::fs::write(dir.join(format!("{name}.{section}")), page)
}

/// One page: title, NAME, SYNOPSIS (ours), DESCRIPTION, OPTIONS, SUBCOMMANDS,
/// `extra`, VERSION.
pub(crate) fn page(
    command: Command,
    section: &str,
    manual: &str,
    extra: &str,
) -> std::io::Result<Vec<u8>> {
    let subcommands = command.get_subcommands().any(|s| !s.is_hide_set());
    let mut man = clap_mangen::Man::new(command.clone()).section(section.to_owned());
    if !manual.is_empty() {
        man = man.manual(manual.to_owned());
    }
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    page.write_all(synopsis(&command).as_bytes())?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    if subcommands {
        man.render_subcommands_section(&mut page)?;
    }
    page.write_all(extra.as_bytes())?;
    if command.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

/// `.SH SYNOPSIS` with every option and the name of its value:
/// `toructl plugins logs [-n|--lines N] [-f|--follow] [--level LEVEL] ID`.
pub(crate) fn synopsis(command: &Command) -> String {
    let name = command.get_bin_name().unwrap_or_else(|| command.get_name());
    let mut words = vec![format!("\\fB{}\\fR", escape(name))];
    // A subcommand's page leaves out the options of the whole tool: its own page has them.
    let sub = name.contains(' ');
    for arg in command.get_arguments() {
        if arg.is_hide_set()
            || (sub && arg.is_global_set())
            || arg.is_positional()
            || matches!(arg.get_action(), ArgAction::Help | ArgAction::Version)
        {
            continue;
        }
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => {
                format!("\\fB\\-{short}\\fR|\\fB\\-\\-{}\\fR", escape(long))
            }
            (Some(short), None) => format!("\\fB\\-{short}\\fR"),
            (None, Some(long)) => format!("\\fB\\-\\-{}\\fR", escape(long)),
            (None, None) => continue,
        };
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values())
            && !matches!(
                arg.get_action(),
                ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
            );
        let value = if takes_value {
            let names = arg
                .get_value_names()
                .map(|v| v.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
            format!(" \\fI{}\\fR", escape(&names))
        } else {
            String::new()
        };
        words.push(if arg.is_required_set() {
            format!("{flag}{value}")
        } else {
            format!("[{flag}{value}]")
        });
    }
    for arg in command.get_positionals().filter(|a| !a.is_hide_set()) {
        let names = arg
            .get_value_names()
            .map(|v| v.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        let many = if arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
            "..."
        } else {
            ""
        };
        let word = format!("\\fI{}\\fR{many}", escape(&names));
        words.push(if arg.is_required_set() {
            word
        } else {
            format!("[{word}]")
        });
    }
    if command.get_subcommands().any(|s| !s.is_hide_set()) {
        words.push(if command.is_subcommand_required_set() {
            "\\fICOMMAND\\fR".to_owned()
        } else {
            "[\\fICOMMAND\\fR]".to_owned()
        });
    }
    format!(".SH SYNOPSIS\n{}\n", words.join(" "))
}

/// roff's own characters, escaped.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction, Command};

    #[test]
    fn the_synopsis_names_values_and_arguments() {
        let mut command = Command::new("tool")
            .subcommand(
                Command::new("logs")
                    .arg(Arg::new("id").value_name("ID").required(true))
                    .arg(Arg::new("lines").short('n').long("lines").value_name("N"))
                    .arg(
                        Arg::new("follow")
                            .short('f')
                            .long("follow")
                            .action(ArgAction::SetTrue),
                    ),
            )
            .arg(Arg::new("json").long("json").action(ArgAction::SetTrue))
            .subcommand_required(true);
        command.build();
        assert_eq!(
            super::synopsis(&command),
            ".SH SYNOPSIS\n\\fBtool\\fR [\\fB\\-\\-json\\fR] \\fICOMMAND\\fR\n"
        );
        let logs = command.find_subcommand("logs").unwrap();
        assert_eq!(
            super::synopsis(logs),
            ".SH SYNOPSIS\n\\fBtool logs\\fR [\\fB\\-n\\fR|\\fB\\-\\-lines\\fR \\fIN\\fR] \
             [\\fB\\-f\\fR|\\fB\\-\\-follow\\fR] \\fIID\\fR\n"
        );
    }
}
