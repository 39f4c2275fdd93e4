//! The runtime's view of the cgroup engine: the few operations a container needs.
