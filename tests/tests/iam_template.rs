//! The IAM `template.yaml` grants, read as written and held to AWS's own reference
//! (issue #10, "Security checks in make test"). Two rules:
//!
//! 1. **No mutating action on every resource where AWS can scope it.** A statement
//!    is "on every resource" when its `Resource` is `"*"`, a list holding one, or
//!    an ARN whose resource part is only wildcards (`arn:aws:ecs:*:*:*`). Every
//!    action such a statement allows must be in [`ON_EVERY_RESOURCE`], which says,
//!    from the Service Authorization Reference, its access level and resource
//!    types. A Write, Permissions management or Tagging action with a resource
//!    type fails: scope it. An action not in the table fails until someone looks
//!    it up and adds it, and so does a wildcard action (`ecs:Describe*`). Read and
//!    List actions on `"*"` are allowed (issue #10 asks about mutating ones); the
//!    table still says why each one is on `"*"`.
//! 2. **Every `iam:PassRole` names its roles and the service.** The IAM User Guide
//!    ("Grant a user permissions to pass a role to an AWS service",
//!    id_roles_use_passrole.html) grants PassRole on the ARNs of the roles, and its
//!    examples add the `iam:PassedToService` condition key, which the Service
//!    Authorization Reference for IAM lists for PassRole (Write, resource type
//!    `role*`, condition keys `iam:AssociatedResourceArn`, `iam:PassedToService`).
//!    Without the condition a function that may pass a task role to ECS may pass
//!    it to any service that takes a role (Lambda, EC2, CodeBuild, …) and act
//!    with that role's permissions there. So a statement that allows
//!    `iam:PassRole` (or a wildcard that covers it, `iam:*`) fails without a
//!    `Resource`, with one on every resource or on every role (`role/*`), or
//!    without a `StringEquals`/`StringLike` `iam:PassedToService` naming a service.
//!
//! Read as written: a `Ref` to a parameter or a resource, and `${Name}` in a
//! `Fn::Sub`, name resources (the operator or CloudFormation sets them; a parameter
//! set to `*` is not caught here). Both branches of an `Fn::If` are checked, an
//! `AWS::NoValue` branch dropped. `Deny` statements only take away (rotate's `Deny`
//! of `secretsmanager:GetRandomPassword` on `"*"`). `NotAction` and `NotResource`
//! fail. What SAM adds to the roles it makes is not in `template.yaml` and not
//! checked here: the `AWSLambdaBasicExecutionRole` managed policy (CloudWatch Logs
//! writes on `"*"`) on every function, `AWSLambdaVPCAccessExecutionRole` (network
//! interfaces on `"*"`) on the functions in a VPC, and the event sources' and
//! destinations' policies, which SAM scopes to the queue and the function.
//!
//! The reference was read in its "Actions, resources, and condition keys for …"
//! pages (Service Authorization Reference, the URLs below), through the
//! machine-readable copy of those pages in the public iam-dataset
//! (aws/iam_definition.json, access levels and resource types as the pages give
//! them). The resource types agree with cfn-lint's copy of AWS's programmatic
//! service authorization reference in the set-up's venv
//! (cfnlint/data/AdditionalSpecs/Policies.json), except GetMetricData's `dataset`,
//! which is newer than that copy.

use autopilot_tests::template::identity_policies;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// An action's access level, the reference's "Access level" column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    List,
    Write,
    PermissionsManagement,
    Tagging,
}

impl Access {
    fn mutating(self) -> bool {
        matches!(
            self,
            Access::Write | Access::PermissionsManagement | Access::Tagging
        )
    }
}

/// What the reference says of an action the template grants on every resource.
struct Reference {
    action: &'static str,
    access: Access,
    /// The "Resource types" column; `*` marks a required one. Empty: none, so the
    /// action is authorized against `"*"` only.
    resource_types: &'static [&'static str],
    /// Why the template grants it on `"*"` all the same.
    on_every_resource: &'static str,
    /// For a mutating action with resource types: why it stays on `"*"` even so.
    /// Only where scoping it risks denying every call in production and AWS's
    /// evidence disagrees with itself; the reason must say which evidence.
    unscoped_because: Option<&'static str>,
}

/// Every action `template.yaml` grants on every resource. A mutating action can be
/// here only with no resource types, or with a reason why scoping it would risk
/// denying every call (`unscoped_because`): two are, below.
///
/// Pages (https://docs.aws.amazon.com/service-authorization/latest/reference/…):
/// list_amazonelasticcontainerservice.html (ECS), list_amazoncloudwatch.html,
/// list_applicationautoscaling.html, list_amazonrds.html.
const ON_EVERY_RESOURCE: &[Reference] = &[
    // ECS: "DescribeTaskDefinition … Read", no resource types.
    Reference {
        action: "ecs:DescribeTaskDefinition",
        access: Access::Read,
        resource_types: &[],
        on_every_resource: "no resource types: authorized against \"*\" whether the \
                            request names a family, family:revision or an ARN",
        unscoped_because: None,
    },
    // ECS: "ListTasks … List", container-instance* (condition keys ecs:cluster,
    // aws:ResourceTag, ecs:ResourceTag).
    Reference {
        action: "ecs:ListTasks",
        access: Access::List,
        resource_types: &["container-instance*"],
        on_every_resource: "deploy lists a service's tasks by cluster and service, \
                            naming no container instance; the ECS developer guide's \
                            policy for listing a cluster's tasks is \"*\" with the \
                            ecs:cluster condition key, which the statement has",
        unscoped_because: None,
    },
    // ECS: "RegisterTaskDefinition … Write", task-definition* (condition keys
    // aws:RequestTag, aws:TagKeys, ecs:task-cpu, ecs:task-memory …).
    Reference {
        action: "ecs:RegisterTaskDefinition",
        access: Access::Write,
        resource_types: &["task-definition*"],
        on_every_resource: "deploy registers revisions of whatever family the mapped \
                            services run, which the template does not know",
        unscoped_because: Some(
            "the reference lists task-definition*, but AWS's own evidence disagrees: \
             aws/containers-roadmap#929 (resource-level permissions for task \
             definitions) is open as proposed, and AWS's and the anchor projects' \
             deploy policies grant it on \"*\". If ECS authorizes it against \"*\", \
             a task-definition ARN denies every deploy, which the emulator cannot \
             show. What a revision may run is bounded by iam:PassRole (named roles, \
             ecs-tasks only) and by UpdateService on the mapped services",
        ),
    },
    // RDS: "CrossRegionCommunication … Write", permission only, optional resource
    // types snapshot, cluster-snapshot, db.
    Reference {
        action: "rds:CrossRegionCommunication",
        access: Access::Write,
        resource_types: &["snapshot", "cluster-snapshot", "db"],
        on_every_resource: "a permission-only action RDS checks for a cross-region copy",
        unscoped_because: Some(
            "the reference does not say which ARN a copy is checked against (its \
             resource types are all optional), the RDS guide says the permission is \
             checked through the service-linked role, and every AWS managed policy \
             that grants it grants it on \"*\"; a wrong guess stops every DR copy. \
             It is no API of its own: the copies it allows are bounded by \
             CopyDBSnapshot and CopyDBClusterSnapshot, scoped to autopilot-dr-*",
        ),
    },
    // CloudWatch: "DescribeAlarms … Read", alarm*.
    Reference {
        action: "cloudwatch:DescribeAlarms",
        access: Access::Read,
        resource_types: &["alarm*"],
        on_every_resource: "remediate also reads composite alarms, which CloudWatch \
                            returns only to a DescribeAlarms permission on \"*\" \
                            (DescribeAlarms, CloudWatch API Reference)",
        unscoped_because: None,
    },
    // CloudWatch: "GetMetricData … Read", dataset (optional: the datasets of OTLP
    // metrics, queried with PromQL).
    Reference {
        action: "cloudwatch:GetMetricData",
        access: Access::Read,
        resource_types: &["dataset"],
        on_every_resource: "classic metrics are no resource: only the optional OTLP \
                            dataset type exists, which remediate does not read",
        unscoped_because: None,
    },
    // Application Auto Scaling: "DescribeScalableTargets … Read", no resource types.
    Reference {
        action: "application-autoscaling:DescribeScalableTargets",
        access: Access::Read,
        resource_types: &[],
        on_every_resource: "no resource types",
        unscoped_because: None,
    },
    // RDS: "DescribeAccountAttributes … List", no resource types.
    Reference {
        action: "rds:DescribeAccountAttributes",
        access: Access::List,
        resource_types: &[],
        on_every_resource: "no resource types: the account's quotas",
        unscoped_because: None,
    },
];

/// The SAM policy templates the functions may use and the actions they grant, as
/// aws-sam-translator expands them (samtranslator/policy_templates_data/
/// policy_templates.json, 1.115.0 in the set-up's venv). Each grants on one
/// resource its parameter names: `arn:${AWS::Partition}:sns:${AWS::Region}:
/// ${AWS::AccountId}:${topicName}`, and the same for `sqs` and `${queueName}`.
const SAM_POLICY_TEMPLATES: &[(&str, &[&str])] = &[
    ("SNSPublishMessagePolicy", &["sns:Publish"]),
    ("SQSSendMessagePolicy", &["sqs:SendMessage*"]),
];

/// What a `Resource` entry covers.
#[derive(Debug, PartialEq, Eq)]
enum Scope {
    /// `"*"`, or an ARN whose resource part is only wildcards.
    Every(String),
    /// An ARN with a resource part, or a `Ref`/`Fn::GetAtt` that names resources.
    Named(String),
}

/// One statement, as the checks read it.
struct Statement {
    /// `LogicalId.Sid`.
    at: String,
    allow: bool,
    actions: Vec<String>,
    /// `None` when the statement has no `Resource`.
    resources: Option<Vec<Scope>>,
    condition: Value,
}

/// IAM action and ARN matching: case-insensitive, `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some((b'?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(
        pattern.to_ascii_lowercase().as_bytes(),
        text.to_ascii_lowercase().as_bytes(),
    )
}

/// The value, or both branches of an `Fn::If` (recursively), without `AWS::NoValue`.
fn branches(value: &Value) -> Vec<&Value> {
    if value.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue") {
        return Vec::new();
    }
    match value.get("Fn::If").and_then(Value::as_array) {
        Some(b) if b.len() == 3 => b[1..].iter().flat_map(branches).collect(),
        _ => vec![value],
    }
}

/// A `Fn::Sub` text with the pseudo parameters filled in and any other `${Name}`
/// left as its name: a value CloudFormation or the operator sets.
fn render(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + len];
        out.push_str(match name {
            "AWS::Partition" => "aws",
            "AWS::Region" => "us-east-1",
            "AWS::AccountId" => "123456789012",
            "AWS::URLSuffix" => "amazonaws.com",
            other => other.trim_start_matches('!'),
        });
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// Nothing but wildcards and separators: every resource.
fn only_wildcards(text: &str) -> bool {
    !text.bytes().any(|b| b.is_ascii_alphanumeric())
}

fn classify(arn: &str) -> Scope {
    let resource = match arn.splitn(6, ':').collect::<Vec<_>>()[..] {
        ["arn", _, _, _, _, resource] => resource,
        _ => arn,
    };
    if only_wildcards(resource) {
        Scope::Every(arn.to_string())
    } else {
        Scope::Named(arn.to_string())
    }
}

/// What a `Resource` value covers, entry by entry.
fn scopes(value: &Value) -> Result<Vec<Scope>, String> {
    let mut out = Vec::new();
    for value in branches(value) {
        match value {
            Value::String(s) => out.push(classify(s)),
            Value::Array(list) => {
                for entry in list {
                    out.extend(scopes(entry)?);
                }
            }
            Value::Object(o) if o.len() == 1 && o.contains_key("Fn::Sub") => {
                let text = o["Fn::Sub"]
                    .as_str()
                    .or_else(|| o["Fn::Sub"][0].as_str())
                    .ok_or_else(|| format!("a Fn::Sub without text: {value}"))?;
                out.push(classify(&render(text)));
            }
            Value::Object(o)
                if o.len() == 1 && (o.contains_key("Ref") || o.contains_key("Fn::GetAtt")) =>
            {
                out.push(Scope::Named(value.to_string()))
            }
            other => return Err(format!("a Resource this check cannot read: {other}")),
        }
    }
    Ok(out)
}

/// The statements of one policy entry (see `identity_policies`), or why it cannot
/// be checked.
fn read(owner: &str, policy: &Value, out: &mut Vec<Statement>, errors: &mut Vec<String>) {
    for policy in branches(policy) {
        if let Some(statements) = policy.get("Statement") {
            let list: Vec<&Value> = match statements {
                Value::Array(list) => list.iter().collect(),
                one => vec![one],
            };
            for statement in list.into_iter().flat_map(branches) {
                match statement_of(owner, statement) {
                    Ok(s) => out.push(s),
                    Err(e) => errors.push(e),
                }
            }
            continue;
        }
        let template = policy
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.keys().next())
            .and_then(|name| {
                SAM_POLICY_TEMPLATES
                    .iter()
                    .find(|(t, _)| *t == name.as_str())
            });
        match template {
            Some((name, actions)) => out.push(Statement {
                at: format!("{owner}.{name}"),
                allow: true,
                actions: actions.iter().map(|a| a.to_string()).collect(),
                resources: Some(vec![Scope::Named(format!("{name}'s parameter"))]),
                condition: Value::Null,
            }),
            None => errors.push(format!(
                "{owner}: a policy this check cannot read ({policy}): a managed policy's \
                 statements are not in template.yaml, and a SAM policy template not in \
                 SAM_POLICY_TEMPLATES has not been looked up"
            )),
        }
    }
}

fn statement_of(owner: &str, s: &Value) -> Result<Statement, String> {
    let at = format!("{owner}.{}", s["Sid"].as_str().unwrap_or("(no Sid)"));
    for key in ["NotAction", "NotResource"] {
        if s.get(key).is_some() {
            return Err(format!("{at}: {key} grants everything it does not name"));
        }
    }
    let actions = match &s["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(list) => list
            .iter()
            .map(|a| a.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("{at}: an Action that is not a name"))?,
        other => return Err(format!("{at}: Action {other}")),
    };
    let resources = match s.get("Resource") {
        None => None,
        Some(r) => Some(scopes(r).map_err(|e| format!("{at}: {e}"))?),
    };
    Ok(Statement {
        at,
        allow: s["Effect"] == "Allow",
        actions,
        resources,
        condition: s.get("Condition").cloned().unwrap_or(Value::Null),
    })
}

/// Every statement of every identity policy in `template.yaml`.
fn template_statements() -> Vec<Statement> {
    let (mut statements, mut errors) = (Vec::new(), Vec::new());
    for (owner, policy) in identity_policies() {
        read(&owner, policy, &mut statements, &mut errors);
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    statements
}

/// Rule 1: the mutating actions allowed on every resource where the reference
/// (`table`, [`ON_EVERY_RESOURCE`]) gives them a resource type, and every action on
/// every resource it does not hold. `known` collects the entries that were needed.
fn unscoped(
    statements: &[Statement],
    table: &'static [Reference],
    known: &mut BTreeSet<&'static str>,
) -> Vec<String> {
    let mut found = Vec::new();
    for s in statements.iter().filter(|s| s.allow) {
        let Some(every) = s.resources.iter().flatten().find_map(|r| match r {
            Scope::Every(r) => Some(r),
            Scope::Named(_) => None,
        }) else {
            continue;
        };
        for action in &s.actions {
            if action.contains(['*', '?']) {
                found.push(format!(
                    "{}: {action} on {every}: name the actions, so each can be looked up",
                    s.at
                ));
                continue;
            }
            match table.iter().find(|r| r.action.eq_ignore_ascii_case(action)) {
                None => found.push(format!(
                    "{}: {action} on {every} is not in ON_EVERY_RESOURCE: look up its access \
                     level and resource types in the Service Authorization Reference; scope it \
                     if it has resource types",
                    s.at
                )),
                Some(r)
                    if r.access.mutating()
                        && !r.resource_types.is_empty()
                        && r.unscoped_because.is_none_or(str::is_empty) =>
                {
                    found.push(format!(
                        "{}: {action} ({:?}) on {every}, but AWS scopes it to {:?}: name them",
                        s.at, r.access, r.resource_types
                    ))
                }
                Some(r) => {
                    known.insert(r.action);
                }
            }
        }
    }
    found
}

/// Whether `condition` holds the request's `iam:PassedToService` to named services.
fn names_the_service(condition: &Value) -> bool {
    let Some(operators) = condition.as_object() else {
        return false;
    };
    operators.iter().any(|(operator, keys)| {
        let binding = ["stringequals", "stringlike", "stringequalsignorecase"]
            .contains(&operator.to_ascii_lowercase().as_str());
        let value = keys.as_object().and_then(|k| {
            k.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case("iam:PassedToService"))
                .map(|(_, v)| v)
        });
        let named = |v: &Value| match v {
            Value::String(s) => !only_wildcards(s),
            Value::Object(_) => true,
            _ => false,
        };
        binding
            && match value {
                Some(Value::Array(list)) => !list.is_empty() && list.iter().all(named),
                Some(one) => named(one),
                None => false,
            }
    })
}

/// Rule 2: the statements that allow `iam:PassRole` without naming the roles and
/// the service.
fn loose_pass_roles(statements: &[Statement]) -> Vec<String> {
    let mut found = Vec::new();
    for s in statements.iter().filter(|s| s.allow) {
        let Some(action) = s.actions.iter().find(|a| glob(a, "iam:PassRole")) else {
            continue;
        };
        match &s.resources {
            None => found.push(format!("{}: {action} without a Resource", s.at)),
            Some(resources) if resources.is_empty() => {
                found.push(format!("{}: {action} on no resource", s.at))
            }
            Some(resources) => {
                for r in resources {
                    let every_role = match r {
                        Scope::Every(_) => true,
                        Scope::Named(arn) => arn
                            .split_once(":role/")
                            .is_some_and(|(_, name)| only_wildcards(name)),
                    };
                    if every_role {
                        found.push(format!(
                            "{}: {action} on {r:?}: name the roles it may pass",
                            s.at
                        ));
                    }
                }
            }
        }
        if !names_the_service(&s.condition) {
            found.push(format!(
                "{}: {action} without a StringEquals iam:PassedToService naming the service \
                 the roles are for",
                s.at
            ));
        }
    }
    found
}

#[test]
fn no_mutating_action_is_granted_on_every_resource_where_aws_can_scope_it() {
    let statements = template_statements();
    assert!(
        statements.len() > 30,
        "only {} statements read: is the template read whole?",
        statements.len()
    );
    let mut known = BTreeSet::new();
    let found = unscoped(&statements, ON_EVERY_RESOURCE, &mut known);
    assert!(
        found.is_empty(),
        "template.yaml grants on every resource:\n{}",
        found.join("\n")
    );
    // The table is what the template grants on "*", no more: an entry no statement
    // needs any more goes, so the table (and docs/reliability.md) stay true.
    let stale: Vec<_> = ON_EVERY_RESOURCE
        .iter()
        .map(|r| r.action)
        .filter(|a| !known.contains(a))
        .collect();
    assert!(
        stale.is_empty(),
        "ON_EVERY_RESOURCE lists actions template.yaml no longer grants on \"*\": {stale:?}"
    );
    for r in ON_EVERY_RESOURCE {
        assert!(
            !r.access.mutating()
                || r.resource_types.is_empty()
                || r.unscoped_because.is_some_and(|why| why.len() > 80),
            "{} is {:?} with resource types: it cannot be allowed on \"*\" without \
             the evidence that scoping it would deny every call",
            r.action,
            r.access
        );
        assert!(!r.on_every_resource.is_empty(), "{}: say why", r.action);
    }
}

#[test]
fn every_pass_role_names_its_roles_and_the_service() {
    let statements = template_statements();
    let passing: Vec<&str> = statements
        .iter()
        .filter(|s| s.allow && s.actions.iter().any(|a| glob(a, "iam:PassRole")))
        .map(|s| s.at.as_str())
        .collect();
    assert!(
        passing.contains(&"DeployFunction.PassOnlyTheMappedTaskRoles"),
        "deploy passes its task roles; the check found {passing:?}"
    );
    let found = loose_pass_roles(&statements);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The checks themselves, on policies written to break them.
fn check(policy: Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut statements, mut errors) = (Vec::new(), Vec::new());
    read("Fn", &policy, &mut statements, &mut errors);
    let mut known = BTreeSet::new();
    (
        unscoped(&statements, ON_EVERY_RESOURCE, &mut known),
        loose_pass_roles(&statements),
        errors,
    )
}

fn allow(action: Value, resource: Value) -> Value {
    json!({"Statement": [{"Sid": "S", "Effect": "Allow", "Action": action, "Resource": resource}]})
}

#[test]
fn a_write_on_every_resource_fails_where_the_reference_scopes_it() {
    let ecs_any =
        json!({"Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*"});
    for resource in [
        json!("*"),
        json!([
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web:*",
            "*"
        ]),
        json!("arn:aws:ecs:*:*:*"),
        ecs_any,
        json!({"Fn::If": ["C", "*", {"Ref": "AWS::NoValue"}]}),
    ] {
        let (unscoped, _, errors) = check(allow(json!("ecs:UpdateService"), resource.clone()));
        assert_eq!(unscoped.len(), 1, "{resource}: {unscoped:?}");
        assert!(
            unscoped[0].contains("not in ON_EVERY_RESOURCE"),
            "{unscoped:?}"
        );
        assert!(errors.is_empty());
    }
    // A wildcard action cannot be looked up, even a read.
    let (unscoped, ..) = check(allow(json!(["ecs:Describe*"]), json!("*")));
    assert!(unscoped[0].contains("name the actions"), "{unscoped:?}");
    // What the table allows: reads, and the condition-keyed list.
    let (unscoped, ..) = check(allow(
        json!([
            "ecs:DescribeTaskDefinition",
            "rds:DescribeAccountAttributes"
        ]),
        json!("*"),
    ));
    assert!(unscoped.is_empty(), "{unscoped:?}");
    // Scoped, or a Deny, or a dropped branch: nothing to say.
    let scoped = json!({"Fn::Sub":
        "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task-definition/*"});
    for policy in [
        allow(json!("ecs:RegisterTaskDefinition"), scoped),
        allow(json!("ecs:UpdateService"), json!({"Ref": "ServiceArns"})),
        json!({"Statement": [{"Effect": "Deny", "Action": "secretsmanager:GetRandomPassword", "Resource": "*"}]}),
        json!({"Statement": [{"Fn::If": ["C", {"Ref": "AWS::NoValue"},
            {"Effect": "Allow", "Action": "sns:Publish", "Resource": {"Fn::GetAtt": ["T", "TopicArn"]}}]}]}),
        json!({"SNSPublishMessagePolicy": {"TopicName": "t"}}),
    ] {
        let (unscoped, pass, errors) = check(policy.clone());
        assert!(
            unscoped.is_empty() && pass.is_empty() && errors.is_empty(),
            "{policy}"
        );
    }
}

/// A table as it might read once the reference changes: a Write with no resource
/// type is allowed on "*" (the allow-list), a Tagging action with one is not.
const SOME_DAY: &[Reference] = &[
    Reference {
        action: "x:PutSetting",
        access: Access::Write,
        resource_types: &[],
        on_every_resource: "no resource types",
        unscoped_because: None,
    },
    Reference {
        action: "x:TagThing",
        access: Access::Tagging,
        resource_types: &["thing*"],
        on_every_resource: "",
        unscoped_because: None,
    },
];

#[test]
fn the_table_allows_a_write_on_every_resource_only_without_resource_types() {
    let (mut statements, mut errors) = (Vec::new(), Vec::new());
    let policy = allow(json!(["x:PutSetting", "x:TagThing"]), json!("*"));
    read("Fn", &policy, &mut statements, &mut errors);
    let mut known = BTreeSet::new();
    let found = unscoped(&statements, SOME_DAY, &mut known);
    assert!(errors.is_empty());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("x:TagThing (Tagging)"), "{found:?}");
    assert_eq!(known, BTreeSet::from(["x:PutSetting"]));
    assert!(!Access::Read.mutating() && !Access::List.mutating());
    assert!(Access::Write.mutating() && Access::PermissionsManagement.mutating());
}

#[test]
fn a_pass_role_must_name_the_roles_and_the_service() {
    let service = json!({"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}});
    let pass = |action: &str, resource: Option<Value>, condition: Value| {
        let mut s =
            json!({"Sid": "P", "Effect": "Allow", "Action": action, "Condition": condition});
        if let Some(r) = resource {
            s["Resource"] = r;
        }
        check(json!({"Statement": [s]})).1
    };
    let role = json!("arn:aws:iam::123456789012:role/web-task");
    assert!(pass("iam:PassRole", Some(role.clone()), service.clone()).is_empty());
    assert!(pass(
        "iam:PassRole",
        Some(json!({"Ref": "PassRoleArns"})),
        service.clone()
    )
    .is_empty());
    for (action, resource, condition, why) in [
        ("iam:PassRole", None, service.clone(), "without a Resource"),
        (
            "iam:PassRole",
            Some(json!("*")),
            service.clone(),
            "name the roles",
        ),
        (
            "iam:PassRole",
            Some(json!("arn:aws:iam::123456789012:role/*")),
            service.clone(),
            "name the roles",
        ),
        (
            "iam:PassRole",
            Some(role.clone()),
            Value::Null,
            "iam:PassedToService",
        ),
        (
            "iam:PassRole",
            Some(role.clone()),
            json!({"StringEquals": {"iam:PassedToService": "*"}}),
            "iam:PassedToService",
        ),
        (
            "iam:PassRole",
            Some(role.clone()),
            json!({"StringNotEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}),
            "iam:PassedToService",
        ),
        (
            "iam:*",
            Some(role.clone()),
            Value::Null,
            "iam:PassedToService",
        ),
        ("*", Some(role.clone()), Value::Null, "iam:PassedToService"),
    ] {
        let found = pass(action, resource.clone(), condition.clone());
        assert!(
            found.iter().any(|f| f.contains(why)),
            "{action} {resource:?} {condition}: {found:?}"
        );
    }
}

#[test]
fn what_the_check_cannot_read_fails() {
    for policy in [
        json!("arn:aws:iam::aws:policy/AdministratorAccess"),
        json!({"AmazonS3FullAccessPolicy": {}}),
        json!({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}),
        json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "x"}]}),
        json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
            "Resource": {"Fn::Join": ["", ["arn:aws:s3:::", "*"]]}}]}),
    ] {
        let (_, _, errors) = check(policy.clone());
        assert_eq!(errors.len(), 1, "{policy}: {errors:?}");
    }
}

#[test]
fn globs_and_arns_read_as_iam_reads_them() {
    assert!(glob("iam:*", "iam:PassRole"));
    assert!(glob("IAM:pass?ole", "iam:PassRole"));
    assert!(glob("*", "iam:PassRole"));
    assert!(!glob("iam:Pass", "iam:PassRole"));
    assert!(!glob("ecs:*", "iam:PassRole"));
    assert_eq!(
        render("arn:${AWS::Partition}:rds:${SnapshotDrRegion}:${AWS::AccountId}:db:${!x}"),
        "arn:aws:rds:SnapshotDrRegion:123456789012:db:x"
    );
    assert!(matches!(classify("arn:aws:ecs:*:*:*"), Scope::Every(_)));
    assert!(matches!(classify("arn:aws:s3:::*/*"), Scope::Every(_)));
    assert!(matches!(classify("*"), Scope::Every(_)));
    assert!(matches!(
        classify("arn:aws:ecs:*:*:task-definition/*"),
        Scope::Named(_)
    ));
}
