mod assets;
mod auth;
mod containers;
mod health;
mod host;
