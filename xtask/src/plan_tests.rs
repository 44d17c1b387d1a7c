//! Planner cases: written next.
