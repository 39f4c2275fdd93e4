mod assets;
mod auth;
mod health;
mod host;
mod network;
