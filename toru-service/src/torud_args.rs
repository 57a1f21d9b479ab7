//! `torud`'s command line, and its manual page `torud(8)`: clap renders the
//! synopsis and options from the same definition the binary parses, and the
//! sections a daemon's page needs (files, signals, exit status) follow.

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use crate::config::{self, ConfigError, Settings, SystemdDirs};

/// The Toru plugin host.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "torud",
    version,
    about = "The Toru plugin host daemon",
    long_about = "The Toru plugin host. torud runs in the foreground: under systemd it is \
started by toru.socket and toru-admin.socket at the first connection, reports \
readiness and liveness with sd_notify, and runs each plugin found in the plugin \
folders as a child process in a cgroup of its own, restarting it with backoff. \
SIGHUP (`systemctl reload toru`, `toructl reload`) re-reads the configuration and \
rescans the plugin folders."
)]
pub struct TorudArgs {
    /// Configuration file [default: /etc/toru/toru.toml, built-in defaults when missing].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print every error, and exit (0, or 78).
    #[arg(long)]
    pub check_config: bool,
    /// Run from a source checkout: the example plugins in examples/plugins,
    /// state under target/toru-dev, listening on 127.0.0.1:7070. With
    /// --config FILE, the keys FILE sets win (`[plugins.ID.config]`, say).
    #[arg(long)]
    pub dev: bool,
    /// With torud stopped: put the backup FILE (made by `toructl store
    /// backup`) in place of the store, checked whole first; the store in
    /// place is set aside, and the instance id becomes the backup's. Exits.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["check_config", "fresh_store"])]
    pub restore: Option<PathBuf>,
    /// With torud stopped: set the store aside and start over with an empty
    /// one that keeps the instance id. Every plugin's data and state, and
    /// the events, are lost. Exits.
    #[arg(long, conflicts_with = "check_config")]
    pub fresh_store: bool,
}

/// What `--restore` and `--fresh-store` do, instead of running.
pub mod offline {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use crate::config::Settings;
    use crate::store;

    /// One of the store operations run with torud stopped.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Offline {
        /// `--restore FILE`.
        Restore(PathBuf),
        /// `--fresh-store`.
        FreshStore,
    }

    /// Runs `what` on the state directory of `settings`; prints what was done, or why not.
    pub fn run(what: &Offline, settings: &Settings) -> ExitCode {
        let dir = &settings.state_dir;
        let outcome = match what {
            Offline::Restore(file) => store::restore(dir, file).map(|restored| {
                let c = &restored.counts;
                println!(
                    "restored {}: instance {}, {} keys of {} plugins, {} plugin records, {} events",
                    file.display(),
                    c.instance_id,
                    c.keys,
                    c.plugins,
                    c.records,
                    c.events
                );
                if let Some(before) = restored.replaced_instance {
                    println!("the instance id was {before}: licences made for it no longer apply");
                }
                if let Some(aside) = restored.set_aside {
                    println!("the store that was in place is kept as {}", aside.display());
                }
            }),
            Offline::FreshStore => store::start_afresh(dir).map(|fresh| {
                println!(
                    "an empty store for instance {} is in {}: every plugin's data and state, and the events, are gone",
                    fresh.instance_id,
                    dir.display()
                );
                if let Some(aside) = fresh.set_aside {
                    println!("the store that was in place is kept as {}", aside.display());
                }
            }),
        };
        match outcome {
            Ok(()) => {
                println!("start torud again: systemctl start toru");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("torud: {e}");
                let code = match &e {
                    store::StoreError::Locked { .. } => {
                        eprintln!("torud: stop it first: systemctl stop toru.service toru.socket");
                        75
                    }
                    e if e.is_damage() => 65,
                    _ => 1,
                };
                ExitCode::from(code)
            }
        }
    }
}

impl TorudArgs {
    /// The store operation asked for instead of running, if any.
    pub fn offline(&self) -> Option<offline::Offline> {
        if let Some(file) = &self.restore {
            Some(offline::Offline::Restore(file.clone()))
        } else if self.fresh_store {
            Some(offline::Offline::FreshStore)
        } else {
            None
        }
    }
}

impl TorudArgs {
    /// The settings these arguments name (read again on each reload).
    pub fn load(&self) -> Result<Settings, ConfigError> {
        if self.dev {
            let cwd = std::env::current_dir().map_err(|e| ConfigError {
                problems: vec![format!("cannot tell the current folder: {e}")],
            })?;
            config::dev(&cwd, self.config.as_deref())
        } else {
            config::load(self.config.as_deref(), &SystemdDirs::from_env())
        }
    }
}

/// The sections of `torud(8)` that are not about arguments, in roff.
const MAN_SECTIONS: &str = r#".SH ENVIRONMENT
.TP
\fBLISTEN_FDS\fR, \fBLISTEN_PID\fR, \fBLISTEN_FDNAMES\fR
Sockets passed by systemd: the listener named \fBhttp\fR (TCP, token required)
and the one named \fBadmin\fR (Unix socket, governed by its file mode). When
present, \fBlisten\fR in the configuration is not used.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
torud sends READY=1 once the store is open, every listener serves and every
enabled plugin has started or failed; STATUS= lines; WATCHDOG=1 at half the
interval, from the serving path; STOPPING=1; RELOADING=1 around a reload.
.TP
\fBSTATE_DIRECTORY\fR, \fBRUNTIME_DIRECTORY\fR
The defaults of \fBstate_dir\fR and \fBruntime_dir\fR when set.
.TP
\fBJOURNAL_STREAM\fR
When it names torud's standard error, torud logs to the journal directly,
each plugin's lines with the field \fBTORU_PLUGIN=\fR\fIid\fR and the fields
of the plugin's JSON line as \fBTORU_FIELD_\fR\fINAME\fR.
.TP
\fBTOKIO_WORKER_THREADS\fR
How many threads serve HTTP and the plugins' connections; one per core when
unset. On a small machine shared with other work, \fB1\fR spends less CPU
per request (no hand\-offs between threads) at the price of using one core
at most. Anything but a whole number from 1 up stops torud with an error.
Set it with \fBsystemctl edit toru.service\fR:
.RS
.nf
[Service]
Environment=TOKIO_WORKER_THREADS=1
.fi
.RE
.PP
None of these reach the plugins, which get \fBTORU_PLUGIN_SOCKET\fR,
\fBTORU_PLUGIN_ID\fR and \fBTORU_INSTANCE_ID\fR.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop: finish the requests in flight, ask each plugin to shut down, then
kill what is left of its cgroup.
.TP
\fBSIGHUP\fR
Reload: read the configuration again and rescan the plugin folders. New
plugins start, changed ones restart, removed ones stop, the others are left
alone. A broken configuration is refused and the running one kept.
\fBtoructl reload\fR does the same over the admin API and prints what
changed, or every error of a broken configuration.
.SH FILES
.TP
\fI/etc/toru/toru.toml\fR
The configuration; see \fBtoru.toml\fR(5).
.TP
\fI/var/lib/toru/toru.redb\fR
The instance id, the plugins' key-value data and states, recent events.
.TP
\fI/var/lib/toru/instance\-id\fR
The instance id again (mode 0600, written once): it outlives a lost
database, and a database of another installation is refused.
.TP
\fI/var/lib/toru/admin.token\fR
The bearer token for the HTTP API over TCP (mode 0600, made at first start).
.TP
\fI/run/toru/toru.sock\fR
The admin socket (root only), used by \fBtoructl\fR(1).
.TP
\fI/usr/lib/toru/plugins\fR, \fI/usr/local/lib/toru/plugins\fR
Plugin executables: packaged ones, then the administrator's.
.SH "EXIT STATUS"
.TP
\fB0\fR
Stopped on request, or \fB\-\-check\-config\fR found no problem.
.TP
\fB1\fR
A failure while running (its cause is logged and in systemd's status).
.TP
\fB65\fR
The store is damaged, missing while the installation exists, of another
installation, or of a newer torud; see RECOVERING THE STORE. toru.service
does not restart torud for this.
.TP
\fB71\fR
The sockets systemd passed are unusable.
.TP
\fB75\fR
\fB\-\-restore\fR or \fB\-\-fresh\-store\fR found torud running.
.TP
\fB78\fR
The configuration is unusable; every problem is printed. toru.service does
not restart torud for this (RestartPreventExitStatus=78).
.SH "RECOVERING THE STORE"
torud checks the checksum of every page of \fItoru.redb\fR at each start
(0.5 to 2 ms per MiB; \fB[store] verify_on_start\fR), and every stored value
carries a checksum of its own, checked at each read. Damaged data is never
served: at start torud refuses to run (exit status 65) and says why; while
running, a damaged value is answered with an error (logged once, at
priority err, with the plugin and key).
.PP
Take backups while torud runs: \fBtoructl store backup\fR \fIFILE\fR writes a
consistent copy of the whole store (every write acknowledged before it
began is in it). With torud stopped
(\fBsystemctl stop toru.service toru.socket\fR), either:
.TP
\fBtorud \-\-restore\fR \fIFILE\fR
puts the backup in place, checked whole first. What was written after the
backup is lost; the store in place is kept beside it as
\fItoru.redb.before\-restore\-\fRTIME, and the instance id becomes the
backup's.
.TP
\fBtorud \-\-fresh\-store\fR
starts over with an empty store that keeps the instance id (so licences
still apply). Every plugin's data, every plugin's enabled or failed state,
and the events are lost; the old file is kept as
\fItoru.redb.set\-aside\-\fRTIME.
.PP
Then \fBsystemctl start toru.socket toru.service\fR. Run as root, both give
the files they make to the owner of the state directory.
.SH EXAMPLES
.nf
systemctl status toru.service
journalctl \-u toru.service
journalctl \-u toru.service TORU_PLUGIN=hello
systemctl reload toru.service
torud \-\-check\-config
toructl store backup /root/toru\-$(date +%F).redb
torud \-\-restore /root/toru\-2026\-12\-01.redb
.fi
.SH "SEE ALSO"
\fBtoructl\fR(1), \fBtoru.toml\fR(5), \fBsystemd.socket\fR(5), \fBsd_notify\fR(3),
\fBjournalctl\fR(1)
"#;

/// `torud(8)` in roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut command = TorudArgs::command();
    command.build();
    crate::man::page(command, "8", "System Manager's Manual", MAN_SECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        TorudArgs::command().debug_assert();
    }

    #[test]
    fn the_man_page_has_every_option_and_the_daemon_sections() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH torud 8"),
            "{page}"
        );
        for text in [
            "check\\-config",
            "\\-\\-config",
            "\\-\\-dev",
            ".SH SIGNALS",
            ".SH FILES",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            "toru.toml\\fR(5)",
        ] {
            assert!(page.contains(text), "{text} missing from:\n{page}");
        }
    }
}
