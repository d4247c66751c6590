"""``cmim optimize``: property-guided CMA-ES search in latent space around seed molecules.

cmim optimize seeds.csv --score qed -o better.csv         CMA-ES in latent space
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import traceback
from collections.abc import Callable
from pathlib import Path

from cmim_hf import chem, generation
from cmim_hf.cli import generate, options
from cmim_hf.errors import UsageError, one_line

OPTIMIZE_COLUMNS = [
    "row",
    "seed",
    "invalid_reason",
    "seed_score",
    "rank",
    "smiles",
    "score",
    "improvement",
    "similarity",
    "objective",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmim optimize`` options to ``parser``."""
    options.describe(
        parser,
        "Each valid seed molecule gets up to --top-k rows (best objective first); invalid seeds one row\n"
        "with invalid_reason.\nexample:\n  cmim optimize seeds.csv --score qed --similarity-weight 0.5 -o better.csv",
    )
    generate.add_input_molecules(parser, "seed molecules")
    generate.add_record_output(parser)
    parser.add_argument(
        "--score",
        default="qed",
        help="property to maximise: an RDKit descriptor name (qed, MolLogP, TPSA, ...) or "
        "module:function / file.py:function returning a float for a SMILES (default: qed)",
    )
    parser.add_argument(
        "--iterations", type=int, default=10, help="CMA-ES rounds per seed molecule (default: 10)"
    )
    parser.add_argument(
        "--population-size",
        type=int,
        default=None,
        help="latent codes decoded per round (default: CMA-ES's 4 + 3 ln(latent dimension))",
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="initial CMA-ES step size around the seed's code, in prior units (default: the checkpoint's "
        "config.exploration_radius, 2 posterior floor stds)",
    )
    parser.add_argument(
        "--similarity-weight",
        type=float,
        default=0.0,
        help="maximise score + weight * ECFP4 Tanimoto similarity to the seed; > 0 keeps molecules close "
        "to their seed (default: 0.0)",
    )
    parser.add_argument(
        "--top-k", type=int, default=10, help="best molecules written per seed molecule (default: 10)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed: same seed, same search (default: 0)"
    )
    generate.add_decoding_options(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``cmim optimize``; returns the exit code."""
    return generate.run_command("optimize", args, optimize)


def resolve_score(spec: str) -> Callable[[str], float]:
    """A scoring function from ``spec``: an RDKit descriptor name (``qed``, ``MolLogP``, ``TPSA``, ...)
    or ``module:function`` / ``path/to/file.py:function`` naming a Python callable SMILES -> float.

    Raises:
        UsageError: an unknown descriptor, a module or file that cannot be imported (naming the
            file and line where it fails), or no such function in it.
    """
    if ":" not in spec:
        if spec.lower() not in {name.lower() for name in chem.descriptor_names()}:
            raise UsageError(f"--score: unknown RDKit descriptor {spec!r}; e.g. qed, MolLogP, TPSA, MolWt")
        return generation.descriptor_score(spec)
    target, _, attribute = spec.rpartition(":")
    if target.endswith(".py") and not Path(target).is_file():
        raise UsageError(f"score file not found: {target}")
    try:
        if target.endswith(".py"):
            module_spec = importlib.util.spec_from_file_location(Path(target).stem, target)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as err:
        raise UsageError(f"cannot import the scoring module {target!r}: {err}") from None
    except SyntaxError as err:  # the user's file: one line naming it and the line, no traceback
        where = target if target.endswith(".py") else err.filename or target
        raise UsageError(f"--score {where}: syntax error at line {err.lineno}: {err.msg}") from None
    except Exception as err:  # the user's module fails while it is imported
        raise UsageError(
            f"--score {target}: importing it failed{_user_line(err, target)}: {one_line(err)}"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise UsageError(f"{target!r} has no function {attribute!r}")
    return function


def _user_line(error: BaseException, target: str) -> str:
    """`` at line N`` of the innermost traceback frame in the file ``target`` ('' if none)."""
    if not target.endswith(".py"):
        return ""
    path = Path(target).resolve()
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename and Path(frame.filename).resolve() == path
    ]
    return f" at line {lines[-1]}" if lines else ""


def optimize(args: argparse.Namespace) -> str:
    """Search around every usable seed, write each seed's rows as its search ends; the summary line."""
    if args.iterations < 1 or (args.sigma is not None and args.sigma <= 0) or args.top_k < 1:
        raise UsageError("--iterations and --top-k must be positive, --sigma > 0")
    if args.population_size is not None and args.population_size < 2:
        raise UsageError("--population-size must be at least 2")
    if args.seed < 0:
        raise UsageError("--seed must be non-negative")
    score_fn = resolve_score(args.score)
    values = generate.read_smiles(args.input, args.smiles_col)
    model, tokenizer = generate.load(args)
    usable, reasons = generate.screen(values, tokenizer, model)
    searches = generation.iter_optimize(
        model,
        tokenizer,
        [values[i] for i in usable],
        score_fn,
        iterations=args.iterations,
        population_size=args.population_size,
        sigma=args.sigma,
        similarity_weight=args.similarity_weight,
        seed=args.seed,
        top_k=args.top_k,  # only the molecules written are kept
        **generate.decode_options(args),
    )
    summary = {
        "seeds": len(values),
        "invalid_seeds": len(reasons),
        "improved_seeds": 0,
        "decoded": 0,
        "penalized": 0,
    }
    drawn: list[generation.OptimizationResult] = []  # each seed draws one panel or more
    with generate.record_output(args.output, OPTIMIZE_COLUMNS) as out:
        for row, value in enumerate(values):  # each seed's rows written when its search ends
            if row in reasons:
                out.write([{"row": row, "seed": value, "invalid_reason": reasons[row]}])
                continue
            result = next(searches)
            found = result.to_records(args.top_k)
            out.write([{"row": row, "invalid_reason": None, **record} for record in found])
            if not found:
                out.write([{"row": row, "seed": value, "seed_score": result.seed_score}])
            summary["improved_seeds"] += bool(result.any_improved)
            summary["decoded"] += result.n_evaluated
            summary["penalized"] += result.n_penalized
            if args.image is not None and len(drawn) < generate.DRAWN_PANELS:
                drawn.append(result)
        out.summary = summary
    return (
        f"{generate.format_summary(summary)} -> {args.output}{generate.draw(args, drawn, top_k=args.top_k)}"
    )
