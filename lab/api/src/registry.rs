//! The set of resource kinds the lab serves, looked up by path or by kind. The kinds and their
//! facts (names, scope, subresources) come from the embedded schema set, so the lab serves what
//! the CRDs declare.

use std::collections::BTreeMap;

/// One served resource kind (a group/version/plural triple): the shared kind facts, as the
/// embedded CRDs declare them.
pub use vmbgp_model::KindInfo as ResourceKind;

/// Index of served kinds. Ids are positions in [`Registry::kinds`], stable for the lab's life.
#[derive(Debug, Clone)]
pub struct Registry {
    kinds: Vec<ResourceKind>,
    by_path: BTreeMap<(String, String, String), usize>,
    by_kind: BTreeMap<(String, String), usize>,
}

/// Identifier of a kind inside one [`Registry`].
pub type KindId = usize;

impl Registry {
    /// Builds the index; later duplicates of the same group/version/plural are ignored.
    pub fn new(kinds: Vec<ResourceKind>) -> Self {
        let mut reg = Registry {
            kinds: Vec::new(),
            by_path: BTreeMap::new(),
            by_kind: BTreeMap::new(),
        };
        for k in kinds {
            let key = (k.group.clone(), k.version.clone(), k.plural.clone());
            if reg.by_path.contains_key(&key) {
                continue;
            }
            let id = reg.kinds.len();
            reg.by_path.insert(key, id);
            reg.by_kind.insert((k.api_version(), k.kind.clone()), id);
            reg.kinds.push(k);
        }
        reg
    }

    /// Every served kind of the embedded schema set (CRDs, KubeVirt's kinds, the core kinds the
    /// lab serves), core kinds first so namespaces and nodes keep the first ids.
    pub fn embedded() -> Result<Self, vmbgp_schema::SchemaError> {
        Ok(Registry::served(vmbgp_schema::embedded_kinds()?))
    }

    /// The served kinds of a list, core group first, then by group, version and kind.
    pub fn served(mut kinds: Vec<ResourceKind>) -> Self {
        kinds.retain(|k| k.served);
        kinds.sort_by_key(|k| {
            (
                !k.group.is_empty(),
                k.group.clone(),
                k.version.clone(),
                k.kind.clone(),
            )
        });
        Registry::new(kinds)
    }

    pub fn kinds(&self) -> &[ResourceKind] {
        &self.kinds
    }

    pub fn get(&self, id: KindId) -> Option<&ResourceKind> {
        self.kinds.get(id)
    }

    /// Looks a kind up by its URL pieces.
    pub fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<KindId> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .copied()
    }

    /// Looks a kind up by `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<KindId> {
        self.by_kind
            .get(&(api_version.to_string(), kind.to_string()))
            .copied()
    }

    /// Groups in first-seen order with their versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for k in &self.kinds {
            match out.iter_mut().find(|(g, _)| *g == k.group) {
                Some((_, versions)) => {
                    if !versions.contains(&k.version) {
                        versions.push(k.version.clone());
                    }
                }
                None => out.push((k.group.clone(), vec![k.version.clone()])),
            }
        }
        out
    }

    /// Kinds of one group/version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<&ResourceKind> {
        self.kinds
            .iter()
            .filter(|k| k.group == group && k.version == version)
            .collect()
    }
}
