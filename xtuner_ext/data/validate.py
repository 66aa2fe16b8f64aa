"""Record checks shared by ``tools/check_data.py`` and the training dataset.

``check_record(record, index, image_folder)`` is the cheap per-record call (the training dataset
uses it to skip-with-a-counted-warning or stop); ``validate_records`` runs it over a whole list,
adds the cross-record checks (duplicates) and the token budget, and returns a :class:`Report`.

Problem codes (each message says what to fix):

=====================  ========================================================================
``malformed``          not an object; ``conversations`` missing/empty; a turn without str ``from``/``value``
``role_order``         turns do not go human, gpt, human, gpt, ... ending with gpt; unknown role
``empty_answer``       a gpt turn is empty or whitespace
``image_tag_missing``  the record has an image but no ``<image>`` in any human turn
``image_tag_extra``    more than one ``<image>``, ``<image>`` in a gpt turn, or ``<image>`` without image
``multiple_images``    ``image`` lists several files (InternVL training is single-image)
``path_escapes_folder`` absolute ``image`` path, or one that leaves the image folder (``../x.jpg``)
``missing_image``      the image file does not exist (or no image folder was given)
``unreadable_image``   the file is not an image PIL can identify (or cannot be opened)
``corrupt_image``      the image is identified but cannot be decoded (e.g. a truncated JPEG)
``unsupported_mode``   pixel mode without a faithful RGB conversion: I, I;16*, F, HSV, LAB
``duplicate``          same image and conversation as an earlier record, or an id already used
``would_truncate``     tiles x image tokens + text tokens exceed ``max_length``
``invalid_json``       (from the loaders) a jsonl line that is not JSON
``check_failed``       a record shape the checks did not foresee (reported, never raised)
=====================  ========================================================================

Modes ``1, L, LA, La, P, PA, RGB, RGBA, RGBa, RGBX, CMYK, YCbCr`` are accepted: ``convert("RGB")``
is what InternVL's loader does, and these convert faithfully (alpha is dropped). 16/32-bit integer
and float modes are rejected because ``convert("RGB")`` clips them to white/black.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from .records import GPT, HUMAN, IMAGE_TOKEN, Problem, normalize_image_field

CONVERTIBLE_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})


class ImageProblem(Exception):
    """An image cannot be used; ``code`` is one of the problem codes."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str


def inspect_image(path: str) -> ImageInfo:
    """Open and fully decode ``path``; return its size and mode or raise :class:`ImageProblem`."""
    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
            image.load()
    except FileNotFoundError as err:
        raise ImageProblem("missing_image", f"image file not found: {path}") from err
    except UnidentifiedImageError as err:
        raise ImageProblem("unreadable_image", f"not an image file PIL can read: {path}") from err
    except Image.DecompressionBombError as err:
        raise ImageProblem("unreadable_image", f"image too large to decode safely: {path} ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:
        # Identified but not decodable: truncated or damaged data. (IsADirectory/permission errors
        # are OSErrors raised by open() before identification; report those as unreadable.)
        if isinstance(err, (IsADirectoryError, PermissionError)):
            raise ImageProblem("unreadable_image", f"cannot open {path}: {err}") from err
        raise ImageProblem("corrupt_image", f"image data is damaged ({err}): {path}; re-download or re-encode it") from err
    if mode not in CONVERTIBLE_MODES:
        raise ImageProblem(
            "unsupported_mode",
            f"pixel mode {mode!r} cannot be converted to RGB faithfully: {path}; save it as 8-bit RGB (e.g. JPEG)",
        )
    return ImageInfo(size[0], size[1], mode)


def load_rgb_image(path: str) -> Image.Image:
    """Load an image as RGB, raising :class:`ImageProblem` (with its code) instead of substituting."""
    inspect_image(path)
    with Image.open(path) as image:
        return image.convert("RGB")


@dataclass
class RecordInfo:
    """What the checks learnt about one record (for the report table)."""

    index: int
    id: str | None = None
    task_type: str | None = None
    image_size: tuple[int, int] | None = None
    mode: str | None = None
    tiles: int | None = None
    image_tokens: int | None = None
    text_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.text_tokens is None:
            return None
        return self.text_tokens + (self.image_tokens or 0)


def _structure_problems(record) -> list[tuple[str, str]]:
    if not isinstance(record, dict):
        return [("malformed", f"record is a {type(record).__name__}, expected an object")]
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        return [("malformed", "'conversations' is missing or empty; expected a list of {from, value} turns")]
    for t, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("from"), str) or not isinstance(turn.get("value"), str):
            return [("malformed", f"turn {t} must be an object with string 'from' and 'value', got {turn!r:.80}")]
    problems = []
    for t, turn in enumerate(turns):
        expected = HUMAN if t % 2 == 0 else GPT
        if turn["from"] != expected:
            problems.append(
                ("role_order", f"turn {t} is from {turn['from']!r}, expected {expected!r} "
                 "(turns must alternate human, gpt, ... starting with human)")
            )
            break
    else:
        if turns[-1]["from"] != GPT:
            problems.append(("role_order", f"last turn ({len(turns) - 1}) is from 'human' with no gpt answer"))
    for t, turn in enumerate(turns):
        if turn["from"] == GPT and not turn["value"].strip():
            problems.append(("empty_answer", f"gpt turn {t} is empty; write the answer or drop the record"))
    return problems


def _image_tag_problems(record: dict, image) -> list[tuple[str, str]]:
    turns = record["conversations"]
    human_tags = sum(turn["value"].count(IMAGE_TOKEN) for turn in turns if turn["from"] == HUMAN)
    gpt_tags = sum(turn["value"].count(IMAGE_TOKEN) for turn in turns if turn["from"] != HUMAN)
    problems = []
    if gpt_tags:
        problems.append(("image_tag_extra", f"{IMAGE_TOKEN} appears in a gpt turn; it belongs in the first human turn"))
    if image is None and human_tags:
        problems.append(("image_tag_extra", f"{IMAGE_TOKEN} in the question but the record has no 'image'"))
    elif image is not None and human_tags == 0:
        problems.append(("image_tag_missing", f"record has an image but no {IMAGE_TOKEN} in any human turn; "
                         f"start the first question with '{IMAGE_TOKEN}\\n'"))
    elif image is not None and human_tags > 1:
        problems.append(("image_tag_extra", f"{human_tags} {IMAGE_TOKEN} tags for one image; keep exactly one"))
    return problems


def resolve_image_path(image: str, image_folder: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """``(path, None)`` for an image path inside the folder, else ``(None, (code, message))``."""
    if os.path.isabs(image) or image.startswith(("/", "\\")):
        return None, ("path_escapes_folder", f"image path {image!r} is absolute; make it relative to the image folder")
    if image_folder is None:
        return None, ("missing_image", f"record has image {image!r} but no image folder was given")
    folder = os.path.normpath(image_folder)
    path = os.path.normpath(os.path.join(folder, image))
    if os.path.commonpath([folder, path]) != folder:
        return None, ("path_escapes_folder", f"image path {image!r} leaves the image folder {image_folder}")
    return path, None


def _missing_hint(image: str, image_folder: str) -> str:
    parent = os.path.dirname(os.path.normpath(image_folder))
    if os.path.isfile(os.path.join(parent, image)):
        return f"; it exists under {parent}: set image_folder to {parent}"
    return ""


def _check(record, index: int, image_folder: str | None, check_image: bool, budget, max_length) -> tuple[list[tuple[str, str]], RecordInfo]:
    info = RecordInfo(index)
    problems = _structure_problems(record)
    if problems and problems[0][0] == "malformed":
        return problems, info
    info.id = None if record.get("id") is None else str(record.get("id"))
    image = normalize_image_field(record.get("image"))
    info.task_type = record.get("task_type") or ("I2T" if image is not None else "T2T")
    if image is not None and not isinstance(image, str):
        kind = "several images" if isinstance(image, list) else f"a {type(image).__name__}"
        code = "multiple_images" if isinstance(image, list) else "malformed"
        return problems + [(code, f"'image' is {kind} ({image!r:.80}); exactly one relative path is supported")], info
    problems += _image_tag_problems(record, image)
    if image is not None:
        path, problem = resolve_image_path(image, image_folder)
        if problem:
            return problems + [problem], info
        if not os.path.exists(path):
            return problems + [("missing_image", f"image file not found: {path}{_missing_hint(image, image_folder)}")], info
        if check_image:
            try:
                image_info = inspect_image(path)
            except ImageProblem as err:
                return problems + [(err.code, err.message)], info
            info.image_size, info.mode = (image_info.width, image_info.height), image_info.mode
    if budget is not None and not problems:
        info.tiles, info.image_tokens, info.text_tokens = budget.count_tokens(record, info.image_size)
        if max_length is not None and info.total_tokens > max_length:
            problems.append(("would_truncate", f"{info.total_tokens} tokens ({info.tiles} tiles x {budget.num_image_token} "
                             f"image + {info.text_tokens} text) > max_length {max_length}; raise max_length, "
                             "lower max_dynamic_patch or shorten the text"))
    return problems, info


def check_record(record, index: int, image_folder: str | None, *, check_image: bool = True,
                 budget=None, max_length: int | None = None, source: str | None = None) -> list[Problem]:
    """Problems that make one record unusable (empty list: usable). Never raises on bad data.

    ``check_image=False`` skips decoding the image (existence and path checks still run).
    ``budget`` (the model's processor, see :func:`validate_records`) with ``max_length`` adds ``would_truncate``.
    """
    problems, _ = _check(record, index, image_folder, check_image, budget, max_length)
    return [Problem(index, code, message, source) for code, message in problems]


@dataclass
class Report:
    """The result of :func:`validate_records`."""

    source: str | None
    n_records: int
    problems: list[Problem] = field(default_factory=list)
    infos: list[RecordInfo] = field(default_factory=list)
    max_length: int | None = None

    @property
    def bad_indices(self) -> set[int]:
        return {p.index for p in self.problems}

    @property
    def n_usable(self) -> int:
        return self.n_records - len(self.bad_indices)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts_by_code(self) -> Counter:
        return Counter(p.code for p in self.problems)

    def counts_by_task_type(self) -> Counter:
        return Counter(info.task_type or "unknown" for info in self.infos)

    def first_problems(self, limit: int = 5) -> str:
        """The first ``limit`` problems as ``file:index: code: reason``, joined, with a count of the rest."""
        ordered = sorted(self.problems, key=lambda p: p.index)
        more = len(ordered) - limit
        return "; ".join(str(p) for p in ordered[:limit]) + (f"; and {more} more problem(s)" if more > 0 else "")

    def summary_line(self) -> str:
        bad = len(self.bad_indices)
        return f"checked {self.n_records} records: {self.n_usable} usable, {bad} with problems"

    def format(self, per_sample: bool = False) -> str:
        """A readable report: counts, tiles/token budget, one line per problem, the summary line."""
        lines = [f"data: {self.source}" if self.source else "data: (in memory)"]
        types = ", ".join(f"{k} {v}" for k, v in sorted(self.counts_by_task_type().items()))
        lines.append(f"task types: {types or 'none'}")
        modes = Counter(i.mode for i in self.infos if i.mode)
        if modes:
            lines.append("image modes: " + ", ".join(f"{k} {v}" for k, v in sorted(modes.items())))
        lines += _budget_lines(self.infos, self.max_length)
        if per_sample:
            lines += _per_sample_lines(self.infos, self.max_length)
        if self.problems:
            lines.append("problems by code: " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts_by_code().items())))
            lines += [str(p) for p in sorted(self.problems, key=lambda p: p.index)]
        lines.append(self.summary_line())
        return "\n".join(lines)


def _budget_lines(infos: list[RecordInfo], max_length: int | None) -> list[str]:
    counted = [i for i in infos if i.total_tokens is not None]
    if not counted:
        return ["token budget: not computed (needs a model folder: --model DIR, or `path` in the config)"]
    totals = [i.total_tokens for i in counted]
    tiles = Counter(i.tiles for i in counted if i.tiles)
    lines = [
        "tiles per image: " + (", ".join(f"{k}: {v}" for k, v in sorted(tiles.items())) or "no images"),
        f"tokens per sample: min {min(totals)}, median {int(statistics.median(totals))}, max {max(totals)}"
        + (f" (max_length {max_length})" if max_length else " (no max_length given)"),
    ]
    longest = max(counted, key=lambda i: i.total_tokens)
    lines.append(f"longest: record {longest.index} ({longest.id}): {longest.tiles or 0} tiles, "
                 f"{longest.image_tokens or 0} image + {longest.text_tokens} text tokens")
    return lines


def _per_sample_lines(infos: list[RecordInfo], max_length: int | None) -> list[str]:
    lines = [f"{'index':>6}  {'size':>9}  {'mode':>5}  {'tiles':>5}  {'img_tok':>7}  {'txt_tok':>7}  {'total':>6}  {'max':>6}  id"]
    for i in infos:
        size = f"{i.image_size[0]}x{i.image_size[1]}" if i.image_size else "-"
        lines.append(f"{i.index:>6}  {size:>9}  {i.mode or '-':>5}  {_dash(i.tiles):>5}  {_dash(i.image_tokens):>7}  "
                     f"{_dash(i.text_tokens):>7}  {_dash(i.total_tokens):>6}  {_dash(max_length):>6}  {i.id}")
    return lines


def _dash(value) -> str:
    return "-" if value is None else str(value)


def _duplicate_problems(records: list, indices: list[int]) -> list[tuple[int, str, str]]:
    seen_content: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    found = []
    for record, index in zip(records, indices):
        if not isinstance(record, dict):
            continue
        content = json.dumps([normalize_image_field(record.get("image")), record.get("conversations")],
                             ensure_ascii=False, sort_keys=True, default=str)
        if content in seen_content:
            found.append((index, "duplicate", f"same image and conversation as record {seen_content[content]}; remove one"))
        else:
            seen_content[content] = index
            rid = record.get("id")
            if rid is not None and str(rid) in seen_ids:
                found.append((index, "duplicate", f"id {rid!r} is already used by record {seen_ids[str(rid)]}; ids must be unique"))
            elif rid is not None:
                seen_ids[str(rid)] = index
    return found


def _source_indices(records: list) -> list[int]:
    return [r.get("source_index", i) if isinstance(r, dict) else i for i, r in enumerate(records)]


def validate_records(records: list, image_folder: str | None, max_length: int | None = None, *, budget=None,
                     source: str | None = None, check_image: bool = True,
                     load_problems: list[Problem] | None = None) -> Report:
    """Check every record (see the module doc for the codes) and return a :class:`Report`.

    Problems name the record's ``source_index`` when it has one (its position in the file it was
    loaded from), else its position in ``records``. The token budget is computed when ``budget`` is
    given: the model's processor (``count_tokens(record, image_size)`` and ``num_image_token``; for
    InternVL2 :class:`~xtuner_ext.models.internvl2.InternVL2Processor`), so it counts what training encodes.
    ``load_problems`` (records a loader could not parse) are counted in the same report.
    """
    indices = _source_indices(records)
    report = Report(source, len(records) + len(load_problems or []), list(load_problems or []), max_length=max_length)
    for record, index in zip(records, indices):
        try:
            problems, info = _check(record, index, image_folder, check_image, budget, max_length)
        except (TypeError, ValueError, KeyError, AttributeError, OSError) as err:
            # A record shape the checks did not foresee: report it, never stop the whole check.
            problems, info = [("check_failed", f"could not check this record ({type(err).__name__}: {err})")], RecordInfo(index)
        report.infos.append(info)
        report.problems += [Problem(index, code, message, source) for code, message in problems]
    report.problems += [Problem(i, code, message, source) for i, code, message in _duplicate_problems(records, indices)]
    return report


class BadRecordError(ValueError):
    """Raised by :func:`select_usable_records` with ``on_bad_record='error'``."""


def select_usable_records(records: list, image_folder: str | None, on_bad_record: str = "error", **kwargs) -> tuple[list, Report]:
    """Validate, then either stop on the first bad record (``'error'``) or drop bad records
    (``'skip'``) and return them counted in the report. Never substitutes another record."""
    if on_bad_record not in ("error", "skip"):
        raise ValueError(f"on_bad_record must be 'error' or 'skip', got {on_bad_record!r}")
    report = validate_records(records, image_folder, **kwargs)
    if report.problems and on_bad_record == "error":
        shown = "\n".join(str(p) for p in report.problems[:20])
        more = f"\n... and {len(report.problems) - 20} more" if len(report.problems) > 20 else ""
        raise BadRecordError(f"{report.summary_line()}\n{shown}{more}\n"
                             "Fix the data (see `python tools/check_data.py`) or set on_bad_record='skip'.")
    bad = report.bad_indices
    usable = [r for r, i in zip(records, _source_indices(records)) if i not in bad]
    return usable, report
