//! The deployment files stay consistent with each other and with Portico: the compose stack has
//! every service it documents, the Kubernetes manifests have the objects and settings many
//! replicas need, the embedded configurations load, and the Dockerfile builds the way the README
//! does. Static checks only: nothing here needs Docker or a cluster.

use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document of `text`, split on lines that are exactly `---`. Documents holding only
/// comments or whitespace are skipped.
fn yaml_documents(name: &str, text: &str) -> Vec<Value> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| {
        let doc: Value = serde_yaml::from_str(current)
            .unwrap_or_else(|e| panic!("{name}: invalid YAML document: {e}"));
        if !doc.is_null() {
            documents.push(doc);
        }
        current.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current);
    documents
}

/// The value at a dotted `path` ("spec.template.spec"), or `Value::Null` when any step is missing.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.')
        .fold(value, |v, key| v.get(key).unwrap_or(&NULL))
}

fn as_str<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {value:?}"))
}

fn as_u64(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: expected an unsigned integer, got {value:?}"))
}

fn as_seq<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value
        .as_sequence()
        .map(|s| s.as_slice())
        .unwrap_or_else(|| panic!("{what}: expected a list, got {value:?}"))
}

/// A string or a list of strings (compose `command`/`entrypoint`, a container `command`) as one
/// space-separated string.
fn words(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Sequence(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------------------------

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
fn compose_runs_the_whole_stack() {
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
    let config = portico::config::load_file(&repo_path(FILE)).unwrap_or_else(|e| panic!("{e}"));
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

// ---------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------

/// Every object of every deploy/kubernetes/*.yaml, with the file it came from.
fn kubernetes_objects() -> Vec<(String, Value)> {
    let dir = repo_path("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("readable manifest");
        for doc in yaml_documents(&name, &text) {
            assert!(
                doc.get("apiVersion").is_some() && doc.get("kind").is_some(),
                "{name}: every document needs apiVersion and kind"
            );
            objects.push((name.clone(), doc));
        }
    }
    objects
}

fn kind(object: &Value) -> &str {
    at(object, "kind").as_str().unwrap_or_default()
}

fn find_kind<'a>(objects: &'a [(String, Value)], wanted: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .map(|(_, o)| o)
        .filter(|o| kind(o) == wanted)
        .collect();
    let kinds: Vec<&str> = objects.iter().map(|(_, o)| kind(o)).collect();
    assert_eq!(
        found.len(),
        1,
        "deploy/kubernetes: expected exactly one {wanted}; the kinds are {kinds:?}"
    );
    found[0]
}

fn portico_container(deployment: &Value) -> &Value {
    let containers = as_seq(
        at(deployment, "spec.template.spec.containers"),
        "Deployment containers",
    );
    containers
        .iter()
        .find(|c| at(c, "name").as_str() == Some("portico"))
        .expect("Deployment: a container named portico")
}

/// The configuration embedded in the ConfigMap, loaded as Portico loads a file.
fn configmap_config(objects: &[(String, Value)]) -> portico::config::Config {
    let configmap = find_kind(objects, "ConfigMap");
    // The key contains a dot, so it is looked up directly rather than by path.
    let text = at(configmap, "data")
        .get("portico.yaml")
        .and_then(Value::as_str)
        .expect("ConfigMap: data.\"portico.yaml\" holds the configuration");
    portico::config::load_str("configmap", text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn kubernetes_has_every_object() {
    let objects = kubernetes_objects();
    for wanted in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ] {
        find_kind(&objects, wanted);
    }
}

#[test]
fn kubernetes_deployment_is_probed_hardened_and_drains() {
    let objects = kubernetes_objects();
    let deployment = find_kind(&objects, "Deployment");
    assert_eq!(as_u64(at(deployment, "spec.replicas"), "spec.replicas"), 3);
    let pod = at(deployment, "spec.template.spec");
    let container = portico_container(deployment);

    assert_eq!(
        at(container, "readinessProbe.httpGet.path").as_str(),
        Some("/readyz"),
        "readinessProbe"
    );
    assert_eq!(
        at(container, "livenessProbe.httpGet.path").as_str(),
        Some("/healthz"),
        "livenessProbe"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            at(container, &format!("{probe}.httpGet.port")).as_u64(),
            Some(9901),
            "{probe} goes to the admin listener"
        );
    }
    assert!(
        !at(container, "lifecycle.preStop").is_null(),
        "a preStop hook lets the endpoints drain before SIGTERM"
    );

    let pod_non_root = at(pod, "securityContext.runAsNonRoot").as_bool();
    let container_non_root = at(container, "securityContext.runAsNonRoot").as_bool();
    assert_eq!(
        container_non_root.or(pod_non_root),
        Some(true),
        "runAsNonRoot (container or pod securityContext)"
    );
    assert_eq!(
        at(container, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true),
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        words(at(container, "securityContext.capabilities.drop")),
        "ALL",
        "capabilities drop ALL"
    );
    assert!(
        !at(pod, "topologySpreadConstraints").is_null(),
        "replicas are spread"
    );
    assert!(
        !at(container, "resources.requests.cpu").is_null(),
        "a CPU request (the HPA measures against it)"
    );

    // SIGTERM comes after the preStop sleep; Portico then needs grace_period + shutdown_timeout.
    let config = configmap_config(&objects);
    let needed = config.server.grace_period + config.server.shutdown_timeout;
    let grace = Duration::from_secs(as_u64(
        at(pod, "terminationGracePeriodSeconds"),
        "terminationGracePeriodSeconds",
    ));
    assert!(
        grace > needed + Duration::from_secs(5),
        "terminationGracePeriodSeconds ({grace:?}) must exceed preStop (5s) + grace_period + shutdown_timeout ({needed:?})"
    );
}

#[test]
fn kubernetes_deployment_reads_config_and_secret() {
    let objects = kubernetes_objects();
    let deployment = find_kind(&objects, "Deployment");
    let container = portico_container(deployment);
    let secret = find_kind(&objects, "Secret");
    let secret_name = as_str(at(secret, "metadata.name"), "Secret name");
    for key in ["REDIS_URL", "PORTICO_ADMIN_TOKEN"] {
        assert!(
            !at(secret, &format!("stringData.{key}")).is_null(),
            "the Secret should hold {key}"
        );
    }
    let from_secret = at(container, "envFrom")
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|e| at(e, "secretRef.name").as_str() == Some(secret_name));
    assert!(
        from_secret,
        "the container takes its environment from the Secret {secret_name}"
    );

    let configmap = find_kind(&objects, "ConfigMap");
    let configmap_name = as_str(at(configmap, "metadata.name"), "ConfigMap name");
    let volumes = as_seq(at(deployment, "spec.template.spec.volumes"), "volumes");
    let config_volume = volumes
        .iter()
        .find(|v| at(v, "configMap.name").as_str() == Some(configmap_name))
        .unwrap_or_else(|| panic!("a volume from the ConfigMap {configmap_name}"));
    let volume_name = as_str(at(config_volume, "name"), "volume name");
    let mounted = as_seq(at(container, "volumeMounts"), "volumeMounts")
        .iter()
        .any(|m| {
            at(m, "name").as_str() == Some(volume_name)
                && at(m, "mountPath").as_str() == Some("/etc/portico")
        });
    assert!(mounted, "the ConfigMap is mounted at /etc/portico");
    assert!(
        words(at(container, "args")).contains("/etc/portico/portico.yaml"),
        "the container runs /etc/portico/portico.yaml"
    );
}

#[test]
fn kubernetes_configuration_loads_and_matches_the_replica_count() {
    let objects = kubernetes_objects();
    let config = configmap_config(&objects);
    let redis = config
        .redis
        .expect("the ConfigMap's portico.yaml has a redis section");
    let deployment = find_kind(&objects, "Deployment");
    let replicas = as_u64(at(deployment, "spec.replicas"), "spec.replicas");
    assert_eq!(
        u64::from(redis.replicas),
        replicas,
        "redis.replicas must match the Deployment's replicas (the local fallback share)"
    );
    assert_eq!(config.server.listen, ["0.0.0.0:8080"]);
    assert_eq!(config.server.admin.listen, "0.0.0.0:9901");
}

#[test]
fn kubernetes_service_autoscaler_and_budget() {
    let objects = kubernetes_objects();
    let deployment = find_kind(&objects, "Deployment");
    let labels = at(deployment, "spec.template.metadata.labels");
    let selects_pods = |selector: &Value, what: &str| {
        let selector = selector
            .as_mapping()
            .unwrap_or_else(|| panic!("{what}: a label selector"));
        assert!(
            selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "{what} selects the Deployment's pods"
        );
    };

    let service = find_kind(&objects, "Service");
    selects_pods(at(service, "spec.selector"), "Service");
    let ports = as_seq(at(service, "spec.ports"), "Service ports");
    let maps = |port: u64, target: u64| {
        ports.iter().any(|p| {
            at(p, "port").as_u64() == Some(port) && at(p, "targetPort").as_u64() == Some(target)
        })
    };
    assert!(maps(80, 8080), "Service port 80 -> 8080");
    assert!(maps(9901, 9901), "Service port 9901 -> 9901");
    // Annotation keys contain dots, so they are looked up directly rather than by path.
    let annotations = at(service, "metadata.annotations");
    assert_eq!(
        annotations
            .get("prometheus.io/scrape")
            .and_then(Value::as_str),
        Some("true"),
        "Service prometheus.io/scrape"
    );
    assert_eq!(
        annotations
            .get("prometheus.io/port")
            .and_then(Value::as_str),
        Some("9901"),
        "Service prometheus.io/port"
    );

    let hpa = find_kind(&objects, "HorizontalPodAutoscaler");
    assert_eq!(at(hpa, "apiVersion").as_str(), Some("autoscaling/v2"));
    assert_eq!(
        at(hpa, "spec.scaleTargetRef.kind").as_str(),
        Some("Deployment")
    );
    assert_eq!(
        at(hpa, "spec.scaleTargetRef.name"),
        at(deployment, "metadata.name"),
        "the HPA scales the Deployment"
    );
    assert_eq!(as_u64(at(hpa, "spec.minReplicas"), "minReplicas"), 3);
    assert_eq!(as_u64(at(hpa, "spec.maxReplicas"), "maxReplicas"), 10);
    let cpu_target = as_seq(at(hpa, "spec.metrics"), "HPA metrics")
        .iter()
        .find(|m| at(m, "resource.name").as_str() == Some("cpu"))
        .map(|m| at(m, "resource.target.averageUtilization").as_u64());
    assert_eq!(cpu_target, Some(Some(70)), "HPA CPU target 70%");

    let pdb = find_kind(&objects, "PodDisruptionBudget");
    assert_eq!(at(pdb, "apiVersion").as_str(), Some("policy/v1"));
    assert_eq!(as_u64(at(pdb, "spec.minAvailable"), "minAvailable"), 2);
    selects_pods(at(pdb, "spec.selector.matchLabels"), "PodDisruptionBudget");
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------

/// Dockerfile instructions with continuation lines joined and comments dropped.
fn dockerfile_instructions() -> Vec<String> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

fn instructions_named<'a>(instructions: &'a [String], keyword: &str) -> Vec<&'a str> {
    instructions
        .iter()
        .filter_map(|i| {
            let (head, rest) = i.split_once(char::is_whitespace)?;
            head.eq_ignore_ascii_case(keyword).then_some(rest.trim())
        })
        .collect()
}

#[test]
fn dockerfile_builds_like_the_readme_and_runs_unprivileged() {
    let instructions = dockerfile_instructions();

    let from = instructions_named(&instructions, "FROM");
    assert!(from.len() >= 2, "a multi-stage build, got FROM {from:?}");

    let run = instructions_named(&instructions, "RUN").join("\n");
    assert!(
        run.contains("cargo build --release --locked"),
        "the image is built with `cargo build --release --locked`"
    );

    let users = instructions_named(&instructions, "USER");
    let user = users.last().expect("a USER instruction");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: a numeric uid (runAsNonRoot needs one)"));
    assert_ne!(uid, 0, "the runtime user is not root");

    let exposed: Vec<&str> = instructions_named(&instructions, "EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .collect();
    for port in ["8080", "9901"] {
        assert!(exposed.contains(&port), "EXPOSE {port}, got {exposed:?}");
    }

    let healthcheck = instructions_named(&instructions, "HEALTHCHECK");
    assert!(
        healthcheck.iter().any(|h| h.contains("/healthz")),
        "a HEALTHCHECK against /healthz"
    );
    assert_eq!(
        instructions_named(&instructions, "ENTRYPOINT"),
        [r#"["portico"]"#]
    );
    assert!(
        instructions_named(&instructions, "CMD")
            .iter()
            .any(|c| c.contains("/etc/portico/portico.yaml")),
        "CMD runs /etc/portico/portico.yaml"
    );
}
