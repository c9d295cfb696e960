//! The harness for snapshot, through the real SDK: each RDS bridge of
//! `harness/moto_bridge.py` behaves as AWS does, in the source and the DR Region,
//! so the function's tests can rely on it.

use autopilot_tests::snapshots::*;
use autopilot_tests::Stack;
use aws_sdk_rds::types::Tag;
use std::collections::BTreeMap;

/// 2025-11-20T03:10:00Z.
const NOV_20: i64 = 1_763_608_200;

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_cross_region_copy_of_an_encrypted_snapshot_needs_a_key_of_the_dr_region() {
    let stack = Stack::new("snap-copy").await;
    let db = stack.name("orders-db");
    create_instance(SOURCE, &db, true).await;
    let source_id = stack.name("manual-1");
    let source_arn = manual_snapshot(
        SOURCE,
        Db::Instance(&db),
        &source_id,
        &[("team", "orders"), ("env", "prod")],
    )
    .await;
    let dr = rds(DR).await;
    let target = format!("autopilot-dr-{source_id}");

    // No SourceRegion, no PreSignedUrl, no KmsKeyId: AWS refuses an encrypted copy.
    let refused = dr
        .copy_db_snapshot()
        .source_db_snapshot_identifier(&source_arn)
        .target_db_snapshot_identifier(&target)
        .copy_tags(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), "InvalidParameterValue");
    assert!(refused
        .as_service_error()
        .and_then(|e| aws_sdk_rds::error::ProvideErrorMetadata::message(e))
        .unwrap_or_default()
        .contains("Must specify new KMS key"));
    // A key of the source Region is not usable in the DR Region.
    let source_key = kms_key(SOURCE);
    let refused = dr
        .copy_db_snapshot()
        .source_db_snapshot_identifier(&source_arn)
        .target_db_snapshot_identifier(&target)
        .kms_key_id(&source_key)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), "KMSKeyNotAccessibleFault");

    let key = kms_key(DR);
    let copy = dr
        .copy_db_snapshot()
        .source_db_snapshot_identifier(&source_arn)
        .target_db_snapshot_identifier(&target)
        .kms_key_id(&key)
        .copy_tags(true)
        .tags(tag("autopilot:reason", "dr-copy"))
        .send()
        .await
        .expect("copy with a DR key")
        .db_snapshot
        .unwrap();
    assert_eq!(copy.db_instance_identifier(), Some(db.as_str()));
    assert_eq!(copy.snapshot_type(), Some("manual"));
    assert_eq!(copy.encrypted(), Some(true));
    assert_eq!(copy.kms_key_id(), Some(key.as_str()));
    assert_eq!(copy.source_region(), Some(SOURCE));
    assert_eq!(
        copy.source_db_snapshot_identifier(),
        Some(source_arn.as_str())
    );
    assert_eq!(copy.status(), Some("available"));
    assert_eq!(copy.percent_progress(), Some(100));
    assert!(copy
        .db_snapshot_arn()
        .unwrap()
        .starts_with("arn:aws:rds:us-west-2:"));
    // Tags given win: AWS does not merge the source's in.
    assert_eq!(
        tags_of(copy.tag_list()),
        tags(&[("autopilot:reason", "dr-copy")])
    );

    // The same target again: DBSnapshotAlreadyExists.
    let again = dr
        .copy_db_snapshot()
        .source_db_snapshot_identifier(&source_arn)
        .target_db_snapshot_identifier(&target)
        .kms_key_id(&key)
        .send()
        .await
        .unwrap_err();
    assert!(again
        .as_service_error()
        .is_some_and(|e| e.is_db_snapshot_already_exists_fault()));

    // CopyTags without Tags: the source snapshot's tags.
    let plain = copy_snapshot(
        DR,
        false,
        &source_arn,
        &stack.name("plain-copy"),
        Some(&key),
    )
    .await;
    let listed = dr
        .list_tags_for_resource()
        .resource_name(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(listed.tag_list()),
        tags(&[("team", "orders"), ("env", "prod")])
    );

    // Identifiers AWS refuses.
    let too_long = "a".repeat(256);
    for bad in [
        "1starts-with-a-digit",
        "ends-with-",
        "two--hyphens",
        "under_score",
        too_long.as_str(),
    ] {
        let refused = dr
            .copy_db_snapshot()
            .source_db_snapshot_identifier(&source_arn)
            .target_db_snapshot_identifier(bad)
            .kms_key_id(&key)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&refused), "InvalidParameterValue", "{bad}");
        let refused = rds(SOURCE)
            .await
            .create_db_snapshot()
            .db_instance_identifier(&db)
            .db_snapshot_identifier(bad)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&refused), "InvalidParameterValue", "{bad}");
    }

    // A missing snapshot.
    let missing = dr
        .describe_db_snapshots()
        .db_snapshot_identifier(stack.name("nope"))
        .send()
        .await
        .unwrap_err();
    assert!(missing
        .as_service_error()
        .is_some_and(|e| e.is_db_snapshot_not_found_fault()));
}

fn tags_of(list: &[Tag]) -> BTreeMap<String, String> {
    list.iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn cluster_snapshots_copy_across_regions_as_aws_allows() {
    let stack = Stack::new("snap-cluster").await;
    let cluster = stack.name("orders-aurora");
    create_cluster(SOURCE, &cluster, true).await;
    let auto_id = format!("rds:{cluster}-2025-11-20-03-10");
    let auto_arn = automated_snapshot(SOURCE, Db::Cluster(&cluster), &auto_id, NOV_20);
    assert_eq!(
        auto_arn,
        format!("arn:aws:rds:us-east-1:123456789012:cluster-snapshot:{auto_id}")
    );
    let dr = rds(DR).await;
    let target = format!("autopilot-dr-rds-{cluster}-2025-11-20-03-10");
    let refused = dr
        .copy_db_cluster_snapshot()
        .source_db_cluster_snapshot_identifier(&auto_arn)
        .target_db_cluster_snapshot_identifier(&target)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), "InvalidParameterValue");
    let refused = dr
        .copy_db_cluster_snapshot()
        .source_db_cluster_snapshot_identifier(&auto_arn)
        .target_db_cluster_snapshot_identifier("two--hyphens")
        .kms_key_id(kms_key(DR))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), "InvalidParameterValue");

    let key = kms_key(DR);
    let copy = dr
        .copy_db_cluster_snapshot()
        .source_db_cluster_snapshot_identifier(&auto_arn)
        .target_db_cluster_snapshot_identifier(&target)
        .kms_key_id(&key)
        .copy_tags(true)
        .tags(tag("autopilot:reason", "dr-copy"))
        .send()
        .await
        .expect("copy an automated cluster snapshot by ARN")
        .db_cluster_snapshot
        .unwrap();
    assert_eq!(copy.db_cluster_identifier(), Some(cluster.as_str()));
    assert_eq!(copy.snapshot_type(), Some("manual"), "a copy is manual");
    assert_eq!(copy.kms_key_id(), Some(key.as_str()));
    assert_eq!(
        copy.source_db_cluster_snapshot_arn(),
        Some(auto_arn.as_str())
    );

    let in_dr = snapshots(DR, Db::Cluster(&cluster)).await;
    assert_eq!(in_dr.len(), 1);
    assert_eq!(in_dr[0].id, target);
    assert_eq!(in_dr[0].tags, tags(&[("autopilot:reason", "dr-copy")]));
    let refused = dr
        .copy_db_cluster_snapshot()
        .source_db_cluster_snapshot_identifier(&auto_arn)
        .target_db_cluster_snapshot_identifier(&target)
        .kms_key_id(&key)
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .is_some_and(|e| e.is_db_cluster_snapshot_already_exists_fault()));

    // Automated snapshots are AWS's to delete.
    let refused = rds(SOURCE)
        .await
        .delete_db_cluster_snapshot()
        .db_cluster_snapshot_identifier(&auto_id)
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .is_some_and(|e| e.is_invalid_db_cluster_snapshot_state_fault()));
    // The source has the automated snapshot moto takes at creation and ours.
    let source = snapshots(SOURCE, Db::Cluster(&cluster)).await;
    assert!(source.iter().all(|s| s.kind == "automated"));
    assert!(source.iter().any(|s| s.id == auto_id));
}

#[tokio::test]
async fn automated_snapshots_list_with_manual_ones_and_cannot_be_deleted() {
    let stack = Stack::new("snap-auto").await;
    let db = stack.name("orders-db");
    create_instance(SOURCE, &db, false).await;
    let auto_id = format!("rds:{db}-2025-11-20-03-10");
    let auto_arn = automated_snapshot(SOURCE, Db::Instance(&db), &auto_id, NOV_20);
    manual_snapshot(SOURCE, Db::Instance(&db), &stack.name("manual"), &[]).await;

    let all = snapshots(SOURCE, Db::Instance(&db)).await;
    let mut kinds: Vec<_> = all.iter().map(|s| (s.id.clone(), s.kind.clone())).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            (auto_id.clone(), "automated".to_string()),
            (stack.name("manual"), "manual".to_string()),
        ]
    );
    let automated = all.iter().find(|s| s.id == auto_id).unwrap();
    assert_eq!(automated.created, NOV_20);
    assert_eq!(automated.arn, auto_arn);

    let source = rds(SOURCE).await;
    let only_automated = source
        .describe_db_snapshots()
        .db_instance_identifier(&db)
        .snapshot_type("automated")
        .send()
        .await
        .unwrap();
    assert_eq!(only_automated.db_snapshots().len(), 1);

    let refused = source
        .delete_db_snapshot()
        .db_snapshot_identifier(&auto_id)
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .is_some_and(|e| e.is_invalid_db_snapshot_state_fault()));

    // A copy of an automated snapshot, by ARN, is a manual snapshot.
    let copy = copy_snapshot(
        DR,
        false,
        &auto_arn,
        &format!("autopilot-dr-rds-{db}"),
        None,
    )
    .await;
    let copied = snapshots(DR, Db::Instance(&db)).await;
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0].arn, copy);
    assert_eq!(copied[0].kind, "manual");
    assert!(!copied[0].encrypted);

    // Old snapshots for retention.
    set_snapshot_time(SOURCE, &stack.name("manual"), false, NOV_20 - 86_400 * 30);
    let aged = snapshot(SOURCE, Db::Instance(&db), &stack.name("manual"))
        .await
        .unwrap();
    assert_eq!(aged.created, NOV_20 - 86_400 * 30);
}

#[tokio::test]
async fn describe_db_snapshots_pages_as_aws_does() {
    let stack = Stack::new("snap-pages").await;
    let db = stack.name("orders-db");
    create_instance(SOURCE, &db, false).await;
    for i in 0..25 {
        manual_snapshot(
            SOURCE,
            Db::Instance(&db),
            &stack.name(&format!("s{i}")),
            &[],
        )
        .await;
    }
    let source = rds(SOURCE).await;
    let first = source
        .describe_db_snapshots()
        .db_instance_identifier(&db)
        .max_records(20)
        .send()
        .await
        .unwrap();
    assert_eq!(first.db_snapshots().len(), 20);
    let marker = first.marker().expect("a marker for the rest").to_string();
    let second = source
        .describe_db_snapshots()
        .db_instance_identifier(&db)
        .max_records(20)
        .marker(marker)
        .send()
        .await
        .unwrap();
    assert_eq!(second.db_snapshots().len(), 5);
    assert_eq!(second.marker(), None);
    assert_eq!(snapshots(SOURCE, Db::Instance(&db)).await.len(), 25);
    for bad in [5, 101] {
        let refused = source
            .describe_db_snapshots()
            .db_instance_identifier(&db)
            .max_records(bad)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&refused), "InvalidParameterValue", "{bad}");
    }
}

#[tokio::test]
async fn held_copies_and_snapshots_stay_in_flight_until_finished() {
    let stack = Stack::new("snap-hold").await;
    let db = stack.name("orders-db");
    create_instance(SOURCE, &db, true).await;
    hold_copies(&stack.prefix, true);
    let source_id = stack.name("manual");
    let source_arn = manual_snapshot(SOURCE, Db::Instance(&db), &source_id, &[]).await;
    let creating = snapshot(SOURCE, Db::Instance(&db), &source_id)
        .await
        .unwrap();
    assert_eq!(creating.status, "creating");
    // A snapshot still being created can be neither copied nor deleted.
    let key = kms_key(DR);
    let dr = rds(DR).await;
    let target = format!("autopilot-dr-{source_id}");
    let refused = dr
        .copy_db_snapshot()
        .source_db_snapshot_identifier(&source_arn)
        .target_db_snapshot_identifier(&target)
        .kms_key_id(&key)
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .is_some_and(|e| e.is_invalid_db_snapshot_state_fault()));
    finish_snapshot(SOURCE, &source_id, false, "available");

    copy_snapshot(DR, false, &source_arn, &target, Some(&key)).await;
    let copying = snapshot(DR, Db::Instance(&db), &target).await.unwrap();
    assert_eq!(
        copying.status, "creating",
        "as AWS shows a DB snapshot copy"
    );
    let progress = dr
        .describe_db_snapshots()
        .db_snapshot_identifier(&target)
        .send()
        .await
        .unwrap();
    assert_eq!(progress.db_snapshots()[0].percent_progress(), Some(0));
    let refused = dr
        .restore_db_instance_from_db_snapshot()
        .db_instance_identifier(stack.name("drill"))
        .db_snapshot_identifier(&target)
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .is_some_and(|e| e.is_invalid_db_snapshot_state_fault()));
    finish_snapshot(DR, &target, false, "available");
    assert_eq!(
        snapshot(DR, Db::Instance(&db), &target)
            .await
            .unwrap()
            .status,
        "available"
    );

    // A cluster snapshot copy in flight is `copying`.
    let cluster = stack.name("orders-aurora");
    create_cluster(SOURCE, &cluster, false).await;
    let cluster_snapshot = stack.name("cluster-manual");
    let cluster_arn = manual_snapshot(SOURCE, Db::Cluster(&cluster), &cluster_snapshot, &[]).await;
    finish_snapshot(SOURCE, &cluster_snapshot, true, "available");
    let cluster_copy = format!("autopilot-dr-{cluster_snapshot}");
    copy_snapshot(DR, true, &cluster_arn, &cluster_copy, None).await;
    let in_flight = snapshot(DR, Db::Cluster(&cluster), &cluster_copy)
        .await
        .unwrap();
    assert_eq!(
        (in_flight.status.as_str(), in_flight.kind.as_str()),
        ("copying", "manual")
    );
    finish_snapshot(DR, &cluster_copy, true, "available");

    // A failed copy; a copy in flight can be deleted (it cancels the copy).
    let failing = stack.name("failing-copy");
    copy_snapshot(DR, false, &source_arn, &failing, Some(&key)).await;
    finish_snapshot(DR, &failing, false, "failed");
    assert_eq!(
        snapshot(DR, Db::Instance(&db), &failing)
            .await
            .unwrap()
            .status,
        "failed"
    );
    let cancelled = stack.name("cancelled-copy");
    hold_copies_as(&stack.prefix, "pending");
    copy_snapshot(DR, false, &source_arn, &cancelled, Some(&key)).await;
    assert_eq!(
        snapshot(DR, Db::Instance(&db), &cancelled)
            .await
            .unwrap()
            .status,
        "pending"
    );
    dr.delete_db_snapshot()
        .db_snapshot_identifier(&cancelled)
        .send()
        .await
        .expect("delete a copy in flight");
    // A snapshot being created cannot be deleted.
    let young = stack.name("young");
    manual_snapshot(SOURCE, Db::Instance(&db), &young, &[]).await;
    let refused = rds(SOURCE)
        .await
        .delete_db_snapshot()
        .db_snapshot_identifier(&young)
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .is_some_and(|e| e.is_invalid_db_snapshot_state_fault()));

    // Without the hold, snapshots are available at once.
    hold_copies(&stack.prefix, false);
    let later = stack.name("later");
    manual_snapshot(SOURCE, Db::Instance(&db), &later, &[]).await;
    assert_eq!(
        snapshot(SOURCE, Db::Instance(&db), &later)
            .await
            .unwrap()
            .status,
        "available"
    );
}

#[tokio::test]
async fn the_manual_snapshot_quota_is_reported_and_enforced_per_region() {
    let stack = Stack::new("snap-quota").await;
    let db = stack.name("orders-db");
    create_instance(QUOTA_SOURCE, &db, false).await;
    let (used, max) = quota(QUOTA_SOURCE, "ManualSnapshots").await;
    assert_eq!(max, 100, "AWS's default");
    manual_snapshot(QUOTA_SOURCE, Db::Instance(&db), &stack.name("one"), &[]).await;
    assert_eq!(
        quota(QUOTA_SOURCE, "ManualSnapshots").await,
        (used + 1, 100)
    );
    let (cluster_used, cluster_max) = quota(QUOTA_SOURCE, "ManualClusterSnapshots").await;
    assert_eq!((cluster_used, cluster_max), (0, 100));

    set_quota(QUOTA_SOURCE, "ManualSnapshots", Some(used + 2));
    let two = manual_snapshot(QUOTA_SOURCE, Db::Instance(&db), &stack.name("two"), &[]).await;
    let refused = rds(QUOTA_SOURCE)
        .await
        .create_db_snapshot()
        .db_instance_identifier(&db)
        .db_snapshot_identifier(stack.name("three"))
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .is_some_and(|e| e.is_snapshot_quota_exceeded_fault()));
    assert_eq!(
        quota(QUOTA_SOURCE, "ManualSnapshots").await,
        (used + 2, used + 2)
    );
    set_quota(QUOTA_SOURCE, "ManualSnapshots", None);

    // Copies count in, and are refused at, the destination Region's quota.
    let (dr_used, _) = quota(QUOTA_DR, "ManualSnapshots").await;
    set_quota(QUOTA_DR, "ManualSnapshots", Some(dr_used));
    let refused = rds(QUOTA_DR)
        .await
        .copy_db_snapshot()
        .source_db_snapshot_identifier(&two)
        .target_db_snapshot_identifier(stack.name("copy"))
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .is_some_and(|e| e.is_snapshot_quota_exceeded_fault()));
    set_quota(QUOTA_DR, "ManualSnapshots", None);
    copy_snapshot(QUOTA_DR, false, &two, &stack.name("copy"), None).await;
    assert_eq!(quota(QUOTA_DR, "ManualSnapshots").await.0, dr_used + 1);

    // At most so many cross-Region copies in flight to one Region (20 on AWS).
    set_copy_limit(QUOTA_DR, Some(2));
    hold_copies(&stack.prefix, true);
    copy_snapshot(QUOTA_DR, false, &two, &stack.name("flight-1"), None).await;
    copy_snapshot(QUOTA_DR, false, &two, &stack.name("flight-2"), None).await;
    let refused = rds(QUOTA_DR)
        .await
        .copy_db_snapshot()
        .source_db_snapshot_identifier(&two)
        .target_db_snapshot_identifier(stack.name("flight-3"))
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .is_some_and(|e| e.is_snapshot_quota_exceeded_fault()));
    finish_snapshot(QUOTA_DR, &stack.name("flight-1"), false, "available");
    copy_snapshot(QUOTA_DR, false, &two, &stack.name("flight-3"), None).await;
    hold_copies(&stack.prefix, false);
    set_copy_limit(QUOTA_DR, None);
}

#[tokio::test]
async fn a_restore_drill_instance_restores_points_at_postgres_and_is_deleted() {
    let stack = Stack::new("snap-drill").await;
    let db = stack.name("orders-db");
    create_instance(SOURCE, &db, true).await;
    let source_arn = manual_snapshot(SOURCE, Db::Instance(&db), &stack.name("manual"), &[]).await;
    let key = kms_key(DR);
    let copy_id = format!("autopilot-dr-{}", stack.name("manual"));
    copy_snapshot(DR, false, &source_arn, &copy_id, Some(&key)).await;

    let drill = format!("autopilot-drill-{db}");
    hold_instances(&drill, true);
    let dr = rds(DR).await;
    let restored = dr
        .restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&drill)
        .db_snapshot_identifier(&copy_id)
        .db_instance_class("db.t4g.micro")
        .publicly_accessible(false)
        .multi_az(false)
        .deletion_protection(false)
        .tags(tag("autopilot:reason", "restore-drill"))
        .send()
        .await
        .expect("restore")
        .db_instance
        .unwrap();
    assert_eq!(restored.db_instance_status(), Some("creating"));
    assert_eq!(restored.publicly_accessible(), Some(false));
    assert_eq!(restored.multi_az(), Some(false));
    assert_eq!(restored.db_instance_class(), Some("db.t4g.micro"));
    assert_eq!(restored.availability_zone(), Some("us-west-2a"));
    assert_eq!(restored.storage_encrypted(), Some(true));
    assert_eq!(restored.kms_key_id(), Some(key.as_str()));
    assert_eq!(restored.master_username(), Some(MASTER_USER));
    assert_eq!(
        tags_of(restored.tag_list()),
        tags(&[("autopilot:reason", "restore-drill")])
    );
    let again = dr
        .restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&drill)
        .db_snapshot_identifier(&copy_id)
        .send()
        .await
        .unwrap_err();
    assert!(again
        .as_service_error()
        .is_some_and(|e| e.is_db_instance_already_exists_fault()));

    finish_instance(DR, &drill, "available");
    assert_eq!(
        instance_status(DR, &drill).await.as_deref(),
        Some("available")
    );
    let pg = autopilot_tests::postgres::postgres();
    point_at(DR, &drill, pg.port);
    let described = dr
        .describe_db_instances()
        .db_instance_identifier(&drill)
        .send()
        .await
        .unwrap();
    let instance = &described.db_instances()[0];
    let endpoint = instance.endpoint().unwrap();
    assert_eq!(endpoint.address(), Some("127.0.0.1"));
    assert_eq!(endpoint.port(), Some(i32::from(pg.port)));
    assert_eq!(
        tags_of(instance.tag_list()),
        tags(&[("autopilot:reason", "restore-drill")])
    );
    // The endpoint leads to the harness PostgreSQL.
    let (client, connection) = tokio_postgres::Config::new()
        .host(endpoint.address().unwrap())
        .port(endpoint.port().unwrap() as u16)
        .user("postgres")
        .password(autopilot_tests::postgres::ADMIN_PASSWORD)
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect through the restored instance's endpoint");
    tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // Without SkipFinalSnapshot, a final snapshot identifier is required.
    let refused = dr
        .delete_db_instance()
        .db_instance_identifier(&drill)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), "InvalidParameterCombination");
    let deleting = dr
        .delete_db_instance()
        .db_instance_identifier(&drill)
        .skip_final_snapshot(true)
        .delete_automated_backups(true)
        .send()
        .await
        .expect("delete the drill instance")
        .db_instance
        .unwrap();
    assert_eq!(deleting.db_instance_status(), Some("deleting"));
    assert_eq!(
        instance_status(DR, &drill).await.as_deref(),
        Some("deleting")
    );
    finish_instance(DR, &drill, "deleted");
    assert_eq!(instance_status(DR, &drill).await, None);
    hold_instances(&drill, false);

    // A drill that failed to restore can only be deleted skipping the final snapshot.
    let failed = format!("autopilot-drill-{}", stack.name("failed"));
    dr.restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&failed)
        .db_snapshot_identifier(&copy_id)
        .send()
        .await
        .expect("restore");
    finish_instance(DR, &failed, "incompatible-restore");
    let refused = dr
        .delete_db_instance()
        .db_instance_identifier(&failed)
        .final_db_snapshot_identifier(stack.name("final"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), "InvalidDBInstanceState");
    dr.delete_db_instance()
        .db_instance_identifier(&failed)
        .skip_final_snapshot(true)
        .send()
        .await
        .expect("delete skipping the final snapshot");
    assert_eq!(instance_status(DR, &failed).await, None);
}

#[tokio::test]
async fn tags_work_on_snapshots_and_cluster_snapshots_in_both_regions() {
    let stack = Stack::new("snap-tags").await;
    let db = stack.name("orders-db");
    let cluster = stack.name("orders-aurora");
    let instance = create_instance(SOURCE, &db, false).await;
    create_cluster(SOURCE, &cluster, false).await;
    let snap = manual_snapshot(SOURCE, Db::Instance(&db), &stack.name("s"), &[]).await;
    let csnap = manual_snapshot(SOURCE, Db::Cluster(&cluster), &stack.name("c"), &[]).await;
    let dr_snap = copy_snapshot(DR, false, &snap, &stack.name("s-dr"), None).await;
    let dr_csnap = copy_snapshot(DR, true, &csnap, &stack.name("c-dr"), None).await;
    for (region, arn) in [
        (SOURCE, &snap),
        (SOURCE, &csnap),
        (DR, &dr_snap),
        (DR, &dr_csnap),
    ] {
        let client = rds(region).await;
        client
            .add_tags_to_resource()
            .resource_name(arn.as_str())
            .tags(tag("autopilot:confirmed", "2026-11-20T03:10:00Z"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("tag {arn}: {}", error_code(&e)));
        let listed = client
            .list_tags_for_resource()
            .resource_name(arn.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(
            tags_of(listed.tag_list()),
            tags(&[("autopilot:confirmed", "2026-11-20T03:10:00Z")]),
            "{arn}"
        );
    }
    let described = snapshot(DR, Db::Cluster(&cluster), &stack.name("c-dr"))
        .await
        .unwrap();
    assert_eq!(
        described.tags["autopilot:confirmed"],
        "2026-11-20T03:10:00Z"
    );
    assert_eq!(tags_of(instance.tag_list()), tags(&[("team", "orders")]));
    let missing = rds(DR)
        .await
        .add_tags_to_resource()
        .resource_name(format!(
            "arn:aws:rds:us-west-2:123456789012:snapshot:{}",
            stack.name("gone")
        ))
        .tags(tag("a", "b"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&missing), "DBSnapshotNotFound");
}
