"""Jetson module power: the per-board rail map (never add parts to VDD_IN; AGX Orin sums its module rails),
from tegrastats lines and from fake INA3221 hwmon trees, and the figures record the rails used."""

from __future__ import annotations

import os
import stat
import time

import pytest

from edgefer.bench import energy
from edgefer.bench.energy import PowerMonitor, board_power_mw, module_power, sysfs_rails, tegrastats_rails

ORIN_NX = ("RAM 3120/15656MB (lfb 2x4MB) SWAP 0/7828MB CPU [5%@729,3%@729] EMC_FREQ 0% GR3D_FREQ 0% cpu@46.2C "
           "VDD_IN 7612mW/7400mW VDD_CPU_GPU_CV 2210mW/2000mW VDD_SOC 1900mW/1880mW")
AGX_ORIN = ("RAM 4200/30536MB CPU [1%@1190] GR3D_FREQ 14%@[407,407] NVDLA0_FREQ @1600 APE 174 tj@77.3C "
            "VDD_GPU_SOC 3150mW/2971mW VDD_CPU_CV 14312mW/12415mW VIN_SYS_5V0 4968mW/5048mW "
            "VDDQ_VDD2_1V8AO 1091mW/1091mW")


def test_orin_nx_and_nano_use_vdd_in_alone():
    rails = tegrastats_rails(ORIN_NX)
    assert rails == {"VDD_IN": 7612.0, "VDD_CPU_GPU_CV": 2210.0, "VDD_SOC": 1900.0}
    mw, used, board = module_power(rails)
    assert (mw, used) == (7612.0, ("VDD_IN",)) and board.startswith("Jetson Orin NX / Orin Nano")
    assert board_power_mw(ORIN_NX) == (7612.0, "VDD_IN")


def test_agx_orin_sums_its_module_rails():
    mw, used, board = module_power(tegrastats_rails(AGX_ORIN))
    assert mw == 3150 + 14312 + 4968 + 1091 and board == "Jetson AGX Orin"
    assert used == ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO")
    assert board_power_mw(AGX_ORIN)[1] == "sum of VDDQ_VDD2_1V8AO+VDD_CPU_CV+VDD_GPU_SOC+VIN_SYS_5V0"
    assert module_power({"FOO": 1.0, "BAR": 2.0}) == (3.0, ("BAR", "FOO"), "unknown board (sum of every rail)")
    assert module_power({}) is None


def _ina3221(root, chip, channels):
    """A fake /sys/bus/i2c/drivers/ina3221/<chip>/hwmon/hwmonN with (label, mV, mA) per channel."""
    hwmon = root / chip / "hwmon" / f"hwmon{len(list(root.glob('*')))}"
    hwmon.mkdir(parents=True)
    for i, (label, mv, ma) in enumerate(channels, start=1):
        (hwmon / f"in{i}_label").write_text(label + "\n")
        (hwmon / f"in{i}_input").write_text(f"{mv}\n")
        (hwmon / f"curr{i}_input").write_text(f"{ma}\n")


def test_sysfs_rails_of_an_agx_orin(tmp_path):
    _ina3221(tmp_path, "1-0040", [("VDD_GPU_SOC", 843, 6170), ("VDD_CPU_CV", 780, 3437), ("VIN_SYS_5V0", 4968, 953)])
    _ina3221(tmp_path, "1-0041", [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 1800, 341), ("NC", 0, 0)])
    rails = sysfs_rails(tmp_path)
    assert rails == pytest.approx({"VDD_GPU_SOC": 843 * 6170 / 1000, "VDD_CPU_CV": 780 * 3437 / 1000,
                                   "VIN_SYS_5V0": 4968 * 953 / 1000, "VDDQ_VDD2_1V8AO": 1800 * 341 / 1000})
    assert module_power(rails)[2] == "Jetson AGX Orin"


def test_monitor_polls_sysfs_without_tegrastats(tmp_path, monkeypatch):
    _ina3221(tmp_path, "1-0040", [("VDD_IN", 5000, 1600), ("VDD_CPU_GPU_CV", 5000, 400), ("VDD_SOC", 5000, 300)])
    monkeypatch.setattr(energy.shutil, "which", lambda name: None)
    with PowerMonitor(interval_ms=5, sysfs_root=tmp_path) as monitor:
        time.sleep(0.1)
    result = monitor.energy(runs=10, seconds=1.0)
    assert result["mean_power_mw"] == pytest.approx(8000.0) and result["mj_per_inference"] == pytest.approx(800.0)
    assert result["rails"] == "VDD_IN" and result["rails_used"] == ["VDD_IN"] and result["source"] == "ina3221 sysfs"
    assert result["board"].startswith("Jetson Orin NX")


def test_monitor_reads_tegrastats(tmp_path, monkeypatch):
    script = tmp_path / "tegrastats"
    script.write_text(f"#!/bin/sh\nwhile true; do echo '{AGX_ORIN}'; sleep 0.01; done\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with PowerMonitor(interval_ms=10) as monitor:
        deadline = time.time() + 5
        while not monitor.samples and time.time() < deadline:
            time.sleep(0.02)
    result = monitor.energy(runs=1, seconds=0.001)
    assert result["source"] == "tegrastats" and result["board"] == "Jetson AGX Orin"
    assert result["mean_power_mw"] == pytest.approx(3150 + 14312 + 4968 + 1091)
    assert result["rails_used"] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
