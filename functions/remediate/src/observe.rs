//! Reads: the alarm as CloudWatch describes it, its recent datapoints, and the
//! state of the resource a runbook acts on. No writes here.

use crate::alarm::{Alarm, Kind, Metric, State};
use crate::config::{DatabaseBounds, ServiceBounds};
use crate::plan::{DbState, Deployment, Scalable, ServiceState};
use autopilot_shared::aws::AwsCallError;
use autopilot_shared::record::Record;
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_cloudwatch::types::{
    AlarmType, Dimension, Metric as CwMetric, MetricDataQuery, MetricStat, ScanBy,
};
use aws_sdk_ecs::types::TaskDefinitionField;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The datapoints a page shows reach back this far at least.
const DATAPOINT_LOOKBACK_SECONDS: i64 = 3600;

pub fn chrono_of(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn smithy_of(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(t.timestamp())
}

/// The alarm named `name` as CloudWatch describes it now, with its tags; `None` if it is gone.
pub async fn alarm(
    cw: &aws_sdk_cloudwatch::Client,
    name: &str,
) -> Result<Option<Alarm>, AwsCallError> {
    let out = cw
        .describe_alarms()
        .alarm_names(name)
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .send()
        .await
        .map_err(AwsCallError::of("DescribeAlarms", name))?;
    let bad = |m: &str| AwsCallError::new("DescribeAlarms", name, m);
    let mut alarm = if let Some(m) = out
        .metric_alarms()
        .iter()
        .find(|a| a.alarm_name() == Some(name))
    {
        let state = m
            .state_value()
            .and_then(|s| State::parse(s.as_str()))
            .ok_or_else(|| bad("the alarm has no known StateValue"))?;
        // StateTransitionedTimestamp is when StateValue last changed;
        // StateUpdatedTimestamp also moves when only the evaluation state does.
        let changed = m
            .state_transitioned_timestamp()
            .or(m.state_updated_timestamp())
            .and_then(chrono_of)
            .ok_or_else(|| bad("the alarm has no state timestamp"))?;
        let kind = match (m.namespace(), m.metric_name()) {
            (Some(namespace), Some(metric)) if m.metrics().is_empty() => Kind::Metric(Metric {
                namespace: namespace.to_string(),
                name: metric.to_string(),
                dimensions: m
                    .dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
                    .collect(),
                statistic: m
                    .statistic()
                    .map(|s| s.as_str().to_string())
                    .or_else(|| m.extended_statistic().map(str::to_string))
                    .unwrap_or_else(|| "Average".into()),
                period: m.period().unwrap_or(60),
                threshold: m.threshold(),
                comparison: m
                    .comparison_operator()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
                evaluation_periods: m.evaluation_periods().unwrap_or(1),
            }),
            _ => Kind::Math,
        };
        Alarm {
            name: name.to_string(),
            arn: m.alarm_arn().unwrap_or_default().to_string(),
            state,
            state_updated: changed,
            reason: m.state_reason().unwrap_or_default().to_string(),
            description: m.alarm_description().unwrap_or_default().to_string(),
            kind,
            tags: BTreeMap::new(),
        }
    } else if let Some(c) = out
        .composite_alarms()
        .iter()
        .find(|a| a.alarm_name() == Some(name))
    {
        Alarm {
            name: name.to_string(),
            arn: c.alarm_arn().unwrap_or_default().to_string(),
            state: c
                .state_value()
                .and_then(|s| State::parse(s.as_str()))
                .ok_or_else(|| bad("the alarm has no known StateValue"))?,
            state_updated: c
                .state_transitioned_timestamp()
                .or(c.state_updated_timestamp())
                .and_then(chrono_of)
                .ok_or_else(|| bad("the alarm has no state timestamp"))?,
            reason: c.state_reason().unwrap_or_default().to_string(),
            description: c.alarm_description().unwrap_or_default().to_string(),
            kind: Kind::Composite {
                rule: c.alarm_rule().unwrap_or_default().to_string(),
            },
            tags: BTreeMap::new(),
        }
    } else {
        return Ok(None);
    };
    if !alarm.arn.is_empty() {
        let tags = cw
            .list_tags_for_resource()
            .resource_arn(&alarm.arn)
            .send()
            .await
            .map_err(AwsCallError::of("ListTagsForResource", &alarm.arn))?;
        alarm.tags = tags
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect();
    }
    Ok(Some(alarm))
}

/// The current state of each named alarm (at most 100, DescribeAlarms' limit).
pub async fn states(
    cw: &aws_sdk_cloudwatch::Client,
    names: &[String],
) -> Result<BTreeMap<String, State>, AwsCallError> {
    let mut states = BTreeMap::new();
    for chunk in names.chunks(100) {
        let out = cw
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .send()
            .await
            .map_err(AwsCallError::of("DescribeAlarms", chunk.join(",")))?;
        let metric = out
            .metric_alarms()
            .iter()
            .map(|a| (a.alarm_name(), a.state_value().map(|s| s.as_str())));
        let composite = out
            .composite_alarms()
            .iter()
            .map(|a| (a.alarm_name(), a.state_value().map(|s| s.as_str())));
        for (name, state) in metric.chain(composite) {
            if let (Some(name), Some(state)) = (name, state.and_then(State::parse)) {
                states.insert(name.to_string(), state);
            }
        }
    }
    Ok(states)
}

/// The metric's recent datapoints, newest first. Only shown on pages, so a
/// failure is returned as text to show, never a reason not to page.
pub async fn datapoints(
    cw: &aws_sdk_cloudwatch::Client,
    m: &Metric,
    now: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, f64)>, String> {
    let period = m.period.max(1);
    let lookback = (period as i64 * 10).max(DATAPOINT_LOOKBACK_SECONDS);
    let mut metric = CwMetric::builder()
        .namespace(&m.namespace)
        .metric_name(&m.name);
    for (k, v) in &m.dimensions {
        metric = metric.dimensions(Dimension::builder().name(k).value(v).build());
    }
    let query = MetricDataQuery::builder()
        .id("m0")
        .metric_stat(
            MetricStat::builder()
                .metric(metric.build())
                .period(period)
                .stat(&m.statistic)
                .build(),
        )
        .return_data(true)
        .build();
    let out = cw
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(smithy_of(now - chrono::Duration::seconds(lookback)))
        .end_time(smithy_of(now + chrono::Duration::seconds(60)))
        .scan_by(ScanBy::TimestampDescending)
        .send()
        .await
        .map_err(|e| {
            AwsCallError::of("GetMetricData", format!("{} {}", m.namespace, m.name))(e).to_string()
        })?;
    let mut points: Vec<(DateTime<Utc>, f64)> = out
        .metric_data_results()
        .iter()
        .flat_map(|r| r.timestamps().iter().zip(r.values().iter()))
        .filter_map(|(t, v)| Some((chrono_of(t)?, *v)))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.0));
    Ok(points)
}

/// What ECS (and Application Auto Scaling, for scaling) say about a service.
pub async fn service(
    ecs: &aws_sdk_ecs::Client,
    aas: &aws_sdk_applicationautoscaling::Client,
    b: &ServiceBounds,
    scaling: bool,
    with_record: bool,
) -> Result<ServiceState, AwsCallError> {
    let key = b.key();
    let out = ecs
        .describe_services()
        .cluster(&b.cluster)
        .services(&b.service)
        .send()
        .await
        .map_err(AwsCallError::of("DescribeServices", &key))?;
    let Some(svc) = out
        .services()
        .iter()
        .find(|s| s.service_name() == Some(b.service.as_str()))
    else {
        let why = out
            .failures()
            .iter()
            .map(|f| f.reason().unwrap_or("unknown").to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(AwsCallError::new(
            "DescribeServices",
            &key,
            format!("the service was not found ({why})"),
        ));
    };
    let mut state = ServiceState {
        desired: svc.desired_count(),
        running: svc.running_count(),
        task_definition: svc.task_definition().unwrap_or_default().to_string(),
        deployments: svc
            .deployments()
            .iter()
            .map(|d| Deployment {
                id: d.id().unwrap_or_default().to_string(),
                status: d.status().unwrap_or_default().to_string(),
                rollout_state: d
                    .rollout_state()
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_default(),
                task_definition: d.task_definition().unwrap_or_default().to_string(),
                created_at: d.created_at().and_then(chrono_of),
            })
            .collect(),
        scalable: None,
        record: None,
        registered_at: None,
    };
    if scaling {
        let resource_id = format!("service/{}/{}", b.cluster, b.service);
        let out = aas
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_ids(&resource_id)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .send()
            .await
            .map_err(AwsCallError::of("DescribeScalableTargets", &resource_id))?;
        state.scalable = out
            .scalable_targets()
            .iter()
            .find(|t| t.resource_id() == resource_id)
            .map(|t| Scalable {
                min: t.min_capacity(),
                max: t.max_capacity(),
            });
    }
    if with_record {
        // The revision the PRIMARY deployment runs is the one to roll back from.
        let running = state
            .deployments
            .iter()
            .find(|d| d.status == "PRIMARY")
            .map(|d| d.task_definition.clone())
            .unwrap_or_else(|| state.task_definition.clone());
        if !running.is_empty() {
            let out = ecs
                .describe_task_definition()
                .task_definition(&running)
                .include(TaskDefinitionField::Tags)
                .send()
                .await
                .map_err(AwsCallError::of("DescribeTaskDefinition", &running))?;
            state.record = Record::from_pairs(
                out.tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
            );
            state.registered_at = out
                .task_definition()
                .and_then(|td| td.registered_at())
                .and_then(chrono_of);
            state.task_definition = running;
        }
    }
    Ok(state)
}

/// What RDS says about an instance's storage.
pub async fn database(
    rds: &aws_sdk_rds::Client,
    b: &DatabaseBounds,
) -> Result<DbState, AwsCallError> {
    let out = rds
        .describe_db_instances()
        .db_instance_identifier(&b.instance)
        .send()
        .await
        .map_err(AwsCallError::of("DescribeDBInstances", &b.instance))?;
    let db = out
        .db_instances()
        .first()
        .ok_or_else(|| AwsCallError::new("DescribeDBInstances", &b.instance, "not found"))?;
    Ok(DbState {
        allocated_gib: db.allocated_storage().unwrap_or_default(),
        max_allocated_gib: db.max_allocated_storage(),
        status: db.db_instance_status().unwrap_or_default().to_string(),
        pending_allocated_gib: db
            .pending_modified_values()
            .and_then(|p| p.allocated_storage()),
    })
}
