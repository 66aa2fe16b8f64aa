"""CLoT meme data: loaders for every layout, map functions, a held-out split by image, and checks.

All loaders return canonical InternVL/LLaVA conversation records (see :mod:`.records`).
Importing this package needs neither torch nor xtuner.
"""

from .check import main as check_data_main
from .loaders import find_clot_annotation, load_any, load_clot_folder, load_conversations, load_oogiri_jsonl, read_json_records
from .map_fns import (
    OOGIRI_PROMPTS,
    clot_llava_map_fn,
    clot_map_fn,
    conversation_llava_map_fn,
    conversation_map_fn,
    oogiri_llava_map_fn,
    oogiri_map_fn,
    parse_star,
)
from .records import CLOT_HUMAN_VALUE, CLOT_PROMPT, DataFormatError, LoadedData, Problem
from .sample import make_clot_sample
from .split import split_by_image, write_split
from .validate import (
    BadRecordError,
    ImageProblem,
    Report,
    check_record,
    inspect_image,
    load_rgb_image,
    select_usable_records,
    validate_records,
)

__all__ = [
    "BadRecordError",
    "CLOT_HUMAN_VALUE",
    "CLOT_PROMPT",
    "DataFormatError",
    "ImageProblem",
    "LoadedData",
    "OOGIRI_PROMPTS",
    "Problem",
    "Report",
    "check_data_main",
    "check_record",
    "clot_llava_map_fn",
    "clot_map_fn",
    "conversation_llava_map_fn",
    "conversation_map_fn",
    "find_clot_annotation",
    "inspect_image",
    "load_any",
    "load_clot_folder",
    "load_conversations",
    "load_oogiri_jsonl",
    "load_rgb_image",
    "make_clot_sample",
    "oogiri_llava_map_fn",
    "oogiri_map_fn",
    "parse_star",
    "read_json_records",
    "select_usable_records",
    "split_by_image",
    "validate_records",
    "write_split",
]
