//! Bringing the engine to the stack: observe what it has, plan the actions (a pure
//! function), apply them, wait until the services answer.

pub mod applied;
pub mod apply;
pub mod observe;
pub mod plan;
pub mod ready;
pub mod record;
pub mod registry;
pub mod spec;
pub mod trust;
pub mod validate;
