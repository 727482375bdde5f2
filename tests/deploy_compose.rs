//! The compose stack (`deploy/docker-compose.yml`) has every service it documents, mounts what
//! the monitoring needs, and its gateway configuration loads. Static checks: no Docker needed.

mod deploy_support;
use deploy_support::*;
use serde_yaml::Value;

const COMPOSE: &str = "deploy/docker-compose.yml";

fn compose() -> Value {
    let docs = yaml_documents(COMPOSE, &read(COMPOSE));
    assert_eq!(docs.len(), 1, "{COMPOSE}: expected one YAML document");
    docs.into_iter().next().unwrap()
}

fn compose_service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = at(compose, "services").get(name);
    service.unwrap_or_else(|| panic!("{COMPOSE}: no service {name:?}"))
}

/// `(source, target)` of every volume of a compose service, short (`src:dst[:mode]`) or long
/// (`{source, target}`) syntax.
fn compose_mounts(service: &Value, name: &str) -> Vec<(String, String)> {
    let volumes = service.get("volumes").cloned().unwrap_or(Value::Null);
    if volumes.is_null() {
        return Vec::new();
    }
    as_seq(&volumes, &format!("{COMPOSE}: services.{name}.volumes"))
        .iter()
        .map(|v| match v {
            Value::String(s) => {
                let mut parts = s.splitn(3, ':');
                let source = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or_default().to_string();
                (source, target)
            }
            other => (
                at(other, "source").as_str().unwrap_or_default().to_string(),
                at(other, "target").as_str().unwrap_or_default().to_string(),
            ),
        })
        .collect()
}

fn assert_mount(compose: &Value, service: &str, source_suffix: &str, target: &str) {
    let mounts = compose_mounts(compose_service(compose, service), service);
    assert!(
        mounts
            .iter()
            .any(|(s, t)| s.trim_end_matches('/').ends_with(source_suffix) && t == target),
        "{COMPOSE}: service {service} should mount …{source_suffix} at {target}; it mounts {mounts:?}"
    );
}

#[test]
/// No Docker engine runs here (or in CI): this checks what the file declares, not a running stack.
fn compose_declares_the_whole_stack() {
    let compose = compose();
    for name in ["portico", "redis", "prometheus", "grafana", "jaeger"] {
        compose_service(&compose, name);
    }
    let portico = compose_service(&compose, "portico");
    assert_eq!(
        as_str(
            at(portico, "build.context"),
            "services.portico.build.context"
        ),
        "..",
        "{COMPOSE}: portico is built from the repository root"
    );
    let ports = words(at(portico, "ports"));
    for port in ["8080:8080", "9901:9901"] {
        assert!(
            ports.contains(port),
            "{COMPOSE}: portico should publish {port}"
        );
    }
    assert_mount(
        &compose,
        "portico",
        "portico/portico.yaml",
        "/etc/portico/portico.yaml",
    );
    assert!(
        at(portico, "depends_on").get("redis").is_some(),
        "{COMPOSE}: portico should depend on redis"
    );
}

#[test]
fn compose_demo_services_register_themselves() {
    let compose = compose();
    let services = at(&compose, "services")
        .as_mapping()
        .expect("services is a map");
    let registering: Vec<&str> = services
        .iter()
        .filter_map(|(name, service)| {
            let name = name.as_str()?;
            let run = format!(
                "{} {}",
                words(at(service, "entrypoint")),
                words(at(service, "command"))
            );
            (name.starts_with("demo") && run.contains("portico register")).then_some(name)
        })
        .collect();
    assert!(
        registering.len() >= 2,
        "{COMPOSE}: expected two demo services running `portico register`, found {registering:?}"
    );
    for name in registering {
        let service = compose_service(&compose, name);
        assert_eq!(
            at(service, "environment.REGISTER_SERVICE").as_str(),
            Some("social"),
            "{COMPOSE}: {name} should register in the `social` service"
        );
    }
}

#[test]
fn compose_monitoring_gets_the_rules_and_dashboards() {
    let compose = compose();
    assert_mount(
        &compose,
        "prometheus",
        "prometheus/prometheus.yml",
        "/etc/prometheus/prometheus.yml",
    );
    assert_mount(
        &compose,
        "prometheus",
        "../alerts",
        "/etc/prometheus/alerts",
    );
    assert_mount(
        &compose,
        "grafana",
        "grafana/provisioning",
        "/etc/grafana/provisioning",
    );
    assert_mount(
        &compose,
        "grafana",
        "../dashboards",
        "/var/lib/grafana/dashboards",
    );
    let prometheus_yml = read("deploy/prometheus/prometheus.yml");
    assert!(
        prometheus_yml.contains("/etc/prometheus/alerts/"),
        "deploy/prometheus/prometheus.yml should load its rules from the mounted alerts directory"
    );
}

#[test]
fn compose_gateway_configuration_loads() {
    const FILE: &str = "deploy/portico/portico.yaml";
    let config = portico::snapshot::compile_file(&repo_path(FILE))
        .map(|plan| plan.config)
        .unwrap_or_else(|e| panic!("{e}"));
    // Listeners and endpoints are ${VAR:-default}s: check the defaults in the text, so a variable
    // set in the test's environment cannot make this fail.
    let text = read(FILE);
    for default in [
        "0.0.0.0:8080",
        "0.0.0.0:9901",
        "redis://redis:6379/0",
        "http://jaeger:4318/v1/traces",
    ] {
        assert!(
            text.contains(default),
            "{FILE}: expected the default {default}"
        );
    }
    let social = config
        .services
        .get("social")
        .unwrap_or_else(|| panic!("{FILE}: a `social` service"));
    assert_eq!(
        social.discovery,
        portico::config::Discovery::Redis,
        "{FILE}: `social` is discovered in Redis"
    );
    assert!(config.redis.is_some(), "{FILE}: a redis section");
    assert!(config.tracing.is_some(), "{FILE}: a tracing section");
    assert!(config.access_log.enabled, "{FILE}: the access log is on");
}
