"""The artifact format: the typed, versioned manifest schema and its one reader (doc/backend.md).

Imports only the standard library, ``dlavm.sym`` and ``dlavm.target``, so
the compiler's backend (which writes it), the runtime, the comparison tools
and the code generators (which read it) all share it.
"""
from .directory import (MANIFEST, MANIFEST_SUM, VerifiedArtifact, load_artifact, manifest_sum_text, open_artifact,
                        read_artifact_file, read_inside)
from .errors import ArtifactError, ManifestError
from .expr import ExprError, check_expr, eval_expr, parse_expr
from .reader import read_manifest
from .schema import *  # noqa: F401,F403 - the record classes are the package's API
from .schema import FORMAT, MANIFEST_VERSION, Manifest, schema_markdown

__all__ = ["load_artifact", "VerifiedArtifact", "MANIFEST", "MANIFEST_SUM", "manifest_sum_text", "open_artifact",
           "read_artifact_file", "read_inside", "ArtifactError", "ManifestError", "ExprError", "check_expr",
           "eval_expr", "parse_expr", "read_manifest", "FORMAT", "MANIFEST_VERSION", "Manifest", "schema_markdown",
           "TargetInfo", "Dim", "Pool", "Buffer", "WeightBlob", "HostConst", "Entry", "EntryInput", "EntryOutput",
           "ValueInfo", "HostStep", "ToDeviceStep", "ToHostStep", "StreamStep", "ValueRef", "LiteralOperand",
           "ConstRef", "Stream", "Patch", "Guard", "Loop", "InsnRecord", "LlmInfo", "HostOp", "HostQuant", "TokenizerInfo",
           "ModelSource", "model_kind"]
