//! The host side, no engine involved: ports and who holds them, supervised child
//! processes, a plain HTTP GET, and the verified voice downloads.

pub mod http;
pub mod models;
pub mod ports;
pub mod supervise;
