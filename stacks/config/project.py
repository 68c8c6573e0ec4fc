"""The whole configuration: its sections, the rules between settings, and reading it from CDK context."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator
from pydantic_core import PydanticUndefined

from stacks import names, task_sizing
from stacks.auth_modes import MODES
from stacks.config.base import ConfigError, Invalid, Section
from stacks.config.database import Database
from stacks.config.domain import DOMAIN_KEYS, Domain
from stacks.config.identity import EXTERNAL_KEYS, Auth, Sso, Studio
from stacks.config.network import Network
from stacks.config.operations import Operations
from stacks.config.service import FARGATE_MEMORY, Service, describe

if TYPE_CHECKING:
    from constructs import Construct

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"

# Keys that were renamed: a clear message instead of "unknown key".
_RENAMED = {
    "user_profile_name": (
        "user_profiles",
        "a list of Studio user profile names, e.g. -c user_profiles=alice,bob",
    ),
}

# What pydantic's error types mean, in the words of our messages.
_PROBLEMS = {
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "int_type": "is not a whole number",
    "float_parsing": "is not a finite number",
    "float_type": "is not a finite number",
    "finite_number": "is not a finite number",
    "string_type": "is not a string",
    "list_type": "is not a list",
    "literal_error": "is not one of the allowed values",
}


def _smallest_task(cpu: int, memory_mib: int) -> str:
    """The smallest Fargate size with at least ``memory_mib``, keeping ``cpu`` if it can."""
    for task_cpu in [cpu, *(c for c in FARGATE_MEMORY if c > cpu)]:
        fitting = [size for size in FARGATE_MEMORY[task_cpu] if size >= memory_mib]
        if fitting:
            prefix = "" if task_cpu == cpu else f"task_cpu={task_cpu} and "
            return f"{prefix}task_memory_mib={fitting[0]}"
    return "no Fargate size"


def _message(key: str, value: Any, problem: str, allowed: str) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"Invalid configuration: {key}={shown} {problem}; allowed: {allowed}."


class ProjectConfig(Section):
    """Deployment settings in sections; the flat context key of each one is its field name in its section."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    network: Network = Network()
    service: Service = Service()
    database: Database = Database()
    operations: Operations = Operations()
    auth: Auth = Auth()
    sso: Sso = Sso()
    studio: Studio = Studio()
    domain: Domain = Domain()

    @classmethod
    def sections(cls) -> dict[str, type[BaseModel]]:
        """Section name -> its model, in declaration order."""
        result = {}
        for name, info in cls.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                result[name] = kind
        return result

    @model_validator(mode="before")
    @classmethod
    def _into_sections(cls, values: Any) -> Any:
        """Flat keys (as context gives them) go to the section that declares them."""
        if not isinstance(values, Mapping):
            return values
        for old, (new, what) in _RENAMED.items():
            if old in values:
                raise Invalid(f"was renamed to {new}", key=old, value=values[old], allowed=what)
        grouped: dict[str, Any] = {}
        owner = {key: section for section, model in cls.sections().items() for key in model.model_fields}
        for key, value in values.items():
            if key in owner:
                grouped.setdefault(owner[key], {})[key] = value
            else:
                grouped[key] = value
        return grouped

    # --- rules between settings --------------------------------------------
    # A rule between two settings names the one the user changed: `-c
    # max_task_count=1` is about max_task_count, even though min_task_count=2
    # is what it collides with.

    @model_validator(mode="after")
    def _check_combinations(self, info: ValidationInfo) -> ProjectConfig:
        changed = _changed_keys(self, info)
        self._check_nat_gateways(changed)
        self._check_task_size(changed)
        self._check_task_counts(changed)
        self._check_aurora_capacity(changed)
        self._check_custom_domain()
        self._check_profiles_against_admin()
        self._check_sso()
        self._check_iam_sign_in()
        self._check_federation_names()
        self._check_model_deployments()
        return self

    def _check_model_deployments(self) -> None:
        """An endpoint may only use an instance type the project allows (IAM denies the others too)."""
        studio = self.studio
        for deployment in studio.model_deployments:
            if deployment.instance_type not in studio.allowed_instance_types:
                raise Invalid(
                    f"deploys {deployment.model_name!r} on {deployment.instance_type}, not in allowed_instance_types",
                    key="model_deployments",
                    value=deployment.instance_type,
                    allowed=", ".join(studio.allowed_instance_types),
                )

    @property
    def cognito_enabled(self) -> bool:
        """sso mode with the Cognito user pool the stack creates."""
        return self.auth.needs.sign_in_provider and self.sso.oidc_provider == "cognito"

    def _check_federation_names(self) -> None:
        """The sign-in page offers both lists: at least one provider, none twice; federation needs the pool."""
        sso = self.sso
        if not sso.cognito_identity_providers and not sso.cognito_federation:
            raise Invalid(
                "is empty and cognito_federation defines no provider",
                key="cognito_identity_providers",
                value=sso.cognito_identity_providers,
                allowed=allowed("cognito_identity_providers"),
            )
        if not sso.cognito_federation:
            return
        shown = [provider.name for provider in sso.cognito_federation]
        if not self.cognito_enabled:
            raise Invalid(
                "is only used with auth_mode=sso and oidc_provider=cognito",
                key="cognito_federation",
                value=shown,
                allowed="[] (the default), or set auth_mode=sso with oidc_provider=cognito",
            )
        twice = next((name for name in shown if name in sso.cognito_identity_providers), None)
        if twice is not None:
            raise Invalid(
                f"defines {twice!r}, which cognito_identity_providers lists too",
                key="cognito_federation",
                value=shown,
                allowed="provider names not in cognito_identity_providers (that list is for providers added by hand)",
            )

    def _check_sso(self) -> None:
        """An external issuer needs its discovery URL and client secret; Cognito-only keys need Cognito."""
        if not self.auth.needs.sign_in_provider:
            return
        sso = self.sso
        if sso.oidc_provider == "external":
            missing = next((key for key in EXTERNAL_KEYS if getattr(sso, key) is None), None)
            if missing is not None:
                raise Invalid(
                    "is empty, but oidc_provider=external needs it",
                    key=missing,
                    value="",
                    allowed=allowed(missing).removeprefix("empty, or "),
                )
            if sso.cognito_domain_prefix is not None:
                raise Invalid(
                    "is only used with oidc_provider=cognito",
                    key="cognito_domain_prefix",
                    value=sso.cognito_domain_prefix,
                    allowed="empty with oidc_provider=external",
                )
            if sso.cognito_identity_providers != ["COGNITO"]:
                raise Invalid(
                    "is only used with oidc_provider=cognito (federate in your own provider instead)",
                    key="cognito_identity_providers",
                    value=sso.cognito_identity_providers,
                    allowed="COGNITO (the default) with oidc_provider=external",
                )
            return
        given = next((key for key in EXTERNAL_KEYS if getattr(sso, key) is not None), None)
        if given is not None:
            raise Invalid(
                "is only used with oidc_provider=external",
                key=given,
                value=getattr(sso, given),
                allowed="empty with oidc_provider=cognito, or set oidc_provider=external",
            )
        for key in ("oidc_admin_group", "oidc_allowed_group"):
            group = getattr(sso, key)
            if group is not None and any(character.isspace() for character in group):
                raise Invalid(
                    "has a space, which Cognito group names cannot",
                    key=key,
                    value=group,
                    allowed="a name without spaces with oidc_provider=cognito",
                )
        if sso.oidc_allowed_group == sso.oidc_admin_group:
            raise Invalid(
                "is the admin group too",
                key="oidc_allowed_group",
                value=sso.oidc_allowed_group,
                allowed=f"empty or a group other than oidc_admin_group={sso.oidc_admin_group}",
            )

    @property
    def iam_sign_in_enabled(self) -> bool:
        """IAM sign-in as deployed: the setting, or where it is unset, whether the mode supports it.

        Unset in sso mode it is on with the Cognito pool only: there each Studio profile's app client
        (its machine user) is known at deploy, an external provider's only after it.
        """
        if self.auth.iam_sign_in is not None:
            return self.auth.iam_sign_in
        return self.auth.needs.iam_sign_in and (self.cognito_enabled or not self.auth.needs.sign_in_provider)

    def _check_iam_sign_in(self) -> None:
        """IAM sign-in only where the mode maps a caller to a user; its principals only with it on."""
        auth = self.auth
        if auth.iam_sign_in and not auth.needs.iam_sign_in:
            supported = [mode for mode, needs in MODES.items() if needs.iam_sign_in]
            raise Invalid(
                f"is not supported with auth_mode={auth.auth_mode}",
                key="iam_sign_in",
                value=auth.iam_sign_in,
                allowed=f"false or empty with auth_mode={auth.auth_mode}; true with auth_mode={', '.join(supported)}",
            )
        if auth.iam_principals and not self.iam_sign_in_enabled:
            raise Invalid(
                "is only used with IAM sign-in on",
                key="iam_principals",
                value=auth.iam_principals,
                allowed=f"{{}} while IAM sign-in is off (auth_mode={auth.auth_mode}, iam_sign_in={auth.iam_sign_in})",
            )

    def _check_profiles_against_admin(self) -> None:
        profiles = self.studio.user_profiles
        admin = next((p for p in profiles if p.lower() == names.SERVER_USERNAME), None)
        if self.auth.needs.admin_login and admin is not None:
            raise Invalid(
                f"names {admin!r}, the MLflow admin's user name in accounts mode",
                key="user_profiles",
                value=profiles,
                allowed=f"profile names other than {names.SERVER_USERNAME}",
            )

    def _check_nat_gateways(self, changed: _Changed) -> None:
        nat, azs = self.network.nat_gateways, self.network.az_count
        if nat > azs:
            changed.refuse(
                Invalid(
                    f"is more than az_count={azs}",
                    key="nat_gateways",
                    value=nat,
                    allowed=f"1-{azs}, at most one per AZ",
                ),
                Invalid(
                    f"is less than nat_gateways={nat}",
                    key="az_count",
                    value=azs,
                    allowed=f"{nat}-3 (one AZ per NAT gateway)",
                ),
            )

    def _check_task_size(self, changed: _Changed) -> None:
        cpu, mib, workers = self.service.task_cpu, self.service.task_memory_mib, self.service.mlflow_workers
        memory = FARGATE_MEMORY[cpu]
        if mib not in memory:
            if changed.blame("task_memory_mib", "task_cpu") == "task_cpu":
                cpus = [c for c, sizes in FARGATE_MEMORY.items() if mib in sizes]
                raise Invalid(
                    f"is not accepted by Fargate with task_memory_mib={mib}",
                    key="task_cpu",
                    value=cpu,
                    allowed=f"{', '.join(map(str, cpus)) or 'none'} with task_memory_mib={mib}",
                )
            raise Invalid(
                f"is not accepted by Fargate with task_cpu={cpu}",
                key="task_memory_mib",
                value=mib,
                allowed=describe(memory),
            )
        needed = task_sizing.memory_needed_mib(workers)
        if mib >= needed:
            return
        estimate = (
            f"{needed} MiB or more (measured peak about {task_sizing.peak_mib(workers)} MiB "
            f"plus {task_sizing.HEADROOM:.0%} headroom)"
        )
        if changed.blame("mlflow_workers", "task_memory_mib") == "task_memory_mib":
            raise Invalid(
                f"is too small for mlflow_workers={workers}, which need {estimate}",
                key="task_memory_mib",
                value=mib,
                allowed=f"{_smallest_task(cpu, needed)} or more, or fewer mlflow_workers",
            )
        most = task_sizing.max_workers(mib)
        fitting = {0: "none", 1: "1"}.get(most, f"1-{most}")
        raise Invalid(
            f"needs a task of {estimate}, more than task_memory_mib={mib}",
            key="mlflow_workers",
            value=workers,
            allowed=f"{fitting} with task_memory_mib={mib}; {workers} with {_smallest_task(cpu, needed)} or more",
        )

    def _check_task_counts(self, changed: _Changed) -> None:
        low, high, desired = self.service.min_task_count, self.service.max_task_count, self.service.desired_task_count
        if low > high:
            changed.refuse(
                Invalid(f"is more than max_task_count={high}", key="min_task_count", value=low, allowed=f"1-{high}"),
                Invalid(f"is less than min_task_count={low}", key="max_task_count", value=high, allowed=f"{low}-20"),
            )
        if low <= desired <= high:
            return
        bound = "min_task_count" if desired < low else "max_task_count"
        if changed.blame("desired_task_count", bound) == "min_task_count":
            raise Invalid(
                f"is more than desired_task_count={desired}",
                key="min_task_count",
                value=low,
                allowed=f"1-{desired} (at most desired_task_count)",
            )
        if changed.blame("desired_task_count", bound) == "max_task_count":
            raise Invalid(
                f"is less than desired_task_count={desired}",
                key="max_task_count",
                value=high,
                allowed=f"{desired}-20 (at least desired_task_count)",
            )
        raise Invalid(
            "is outside the autoscaling range",
            key="desired_task_count",
            value=desired,
            allowed=f"{low}-{high} (min_task_count to max_task_count)",
        )

    def _check_aurora_capacity(self, changed: _Changed) -> None:
        low, high = self.database.aurora_min_acu, self.database.aurora_max_acu
        if low > high:
            step = "in steps of 0.5"
            changed.refuse(
                Invalid(
                    f"is more than aurora_max_acu={high:g}",
                    key="aurora_min_acu",
                    value=low,
                    allowed=f"0-{high:g} {step}",
                ),
                Invalid(
                    f"is less than aurora_min_acu={low:g}",
                    key="aurora_max_acu",
                    value=high,
                    allowed=f"{max(low, 1):g}-256 {step}",
                ),
            )

    def _check_custom_domain(self) -> None:
        """A custom domain needs its zone (id and name, imported without a lookup) and must sit in it."""
        domain = self.domain
        given = [key for key in DOMAIN_KEYS if getattr(domain, key) is not None]
        if given and len(given) < len(DOMAIN_KEYS):
            missing = [key for key in DOMAIN_KEYS if key not in given]
            raise Invalid(
                f"is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not",
                key=given[0],
                value=getattr(domain, given[0]),
                allowed="all three of domain_name, hosted_zone_id, hosted_zone_name, or none",
            )
        zone = domain.hosted_zone_name
        if domain.domain_name is not None and zone is not None:
            if domain.domain_name != zone and not domain.domain_name.endswith(f".{zone}"):
                raise Invalid(
                    f"is not inside hosted_zone_name={zone}",
                    key="domain_name",
                    value=domain.domain_name,
                    allowed=f"{zone} or a name ending in .{zone}",
                )

    # --- construction --------------------------------------------------------

    def __init__(self, **values: Any) -> None:
        # pydantic's documented way to hand a validation context to __init__.
        try:
            self.__pydantic_validator__.validate_python(values, self_instance=self, context=_CONTEXT.get())
        except ValidationError as error:
            raise ConfigError(_one_line(error, values, type(self).documented())) from None

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> ProjectConfig:
        """Build from the whole CDK context, ignoring the CDK's own keys ("@..." flags, "a:b" keys)."""
        known = list(cls.documented())
        ours = {k: v for k, v in context.items() if not k.startswith("@") and ":" not in k}
        for key in ours:
            if key not in known and key not in _RENAMED:  # a renamed key gets its own message
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(
                    f"Invalid configuration: unknown context key {key!r}{hint}; allowed keys: {', '.join(known)}."
                )
        with _validation_context({"changed": _changed_from(ours, _base_context())}):
            return cls(**ours)

    @classmethod
    def documented(cls) -> dict[str, tuple[Any, str, str]]:
        """Flat key -> (default, allowed, purpose), section by section (docs/configuration.md, cdk.json)."""
        result = {}
        for name, info in _flat_fields(cls):
            extra = info.json_schema_extra
            assert isinstance(extra, dict)
            default = None if info.default is PydanticUndefined else info.default
            result[name] = (default, str(extra["allowed"]), str(extra["purpose"]))
        return result

    def flat(self) -> dict[str, Any]:
        """Flat key -> value, as context would give it."""
        result = {key: getattr(self, key) for key in type(self).model_fields if key not in self.sections()}
        for section in self.sections():
            result.update(dict(getattr(self, section)))
        return result


def _flat_fields(model: type[ProjectConfig]) -> Iterator[tuple[str, Any]]:
    for name, info in model.model_fields.items():
        if name in model.sections():
            yield from model.sections()[name].model_fields.items()
        else:
            yield name, info


def allowed(key: str) -> str:
    """What a setting accepts, as docs/configuration.md and the error messages say it."""
    return ProjectConfig.documented()[key][1]


def _problem(model: type[ProjectConfig], key: str, error_type: str) -> str:
    """A field's own wording for a failed pattern or Literal check, else pydantic's error type in our words."""
    info = dict(_flat_fields(model)).get(key)
    extra = info.json_schema_extra if info is not None else None
    if isinstance(extra, dict) and "problem" in extra and error_type not in ("string_type", "int_parsing"):
        return str(extra["problem"])
    return _PROBLEMS.get(error_type, "is out of range")


def _one_line(error: ValidationError, values: Mapping[str, Any], documented: dict[str, tuple[Any, str, str]]) -> str:
    """The first problem pydantic found, as 'Invalid configuration: key=value problem; allowed: ...'."""
    first = error.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    loc = [part for part in first["loc"] if isinstance(part, str)]
    key = next((part for part in loc if part in documented), loc[0] if loc else "")
    if isinstance(cause, Invalid):
        key = cause.key or key
        value = cause.value if cause.key else values.get(key, first.get("input"))
        return _message(key, value, cause.problem, cause.allowed or documented[key][1])
    return _message(key, first.get("input"), _problem(ProjectConfig, key, first["type"]), documented[key][1])


# --- which settings the user changed ------------------------------------------

_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("project_config_context", default=None)


@contextmanager
def _validation_context(context: dict[str, Any]) -> Iterator[None]:
    token = _CONTEXT.set(context)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _same(value: Any, base: Any) -> bool:
    """`-c key=value` arrives as a string: "4" is the same setting as cdk.json's 4."""
    return bool(value == base or str(value).strip() == str(base).strip())


def _base_context() -> dict[str, Any]:
    """cdk.json's settings, which `-c` overrides; the code defaults if cdk.json cannot be read."""
    try:
        return cdk_json_context(CDK_JSON)
    except (OSError, ValueError, KeyError):
        return {name: default for name, (default, _, _) in ProjectConfig.documented().items()}


def _changed_from(values: Mapping[str, Any], base: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(key for key, value in values.items() if key not in base or not _same(value, base[key]))


class _Changed:
    """Which settings to blame for a conflict: first those overridden on the command line
    (differing from cdk.json), then those differing from the code defaults (cdk.json edited)."""

    def __init__(self, *tiers: frozenset[str]) -> None:
        self.tiers = tiers

    def blame(self, usual: str, other: str) -> str:
        """``usual`` unless only ``other`` was changed."""
        for tier in self.tiers:
            if usual in tier:
                return usual
            if other in tier:
                return other
        return usual

    def refuse(self, usual: Invalid, other: Invalid) -> NoReturn:
        """Raise ``usual`` unless only ``other``'s key was changed."""
        assert usual.key is not None and other.key is not None
        raise other if self.blame(usual.key, other.key) == other.key else usual


def _changed_keys(config: ProjectConfig, info: ValidationInfo) -> _Changed:
    defaults = {name: default for name, (default, _, _) in type(config).documented().items()}
    from_defaults = _changed_from(config.flat(), defaults)
    given = (info.context or {}).get("changed")
    explicit = frozenset(given) if given is not None else _fields_set(config) & from_defaults
    return _Changed(explicit, from_defaults)


def _fields_set(config: ProjectConfig) -> frozenset[str]:
    """Flat keys given explicitly when the config was built in code."""
    keys = set(config.model_fields_set) - set(config.sections())
    for section in config.sections():
        if section in config.model_fields_set:
            keys |= getattr(config, section).model_fields_set
    return frozenset(keys)


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """cdk.json's context; tests pass it to cdk.App(context=...), which does not read cdk.json."""
    return dict(json.loads(path.read_text(encoding="utf-8"))["context"])


def config_from_app(app: Construct) -> ProjectConfig:
    """The validated config for an app (or any construct) from its tree's context."""
    return ProjectConfig.from_context(app.node.get_all_context())
