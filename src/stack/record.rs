//! What irisctl records on each container and Swarm service it makes (label
//! `io.irisctl.record`): enough of the definition to say, next time, *why* it must change.
//!
//! Values that are short and not secret (the image ID, published ports, replicas) are kept as
//! they are; everything else as a short digest per field or per mounted file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Service;

/// The label that carries a [`Record`].
pub const LABEL: &str = "io.irisctl.record";

/// The cause of a change whose image is still to be built.
pub const REBUILT: &str = "its image is rebuilt";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The image ID the container runs; empty while its image is still to be built.
    #[serde(default)]
    pub image: String,
    /// Published ports, `127.0.0.1:9090->9090`.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Mounted files: host path → short digest of the content.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Every other field of the service definition → short digest.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

fn short(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))[..12].to_string()
}

impl Record {
    pub fn of(service: &Service, image_id: &str, files: &[(String, Vec<u8>)]) -> Record {
        let mut fields = BTreeMap::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(service) {
            for (k, v) in map {
                if k != "ports" {
                    fields.insert(k, short(v.to_string().as_bytes()));
                }
            }
        }
        Record {
            image: image_id.to_string(),
            ports: service
                .ports
                .iter()
                .map(|p| format!("{}:{}->{}", p.host_ip, p.host, p.container))
                .collect(),
            files: files
                .iter()
                .map(|(path, data)| (path.clone(), short(data)))
                .collect(),
            fields,
        }
    }

    /// Add a value that is part of the record but not of the service (e.g. Swarm replicas).
    pub fn with_field(mut self, name: &str, value: impl std::fmt::Display) -> Record {
        self.fields.insert(name.to_string(), value.to_string());
        self
    }

    pub fn label(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_label(text: &str) -> Option<Record> {
        serde_json::from_str(text).ok()
    }

    /// The digest stored as the config hash.
    pub fn hash(&self) -> String {
        format!("{:x}", Sha256::digest(self.label().as_bytes()))
    }
}

/// Why a container or service recorded as `old` does not match `new`, as phrases for a plan:
/// `published port 9090 → 29999`, `image changed (…)`, `mounted file changed (…)`.
/// `base` is stripped from file paths. Empty when they agree.
pub fn causes(old: &Record, new: &Record, base: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if old.ports != new.ports {
        out.push(ports_cause(&old.ports, &new.ports));
    }
    if new.image.is_empty() {
        out.push(REBUILT.to_string());
    } else if old.image != new.image {
        out.push(format!(
            "image changed ({} → {})",
            short_id(&old.image),
            short_id(&new.image)
        ));
    }
    let rel = |p: &str| {
        std::path::Path::new(p)
            .strip_prefix(base)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| p.to_string())
    };
    let mut changed: Vec<String> = Vec::new();
    for (path, digest) in &new.files {
        match old.files.get(path) {
            Some(d) if d == digest => {}
            Some(_) => changed.push(rel(path)),
            None => changed.push(format!("{} (new)", rel(path))),
        }
    }
    for path in old.files.keys().filter(|p| !new.files.contains_key(*p)) {
        changed.push(format!("{} (gone)", rel(path)));
    }
    if !changed.is_empty() {
        let noun = if changed.len() == 1 { "file" } else { "files" };
        out.push(format!("mounted {noun} changed ({})", changed.join(", ")));
    }
    let mut fields: Vec<&str> = new
        .fields
        .iter()
        .filter(|(k, v)| old.fields.get(*k) != Some(*v))
        .map(|(k, _)| k.as_str())
        .chain(
            old.fields
                .keys()
                .filter(|k| !new.fields.contains_key(*k))
                .map(String::as_str),
        )
        .collect();
    fields.dedup();
    // The replica count is short and not secret: say it.
    if let Some(i) = fields.iter().position(|f| *f == "replicas") {
        fields.remove(i);
        out.push(format!(
            "replicas {} → {}",
            old.fields.get("replicas").map_or("?", String::as_str),
            new.fields.get("replicas").map_or("?", String::as_str)
        ));
    }
    if !fields.is_empty() {
        out.push(format!("definition changed ({})", fields.join(", ")));
    }
    out
}

fn ports_cause(old: &[String], new: &[String]) -> String {
    let host_port = |p: &String| {
        p.rsplit_once("->")
            .and_then(|(host, _)| host.rsplit_once(':'))
            .map(|(_, port)| port.to_string())
            .unwrap_or_else(|| p.clone())
    };
    match (old, new) {
        ([o], [n]) if o.rsplit_once("->").map(|x| x.1) == n.rsplit_once("->").map(|x| x.1) => {
            let (ho, hn) = (host_port(o), host_port(n));
            if ho != hn {
                format!("published port {ho} → {hn}")
            } else {
                format!("published port {o} → {n}")
            }
        }
        _ => format!(
            "published ports [{}] → [{}]",
            old.join(", "),
            new.join(", ")
        ),
    }
}

fn short_id(id: &str) -> String {
    if id.is_empty() {
        return "none".into();
    }
    let bare = id.trim_start_matches("sha256:");
    bare.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use crate::stack::Stack;

    fn api() -> Service {
        Stack::from_settings(&Settings::defaults("/p".into()))
            .service("api")
            .unwrap()
            .clone()
    }

    #[test]
    fn same_definition_same_record_and_hash() {
        let a = Record::of(&api(), "sha256:a", &[]);
        assert_eq!(a, Record::of(&api(), "sha256:a", &[]));
        assert_eq!(Record::from_label(&a.label()), Some(a.clone()));
        assert!(causes(&a, &a, "/p".as_ref()).is_empty());
    }

    #[test]
    fn each_change_names_its_cause() {
        let base = std::path::Path::new("/p");
        let old = Record::of(
            &api(),
            "sha256:aaaaaaaaaaaaaaaa",
            &[("/p/m.yml".into(), b"1".to_vec())],
        );
        let mut moved = api();
        moved.ports[0].host = 29999;
        let new = Record::of(
            &moved,
            "sha256:aaaaaaaaaaaaaaaa",
            &[("/p/m.yml".into(), b"1".to_vec())],
        );
        assert_eq!(causes(&old, &new, base), ["published port 8000 → 29999"]);

        let new = Record::of(
            &api(),
            "sha256:bbbbbbbbbbbbbbbb",
            &[("/p/m.yml".into(), b"1".to_vec())],
        );
        assert_eq!(
            causes(&old, &new, base),
            ["image changed (aaaaaaaaaaaa → bbbbbbbbbbbb)"]
        );

        let new = Record::of(&api(), "", &[("/p/m.yml".into(), b"1".to_vec())]);
        assert_eq!(causes(&old, &new, base), ["its image is rebuilt"]);

        let new = Record::of(
            &api(),
            "sha256:aaaaaaaaaaaaaaaa",
            &[("/p/m.yml".into(), b"2".to_vec())],
        );
        assert_eq!(causes(&old, &new, base), ["mounted file changed (m.yml)"]);

        let mut more_memory = api();
        more_memory.memory_bytes = Some(1);
        let new = Record::of(
            &more_memory,
            "sha256:aaaaaaaaaaaaaaaa",
            &[("/p/m.yml".into(), b"1".to_vec())],
        );
        assert_eq!(
            causes(&old, &new, base),
            ["definition changed (memory_bytes)"]
        );

        let scaled = old.clone().with_field("replicas", 1);
        let new = old.clone().with_field("replicas", 3);
        assert_eq!(causes(&scaled, &new, base), ["replicas 1 → 3"]);
    }
}
