//! Tests of effects on the real kernel, as root. They also run inside the pure cgroup-v2 VM
//! (`cargo xtask test` runs `it kernel:: --test-threads=1` there).

mod cgroup;
mod checkpoint;
mod container;
mod container_bench;
mod container_crash;
mod container_devices;
mod container_exec;
mod container_image;
mod container_image_attacks;
mod container_mounts;
mod container_seccomp;
mod container_term;
mod container_userns;
mod container_watch;
mod docker_api;
mod docker_images;
mod docker_run;
mod fleet_ledger;
mod fleet_prometheus;
mod fleet_teams;
mod memory_min;
mod metering;
mod metering_containers;
mod metering_pressure;
mod network;
mod network_bench;
mod network_container;
mod network_firewall;
mod network_ports;
mod oom;
mod recommend;
mod registry_pull;
mod team_budget;
mod team_pool;
mod vm_smoke;
