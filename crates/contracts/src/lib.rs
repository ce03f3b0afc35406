//! The published language of the 12st mall: the event envelope every service puts on the
//! bus and the payload of each event (DESIGN.md section 5).
//!
//! Services know each other only through this crate and HTTP. A payload type names its
//! topic, its `type` string and its schema version; its JSON Schema is generated from the
//! Rust type and checked in under `schemas/` so a change to the contract shows up in review.

mod envelope;
pub mod events;
pub mod topics;

pub use envelope::{DecodeError, Envelope, Event};

/// Every checked-in schema: file stem and the schema generated from the code.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    let settings = schemars::generate::SchemaSettings::default();
    let json =
        |schema: schemars::Schema| serde_json::to_value(schema).expect("a schema is always JSON");
    let mut schemas = vec![("Envelope", json(schemars::schema_for!(Envelope)))];
    schemas.extend(
        events::catalogue()
            .iter()
            .map(|event| (event.name, json((event.schema)(&settings)))),
    );
    schemas.push((
        "DeadLettered",
        json(schemars::schema_for!(events::DeadLettered)),
    ));
    schemas
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// The checked-in schemas are what the code generates. `BLESS=1 cargo test -p contracts`
    /// rewrites them after an intended contract change.
    #[test]
    fn checked_in_schemas_match_the_code() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let bless = std::env::var_os("BLESS").is_some();
        for (name, schema) in super::schemas() {
            let path = dir.join(format!("{name}.json"));
            let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            if bless {
                std::fs::write(&path, &generated).unwrap();
                continue;
            }
            let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|_| {
                panic!(
                    "{} is missing: run BLESS=1 cargo test -p contracts",
                    path.display()
                )
            });
            assert_eq!(
                checked_in, generated,
                "{name}.json differs from the code: run BLESS=1 cargo test -p contracts"
            );
        }
    }
}
