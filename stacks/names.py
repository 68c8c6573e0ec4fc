"""Names other tools depend on: the notebook, the docs and the tests use them.

Changing one of these breaks users' notebooks and scripts, so they live in one
place and the tests pin them.
"""

from typing import Final

VPC_STACK: Final = "MLflowVpcStack"
GATEWAY_STACK: Final = "HttpGatewayStack"
STUDIO_STACK: Final = "SageMakerStudioUserStack"
MONITORING_STACK: Final = "MLflowMonitoringStack"
# In deployment order (`cdk list` prints them so).
ALL_STACKS: Final = (VPC_STACK, GATEWAY_STACK, MONITORING_STACK, STUDIO_STACK)

# CloudFormation output keys (the lab helper reads TrackingUrl by this key).
OUTPUT_TRACKING_URL: Final = "TrackingUrl"
OUTPUT_ARTIFACT_BUCKET: Final = "ArtifactBucketName"
OUTPUT_CREDENTIALS_SECRET: Final = "CredentialsSecretName"
# What `make rotate-password` needs: the service to restart and how it authenticates.
OUTPUT_ECS_CLUSTER: Final = "EcsClusterName"
OUTPUT_ECS_SERVICE: Final = "EcsServiceName"
OUTPUT_AUTH_MODE: Final = "AuthMode"
OUTPUT_DATABASE_CLUSTER: Final = "DatabaseClusterIdentifier"
OUTPUT_STUDIO_ROLE: Final = "StudioExecutionRoleArn"
OUTPUT_DOMAIN_ID: Final = "StudioDomainId"
OUTPUT_USER_PROFILE: Final = "StudioUserProfileName"
OUTPUT_IMAGE_BUILD_PROJECT: Final = "ServingImageBuildProject"
OUTPUT_ALARM_TOPIC: Final = "AlarmTopicArn"
OUTPUT_DASHBOARD_URL: Final = "DashboardUrl"

# CloudWatch dashboard of the request path.
DASHBOARD_NAME: Final = "mlflow"

# SSM parameters, readable without CloudFormation permissions.
SSM_PREFIX: Final = "/mlflow"
SSM_TRACKING_URL: Final = f"{SSM_PREFIX}/tracking-url"
SSM_ARTIFACT_BUCKET: Final = f"{SSM_PREFIX}/artifact-bucket"

# Container contract (docker/nginx, docker/mlflow).
NGINX_PORT: Final = 8080
MLFLOW_PORT: Final = 5000
HEALTH_CHECK_PATH: Final = "/elb-status"
ARTIFACT_PREFIX: Final = "mlflow-artifacts"
DATABASE_NAME: Final = "mlflow"

# Serving image: `mlflow sagemaker build-and-push-container` pushes here and
# MLflow's SageMaker deployment client pulls from here by default.
SERVING_IMAGE_REPOSITORY: Final = "mlflow-pyfunc"
SERVING_IMAGE_BUILD_PROJECT: Final = "mlflow-pyfunc-image-build"

# SageMaker resources the Studio workflow creates carry this prefix, so the
# Studio role can be scoped to them.
SAGEMAKER_RESOURCE_PREFIX: Final = "mlflow-"
