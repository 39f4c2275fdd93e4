mod containers;
mod pages;
mod shell;
