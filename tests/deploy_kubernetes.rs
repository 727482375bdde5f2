//! The Kubernetes manifests (`deploy/kubernetes/`) have the objects and settings many replicas
//! need, and the embedded configuration loads and matches the replica count. Static checks: no
//! cluster needed.

mod deploy_support;
use deploy_support::*;
use serde_yaml::Value;
use std::path::PathBuf;
use std::time::Duration;

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
    portico::snapshot::compile_str("configmap", text)
        .map(|plan| (*plan.config).clone())
        .unwrap_or_else(|e| panic!("{e}"))
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
fn kubernetes_configuration_loads_and_lets_membership_divide_limits() {
    let objects = kubernetes_objects();
    let config = configmap_config(&objects);
    let redis = config
        .redis
        .expect("the ConfigMap's portico.yaml has a redis section");
    assert_eq!(
        redis.replicas, None,
        "a fixed redis.replicas would stop the fallback share from following the autoscaler"
    );
    assert!(
        redis.gateway_ttl <= std::time::Duration::from_secs(30),
        "a dead pod should stop counting within the HPA's reaction time"
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
