//! Command fixture for the environment capability: prints the variables the host passed in.

use std::process::ExitCode;

fn main() -> ExitCode {
    // `GREETING` gets its own line so tests can check one grant without caring about the rest.
    match std::env::var("GREETING") {
        Ok(value) => println!("GREETING={value}"),
        Err(std::env::VarError::NotPresent) => println!("GREETING is unset"),
        Err(std::env::VarError::NotUnicode(_)) => println!("GREETING is not valid unicode"),
    }
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    // Sorted output does not depend on the order the host hands the list over in.
    vars.sort();
    println!("{} variables", vars.len());
    for (key, value) in vars {
        println!("{key}={value}");
    }
    ExitCode::SUCCESS
}
