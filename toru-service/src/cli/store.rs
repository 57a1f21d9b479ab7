//! `toructl store backup FILE`: the backup torud streams, written beside
//! FILE, checked whole (every value's checksum), then put in place.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::StoreCommand;
use super::commands::Session;
use super::error::CliError;

impl Session<'_> {
    /// Runs a `store` command.
    pub(super) async fn store(&self, command: &StoreCommand) -> Result<(), CliError> {
        match command {
            StoreCommand::Backup { file, force } => self.backup(file, *force).await,
        }
    }

    async fn backup(&self, file: &Path, force: bool) -> Result<(), CliError> {
        if file == Path::new("-") {
            let mut stdout = tokio::io::stdout();
            self.client
                .download("/api/store/backup", &mut stdout)
                .await?;
            return Ok(());
        }
        if file.exists() && !force {
            return Err(CliError::Failed(format!(
                "{} exists; name another file, or pass --force to replace it",
                file.display()
            )));
        }
        let mut partial = file.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let result = self.download_checked(file, &partial).await;
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        let (counts, bytes) = result?;
        if self.json {
            return Ok(self.out.json(&json!({
                "file": file.display().to_string(),
                "bytes": bytes,
                "instance_id": counts.instance_id,
                "keys": counts.keys,
                "plugins": counts.plugins,
                "records": counts.records,
                "events": counts.events,
            }))?);
        }
        self.out.line(&format!(
            "backup of instance {}: {} keys of {} plugins, {} plugin records, {} events ({} bytes) in {}",
            counts.instance_id,
            counts.keys,
            counts.plugins,
            counts.records,
            counts.events,
            bytes,
            file.display()
        ))?;
        Ok(())
    }

    /// Downloads into `partial`, checks it, and renames it to `file`.
    async fn download_checked(
        &self,
        file: &Path,
        partial: &Path,
    ) -> Result<(crate::store::Counts, u64), CliError> {
        let local = |what: &str, e: std::io::Error| {
            CliError::Failed(format!("{what} {}: {e}", partial.display()))
        };
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(partial)
            .map_err(|e| local("cannot create", e))?;
        let mut out = tokio::fs::File::from_std(out);
        let bytes = self.client.download("/api/store/backup", &mut out).await?;
        out.sync_all().await.map_err(|e| local("cannot write", e))?;
        drop(out);
        let check = partial.to_owned();
        let counts = crate::store::inspect_async(&check)
            .await
            .map_err(|e| CliError::Failed(format!("the backup torud sent is not sound: {e}")))?;
        std::fs::rename(partial, file).map_err(|e| local("cannot rename", e))?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok((counts, bytes))
    }
}
