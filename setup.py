from setuptools import find_packages, setup

ONNX = ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.2", "tqdm"]
OPENVINO = ["openvino>=2024.4", "nncf>=2.14", "tqdm"]
TRAIN = ["torch>=2.4", "timm>=1.0", "safetensors>=0.4", "scikit-learn>=1.3", "pillow>=10", "matplotlib>=3.7",
         "pyyaml>=6", "tqdm"]
REPORT = ["rich>=13", "matplotlib>=3.7", "psutil>=5.9"]
CAMERA = ["opencv-python-headless>=4.8,<5"]  # 5.x ships no Haar cascades
TENSORRT = ["tensorrt>=10.3", "cuda-python>=12"]
# Triton's ModelConfig schema (model_config_pb2) to validate `--target triton` repositories; clients of the server
TRITON = ["tritonclient>=2.40"]
# `edgefer serve`: HTTP needs only the runtime of the model's backend (ONNX Runtime here; OpenVINO with
# [openvino]); --grpc-port needs grpcio and the service stubs in tritonclient[grpc]; Triton's clients
# (tritonclient.http, tritonclient.grpc) talk to it and to Triton
SERVE = ["onnxruntime>=1.18", "tritonclient[http,grpc]>=2.40"]
# quantization-aware fine-tuning: ModelOpt base package only (its [onnx] extra replaces onnxruntime);
# requests is imported by modelopt.torch.utils but not declared by it
QAT = TRAIN + ONNX + ["nvidia-modelopt>=0.47,<0.48", "requests"]

setup(
    name="edgefer",
    version="0.1.0",
    description="Facial emotion recognition for the edge: EfficientNetV2 training, ONNX/OpenVINO/TensorRT "
    "export with stratified INT8 calibration, runtime and benchmarks",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["edgefer", "edgefer.*"]),
    package_data={"edgefer": ["py.typed"]},
    install_requires=["numpy>=1.24", "click>=8.1"],
    extras_require={
        "train": TRAIN,
        "data": ["pillow>=10", "tqdm"],  # image-folder data sets and progress bars (CSV needs only numpy)
        "onnx": ONNX,
        "openvino": OPENVINO,
        "report": REPORT,
        "camera": CAMERA,
        "tensorrt": TENSORRT,
        "qat": QAT,
        "triton": TRITON,
        "serve": SERVE,
        # `all` is what installs everywhere; TensorRT comes with JetPack or `pip install 'edgefer[tensorrt]'`.
        "all": sorted(set(TRAIN + ONNX + OPENVINO + REPORT + CAMERA)),
        # tritonclient: Triton configs checked, and `edgefer serve` tested through Triton's HTTP and gRPC clients
        "dev": ["pytest>=8", "pytest-timeout", "ruff", "hypothesis", "tritonclient[http,grpc]>=2.40"],
    },
    entry_points={"console_scripts": ["edgefer=edgefer.cli:main"]},
)
