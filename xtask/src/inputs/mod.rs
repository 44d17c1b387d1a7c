//! What an image is built from: the Containerfile's bases and copies, the build context
//! after the ignore file, their fingerprint, and `.dev-cache/`'s records of it; and the
//! checkout's settings (`.env`), which never enter an image.

pub mod build_context;
pub mod cache;
pub mod containerfile;
pub mod dotenv;
pub mod fingerprint;
pub mod validate;
