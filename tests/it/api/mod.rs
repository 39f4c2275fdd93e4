mod billing;
mod health;
