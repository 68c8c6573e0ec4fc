"""Names other tools depend on: the notebook, the docs and the tests use them.

Changing one of these breaks users' notebooks and scripts, so they live in one
place and the tests pin them.
"""

import hashlib
from typing import Final

VPC_STACK: Final = "MLflowVpcStack"
GATEWAY_STACK: Final = "HttpGatewayStack"
STUDIO_STACK: Final = "SageMakerStudioUserStack"
MONITORING_STACK: Final = "MLflowMonitoringStack"
# In deployment order (`cdk list` prints them so).
ALL_STACKS: Final = (VPC_STACK, GATEWAY_STACK, MONITORING_STACK, STUDIO_STACK)

# CloudFormation output keys (the lab helper reads TrackingUrl by this key).
OUTPUT_TRACKING_URL: Final = "TrackingUrl"
# IAM sign-in: the execute-api URL of the API that verifies SigV4 (signed clients use it).
OUTPUT_IAM_TRACKING_URL: Final = "IamTrackingUrl"
OUTPUT_ARTIFACT_BUCKET: Final = "ArtifactBucketName"
OUTPUT_CREDENTIALS_SECRET: Final = "CredentialsSecretName"  # noqa: S105 - an output's name
# What `make rotate-password` needs: the service to restart and how it authenticates.
OUTPUT_ECS_CLUSTER: Final = "EcsClusterName"
OUTPUT_ECS_SERVICE: Final = "EcsServiceName"
OUTPUT_AUTH_MODE: Final = "AuthMode"
OUTPUT_DATABASE_CLUSTER: Final = "DatabaseClusterIdentifier"
OUTPUT_AUDIT_LOG_GROUP: Final = "AuditLogGroupName"
OUTPUT_DOMAIN_ID: Final = "StudioDomainId"
OUTPUT_USER_PROFILES: Final = "StudioUserProfiles"  # comma-separated
# JSON: profile -> the managed policy that opens Studio as that profile (one person's).
OUTPUT_STUDIO_LAUNCH_POLICIES: Final = "StudioLaunchPolicies"
OUTPUT_SERVING_ROLE: Final = "ServingRoleArn"
OUTPUT_IMAGE_BUILD_PROJECT: Final = "ServingImageBuildProject"
OUTPUT_ALARM_TOPIC: Final = "AlarmTopicArn"
OUTPUT_DASHBOARD_URL: Final = "DashboardUrl"
# model_deployments: the function URL MLflow's webhook posts to.
OUTPUT_DEPLOYMENT_WEBHOOK_URL: Final = "ModelDeploymentWebhookUrl"
# sso mode with Cognito: where people and pipelines get their tokens (README, Single sign-on).
OUTPUT_USER_POOL_ID: Final = "CognitoUserPoolId"
OUTPUT_SIGN_IN_URL: Final = "CognitoSignInUrl"
OUTPUT_TOKEN_URL: Final = "OidcTokenUrl"  # noqa: S105 - an output's name
OUTPUT_API_SCOPE: Final = "OidcApiScope"

# CloudWatch dashboard of the request path.
DASHBOARD_NAME: Final = "mlflow"

# Tags on the Studio execution roles and training roles: the lab finds its
# MLflow login and the roles to hand SageMaker through its own role (iam:GetRole).
ROLE_TAG_CREDENTIALS_SECRET: Final = "mlflow:credentials-secret"  # noqa: S105 - a tag's name
ROLE_TAG_TRAINING_ROLE: Final = "mlflow:training-role"
ROLE_TAG_SERVING_ROLE: Final = "mlflow:serving-role"
# The prefix of the SageMaker names and bucket keys the profile's workflow may use.
ROLE_TAG_NAME_PREFIX: Final = "mlflow:name-prefix"

# SSM parameters, readable without CloudFormation permissions.
SSM_PREFIX: Final = "/mlflow"
SSM_TRACKING_URL: Final = f"{SSM_PREFIX}/tracking-url"
SSM_IAM_TRACKING_URL: Final = f"{SSM_PREFIX}/iam-tracking-url"
# IAM sign-in: one parameter per Studio profile below this path (iam_callers.profile_parameter),
# which the server reads with GetParametersByPath.
SSM_IAM_PRINCIPALS: Final = f"{SSM_PREFIX}/iam-principals"
SSM_ARTIFACT_BUCKET: Final = f"{SSM_PREFIX}/artifact-bucket"

# Container contract (docker/nginx, docker/mlflow).
NGINX_PORT: Final = 8080
# nginx's server for IAM sign-in: only the IAM API's listener reaches it, and only it trusts the caller header.
NGINX_IAM_PORT: Final = 8081
MLFLOW_PORT: Final = 5000
HEALTH_CHECK_PATH: Final = "/elb-status"
# Headers the HTTP APIs' parameter mapping overwrites on every request (and localrun's IAM
# stand-in writes the same way). API Gateway reserves X-Forwarded-*; nginx takes the public
# host and scheme from these instead (its same-origin check and the Host MLflow sees).
PUBLIC_HOST_HEADER: Final = "X-Public-Host"
PUBLIC_PROTO_HEADER: Final = "X-Public-Proto"
# The API's requestId (the access log's), which nginx's access log and the audit line
# repeat: the API cannot see who signed in (no authorizer: nginx or MLflow checks), so an
# access-log row finds its user through this id.
API_REQUEST_ID_HEADER: Final = "X-Api-Request-Id"
ARTIFACT_PREFIX: Final = "mlflow-artifacts"
DATABASE_NAME: Final = "mlflow"
# The user of the credentials secret: the shared login, or MLflow's admin in accounts mode.
SERVER_USERNAME: Final = "mlflow"
# sso mode with Cognito: the resource server and scope code asks for with the
# client-credentials grant (Studio profiles, pipelines): "<identifier>/<scope>".
API_RESOURCE_SERVER: Final = "mlflow"
API_SCOPE_NAME: Final = "api"
API_SCOPE: Final = f"{API_RESOURCE_SERVER}/{API_SCOPE_NAME}"
# OIDC paths on the public host (the server derives the redirect URI from the host it is called by).
OIDC_CALLBACK_PATH: Final = "/callback"

# Serving image: `mlflow sagemaker build-and-push-container` pushes here and
# MLflow's SageMaker deployment client pulls from here by default.
SERVING_IMAGE_REPOSITORY: Final = "mlflow-pyfunc"
SERVING_IMAGE_BUILD_PROJECT: Final = "mlflow-pyfunc-image-build"

# The Studio domain the stack creates when no sagemaker_domain_id is configured.
STUDIO_DOMAIN_NAME: Final = "mlflow-studio"

# SageMaker resources the Studio workflow creates carry this prefix, so the
# Studio role can be scoped to them.
SAGEMAKER_RESOURCE_PREFIX: Final = "mlflow-"
# Artifact bucket keys of the workflow's training jobs: <prefix>/<job name>/source|output/...
TRAINING_KEY_PREFIX: Final = "sagemaker"


def workflow_name_prefix(profile: str) -> str:
    """`mlflow-<8 hex digits>-`: the SageMaker names (and so bucket keys) one profile's workflow uses.

    A digest of the profile name (lower case, as SageMaker's ARNs spell names) has a fixed
    length, so no profile's prefix starts another's and none is `mlflow-registry-`; it is
    exactly as long as the part of a name MLflow's SageMaker deployment keeps when it
    shortens one.
    """
    return f"{SAGEMAKER_RESOURCE_PREFIX}{hashlib.sha256(profile.lower().encode()).hexdigest()[:8]}-"


# SageMaker logs each endpoint to a log group of its own: <this><endpoint name>.
ENDPOINT_LOG_GROUP_PREFIX: Final = "/aws/sagemaker/Endpoints/"
# and every training job to one group, in streams named <job name>/algo-<n>-<time>.
TRAINING_LOG_GROUP: Final = "/aws/sagemaker/TrainingJobs"

# Endpoints, endpoint configs, models and rollback alarms that registry aliases
# deploy (model_deployments) start with this: <prefix>-<registered model name>.
MODEL_DEPLOYMENT_PREFIX: Final = f"{SAGEMAKER_RESOURCE_PREFIX}registry"
# The IAM resource-name wildcard of those: only the deployment worker changes them.
MODEL_DEPLOYMENT_NAMES: Final = f"{MODEL_DEPLOYMENT_PREFIX}-*"
# The SageMaker resource types a registry deployment creates under those names.
MODEL_DEPLOYMENT_RESOURCE_TYPES: Final = ("model", "endpoint-config", "endpoint")
# Artifact bucket keys the deployed versions' files are copied to (endpoints read only
# these): outside MLflow's prefix and the keys Studio users may write.
MODEL_COPY_PREFIX: Final = "model-deployments"
# sso mode with model_deployments: the MLflow service account the deployment functions sign
# in as (an access token the server issues into its secret, docker/mlflow/entrypoint.py).
DEPLOYMENT_LOGIN_USERNAME: Final = "model-deployment"
DEPLOYMENT_LOGIN_SECRET_ENV: Final = "MLFLOW_DEPLOYMENT_LOGIN_SECRET_ARN"  # noqa: S105 - a variable's name
