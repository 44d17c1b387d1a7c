//! Reading a build's output: which stages came from the layer cache and which ran.
//! This is what lets `build-prod` say "rust-build: rebuilt (2 of 5 steps)" instead of
//! leaving the user to scroll through the log. Both engines' logs are read: podman's, and
//! docker's BuildKit log with `--progress=plain` (see `buildkit_stages`).
//!
//! podman prints `[i/n] STEP j/m: ...` before each step, then `--> Using cache <id>` when
//! the step's layer is reused, and `--> <short id>` when the step is done. A stage that
//! needs another (`COPY --from=x`) prints x's steps in the middle of its own step, so the
//! open steps form a stack: a result belongs to the innermost open step.

use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// The `AS` name, else "stage i" (the last unnamed stage is "final").
    pub name: String,
    /// Steps other than `FROM`.
    pub steps: usize,
    pub cached: usize,
    /// `RUN` steps that ran (not cached): only those can download.
    pub runs_ran: usize,
}

impl Stage {
    pub fn is_cached(&self) -> bool {
        self.cached == self.steps
    }

    pub fn describe(&self) -> String {
        if self.is_cached() {
            format!("{}: cached", self.name)
        } else {
            format!("{}: rebuilt ({} of {} steps ran)", self.name, self.steps - self.cached, self.steps)
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "stage": self.name, "cached": self.is_cached(), "steps": self.steps, "cached_steps": self.cached })
    }
}

/// The stages of a build log, in the order they appear in the Containerfile (podman) or
/// in which BuildKit first started them (docker).
pub fn stages(output: &str) -> Vec<Stage> {
    if is_buildkit(output) {
        return buildkit_stages(output);
    }
    let mut stages: Vec<(usize, Stage)> = Vec::new();
    // (stage index, whether a "Using cache" line was seen, whether it is a RUN) for each
    // step not yet done.
    let mut open: Vec<(usize, bool, bool)> = Vec::new();
    for line in output.lines().map(str::trim) {
        if let Some((index, count, step)) = step_line(line) {
            if !stages.iter().any(|(i, _)| *i == index) {
                let name = match from_alias(step) {
                    Some(alias) => alias.to_string(),
                    None if index == count => "final".to_string(),
                    None => format!("stage {index}"),
                };
                stages.push((index, Stage { name, steps: 0, cached: 0, runs_ran: 0 }));
            }
            if !is_instruction(step, "FROM") {
                open.push((index, false, is_instruction(step, "RUN")));
            }
        } else if line.starts_with("--> Using cache") {
            if let Some(top) = open.last_mut() {
                top.1 = true;
            }
        } else if line.starts_with("--> ")
            && let Some((index, cached, run)) = open.pop()
            && let Some((_, stage)) = stages.iter_mut().find(|(i, _)| *i == index)
        {
            stage.steps += 1;
            stage.cached += usize::from(cached);
            stage.runs_ran += usize::from(run && !cached);
        }
    }
    stages.sort_by_key(|(i, _)| *i);
    stages.into_iter().map(|(_, s)| s).collect()
}

/// One step of a build, as its log tells it: for `history`, kept in `.dev-cache/builds/`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    /// The stage's `AS` name, else "stage i" ("final" for the last unnamed one); a
    /// single-stage build's only stage is "final".
    pub stage: String,
    pub instruction: String,
    /// Whether the layer cache gave it ("Using cache"), else it ran.
    pub cached: bool,
    /// The image the step made, as the log prints it (a prefix of its id).
    pub id: String,
}

/// Every step of a podman build log but the `FROM`s, in the order they finished, each
/// with its stage, whether it was cached and the image it made; and each stage's `FROM`
/// (stage name, base). Single-stage logs (`STEP 2/3: ...`, no `[i/n]`) are read too.
pub fn steps(output: &str) -> (Vec<Step>, Vec<(String, String)>) {
    let mut done = Vec::new();
    let mut froms: Vec<(usize, String, String)> = Vec::new();
    // (stage index, stage name, instruction, cached id) of each step not yet done.
    let mut open: Vec<(usize, String, String, Option<String>)> = Vec::new();
    let name_of = |froms: &[(usize, String, String)], index: usize| {
        froms.iter().find(|(i, _, _)| *i == index).map(|(_, n, _)| n.clone()).unwrap_or_default()
    };
    for line in output.lines().map(str::trim) {
        let parsed = step_line(line).or_else(|| {
            let rest = line.strip_prefix("STEP ")?;
            let (_, step) = rest.split_once(": ")?;
            Some((1, 1, step))
        });
        if let Some((index, count, step)) = parsed {
            if !froms.iter().any(|(i, _, _)| *i == index) {
                let name = match from_alias(step) {
                    Some(alias) => alias.to_string(),
                    None if index == count => "final".to_string(),
                    None => format!("stage {index}"),
                };
                let base = step.split_whitespace().nth(1).unwrap_or("").to_string();
                froms.push((index, name, base));
            }
            if !is_instruction(step, "FROM") {
                open.push((index, name_of(&froms, index), step.to_string(), None));
            }
        } else if let Some(id) = line.strip_prefix("--> Using cache ") {
            if let Some(top) = open.last_mut() {
                top.3 = Some(id.trim().to_string());
            }
        } else if let Some(id) = line.strip_prefix("--> ")
            && let Some((_, stage, instruction, cached)) = open.pop()
        {
            let id = cached.clone().unwrap_or_else(|| id.trim().to_string());
            done.push(Step { stage, instruction, cached: cached.is_some(), id });
        }
    }
    froms.sort_by_key(|(i, _, _)| *i);
    (done, froms.into_iter().map(|(_, n, b)| (n, b)).collect())
}

/// `stages` in the order of the Containerfile whose build logged them (BuildKit logs
/// them in the order it happens to start them). A stage is found by its `AS` name, or as
/// the engines name unnamed ones: podman "stage i" (from 1) and "final", BuildKit
/// "stage-i" (from 0).
pub fn in_containerfile_order(mut stages: Vec<Stage>, names: &[String]) -> Vec<Stage> {
    let position = |stage: &Stage| {
        let name = stage.name.as_str();
        names
            .iter()
            .position(|n| !n.is_empty() && n.eq_ignore_ascii_case(name))
            .or_else(|| name.strip_prefix("stage-")?.parse().ok())
            .or_else(|| name.strip_prefix("stage ")?.parse::<usize>().ok()?.checked_sub(1))
            .or_else(|| (name == "final").then(|| names.len().saturating_sub(1)))
            .unwrap_or(usize::MAX)
    };
    stages.sort_by_key(|s| position(s));
    stages
}

/// BuildKit's plain log names each step once it starts, as a numbered vertex, and ends
/// it with `CACHED` or `DONE` (or `ERROR`), the vertices of different stages interleaved:
///
/// ```text
/// #7 [rust-build 4/8] RUN mkdir -p crates/jarvis-backend/src ...
/// #7 12.31 Compiling serde v1.0.228
/// #9 [base 2/2] RUN --mount=type=cache,target=/var/cache/apt,sharing=locked ...
/// #9 CACHED
/// #7 DONE 81.2s
/// ```
///
/// The bracket holds the stage's `AS` name (none for the one stage of a single-stage
/// build: "final"; `stage-N` for an unnamed one among several) and the step's number;
/// `[internal]` vertices are BuildKit's own and `FROM` is not a step, as in podman's log.
fn buildkit_stages(output: &str) -> Vec<Stage> {
    struct Vertex {
        id: u32,
        stage: usize,
        is_step: bool,
        is_run: bool,
        cached: bool,
    }
    let mut stages: Vec<Stage> = Vec::new();
    let mut vertices: Vec<Vertex> = Vec::new();
    for line in output.lines() {
        let Some((id, rest)) = vertex_line(line) else { continue };
        if let Some(known) = vertices.iter_mut().find(|v| v.id == id) {
            known.cached |= rest == "CACHED";
            continue;
        }
        let Some((label, step)) = rest.strip_prefix('[').and_then(|r| r.split_once(']')) else { continue };
        let words: Vec<&str> = label.split_whitespace().collect();
        let Some((&count, before)) = words.split_last() else { continue };
        if !count.split_once('/').is_some_and(|(i, n)| i.parse::<u32>().is_ok() && n.parse::<u32>().is_ok()) {
            continue; // [internal] and the like
        }
        // A platform may come first (`[linux/amd64 base 2/3]`): the name is the last word.
        let name = before.last().map_or("final", |n| n).to_string();
        let position = match stages.iter().position(|s| s.name == name) {
            Some(position) => position,
            None => {
                stages.push(Stage { name, steps: 0, cached: 0, runs_ran: 0 });
                stages.len() - 1
            }
        };
        let (is_step, is_run) = (!is_instruction(step, "FROM"), is_instruction(step, "RUN"));
        vertices.push(Vertex { id, stage: position, is_step, is_run, cached: false });
    }
    for vertex in vertices.iter().filter(|v| v.is_step) {
        stages[vertex.stage].steps += 1;
        stages[vertex.stage].cached += usize::from(vertex.cached);
        stages[vertex.stage].runs_ran += usize::from(vertex.is_run && !vertex.cached);
    }
    stages
}

/// Whether a step's text starts with the instruction `word` (upper case, as written).
fn is_instruction(step: &str, word: &str) -> bool {
    step.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case(word))
}

/// The RUN steps that ran (were not cached), in a podman or a BuildKit log: only those can
/// download.
pub fn runs_ran(output: &str) -> usize {
    if is_buildkit(output) {
        buildkit_stages(output).iter().map(|s| s.runs_ran).sum()
    } else {
        steps(output).0.iter().filter(|s| !s.cached && is_instruction(&s.instruction, "RUN")).count()
    }
}

/// What a build's RUN steps downloaded, by source, as `docker/meter.sh` prints it at the
/// end of each step that ran: `jarvis-meter: apt received 15792714 bytes` (a BuildKit log
/// puts its `#7 2.541 ` in front). `None`: the step could not read its counters.
pub fn downloads(output: &str) -> Vec<(String, Option<u64>)> {
    output
        .lines()
        .filter_map(|line| {
            let (_, said) = line.split_once("jarvis-meter: ")?;
            let (source, rest) = said.trim_end().split_once(' ')?;
            if rest.starts_with("not measured") {
                return Some((source.to_string(), None));
            }
            let bytes = rest.strip_prefix("received ")?.strip_suffix(" bytes")?.parse().ok()?;
            Some((source.to_string(), Some(bytes)))
        })
        .collect()
}

fn is_buildkit(output: &str) -> bool {
    output.lines().any(|l| vertex_line(l).is_some_and(|(_, rest)| rest.starts_with('[')))
}

/// `#12 rest` → (12, "rest").
fn vertex_line(line: &str) -> Option<(u32, &str)> {
    let (number, rest) = line.trim_end().strip_prefix('#')?.split_once(' ')?;
    Some((number.parse().ok()?, rest))
}

/// `[2/6] STEP 3/4: COPY x y` → (2, 6, "COPY x y").
fn step_line(line: &str) -> Option<(usize, usize, &str)> {
    let rest = line.strip_prefix('[')?;
    let (stage, rest) = rest.split_once(']')?;
    let (index, count) = stage.split_once('/')?;
    let rest = rest.trim_start().strip_prefix("STEP ")?;
    let (_, step) = rest.split_once(": ")?;
    Some((index.parse().ok()?, count.parse().ok()?, step))
}

fn from_alias(step: &str) -> Option<&str> {
    let words: Vec<&str> = step.split_whitespace().collect();
    match words[..] {
        [from, .., as_kw, name] if from.eq_ignore_ascii_case("FROM") && as_kw.eq_ignore_ascii_case("AS") => {
            Some(name)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real podman 4.3 output of a three-stage build in which stage 3 copies from stage 2.
    const FIRST: &str = "\
[1/3] STEP 1/2: FROM docker.io/library/debian:bookworm-slim AS one
[1/3] STEP 2/2: RUN echo a > /a
--> 0430937d6ce
[3/3] STEP 1/2: FROM docker.io/library/debian:bookworm-slim
[3/3] STEP 2/2: COPY --from=two /b /b
[2/3] STEP 1/3: FROM 0430937d6ce9f9775495848e3599a920c0e0b8fa41a23585c1df0a05d6b5982d AS two
[2/3] STEP 2/3: RUN echo b > /b
--> 87b33d22feb
[2/3] STEP 3/3: COPY x /x
--> 655afa8370e
[3/3] COMMIT localhost/jarvis-scratch-ms
--> a7b26e4eae9
Successfully tagged localhost/jarvis-scratch-ms:latest
";

    // The same after `x` changed: stage one and the RUN of stage two are reused.
    const SECOND: &str = "\
[1/3] STEP 1/2: FROM docker.io/library/debian:bookworm-slim AS one
[1/3] STEP 2/2: RUN echo a > /a
--> Using cache 0430937d6ce9f9775495848e3599a920c0e0b8fa41a23585c1df0a05d6b5982d
--> 0430937d6ce
[3/3] STEP 1/2: FROM docker.io/library/debian:bookworm-slim
[3/3] STEP 2/2: COPY --from=two /b /b
[2/3] STEP 1/3: FROM 0430937d6ce9f9775495848e3599a920c0e0b8fa41a23585c1df0a05d6b5982d AS two
[2/3] STEP 2/3: RUN echo b > /b
--> Using cache 87b33d22febaa12c605b9ee6de6cc800283f8336b228ebd284fe5015f1461ce1
--> 87b33d22feb
[2/3] STEP 3/3: COPY x /x
--> 1627bcfa404
--> Using cache a7b26e4eae937a4efbdf50709a2121407335b7a3a6b0b20373c66dd4d6bda180
[3/3] COMMIT localhost/jarvis-scratch-ms
--> a7b26e4eae9
";

    fn summary(output: &str) -> Vec<String> {
        stages(output).iter().map(Stage::describe).collect()
    }

    #[test]
    fn a_first_build_runs_every_stage() {
        assert_eq!(
            summary(FIRST),
            [
                "one: rebuilt (1 of 1 steps ran)",
                "two: rebuilt (2 of 2 steps ran)",
                "final: rebuilt (1 of 1 steps ran)"
            ]
        );
    }

    #[test]
    fn nested_stages_get_their_own_results() {
        assert_eq!(summary(SECOND), ["one: cached", "two: rebuilt (1 of 2 steps ran)", "final: cached"]);
    }

    /// docker 20.10's BuildKit log (`--progress=plain`) of `build-prod` after a one-line
    /// edit of the backend's source, as the docker CI step captured it.
    const BUILDKIT: &str = include_str!("testdata/buildkit-20.10-rebuild.log");

    #[test]
    fn buildkit_logs_are_read_per_stage_in_containerfile_order() {
        let containerfile = include_str!("../../../docker/jarvis.Containerfile");
        let names = crate::inputs::containerfile::stage_names(containerfile);
        let stages = in_containerfile_order(stages(BUILDKIT), &names);
        assert_eq!(
            stages.iter().map(Stage::describe).collect::<Vec<_>>(),
            [
                "base: cached",
                "python-base: cached",
                "models: cached",
                "python-deps: cached",
                "rust-build: rebuilt (2 of 7 steps ran)",
                "frontend-build: cached",
                "final: rebuilt (2 of 6 steps ran)",
            ]
        );
        // Unnamed stages: BuildKit's stage-N (from 0), podman's "stage N" (from 1) and "final".
        let unnamed = &crate::inputs::containerfile::stage_names("FROM a\nRUN x\nFROM b AS two\nFROM c\n");
        let named = |names: &[&str]| {
            names
                .iter()
                .map(|n| Stage { name: n.to_string(), steps: 1, cached: 0, runs_ran: 0 })
                .collect::<Vec<_>>()
        };
        let order = |stages: Vec<Stage>| stages.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(
            order(in_containerfile_order(named(&["stage-2", "two", "stage-0"]), unnamed)),
            ["stage-0", "two", "stage-2"]
        );
        assert_eq!(
            order(in_containerfile_order(named(&["final", "two", "stage 1"]), unnamed)),
            ["stage 1", "two", "final"]
        );
    }

    #[test]
    fn runs_that_ran_and_what_they_downloaded() {
        assert_eq!((runs_ran(FIRST), runs_ran(SECOND)), (2, 0));
        // The docker CI step's log: the crate's compile ran, and the final stage's COPYs.
        assert_eq!(runs_ran(BUILDKIT), 1);
        let podman = "[1/2] STEP 2/3: RUN --mount=type=bind,source=docker/meter.sh,target=/run/jarvis-meter \
                      apt-get update; sh /run/jarvis-meter apt $?\n\
                      jarvis-meter: apt received 15792714 bytes\n\
                      --> 0430937d6ce\n";
        let buildkit = "#7 [base 1/2] RUN sh /run/jarvis-meter pip $?\n\
                        #7 2.541 jarvis-meter: pip received 2048 bytes\n\
                        #8 0.1 jarvis-meter: npm not measured (no /proc/net/dev)\n\
                        #9 0.1 jarvis-meter: cargo received many bytes\n";
        assert_eq!(downloads(podman), [("apt".to_string(), Some(15_792_714))]);
        assert_eq!(
            downloads(buildkit),
            [("pip".to_string(), Some(2048)), ("npm".to_string(), None)],
            "the RUN line itself and a line that does not parse are no download"
        );
    }

    #[test]
    fn output_without_steps_has_no_stages() {
        assert!(stages("Successfully tagged localhost/x:latest\n").is_empty());
        assert!(stages("#1 [internal] load build definition from x\n#1 DONE 0.0s\n").is_empty());
    }

    #[test]
    fn steps_say_their_stage_cache_and_image() {
        let (steps, froms) = super::steps(SECOND);
        let brief: Vec<(&str, &str, bool, &str)> =
            steps.iter().map(|s| (s.stage.as_str(), s.instruction.as_str(), s.cached, &s.id[..11])).collect();
        assert_eq!(
            brief,
            [
                ("one", "RUN echo a > /a", true, "0430937d6ce"),
                ("two", "RUN echo b > /b", true, "87b33d22feb"),
                ("two", "COPY x /x", false, "1627bcfa404"),
                ("final", "COPY --from=two /b /b", true, "a7b26e4eae9"),
            ]
        );
        assert_eq!(froms[0], ("one".to_string(), "docker.io/library/debian:bookworm-slim".to_string()));
        let single = "STEP 1/2: FROM docker.io/library/debian:bookworm-slim\nSTEP 2/2: RUN sleep 6\n\
                      --> Using cache 0c942d8062c6480ec\nCOMMIT localhost/x\n--> 0c942d8062c\n";
        let (steps, froms) = super::steps(single);
        assert_eq!(
            steps,
            [Step {
                stage: "final".into(),
                instruction: "RUN sleep 6".into(),
                cached: true,
                id: "0c942d8062c6480ec".into()
            }]
        );
        assert_eq!(froms.len(), 1);
    }
}
