//! Owner-only files and directories. Everything the server keeps in its data directory (the
//! journal, its anchor, the settlements, the principals) and the master key beside it is made
//! readable by the server's account alone: directories 0700, files 0600. The modes are set
//! explicitly after creation, so a permissive umask cannot widen them.

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The mode of every directory the server creates for its data.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file the server writes there.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) and makes it owner-only. Parents that already existed
/// keep their modes: they are not the server's.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Makes an open file owner-only (fchmod, so it applies to the very file opened).
pub fn restrict(file: &File) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(FILE_MODE))
}
