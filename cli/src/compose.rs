//! Composition (`gridreg compose`): plug components' exports into a socket component's imports
//! with wac-graph, the way `wac plug` does (exact names first, then semver-compatible ones),
//! and say exactly which import each plug satisfied. The composed component's remaining imports
//! are read back from the encoded bytes by the verifier, the same audit every other command uses.

use gridreg_protocol::Digest;
use gridreg_verifier::{Audit, Import, audit};
use serde::Serialize;
use wac_graph::types::{Package, SubtypeChecker, are_semver_compatible};
use wac_graph::{CompositionGraph, EncodeOptions, PackageId};

/// One input component.
#[derive(Debug)]
pub struct Part<'a> {
    /// How it was named on the command line (a path now, a registry reference later).
    pub reference: &'a str,
    pub bytes: &'a [u8],
}

/// One socket import a plug satisfied, and the plug export that satisfied it (the names differ
/// when they matched by semver compatibility).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Satisfied {
    pub import: String,
    pub export: String,
}

/// An input as the manifest records it.
#[derive(Debug, Clone, Serialize)]
pub struct InputRecord {
    pub reference: String,
    pub digest: Digest,
    pub size: u64,
    /// For plugs: what they satisfied. Empty for the socket.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub satisfied: Vec<Satisfied>,
}

/// The result: the composed bytes, their audit, and what went in.
#[derive(Debug)]
pub struct Composition {
    pub bytes: Vec<u8>,
    pub audit: Audit,
    pub socket: InputRecord,
    pub plugs: Vec<InputRecord>,
}

/// `OUT.composition.json`: what a reviewer needs to see what went into a composed component.
#[derive(Debug, Serialize)]
pub struct Manifest<'a> {
    pub format: &'static str,
    pub output: OutputRecord<'a>,
    pub socket: &'a InputRecord,
    pub plugs: &'a [InputRecord],
}

#[derive(Debug, Serialize)]
pub struct OutputRecord<'a> {
    pub file: &'a str,
    pub digest: &'a Digest,
    pub size: u64,
    pub imports: &'a [Import],
    pub exports: &'a [String],
}

impl Composition {
    pub fn manifest<'a>(&'a self, out: &'a str) -> Manifest<'a> {
        Manifest {
            format: "gridreg/composition/v1",
            output: OutputRecord {
                file: out,
                digest: &self.audit.digest,
                size: self.audit.size,
                imports: &self.audit.imports,
                exports: &self.audit.exports,
            },
            socket: &self.socket,
            plugs: &self.plugs,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("`{reference}` is not a valid component: {reason}")]
    Invalid { reference: String, reason: String },
    #[error(
        "plug `{plug}` satisfies none of the socket's imports: it exports [{exports}], the socket \
         imports [{imports}]"
    )]
    UselessPlug {
        plug: String,
        exports: String,
        imports: String,
    },
    #[error(
        "ambiguous plugs: the socket's import {import} is satisfied by both `{first}` and `{second}`"
    )]
    Ambiguous {
        import: String,
        first: String,
        second: String,
    },
    #[error("the same component was given twice (`{first}` and `{second}`, {digest})")]
    Duplicate {
        first: String,
        second: String,
        digest: Digest,
    },
    #[error("composition failed: {0}")]
    Graph(String),
}

/// Plugs `plugs` into `socket` and encodes the result.
pub fn compose(socket: &Part<'_>, plugs: &[Part<'_>]) -> Result<Composition, ComposeError> {
    let socket_audit = audit_part(socket)?;
    let mut plug_audits = Vec::new();
    for p in plugs {
        let a = audit_part(p)?;
        let earlier = std::iter::once((socket.reference, &socket_audit))
            .chain(plugs.iter().map(|q| q.reference).zip(plug_audits.iter()))
            .find(|(_, b): &(&str, &Audit)| b.digest == a.digest);
        if let Some((first, _)) = earlier {
            return Err(ComposeError::Duplicate {
                first: first.to_string(),
                second: p.reference.to_string(),
                digest: a.digest,
            });
        }
        plug_audits.push(a);
    }

    let mut graph = CompositionGraph::new();
    let socket_id = register(&mut graph, "gridreg:socket", socket)?;
    let mut plug_ids = Vec::new();
    for (i, p) in plugs.iter().enumerate() {
        plug_ids.push(register(&mut graph, &format!("gridreg:plug{i}"), p)?);
    }

    // Work out the matches first, with the rule wac_graph::plug applies, so that a useless or
    // ambiguous plug is reported by name rather than surfacing as a graph error.
    let mut satisfied: Vec<Vec<Satisfied>> = Vec::new();
    let mut taken: Vec<(String, usize)> = Vec::new();
    for (i, &plug) in plug_ids.iter().enumerate() {
        let found = matches(&graph, plug, socket_id);
        if found.is_empty() {
            let names = |it: Vec<String>| it.join(", ");
            return Err(ComposeError::UselessPlug {
                plug: plugs[i].reference.to_string(),
                exports: names(
                    graph.types()[graph[plug].ty()]
                        .exports
                        .keys()
                        .cloned()
                        .collect(),
                ),
                imports: names(
                    graph.types()[graph[socket_id].ty()]
                        .imports
                        .keys()
                        .cloned()
                        .collect(),
                ),
            });
        }
        for s in &found {
            if let Some((_, j)) = taken.iter().find(|(name, _)| *name == s.import) {
                return Err(ComposeError::Ambiguous {
                    import: s.import.clone(),
                    first: plugs[*j].reference.to_string(),
                    second: plugs[i].reference.to_string(),
                });
            }
            taken.push((s.import.clone(), i));
        }
        satisfied.push(found);
    }

    wac_graph::plug(&mut graph, plug_ids, socket_id)
        .map_err(|e| ComposeError::Graph(error_chain(&e)))?;
    let bytes = graph
        .encode(EncodeOptions::default())
        .map_err(|e| ComposeError::Graph(error_chain(&e)))?;
    let composed = audit(&bytes).map_err(|e| {
        ComposeError::Graph(format!("wac-graph produced an invalid component: {e}"))
    })?;

    Ok(Composition {
        bytes,
        audit: composed,
        socket: InputRecord {
            reference: socket.reference.to_string(),
            digest: socket_audit.digest,
            size: socket_audit.size,
            satisfied: Vec::new(),
        },
        plugs: plugs
            .iter()
            .zip(plug_audits)
            .zip(satisfied)
            .map(|((p, a), s)| InputRecord {
                reference: p.reference.to_string(),
                digest: a.digest,
                size: a.size,
                satisfied: s,
            })
            .collect(),
    })
}

fn audit_part(part: &Part<'_>) -> Result<Audit, ComposeError> {
    let a = audit(part.bytes).map_err(|e| ComposeError::Invalid {
        reference: part.reference.to_string(),
        reason: e.to_string(),
    })?;
    if a.kind != gridreg_verifier::Kind::Component {
        return Err(ComposeError::Invalid {
            reference: part.reference.to_string(),
            reason: "expected a component, found a core module".to_string(),
        });
    }
    Ok(a)
}

fn register(
    graph: &mut CompositionGraph,
    name: &str,
    part: &Part<'_>,
) -> Result<PackageId, ComposeError> {
    let invalid = |reason: String| ComposeError::Invalid {
        reference: part.reference.to_string(),
        reason,
    };
    let package = Package::from_bytes(name, None, part.bytes.to_vec(), graph.types_mut())
        .map_err(|e| invalid(format!("{e:#}")))?;
    graph
        .register_package(package)
        .map_err(|e| invalid(e.to_string()))
}

/// The socket imports `plug`'s exports satisfy: an export satisfies an import with the same name,
/// or failing that a semver-compatible name, when its type is a subtype of the import's.
fn matches(graph: &CompositionGraph, plug: PackageId, socket: PackageId) -> Vec<Satisfied> {
    let types = graph.types();
    let socket_imports = &types[graph[socket].ty()].imports;
    let mut cache = Default::default();
    let mut checker = SubtypeChecker::new(&mut cache);
    let mut found = Vec::new();
    for (name, plug_ty) in &types[graph[plug].ty()].exports {
        let import = socket_imports.get_key_value(name).or_else(|| {
            socket_imports
                .iter()
                .find(|(import, _)| are_semver_compatible(name, import))
        });
        if let Some((import, socket_ty)) = import
            && checker
                .is_subtype(*plug_ty, types, *socket_ty, types)
                .is_ok()
        {
            found.push(Satisfied {
                import: import.clone(),
                export: name.clone(),
            });
        }
    }
    found
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../examples/wasm/{name}.wasm",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn processor_with_converter() {
        let (p, c) = (fixture("processor"), fixture("converter"));
        let out = compose(
            &Part {
                reference: "processor.wasm",
                bytes: &p,
            },
            &[Part {
                reference: "converter.wasm",
                bytes: &c,
            }],
        )
        .unwrap();
        assert!(
            !out.audit
                .imports
                .iter()
                .any(|i| i.name.starts_with("neon:cybergrid/"))
        );
        assert!(
            out.audit
                .exports
                .iter()
                .any(|e| e.starts_with("wasi:cli/run@"))
        );
        assert_eq!(
            out.plugs[0].satisfied,
            vec![Satisfied {
                import: "neon:cybergrid/converter@0.1.0".into(),
                export: "neon:cybergrid/converter@0.1.0".into()
            }]
        );
        assert_eq!(out.plugs[0].digest, Digest::of(&c));
    }

    #[test]
    fn useless_plug_is_named() {
        let (p, h) = (fixture("processor"), fixture("hello"));
        let err = compose(
            &Part {
                reference: "processor.wasm",
                bytes: &p,
            },
            &[Part {
                reference: "hello.wasm",
                bytes: &h,
            }],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("plug `hello.wasm` satisfies none"), "{text}");
        assert!(text.contains("wasi:cli/run@0.2.12"), "{text}");
    }

    #[test]
    fn not_a_component() {
        let m = fixture("p1-hello");
        let p = fixture("processor");
        let err = compose(
            &Part {
                reference: "processor.wasm",
                bytes: &p,
            },
            &[Part {
                reference: "p1.wasm",
                bytes: &m,
            }],
        )
        .unwrap_err();
        assert!(matches!(err, ComposeError::Invalid { .. }), "{err}");
    }
}
