"""SARIF 2.1.0 export of the bot's findings (for code-scanning tools)."""

from __future__ import annotations

from typing import Any

from ect import __version__

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def to_sarif(findings: list[dict[str, Any]]) -> dict[str, Any]:
    """`findings`: dicts with rule, severity, message, path, line, fp (and optionally resolved)."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for f in findings:
        rule = str(f["rule"])
        rules.setdefault(rule, {"id": rule, "shortDescription": {"text": rule.replace("-", " ")}})
        result: dict[str, Any] = {
            "ruleId": rule,
            "level": "error" if f.get("severity") == "blocking" else "warning",
            "message": {"text": str(f["message"])},
            "partialFingerprints": {"ectFingerprint/v1": str(f["fp"])},
            "properties": {"severity": f.get("severity"), "blocking": f.get("severity") == "blocking"},
        }
        if f.get("path"):
            location: dict[str, Any] = {"artifactLocation": {"uri": str(f["path"])}}
            if f.get("line"):
                location["region"] = {"startLine": int(f["line"])}
            result["locations"] = [{"physicalLocation": location}]
        if f.get("resolved"):
            result["baselineState"] = "absent"
        results.append(result)
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {"name": "ect-review", "version": __version__, "rules": list(rules.values())}
                },
                "results": results,
            }
        ],
    }
