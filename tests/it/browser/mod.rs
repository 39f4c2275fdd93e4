mod pages;
mod shell;
