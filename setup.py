"""fgbg: synthetic depth + segmentation training sets, as an Apache Beam pipeline.

Dataflow stages this file with --setup_file, so workers get the same packages.
"""

import setuptools

setuptools.setup(
    name="fgbg",
    version="0.1.0",
    description="Foreground/background composites with masks and DenseDepth depth maps, "
    "built with Apache Beam",
    packages=[
        "pipeline",
        "pipeline.options",
        "transforms",
        "fgbg",
        "fgbg.depth",
        "fgbg.proto",
        "fgbg.report",
    ],
    package_data={
        "fgbg.proto": ["*.proto", "README.md", "LICENSE"],
        "fgbg.report": ["templates/*"],
    },
    python_requires=">=3.10,<3.13",
    install_requires=[
        "apache-beam[gcp]>=2.77,<2.78",
        "tensorflow>=2.21,<2.22",
        "tensorflow-transform>=1.21,<1.22",
        "tf_keras>=2.21,<2.22",
        "tensorflow-hub>=0.16.1,<0.17",
        # tensorflow-hub 0.16 imports pkg_resources, gone from setuptools 82.
        "setuptools<82",
        "pillow>=12,<13",
        "numpy>=1.26,<3",
        "google-cloud-storage>=3.17,<4",
        "h5py>=3.10,<4",
        # Poisson blending (--blend poisson: cv2.seamlessClone) and the blurs.
        "opencv-python-headless>=4.10,<5",
        # The report's page is a template (fgbg/report/page.py says why).
        "jinja2>=3.1,<4",
        "markupsafe>=2.1,<4",
        # Depth models exported to ONNX, on the CPU (a small wheel, no CUDA).
        "onnxruntime>=1.23,<2",
        # run_local.sh's first-run model from the Hugging Face Hub's cache
        # (fgbg/depth/first_run.py), without transformers.
        "huggingface_hub>=1,<3",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "gcp-storage-emulator>=2026.7,<2027",
            # Pinned: formatting changes between ruff releases.
            "ruff==0.17.6",
            # torch.onnx.export, which the ONNX runtime's tests export with.
            "onnx>=1.23,<2",
            "onnxscript>=0.7,<1",
            # Compiles the lock (scripts/refresh_lock.sh).
            "uv>=0.13,<0.14",
        ],
        # PyTorch readers (fgbg/torch_data.py), DenseDepth on PyTorch, and
        # transformers depth checkpoints such as Depth Anything V2
        # (fgbg/depth/transformers_runtime.py).
        "torch": ["torch>=2.9", "transformers>=5.20,<6"],
    },
)
