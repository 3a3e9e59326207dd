//! Integration tests of the runner's fault backends against real namespaces, mounts and processes.

mod clock;
mod containment;
mod disk;
mod doctor;
mod netns;
