//! The sections of toructl's manual pages that clap does not know: what the
//! whole tool reads (ENVIRONMENT, FILES), how it ends (EXIT STATUS), and
//! EXAMPLES, on the main page and on the pages of the commands used most.

/// The roff a page adds, by page name (`toructl`, `toructl-plugins-logs`, ...).
pub(super) fn extra(page: &str) -> String {
    let mut roff = String::new();
    if let Some(examples) = examples(page) {
        roff.push_str(".SH EXAMPLES\n");
        roff.push_str(examples);
    }
    if page == "toructl" {
        roff.push_str(MAIN);
    } else {
        roff.push_str(".SH SEE ALSO\n\\fBtoructl\\fR(1), \\fBtorud\\fR(8)\n");
    }
    roff
}

/// Examples, by page: each `.TP` a command line, then what it does.
fn examples(page: &str) -> Option<&'static str> {
    Some(match page {
        "toructl" => {
            r".TP
\fBtoructl status\fR
Instance, version, uptime, listeners, plugins by state, and warnings.
.TP
\fBtoructl plugins\fR
Every plugin: state, health, pid, restarts, protocol, version, route.
.TP
\fBtoructl plugins show hello\fR
As \fBsystemctl status\fR for one plugin: state since when, last exit, its last lines.
.TP
\fBtoructl plugins logs hello \-f \-\-level warn\fR
Its warnings and errors as they come.
.TP
\fBtoructl reload\fR
Re-read /etc/toru/toru.toml and the plugin folders; say what changed.
.TP
\fBtoructl \-\-url http://127.0.0.1:7070 status\fR
The same over TCP, with the admin token.
"
        }
        "toructl-plugins-logs" => {
            r".TP
\fBtoructl plugins logs hello \-n 50\fR
The last 50 lines, each with its fields (\fBnote=n1 count=3\fR).
.TP
\fBtoructl plugins logs hello \-f \-n 0\fR
Only new lines, until Ctrl\-C.
.TP
\fBtoructl \-\-json plugins logs hello \-f | jq .fields\fR
One JSON object per line.
"
        }
        "toructl-plugins-show" => {
            r".TP
\fBtoructl plugins show hello\fR
State and since when, pid, restarts after crashes (and by request), the last exit in words, the last 5 lines.
"
        }
        "toructl-kv-get" => {
            r".TP
\fBtoructl kv get hello colour\fR
The value; into a pipe or a file, its bytes exactly (no newline added).
"
        }
        "toructl-kv-set" => {
            r".TP
\fBtoructl kv set hello colour blue\fR
.TP
\fBtoructl kv set hello photo \- < photo.jpg\fR
The value from stdin, byte for byte.
"
        }
        "toructl-reload" => {
            r".TP
\fBinstall \-m 0755 target/release/my\-plugin /usr/local/lib/toru/plugins/ && toructl reload\fR
Put a new build in place (\fBcp\fR onto a running plugin fails with \(lqText file busy\(rq) and have torud restart it.
"
        }
        "toructl-license-install" => {
            r".TP
\fBtoructl license install reports acme.lic\fR
Check and install the licence the vendor sent for this instance (\fBtoructl instance\-id\fR); the plugin restarts with it.
"
        }
        "toructl-store-backup" => {
            r".TP
\fBtoructl store backup /root/toru\-$(date +%F).redb\fR
A consistent copy of the store, checked, while torud runs.
"
        }
        _ => return None,
    })
}

/// ENVIRONMENT, FILES and EXIT STATUS of `toructl(1)`.
const MAIN: &str = r#".SH ENVIRONMENT
.TP
\fBTORU_SOCKET\fR
torud's admin socket, as \fB\-\-socket\fR.
.TP
\fBTORU_URL\fR
torud over TCP, as \fB\-\-url\fR.
.TP
\fBTORU_TOKEN_FILE\fR
The admin token for \fB\-\-url\fR, as \fB\-\-token\-file\fR.
.TP
\fBNO_COLOR\fR
When set and not empty, no colours (there are none when stdout is not a terminal either).
.SH FILES
.TP
\fI/run/toru/toru.sock\fR
The admin socket (root only), made by toru\-admin.socket.
.TP
\fI/var/lib/toru/admin.token\fR
The admin token, for TCP and the web console (mode 0600).
.SH EXIT STATUS
.TP
\fB0\fR
Done.
.TP
\fB1\fR
The operation failed; the message says why (with \fB\-\-json\fR, as \fB{"error": ..., "exit_code": 1}\fR on stderr).
.TP
\fB2\fR
Usage: unknown command, missing or bad argument.
.TP
\fB69\fR
torud cannot be reached (a missing or stale socket: see \fBsystemctl status toru\fR).
.TP
\fB77\fR
Permission denied: not root for the admin socket, or a refused token.
.SH SEE ALSO
\fBtorud\fR(8), \fBtoru.toml\fR(5), \fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;
