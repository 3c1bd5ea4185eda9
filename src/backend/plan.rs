//! What a backend will do, as a value: operations, each on one object and with its cause.
//!
//! Both planners build a [`Plan`] before anything runs; `up --dry-run` prints it, `up` applies
//! it, and unit tests assert on its text (as docker/compose's `plan_test.go` does).

use serde::Serialize;

/// What happens to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    /// Build an image that does not exist yet.
    Build,
    /// Build again: its inputs changed.
    Rebuild,
    Pull,
    Create,
    Recreate,
    /// Single engine: a zero-downtime swap. The new container starts beside the old one
    /// (same network alias), must become healthy, then the old one drains and goes.
    Release,
    /// Single engine: a release as a canary (the API): the new container takes a growing share
    /// of the requests, judged against the old one at each step, then the swap — or, when a
    /// gate fails, it goes and the old one serves alone.
    Canary,
    /// Swarm: a rolling update of a service.
    Update,
    Start,
    Unpause,
    Remove,
    /// Present and current: nothing to do.
    Keep,
    /// Not the stack's, not removed: only reported.
    Report,
    /// Single engine: change what the edge routes (a shadow's copy of `/predict`).
    Route,
    /// A shadow's container (`irisctl shadow start`), kept by `up`: only reported.
    Shadow,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Build => "build",
            Verb::Rebuild => "rebuild",
            Verb::Pull => "pull",
            Verb::Create => "create",
            Verb::Recreate => "recreate",
            Verb::Release => "release",
            Verb::Canary => "canary",
            Verb::Update => "update",
            Verb::Start => "start",
            Verb::Unpause => "unpause",
            Verb::Remove => "remove",
            Verb::Keep => "keep",
            Verb::Report => "orphan",
            Verb::Route => "route",
            Verb::Shadow => "shadow",
        }
    }
}

/// The kind of object an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Image,
    Network,
    Volume,
    /// A service's container (single engine).
    Container,
    /// A Swarm service.
    Service,
    Config,
    Secret,
}

/// What an operation creates, as the planner decided it: `apply` carries it out as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// A service's container from the stack's definition: its record (the image ID is filled
    /// in by `apply` when the plan builds the image first).
    Container(Box<crate::stack::record::Record>),
    /// A container of exactly this definition (a rollback: the previous release's).
    Definition(Box<bollard::models::ContainerCreateBody>),
    Network(Box<bollard::models::NetworkCreateRequest>),
    Volume(Box<bollard::models::VolumeCreateRequest>),
}

/// One operation of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    pub verb: Verb,
    pub kind: Kind,
    /// The stack's service it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The engine's name of the object (container, network, volume, image, config…).
    pub object: String,
    /// The engine's ID of the existing object acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why: empty for `keep`.
    pub cause: String,
    /// `release`: the name of the container that replaces `object`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    /// What it creates (not in the JSON: the request bodies hold the environment).
    #[serde(skip)]
    pub spec: Option<Spec>,
    /// `canary`: its steps and gates.
    #[serde(skip)]
    pub canary: Option<Box<crate::settings::Canary>>,
}

impl Op {
    pub fn new(verb: Verb, kind: Kind, object: impl Into<String>) -> Op {
        Op {
            verb,
            kind,
            service: None,
            object: object.into(),
            id: None,
            cause: String::new(),
            replacement: None,
            spec: None,
            canary: None,
        }
    }

    pub fn spec(mut self, spec: Spec) -> Op {
        self.spec = Some(spec);
        self
    }

    pub fn service(mut self, service: impl Into<String>) -> Op {
        self.service = Some(service.into());
        self
    }

    pub fn id(mut self, id: impl Into<String>) -> Op {
        self.id = Some(id.into());
        self
    }

    pub fn replaced_by(mut self, name: impl Into<String>) -> Op {
        self.replacement = Some(name.into());
        self
    }

    pub fn because(mut self, cause: impl Into<String>) -> Op {
        self.cause = cause.into();
        self
    }

    /// Does it change anything on the engine?
    pub fn changes(&self) -> bool {
        !matches!(self.verb, Verb::Keep | Verb::Report | Verb::Shadow)
    }

    /// `recreate prometheus: published port 9090 → 29999`, `create network iris-network`.
    /// Containers and Swarm services are named by their service; other objects by kind and name.
    pub fn text(&self) -> String {
        let what = match (self.kind, &self.service) {
            (Kind::Container | Kind::Service, Some(s)) if self.verb != Verb::Remove => s.clone(),
            (Kind::Image, Some(s)) if matches!(self.verb, Verb::Build | Verb::Rebuild) => s.clone(),
            (kind, _) => format!("{} {}", kind_word(kind), self.object),
        };
        if self.cause.is_empty() {
            format!("{} {what}", self.verb.word())
        } else {
            format!("{} {what}: {}", self.verb.word(), self.cause)
        }
    }

    /// The past tense for a summary: `recreated prometheus`.
    pub fn done_text(&self) -> String {
        let verb = match self.verb {
            Verb::Build => "built",
            Verb::Rebuild => "rebuilt",
            Verb::Pull => "pulled",
            Verb::Create => "created",
            Verb::Recreate => "recreated",
            Verb::Release => "released",
            Verb::Canary => "promoted the canary of",
            Verb::Update => "updated",
            Verb::Start => "started",
            Verb::Unpause => "unpaused",
            Verb::Remove => "removed",
            Verb::Keep => "kept",
            Verb::Report => "reported",
            Verb::Route => "routed",
            Verb::Shadow => "kept",
        };
        match (self.kind, &self.service, self.verb) {
            (Kind::Container | Kind::Service, Some(s), v) if v != Verb::Remove => {
                format!("{verb} {s}")
            }
            (Kind::Container, Some(_), Verb::Remove) => {
                format!("removed duplicate {}", self.object)
            }
            (Kind::Container | Kind::Service, None, Verb::Remove) => {
                format!("removed orphan {}", self.object)
            }
            (kind, _, _) => format!("{verb} {} {}", kind_word(kind), self.object),
        }
    }
}

impl crate::output::Operation for Op {
    fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        }
    }

    fn text(&self) -> String {
        Op::text(self)
    }

    fn done_text(&self) -> String {
        Op::done_text(self)
    }

    fn is_slow(&self) -> bool {
        matches!(
            self.verb,
            Verb::Build | Verb::Rebuild | Verb::Pull | Verb::Release | Verb::Canary | Verb::Update
        )
    }
}

/// Carry out one operation of a plan, reporting its start, then its end or its failure (the
/// error goes on unchanged: the run stops with it).
pub async fn step<T>(
    printer: &crate::output::Printer,
    op: &Op,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    printer.op_started(op);
    let started = std::time::Instant::now();
    match work.await {
        Ok(v) => {
            printer.op_done(op, started.elapsed());
            Ok(v)
        }
        Err(e) => {
            printer.op_failed(op, &format!("{e:#}"));
            Err(e)
        }
    }
}

fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Image => "image",
        Kind::Network => "network",
        Kind::Volume => "volume",
        Kind::Container => "container",
        Kind::Service => "service",
        Kind::Config => "config",
        Kind::Secret => "secret",
    }
}

/// The cause of a container or service whose image is still to be built.
pub const REBUILT: &str = crate::stack::record::REBUILT;

/// Everything a run will do, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub ops: Vec<Op>,
}

impl Plan {
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub fn extend(&mut self, other: Plan) {
        self.ops.extend(other.ops);
    }

    /// The operations that change something.
    pub fn changes(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(|o| o.changes())
    }

    pub fn is_noop(&self) -> bool {
        self.changes().next().is_none()
    }

    /// The API's release, if the plan has one, as a canary with these steps and gates
    /// (`canary api: steps 10 → 50 → 100, gates …; <why it is released>`).
    pub fn as_canary(&mut self, config: &crate::settings::Canary) {
        for op in &mut self.ops {
            if op.verb == Verb::Release
                && op.kind == Kind::Container
                && op.service.as_deref() == Some("api")
            {
                op.verb = Verb::Canary;
                op.cause = format!("{}; {}", crate::canary::shown_plan(config), op.cause);
                op.canary = Some(Box::new(config.clone()));
            }
        }
    }

    /// Say why a container or Swarm service whose image the plan builds changes: "its image is
    /// rebuilt" gains the build's own cause (`… (build context changed (app/main.py))`).
    pub fn explain_rebuilds(&mut self) {
        // (service, what replaces "its image is rebuilt")
        let builds: Vec<(String, String)> = self
            .ops
            .iter()
            .filter(|o| o.kind == Kind::Image)
            .filter_map(|o| {
                let service = o.service.clone()?;
                match o.verb {
                    Verb::Build | Verb::Rebuild if !o.cause.is_empty() => {
                        Some((service, format!("{REBUILT} ({})", o.cause)))
                    }
                    Verb::Pull => Some((service, format!("its image is pulled ({})", o.object))),
                    _ => None,
                }
            })
            .collect();
        for op in &mut self.ops {
            let Some(service) = op.service.as_deref() else {
                continue;
            };
            if !matches!(op.kind, Kind::Container | Kind::Service) {
                continue;
            }
            if let Some((_, why)) = builds.iter().find(|(s, _)| s == service) {
                op.cause = op.cause.replace(REBUILT, why);
            }
        }
    }

    /// The operation on a service's container or Swarm service.
    pub fn for_service(&self, service: &str) -> Option<&Op> {
        self.ops.iter().find(|o| {
            matches!(o.kind, Kind::Container | Kind::Service)
                && o.service.as_deref() == Some(service)
                && o.verb != Verb::Remove
        })
    }

    /// One line per operation that changes something, then the orphans reported;
    /// `nothing to change` when there is none.
    pub fn text(&self) -> String {
        let lines: Vec<String> = self
            .ops
            .iter()
            .filter(|o| o.verb != Verb::Keep)
            .map(Op::text)
            .collect();
        if lines.is_empty() {
            "nothing to change\n".to_string()
        } else {
            lines.iter().map(|l| format!("{l}\n")).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_read_as_sentences() {
        let op = Op::new(Verb::Recreate, Kind::Container, "iris-prometheus-1")
            .service("prometheus")
            .because("published port 9090 → 29999");
        assert_eq!(
            op.text(),
            "recreate prometheus: published port 9090 → 29999"
        );
        assert_eq!(op.done_text(), "recreated prometheus");
        let net = Op::new(Verb::Create, Kind::Network, "iris-network");
        assert_eq!(net.text(), "create network iris-network");
        let build = Op::new(Verb::Rebuild, Kind::Image, "iris-api:dev")
            .service("api")
            .because("build context changed (app/main.py)");
        assert_eq!(
            build.text(),
            "rebuild api: build context changed (app/main.py)"
        );
    }

    #[test]
    fn a_rebuild_says_why_the_image_is_rebuilt() {
        let mut p = Plan::default();
        p.push(
            Op::new(Verb::Rebuild, Kind::Image, "iris-api:dev")
                .service("api")
                .because("build context changed (app/main.py)"),
        );
        p.push(
            Op::new(Verb::Release, Kind::Container, "iris-api-1")
                .service("api")
                .because("its image is rebuilt, env changed"),
        );
        p.push(
            Op::new(Verb::Recreate, Kind::Container, "iris-prometheus-1")
                .service("prometheus")
                .because("published port 9090 → 9091"),
        );
        p.push(
            Op::new(Verb::Pull, Kind::Image, "grafana/grafana:12.0.0")
                .service("grafana")
                .because("not on this host"),
        );
        p.push(
            Op::new(Verb::Recreate, Kind::Container, "iris-grafana-1")
                .service("grafana")
                .because("its image is rebuilt"),
        );
        p.explain_rebuilds();
        assert_eq!(
            p.text(),
            "rebuild api: build context changed (app/main.py)\n\
             release api: its image is rebuilt (build context changed (app/main.py)), env changed\n\
             recreate prometheus: published port 9090 → 9091\n\
             pull image grafana/grafana:12.0.0: not on this host\n\
             recreate grafana: its image is pulled (grafana/grafana:12.0.0)\n"
        );
    }

    #[test]
    fn a_plan_of_keeps_is_nothing_to_change() {
        let mut p = Plan::default();
        p.push(Op::new(Verb::Keep, Kind::Container, "c").service("api"));
        assert!(p.is_noop());
        assert_eq!(p.text(), "nothing to change\n");
        p.push(Op::new(Verb::Report, Kind::Container, "w").because("no service `worker`"));
        assert!(p.is_noop(), "a reported orphan changes nothing");
        assert_eq!(p.text(), "orphan container w: no service `worker`\n");
    }
}
