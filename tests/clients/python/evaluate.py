"""Evaluates flags through the official OpenFeature Python SDK and its OFREP provider.

stdin: {"baseUrl", "token", "cases": [{"flag", "type": "boolean"|"string"|"number"|"object",
"default", "context"}]}; stdout: one result per case, as JSON:
{"flag", "value", "variant", "reason", "errorCode", "metadata"}.
"""

import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def text(value):
    """An SDK enum (reason, error code) as its wire string."""
    if value is None:
        return None
    return getattr(value, "value", value)


def main():
    request = json.load(sys.stdin)
    token = request["token"]
    api.set_provider(
        OFREPProvider(
            request["baseUrl"],
            headers_factory=lambda: {"Authorization": f"Bearer {token}"},
        )
    )
    client = api.get_client()
    details = {
        "boolean": client.get_boolean_details,
        "string": client.get_string_details,
        "number": client.get_float_details,
        "object": client.get_object_details,
    }
    results = []
    for case in request["cases"]:
        attributes = dict(case["context"])
        targeting_key = attributes.pop("targetingKey", None)
        context = EvaluationContext(targeting_key=targeting_key, attributes=attributes)
        d = details[case["type"]](case["flag"], case["default"], context)
        results.append(
            {
                "flag": case["flag"],
                "value": d.value,
                "variant": d.variant,
                "reason": text(d.reason),
                "errorCode": text(d.error_code),
                "metadata": dict(d.flag_metadata or {}),
            }
        )
    json.dump(results, sys.stdout)
    api.shutdown()


if __name__ == "__main__":
    main()
