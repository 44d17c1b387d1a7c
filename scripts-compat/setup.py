#!/usr/bin/env python3
"""The old ./scripts/setup.py, now `cargo xtask setup`: arguments passed through, exit code kept."""
import os
import sys

root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
print("note: ./scripts/setup.py runs `cargo xtask setup`", file=sys.stderr)
os.chdir(root)
try:
    os.execvp("cargo", ["cargo", "xtask", "setup", *sys.argv[1:]])
except FileNotFoundError:
    sys.exit("error: cargo is not on PATH; install Rust with rustup (https://rustup.rs), then rerun")
