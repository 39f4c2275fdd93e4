mod auth;
mod health;
