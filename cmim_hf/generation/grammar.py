"""Grammar-constrained SMILES decoding: a Transformers ``LogitsProcessor`` that never lets a decode
take a token after which the SMILES can no longer be completed into a syntactically valid one.

This file imports only the standard library, ``torch`` and ``transformers`` so that it can be copied
next to a checkpoint and loaded as remote code where ``cmim_hf`` is not installed.

Enforced, for an atom-level vocabulary (one token per atom, bond, branch parenthesis, ring label):

* an atom first: no bond, ring label, parenthesis, ``.`` or ``<eos>`` before the first atom;
* ``(`` only after an atom, a ring label or ``)``; ``)`` only with a branch open and never right
  after ``(``, a bond or ``.``; ``<eos>`` only with every branch and ring closed;
* a bond (``- = # $ : / \\``) only after an atom, a ring label, ``(`` or ``)``, and only before an
  atom or (when it does not follow ``(``) a ring label: never before ``(``, ``)``, ``.``, another
  bond or ``<eos>`` (except ``\\\\``, a doubled backslash RDKit reads as one);
* a ring label (``0``-``9``, ``%nn``, ``%(n)``) only after an atom, a ring label, ``)`` or a bond
  following one of those; an open label may only close on another atom than the one that opened
  it and not bonded to it yet (RDKit: "duplicated ring closure", "ring closure duplicates bond");
* ``.`` only after an atom, a ring label or ``)``, and followed by an atom;
* never a token that is no SMILES syntax at all: ``<pad>``, ``<bos>``, ``<unk>``, ``<mask>`` or a
  stray character (``+``, ``@``, ``~`` ...).

What RDKit's SMILES parser accepts is never refused (``tests/test_smiles_grammar.py`` replays every
molecule of the shipped MOSES and MoleculeNet files; conflicting ring-bond symbols such as
``C=1CCCCC#1``, which RDKit accepts, are allowed). Chemistry is out of scope: valences, aromaticity
and kekulisation, charges and bracket-atom contents are not checked, and a decode cut off by
``max_new_tokens`` before ``<eos>`` stays incomplete.

Example:
    >>> from transformers import LogitsProcessorList
    >>> from cmim_hf.models.cmim.modeling_cmim import CMIMEncoderOutput
    >>> processors = LogitsProcessorList([SmilesGrammarLogitsProcessor(tokenizer)])
    >>> ids = model.generate(  # z: (B, K, L) latent codes; or model.decode_latents(z, ...)
    ...     encoder_outputs=CMIMEncoderOutput(last_hidden_state=z), logits_processor=processors, num_beams=4
    ... )
    >>> tokenizer.batch_decode(ids, skip_special_tokens=True)
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import NamedTuple

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

__all__ = ["TokenKind", "classify_token", "SmilesGrammarLogitsProcessor"]


class TokenKind(enum.IntEnum):
    """The syntactic role of a vocabulary token."""

    ATOM = 0  # bracket atom, organic-subset atom (B C N O P S F Cl Br I b c n o s p) or *
    BOND = 1  # - = # $ : /
    BACKSLASH = 2  # the bond \, which RDKit also reads written twice (\\, as escaped in some files)
    RING_LABEL = 3
    BRANCH_OPEN = 4
    BRANCH_CLOSE = 5
    DOT = 6
    END = 7  # <eos>
    INVALID = 8  # never emitted: other special tokens and anything that is no SMILES syntax


_ATOM_PATTERN = re.compile(r"\[[^\[\]]+\]|Br|Cl|[BCNOPSFIbcnosp*]")
_RING_LABEL_PATTERN = re.compile(r"[0-9]|%[0-9]{2}|%\([0-9]+\)")
_PUNCTUATION = {"(": TokenKind.BRANCH_OPEN, ")": TokenKind.BRANCH_CLOSE, ".": TokenKind.DOT}
_BONDS = frozenset("-=#$:/")


def classify_token(token: str) -> TokenKind:
    """The :class:`TokenKind` of one non-special vocabulary token (``<eos>`` is classified by id)."""
    if _ATOM_PATTERN.fullmatch(token):
        return TokenKind.ATOM
    if token in _BONDS:
        return TokenKind.BOND
    if token == "\\":
        return TokenKind.BACKSLASH
    if _RING_LABEL_PATTERN.fullmatch(token):
        return TokenKind.RING_LABEL
    return _PUNCTUATION.get(token, TokenKind.INVALID)


class _Context(enum.IntEnum):
    """What the last token lets come next."""

    NEEDS_ATOM = 0  # the start, after '.', after a bond that follows '('
    AFTER_OPEN = 1  # after '('
    AFTER_BOND = 2  # after a bond that follows an atom, a ring label or ')'
    AFTER_ATOM = 3  # after an atom, a ring label or ')'
    AFTER_OPEN_BACKSLASH = 4  # after '(' and one backslash
    AFTER_BACKSLASH = 5  # after one backslash that follows an atom, a ring label or ')'


_NEXT_KINDS: dict[_Context, frozenset[TokenKind]] = {
    _Context.NEEDS_ATOM: frozenset({TokenKind.ATOM}),
    _Context.AFTER_OPEN: frozenset({TokenKind.ATOM, TokenKind.BOND, TokenKind.BACKSLASH}),
    _Context.AFTER_BOND: frozenset({TokenKind.ATOM, TokenKind.RING_LABEL}),
    _Context.AFTER_ATOM: frozenset(set(TokenKind) - {TokenKind.INVALID}),
    _Context.AFTER_OPEN_BACKSLASH: frozenset({TokenKind.ATOM, TokenKind.BACKSLASH}),
    _Context.AFTER_BACKSLASH: frozenset({TokenKind.ATOM, TokenKind.RING_LABEL, TokenKind.BACKSLASH}),
}
# The context after a bond, by the context before it.
_AFTER_BOND = {_Context.AFTER_ATOM: _Context.AFTER_BOND, _Context.AFTER_OPEN: _Context.NEEDS_ATOM}
_AFTER_BACKSLASH = {
    _Context.AFTER_ATOM: _Context.AFTER_BACKSLASH,
    _Context.AFTER_OPEN: _Context.AFTER_OPEN_BACKSLASH,
    _Context.AFTER_BACKSLASH: _Context.AFTER_BOND,
    _Context.AFTER_OPEN_BACKSLASH: _Context.NEEDS_ATOM,
}


def _kind_allowed(context: _Context, in_branch: bool, rings_open: bool, kind: TokenKind) -> bool:
    """Whether a token of ``kind`` may follow (ring labels: before the per-label check)."""
    if kind not in _NEXT_KINDS[context]:
        return False
    if kind is TokenKind.BRANCH_CLOSE:
        return in_branch
    if kind is TokenKind.END:
        return not (in_branch or rings_open)
    return True


class _Prefix(NamedTuple):
    """Parse state of a SMILES prefix. Atoms are numbered from 0 in order of appearance."""

    context: _Context
    anchor: int  # the atom the next bond or ring label attaches to; -1 after '.' and at the start
    atoms: int
    branch_anchors: tuple[int, ...]  # the atom each open branch hangs from, innermost last
    open_rings: tuple[tuple[int, int], ...]  # (ring label token id, atom that opened it)
    bonds: frozenset[tuple[int, int]]  # (lower, higher) atom index of every bond so far

    def closes_ring_legally(self, opener: int) -> bool:
        """Whether a ring label opened on atom ``opener`` may close on the anchor atom now."""
        return (
            opener != self.anchor and (min(opener, self.anchor), max(opener, self.anchor)) not in self.bonds
        )

    def table_row(self) -> int:
        """This state's row of the mask table (``SmilesGrammarLogitsProcessor._table``)."""
        return _table_row(self.context, bool(self.branch_anchors), bool(self.open_rings))


def _table_row(context: _Context, in_branch: bool, rings_open: bool) -> int:
    return 4 * context + 2 * in_branch + rings_open


_START = _Prefix(_Context.NEEDS_ATOM, -1, 0, (), (), frozenset())
_UNCONSTRAINED = None  # the state of a finished decode or of a prefix that already broke the grammar
_UNCONSTRAINED_ROW = 4 * len(_Context)
_RING_CONTEXTS = tuple(context for context in _Context if TokenKind.RING_LABEL in _NEXT_KINDS[context])
# Prefix hashes are sums of id * random weight below this bound; a collision (or an int64 wrap-around
# past 2**14 tokens of ids above 2**17) costs a re-parse, never a wrong state: matches are verified.
_HASH_WEIGHT_BOUND = 2**31


class SmilesGrammarLogitsProcessor(LogitsProcessor):
    """Sets to -inf the score of every token that would make the SMILES syntactically impossible
    (the rules are in this module's docstring), for greedy, sampled and beam-search decoding.

    Each row's parse state is keyed on its prefix: a row whose prefix was a row of the previous call
    (in any order, as beam search reorders hypotheses) advances that row's state by one token; any
    other row is parsed from scratch. ``input_ids[:, 0]`` is the decoder start token and is skipped.
    Rows that have emitted ``<eos>`` or ``<pad>`` (finished) or whose prefix already breaks the
    grammar (a prompt, or a decode made without the processor) are left unconstrained.

    Args:
        tokenizer: the model's tokenizer, or its token -> id vocabulary.
        eos_token: the end-of-sequence token (a tokenizer's own ``eos_token`` is used when given one).
        pad_token: the padding token Transformers appends to finished rows (likewise).

    Example:
        >>> processors = LogitsProcessorList([SmilesGrammarLogitsProcessor(tokenizer)])
        >>> model.generate(..., logits_processor=processors)
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase | Mapping[str, int],
        eos_token: str = "<eos>",
        pad_token: str = "<pad>",
    ) -> None:
        if isinstance(tokenizer, PreTrainedTokenizerBase):
            vocab = tokenizer.get_vocab()
            eos_token, pad_token = str(tokenizer.eos_token), str(tokenizer.pad_token)
        else:
            vocab = dict(tokenizer)
        if eos_token not in vocab:
            raise ValueError(f"the end-of-sequence token {eos_token!r} is not in the vocabulary")
        self.eos_token_id = vocab[eos_token]
        self.pad_token_id = vocab.get(pad_token)
        self.kinds: dict[int, TokenKind] = {
            index: TokenKind.END if index == self.eos_token_id else classify_token(token)
            for token, index in vocab.items()
        }
        if TokenKind.ATOM not in self.kinds.values():
            raise ValueError("the vocabulary has no atom token: nothing could be decoded")
        self._tables: dict[int, torch.Tensor] = {}
        self._hash_weights = torch.zeros(0, dtype=torch.long)
        self._previous_ids: torch.Tensor | None = None
        self._previous_hashes: list[int] = []
        self._previous_states: list[_Prefix | None] = []

    # --- parsing -----------------------------------------------------------------------------

    def advance(self, state: _Prefix | None, token_id: int) -> _Prefix | None:
        """The state after appending ``token_id`` (None: unconstrained from here on)."""
        if state is _UNCONSTRAINED or token_id in (self.eos_token_id, self.pad_token_id):
            return _UNCONSTRAINED
        kind = self.kinds.get(token_id, TokenKind.INVALID)
        if not _kind_allowed(state.context, bool(state.branch_anchors), bool(state.open_rings), kind):
            return _UNCONSTRAINED
        context, anchor, atoms, branch_anchors, open_rings, bonds = state
        if kind is TokenKind.ATOM:
            if anchor >= 0:
                bonds = bonds | {(anchor, atoms)}
            return _Prefix(_Context.AFTER_ATOM, atoms, atoms + 1, branch_anchors, open_rings, bonds)
        if kind is TokenKind.BOND:
            return _Prefix(_AFTER_BOND[context], anchor, atoms, branch_anchors, open_rings, bonds)
        if kind is TokenKind.BACKSLASH:
            return _Prefix(_AFTER_BACKSLASH[context], anchor, atoms, branch_anchors, open_rings, bonds)
        if kind is TokenKind.RING_LABEL:
            return self._ring_label(state, token_id)
        if kind is TokenKind.BRANCH_OPEN:
            return _Prefix(_Context.AFTER_OPEN, anchor, atoms, (*branch_anchors, anchor), open_rings, bonds)
        if kind is TokenKind.BRANCH_CLOSE:
            return _Prefix(
                _Context.AFTER_ATOM, branch_anchors[-1], atoms, branch_anchors[:-1], open_rings, bonds
            )
        return _Prefix(_Context.NEEDS_ATOM, -1, atoms, branch_anchors, open_rings, bonds)  # TokenKind.DOT

    @staticmethod
    def _ring_label(state: _Prefix, label: int) -> _Prefix | None:
        """Open ``label`` on the anchor atom, or close it there (None if that closure is illegal)."""
        for opened in state.open_rings:
            if opened[0] == label:
                if not state.closes_ring_legally(opened[1]):
                    return _UNCONSTRAINED
                rest = tuple(ring for ring in state.open_rings if ring is not opened)
                bond = (min(opened[1], state.anchor), max(opened[1], state.anchor))
                return state._replace(
                    context=_Context.AFTER_ATOM, open_rings=rest, bonds=state.bonds | {bond}
                )
        return state._replace(
            context=_Context.AFTER_ATOM, open_rings=(*state.open_rings, (label, state.anchor))
        )

    def parse(self, token_ids: list[int]) -> _Prefix | None:
        """The state after ``token_ids`` (a decoder prefix without its start token)."""
        state = _START
        for token_id in token_ids:
            state = self.advance(state, token_id)
        return state

    # --- masking -----------------------------------------------------------------------------

    def _table(self, width: int) -> torch.Tensor:
        """(4 * contexts + 1, width) bool: the tokens allowed per (context, a branch open, a ring
        open); the last row (unconstrained) allows everything. Ids outside the vocabulary never are."""
        if width not in self._tables:
            table = torch.zeros(_UNCONSTRAINED_ROW + 1, width, dtype=torch.bool)
            for context in _Context:
                for in_branch in (False, True):
                    for rings_open in (False, True):
                        row = _table_row(context, in_branch, rings_open)
                        for index, kind in self.kinds.items():
                            if index < width:
                                table[row, index] = _kind_allowed(context, in_branch, rings_open, kind)
            table[_UNCONSTRAINED_ROW] = True
            self._tables[width] = table
        return self._tables[width]

    def allowed_tokens(self, states: list[_Prefix | None], width: int) -> torch.Tensor:
        """(B, width) bool CPU mask of the tokens each state allows."""
        rows = [_UNCONSTRAINED_ROW if state is _UNCONSTRAINED else state.table_row() for state in states]
        allowed = self._table(width)[torch.tensor(rows, dtype=torch.long)]
        illegal_rows, illegal_labels = [], []
        for row, state in enumerate(states):
            if state is _UNCONSTRAINED or not state.open_rings or state.context not in _RING_CONTEXTS:
                continue
            for label, opener in state.open_rings:
                if not state.closes_ring_legally(opener):
                    illegal_rows.append(row)
                    illegal_labels.append(label)
        if illegal_rows:
            allowed[illegal_rows, illegal_labels] = False
        return allowed

    def _prefix_hashes(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B,) int64 hash of each row of ``input_ids`` (B, T): a random-weighted sum of its ids."""
        length = input_ids.shape[1]
        if len(self._hash_weights) < length:
            generator = torch.Generator().manual_seed(0)
            size = max(length, 2 * len(self._hash_weights), 64)
            self._hash_weights = torch.randint(1, _HASH_WEIGHT_BOUND, (size,), generator=generator)
        weights = self._hash_weights[:length].to(input_ids.device)
        return (input_ids.long() * weights).sum(-1)

    def states(self, input_ids: torch.Tensor) -> list[_Prefix | None]:
        """Parse state of each row of ``input_ids`` (B, T), reusing the previous call's states for
        rows that extend one of its rows by one token; remembers them for the next call."""
        length = input_ids.shape[1]
        parents: list[int | None] = [None] * len(input_ids)
        previous = self._previous_ids
        if previous is not None and previous.shape[1] == length - 1 and previous.device == input_ids.device:
            row_of_hash = {value: row for row, value in enumerate(self._previous_hashes)}
            found = [row_of_hash.get(value) for value in self._prefix_hashes(input_ids[:, :-1]).tolist()]
            candidates = torch.tensor([-1 if row is None else row for row in found], device=input_ids.device)
            same = (input_ids[:, :-1] == previous[candidates.clamp(min=0)]).all(-1) & (candidates >= 0)
            parents = [row if match else None for row, match in zip(found, same.tolist())]
        last_tokens = input_ids[:, -1].tolist()
        orphans = [row for row, parent in enumerate(parents) if parent is None]
        parsed = iter(input_ids[orphans, 1:].tolist() if orphans else [])
        states = [
            self.parse(next(parsed))
            if parent is None
            else self.advance(self._previous_states[parent], last_tokens[row])
            for row, parent in enumerate(parents)
        ]
        self._previous_ids = input_ids
        self._previous_hashes = self._prefix_hashes(input_ids).tolist()
        self._previous_states = states
        return states

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """input_ids (B, T) decoder prefixes, scores (B, V) -> scores with forbidden tokens at -inf."""
        allowed = self.allowed_tokens(self.states(input_ids), scores.shape[-1]).to(scores.device)
        return scores.masked_fill(~allowed, float("-inf"))
