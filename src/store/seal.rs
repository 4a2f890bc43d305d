//! Sealing of secrets at rest (access-key secrets, TOTP seeds, server keys) with the master
//! key: AES-256-GCM, a random 96-bit nonce per value, and the row's identity as associated data
//! so a sealed value cannot be moved to another row.

use std::fs;
use std::io::{Read as _, Write as _};
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use zeroize::Zeroizing;

use super::error::StoreError;
use crate::ids::random_bytes;

/// Environment variable that supplies the master key (base64 of 32 bytes) instead of a file.
pub(super) const MASTER_KEY_ENV: &str = "STS_BROKER_MASTER_KEY";
/// File name of the master key inside the data dir.
pub(super) const MASTER_KEY_FILE: &str = "master.key";

/// Seals and opens values with the master key.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

/// Why a value could not be sealed or opened, or the master key not loaded.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The sealed value was altered, belongs to another row, or another master key sealed it.
    #[error("a sealed value cannot be opened with this master key")]
    Open,
    /// The random source or the cipher failed.
    #[error("sealing failed")]
    Seal,
    /// The master key is not base64 of exactly 32 bytes.
    #[error("the master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    /// The master key file could not be read or written.
    #[error("master key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
}

impl Sealer {
    /// A sealer for a raw 32-byte key.
    pub(crate) fn new(key: &[u8; 32]) -> Result<Self, SealError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| SealError::BadMasterKey)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Loads the master key from `STS_BROKER_MASTER_KEY`, else from `<data_dir>/master.key`,
    /// creating that file (mode 0600) with a new random key when `create` is set. A key file
    /// another user owns, or that group or others can read or write, is refused: whoever could
    /// plant or read it could read every secret.
    pub(crate) fn load(data_dir: &Path, create: bool) -> Result<Self, StoreError> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return Ok(Self::new(&decode_key(&text)?)?);
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        let io = |source| SealError::Io {
            path: path.display().to_string(),
            source,
        };
        match fs::File::open(&path) {
            Ok(mut file) => {
                // The open file is checked, not the path, so nothing can be swapped in between.
                let meta = file.metadata().map_err(io)?;
                check_key_file(&path, &meta)?;
                let mut text = Zeroizing::new(String::new());
                file.read_to_string(&mut text).map_err(io)?;
                Ok(Self::new(&decode_key(&text)?)?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = Zeroizing::new(random_bytes::<32>().map_err(|_| SealError::Seal)?);
                let text = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(key.as_slice()),
                );
                write_private(&path, text.as_bytes()).map_err(io)?;
                Ok(Self::new(&key)?)
            }
            Err(e) => Err(io(e).into()),
        }
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plaintext`, bound to `context`.
    pub(crate) fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>().map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce_bytes);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .map_err(|_| SealError::Seal)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The plaintext of a value sealed for `context`.
    pub(crate) fn open(
        &self,
        context: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or(SealError::Open)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = Zeroizing::new(body.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), buf.as_mut_slice())
            .map_err(|_| SealError::Open)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

fn decode_key(text: &str) -> Result<[u8; 32], SealError> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| SealError::BadMasterKey)?,
    );
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| SealError::BadMasterKey)
}

/// Refuses a master key file that another user owns or that group or others can read or
/// write, saying how to fix it.
fn check_key_file(path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    let path = path.display();
    match check_private(meta, 0o077) {
        Ok(()) => Ok(()),
        Err(Exposed::Owner { owner, me }) => Err(StoreError::DataDir(format!(
            "master key file {path} is owned by uid {owner}, not by uid {me} that runs the \
             broker (nor root), so another user may have planted it; if the key is yours, run \
             `chown {me} {path}`, else remove it and start on a new data dir"
        ))),
        Err(Exposed::Mode(mode)) => Err(StoreError::DataDir(format!(
            "master key file {path} is readable or writable by group or others (mode {mode:04o}); \
             run `chmod 600 {path}`"
        ))),
    }
}

/// Why another local user could have changed (or read) a file or directory.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Exposed {
    /// It belongs to `owner`, neither this process's effective user `me` nor root.
    Owner {
        /// Its owner's uid.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// Its mode has some of the forbidden bits.
    Mode(u32),
}

/// OpenSSH's StrictModes rule (sshd_config(5)), for the data dir and the master key: what
/// `meta` describes must belong to this process's effective user or to root, and its mode must
/// have none of the bits of `mask`.
#[cfg(unix)]
pub(super) fn check_private(meta: &fs::Metadata, mask: u32) -> Result<(), Exposed> {
    use std::os::unix::fs::MetadataExt as _;
    let me = rustix::process::geteuid().as_raw();
    let owner = meta.uid();
    if owner != me && owner != 0 {
        return Err(Exposed::Owner { owner, me });
    }
    let mode = meta.mode() & 0o7777;
    if mode & mask != 0 {
        return Err(Exposed::Mode(mode));
    }
    Ok(())
}

/// Elsewhere there are no owners and modes to check.
#[cfg(not(unix))]
pub(super) fn check_private(_meta: &fs::Metadata, _mask: u32) -> Result<(), Exposed> {
    Ok(())
}

/// Creates `path` with mode 0600 (never overwriting) and writes `contents` durably.
pub(super) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let s = Sealer::new(&[7u8; 32]).unwrap();
        let sealed = s.seal("access_key:AKIA1", b"secret").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            s.open("access_key:AKIA1", &sealed).unwrap().as_slice(),
            b"secret"
        );
        assert!(matches!(
            s.open("access_key:AKIA2", &sealed),
            Err(SealError::Open)
        ));
        let other = Sealer::new(&[8u8; 32]).unwrap();
        assert!(other.open("access_key:AKIA1", &sealed).is_err());
        let mut tampered = sealed.clone();
        if let Some(b) = tampered.last_mut() {
            *b ^= 1;
        }
        assert!(s.open("access_key:AKIA1", &tampered).is_err());
        assert!(s.open("x", &[1, 2, 3]).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let s = Sealer::new(&[7u8; 32]).unwrap();
        assert_eq!(format!("{s:?}"), "Sealer(<redacted>)");
    }

    #[cfg(unix)]
    #[test]
    fn exposed_modes_are_named() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("sts-modes-{}", crate::ids::request_id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        fs::write(&file, "x").unwrap();
        for (mode, mask, refused) in [
            (0o600, 0o077, false),
            (0o400, 0o077, false),
            (0o640, 0o077, true),
            (0o602, 0o077, true),
            (0o755, 0o022, false),
            (0o775, 0o022, true),
            (0o1777, 0o022, true),
        ] {
            fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
            let meta = fs::metadata(&file).unwrap();
            let want = if refused {
                Err(Exposed::Mode(mode))
            } else {
                Ok(())
            };
            assert_eq!(check_private(&meta, mask), want, "{mode:o}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn master_key_file_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("sts-seal-{}", crate::ids::request_id()));
        fs::create_dir_all(&dir).unwrap();
        let a = Sealer::load(&dir, true).unwrap();
        let sealed = a.seal("c", b"v").unwrap();
        let b = Sealer::load(&dir, false).unwrap();
        assert_eq!(b.open("c", &sealed).unwrap().as_slice(), b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.join(MASTER_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
