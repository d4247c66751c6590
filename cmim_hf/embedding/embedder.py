"""Bulk embedding of SMILES with cMIM or any seq2seq model.

`CMIMEmbedder` turns a list of SMILES, a pandas/`datasets` column, or a CSV/Parquet file into
an (N, D) float32 array aligned 1:1 with the input rows. Inputs are processed in chunks:
each chunk is validated with RDKit (optionally canonicalised), tokenized, sorted by length
into batches (little padding), embedded with `cmim_hf.models.cmim.pipelines.compute_embeddings` and put
back in input order. `embed_file` streams a file to Parquet with flat memory and shards it
across processes under `torchrun` / `accelerate launch`.

Invalid rows follow `on_invalid`: "raise" (the first one, with its row and reason), "nan"
(kept as NaN rows and reported with a warning and in `EmbeddingResult.invalid`) or "skip"
(dropped, and the kept row indices are returned). Rows are never silently dropped or shifted.

Also here: `CMIMEmbedder.map_function` (for `datasets.Dataset.map(batched=True)`). Reading the
input tables is :mod:`cmim_hf.io`; loading the model is :mod:`cmim_hf.checkpoints`.
"""

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm
from transformers import (
    PreTrainedModel,
)

from cmim_hf import chem
from cmim_hf.checkpoints import load_model_and_tokenizer
from cmim_hf.chem import InvalidRow, InvalidSmilesError
from cmim_hf.distributed import gloo_process_group, rank_and_world_size
from cmim_hf.io import (
    count_rows,
    file_schema,
    file_smiles_column,
    iter_file_tables,
    iter_input_chunks,
)
from cmim_hf.models.cmim.pipelines import Source, compute_embeddings, is_cmim_model, validate_options
from cmim_hf.models.cmim.pooling import LayerSpec, PoolingMode
from cmim_hf.models.cmim.tokenization_cmim import CMIMTokenizer
from cmim_hf.outputs import check_output_path, commit_output, output_lock, partial_path
from cmim_hf.precision import autocast_to, resolve_compute_dtype

InvalidPolicy = Literal["raise", "nan", "skip"]
INVALID_POLICIES: tuple[str, ...] = ("raise", "nan", "skip")
_PROGRESS_MIN_ROWS = 2048


@dataclass
class EmbeddingResult:
    """Embeddings with their provenance.

    Attributes:
        embeddings: (M, D) float32; M = N for "raise"/"nan" (invalid rows are NaN), the number
            of valid rows for "skip".
        indices: (M,) int64 input row index of each embedding row.
        invalid: every rejected row (index, SMILES, reason), in input order.
    """

    embeddings: np.ndarray
    indices: np.ndarray
    invalid: list[InvalidRow] = field(default_factory=list)


@dataclass
class _Chunk:
    """One embedded chunk: (n, D) float32 with NaN rows where `valid` (n,) is False."""

    start: int
    smiles: list[Any]
    embeddings: np.ndarray
    valid: np.ndarray
    invalid: list[InvalidRow]
    carried: pa.Table | None = None  # the input's other columns for these rows (embed_file)


def smiles_normalization_of(model: PreTrainedModel, normalize: bool | str) -> str:
    """The scheme to apply: the model config's ``smiles_normalization`` for True ("none" when the
    checkpoint records none), "none" for False, else ``normalize`` itself (validated)."""
    if normalize is True:
        return getattr(model.config, "smiles_normalization", None) or "none"
    if normalize is False:
        return "none"
    if normalize not in chem.SMILES_NORMALIZATIONS:
        raise ValueError(
            f"normalize must be a bool or one of {chem.SMILES_NORMALIZATIONS}, got {normalize!r}"
        )
    return normalize


def embedding_device(device: str | torch.device | None) -> torch.device:
    """``device``, or by default CUDA (this process's ``LOCAL_RANK``) if available, else the CPU."""
    if device is None:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


class CMIMEmbedder:
    """Embed many SMILES with a cMIM (or any seq2seq) model; rows stay aligned with the input.

    Args:
        model: a model (moved to `device`, cast to float32 and put in eval mode, in place), or a
            checkpoint folder / Hub id (loaded in float32 with its tokenizer).
        tokenizer: the tokenizer; defaults to the checkpoint's (or the shipped cMIM vocabulary).
        source, layers, pooling, include_latent: embedding options, see
            `cmim_hf.models.cmim.pipelines.compute_embeddings` (defaults: informative decoder embedding,
            last layer, mean over real tokens, concatenated with mu for cMIM).
        batch_size: molecules per forward pass.
        device: torch device; default CUDA (this process's LOCAL_RANK) if available, else CPU.
        normalize: write each SMILES as the checkpoint's training SMILES were before embedding it:
            True (default) applies the model config's ``smiles_normalization``, False embeds the
            strings as given, or a scheme of ``cmim_hf.chem.SMILES_NORMALIZATIONS``.
        on_invalid: "raise", "nan" or "skip" (see module docstring).
        chunk_size: rows validated, tokenized and length-sorted together; bounds memory.
        progress: show a tqdm bar; None shows one for inputs of 2048 rows or more.
        dtype: compute precision, ``torch.float32`` (default) or ``torch.bfloat16`` (also as the
            names "float32" / "bfloat16"): bf16 autocast, weights kept in float32, embeddings
            returned as float32; float32 with a warning where the device lacks fast bf16
            (``cmim_hf.precision``).

    Example:

    ```python
    >>> embedder = CMIMEmbedder("path/to/cmim", on_invalid="nan")
    >>> X = embedder.embed(["CCO", "c1ccccc1", "not a smiles"])  # (3, D) float32, last row NaN
    ```
    """

    def __init__(
        self,
        model: str | os.PathLike | PreTrainedModel,
        tokenizer: Any | None = None,
        source: Source = "decoder",
        layers: LayerSpec = "last",
        pooling: PoolingMode = "mean",
        include_latent: bool | None = None,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        normalize: bool | str = True,
        on_invalid: InvalidPolicy = "raise",
        chunk_size: int = 16384,
        progress: bool | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> None:
        validate_options(source, layers, pooling)
        if on_invalid not in INVALID_POLICIES:
            raise ValueError(f"on_invalid must be one of {INVALID_POLICIES}, got {on_invalid!r}")
        if batch_size < 1 or chunk_size < 1:
            raise ValueError("batch_size and chunk_size must be positive")
        if isinstance(model, (str, os.PathLike)):
            model, loaded_tokenizer = load_model_and_tokenizer(model)
            tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
        elif tokenizer is None:
            if not is_cmim_model(model):
                raise ValueError("pass the tokenizer that goes with this model")
            tokenizer = CMIMTokenizer()
        if (include_latent or source == "latent") and not is_cmim_model(model):
            raise ValueError("source='latent' and include_latent=True need a cMIM model")
        self.device = embedding_device(device)
        self.compute_dtype = resolve_compute_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=torch.float32).eval()
        self.tokenizer = tokenizer
        self.options: dict[str, Any] = {
            "source": source,
            "layers": layers,
            "pooling": pooling,
            "include_latent": include_latent,
        }
        self.batch_size = batch_size
        self.normalization = smiles_normalization_of(self.model, normalize)
        self.on_invalid = on_invalid
        self.chunk_size = chunk_size
        self.progress = progress
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.max_length = self._max_length()
        self._dim: int | None = None

    def _max_length(self) -> int | None:
        """Longest token sequence the model accepts (absolute positions), or None if unbounded."""
        limits = [getattr(self.model.config, "max_position_embeddings", None)]
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if tokenizer_limit is not None and tokenizer_limit < 1_000_000:
            limits.append(tokenizer_limit)
        limits = [int(limit) for limit in limits if limit]
        return min(limits) if limits else None

    @property
    def embedding_dim(self) -> int:
        """D, the length of one embedding (found with a one-molecule forward pass)."""
        if self._dim is None:
            encoded = self.tokenizer(["C"], return_tensors="pt")
            self._dim = self._forward(encoded["input_ids"], encoded["attention_mask"]).shape[1]
        return self._dim

    @torch.inference_mode()
    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        """(B, T) padded batch -> (B, D) float32 numpy."""
        with autocast_to(self.compute_dtype, self.device):
            embeddings = compute_embeddings(
                self.model,
                input_ids.to(self.device),
                attention_mask.to(self.device),
                pad_token_id=self.pad_token_id,
                **self.options,
            )
        return embeddings.float().cpu().numpy()

    def _prepare(self, values: list[Any], start: int) -> tuple[list[int], list[str], list[InvalidRow]]:
        """Validate (and normalize) one chunk -> (valid positions, strings to embed, invalid rows)."""
        positions: list[int] = []
        texts: list[str] = []
        invalid: list[InvalidRow] = []
        for position, value in enumerate(values):
            try:
                text = chem.normalize_smiles(value, self.normalization)
            except InvalidSmilesError as err:
                invalid.append(InvalidRow(index=start + position, smiles=str(value), reason=err.reason))
            else:
                positions.append(position)
                texts.append(text)
        return positions, texts, invalid

    def _unreadable(self, text: str, token_ids: list[int]) -> str:
        """Why the model cannot read a tokenized molecule faithfully ("" if it can): more tokens than
        it accepts, or tokens outside its vocabulary (all of them would be the same `<unk>`)."""
        if self.max_length is not None and len(token_ids) > self.max_length:
            return f"too long: more than {self.max_length} tokens"
        unk = self.tokenizer.unk_token_id
        if unk is not None and unk in token_ids:
            unknown = getattr(self.tokenizer, "unknown_tokens", None)
            pieces = " ".join(dict.fromkeys(unknown(text))) if unknown else "<unk>"
            return f"tokens outside the vocabulary: {pieces}"
        return ""

    def _embed_chunk(self, values: list[Any], start: int, bar: tqdm | None) -> _Chunk:
        """Embed one chunk of raw values whose first row has input index `start`."""
        positions, texts, invalid = self._prepare(values, start)
        token_ids: list[list[int]] = []
        if texts:  # truncating at max_length + 1 tells over-long inputs apart without raising
            truncate = {"truncation": True, "max_length": self.max_length + 1} if self.max_length else {}
            token_ids = self.tokenizer(texts, return_attention_mask=False, **truncate)["input_ids"]
        lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
        unreadable = {k: self._unreadable(texts[k], ids) for k, ids in enumerate(token_ids)}
        for k, reason in unreadable.items():
            if reason:
                invalid.append(
                    InvalidRow(index=start + positions[k], smiles=str(values[positions[k]]), reason=reason)
                )
        invalid.sort(key=lambda row: row.index)
        keep = np.array([k for k, reason in unreadable.items() if not reason], dtype=np.int64)
        if invalid and self.on_invalid == "raise":
            raise InvalidSmilesError(invalid[0].smiles, invalid[0].reason, invalid[0].index)

        embeddings = np.full((len(values), self.embedding_dim), np.nan, dtype=np.float32)
        valid = np.zeros(len(values), dtype=bool)
        rows_of = np.asarray(positions, dtype=np.int64)
        order = keep[np.argsort(lengths[keep], kind="stable")]  # length buckets: little padding
        for first in range(0, len(order), self.batch_size):
            batch = order[first : first + self.batch_size]
            input_ids = np.full((len(batch), int(lengths[batch].max())), self.pad_token_id, dtype=np.int64)
            for row, k in enumerate(batch):
                input_ids[row, : lengths[k]] = token_ids[k]
            attention_mask = (np.arange(input_ids.shape[1]) < lengths[batch][:, None]).astype(np.int64)
            embeddings[rows_of[batch]] = self._forward(
                torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
            )
            valid[rows_of[batch]] = True
        if bar is not None:
            bar.update(len(values))
        return _Chunk(start=start, smiles=values, embeddings=embeddings, valid=valid, invalid=invalid)

    def _iter_chunks(
        self,
        inputs: Any,
        smiles_col: str | None,
        rank: int = 0,
        world: int = 1,
        desc: str = "embedding",
        carry_columns: bool = False,
    ) -> Iterator[_Chunk]:
        """Embedded chunks in input order (only every `world`-th chunk, from `rank`, when sharded).
        ``carry_columns`` (file inputs): each chunk also holds the file's other columns."""
        total = count_rows(inputs)
        show = self.progress if self.progress is not None else (total is None or total >= _PROGRESS_MIN_ROWS)
        if carry_columns:
            tables = iter_file_tables(inputs, smiles_col, self.chunk_size)
            pieces = ((t.column(smiles_col).to_pylist(), t.drop_columns([smiles_col])) for t in tables)
        else:
            pieces = ((values, None) for values in iter_input_chunks(inputs, smiles_col, self.chunk_size))
        with tqdm(total=total, desc=desc, unit="mol", disable=not show or rank != 0) as bar:
            start = 0
            for number, (values, carried) in enumerate(pieces):
                if number % world == rank:
                    chunk = self._embed_chunk(values, start, bar)
                    chunk.carried = carried
                    yield chunk
                else:
                    bar.update(len(values))
                start += len(values)

    def _warn_invalid(self, invalid: list[InvalidRow]) -> None:
        """Report invalid rows (index, SMILES, reason) with a warning, never silently."""
        if not invalid:
            return
        shown = "; ".join(f"row {r.index} {r.smiles!r} ({r.reason})" for r in invalid[:10])
        more = f"; ... and {len(invalid) - 10} more" if len(invalid) > 10 else ""
        action = "kept as NaN rows" if self.on_invalid == "nan" else "skipped"
        warnings.warn(f"{len(invalid)} invalid SMILES {action}: {shown}{more}", stacklevel=3)

    def embed_with_report(self, inputs: Any, smiles_col: str | None = None) -> EmbeddingResult:
        """Embed `inputs` and return the embeddings, their row indices and the invalid rows.

        Args:
            inputs: list of SMILES, a pandas Series/DataFrame, a `datasets` Dataset or column,
                a numpy array, any iterable of strings, or a CSV/Parquet path.
            smiles_col: column holding SMILES for DataFrames, Datasets and files (default: the
                column named "smiles" in any case).
        """
        blocks: list[np.ndarray] = []
        indices: list[np.ndarray] = []
        invalid: list[InvalidRow] = []
        for chunk in self._iter_chunks(inputs, smiles_col):
            rows = np.arange(chunk.start, chunk.start + len(chunk.smiles))
            keep = chunk.valid if self.on_invalid == "skip" else slice(None)
            blocks.append(chunk.embeddings[keep])
            indices.append(rows[keep])
            invalid.extend(chunk.invalid)
        self._warn_invalid(invalid)
        if not blocks:
            return EmbeddingResult(
                np.zeros((0, self.embedding_dim), np.float32), np.zeros(0, np.int64), invalid
            )
        return EmbeddingResult(np.concatenate(blocks), np.concatenate(indices).astype(np.int64), invalid)

    def embed(self, inputs: Any, smiles_col: str | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Embed `inputs` (see `embed_with_report`).

        Returns:
            (N, D) float32 aligned with the input rows ("raise", "nan"); with "skip", the
            (M, D) embeddings of the valid rows and their (M,) input row indices.
        """
        result = self.embed_with_report(inputs, smiles_col)
        if self.on_invalid == "skip":
            return result.embeddings, result.indices
        return result.embeddings

    def _chunk_table(self, chunk: _Chunk, smiles_col: str) -> pa.Table:
        """One chunk as an Arrow table: row_index, SMILES, valid, invalid_reason, embedding."""
        reasons: list[str | None] = [None] * len(chunk.smiles)
        for row in chunk.invalid:
            reasons[row.index - chunk.start] = row.reason
        keep = chunk.valid if self.on_invalid == "skip" else np.ones(len(chunk.smiles), dtype=bool)
        flat = pa.array(chunk.embeddings[keep].reshape(-1), type=pa.float32())
        smiles = [None if not isinstance(s, str) else s for s in chunk.smiles]
        carried = chunk.carried.filter(pa.array(keep)) if chunk.carried is not None else pa.table({})
        return pa.table(
            {
                "row_index": pa.array(
                    np.arange(chunk.start, chunk.start + len(chunk.smiles))[keep], pa.int64()
                ),
                smiles_col: pa.array([s for s, k in zip(smiles, keep, strict=True) if k], pa.string()),
                **{_carried_name(name): carried.column(name) for name in carried.column_names},
                "valid": pa.array(chunk.valid[keep]),
                "invalid_reason": pa.array([r for r, k in zip(reasons, keep, strict=True) if k], pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, self.embedding_dim),
            }
        )

    def embed_file(
        self,
        path: str | os.PathLike,
        smiles_col: str | None,
        out_path: str | os.PathLike,
        overwrite: bool = False,
    ) -> list[InvalidRow]:
        """Stream a CSV/Parquet file into a Parquet file of embeddings, one row group per chunk.

        The output is written to a temporary file in its folder and moved into place when complete:
        an interrupted or failed run leaves a previous ``out_path`` whole. An ``out_path`` that is the
        input, or that exists without ``overwrite``, is refused (:class:`cmim_hf.outputs.OutputError`).

        The output has columns row_index, <smiles_col>, the input's other columns (ids, labels;
        CSV cells as the strings written, Parquet columns with their types; a name that clashes
        with an output column becomes ``input_<name>``), valid, invalid_reason and embedding
        (fixed-size list of D float32; NaN for invalid rows under "nan"), in input order.
        Memory stays flat: only one chunk's inputs and activations are held at a time.

        Under `torchrun` / `accelerate launch` (WORLD_SIZE > 1) every process embeds every
        WORLD_SIZE-th chunk into a shard file; rank 0 then merges the shards in input order
        into `out_path`, and all ranks return once it is complete.

        Returns:
            the invalid rows this process saw.
        """
        out_path = Path(out_path)
        if out_path.suffix.lower() not in (".parquet", ".pq"):
            raise ValueError(f"output must be a .parquet file, got {out_path}")
        check_output_path(out_path, [path], overwrite)
        column = file_smiles_column(path, smiles_col)
        rank, world = rank_and_world_size()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(out_path)  # unique to this process: concurrent writers never share it
        target = partial if world == 1 else _shard_path(out_path, rank, world)
        schema = self._output_schema(column, _carried_schema(path, column))
        invalid: list[InvalidRow] = []
        error: Exception | None = None
        with gloo_process_group(world), ExitStack() as held:
            try:  # rank 0 holds the output's lock, every other rank its shard's, until the end
                held.enter_context(output_lock(out_path if rank == 0 else target))
                held.callback(target.unlink, missing_ok=True)  # failed or interrupted: no stray file
                held.callback(partial.unlink, missing_ok=True)
                with pq.ParquetWriter(target, schema) as writer:
                    chunks = self._iter_chunks(
                        path, column, rank, world, desc=f"embedding {Path(path).name}", carry_columns=True
                    )
                    for chunk in chunks:
                        writer.write_table(
                            self._chunk_table(chunk, column).cast(schema),
                            row_group_size=len(chunk.smiles) + 1,
                        )
                        invalid.extend(chunk.invalid)
            except Exception as err:  # re-raised below, once the other ranks know
                error = err
            failed = torch.tensor([int(error is not None)])
            if world > 1:
                torch.distributed.all_reduce(failed, op=torch.distributed.ReduceOp.MAX)
            if failed.item():
                raise error or RuntimeError("another process failed while embedding its shard")
            if world > 1 and rank == 0:
                _merge_shards(partial, out_path, world, schema)
            if rank == 0:  # complete: move it into place in one step
                commit_output(partial, out_path, overwrite)
            if world > 1:
                torch.distributed.barrier()
        self._warn_invalid(invalid)
        return invalid

    def _output_schema(self, smiles_col: str, carried: pa.Schema | None = None) -> pa.Schema:
        """Arrow schema of `embed_file` output (``carried``: the input's other columns)."""
        return pa.schema(
            [
                ("row_index", pa.int64()),
                (smiles_col, pa.string()),
                *[(_carried_name(field.name), field.type) for field in carried or []],
                ("valid", pa.bool_()),
                ("invalid_reason", pa.string()),
                ("embedding", pa.list_(pa.float32(), self.embedding_dim)),
            ]
        )

    def map_function(
        self, smiles_col: str = "smiles", output_col: str = "embedding"
    ) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
        """A function for `dataset.map(fn, batched=True)` adding `output_col` (D floats per row).

        Invalid rows get NaN vectors (or raise under on_invalid="raise"); "skip" is refused
        because `map` must keep every row.
        """
        if self.on_invalid == "skip":
            raise ValueError("map keeps every row: use on_invalid='nan' and filter on NaN afterwards")

        def embed_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            return {output_col: list(self.embed(batch[smiles_col]))}

        return embed_batch


def _shard_path(out_path: Path, rank: int, world: int) -> Path:
    """Temporary per-process output next to `out_path` (hidden, like every partial output)."""
    return out_path.with_name(f".{out_path.name}.shard-{rank:05d}-of-{world:05d}")


_OUTPUT_COLUMNS = ("row_index", "valid", "invalid_reason", "embedding")


def _carried_name(name: str) -> str:
    """Output name of an input column carried through: its own, or ``input_<name>`` where it would
    clash with a column ``embed_file`` writes."""
    return f"input_{name}" if name in _OUTPUT_COLUMNS else name


def _carried_schema(path: str | os.PathLike, smiles_col: str) -> pa.Schema:
    """Schema of the columns of file ``path`` other than ``smiles_col`` (strings for CSV)."""
    return pa.schema([field for field in file_schema(path) if field.name != smiles_col])


def _merge_shards(merged: Path, out_path: Path, world: int, schema: pa.Schema) -> None:
    """Interleave the shards of `out_path` (chunk k lives in shard k % world) into `merged`."""
    shards = [pq.ParquetFile(_shard_path(out_path, rank, world)) for rank in range(world)]
    with pq.ParquetWriter(merged, schema) as writer:
        for number in range(sum(shard.num_row_groups for shard in shards)):
            table = shards[number % world].read_row_group(number // world)
            writer.write_table(table, row_group_size=table.num_rows + 1)
    for rank in range(world):
        _shard_path(out_path, rank, world).unlink()


def read_embeddings(path: str | os.PathLike) -> np.ndarray:
    """The (N, D) float32 embedding matrix of an `embed_file` output."""
    column = pq.read_table(path, columns=["embedding"]).column("embedding").combine_chunks()
    width = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32, copy=False)
