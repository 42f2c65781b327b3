# `make test` and `make demo` each install what they need into .venv first (fresh machine: Python 3.11, pip, gcc).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
EDGEFER := $(VENV)/bin/edgefer
STAMP  := $(VENV)/.installed

# The demo: embedded SYNTHETIC data -> EfficientNetV2-S trained from scratch (recipe "scratch") -> TensorRT INT8
# export -> bench (PyTorch, ONNX Runtime and every INT8 row: it exports the OpenVINO INT8 IR itself), on 2 CPU
# cores in under 10 minutes with the install. The training prints its learning curve and per-class tables; the checkpoint's val
# macro-F1 is in $(DEMO)/run/model.json (docs/training.md, "The demo": what it reaches and how long it takes).
DEMO        ?= demo
DEMO_N      ?= 3000
DEMO_ARCH   ?= tf_efficientnetv2_s
DEMO_SIZE   ?= 48
DEMO_STEPS  ?= 200
DEMO_EPOCHS ?= 3
# 200 steps are too few for augmentation to pay: the demo trains on the faces as they are (docs/training.md)
DEMO_NO_AUG := --scale-min 1 --rotation 0 --brightness 0 --contrast 0 --drop-rate 0
# 256 calibration images (edgefer's default is 512): the calibration study found no difference from 64 to 1,024
# (benchmarks/RESULTS.md), and NNCF and ONNX Runtime calibrate in half the time
DEMO_DATA   := $(DEMO)/fer_synth.csv

.PHONY: install test demo lint clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: a plain torch requirement pulls a CUDA build plus several GB of CUDA wheels
	$(PIP) install -q -c constraints.txt torch==2.13.0 torchvision==0.28.0
	$(PIP) install -q -c constraints.txt -e '.[all,qat,dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

demo: install
	rm -rf $(DEMO)/run $(DEMO)/calib $(DEMO)/export $(DEMO)/bench
	$(EDGEFER) data synth --out $(DEMO_DATA) --n $(DEMO_N) --seed 0 --exist-ok
	$(EDGEFER) data inspect $(DEMO_DATA)
	$(EDGEFER) train --data $(DEMO_DATA) --out $(DEMO)/run --arch $(DEMO_ARCH) --img-size $(DEMO_SIZE) \
	    --epochs $(DEMO_EPOCHS) --max-steps $(DEMO_STEPS) --batch-size 32 $(DEMO_NO_AUG)
	$(EDGEFER) calibrate --data $(DEMO_DATA) --out $(DEMO)/calib --calib-size 256
	$(EDGEFER) export --model $(DEMO)/run --target tensorrt --int8 --calib $(DEMO)/calib --data $(DEMO_DATA) \
	    --out $(DEMO)/export/tensorrt-int8
	$(EDGEFER) bench --model $(DEMO)/run --data $(DEMO_DATA) --calib $(DEMO)/calib --out $(DEMO)/bench \
	    --targets pytorch,onnxruntime,int8 --duration 0.5
	@echo "demo done (SYNTHETIC data): checkpoint $(DEMO)/run, exports $(DEMO)/export, report $(DEMO)/bench/bench.md"

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
