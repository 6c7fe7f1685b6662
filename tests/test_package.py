"""Packaging and layering: agents/envs/configs live under spiking_dqn; the core imports none of them."""
import importlib.util
import subprocess
import sys


def test_agents_envs_configs_are_installed_under_spiking_dqn_only():
    assert importlib.util.find_spec("agents") is None and importlib.util.find_spec("envs") is None
    for name in ("spiking_dqn.agents", "spiking_dqn.envs", "spiking_dqn.configs", "spiking_dqn.vision"):
        assert importlib.util.find_spec(name) is not None, name


def test_core_imports_no_agents_envs_vision_or_cli():
    core = ["neuron", "network", "convert", "energy", "iir", "report", "config"]
    code = ("import sys, spiking_dqn, " + ", ".join(f"spiking_dqn.{m}" for m in core) + "\n"
            "print(sorted(m for m in sys.modules if m.startswith(('spiking_dqn.agents', 'spiking_dqn.envs', "
            "'spiking_dqn.vision', 'spiking_dqn.cli', 'stable_baselines3', 'gymnasium'))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
