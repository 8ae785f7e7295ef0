//! The audit of one binary: validate it fully, list its import and export surface, classify every
//! import, and read its producers section. This is the one truth the CLI, the registry and every
//! client share about what a component can reach.

use std::collections::BTreeSet;
use std::sync::Mutex;

use gridreg_protocol::Digest;
use serde::{Deserialize, Serialize};
use wasmparser::{
    Encoding, FuncToValidate, FuncValidatorAllocations, FunctionBody, KnownCustom, Parser, Payload,
    ValidPayload, Validator, ValidatorResources, WasmFeatures,
};

use crate::error::AuditError;
use crate::taxonomy::{Class, classify_component_import, classify_module_import};

/// Whether the binary is a component or a core module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Component,
    Module,
}

/// One import with its capability class.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Import {
    pub name: String,
    pub class: Class,
}

/// One entry of the producers custom section (`language`, `processed-by`, `sdk`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Producer {
    pub field: String,
    pub name: String,
    pub version: String,
}

/// What a binary is and what it can reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    pub kind: Kind,
    pub size: u64,
    pub digest: Digest,
    /// Sorted and unique by name. For components, the top-level imports (`wasi:cli/stdout@0.2.6`);
    /// for core modules, `module.field`.
    pub imports: Vec<Import>,
    /// Sorted and unique.
    pub exports: Vec<String>,
    /// The classes of all imports, sorted and unique.
    pub capabilities: Vec<Class>,
    /// From every producers section in the binary (nested modules included), sorted and unique.
    pub producers: Vec<Producer>,
}

impl Audit {
    pub fn imports_class(&self, class: &Class) -> bool {
        self.capabilities.contains(class)
    }
}

/// The WebAssembly features an input may use: what wasmparser accepts by default (the features
/// wasm-tools and wasmtime enable), so anything wasmtime could run is audited, not rejected.
fn features() -> WasmFeatures {
    WasmFeatures::default()
}

/// Validates `bytes` fully and returns its audit. Function bodies are validated in parallel, and
/// the digest is computed alongside, so the audit costs about what validation alone costs.
pub fn audit(bytes: &[u8]) -> Result<Audit, AuditError> {
    check_header(bytes)?;
    let (surface, digest) = rayon::join(
        || parse_and_validate(bytes, Threads::Pool),
        || Digest::of(bytes),
    );
    finish(bytes, surface, digest)
}

/// [`audit`] for a caller that already hashed `bytes` while reading or receiving them (the CLI
/// hashes while it reads a file, the registry while it streams an upload), so the hash is not paid
/// twice. `digest` must be [`Digest::of`]`(bytes)`; a debug build checks it.
pub fn audit_with_digest(bytes: &[u8], digest: Digest) -> Result<Audit, AuditError> {
    debug_assert_eq!(digest, Digest::of(bytes));
    check_header(bytes)?;
    finish(bytes, parse_and_validate(bytes, Threads::Pool), digest)
}

/// [`audit`] entirely on the calling thread: the same checks and the same result, without handing
/// work to other threads. For a server, whose concurrent requests already keep every core busy,
/// so that splitting each one only adds hand-offs and wake-ups.
pub fn audit_serial(bytes: &[u8]) -> Result<Audit, AuditError> {
    check_header(bytes)?;
    let digest = Digest::of(bytes);
    finish(bytes, parse_and_validate(bytes, Threads::Caller), digest)
}

/// Where function bodies are validated.
#[derive(Clone, Copy)]
enum Threads {
    /// On every core (rayon's pool).
    Pool,
    /// On the calling thread.
    Caller,
}

fn finish(
    bytes: &[u8],
    surface: Result<ParsedSurface, AuditError>,
    digest: Digest,
) -> Result<Audit, AuditError> {
    let surface = surface.map_err(|e| explain_eof(e, bytes.len()))?;
    let capabilities: BTreeSet<Class> = surface.imports.iter().map(|i| i.class.clone()).collect();
    Ok(Audit {
        kind: surface.kind,
        size: bytes.len() as u64,
        digest,
        imports: surface.imports.into_iter().collect(),
        exports: surface.exports.into_iter().collect(),
        capabilities: capabilities.into_iter().collect(),
        producers: surface.producers.into_iter().collect(),
    })
}

/// The checks that give a clearer message than the parser would for inputs that are not wasm at all.
fn check_header(bytes: &[u8]) -> Result<(), AuditError> {
    if bytes.is_empty() {
        return Err(AuditError::Empty);
    }
    let head = &bytes[..bytes.len().min(4)];
    if head != &b"\0asm"[..head.len()] || bytes.len() < 4 {
        return Err(AuditError::NotWasm {
            found: describe_magic(head),
        });
    }
    if bytes.len() < 8 {
        return Err(AuditError::Invalid {
            offset: bytes.len(),
            message: format!(
                "truncated header: expected 8 bytes (magic and version), found {}",
                bytes.len()
            ),
        });
    }
    Ok(())
}

/// wasmparser says only "unexpected end-of-file" when a length field promises more bytes than the
/// input holds (a truncated file, or a lying section length); say how long the input really is.
fn explain_eof(e: AuditError, len: usize) -> AuditError {
    match e {
        AuditError::Invalid { offset, message }
            if message.starts_with("unexpected end-of-file") =>
        {
            AuditError::Invalid {
                offset,
                message: format!(
                    "{message}: expected more bytes than the input has (it ends at byte {len})"
                ),
            }
        }
        other => other,
    }
}

fn describe_magic(head: &[u8]) -> String {
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    let what = match head {
        [0x7f, b'E', b'L', b'F'] => " (an ELF executable)",
        [b'M', b'Z', ..] => " (a Windows executable)",
        [b'P', b'K', 3, 4] => " (a zip archive)",
        [0x1f, 0x8b, ..] => " (gzip data)",
        [b'(', ..] => " (text; WAT must be compiled first)",
        _ => "",
    };
    format!("{}{what}", hex.join(" "))
}

#[derive(Default)]
struct Surface {
    kind: Option<Kind>,
    imports: BTreeSet<Import>,
    exports: BTreeSet<String>,
    producers: BTreeSet<Producer>,
}

struct ParsedSurface {
    kind: Kind,
    imports: BTreeSet<Import>,
    exports: BTreeSet<String>,
    producers: BTreeSet<Producer>,
}

fn invalid(e: wasmparser::BinaryReaderError) -> AuditError {
    AuditError::Invalid {
        offset: e.offset(),
        message: e.message().to_string(),
    }
}

/// A function body waiting for validation.
type Body<'a> = (FuncToValidate<ValidatorResources>, FunctionBody<'a>);

/// Bodies are handed to the pool in pieces of about this many bytes of code, so validation starts
/// while the rest of the binary is still being parsed.
const CHUNK_BYTES: usize = 32 * 1024;

/// Validates `bytes` and reads its surface. With [`Threads::Pool`], function bodies are validated
/// on the pool while parsing goes on; a parse error is reported before any body error (as if the
/// bodies were validated after parsing), and of the body errors, the one with the lowest offset.
fn parse_and_validate(bytes: &[u8], threads: Threads) -> Result<ParsedSurface, AuditError> {
    match threads {
        Threads::Caller => {
            let mut funcs = Vec::new();
            let surface = parse(bytes, &mut |f| funcs.push(f))?;
            let mut allocs = FuncValidatorAllocations::default();
            // Bodies come in offset order, so the first error is the lowest.
            match funcs
                .into_iter()
                .find_map(|f| validate_one(&mut allocs, f).err())
            {
                Some(e) => Err(invalid(e)),
                None => Ok(surface),
            }
        }
        Threads::Pool => {
            let first_error: Mutex<Option<wasmparser::BinaryReaderError>> = Mutex::new(None);
            let errors = &first_error;
            let surface = rayon::scope(|scope| {
                let mut chunk: Vec<Body<'_>> = Vec::new();
                let mut chunk_bytes = 0;
                let parsed = parse(bytes, &mut |f| {
                    chunk_bytes += f.1.range().len();
                    chunk.push(f);
                    if chunk_bytes >= CHUNK_BYTES {
                        let full = std::mem::take(&mut chunk);
                        chunk_bytes = 0;
                        scope.spawn(move |_| validate_chunk(full, errors));
                    }
                });
                if !chunk.is_empty() {
                    scope.spawn(move |_| validate_chunk(chunk, errors));
                }
                parsed
            })?;
            match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(e) => Err(invalid(e)),
                None => Ok(surface),
            }
        }
    }
}

fn validate_one(
    allocs: &mut FuncValidatorAllocations,
    (func, body): Body<'_>,
) -> Result<(), wasmparser::BinaryReaderError> {
    let mut v = func.into_validator(std::mem::take(allocs));
    let result = v.validate(&body);
    *allocs = v.into_allocations();
    result
}

/// Validates consecutive bodies; keeps the error with the lowest offset seen by any chunk.
fn validate_chunk(
    chunk: Vec<Body<'_>>,
    first_error: &Mutex<Option<wasmparser::BinaryReaderError>>,
) {
    let mut allocs = FuncValidatorAllocations::default();
    for f in chunk {
        if let Err(e) = validate_one(&mut allocs, f) {
            let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
            if first.as_ref().is_none_or(|seen| e.offset() < seen.offset()) {
                *first = Some(e);
            }
            // Later bodies of this chunk have higher offsets.
            return;
        }
    }
}

/// Parses and validates everything but function bodies, which go to `bodies` in offset order.
fn parse<'a>(
    bytes: &'a [u8],
    bodies: &mut dyn FnMut(Body<'a>),
) -> Result<ParsedSurface, AuditError> {
    let mut validator = Validator::new_with_features(features());
    let mut surface = Surface::default();
    // Depth 1 is the top-level unit; nested modules and components are deeper.
    let mut depth = 0usize;
    let mut parser = Parser::new(0);
    parser.set_features(features());
    for payload in parser.parse_all(bytes) {
        let payload = payload.map_err(invalid)?;
        match validator.payload(&payload).map_err(invalid)? {
            ValidPayload::Func(func, body) => bodies((func, body)),
            ValidPayload::End(_) | ValidPayload::Ok | ValidPayload::Parser(_) => {}
        }
        match &payload {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if depth == 1 {
                    surface.kind = Some(match encoding {
                        Encoding::Component => Kind::Component,
                        Encoding::Module => Kind::Module,
                    });
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ImportSection(reader) if depth == 1 => {
                for import in reader.clone().into_imports() {
                    let import = import.map_err(invalid)?;
                    surface.imports.insert(Import {
                        name: format!("{}.{}", import.module, import.name),
                        class: classify_module_import(import.module, import.name),
                    });
                }
            }
            Payload::ExportSection(reader) if depth == 1 => {
                for export in reader.clone() {
                    surface
                        .exports
                        .insert(export.map_err(invalid)?.name.to_string());
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader.clone() {
                    let import = import.map_err(invalid)?;
                    // A name that says which interface it implements is classified by that interface.
                    let class_source = import.name.implements.unwrap_or(import.name.name);
                    surface.imports.insert(Import {
                        name: import.name.name.to_string(),
                        class: classify_component_import(class_source),
                    });
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader.clone() {
                    surface
                        .exports
                        .insert(export.map_err(invalid)?.name.name.to_string());
                }
            }
            Payload::CustomSection(reader) => {
                if let KnownCustom::Producers(fields) = reader.as_known() {
                    for field in fields {
                        let field = field.map_err(invalid)?;
                        for value in field.values {
                            let value = value.map_err(invalid)?;
                            surface.producers.insert(Producer {
                                field: field.name.to_string(),
                                name: value.name.to_string(),
                                version: value.version.to_string(),
                            });
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let kind = surface.kind.ok_or(AuditError::Invalid {
        offset: 0,
        message: "no module or component header found".to_string(),
    })?;
    Ok(ParsedSurface {
        kind,
        imports: surface.imports,
        exports: surface.exports,
        producers: surface.producers,
    })
}
