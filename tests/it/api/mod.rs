mod containers;
mod health;
