mod assets;
mod auth;
mod billing;
mod containers;
mod containers_auth;
mod health;
mod host;
mod network;
