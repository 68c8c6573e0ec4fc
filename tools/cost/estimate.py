"""Monthly cost of a deployment, read from its synthesized CloudFormation templates.

Everything that decides the bill is counted in the templates (NAT gateways,
load balancers, the service's task size and floor, Aurora's capacity floor,
secrets, keys, alarms, ...), so ``-c`` overrides and presets are reflected
exactly as they would be deployed. Prices and usage assumptions come from
tools/cost/prices.json, one region at one date.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.cost.cron import running_share

Template = dict[str, Any]
PRICES_FILE = Path(__file__).resolve().parent / "prices.json"
GB = 1024**3
MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    """The price table and usage assumptions of one region at one date."""

    region: str
    checked: str
    hours_per_month: float
    usd: dict[str, float]
    assumed: dict[str, float]

    @classmethod
    def load(cls, path: Path = PRICES_FILE) -> Prices:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            region=data["region"],
            checked=data["checked"],
            hours_per_month=float(data["hours_per_month"]),
            usd={name: float(entry["usd"]) for name, entry in data["prices"].items()},
            assumed={name: float(entry["value"]) for name, entry in data["assumptions"].items()},
        )


@dataclass(frozen=True)
class Line:
    """One item of the bill: what, how it was counted, dollars."""

    item: str
    detail: str
    usd: float


@dataclass
class Estimate:
    idle: list[Line] = field(default_factory=list)
    per_million_requests: list[Line] = field(default_factory=list)
    per_active_hour: list[Line] = field(default_factory=list)

    @property
    def idle_total(self) -> float:
        return sum(line.usd for line in self.idle)

    @property
    def per_million_total(self) -> float:
        return sum(line.usd for line in self.per_million_requests)

    def line(self, item: str) -> Line:
        """The idle line named ``item`` (tests and callers look items up by name)."""
        matches = [line for line in self.idle if line.item == item]
        if len(matches) != 1:
            raise KeyError(item)
        return matches[0]


# What the estimate leaves out, printed under it so nobody takes it for the whole bill.
NOT_INCLUDED = (
    "data transfer out to the internet and NAT processing of artifact bytes MLflow serves ($0.045/GB)",
    "Aurora I/O ($0.20 per million I/Os), backups beyond the database's size, the final snapshot after teardown",
    "container images in ECR ($0.10/GB-month), CodeBuild minutes of the serving-image build",
    "SageMaker Studio apps, training jobs and endpoints you start, Studio's EFS home directories",
    "tasks autoscaling adds above the floor under load",
)


def _money(value: float) -> str:
    """A unit price as the price pages write it: $0.10, $0.0225, $1.00."""
    text = f"{value:.6f}".rstrip("0")
    decimals = len(text.split(".")[1])
    return f"${value:.{max(decimals, 2)}f}"


def _hourly(item: str, count: int, hours: float, price: float) -> Line:
    """Resources billed per hour each, whether used or not."""
    return Line(item, f"{count} x {hours:g} h x {_money(price)}", count * hours * price)


# --- reading templates -------------------------------------------------------


def load_assembly(directory: Path) -> dict[str, Template]:
    """Stack name -> template, for every stack of a cloud assembly (the output of `cdk synth`)."""
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    templates = {}
    for name, artifact in manifest["artifacts"].items():
        if artifact.get("type") == "aws:cloudformation:stack":
            template_file = directory / artifact["properties"]["templateFile"]
            templates[artifact.get("displayName", name)] = json.loads(template_file.read_text(encoding="utf-8"))
    if not templates:
        raise ValueError(f"{directory} holds no CloudFormation stacks; run `cdk synth` first")
    return templates


def _resources(templates: Mapping[str, Template], resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for template in templates.values():
        for logical_id, resource in template.get("Resources", {}).items():
            if resource["Type"] == resource_type:
                yield logical_id, resource.get("Properties", {})


def _count(templates: Mapping[str, Template], resource_type: str) -> int:
    return sum(1 for _ in _resources(templates, resource_type))


def _ref(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


@dataclass(frozen=True)
class _Service:
    """An ECS Fargate service as the bill sees it."""

    idle_tasks: int
    max_tasks: int
    vcpu: float
    memory_gb: float
    arm: bool
    # Share of the time its tasks run: below 1 when scheduled actions scale it to zero.
    running_share: float = 1.0
    schedule: str = ""
    # Of the idle tasks, how many its capacity provider strategy puts on Fargate Spot.
    spot_tasks: int = 0


def tasks_on_spot(service: dict[str, Any], tasks: int) -> int:
    """How many of ``tasks`` a capacity provider strategy runs on Fargate Spot.

    ECS places each base on its provider first. Each further task goes to the
    provider (of weight above 0) furthest below its weight's share: our model of
    ECS's proportional spread, the first listed winning a tie.
    """
    strategy = service.get("CapacityProviderStrategy") or []
    placed: dict[str, int] = {}
    for item in strategy:
        placed[item["CapacityProvider"]] = min(int(item.get("Base", 0)), tasks - sum(placed.values()))
    weights = {item["CapacityProvider"]: int(item.get("Weight", 0)) for item in strategy if item.get("Weight", 0)}
    shared = dict.fromkeys(weights, 0)
    beyond_bases = tasks - sum(placed.values()) if weights else 0  # without a weight, nothing more is placed
    for placing in range(1, beyond_bases + 1):
        chosen = max(weights, key=lambda name: weights[name] / sum(weights.values()) * placing - shared[name])
        shared[chosen] += 1
    return placed.get("FARGATE_SPOT", 0) + shared.get("FARGATE_SPOT", 0)


def _fargate_services(templates: Mapping[str, Template]) -> list[_Service]:
    task_definitions = dict(_resources(templates, "AWS::ECS::TaskDefinition"))
    # Autoscaling floors and ceilings by the service they scale (ResourceId: service/<cluster>/<service name>).
    targets = [p for _, p in _resources(templates, "AWS::ApplicationAutoScaling::ScalableTarget")]
    services = []
    for logical_id, service in _resources(templates, "AWS::ECS::Service"):
        if service.get("LaunchType", "FARGATE") != "FARGATE":
            continue
        task = task_definitions[_ref(service["TaskDefinition"]) or ""]
        scaling = [t for t in targets if logical_id in json.dumps(t.get("ResourceId"))]
        desired = int(service.get("DesiredCount", 1))
        floor = int(scaling[0]["MinCapacity"]) if scaling else desired
        ceiling = int(scaling[0]["MaxCapacity"]) if scaling else desired
        platform = task.get("RuntimePlatform", {}).get("CpuArchitecture", "X86_64")
        share, schedule = _scheduled_share(scaling[0].get("ScheduledActions", []) if scaling else [])
        services.append(
            _Service(
                idle_tasks=floor,
                max_tasks=ceiling,
                vcpu=int(task["Cpu"]) / 1024,
                memory_gb=int(task["Memory"]) / 1024,
                arm=platform == "ARM64",
                running_share=share,
                schedule=schedule,
                spot_tasks=tasks_on_spot(service, floor),
            )
        )
    return services


def _scheduled_share(actions: list[dict[str, Any]]) -> tuple[float, str]:
    """The share of the time tasks run under scheduled actions to zero and back, and how the line says it."""
    down = [a["Schedule"] for a in actions if a["ScalableTargetAction"].get("MaxCapacity") == 0]
    up = [a["Schedule"] for a in actions if a["ScalableTargetAction"].get("MaxCapacity", 0) > 0]
    if not down:
        return 1.0, ""
    share = running_share(down[0], up[0]) if len(down) == len(up) == 1 else None
    if share is None:
        return 1.0, ", scaled to zero on a schedule this estimate cannot count"
    return share, f" x {share:.1%} of the time (scheduled to zero otherwise)"


@dataclass(frozen=True)
class _Aurora:
    min_acu: float
    instances: int
    pause_seconds: int | None


def _aurora_clusters(templates: Mapping[str, Template]) -> list[_Aurora]:
    instances = [p for _, p in _resources(templates, "AWS::RDS::DBInstance")]
    clusters = []
    for logical_id, cluster in _resources(templates, "AWS::RDS::DBCluster"):
        scaling = cluster.get("ServerlessV2ScalingConfiguration")
        if scaling is None:
            continue
        serverless = [
            i
            for i in instances
            if _ref(i.get("DBClusterIdentifier")) == logical_id and i["DBInstanceClass"] == "db.serverless"
        ]
        clusters.append(
            _Aurora(
                min_acu=float(scaling["MinCapacity"]),
                instances=len(serverless),
                pause_seconds=scaling.get("SecondsUntilAutoPause"),
            )
        )
    return clusters


def _alarm_metrics(alarm: dict[str, Any]) -> int:
    """Metrics an alarm is billed for: one, or each metric a metric-math alarm reads."""
    if "Metrics" in alarm:
        return sum(1 for query in alarm["Metrics"] if "MetricStat" in query)
    return 1


def _container_insights_clusters(templates: Mapping[str, Template]) -> int:
    enabled = 0
    for _, cluster in _resources(templates, "AWS::ECS::Cluster"):
        settings = {s["Name"]: s["Value"] for s in cluster.get("ClusterSettings", [])}
        enabled += settings.get("containerInsights") in ("enabled", "enhanced")
    return enabled


def _health_checks_per_month(templates: Mapping[str, Template], tasks: float, hours: float) -> float:
    """ALB health checks: every load balancer node (one per subnet) checks every target."""
    checks = 0.0
    nodes = sum(
        len(lb.get("Subnets", [])) for _, lb in _resources(templates, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    )
    for _, group in _resources(templates, "AWS::ElasticLoadBalancingV2::TargetGroup"):
        interval = float(group.get("HealthCheckIntervalSeconds", 30))
        checks += nodes * tasks * hours * 3600 / interval
    return checks


# --- the estimate ------------------------------------------------------------


def estimate(templates: Mapping[str, Template], prices: Prices) -> Estimate:
    """Idle, per-million-request and per-active-hour costs of the deployment these templates describe."""
    usd, assumed, hours = prices.usd, prices.assumed, prices.hours_per_month
    result = Estimate()
    idle = result.idle

    idle.append(_hourly("NAT gateways", _count(templates, "AWS::EC2::NatGateway"), hours, usd["nat_gateway_hour"]))
    idle.append(_hourly("Public IPv4 addresses", _count(templates, "AWS::EC2::EIP"), hours, usd["public_ipv4_hour"]))
    albs = sum(
        1
        for _, lb in _resources(templates, "AWS::ElasticLoadBalancingV2::LoadBalancer")
        if lb.get("Type", "application") == "application"
    )
    idle.append(_hourly("Application Load Balancer", albs, hours, usd["alb_hour"]))

    services = _fargate_services(templates)
    # Tasks running on average (a schedule to zero runs them part of the time).
    idle_tasks = sum(s.idle_tasks * s.running_share for s in services)
    fargate, details = 0.0, []
    for service in services:
        vcpu_price = usd["fargate_arm_vcpu_hour" if service.arm else "fargate_vcpu_hour"]
        gb_price = usd["fargate_arm_gb_hour" if service.arm else "fargate_gb_hour"]
        per_task = (service.vcpu * vcpu_price + service.memory_gb * gb_price) * hours * service.running_share
        per_spot_task = per_task * (1 - assumed["fargate_spot_discount"])
        on_demand = service.idle_tasks - service.spot_tasks
        fargate += on_demand * per_task + service.spot_tasks * per_spot_task
        size = f"({service.vcpu:g} vCPU, {service.memory_gb:g} GB) x {hours:g} h{service.schedule}"
        if service.spot_tasks:
            details.append(
                f"{service.idle_tasks} x {size}: {on_demand:g} on-demand at ${per_task:.2f} + {service.spot_tasks:g}"
                f" Spot at ${per_spot_task:.2f} (assumed {assumed['fargate_spot_discount']:.0%} off)"
                f" (floor; up to {service.max_tasks} under load)"
            )
        else:
            details.append(
                f"{service.idle_tasks} x {size} = ${per_task:.2f}/task (floor; up to {service.max_tasks} under load)"
            )
    idle.append(Line("Fargate tasks", "; ".join(details) or "none", fargate))

    for number, cluster in enumerate(_aurora_clusters(templates), start=1):
        suffix = f" #{number}" if number > 1 else ""
        if cluster.min_acu == 0:
            detail = f"paused when idle (0 ACU floor, pauses after {int(cluster.pause_seconds or 0) // 60} idle min)"
            compute = 0.0
        else:
            compute = cluster.min_acu * cluster.instances * hours * usd["aurora_acu_hour"]
            detail = (
                f"{cluster.min_acu:g} ACU floor x {cluster.instances} instance(s) x {hours:g} h"
                f" x {_money(usd['aurora_acu_hour'])}"
            )
        idle.append(Line(f"Aurora Serverless v2 compute{suffix}", detail, compute))
        storage_gb = assumed["aurora_storage_gb"]
        idle.append(
            Line(
                f"Aurora storage{suffix}",
                f"{storage_gb:g} GB x {_money(usd['aurora_storage_gb_month'])} (assumed size)",
                storage_gb * usd["aurora_storage_gb_month"],
            )
        )

    secrets = _count(templates, "AWS::SecretsManager::Secret")
    idle.append(
        Line("Secrets Manager", f"{secrets} secrets x {_money(usd['secret_month'])}", secrets * usd["secret_month"])
    )
    keys = _count(templates, "AWS::KMS::Key")
    idle.append(Line("KMS keys", f"{keys} x {_money(usd['kms_key_month'])}", keys * usd["kms_key_month"]))

    alarm_metrics = sum(_alarm_metrics(alarm) for _, alarm in _resources(templates, "AWS::CloudWatch::Alarm"))
    alarms = _count(templates, "AWS::CloudWatch::Alarm")
    idle.append(
        Line(
            "CloudWatch alarms",
            f"{alarms} alarms reading {alarm_metrics} metrics x {_money(usd['alarm_metric_month'])}",
            alarm_metrics * usd["alarm_metric_month"],
        )
    )
    dashboards = _count(templates, "AWS::CloudWatch::Dashboard")
    idle.append(
        Line(
            "CloudWatch dashboard",
            f"{dashboards} x {_money(usd['dashboard_month'])} (free if the account has fewer than 3)",
            dashboards * usd["dashboard_month"],
        )
    )

    insights = _container_insights_clusters(templates)
    if insights:
        metrics = insights * assumed["container_insights_metrics"]
        events_gb = idle_tasks * hours * 60 * assumed["container_insights_bytes_per_task_minute"] / GB
        idle.append(
            Line(
                "Container Insights",
                f"{metrics:g} metrics x {_money(usd['custom_metric_month'])}"
                f" + {events_gb:.2f} GB of performance events",
                metrics * usd["custom_metric_month"] + events_gb * usd["logs_ingest_gb"],
            )
        )
    if _count(templates, "AWS::EC2::FlowLog"):
        checks = _health_checks_per_month(templates, idle_tasks, hours)
        flow_gb = checks * assumed["flow_log_bytes_per_health_check"] / GB
        idle.append(
            Line(
                "VPC flow logs (health checks)",
                f"{checks / MILLION:.2f} M health checks -> {flow_gb:.2f} GB x {_money(usd['logs_ingest_gb'])}",
                flow_gb * usd["logs_ingest_gb"],
            )
        )

    versioned = [
        b
        for _, b in _resources(templates, "AWS::S3::Bucket")
        if b.get("VersioningConfiguration", {}).get("Status") == "Enabled"
    ]
    artifacts_gb = assumed["artifact_storage_gb"] * len(versioned)
    idle.append(
        Line(
            "S3 artifacts",
            f"{artifacts_gb:g} GB x {_money(usd['s3_standard_gb_month'])}"
            " (assumed size; request metrics bill only when used)",
            artifacts_gb * usd["s3_standard_gb_month"],
        )
    )

    endpoint_azs = sum(
        len(e.get("SubnetIds", []))
        for _, e in _resources(templates, "AWS::EC2::VPCEndpoint")
        if e.get("VpcEndpointType") == "Interface"
    )
    gateway_endpoints = sum(
        1 for _, e in _resources(templates, "AWS::EC2::VPCEndpoint") if e.get("VpcEndpointType", "Gateway") == "Gateway"
    )
    idle.append(
        Line(
            "VPC endpoints",
            f"{endpoint_azs} interface endpoint-AZs x {hours:g} h x {_money(usd['vpc_interface_endpoint_hour'])}"
            f"; {gateway_endpoints} gateway endpoint{'' if gateway_endpoints == 1 else 's'} (free)",
            endpoint_azs * hours * usd["vpc_interface_endpoint_hour"],
        )
    )
    apis = sum(1 for _, api in _resources(templates, "AWS::ApiGatewayV2::Api") if api.get("ProtocolType") == "HTTP")
    idle.append(Line("API Gateway HTTP API", f"{apis} API{'' if apis == 1 else 's'}, pay per request", 0.0))
    m2m_clients = _m2m_clients(templates)
    idle.extend(_cognito_idle(templates, usd, m2m_clients))

    # Per million requests.
    per = result.per_million_requests
    # A request crosses one API: the password API, or with IAM sign-in the IAM API instead.
    per.append(
        Line(
            "API Gateway HTTP API",
            f"1 x 1 M x {_money(usd['http_api_million'])}/M"
            + (f" (a request crosses one of the {apis} APIs)" if apis > 1 else ""),
            usd["http_api_million"],
        )
    )
    lcu_hours = MILLION * assumed["alb_new_connections_per_request"] / (25 * 3600)
    per.append(
        Line(
            "ALB capacity units",
            f"{lcu_hours:.1f} LCU-h (25 new connections/s each) x {_money(usd['alb_lcu_hour'])}",
            albs * lcu_hours * usd["alb_lcu_hour"],
        )
    )
    log_gb = MILLION * assumed["log_bytes_per_request"] / GB
    per.append(
        Line(
            "CloudWatch Logs",
            f"{log_gb:.2f} GB of access and flow logs x {_money(usd['logs_ingest_gb'])}",
            log_gb * usd["logs_ingest_gb"],
        )
    )

    # Per hour somebody uses the server: Aurora awake instead of paused, code's access tokens.
    for cluster in _aurora_clusters(templates):
        if cluster.min_acu == 0:
            awake = 0.5 * cluster.instances * usd["aurora_acu_hour"]
            result.per_active_hour.append(
                Line(
                    "Aurora awake",
                    f"at least 0.5 ACU x {cluster.instances} instance(s) x {_money(usd['aurora_acu_hour'])}, "
                    f"plus {int(cluster.pause_seconds or 0) // 60} min before it pauses again",
                    awake,
                )
            )
    if m2m_clients:
        tokens = assumed["m2m_tokens_per_active_hour"]
        result.per_active_hour.append(
            Line(
                "Cognito M2M tokens",
                f"{tokens:g} token request per client-credentials client per hour its code works"
                f" (a token lasts an hour) x {_money(usd['cognito_m2m_token'])}",
                tokens * usd["cognito_m2m_token"],
            )
        )
    return result


def _m2m_clients(templates: Mapping[str, Template]) -> int:
    """App clients allowed the client-credentials grant: Cognito bills each per month, used or not."""
    return sum(
        1
        for _, client in _resources(templates, "AWS::Cognito::UserPoolClient")
        if "client_credentials" in client.get("AllowedOAuthFlows", [])
    )


def _cognito_idle(templates: Mapping[str, Template], usd: Mapping[str, float], m2m: int) -> list[Line]:
    """A user pool's people cost nothing while idle; its machine-to-machine app clients do."""
    lines = []
    for number, (_, pool) in enumerate(_resources(templates, "AWS::Cognito::UserPool"), start=1):
        tier = pool.get("UserPoolTier", "ESSENTIALS")  # AWS's default for a new pool
        detail = (
            "Essentials plan: the first 10,000 monthly active users are free, then"
            f" {_money(usd['cognito_essentials_mau'])} each"
            if tier == "ESSENTIALS"
            else f"{tier.title()} plan: billed per monthly active user (not estimated)"
        )
        lines.append(Line("Cognito user pool" + (f" #{number}" if number > 1 else ""), detail, 0.0))
    if lines or m2m:
        lines.append(
            Line(
                "Cognito M2M app clients",
                f"{m2m} client-credentials app client{'' if m2m == 1 else 's'}"
                f" x {_money(usd['cognito_m2m_client_month'])}",
                m2m * usd["cognito_m2m_client_month"],
            )
        )
    return lines


# --- output ------------------------------------------------------------------


def render(result: Estimate, prices: Prices, stacks: list[str]) -> str:
    """The estimate as the CLI prints it (and the README shows it)."""
    width = max(len(line.item) for line in result.idle + result.per_million_requests + result.per_active_hour)
    out = [
        f"Estimated monthly cost: {prices.region} list prices checked {prices.checked} (tools/cost/prices.json), "
        f"{prices.hours_per_month:g} h/month",
        f"Stacks: {', '.join(stacks)}",
        "",
        "Idle (deployed, nobody using it)",
    ]

    def rows(lines: list[Line]) -> None:
        for line in lines:
            out.append(f"  {line.item:<{width}}  {line.usd:>8.2f}  {line.detail}")

    rows(result.idle)
    out.append(f"  {'Total idle':<{width}}  {result.idle_total:>8.2f}")
    out += ["", "Per million requests"]
    rows(result.per_million_requests)
    out.append(f"  {'Total per million':<{width}}  {result.per_million_total:>8.2f}")
    if result.per_active_hour:
        out += ["", "Per hour of use"]
        rows(result.per_active_hour)
    out += ["", "Not included:"] + [f"  - {item}" for item in NOT_INCLUDED]
    return "\n".join(out)
