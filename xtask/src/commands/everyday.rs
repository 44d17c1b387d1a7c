//! The everyday commands over the same stack: `status`, `logs`, `stop`.

use xshell::Shell;

use crate::{
    Context,
    converge::plan::{self, Options},
    engine::{Call, Engine, Kind, Progress},
    output::Output,
    stack::{Llm, Service, Stack},
};

fn setup(cx: &Context) -> Result<(Engine, Stack, Shell), String> {
    let engine = Engine::detect()?;
    let stack = Stack::dev(&cx.project, Llm::default(), engine.host_alias());
    Ok((engine, stack, crate::shell()?))
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What runs, on which ports, and what `dev-fast` would do now (planned, not applied).
pub fn status(cx: &Context, args: &StatusArgs) -> Result<(), String> {
    let (engine, stack, sh) = setup(cx)?;
    let facts = crate::converge::observe::observe(&sh, &engine, &stack)?;
    let mut ours: Vec<_> =
        facts.observed.containers.values().filter(|c| c.is_ours(&cx.project.name)).collect();
    ours.sort_by(|a, b| a.name.cmp(&b.name));
    let plan = plan::plan(&stack, &facts, Options::default());
    let stale = crate::commands::owned::stale_bases(cx, &engine, &sh);
    if args.json {
        let containers: Vec<_> = ours
            .iter()
            .map(|c| serde_json::json!({ "name": c.name, "state": c.state, "ports": c.host_ports }))
            .collect();
        let doc = serde_json::json!({
            "engine": engine.name(),
            "containers": containers,
            "dev_fast_would": crate::converge::applied::Named::all(&plan.actions, &stack),
            "blockers": plan.blockers,
            "stale_bases": stale,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("status serializes"));
        return Ok(());
    }
    println!("engine: {}", engine.name());
    if ours.is_empty() {
        println!("no containers of project {}", cx.project.name);
    }
    for c in &ours {
        let ports: Vec<String> =
            c.host_ports.iter().map(|p| format!("{}:{p}", cx.project.publish_addr)).collect();
        println!("  {:<24} {:<10} {}", c.name, c.state, ports.join(" "));
    }
    if plan.is_noop() {
        println!("dev-fast would do nothing: everything is current");
    } else {
        println!("dev-fast would:");
        for action in &plan.actions {
            println!("  {}", action.describe(&stack));
        }
        for blocker in &plan.blockers {
            println!("  blocked: {blocker}");
        }
    }
    for line in &stale {
        println!("{line}");
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// backend, frontend, llm (dev-fast) or app (up); all of them when left out.
    pub service: Option<String>,
    /// Keep following new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// How many past lines to show.
    #[arg(long, default_value_t = 100)]
    pub tail: usize,
}

pub fn logs(cx: &Context, args: &LogsArgs) -> Result<(), String> {
    let (engine, _, sh) = setup(cx)?;
    // The services of both stacks, dev-fast's and up's, with every optional one.
    let stacks = [
        Stack::dev(&cx.project, Llm::Ollama, engine.host_alias()),
        Stack::prod(&cx.project, Llm::Ollama, engine.host_alias()),
    ];
    let services: Vec<&Service> = stacks.iter().flat_map(|s| &s.services).collect();
    let observed = engine.observe(&sh, &[])?;
    let exists = |s: &&Service| observed.containers.contains_key(&s.container);
    let containers: Vec<String> = match &args.service {
        Some(key) => {
            let named: Vec<&Service> = services.iter().copied().filter(|s| s.key == key).collect();
            if named.is_empty() {
                let keys: std::collections::BTreeSet<&str> = services.iter().map(|s| s.key).collect();
                let keys: Vec<&str> = keys.into_iter().collect();
                return Err(format!("no service {key:?}; the services are {}", keys.join(", ")));
            }
            named.into_iter().filter(exists).map(|s| s.container.clone()).collect()
        }
        None => services.into_iter().filter(|s| exists(s)).map(|s| s.container.clone()).collect(),
    };
    if containers.is_empty() {
        return Err(
            "no containers to show logs of; `cargo xtask dev-fast` or `cargo xtask up` starts them".into()
        );
    }
    if containers.len() > 1 && engine.kind == Kind::Docker {
        return Err(
            "docker shows one container's logs at a time: name a service (backend, frontend, app)".into()
        );
    }
    engine.logs(&sh, &containers, args.tail, args.follow)
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Print the engine command it would run, and run none.
    #[arg(long)]
    pub dry_run: bool,
}

/// Stops this project's running containers; nothing is removed, volumes are kept.
pub fn stop(cx: &Context, args: &StopArgs) -> Result<(), String> {
    let (engine, _stack, sh) = setup(cx)?;
    let observed = engine.observe(&sh, &[])?;
    let mut running: Vec<String> = observed
        .containers
        .values()
        .filter(|c| c.running && c.is_ours(&cx.project.name))
        .map(|c| c.name.clone())
        .collect();
    running.sort();
    if running.is_empty() {
        println!("nothing of project {} is running", cx.project.name);
        return Ok(());
    }
    let stop = Call::Stop(running.clone());
    if args.dry_run {
        println!("{}", engine.command_lines(&stop).join("\n"));
        return Ok(());
    }
    engine.call(&sh, &stop, Progress::Quiet)?;
    Output { json: false, dry_run: false }.say(format!("stopped {}", running.join(", ")));
    Ok(())
}
