//! Noticing that the config or a file it reads has changed, so that `serve` can reload
//! without a SIGHUP (`[server] watch_files`).
//!
//! The folders holding the files are watched, not the files: Kubernetes updates a mounted
//! Secret or ConfigMap by swapping the `..data` symlink in the folder, and editors save by
//! renaming a new file over the old one. Neither touches the inode a file watch would hold.
//!
//! `watch` takes two closures rather than the proxy: it stays a leaf that knows nothing of
//! configs or reloads (and is tested with a counter), `files` is asked again after every
//! change because a reload can add or drop files, and `on_change` is synchronous because a
//! reload is, so the next burst of changes is only looked at once the reload is done.

use std::collections::HashSet;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the folders must stay quiet before `on_change` runs: one reload per save or
/// Secret update, which arrive as bursts of events, and never a read of a half-written file.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Calls `on_change` each time a change to one of `files()` has settled, then watches what
/// `files()` names next. Returns only if no watcher can be had (e.g. out of inotify
/// instances); a folder that cannot be watched is logged and tried again after the next
/// change.
pub async fn watch(
    files: impl Fn() -> Vec<PathBuf>,
    on_change: impl Fn(),
) -> Result<Infallible, notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    let mut watched = Watched::default();
    watched.update(&mut watcher, files());
    loop {
        next_change(&mut rx, &watched).await;
        while tokio::time::timeout(DEBOUNCE, next_change(&mut rx, &watched))
            .await
            .is_ok()
        {}
        on_change();
        watched.update(&mut watcher, files());
    }
}

type Events = mpsc::UnboundedReceiver<notify::Result<Event>>;

async fn next_change(rx: &mut Events, watched: &Watched) {
    loop {
        // The sender lives in the watcher, which outlives this loop.
        match rx.recv().await {
            Some(Ok(event)) if watched.matters(&event) => return,
            Some(Ok(_)) => {}
            Some(Err(err)) => tracing::warn!(error = %err, "watching files"),
            None => std::future::pending().await,
        }
    }
}

#[derive(Default)]
struct Watched {
    folders: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
}

impl Watched {
    fn update(&mut self, watcher: &mut impl Watcher, files: Vec<PathBuf>) {
        let mut wanted = HashSet::new();
        for file in files {
            let Ok(file) = std::path::absolute(&file) else {
                continue;
            };
            // A symlink's target may live elsewhere and be edited in place there.
            if let Ok(real) = file.canonicalize() {
                wanted.insert(real);
            }
            wanted.insert(file);
        }
        let folders: HashSet<PathBuf> = wanted
            .iter()
            .filter_map(|f| f.parent().map(Path::to_owned))
            .collect();
        for gone in self.folders.difference(&folders) {
            // Fails when the folder is gone and its watch with it, which is fine.
            let _ = watcher.unwatch(gone);
        }
        let mut now = HashSet::new();
        for folder in folders {
            if self.folders.contains(&folder) {
                now.insert(folder);
                continue;
            }
            match watcher.watch(&folder, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    now.insert(folder);
                }
                Err(err) => tracing::warn!(folder = %folder.display(), error = %err, "cannot watch"),
            }
        }
        self.folders = now;
        self.files = wanted;
    }

    /// Whether `event` may have changed what a file reads as. Opening and reading are not
    /// changes (a reload reads every file, and must not set off the next one); neither are
    /// other files in the folder, except Kubernetes' `..data` and `..TIMESTAMP` entries.
    fn matters(&self, event: &Event) -> bool {
        if event.need_rescan() {
            return true;
        }
        if let EventKind::Access(kind) = event.kind
            && kind != AccessKind::Close(AccessMode::Write)
        {
            return false;
        }
        event.paths.iter().any(|path| {
            self.files.contains(path)
                || path
                    .file_name()
                    .is_some_and(|name| name.as_encoded_bytes().starts_with(b".."))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Runs `watch` over `files` and returns how many changes it has seen so far. Like a
    /// reload, each change reads the files.
    fn counting(files: Vec<PathBuf>) -> Arc<AtomicUsize> {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let read = files.clone();
        tokio::spawn(async move {
            let _ = watch(
                move || files.clone(),
                move || {
                    read.iter().for_each(|f| drop(std::fs::read(f)));
                    seen.fetch_add(1, Ordering::SeqCst);
                },
            )
            .await;
        });
        count
    }

    async fn until(count: &AtomicUsize, at_least: usize) {
        for _ in 0..500 {
            if count.load(Ordering::SeqCst) >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("saw {} changes, wanted {at_least}", count.load(Ordering::SeqCst));
    }

    /// Lets the watcher set up its folders before the first change.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    #[tokio::test]
    async fn writes_in_place_and_renames_over_a_file_are_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "one").unwrap();
        let count = counting(vec![file.clone()]);
        settle().await;

        std::fs::write(&file, "two").unwrap();
        until(&count, 1).await;

        let staged = dir.path().join(".secret.swp");
        std::fs::write(&staged, "three").unwrap();
        std::fs::rename(&staged, &file).unwrap();
        until(&count, 2).await;
    }

    #[tokio::test]
    async fn a_kubernetes_style_symlink_swap_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..2026_01")).unwrap();
        std::fs::write(d.join("..2026_01/secret"), "one").unwrap();
        symlink("..2026_01", d.join("..data")).unwrap();
        symlink("..data/secret", d.join("secret")).unwrap();
        let count = counting(vec![d.join("secret")]);
        settle().await;

        std::fs::create_dir(d.join("..2026_02")).unwrap();
        std::fs::write(d.join("..2026_02/secret"), "two").unwrap();
        symlink("..2026_02", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        std::fs::remove_dir_all(d.join("..2026_01")).unwrap();
        until(&count, 1).await;
    }

    #[tokio::test]
    async fn reading_a_file_or_touching_its_neighbours_is_not_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "one").unwrap();
        let count = counting(vec![file.clone()]);
        settle().await;

        std::fs::read_to_string(&file).unwrap();
        std::fs::write(dir.path().join("unrelated"), "x").unwrap();
        tokio::time::sleep(DEBOUNCE * 3).await;
        assert_eq!(count.load(Ordering::SeqCst), 0);

        // The reload after a real change reads the file, which must not set off another.
        std::fs::write(&file, "two").unwrap();
        until(&count, 1).await;
        tokio::time::sleep(DEBOUNCE * 3).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
