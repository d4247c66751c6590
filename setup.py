import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"$', (HERE / "cmim_hf" / "version.py").read_text(encoding="utf-8"), re.M
).group(1)

setup(
    name="cmim_hf",
    version=VERSION,
    description="contrastive Mutual Information Machine (cMIM) for molecules, as a HuggingFace Transformers extension",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    project_urls={
        "Paper (cMIM)": "https://arxiv.org/abs/2502.19642",
        "Paper (MolMIM)": "https://arxiv.org/abs/2208.09016",
        "Paper (MIM)": "https://arxiv.org/abs/1910.03175",
        "Transformers": "https://huggingface.co/docs/transformers",
    },
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "License :: OSI Approved :: Apache Software License",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Chemistry",
    ],
    keywords=["cmim", "mutual information machine", "molecules", "smiles", "transformers", "chemistry"],
    packages=find_packages(include=["cmim_hf", "cmim_hf.*"]),
    package_data={
        "cmim_hf": [
            "package_data/**/*",
            "models/cmim/*.json",
            "pretrained/**/*",
            "templates/*",
            "evaluation/metrics/**/*",
        ]
    },
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4,<3",
        "transformers>=5,<6",
        "tokenizers>=0.22,<1",
        "datasets>=3,<6",
        "accelerate>=1.0,<2",
        "evaluate>=0.4,<0.5",
        "rdkit>=2024.3",
        "scikit-learn>=1.4,<2",
        "numpy>=1.26",
        "pandas>=2",
        "pyarrow>=14",
        "tqdm>=4.66",
        "safetensors>=0.4",
        "huggingface_hub>=1.0",
        "jinja2>=3",
        "matplotlib>=3.7",
        "cma>=3.3,<5",
        "fcd>=1.2,<2",  # ChemNet (torch) for the MOSES FCD metric
    ],
    extras_require={"test": ["pytest>=8", "hypothesis>=6", "ruff>=0.6", "peft>=0.17", "parameterized>=0.9"]},
    entry_points={"console_scripts": ["cmim=cmim_hf.cli:main"]},
)
