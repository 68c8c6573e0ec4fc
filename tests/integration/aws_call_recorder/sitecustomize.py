"""Record every botocore API call a Python process makes, for the Studio role test.

Active only when AWS_CALL_LOG names a file: the e2e tests put this directory on
PYTHONPATH, so the notebook kernel and the train.py processes it starts record
too. One JSON line per call: IAM service prefix, operation, region, the
request parameters that name resources (bodies and long values dropped), and
the training job the process runs as, if any (its calls use the job's role),
and the names (never the values) of the MLFLOW_TRACKING_* variables the process
holds. When the process ends, one more line with those names goes to
AWS_CALL_LOG + ".exit" (what it held last, after any AWS call).
"""

import atexit
import json
import os

_LOG = os.environ.get("AWS_CALL_LOG")
_DROP = {"Body", "SecretString", "SecretBinary", "imageManifest"}


def _clean(value, depth=0):
    if isinstance(value, dict) and depth < 6:
        return {k: _clean(v, depth + 1) for k, v in value.items() if k not in _DROP}
    if isinstance(value, (list, tuple)) and depth < 6:
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value[:300] if isinstance(value, str) else value
    return type(value).__name__


def _install():
    try:
        from botocore.client import BaseClient
    except ImportError:
        return
    original = BaseClient._make_api_call

    def recording(self, operation_name, api_params):
        model = self.meta.service_model
        line = json.dumps(
            {
                "service": model.signing_name,
                "endpoint_prefix": model.endpoint_prefix,
                "operation": operation_name,
                "region": self.meta.region_name,
                "params": _clean(api_params),
                "pid": os.getpid(),
                "job": os.environ.get("TRAINING_JOB_NAME"),
                "mlflow_env": _mlflow_env(),
            }
        )
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(line + "\n")
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = recording
    atexit.register(_record_exit)


def _mlflow_env():
    return sorted(name for name in os.environ if name.startswith("MLFLOW_TRACKING_"))


def _record_exit():
    line = {"pid": os.getpid(), "job": os.environ.get("TRAINING_JOB_NAME"), "mlflow_env": _mlflow_env()}
    with open(_LOG + ".exit", "a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")


if _LOG:
    _install()
