//! The contract check: a plugin's imports and exports against
//! `warden:policy@0.1.0` as `wit/policy.wit` writes it, before anything of
//! the plugin runs.
//!
//! wasmtime would find most differences too, but late and in its own
//! words: a hook whose record gained a field links, is listed, and then
//! traps on every call; a plugin built against another version is refused
//! with a message about linking. Here every difference is named the way a
//! plugin author reads the WIT: the function, the type by its WIT name,
//! and what differs (`` `idle.retire`: record `process` has 8 fields,
//! warden's contract has 7 ``); a plugin built against another version of
//! the package is told the two versions; an import warden does not provide
//! is named with what warden does provide.
//!
//! Versions: a plugin may be built against any `0.1.x` of the package (the
//! types of every function it uses must still match); `0.2` and later, or
//! `0.0.x`, are another contract.

use std::fmt;
use std::sync::LazyLock;

use wasmtime::Engine;
use wasmtime::component::types::{self, ComponentItem, Type};
use wit_parser::{InterfaceId, Resolve, TypeDefKind, TypeId};

/// The package every plugin is built against.
pub const PACKAGE: &str = "warden:policy";

/// The version of [`PACKAGE`] this warden speaks.
pub const VERSION: &str = "0.1.0";

/// What warden provides a plugin besides its contract, for the message
/// about an import it does not.
pub const PROVIDED: &str = "WASI 0.2 cli, io, clocks, random, filesystem (read-only, and only a directory [plugin.NAME] grants) and sockets (every address refused); no wasi:http, no other interface";

/// The WASI 0.2 interfaces warden links, by `package/interface`.
const WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// The interface of the contract that plugins import; every other
/// interface of it is a hook a plugin may export (`types` holds only
/// types).
const IMPORTED: &str = "host";

/// How a plugin differs from the contract: every difference found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    problems: Vec<Problem>,
}

impl Mismatch {
    /// The differences, in the order found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl From<Problem> for Mismatch {
    fn from(problem: Problem) -> Mismatch {
        Mismatch {
            problems: vec![problem],
        }
    }
}

/// One difference between a plugin and the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// It does not export `warden:policy/plugin`.
    NoIdentity,
    /// It was built against another version of the contract.
    Version {
        /// The version it was built against.
        found: String,
    },
    /// It imports something warden does not provide.
    UnknownImport {
        /// The import's name.
        name: String,
    },
    /// A hook it exports lacks a function of the contract.
    MissingFunction {
        /// `interface.function`.
        function: String,
    },
    /// A function's type differs.
    Function {
        /// `interface.function`.
        function: String,
        /// How it differs.
        difference: String,
    },
    /// Something named as an interface of the contract is not an instance.
    NotAnInterface {
        /// Its name.
        name: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoIdentity => write!(
                f,
                "it does not export {PACKAGE}/plugin@{VERSION}, which every plugin must"
            ),
            Problem::Version { found } => write!(
                f,
                "built against {PACKAGE}@{found}; this warden speaks {VERSION}: build it against the wit/ of this warden"
            ),
            Problem::UnknownImport { name } => {
                write!(f, "it imports {name}, which warden does not provide")
            }
            Problem::MissingFunction { function } => {
                write!(f, "`{function}` is missing from its export")
            }
            Problem::Function {
                function,
                difference,
            } => write!(f, "`{function}`: {difference}"),
            Problem::NotAnInterface { name } => {
                write!(f, "its {name} is not an interface instance")
            }
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut unknown_import = false;
        for (place, problem) in self.problems.iter().enumerate() {
            if place > 0 {
                f.write_str("; ")?;
            }
            problem.fmt(f)?;
            unknown_import |= matches!(problem, Problem::UnknownImport { .. });
        }
        if unknown_import {
            write!(f, ". warden provides {PROVIDED}")?;
            if self.problems.iter().any(
                |p| matches!(p, Problem::UnknownImport { name } if name.starts_with("wasi:http/")),
            ) {
                write!(
                    f,
                    "; a JavaScript plugin built with componentize-js leaves wasi:http out with --disable http --disable fetch-event"
                )?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Mismatch {}

/// The contract, parsed once from the WIT built into warden.
struct Contract {
    resolve: Resolve,
    /// Each interface of the package, by name.
    interfaces: Vec<(String, InterfaceId)>,
}

static CONTRACT: LazyLock<Result<Contract, String>> = LazyLock::new(|| {
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str("wit/policy.wit", include_str!("../../../wit/policy.wit"))
        .map_err(|error| format!("the built-in contract does not parse: {error:#}"))?;
    let interfaces = resolve
        .packages
        .get(package)
        .map(|package| {
            package
                .interfaces
                .iter()
                .map(|(name, id)| (name.clone(), *id))
                .collect()
        })
        .unwrap_or_default();
    Ok(Contract {
        resolve,
        interfaces,
    })
});

/// Checks `component`'s imports and exports against the contract; every
/// difference found is in the error.
pub fn check(engine: &Engine, component: &wasmtime::component::Component) -> Result<(), Mismatch> {
    let contract = match &*CONTRACT {
        Ok(contract) => contract,
        Err(error) => {
            return Err(Mismatch {
                problems: vec![Problem::Function {
                    function: "(contract)".to_owned(),
                    difference: error.clone(),
                }],
            });
        }
    };
    let ty = component.component_type();
    let mut problems = Vec::new();
    for (name, item) in ty.imports(engine) {
        contract.check_import(engine, name, &item.ty, &mut problems);
    }
    let mut identity = false;
    for (name, item) in ty.exports(engine) {
        identity |= contract.check_export(engine, name, &item.ty, &mut problems);
    }
    if !identity
        && !problems
            .iter()
            .any(|p| matches!(p, Problem::Version { .. }))
    {
        problems.push(Problem::NoIdentity);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Mismatch { problems })
    }
}

/// `package/interface` and version of an interface name such as
/// `warden:policy/idle@0.1.0`.
fn split(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (name, None),
    }
}

/// Whether `version` is one this warden speaks: 0.1.x.
fn compatible(version: Option<&str>) -> bool {
    version.is_some_and(|v| v.split('.').take(2).eq(VERSION.split('.').take(2)))
}

impl Contract {
    fn interface(&self, name: &str) -> Option<InterfaceId> {
        self.interfaces
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, id)| *id)
    }

    /// The contract's interface `name` is `warden:policy/NAME@...`.
    fn ours<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix(PACKAGE)?.strip_prefix('/')
    }

    fn check_import(
        &self,
        engine: &Engine,
        name: &str,
        item: &ComponentItem,
        problems: &mut Vec<Problem>,
    ) {
        let (path, version) = split(name);
        if let Some(interface) = self.ours(path) {
            if !compatible(version) {
                push_version(problems, version);
                return;
            }
            match (self.interface(interface), interface == IMPORTED) {
                (Some(id), true) => self.check_instance(engine, interface, id, item, problems),
                // `types` is imported for its types only, which the
                // functions using them are checked with.
                (Some(_), false) if interface == "types" => {}
                _ => problems.push(Problem::UnknownImport {
                    name: name.to_owned(),
                }),
            }
            return;
        }
        let wasi_0_2 = version.is_some_and(|v| v.starts_with("0.2."));
        if !(wasi_0_2 && WASI.contains(&path)) {
            problems.push(Problem::UnknownImport {
                name: name.to_owned(),
            });
        }
    }

    /// Checks one export; returns whether it is the `plugin` interface.
    fn check_export(
        &self,
        engine: &Engine,
        name: &str,
        item: &ComponentItem,
        problems: &mut Vec<Problem>,
    ) -> bool {
        let (path, version) = split(name);
        let Some(interface) = self.ours(path) else {
            // Exports warden does not know of are never called.
            return false;
        };
        if !compatible(version) {
            push_version(problems, version);
            return false;
        }
        let Some(id) = self.interface(interface).filter(|_| interface != IMPORTED) else {
            return false;
        };
        self.check_instance(engine, interface, id, item, problems);
        interface == "plugin"
    }

    /// Compares the functions of the instance `item` with those of the
    /// contract's interface `id`.
    fn check_instance(
        &self,
        engine: &Engine,
        interface: &str,
        id: InterfaceId,
        item: &ComponentItem,
        problems: &mut Vec<Problem>,
    ) {
        let ComponentItem::ComponentInstance(instance) = item else {
            problems.push(Problem::NotAnInterface {
                name: format!("{PACKAGE}/{interface}"),
            });
            return;
        };
        let Some(expected) = self.resolve.interfaces.get(id) else {
            return;
        };
        for (function_name, function) in &expected.functions {
            let qualified = format!("{interface}.{function_name}");
            let Some(found) = instance.get_export(engine, function_name) else {
                problems.push(Problem::MissingFunction {
                    function: qualified,
                });
                continue;
            };
            let ComponentItem::ComponentFunc(found) = found.ty else {
                problems.push(Problem::Function {
                    function: qualified,
                    difference: "it is not a function".to_owned(),
                });
                continue;
            };
            if let Err(difference) = self.check_function(function, &found) {
                problems.push(Problem::Function {
                    function: qualified,
                    difference,
                });
            }
        }
    }

    fn check_function(
        &self,
        expected: &wit_parser::Function,
        found: &types::ComponentFunc,
    ) -> Result<(), String> {
        let params: Vec<(&str, Type)> = found.params().collect();
        if params.len() != expected.params.len() {
            return Err(format!(
                "it takes {} parameters, warden's contract has {}",
                params.len(),
                expected.params.len()
            ));
        }
        for (place, (param, (_, ty))) in expected.params.iter().zip(&params).enumerate() {
            self.compare(&param.ty, ty).map_err(|difference| {
                format!("parameter {} (`{}`): {difference}", place + 1, param.name)
            })?;
        }
        let results: Vec<Type> = found.results().collect();
        match (&expected.result, results.as_slice()) {
            (None, []) => Ok(()),
            (Some(expected), [found]) => self
                .compare(expected, found)
                .map_err(|difference| format!("its result: {difference}")),
            (None, _) => Err("it returns a value, warden's contract returns none".to_owned()),
            (Some(expected), _) => Err(format!(
                "it returns no value, warden's contract returns {}",
                self.describe(expected)
            )),
        }
    }

    /// The type `id` resolves to, through aliases.
    fn definition(&self, mut id: TypeId) -> Option<(&wit_parser::TypeDef, TypeId)> {
        loop {
            let def = self.resolve.types.get(id)?;
            match def.kind {
                TypeDefKind::Type(wit_parser::Type::Id(next)) => id = next,
                _ => return Some((def, id)),
            }
        }
    }

    /// Whether `found` has the shape of `expected`; otherwise what differs,
    /// naming the innermost named type.
    fn compare(&self, expected: &wit_parser::Type, found: &Type) -> Result<(), String> {
        use wit_parser::Type as W;
        let primitive = match (expected, found) {
            (W::Bool, Type::Bool)
            | (W::U8, Type::U8)
            | (W::U16, Type::U16)
            | (W::U32, Type::U32)
            | (W::U64, Type::U64)
            | (W::S8, Type::S8)
            | (W::S16, Type::S16)
            | (W::S32, Type::S32)
            | (W::S64, Type::S64)
            | (W::F32, Type::Float32)
            | (W::F64, Type::Float64)
            | (W::Char, Type::Char)
            | (W::String, Type::String)
            | (W::ErrorContext, Type::ErrorContext) => return Ok(()),
            (W::Id(id), _) => *id,
            _ => return Err(self.differs(expected, found)),
        };
        let Some((def, _)) = self.definition(primitive) else {
            return Err(self.differs(expected, found));
        };
        if let TypeDefKind::Type(alias) = &def.kind {
            // An alias of a primitive, such as `millis`.
            return self.compare(alias, found);
        }
        let named = |what: &str| match &def.name {
            Some(name) => format!("{what} `{name}`"),
            None => what.to_owned(),
        };
        match (&def.kind, found) {
            (TypeDefKind::Record(record), Type::Record(other)) => {
                let fields: Vec<types::Field<'_>> = other.fields().collect();
                if fields.len() != record.fields.len() {
                    return Err(format!(
                        "{} has {} fields, warden's contract has {}",
                        named("record"),
                        fields.len(),
                        record.fields.len()
                    ));
                }
                for (field, other) in record.fields.iter().zip(&fields) {
                    if field.name != other.name {
                        return Err(format!(
                            "{} has a field `{}` where warden's contract has `{}`",
                            named("record"),
                            other.name,
                            field.name
                        ));
                    }
                    self.compare(&field.ty, &other.ty).map_err(|difference| {
                        format!(
                            "field `{}` of {}: {difference}",
                            field.name,
                            named("record")
                        )
                    })?;
                }
                Ok(())
            }
            (TypeDefKind::Variant(variant), Type::Variant(other)) => {
                let cases: Vec<types::Case<'_>> = other.cases().collect();
                let expected: Vec<&str> = variant.cases.iter().map(|c| c.name.as_str()).collect();
                let found: Vec<&str> = cases.iter().map(|c| c.name).collect();
                if expected != found {
                    return Err(format!(
                        "{} has the cases {}, warden's contract has {}",
                        named("variant"),
                        found.join(", "),
                        expected.join(", ")
                    ));
                }
                for (case, other) in variant.cases.iter().zip(&cases) {
                    match (&case.ty, &other.ty) {
                        (None, None) => {}
                        (Some(expected), Some(found)) => {
                            self.compare(expected, found).map_err(|difference| {
                                format!(
                                    "case `{}` of {}: {difference}",
                                    case.name,
                                    named("variant")
                                )
                            })?;
                        }
                        _ => {
                            return Err(format!(
                                "case `{}` of {} carries {}, warden's contract carries {}",
                                case.name,
                                named("variant"),
                                other
                                    .ty
                                    .as_ref()
                                    .map_or("nothing".to_owned(), describe_found),
                                case.ty
                                    .as_ref()
                                    .map_or("nothing".to_owned(), |t| self.describe(t))
                            ));
                        }
                    }
                }
                Ok(())
            }
            (TypeDefKind::Enum(enumeration), Type::Enum(other)) => {
                let expected: Vec<&str> =
                    enumeration.cases.iter().map(|c| c.name.as_str()).collect();
                let found: Vec<&str> = other.names().collect();
                if expected == found {
                    Ok(())
                } else {
                    Err(format!(
                        "{} has the cases {}, warden's contract has {}",
                        named("enum"),
                        found.join(", "),
                        expected.join(", ")
                    ))
                }
            }
            (TypeDefKind::Flags(flags), Type::Flags(other)) => {
                let expected: Vec<&str> = flags.flags.iter().map(|f| f.name.as_str()).collect();
                let found: Vec<&str> = other.names().collect();
                if expected == found {
                    Ok(())
                } else {
                    Err(format!(
                        "{} has the flags {}, warden's contract has {}",
                        named("flags"),
                        found.join(", "),
                        expected.join(", ")
                    ))
                }
            }
            (TypeDefKind::List(inner), Type::List(other)) => self.compare(inner, &other.ty()),
            (TypeDefKind::Option(inner), Type::Option(other)) => self.compare(inner, &other.ty()),
            (TypeDefKind::Tuple(tuple), Type::Tuple(other)) => {
                let found: Vec<Type> = other.types().collect();
                if found.len() != tuple.types.len() {
                    return Err(self.differs(expected, &Type::Tuple(other.clone())));
                }
                for (expected, found) in tuple.types.iter().zip(&found) {
                    self.compare(expected, found)?;
                }
                Ok(())
            }
            (TypeDefKind::Result(result), Type::Result(other)) => {
                for (part, expected, found) in [
                    ("ok", &result.ok, other.ok()),
                    ("error", &result.err, other.err()),
                ] {
                    match (expected, &found) {
                        (None, None) => {}
                        (Some(expected), Some(found)) => self.compare(expected, found)?,
                        _ => {
                            return Err(format!(
                                "the {part} of {} differs from warden's contract",
                                self.describe(&wit_parser::Type::Id(primitive))
                            ));
                        }
                    }
                }
                Ok(())
            }
            _ => Err(self.differs(expected, found)),
        }
    }

    fn differs(&self, expected: &wit_parser::Type, found: &Type) -> String {
        format!(
            "it has {}, warden's contract has {}",
            describe_found(found),
            self.describe(expected)
        )
    }

    /// `ty` as WIT writes it.
    fn describe(&self, ty: &wit_parser::Type) -> String {
        use wit_parser::Type as W;
        match ty {
            W::Bool => "bool".to_owned(),
            W::U8 => "u8".to_owned(),
            W::U16 => "u16".to_owned(),
            W::U32 => "u32".to_owned(),
            W::U64 => "u64".to_owned(),
            W::S8 => "s8".to_owned(),
            W::S16 => "s16".to_owned(),
            W::S32 => "s32".to_owned(),
            W::S64 => "s64".to_owned(),
            W::F32 => "f32".to_owned(),
            W::F64 => "f64".to_owned(),
            W::Char => "char".to_owned(),
            W::String => "string".to_owned(),
            W::ErrorContext => "error-context".to_owned(),
            W::Id(id) => match self.definition(*id) {
                Some((def, _)) => match (&def.name, &def.kind) {
                    (Some(name), TypeDefKind::Record(_)) => format!("record `{name}`"),
                    (Some(name), TypeDefKind::Variant(_)) => format!("variant `{name}`"),
                    (Some(name), TypeDefKind::Enum(_)) => format!("enum `{name}`"),
                    (Some(name), TypeDefKind::Flags(_)) => format!("flags `{name}`"),
                    (Some(_), TypeDefKind::Type(alias)) => self.describe(alias),
                    (Some(name), _) => format!("`{name}`"),
                    (None, TypeDefKind::List(inner)) => format!("list<{}>", self.describe(inner)),
                    (None, TypeDefKind::Option(inner)) => {
                        format!("option<{}>", self.describe(inner))
                    }
                    (None, TypeDefKind::Tuple(tuple)) => format!(
                        "tuple<{}>",
                        tuple
                            .types
                            .iter()
                            .map(|t| self.describe(t))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    (None, TypeDefKind::Result(_)) => "a result".to_owned(),
                    (None, _) => "an anonymous type".to_owned(),
                },
                None => "an unknown type".to_owned(),
            },
        }
    }
}

/// The version problem for `version`, once.
fn push_version(problems: &mut Vec<Problem>, version: Option<&str>) {
    let found = version.unwrap_or("(no version)").to_owned();
    if !problems
        .iter()
        .any(|p| matches!(p, Problem::Version { found: seen } if *seen == found))
    {
        problems.push(Problem::Version { found });
    }
}

/// A found type, in words.
fn describe_found(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".to_owned(),
        Type::S8 => "s8".to_owned(),
        Type::U8 => "u8".to_owned(),
        Type::S16 => "s16".to_owned(),
        Type::U16 => "u16".to_owned(),
        Type::S32 => "s32".to_owned(),
        Type::U32 => "u32".to_owned(),
        Type::S64 => "s64".to_owned(),
        Type::U64 => "u64".to_owned(),
        Type::Float32 => "f32".to_owned(),
        Type::Float64 => "f64".to_owned(),
        Type::Char => "char".to_owned(),
        Type::String => "string".to_owned(),
        Type::List(list) => format!("list<{}>", describe_found(&list.ty())),
        Type::Record(record) => format!("a record of {} fields", record.fields().len()),
        Type::Tuple(tuple) => format!("a tuple of {}", tuple.types().len()),
        Type::Variant(variant) => format!("a variant of {} cases", variant.cases().len()),
        Type::Enum(enumeration) => format!("an enum of {} cases", enumeration.names().len()),
        Type::Option(option) => format!("option<{}>", describe_found(&option.ty())),
        Type::Result(_) => "a result".to_owned(),
        Type::Flags(flags) => format!("flags of {}", flags.names().len()),
        Type::Own(_) | Type::Borrow(_) => "a resource".to_owned(),
        Type::Map(_) => "a map".to_owned(),
        Type::Future(_) => "a future".to_owned(),
        Type::Stream(_) => "a stream".to_owned(),
        Type::ErrorContext => "error-context".to_owned(),
        Type::FixedLengthList(_) => "a fixed-length list".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_contract_parses() {
        let contract = CONTRACT.as_ref().expect("the contract parses");
        for name in ["types", "host", "plugin", "idle", "admission", "stats"] {
            assert!(contract.interface(name).is_some(), "{name}");
        }
    }

    #[test]
    fn only_0_1_x_is_this_contract() {
        assert!(compatible(Some("0.1.0")));
        assert!(compatible(Some("0.1.7")));
        assert!(!compatible(Some("0.2.0")));
        assert!(!compatible(Some("0.0.1")));
        assert!(!compatible(Some("1.1.0")));
        assert!(!compatible(None));
    }

    #[test]
    fn an_unknown_import_says_what_warden_provides() {
        let mismatch = Mismatch {
            problems: vec![Problem::UnknownImport {
                name: "wasi:http/types@0.2.3".to_owned(),
            }],
        };
        let text = mismatch.to_string();
        assert!(text.contains("imports wasi:http/types@0.2.3, which warden does not provide"));
        assert!(text.contains("warden provides WASI 0.2 cli"));
        assert!(text.contains("--disable http --disable fetch-event"));
    }
}
