//! The Dockerfile builds the way the README does and runs unprivileged. Static checks: no Docker
//! needed.

mod deploy_support;
use deploy_support::*;

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
