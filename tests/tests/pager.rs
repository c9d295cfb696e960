//! The pager through SNS to an SQS subscriber, as on-call's tooling would receive it.

use autopilot_shared::pager::{Action, Page, Pager, Severity, MESSAGE_BUDGET, SUBJECT_LIMIT};
use autopilot_tests::*;

fn incident(summary: &str) -> Page {
    Page::new(
        Action::Trigger,
        Severity::Critical,
        "deploy.failed",
        "prod/backend",
        summary,
    )
    .dedup_key("autopilot/deploy/prod/backend/sha256:abc")
    .group("prod")
    .fact("Service", "prod/backend")
}

#[tokio::test]
async fn hostile_subjects_and_huge_pages_still_reach_on_call() {
    let stack = Stack::new("pager_limits").await;
    let pager = Pager::new(stack.sns.clone(), &stack.topic_arn, "autopilot-test");
    let summary = format!("Déploiement échoué 🚀\nsecond line\t{}", "x".repeat(400));
    let events: Vec<String> = (0..30_000)
        .map(|i| format!("event {i}: unable to place a task"))
        .collect();

    pager
        .send(&incident(&summary).list("Recent service events", events))
        .await
        .unwrap();

    let pages = stack.pages().await;
    assert_eq!(pages.len(), 1);
    let p = &pages[0];
    assert!(p.subject.chars().count() <= SUBJECT_LIMIT, "{}", p.subject);
    assert!(
        p.subject.chars().all(|c| c.is_ascii_graphic() || c == ' '),
        "{:?}",
        p.subject
    );
    assert!(
        p.subject.starts_with("[autopilot] D?ploiement"),
        "{}",
        p.subject
    );
    assert_eq!(p.severity, "critical");
    assert_eq!(p.body["payload"]["source"], "autopilot-test");
    let shown = p.detail("Recent service events").as_array().unwrap();
    assert!(
        shown.len() < 30_000
            && shown
                .last()
                .unwrap()
                .as_str()
                .unwrap()
                .contains("more not shown")
    );
    assert!(p.body.to_string().len() < MESSAGE_BUDGET);
}

#[tokio::test]
async fn a_resolve_carries_the_trigger_key() {
    let stack = Stack::new("pager_resolve").await;
    let pager = Pager::new(stack.sns.clone(), &stack.topic_arn, "autopilot-test");
    let trigger = incident("Deploy FAILED");
    let mut resolve = trigger.clone();
    resolve.action = Action::Resolve;
    resolve.severity = Severity::Info;

    pager.send(&trigger).await.unwrap();
    pager.send(&resolve).await.unwrap();

    let pages = stack.pages().await;
    assert_eq!(
        pages.iter().map(|p| p.action()).collect::<Vec<_>>(),
        vec!["trigger", "resolve"]
    );
    assert_eq!(pages[0].dedup_key(), pages[1].dedup_key());
}

#[tokio::test]
async fn fifo_topics_work_and_a_retried_publish_is_deduplicated() {
    let stack = Stack::with_topic("pager_fifo", true).await;
    let pager = Pager::new(stack.sns.clone(), &stack.topic_arn, "autopilot-test");
    let page = incident("Deploy FAILED on a FIFO topic");

    pager.send(&page).await.unwrap();
    pager.send(&page).await.unwrap();

    let pages = stack.pages().await;
    assert_eq!(
        pages.len(),
        1,
        "the same page within the dedup window arrives once: {pages:?}"
    );
    assert_eq!(pages[0].summary(), "Deploy FAILED on a FIFO topic");
}

#[tokio::test]
async fn a_failed_publish_is_an_error_naming_the_topic() {
    let stack = Stack::new("pager_fails").await;
    let pager = Pager::new(stack.sns.clone(), &stack.topic_arn, "autopilot-test");
    stack.fail_next("Publish", 1, "AuthorizationError");

    let err = pager.send(&incident("x")).await.unwrap_err();

    assert!(err.to_string().contains(&stack.topic_arn), "{err}");
    assert!(err.to_string().contains("AuthorizationError"), "{err}");
    assert!(stack.pages().await.is_empty());
}
