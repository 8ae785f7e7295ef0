//! The WIT text of a component, as `wasm-tools component wit` prints it: the component's own
//! world package first, every package it refers to nested after it.

use crate::error::AuditError;

/// Decodes the component's type information and prints it as WIT. Core modules carry no WIT.
/// Call it on bytes that [`crate::audit`] accepted: decoding assumes a valid component.
pub fn wit_text(bytes: &[u8]) -> Result<String, AuditError> {
    if bytes.get(4..8) == Some(&[1, 0, 0, 0][..]) {
        return Err(AuditError::Wit(
            "expected a component, found a core module (core modules carry no WIT)".into(),
        ));
    }
    let decoded = wit_component::decode(bytes).map_err(|e| AuditError::Wit(format!("{e:#}")))?;
    let resolve = decoded.resolve();
    let main = decoded.package();
    let nested: Vec<_> = resolve
        .packages
        .iter()
        .map(|(id, _)| id)
        .filter(|id| *id != main)
        .collect();
    let mut printer = wit_component::WitPrinter::default();
    printer
        .print(resolve, main, &nested)
        .map_err(|e| AuditError::Wit(format!("{e:#}")))?;
    Ok(printer.output.to_string())
}
