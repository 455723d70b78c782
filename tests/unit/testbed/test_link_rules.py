"""The link recording rules (charts/continuum/files/link-rules.yaml), evaluated by promtool on
made-up probe series: the mean RTT counts answered probes only, the loss is the share of probes
not answered, and a pair none of whose probes was answered has loss 1 and no RTT. Also: the
testbed's scrape configuration passes `promtool check config`, with every pair labelled."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import monitoring

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus)"),
]

WINDOW_S = 30
EVAL_S = 50


def _series(name: str, labels: dict[str, str], values: list[float]) -> dict[str, str]:
    text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"series": f"{name}{{{text}}}", "values": " ".join(f"{v:g}" for v in values)}


def _pair(source: str, target: str, rtts: list[float | None]) -> list[dict[str, str]]:
    """One probe a second: an RTT in seconds, or None for a probe not answered (which the
    exporter reports as success 0 and an RTT phase of 0)."""
    labels = {
        "job": monitoring.JOB,
        "instance": "10.77.9.1",
        "source_site": source,
        "target_site": target,
    }
    return [
        _series("probe_success", labels, [0.0 if rtt is None else 1.0 for rtt in rtts]),
        _series(
            "probe_icmp_duration_seconds", {**labels, "phase": "rtt"}, [rtt or 0.0 for rtt in rtts]
        ),
        # The other phases must not count in the RTT.
        _series("probe_icmp_duration_seconds", {**labels, "phase": "setup"}, [0.001 for _ in rtts]),
    ]


def _nano(value: float) -> float:
    return float(round(value * 1e9))


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, check=False, cwd=cwd, timeout=60
    )


def test_the_rules_give_rtt_over_answered_probes_loss_and_none_when_cut(tmp_path: Path) -> None:
    samples = EVAL_S + 1
    steady = [0.08] * samples
    # Every third probe lost; the answered ones take 50 ms, or 70 ms: a mean of 60 ms.
    lossy: list[float | None] = [
        None if i % 3 == 0 else (0.05 if i % 3 == 1 else 0.07) for i in range(samples)
    ]
    # Answered until 15 s, then cut: at 50 s the whole window is unanswered.
    cut: list[float | None] = [0.02 if i < 15 else None for i in range(samples)]
    # The window [20 s, 50 s] holds 31 samples (both ends are included).
    window = [i for i in range(samples) if EVAL_S - WINDOW_S <= i <= EVAL_S]
    lost = sum(1 for i in window if lossy[i] is None)
    tests: dict[str, Any] = {
        "rule_files": [str(monitoring.RULES)],
        "evaluation_interval": "2s",
        "tests": [
            {
                "interval": "1s",
                "input_series": _pair("hub", "delft", list(steady))
                + _pair("hub", "ghent", lossy)
                + _pair("delft", "ghent", cut),
                "promql_expr_test": [
                    {
                        # In nanoseconds, rounded: promtool compares floats exactly.
                        "expr": "round(continuum:link_rtt_seconds * 1e9)",
                        "eval_time": f"{EVAL_S}s",
                        "exp_samples": [
                            {"labels": '{source_site="hub",target_site="delft"}', "value": 8e7},
                            {
                                "labels": '{source_site="hub",target_site="ghent"}',
                                "value": _nano(
                                    sum(lossy[i] or 0.0 for i in window) / (len(window) - lost)
                                ),
                            },
                        ],
                    },
                    {
                        "expr": "round(continuum:link_loss_ratio * 1e9)",
                        "eval_time": f"{EVAL_S}s",
                        "exp_samples": [
                            {"labels": '{source_site="delft",target_site="ghent"}', "value": 1e9},
                            {"labels": '{source_site="hub",target_site="delft"}', "value": 0},
                            {
                                "labels": '{source_site="hub",target_site="ghent"}',
                                "value": _nano(lost / len(window)),
                            },
                        ],
                    },
                    {
                        "expr": 'continuum:link_probes{target_site="ghent"}',
                        "eval_time": f"{EVAL_S}s",
                        "exp_samples": [
                            {
                                "labels": f'continuum:link_probes{{source_site="{source}",'
                                'target_site="ghent"}',
                                "value": len(window),
                            }
                            for source in ("delft", "hub")
                        ],
                    },
                    {
                        "expr": 'continuum:link_probes_answered{source_site="delft"}',
                        "eval_time": f"{EVAL_S}s",
                        "exp_samples": [
                            {
                                "labels": 'continuum:link_probes_answered{source_site="delft",'
                                'target_site="ghent"}',
                                "value": 0,
                            },
                        ],
                    },
                    {
                        # Before the cut the pair had an RTT; 30 s after it, none.
                        "expr": 'continuum:link_rtt_seconds{source_site="delft"}',
                        "eval_time": "10s",
                        "exp_samples": [
                            {
                                "labels": 'continuum:link_rtt_seconds{source_site="delft",'
                                'target_site="ghent"}',
                                "value": 0.02,
                            },
                        ],
                    },
                    {
                        "expr": 'continuum:link_rtt_seconds{source_site="delft"}',
                        "eval_time": f"{EVAL_S}s",
                        "exp_samples": [],
                    },
                ],
            }
        ],
    }
    assert 0 < lost < len(window)
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool("test", "rules", str(test_file), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_file_is_valid_and_names_the_documented_series() -> None:
    result = _promtool("check", "rules", str(monitoring.RULES), cwd=monitoring.RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    groups = yaml.safe_load(monitoring.RULES.read_text())["groups"]
    assert [group["name"] for group in groups] == ["continuum.links"]
    assert [rule["record"] for rule in groups[0]["rules"]] == [
        "continuum:link_probes",
        "continuum:link_probes_answered",
        "continuum:link_loss_ratio",
        "continuum:link_rtt_seconds",
    ]
    assert all(f'job="{monitoring.JOB}"' in rule["expr"] for rule in groups[0]["rules"])


def test_the_scrape_config_probes_each_pair_once_with_its_labels(tmp_path: Path) -> None:
    addresses = {"delft": "10.77.1.1", "ghent": "10.77.2.1", "ulm": "10.77.3.1"}
    config = monitoring.prometheus_config(addresses, "127.0.0.1:9999", monitoring.RULES)
    (scrape,) = config["scrape_configs"]
    assert scrape["job_name"] == monitoring.JOB
    assert scrape["params"] == {"module": [monitoring.MODULE]}
    pairs = {
        (group["labels"]["source_site"], group["labels"]["target_site"]): group
        for group in scrape["static_configs"]
    }
    assert len(pairs) == len(scrape["static_configs"]) == 3 + 3 * 2
    assert pairs[("hub", "ghent")]["targets"] == ["10.77.2.1"]
    assert pairs[("hub", "ghent")]["labels"]["__exporter_address__"] == "127.0.0.1:9999"
    assert pairs[("ulm", "delft")]["labels"]["__exporter_address__"] == "10.77.3.1:9115"
    assert ("delft", "hub") not in pairs and ("delft", "delft") not in pairs
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(json.dumps(config))
    result = _promtool("check", "config", str(config_file), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_pull_sites_agent_probes_the_hub_in_place_of_the_hub_probing_it() -> None:
    addresses = {"delft": "10.77.1.1", "ghent": "10.77.2.1"}
    config = monitoring.prometheus_config(
        addresses, "127.0.0.1:9999", monitoring.RULES, agent_probers={"delft": "10.77.1.1:9116"}
    )
    pairs = {
        (group["labels"]["source_site"], group["labels"]["target_site"]): group
        for group in config["scrape_configs"][0]["static_configs"]
    }
    assert set(pairs) == {
        ("delft", "hub"),
        ("hub", "ghent"),
        ("delft", "ghent"),
        ("ghent", "delft"),
    }
    assert pairs[("delft", "hub")]["targets"] == [monitoring.HUB_ADDRESS]
    assert pairs[("delft", "hub")]["labels"]["__exporter_address__"] == "10.77.1.1:9116"
    assert pairs[("delft", "ghent")]["labels"]["__exporter_address__"] == "10.77.1.1:9115"


def test_the_module_file_is_valid_for_the_exporter() -> None:
    exporter = shutil.which("prometheus-blackbox-exporter")
    if exporter is None:
        pytest.skip("prometheus-blackbox-exporter (Debian)")
    result = subprocess.run(
        [exporter, f"--config.file={monitoring.MODULES}", "--config.check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    modules = yaml.safe_load(monitoring.MODULES.read_text())["modules"]
    assert modules[monitoring.MODULE]["prober"] == "icmp"
