//! Terminal concerns shared by every command: colour choice (`--color`, `NO_COLOR`, terminal
//! detection) and verbosity.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, ValueEnum};

static COLOR: AtomicBool = AtomicBool::new(false);

/// Options every command accepts.
#[derive(Debug, Args, Clone)]
pub struct GlobalOpts {
    /// When to use colour: auto (only on a terminal, and never when NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Print more detail about what is happening (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

pub fn init(global: &GlobalOpts) {
    let on = match global.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    };
    COLOR.store(on, Ordering::Relaxed);
}

/// Wraps `text` in an ANSI style when colour is on.
pub fn paint(style: Style, text: &str) -> String {
    if !COLOR.load(Ordering::Relaxed) {
        return text.to_string();
    }
    let code = match style {
        Style::Good => "32",
        Style::Bad => "31;1",
        Style::Warn => "33",
        Style::Dim => "2",
        Style::Bold => "1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

#[derive(Debug, Clone, Copy)]
pub enum Style {
    Good,
    Bad,
    Warn,
    Dim,
    Bold,
}
