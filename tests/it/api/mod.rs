mod assets;
mod auth;
mod billing;
mod containers;
mod health;
mod host;
