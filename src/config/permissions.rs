//! Secret files that other users may read or change: a warning, or with
//! `[server] strict_file_permissions` an error.
//!
//! Checked after loading rather than while reading the file, so that `check`, `serve` and a
//! reload decide the same way from the same `Config::secret_files`, and so that the check
//! sees the mode the file has now.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Config;

/// Group or others may read, or others may write: anyone else on the host could learn the
/// secret, or swap in their own. Group write alone is left alone, as SPEC has it.
const LOOSE: u32 = 0o044 | 0o002;

impl Config {
    /// The loose secret files as errors when `strict_file_permissions` is set; empty
    /// otherwise (they are then among `warnings()`).
    pub fn permission_errors(&self) -> Vec<String> {
        if self.server.strict_file_permissions {
            loose_files(&self.secret_files)
        } else {
            Vec::new()
        }
    }
}

/// One message per file in `files` whose mode is looser than `LOOSE` allows, naming the file,
/// its mode and the fix. Symlinks are followed: what matters is who can read the secret,
/// and a Kubernetes Secret file is a symlink (always mode 777) to the real one.
pub(super) fn loose_files(files: &[PathBuf]) -> Vec<String> {
    let mut seen: Vec<&Path> = Vec::new();
    let mut out = Vec::new();
    for file in files {
        if seen.contains(&file.as_path()) {
            continue;
        }
        seen.push(file);
        // A file that vanished since it was read is the next reload's problem.
        let Ok(meta) = std::fs::metadata(file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & LOOSE != 0 {
            out.push(format!(
                "secret file {} {} (mode {mode:04o}); run `chmod 600 {}`",
                file.display(),
                who(mode),
                file.display()
            ));
        }
    }
    out
}

fn who(mode: u32) -> &'static str {
    match (mode & 0o040 != 0, mode & 0o004 != 0, mode & 0o002 != 0) {
        (_, _, true) => "can be changed by other users",
        (true, true, false) => "can be read by its group and by other users",
        (true, false, false) => "can be read by its group",
        (false, _, false) => "can be read by other users",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_mode(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "s3cret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn owner_only_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let files = [0o600, 0o400, 0o700, 0o620].map(|m| file_with_mode(dir.path(), &format!("{m:o}"), m));
        assert_eq!(loose_files(&files), Vec::<String>::new());
    }

    #[test]
    fn readable_by_group_or_others_or_writable_by_others_is_named_with_mode_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, says) in [
            (0o644, "read by its group and by other users"),
            (0o640, "read by its group"),
            (0o604, "read by other users"),
            (0o602, "changed by other users"),
            (0o666, "changed by other users"),
        ] {
            let file = file_with_mode(dir.path(), &format!("{mode:o}"), mode);
            let found = loose_files(std::slice::from_ref(&file));
            assert_eq!(found.len(), 1, "{mode:o}");
            let message = &found[0];
            assert!(message.contains(&file.display().to_string()), "{message}");
            assert!(message.contains(&format!("mode 0{mode:o}")), "{message}");
            assert!(message.contains(says), "{message}");
            assert!(message.contains("chmod 600"), "{message}");
        }
    }

    #[test]
    fn symlinks_are_followed_duplicates_and_missing_files_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let target = file_with_mode(dir.path(), "real", 0o644);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let private = file_with_mode(dir.path(), "private", 0o600);
        let private_link = dir.path().join("private-link");
        std::os::unix::fs::symlink(&private, &private_link).unwrap();
        let files = [link.clone(), link, private_link, dir.path().join("gone")];
        assert_eq!(loose_files(&files).len(), 1, "{:?}", loose_files(&files));
    }
}
