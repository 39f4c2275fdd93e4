mod billing;
mod containers;
mod pages;
mod shell;
mod teams;
