//! Validate before acting: every file a plan is derived from is checked before the first
//! engine call, so bad input is one error per problem, naming the file and line with the
//! fix, and nothing is stopped, removed or built. `--dry-run` refuses the same input.
//! (Settings, `JARVIS_*`, are checked earlier still, in `stack::Project::from_env`.)

use crate::{inputs::validate, stack::Stack};

/// `models.json`, the ignore file and the stack's Containerfiles.
pub fn inputs(stack: &Stack) -> Result<(), String> {
    let containerfiles: Vec<&str> = stack.images.iter().map(|i| i.containerfile).collect();
    validate::all(stack.root(), &containerfiles)
        .map_err(|problems| format!("nothing was done: fix these first\n  {}", problems.join("\n  ")))
}
