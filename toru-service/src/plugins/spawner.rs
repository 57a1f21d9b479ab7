//! Processes that cannot outlive torud.
//!
//! Every child torud starts (plugins, `--metadata` probes) asks the kernel
//! for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), so that a torud
//! killed outright, where no cgroup takes its children with it, leaves no
//! plugin behind. The kernel counts the *thread* that forked as the parent:
//! a child forked from a thread that ends is killed then. So all of them are
//! forked from one thread kept for the life of the process, never from
//! tokio's worker or blocking threads, which come and go.
//!
//! What the signal cannot reach (a plugin's own helpers in its process
//! group) is found by the next torud through [`super::leftovers`].

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// One fork to do: the command, the runtime that is to reap the child, and
/// where to say how it went.
struct Job {
    command: Command,
    runtime: Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The forking thread's queue; the thread lives as long as the process.
static FORKER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

fn forker() -> io::Result<&'static mpsc::Sender<Job>> {
    if let Some(sender) = FORKER.get() {
        return Ok(sender);
    }
    let (sender, jobs) = mpsc::channel::<Job>();
    let started = std::thread::Builder::new()
        .name("toru-forker".to_owned())
        .spawn(move || {
            for job in jobs {
                // The child is reaped by the runtime of whoever asked.
                let _entered = job.runtime.enter();
                let mut command = job.command;
                let _ = job.reply.send(command.spawn());
            }
        });
    match started {
        // Another caller may have won the race: its thread is the one kept,
        // and this one ends at once as its queue is dropped.
        Ok(_) => Ok(FORKER.get_or_init(|| sender)),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot start the thread that starts plugins: {e}"),
        )),
    }
}

/// A command for `program` whose child the kernel kills when torud dies:
/// its first hook between fork and exec asks for that, before any other.
pub(crate) fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    die_with_parent(&mut command);
    command
}

/// Starts `command` (made by [`command`]) from the thread kept for forking.
/// Call from within a tokio runtime.
pub(crate) async fn spawn(command: Command) -> io::Result<Child> {
    let (reply, answer) = oneshot::channel();
    let job = Job {
        command,
        runtime: Handle::current(),
        reply,
    };
    forker()?
        .send(job)
        .map_err(|_| io::Error::other("the thread that starts plugins is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the thread that starts plugins gave no answer"))?
}

/// The first hook between fork and exec: SIGKILL on the parent's death, and
/// an exit now if the parent died before the request took effect.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = nix::unistd::getpid().as_raw();
    let hook = move || {
        // SAFETY: prctl(2) with integer arguments and getppid(2) are
        // async-signal-safe system calls; nothing is allocated or locked.
        let set = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        if set == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::getppid() } != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec and only makes
    // the async-signal-safe calls above.
    unsafe {
        command.pre_exec(hook);
    }
}
