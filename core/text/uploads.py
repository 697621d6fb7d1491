"""Texts and pairs from untrusted input: a paste, or an uploaded .csv / .jsonl / .txt. Sizes are capped before
decoding (bytes, rows, characters per cell); every bad input raises PlaygroundError with a sentence naming the line."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from core.errors import PlaygroundError
from core.text.corpus import TextPair, TextSet, encode_labels

MAX_TEXT_FILE_BYTES = 5 * 1024 * 1024  # an upload larger than this is refused before decoding
MAX_TEXTS = 20_000  # rows kept from one upload or paste
MAX_TEXT_CHARS = 2_000  # one cell; MiniLM reads only its first 256 word pieces anyway
TEXT_FILE_TYPES = (".csv", ".jsonl", ".txt")
_TEXT_COLUMNS = ("text", "sentence", "passage", "document", "content", "body")
_LABEL_COLUMNS = ("label", "topic", "category", "class")
_QUERY_COLUMNS = ("query", "question", "anchor")
_POSITIVE_COLUMNS = ("positive", "answer", "passage", "pos")
_NEGATIVE_COLUMNS = ("negative", "hard_negative", "neg")


def _decode(data: bytes, name: str) -> str:
    if len(data) > MAX_TEXT_FILE_BYTES:
        raise PlaygroundError(f"{name!r} is {len(data) / 2**20:.1f} MB; text files are limited to "
                              f"{MAX_TEXT_FILE_BYTES // 2**20} MB.")
    if b"\x00" in data[:8192]:
        raise PlaygroundError(f"{name!r} looks like a binary file, not text; upload UTF-8 CSV, JSONL or TXT.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise PlaygroundError(f"{name!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line} cannot "
                              "be read); save it as UTF-8 and upload it again.") from exc


def _clean_rows(rows: list[tuple[int, str, str | None]], name: str, what: str = "row") -> TextSet:
    """rows: (line number, text, label or None) -> a TextSet; blank texts skipped (and said), huge ones refused."""
    kept, labels, blank = [], [], []
    for line, text, label in rows:
        text = (text or "").strip()
        if not text:
            blank.append(line)
            continue
        if len(text) > MAX_TEXT_CHARS:
            raise PlaygroundError(f"The text on {what} {line} of {name!r} has {len(text):,} characters; each text "
                                  f"may have at most {MAX_TEXT_CHARS:,} (split long documents into passages).")
        kept.append(text)
        labels.append(None if label is None else str(label).strip() or "(none)")
    if not kept:
        raise PlaygroundError(f"{name!r} holds no text: every {what} is empty.")
    if len(kept) > MAX_TEXTS:
        raise PlaygroundError(f"{name!r} holds {len(kept):,} texts; at most {MAX_TEXTS:,} can be used at once.")
    notes = []
    if blank:
        shown = ", ".join(str(b) for b in blank[:5]) + (" …" if len(blank) > 5 else "")
        notes.append(f"Skipped {len(blank)} empty {what}{'s' if len(blank) != 1 else ''} ({what} {shown}).")
    out = TextSet(kept, [str(i) for i in range(len(kept))], name=name, notes=notes)
    if any(lab is not None for lab in labels):
        codes, names = encode_labels([lab if lab is not None else "(none)" for lab in labels])
        out.labels, out.classes = {"label": codes}, {"label": names}
    return out


def texts_from_paste(text: str, *, name: str = "pasted texts") -> TextSet:
    """One text per line; empty lines are skipped."""
    if not isinstance(text, str):
        raise PlaygroundError("Paste the texts as plain text, one per line.")
    if len(text.encode("utf-8")) > MAX_TEXT_FILE_BYTES:
        raise PlaygroundError(f"The pasted text is over {MAX_TEXT_FILE_BYTES // 2**20} MB; upload a file instead "
                              "or paste less.")
    return _clean_rows([(i, t, None) for i, t in enumerate(text.splitlines(), start=1)], name, "line")


def _pick(columns: Sequence[str], wanted: Sequence[str]) -> str | None:
    lower = {c.strip().lower(): c for c in columns if c is not None}
    return next((lower[w] for w in wanted if w in lower), None)


def _csv_rows(text: str, name: str) -> tuple[list[str], list[tuple[int, dict]]]:
    csv.field_size_limit(MAX_TEXT_FILE_BYTES)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = list(reader.fieldnames or [])
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise PlaygroundError(f"{name!r} is not a readable CSV table ({exc}).") from exc
    if not header:
        raise PlaygroundError(f"{name!r} is empty.")
    return header, rows


def _jsonl_rows(text: str, name: str) -> list[tuple[int, Any]]:
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            out.append((i, None))
            continue
        try:
            out.append((i, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise PlaygroundError(f"Line {i} of {name!r} is not valid JSON ({exc.msg}); JSONL needs one JSON "
                                  "object or string per line.") from exc
        except RecursionError:  # brackets nested thousands deep
            raise PlaygroundError(f"Line {i} of {name!r} nests brackets too deeply; JSONL needs one flat JSON "
                                  "object or string per line.") from None
    return out


def texts_from_upload(data: bytes, filename: str) -> TextSet:
    """Texts from an uploaded .csv (a text/sentence column, else the first; optional label/topic column),
    .jsonl (one object with a "text" field, or one string, per line) or .txt (one text per line).

    The size cap is checked before decoding; bad encodings, empty files, rows and huge cells raise
    PlaygroundError with a sentence naming the line.
    """
    name = Path(str(filename)).name
    suffix = Path(name).suffix.lower()
    if suffix not in TEXT_FILE_TYPES:
        raise PlaygroundError(f"Cannot read {name!r}: text files must be one of {', '.join(TEXT_FILE_TYPES)}.")
    text = _decode(bytes(data), name)
    if not text.strip():
        raise PlaygroundError(f"{name!r} is empty.")
    if suffix == ".txt":
        return _clean_rows([(i, t, None) for i, t in enumerate(text.splitlines(), start=1)], name, "line")
    if suffix == ".csv":
        header, rows = _csv_rows(text, name)
        col = _pick(header, _TEXT_COLUMNS) or header[0]
        lab = _pick([h for h in header if h != col], _LABEL_COLUMNS)
        return _clean_rows([(line, row.get(col) or "", row.get(lab) if lab else None) for line, row in rows],
                           name, "line")
    rows = []
    for line, obj in _jsonl_rows(text, name):
        if obj is None or isinstance(obj, str):
            rows.append((line, obj or "", None))
        elif isinstance(obj, dict):
            key = _pick(list(obj), _TEXT_COLUMNS)
            if key is None:
                raise PlaygroundError(f"Line {line} of {name!r} has no text field; name it one of "
                                      f"{', '.join(_TEXT_COLUMNS)}.")
            lab = _pick(list(obj), _LABEL_COLUMNS)
            value = obj[key]
            if not isinstance(value, str):
                raise PlaygroundError(f"The {key!r} field on line {line} of {name!r} is not a string.")
            rows.append((line, value, obj[lab] if lab else None))
        else:
            raise PlaygroundError(f"Line {line} of {name!r} holds a {type(obj).__name__}; each line must be a JSON "
                                  "object with a text field, or a string.")
    return _clean_rows(rows, name, "line")


def pairs_from_upload(data: bytes, filename: str) -> list[TextPair]:
    """Training pairs from a .csv or .jsonl with query and positive columns (and optionally negative)."""
    name = Path(str(filename)).name
    suffix = Path(name).suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise PlaygroundError(f"Cannot read {name!r}: a pairs file must be .csv or .jsonl with columns query, "
                              "positive and optionally negative.")
    text = _decode(bytes(data), name)
    if not text.strip():
        raise PlaygroundError(f"{name!r} is empty.")
    if suffix == ".csv":
        header, raw = _csv_rows(text, name)
        records = [(line, row) for line, row in raw]
    else:
        records = [(line, obj) for line, obj in _jsonl_rows(text, name) if obj is not None]
        bad = next(((line, obj) for line, obj in records if not isinstance(obj, dict)), None)
        if bad is not None:
            raise PlaygroundError(f"Line {bad[0]} of {name!r} is not a JSON object with query and positive fields.")
        header = sorted({k for _, obj in records for k in obj})
    q, p = _pick(header, _QUERY_COLUMNS), _pick(header, _POSITIVE_COLUMNS)
    n = _pick(header, _NEGATIVE_COLUMNS)
    if q is None or p is None:
        raise PlaygroundError(f"{name!r} needs a 'query' and a 'positive' column (found {list(header)[:8]}).")
    pairs, blank = [], 0
    for line, row in records:
        values = [row.get(c) for c in (q, p, n) if c is not None]
        if any(v is not None and not isinstance(v, str) for v in values):
            raise PlaygroundError(f"Line {line} of {name!r} holds a value that is not text.")
        query, pos = (row.get(q) or "").strip(), (row.get(p) or "").strip()
        neg = (row.get(n) or "").strip() if n else ""
        if not query or not pos:
            blank += 1
            continue
        for value in (query, pos, neg):
            if len(value) > MAX_TEXT_CHARS:
                raise PlaygroundError(f"A text on line {line} of {name!r} has {len(value):,} characters; each "
                                      f"may have at most {MAX_TEXT_CHARS:,}.")
        pairs.append(TextPair(query, pos, neg or None))
    if len(pairs) < 4:
        raise PlaygroundError(f"{name!r} has {len(pairs)} complete pairs{f' ({blank} rows lack a query or positive)' if blank else ''}; "
                              "fine-tuning needs at least 4.")
    if len(pairs) > MAX_TEXTS:
        raise PlaygroundError(f"{name!r} holds {len(pairs):,} pairs; at most {MAX_TEXTS:,} can be used.")
    return pairs
