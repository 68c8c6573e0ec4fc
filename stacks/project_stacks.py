"""The four stacks of one app, handed from the builder to whatever inspects them."""

from dataclasses import dataclass

from stacks.http_gateway_stack import HttpGatewayStack
from stacks.mlflow_monitoring_stack import MLflowMonitoringStack
from stacks.mlflow_vpc_stack import MLflowVpcStack
from stacks.sagemaker_studio_user_stack import SageMakerStudioUserStack


@dataclass(frozen=True)
class ProjectStacks:
    vpc: MLflowVpcStack
    gateway: HttpGatewayStack
    monitoring: MLflowMonitoringStack
    studio: SageMakerStudioUserStack
